// reduce.h: the local elementwise reductions the MPI backend runs on every received chunk.
// AVX-512 (and F16C) intrinsics when the build targets them, plain loops otherwise.
#pragma once
#include <cstddef>

#include "parallel/comm/comm.h"
#include "runtime/dtype.h"

namespace zt {

// dst[i] = a[i] op b[i] for i < n. bf16 and fp16 are widened to fp32, combined, and rounded back
// to nearest-even (as fp32_to_bf16 / fp32_to_fp16 do). dst may be a or b (in place).
// `streaming`: store with non-temporal writes (output not read again soon; ends with a fence).
void reduce_elements(void* dst, const void* a, const void* b, size_t n, DType dt, ReduceOp op,
                     bool streaming = false);

// The plain scalar loop: the vector paths' tails, the build without AVX-512, and the reference
// the tests hold reduce_elements to.
void reduce_elements_reference(void* dst, const void* a, const void* b, size_t n, DType dt,
                               ReduceOp op);

}  // namespace zt
