// matmul.cpp: the model's one GEMM and the linear layer built on it (ops.h).
// matmul goes to the device layer's gemm (runtime/device.h: OpenBLAS sgemm on the CPU, cuBLAS in
// CUDA builds), so every matrix product of the model has one place to change. Threads come from
// OpenBLAS itself (OPENBLAS_NUM_THREADS).
#include <cstring>

#include "model/ops/ops.h"
#include "runtime/device.h"

namespace zt {

void matmul(float* c, const float* a, const float* b, int m, int n, int k, bool trans_a,
            bool trans_b, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // an empty sum: c = 0, or unchanged when accumulating
    if (!accumulate) std::memset(c, 0, sizeof(float) * (size_t)m * n);
    return;
  }
  gemm(DeviceKind::cpu, trans_a, trans_b, m, n, k, 1.0f, a, trans_a ? m : k, b, trans_b ? k : n,
       accumulate ? 1.0f : 0.0f, c, n);
}

void linear_forward(float* out, const float* x, const float* w, int n, int in, int out_dim,
                    bool accumulate) {
  matmul(out, x, w, n, out_dim, in, false, false, accumulate);
}

void linear_backward_input(float* dx, const float* dout, const float* w, int n, int in, int out_dim,
                           bool accumulate) {
  matmul(dx, dout, w, n, in, out_dim, false, true, accumulate);  // out_dim 0: += nothing, or = 0
}

void linear_backward_weight(float* dw, const float* dout, const float* x, int n, int in,
                            int out_dim) {
  if (n > 0) matmul(dw, x, dout, in, out_dim, n, true, false, true);
}

void linear_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, int n,
                     int in, int out_dim) {
  if (dx) linear_backward_input(dx, dout, w, n, in, out_dim);
  if (dw) linear_backward_weight(dw, dout, x, n, in, out_dim);
}

}  // namespace zt
