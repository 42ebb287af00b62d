// embedding.cpp: token embedding lookup and its scatter-add backward (fp32), over a table that may
// hold only the vocabulary rows [v0, v0 + rows) (a vocabulary-parallel slice). Forward copies rows;
// backward adds each dout row into the table row of its token. Several tokens may share a table
// row, so the backward splits the work by column blocks, not by tokens: every thread owns whole
// columns of dtable, so nothing races and each element sums its tokens in token order whatever the
// thread count (bit-identical results).
#include <algorithm>
#include <cstring>

#include "model/ops/ops.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

// out [n, d] = table [rows, d] row tok[i] - v0 (zeros when the token is not in the table's range)
void embedding_forward(float* out, const int32_t* tok, const float* table, int n, int d, int v0,
                       int rows) {
#pragma omp parallel for if ((int64_t)n * d > parallel_min)
  for (int i = 0; i < n; ++i) {
    const int64_t r = (int64_t)tok[i] - v0;
    float* dst = out + (int64_t)i * d;
    if (r < 0 || (rows >= 0 && r >= rows))  // below the table: never held, whatever rows
      std::memset(dst, 0, sizeof(float) * d);
    else
      std::memcpy(dst, table + r * d, sizeof(float) * d);
  }
}

// dtable[tok[i] - v0, :] += dout[i, :] for the tokens in the table's range
void embedding_backward(float* dtable, const float* dout, const int32_t* tok, int n, int d, int v0,
                        int rows) {
  constexpr int block = 64;  // columns per task
  int blocks = (d + block - 1) / block;
#pragma omp parallel for if ((int64_t)n * d > parallel_min && blocks > 1)
  for (int cb = 0; cb < blocks; ++cb) {
    int j0 = cb * block, j1 = std::min(d, j0 + block);
    for (int i = 0; i < n; ++i) {
      const int64_t r = (int64_t)tok[i] - v0;
      if (r < 0 || (rows >= 0 && r >= rows)) continue;
      float* dst = dtable + r * d;
      const float* src = dout + (int64_t)i * d;
      for (int j = j0; j < j1; ++j) dst[j] += src[j];
    }
  }
}

}  // namespace zt
