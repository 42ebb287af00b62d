// adamw_cuda.h: AdamW as one fused kernel on the GPU (CUDA builds only): fp32 master p, m, v and
// gradient g on the device, updated in place in torch's order (adamw.h's AdamWCoeffs, computed
// on the host once per call), g read as g * grad_scale (clipping), and, when p16 is set, the
// updated parameter written to it as bf16 or fp16 (the 16-bit working copy) in the same pass.
// Checked against adamw_step_reference by tests/cuda/test_cuda_ops.cpp on a GPU machine.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "optim/adamw.h"
#include "runtime/dtype.h"

namespace zt::gpu {

void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, int64_t step, float lr,
                const AdamWConfig& c, bool decay, float grad_scale = 1.0f, uint16_t* p16 = nullptr,
                DType p16_dtype = DType::bf16, cudaStream_t stream = nullptr);

}  // namespace zt::gpu
