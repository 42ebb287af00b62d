// rows.cu: the row-wise ops on the GPU (ops_cuda.h): RMSNorm and cross-entropy, one block of
// kRowThreads per row with block reductions; RMSNorm's gain gradient one thread per column
// summing over the rows in order (deterministic, no atomics).
#include <cmath>

#include "model/ops/cuda/ops_cuda.h"
#include "model/ops/cuda/reduce.cuh"
#include "runtime/cuda/cuda_check.h"

namespace zt::gpu {
namespace {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* x, const float* g,
                                       int d, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* xi = x + row * d;
  float* oi = out + row * d;
  float ss = 0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) ss += xi[j] * xi[j];
  ss = block_sum(ss, scratch);
  const float r = 1.0f / sqrtf(ss / d + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int j = threadIdx.x; j < d; j += blockDim.x) oi[j] = xi[j] * r * g[j];
}

// dx_j += r g_j dout_j - x_j r^3/d * sum_k dout_k g_k x_k
__global__ void rmsnorm_backward_dx_kernel(float* dx, const float* dout, const float* x,
                                           const float* g, const float* rstd, int d) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float *xi = x + row * d, *di = dout + row * d;
  float* dxi = dx + row * d;
  float dot = 0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) dot += di[j] * g[j] * xi[j];
  dot = block_sum(dot, scratch);
  const float r = rstd[row], c = r * r * r * dot / d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) dxi[j] += r * g[j] * di[j] - xi[j] * c;
}

// dg_j += sum over rows of dout_j x_j r
__global__ void rmsnorm_backward_dg_kernel(float* dg, const float* dout, const float* x,
                                           const float* rstd, int n, int d) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += dout[i * d + j] * x[i * d + j] * rstd[i];
  dg[j] += acc;
}

// The row's max and sum of exp(z - max).
__device__ inline void softmax_stats(const float* z, int V, float* scratch, float& mx, float& sum) {
  float m = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, z[j]);
  mx = block_max(m, scratch);
  float s = 0;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += expf(z[j] - mx);
  sum = block_sum(s, scratch);
}

__global__ void cross_entropy_forward_kernel(float* losses, const float* logits,
                                             const int32_t* targets, int V) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* z = logits + row * V;
  float mx, sum;
  softmax_stats(z, V, scratch, mx, sum);
  if (threadIdx.x != 0) return;
  const int t = targets[row];
  losses[row] = t >= 0 && t < V ? mx + logf(sum) - z[t] : NAN;
}

__global__ void cross_entropy_backward_kernel(float* dlogits, const float* logits,
                                              const int32_t* targets, float scale, int V) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* z = logits + row * V;
  float* dz = dlogits + row * V;
  float mx, sum;
  softmax_stats(z, V, scratch, mx, sum);
  const float c = scale / sum;
  const int t = targets[row];
  for (int j = threadIdx.x; j < V; j += blockDim.x)
    dz[j] += c * expf(z[j] - mx) - (j == t ? scale : 0.0f);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* g, int n, int d,
                     float eps, cudaStream_t stream) {
  if (n <= 0) return;
  rmsnorm_forward_kernel<<<n, kRowThreads, 0, stream>>>(out, rstd, x, g, d, eps);
  CUDA_CHECK_LAST();
}

void rmsnorm_backward(float* dx, float* dg, const float* dout, const float* x, const float* g,
                      const float* rstd, int n, int d, cudaStream_t stream) {
  if (n <= 0 || d <= 0) return;
  if (dx) {
    rmsnorm_backward_dx_kernel<<<n, kRowThreads, 0, stream>>>(dx, dout, x, g, rstd, d);
    CUDA_CHECK_LAST();
  }
  if (dg) {
    rmsnorm_backward_dg_kernel<<<(d + 255) / 256, 256, 0, stream>>>(dg, dout, x, rstd, n, d);
    CUDA_CHECK_LAST();
  }
}

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int n, int V,
                           cudaStream_t stream) {
  if (n <= 0) return;
  cross_entropy_forward_kernel<<<n, kRowThreads, 0, stream>>>(losses, logits, targets, V);
  CUDA_CHECK_LAST();
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int n, int V, cudaStream_t stream) {
  if (n <= 0) return;
  cross_entropy_backward_kernel<<<n, kRowThreads, 0, stream>>>(dlogits, logits, targets, scale, V);
  CUDA_CHECK_LAST();
}

}  // namespace zt::gpu
