// rng.cpp: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
#include "runtime/rng.h"

#include <cmath>

namespace zt {

uint64_t hash_name(std::string_view name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

void philox4x32(uint64_t seed, uint64_t stream, uint64_t ctr, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = (uint32_t)stream,
           c3 = (uint32_t)(stream >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static double to_unit(uint32_t hi, uint32_t lo) {  // 53 random bits, never 0
  uint64_t bits = ((uint64_t)hi << 21) ^ (uint64_t)lo;
  bits &= (1ull << 53) - 1;
  return ((double)bits + 0.5) / 9007199254740992.0;
}

double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  philox4x32(seed, stream, index, r);
  return to_unit(r[0], r[1]);
}

double rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  philox4x32(seed, stream, index, r);
  double u1 = to_unit(r[0], r[1]), u2 = to_unit(r[2], r[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

void fill_normal(float* x, int64_t n, uint64_t seed, std::string_view name, float mean, float std,
                 int64_t first) {
  uint64_t stream = hash_name(name);
  for (int64_t i = 0; i < n; ++i)
    x[i] = (float)(mean + std * rng_normal(seed, stream, (uint64_t)(first + i)));
}

}  // namespace zt
