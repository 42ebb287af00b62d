// convert.h: bulk conversions between fp32 and the 16-bit formats (round-to-nearest-even), and the
// few whole-buffer passes mixed precision needs. Loops the compiler vectorises; OpenMP over tiles
// for large buffers.
#pragma once
#include <cstdint>

#include "runtime/dtype.h"

namespace zt {

// dst[i] = (dt) src[i]                                     dt: fp32 (copy), bf16 or fp16
void f32_to(void* dst, DType dt, const float* src, int64_t n);
// dst[i] = (float) src[i]
void to_f32(float* dst, const void* src, DType dt, int64_t n);
// dst[i] += (float) src[i]
void add_to_f32(float* dst, const void* src, DType dt, int64_t n);
// dst[i] = (dt) ((float) dst[i] + src[i]): accumulate fp32 values into a 16-bit (or fp32) buffer
void accumulate_into(void* dst, DType dt, const float* src, int64_t n);
// false when any element is inf or NaN
bool all_finite(const void* x, DType dt, int64_t n);

}  // namespace zt
