// sampler.h: which tokens make up training sample j (SPEC section 2). A sample is seq_len + 1
// consecutive tokens; an epoch visits the S = (ntokens - 1) / seq_len non-overlapping windows that
// start at k * seq_len, in a permutation that depends only on (seed, epoch). Sample j of the
// endless stream is in epoch j / S. The trainer asks for global sample indices step * G + i and
// each data-parallel rank takes its slice of them, so the sampler knows nothing of ranks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/data/token_file.h"

namespace zt {

class Sampler {
 public:
  // `what` names the data (a file path) in error messages.
  Sampler(int64_t ntokens, int seq_len, uint64_t seed, const std::string& what = "token file");

  int64_t samples_per_epoch() const { return samples_; }

  // Token offset of sample j (j >= 0): tokens [start(j), start(j) + seq_len] are its inputs and
  // targets. Any call order gives the same answer; the current epoch's permutation is cached, so a
  // Sampler is not thread-safe.
  int64_t start(int64_t j) const;

 private:
  int seq_len_;
  uint64_t seed_;
  int64_t samples_;             // S
  mutable int64_t epoch_ = -1;  // epoch held in perm_
  // (S,) window index of each position in the epoch: 4 bytes per window while S < 2^32
  mutable std::vector<uint32_t> perm32_;
  mutable std::vector<int64_t> perm_;
};

// The first global sample of data-parallel rank `dp_rank`'s microbatch `micro` of step `step`:
// the step's global batch of B * accum * dp samples is cut into runs of B, rank-major (rank 0's
// microbatches first), so the samples of a step never depend on the layout.
inline int64_t first_sample(int64_t step, int B, int accum, int dp, int dp_rank, int micro) {
  return step * ((int64_t)B * accum * dp) + ((int64_t)dp_rank * accum + micro) * B;
}

// Samples [first, first + B) of the stream into out [B, T+1] (T = the sampler's seq_len): only
// their tokens are read (token_file.h).
void fill_samples(const Sampler& s, const TokenData& tokens, int64_t first, int B, int T,
                  int32_t* out);

// The window order of one epoch: a Fisher-Yates shuffle of [0, n) driven by Philox keyed by
// (seed, epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace zt
