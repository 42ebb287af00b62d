// hash.h: a fast 64-bit checksum of memory (not cryptographic): four FNV-1a-style lanes over
// 8-byte words, the tail zero-padded, folded with the length. Detects flipped and truncated bytes
// at memory speed; used to verify offloaded pages when they come back from disk.
#pragma once
#include <cstddef>
#include <cstdint>

namespace zt {

uint64_t hash_bytes(const void* data, size_t bytes);

// The lanes under hash_bytes, for callers that fold them their own way (the checkpoint checksum):
// starts from kHashLanes, word i of the data (8 bytes, the tail zero-padded) goes to lane i % 4.
// Streaming over several buffers gives the same lanes as one call when every buffer but the last
// is a multiple of 32 bytes.
inline constexpr uint64_t kHashPrime = 1099511628211ull;
inline constexpr uint64_t kHashLanes[4] = {1469598103934665603ull, 0x9e3779b97f4a7c15ull,
                                           0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull};
void hash_lanes(const void* data, size_t bytes, uint64_t lane[4]);

}  // namespace zt
