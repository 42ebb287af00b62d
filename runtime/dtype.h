// dtype.h: element types and the scalar conversions between them (round-to-nearest-even).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace zt {

enum class DType : uint8_t { fp32, bf16, fp16, int8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& s);  // throws naming the value

inline uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
inline float bf16_to_fp32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);

}  // namespace zt
