// matmul.cpp: dense matmul forward and backward on OpenBLAS sgemm (row-major, weights [in, out]).
//   forward   out[n, o]  = (or +=) x[n, i] W[i, o]
//   backward  dx[n, i]  += dout[n, o] W^T      dw[i, o] += x^T dout[n, o]
// Threads come from OpenBLAS itself (OPENBLAS_NUM_THREADS).
#include <cblas.h>

#include <cstring>

#include "model/ops/ops.h"

namespace zt {

void matmul_forward(float* out, const float* x, const float* w, int n, int in, int out_dim,
                    bool accumulate) {
  if (n <= 0 || out_dim <= 0) return;
  if (in <= 0) {  // empty sum: out = 0 (or unchanged when accumulating)
    if (!accumulate) std::memset(out, 0, sizeof(float) * (size_t)n * out_dim);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, out_dim, in, 1.0f, x, in, w, out_dim,
              accumulate ? 1.0f : 0.0f, out, out_dim);
}

void matmul_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, int n,
                     int in, int out_dim) {
  if (n <= 0 || in <= 0 || out_dim <= 0) return;  // every gradient is an empty sum or empty
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, in, out_dim, 1.0f, dout, out_dim, w,
                out_dim, 1.0f, dx, in);
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out_dim, n, 1.0f, x, in, dout, out_dim,
                1.0f, dw, out_dim);
}

}  // namespace zt
