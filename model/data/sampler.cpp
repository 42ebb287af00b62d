// sampler.cpp: the per-epoch window permutation (see sampler.h).
#include "model/data/sampler.h"

#include <numeric>
#include <utility>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace zt {

namespace {
// The shuffle into `perm` (n elements of I: uint32 while the windows fit, 4 bytes per window).
template <typename I>
void shuffle_windows(std::vector<I>& perm, int64_t n, uint64_t seed, int64_t epoch) {
  perm.resize((size_t)n);
  std::iota(perm.begin(), perm.end(), I{0});
  // One Philox stream per epoch; counter i gives the swap partner of position i.
  const uint64_t stream = hash_name("data/sampler") ^ ((uint64_t)epoch * 0x9E3779B97F4A7C15ull);
  for (int64_t i = n - 1; i > 0; --i) {
    uint32_t r[4];
    philox4x32(seed, stream, (uint64_t)i, r);
    uint64_t bits = ((uint64_t)r[0] << 32) | r[1];
    // Uniform in [0, i] by multiply-shift; the bias is below (i + 1) / 2^64.
    int64_t k = (int64_t)(((unsigned __int128)bits * (uint64_t)(i + 1)) >> 64);
    std::swap(perm[i], perm[k]);
  }
}
}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm;
  shuffle_windows(perm, n, seed, epoch);
  return perm;
}

Sampler::Sampler(int64_t ntokens, int seq_len, uint64_t seed, const std::string& what)
    : seq_len_(seq_len), seed_(seed) {
  if (seq_len < 1) fail(what, ": --seq-len must be >= 1 (got ", seq_len, ")");
  if (ntokens < (int64_t)seq_len + 1)
    fail(what, ": ", ntokens, " tokens is too few for --seq-len ", seq_len,
         " (one sample needs seq_len + 1 = ", (int64_t)seq_len + 1, " tokens)");
  samples_ = (ntokens - 1) / seq_len;
}

int64_t Sampler::start(int64_t j) const {
  ZT_CHECK(j >= 0, "sample index ", j);
  int64_t epoch = j / samples_;
  if (epoch != epoch_) {
    if (samples_ <= (int64_t)UINT32_MAX)
      shuffle_windows(perm32_, samples_, seed_, epoch);
    else
      shuffle_windows(perm_, samples_, seed_, epoch);
    epoch_ = epoch;
  }
  const int64_t k = j % samples_;
  return (perm32_.empty() ? perm_[k] : (int64_t)perm32_[k]) * seq_len_;
}

void fill_samples(const Sampler& s, const TokenData& tokens, int64_t first, int B, int T,
                  int32_t* out) {
  for (int b = 0; b < B; ++b) tokens.read(s.start(first + b), T + 1, out + (size_t)b * (T + 1));
}

}  // namespace zt
