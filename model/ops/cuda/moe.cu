// moe.cu: the MoE ops on the GPU (ops_cuda.h): the router (one thread per token running
// router_row.h, the CPU's own code), dispatch and combine over a DevicePlan (per token over its
// slots for the gathers into tokens, per row for the scatters to rows; no atomics).
#include <cmath>

#include "model/ops/cuda/ops_cuda.h"
#include "model/ops/cuda/reduce.cuh"
#include "model/ops/router_row.h"
#include "runtime/cuda/cuda_check.h"

namespace zt::gpu {
namespace {

__global__ void router_forward_kernel(float* probs, int32_t* idx, float* gates, const float* logits,
                                      int n, int E, int K, bool renorm) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    router_row_forward(probs + (int64_t)i * E, idx + (int64_t)i * K, gates + (int64_t)i * K,
                       logits + (int64_t)i * E, E, K, renorm);
}

__global__ void router_backward_kernel(float* dlogits, const float* dgates, const float* dprobs,
                                       const float* probs, const int32_t* idx, int n, int E, int K,
                                       bool renorm) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    router_row_backward(dlogits + (int64_t)i * E, dgates ? dgates + (int64_t)i * K : nullptr,
                        dprobs ? dprobs + (int64_t)i * E : nullptr, probs + (int64_t)i * E,
                        idx + (int64_t)i * K, E, K, renorm);
}

__global__ void dispatch_forward_kernel(float* xe, const float* x, DevicePlan plan, int d) {
  ZT_GRID_STRIDE(k, (int64_t)plan.rows * d) xe[k] = x[(int64_t)plan.token[k / d] * d + k % d];
}

// out[t, j] += sum over t's kept slots of (gates ? gates[t, slot] : 1) * rows[row, j]
__global__ void gather_to_tokens_kernel(float* out, const float* rows, const float* gates,
                                        DevicePlan plan, int d) {
  ZT_GRID_STRIDE(k, (int64_t)plan.n * d) {
    const int64_t t = k / d, j = k % d;
    float acc = 0.0f;
    for (int s = 0; s < plan.K; ++s) {
      const int32_t r = plan.row_of[t * plan.K + s];
      if (r >= 0) acc += (gates ? gates[t * plan.K + s] : 1.0f) * rows[(int64_t)r * d + j];
    }
    out[k] += acc;
  }
}

// One block per dispatched row: dye[r] += g dout[t]; dgates[t, slot] += dot(dout[t], ye[r]).
__global__ void combine_backward_kernel(float* dye, float* dgates, const float* dout,
                                        const float* ye, const float* gates, DevicePlan plan,
                                        int d) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t t = plan.token[r], gi = t * plan.K + plan.slot[r];
  const float* dO = dout + t * d;
  const float* y = ye ? ye + r * d : nullptr;
  const float g = dye ? gates[gi] : 0.0f;  // gates are read only for dye, as on the CPU
  float dot = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    if (dye) dye[r * d + j] += g * dO[j];
    if (dgates) dot += dO[j] * y[j];  // ye is read only for the gates' gradient
  }
  if (!dgates) return;  // uniform over the block: no thread waits at the barrier alone
  dot = block_sum(dot, scratch);
  if (threadIdx.x == 0) dgates[gi] += dot;
}

}  // namespace

std::vector<int32_t> plan_rows_of(const MoePlan& plan) {
  std::vector<int32_t> row_of((size_t)plan.n * plan.K, -1);
  for (int r = 0; r < plan.rows(); ++r) row_of[(size_t)plan.token[r] * plan.K + plan.slot[r]] = r;
  return row_of;
}

void router_forward(float* probs, int32_t* idx, float* gates, const float* logits, int n, int E,
                    int K, bool renorm, cudaStream_t stream) {
  ZT_CHECK(K >= 1 && K <= E, "top_k ", K, " with ", E, " experts");
  if (n <= 0) return;
  router_forward_kernel<<<(n + 127) / 128, 128, 0, stream>>>(probs, idx, gates, logits, n, E, K,
                                                             renorm);
  CUDA_CHECK_LAST();
}

void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* probs,
                     const int32_t* idx, int n, int E, int K, bool renorm, cudaStream_t stream) {
  if (!dlogits || n <= 0) return;
  router_backward_kernel<<<(n + 127) / 128, 128, 0, stream>>>(dlogits, dgates, dprobs, probs, idx,
                                                              n, E, K, renorm);
  CUDA_CHECK_LAST();
}

void moe_dispatch_forward(float* xe, const float* x, const DevicePlan& plan, int d,
                          cudaStream_t stream) {
  const int64_t nd = (int64_t)plan.rows * d;
  if (nd <= 0) return;
  dispatch_forward_kernel<<<grid_for(nd), 256, 0, stream>>>(xe, x, plan, d);
  CUDA_CHECK_LAST();
}

void moe_dispatch_backward(float* dx, const float* dxe, const DevicePlan& plan, int d,
                           cudaStream_t stream) {
  const int64_t nd = (int64_t)plan.n * d;
  if (!dx || nd <= 0) return;
  gather_to_tokens_kernel<<<grid_for(nd), 256, 0, stream>>>(dx, dxe, nullptr, plan, d);
  CUDA_CHECK_LAST();
}

void moe_combine_forward(float* out, const float* ye, const float* gates, const DevicePlan& plan,
                         int d, cudaStream_t stream) {
  const int64_t nd = (int64_t)plan.n * d;
  if (nd <= 0) return;
  gather_to_tokens_kernel<<<grid_for(nd), 256, 0, stream>>>(out, ye, gates, plan, d);
  CUDA_CHECK_LAST();
}

void moe_combine_backward(float* dye, float* dgates, const float* dout, const float* ye,
                          const float* gates, const DevicePlan& plan, int d, cudaStream_t stream) {
  if (plan.rows <= 0 || (!dye && !dgates)) return;
  combine_backward_kernel<<<plan.rows, kRowThreads, 0, stream>>>(dye, dgates, dout, ye, gates, plan,
                                                                 d);
  CUDA_CHECK_LAST();
}

}  // namespace zt::gpu
