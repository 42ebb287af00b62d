// hash.h: a fast 64-bit checksum of memory (not cryptographic): four FNV-1a-style lanes over
// 8-byte words, the tail zero-padded, folded with the length. Detects flipped and truncated bytes
// at memory speed; used to verify offloaded pages when they come back from disk.
#pragma once
#include <cstddef>
#include <cstdint>

namespace zt {

uint64_t hash_bytes(const void* data, size_t bytes);

}  // namespace zt
