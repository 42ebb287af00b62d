// adamw_cuda.cu: the fused AdamW kernel of adamw_cuda.h, a grid-stride loop over the elements.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "optim/cuda/adamw_cuda.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/launch.cuh"

namespace zt::gpu {
namespace {

__global__ void adamw_kernel(float* p, float* m, float* v, const float* g, int64_t n, AdamWCoeffs k,
                             float grad_scale, uint16_t* p16, bool fp16) {
  ZT_GRID_STRIDE(i, n) {
    const float gi = g[i] * grad_scale;
    const float mi = k.b1 * m[i] + k.a1 * gi;
    const float vi = k.b2 * v[i] + k.a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) * k.inv_sqrt_bc2 + k.eps;
    const float pi = p[i] * k.shrink - k.step_size * (mi / denom);
    p[i] = pi;
    if (p16)
      p16[i] = fp16 ? __half_as_ushort(__float2half_rn(pi))
                    : __bfloat16_as_ushort(__float2bfloat16_rn(pi));
  }
}

}  // namespace

void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, int64_t step, float lr,
                const AdamWConfig& c, bool decay, float grad_scale, uint16_t* p16, DType p16_dtype,
                cudaStream_t stream) {
  ZT_CHECK(!p16 || p16_dtype == DType::bf16 || p16_dtype == DType::fp16,
           "the 16-bit copy of AdamW's parameters is bf16 or fp16");
  if (n <= 0) return;
  const AdamWCoeffs k = adamw_coeffs(step, lr, c, decay);
  adamw_kernel<<<grid_for(n), 256, 0, stream>>>(p, m, v, g, n, k, grad_scale, p16,
                                                p16_dtype == DType::fp16);
  CUDA_CHECK_LAST();
}

}  // namespace zt::gpu
