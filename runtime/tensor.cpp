// tensor.cpp: Tensor construction and shape helpers.
#include "runtime/tensor.h"

#include "runtime/error.h"

namespace zt {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    ZT_CHECK(d >= 0, "negative dimension in shape ", shape_str(s));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Tensor::Tensor(Shape shape, DType dtype, MemCategory cat)
    : shape_(std::move(shape)), dtype_(dtype), numel_(shape_numel(shape_)) {
  buf_.reset(nbytes(), cat);
}

float* Tensor::f32() {
  ZT_CHECK(dtype_ == DType::fp32, "tensor is ", dtype_name(dtype_), ", not fp32");
  return reinterpret_cast<float*>(buf_.data());
}
const float* Tensor::f32() const {
  ZT_CHECK(dtype_ == DType::fp32, "tensor is ", dtype_name(dtype_), ", not fp32");
  return reinterpret_cast<const float*>(buf_.data());
}

}  // namespace zt
