// quant.cu: QAT's fake quantization on the GPU (ops_cuda.h): weights elementwise, the LSQ
// backward one thread per (group, column), activations one block per row. rintf rounds half to
// even like the CPU's nearbyint, and IEEE division and products keep the values bitwise equal.
#include <cmath>

#include "model/ops/cuda/ops_cuda.h"
#include "model/ops/cuda/reduce.cuh"
#include "model/ops/quant_ops.h"
#include "runtime/cuda/cuda_check.h"

namespace zt::gpu {
namespace {

__device__ inline float level(float v, int qp) {
  return fminf(fmaxf(rintf(v), -(float)qp), (float)qp);
}

__global__ void fake_quant_weight_kernel(float* q, const float* w, const float* s, int64_t n,
                                         int out, int G, int qp) {
  ZT_GRID_STRIDE(k, n) {
    const int64_t i = k / out, o = k % out;
    const float so = fmaxf(s[(i / G) * out + o], kMinStep);
    q[k] = level(w[k] / so, qp) * so;
  }
}

__global__ void lsq_kernel(float* dw, float* ds, const float* g, const float* w, const float* s,
                           int groups, int out, int G, int qp, float gscale) {
  const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= (int64_t)groups * out) return;
  const int64_t gi = k / out, o = k % out;
  const float so = fmaxf(s[k], kMinStep), lim = (float)qp * (1.0f + 1e-6f), fq = (float)qp;
  float acc = 0.0f;
  for (int64_t i = gi * G; i < (gi + 1) * G; ++i) {
    const int64_t e = i * out + o;
    const float v = w[e] / so;
    const bool inside = fabsf(v) <= lim;
    const float dq = inside ? rintf(v) - v : (v < 0 ? -fq : fq);
    if (dw && inside) dw[e] += g[e];
    acc += gscale * g[e] * dq;
  }
  if (ds) ds[k] += acc;
}

__global__ void rows_kernel(float* x, float* amax_out, const float* amax_in, int d) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float* xr = x + r * d;
  float amax;
  if (amax_in) {
    amax = amax_in[r];
  } else {
    float m = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) m = fmaxf(m, fabsf(xr[j]));
    amax = block_max(m, scratch);
  }
  if (amax_out) {  // row_absmax: only the maxima
    if (threadIdx.x == 0) amax_out[r] = amax;
    return;
  }
  if (!(amax > 0.0f)) return;
  const float st = amax / 127.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    xr[j] = fminf(fmaxf(rintf(xr[j] / st), -127.0f), 127.0f) * st;
}

}  // namespace

void fake_quant_weight(float* q, const float* w, const float* s, int in, int out, int G, int qp,
                       cudaStream_t stream) {
  ZT_CHECK(G > 0 && in % G == 0, "group size ", G, " does not divide ", in, " rows");
  const int64_t n = (int64_t)in * out;
  if (n <= 0) return;
  fake_quant_weight_kernel<<<grid_for(n), 256, 0, stream>>>(q, w, s, n, out, G, qp);
  CUDA_CHECK_LAST();
}

void fake_quant_weight_backward(float* dw, float* ds, const float* g, const float* w,
                                const float* s, int in, int out, int G, int qp, int shared,
                                cudaStream_t stream) {
  ZT_CHECK(G > 0 && in % G == 0, "group size ", G, " does not divide ", in, " rows");
  const int groups = in / G;
  const int64_t n = (int64_t)groups * out;
  if (n <= 0 || (!dw && !ds)) return;
  const float gscale = 1.0f / std::sqrt((float)(shared > 0 ? shared : G) * (float)qp);
  lsq_kernel<<<(int)((n + 255) / 256), 256, 0, stream>>>(dw, ds, g, w, s, groups, out, G, qp,
                                                         gscale);
  CUDA_CHECK_LAST();
}

void fake_quant_rows(float* x, int64_t n, int d, const float* amax, cudaStream_t stream) {
  if (n <= 0 || d <= 0) return;
  ZT_CHECK(n <= INT32_MAX, "fake_quant_rows: ", n, " rows, over one launch's blocks");
  rows_kernel<<<(unsigned)n, kRowThreads, 0, stream>>>(x, nullptr, amax, d);
  CUDA_CHECK_LAST();
}

void row_absmax(float* amax, const float* x, int64_t n, int d, cudaStream_t stream) {
  if (n <= 0) return;
  ZT_CHECK(n <= INT32_MAX, "row_absmax: ", n, " rows, over one launch's blocks");
  rows_kernel<<<(unsigned)n, kRowThreads, 0, stream>>>(const_cast<float*>(x), amax, nullptr, d);
  CUDA_CHECK_LAST();
}

}  // namespace zt::gpu
