// layout.cpp: chunked shard layout of a unit.
#include "parallel/zero/layout.h"

#include <algorithm>

#include "runtime/error.h"

namespace zt {

UnitLayout make_unit_layout(int64_t numel, int dp, int64_t bucket_elems) {
  ZT_CHECK(numel >= 0 && dp >= 1, "numel ", numel, " dp ", dp);
  UnitLayout l;
  l.numel = numel;
  l.dp = dp;
  const int64_t chunk = std::max<int64_t>(dp, (bucket_elems + dp - 1) / dp * dp);
  l.begin.push_back(0);
  for (int64_t off = 0; off < numel; off += chunk) {
    int64_t len = std::min(chunk, numel - off);
    len = (len + dp - 1) / dp * dp;  // pad the last chunk
    l.begin.push_back(l.begin.back() + len);
  }
  if (l.begin.size() == 1) l.begin.push_back(0);  // an empty unit: one empty chunk
  return l;
}

}  // namespace zt
