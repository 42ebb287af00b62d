// launch.cuh: how zerotrain's elementwise kernels cover n elements (CUDA sources only): a
// grid-stride loop over int64 indices, launched with grid_for(n) blocks of 256 threads.
#pragma once
#include <cstdint>

namespace zt::gpu {

// for (int64_t i = this thread's first; i < n; i += all threads of the grid)
#define ZT_GRID_STRIDE(i, n)                                                \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t)gridDim.x * blockDim.x)

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, at most 8192.
inline int grid_for(int64_t n, int threads = 256) {
  const int64_t b = (n + threads - 1) / threads;
  return (int)(b < 1 ? 1 : b > 8192 ? 8192 : b);
}

}  // namespace zt::gpu
