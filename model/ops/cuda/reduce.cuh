// reduce.cuh: block-wide sum and max for the row kernels (blockDim.x a multiple of 32, at most
// 1024). Every thread gets the result; `scratch` is 32 floats of shared memory, reusable after.
#pragma once
#include <cmath>

#include "runtime/cuda/launch.cuh"

namespace zt::gpu {

constexpr int kRowThreads = 256;  // threads per row in the row kernels

template <class Op>
__device__ inline float warp_reduce(float v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <class Op>
__device__ inline float block_reduce(float v, float* scratch, Op op, float identity) {
  v = warp_reduce(v, op);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x / 32) ? scratch[lane] : identity;
  v = warp_reduce(v, op);
  __syncthreads();  // every warp has read scratch
  return v;
}

struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__device__ inline float block_sum(float v, float* scratch) {
  return block_reduce(v, scratch, Sum{}, 0.0f);
}
__device__ inline float block_max(float v, float* scratch) {
  return block_reduce(v, scratch, Max{}, -INFINITY);
}

}  // namespace zt::gpu
