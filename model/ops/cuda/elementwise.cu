// elementwise.cu: the elementwise ops on the GPU (ops_cuda.h): y += x, SwiGLU, RoPE, the embedding
// lookup and its gradient; grid-stride loops. RoPE's angles are computed in double per element,
// as the CPU computes its table (a float angle is off by ~1e-4 rad at positions in the thousands).
#include <cmath>

#include "model/ops/cuda/ops_cuda.h"
#include "model/ops/cuda/reduce.cuh"
#include "runtime/cuda/cuda_check.h"

namespace zt::gpu {
namespace {

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  ZT_GRID_STRIDE(i, n) y[i] += x[i];
}

__global__ void swiglu_forward_kernel(float* out, const float* a, const float* b, int64_t n) {
  ZT_GRID_STRIDE(i, n) out[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

__global__ void swiglu_backward_kernel(float* da, float* db, const float* dout, const float* a,
                                       const float* b, int64_t n) {
  ZT_GRID_STRIDE(i, n) {
    const float sig = 1.0f / (1.0f + expf(-a[i]));
    if (da) da[i] += dout[i] * b[i] * sig * (1.0f + a[i] * (1.0f - sig));
    if (db) db[i] += dout[i] * a[i] * sig;
  }
}

// One thread per rotated pair (row, head, i < dh/2): out (= or +=) R(sign * theta) x.
__global__ void rope_kernel(float* out, const float* x, int64_t rows, int T, int H, int dh,
                            float base, int pos0, float sign, bool accumulate) {
  const int half = dh / 2;
  const int64_t pairs = rows * H * half;
  ZT_GRID_STRIDE(k, pairs) {
    const int i = (int)(k % half);
    const int64_t rh = k / half, r = rh / H;
    const int h = (int)(rh % H);
    const int t = (int)(r % T);
    const double theta = (double)(pos0 + t) * pow((double)base, -2.0 * i / dh);
    const float c = (float)cos(theta), s = sign * (float)sin(theta);
    const int64_t o = r * H * dh + (int64_t)h * dh + i;
    const float u1 = x[o], u2 = x[o + half];  // both read first: in place is fine
    const float y1 = u1 * c - u2 * s, y2 = u2 * c + u1 * s;
    if (accumulate) {
      out[o] += y1;
      out[o + half] += y2;
    } else {
      out[o] = y1;
      out[o + half] = y2;
    }
  }
}

// Element k of the [n, d] lookup: its index in the table of rows [v0, v0 + rows), -1 if not held.
__device__ inline int64_t table_index(const int32_t* tok, int64_t k, int d, int v0, int rows) {
  const int64_t row = (int64_t)tok[k / d] - v0;
  return row >= 0 && (rows < 0 || row < rows) ? row * d + k % d : -1;
}

__global__ void embedding_forward_kernel(float* out, const int32_t* tok, const float* table,
                                         int64_t n, int d, int v0, int rows) {
  ZT_GRID_STRIDE(k, n * d) {
    const int64_t t = table_index(tok, k, d, v0, rows);
    out[k] = t >= 0 ? table[t] : 0.0f;
  }
}

__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int32_t* tok,
                                          int64_t n, int d, int v0, int rows) {
  ZT_GRID_STRIDE(k, n * d) {
    const int64_t t = table_index(tok, k, d, v0, rows);
    if (t >= 0) atomicAdd(&dtable[t], dout[k]);
  }
}

}  // namespace

void swiglu_forward(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  swiglu_forward_kernel<<<grid_for(n), 256, 0, stream>>>(out, a, b, n);
  CUDA_CHECK_LAST();
}

void add(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n), 256, 0, stream>>>(y, x, n);
  CUDA_CHECK_LAST();
}

void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b,
                     int64_t n, cudaStream_t stream) {
  if (n <= 0 || (!da && !db)) return;
  swiglu_backward_kernel<<<grid_for(n), 256, 0, stream>>>(da, db, dout, a, b, n);
  CUDA_CHECK_LAST();
}

static void launch_rope(float* out, const float* x, int B, int T, int H, int dh, float base,
                        int pos0, float sign, bool accumulate, cudaStream_t stream) {
  ZT_CHECK(dh % 2 == 0, "rope needs an even head dim, got ", dh);
  const int64_t rows = (int64_t)B * T, pairs = rows * H * (dh / 2);
  if (pairs <= 0) return;
  rope_kernel<<<grid_for(pairs), 256, 0, stream>>>(out, x, rows, T, H, dh, base, pos0, sign,
                                                   accumulate);
  CUDA_CHECK_LAST();
}

void rope_forward(float* out, const float* x, int B, int T, int H, int dh, float base, int pos0,
                  cudaStream_t stream) {
  launch_rope(out, x, B, T, H, dh, base, pos0, 1.0f, false, stream);
}

void rope_backward(float* dx, const float* dout, int B, int T, int H, int dh, float base, int pos0,
                   bool accumulate, cudaStream_t stream) {
  launch_rope(dx, dout, B, T, H, dh, base, pos0, -1.0f, accumulate, stream);
}

void embedding_forward(float* out, const int32_t* tok, const float* table, int n, int d, int v0,
                       int rows, cudaStream_t stream) {
  const int64_t nd = (int64_t)n * d;
  if (nd <= 0) return;
  embedding_forward_kernel<<<grid_for(nd), 256, 0, stream>>>(out, tok, table, n, d, v0, rows);
  CUDA_CHECK_LAST();
}

void embedding_backward(float* dtable, const float* dout, const int32_t* tok, int n, int d, int v0,
                        int rows, cudaStream_t stream) {
  const int64_t nd = (int64_t)n * d;
  if (nd <= 0) return;
  embedding_backward_kernel<<<grid_for(nd), 256, 0, stream>>>(dtable, dout, tok, n, d, v0, rows);
  CUDA_CHECK_LAST();
}

}  // namespace zt::gpu
