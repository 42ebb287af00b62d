// ring_bytes.h: the bytes one rank sends in each collective, the volumes the ring algorithms move
// (docs/communication.md). The one place these formulas live: the backends count with them (the
// MPI message plans send exactly this, tests/unit/test_ring_plans.cpp), and the planner
// (parallel/plan/) predicts a layout's traffic with them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/split.h"

namespace zt {

// all_reduce of `count` elements on rank r of n: a reduce-scatter and an all-gather of the even
// blocks; the rank forwards every block but the one it finishes reducing (r's) in the first half
// and every block but the one it receives last ((r + 1) % n's) in the second.
inline int64_t all_reduce_bytes(size_t count, int n, int r, size_t elem) {
  if (n <= 1 || count == 0) return 0;
  const std::vector<size_t> even = even_split_counts(count, n);
  return (int64_t)((2 * count - even[r] - even[(r + 1) % n]) * elem);
}

// reduce_scatter: every block but the rank's own result.
inline int64_t reduce_scatter_bytes(std::span<const size_t> counts, int r, size_t elem) {
  size_t total = 0;
  for (size_t c : counts) total += c;
  return counts.size() <= 1 ? 0 : (int64_t)((total - counts[r]) * elem);
}

// all_gather: every block but the one the ring delivers to the rank last, its successor's.
inline int64_t all_gather_bytes(std::span<const size_t> counts, int r, size_t elem) {
  const int n = (int)counts.size();
  size_t total = 0;
  for (size_t c : counts) total += c;
  return n <= 1 ? 0 : (int64_t)((total - counts[(r + 1) % n]) * elem);
}

// Equal blocks of `block` elements on each of n ranks (both collectives send (n - 1) blocks).
inline int64_t ring_blocks_bytes(size_t block, int n, size_t elem) {
  return n <= 1 ? 0 : (int64_t)((size_t)(n - 1) * block * elem);
}

// all_to_all: the blocks for the other ranks.
inline int64_t all_to_all_bytes(std::span<const size_t> send_counts, int r, size_t elem) {
  size_t total = 0;
  for (size_t i = 0; i < send_counts.size(); ++i)
    if ((int)i != r) total += send_counts[i];
  return (int64_t)(total * elem);
}

}  // namespace zt
