// hash.cpp: see hash.h.
#include "runtime/hash.h"

#include <cstring>

namespace zt {

void hash_lanes(const void* data, size_t bytes, uint64_t lane[4]) {
  const char* p = static_cast<const char*>(data);
  const size_t words = bytes / 8;
  size_t i = 0;
  for (; i + 4 <= words; i += 4)
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + (i + k) * 8, 8);
      lane[k] = (lane[k] ^ w) * kHashPrime;
    }
  for (; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, p + i * 8, 8);
    lane[i % 4] = (lane[i % 4] ^ w) * kHashPrime;
  }
  if (bytes % 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + words * 8, bytes % 8);
    lane[words % 4] = (lane[words % 4] ^ w) * kHashPrime;
  }
}

uint64_t hash_bytes(const void* data, size_t bytes) {
  uint64_t lane[4] = {kHashLanes[0], kHashLanes[1], kHashLanes[2], kHashLanes[3]};
  hash_lanes(data, bytes, lane);
  uint64_t h = bytes;
  for (uint64_t l : lane) h = (h ^ l) * kHashPrime;
  return h;
}

}  // namespace zt
