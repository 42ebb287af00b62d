// layout.h: how one unit's flat parameter buffer is split across the dp ranks of ZeRO.
//
// The unit's buffer is cut into chunks (the communication buckets, --bucket-mb) whose lengths are
// multiples of dp; the last chunk is padded. Chunk c spans [begin[c], begin[c+1]) of the padded
// buffer and rank r owns its r-th equal piece. A rank's shard is the concatenation of its pieces
// over the chunks, so chunk c's piece sits at shard offset begin[c] / dp. Every collective works on
// one chunk: reduce-scatter sends the whole chunk and receives this rank's piece; all-gather the
// reverse. Uneven unit sizes are padded, never rejected; padding elements are always zero.
#pragma once
#include <cstdint>
#include <vector>

namespace zt {

struct UnitLayout {
  int64_t numel = 0;  // logical elements of the unit
  int dp = 1;
  std::vector<int64_t> begin;  // [chunks + 1] offsets into the padded buffer
  int64_t padded() const { return begin.back(); }
  int64_t shard() const { return padded() / dp; }  // elements each rank owns
  int chunks() const { return (int)begin.size() - 1; }
  int64_t chunk_len(int c) const { return begin[c + 1] - begin[c]; }
  int64_t piece(int c) const { return chunk_len(c) / dp; }
  // Where rank r's piece of chunk c starts in the padded unit buffer, and in the shard.
  int64_t piece_begin(int c, int r) const { return begin[c] + r * piece(c); }
  int64_t shard_begin(int c) const { return begin[c] / dp; }
};

// bucket_elems: target chunk length in elements (rounded up to a multiple of dp, at least dp).
UnitLayout make_unit_layout(int64_t numel, int dp, int64_t bucket_elems);

}  // namespace zt
