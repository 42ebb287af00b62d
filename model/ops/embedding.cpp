// embedding.cpp: token embedding lookup and its scatter-add backward (fp32).
// Forward copies table rows; backward adds each dout row into the table row of its token. Several
// tokens may share a table row, so the backward splits the work by column blocks, not by tokens:
// every thread owns whole columns of dtable, so nothing races and each element sums its tokens in
// token order whatever the thread count (bit-identical results).
#include <algorithm>
#include <cstring>

#include "model/ops/ops.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

// out [n, d] = table [V, d] rows tok[n]
void embedding_forward(float* out, const int32_t* tok, const float* table, int n, int d) {
#pragma omp parallel for if ((int64_t)n * d > parallel_min)
  for (int i = 0; i < n; ++i)
    std::memcpy(out + (int64_t)i * d, table + (int64_t)tok[i] * d, sizeof(float) * d);
}

// dtable[tok[i], :] += dout[i, :]
void embedding_backward(float* dtable, const float* dout, const int32_t* tok, int n, int d) {
  constexpr int block = 64;  // columns per task
  int blocks = (d + block - 1) / block;
#pragma omp parallel for if ((int64_t)n * d > parallel_min && blocks > 1)
  for (int cb = 0; cb < blocks; ++cb) {
    int j0 = cb * block, j1 = std::min(d, j0 + block);
    for (int i = 0; i < n; ++i) {
      float* dst = dtable + (int64_t)tok[i] * d;
      const float* src = dout + (int64_t)i * d;
      for (int j = j0; j < j1; ++j) dst[j] += src[j];
    }
  }
}

}  // namespace zt
