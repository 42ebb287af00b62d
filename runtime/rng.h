// rng.h: counter-based random numbers (Philox4x32-10). A value depends only on (seed, stream key,
// element index), so a parameter's initial values never depend on how it is partitioned.
#pragma once
#include <cstdint>
#include <string_view>

namespace zt {

uint64_t hash_name(std::string_view name);  // FNV-1a 64-bit: the stream key of a parameter name

// Four 32-bit random words for counter `ctr` under key (seed, stream).
void philox4x32(uint64_t seed, uint64_t stream, uint64_t ctr, uint32_t out[4]);

// Uniform in (0, 1), and standard normal, for element `index` of stream (seed, stream).
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
double rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

// Fill x[i] = mean + std * N(0,1) for global element indices [first, first + n) of a parameter.
void fill_normal(float* x, int64_t n, uint64_t seed, std::string_view name, float mean, float std,
                 int64_t first = 0);

}  // namespace zt
