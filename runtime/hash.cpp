// hash.cpp: see hash.h.
#include "runtime/hash.h"

#include <cstring>

namespace zt {

uint64_t hash_bytes(const void* data, size_t bytes) {
  constexpr uint64_t kPrime = 1099511628211ull;
  uint64_t lane[4] = {1469598103934665603ull, 0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
                      0x165667b19e3779f9ull};
  const char* p = static_cast<const char*>(data);
  const size_t words = bytes / 8;
  size_t i = 0;
  for (; i + 4 <= words; i += 4)
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + (i + k) * 8, 8);
      lane[k] = (lane[k] ^ w) * kPrime;
    }
  for (; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, p + i * 8, 8);
    lane[i % 4] = (lane[i % 4] ^ w) * kPrime;
  }
  if (bytes % 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + words * 8, bytes % 8);
    lane[words % 4] = (lane[words % 4] ^ w) * kPrime;
  }
  uint64_t h = bytes;
  for (uint64_t l : lane) h = (h ^ l) * kPrime;
  return h;
}

}  // namespace zt
