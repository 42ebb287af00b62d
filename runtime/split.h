// split.h: the one even split of n elements over `parts` parts (the first n % parts parts get one
// more). Collectives use it for their even block counts, checkpoints for the piece of every
// flattened tensor each rank file holds (SPEC section 5).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace zt {

struct EvenPiece {
  int64_t off, n;
};

// Part i of n elements split over `parts`.
inline EvenPiece even_piece(int64_t n, int parts, int i) {
  const int64_t base = n / parts, extra = n % parts;
  return {i * base + std::min<int64_t>(i, extra), base + (i < extra ? 1 : 0)};
}

// The element count of every part, in order.
inline std::vector<size_t> even_split_counts(size_t n, int parts) {
  std::vector<size_t> c(parts);
  for (int i = 0; i < parts; ++i) c[i] = (size_t)even_piece((int64_t)n, parts, i).n;
  return c;
}

}  // namespace zt
