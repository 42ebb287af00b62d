// tensor.h: an owning, typed, shaped block of host memory from the tracked allocator.
// Ops work on raw pointers with shapes in comments (llm.c style); Tensor is how memory is held.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "runtime/alloc.h"
#include "runtime/dtype.h"

namespace zt {

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 16, 32]"

struct Tensor {
  Tensor() = default;
  Tensor(Shape shape, DType dtype, MemCategory cat);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return (size_t)numel_ * dtype_size(dtype_); }
  void* raw() { return buf_.data(); }
  const void* raw() const { return buf_.data(); }
  float* f32();  // checks dtype == fp32
  const float* f32() const;

 private:
  Shape shape_;
  DType dtype_ = DType::fp32;
  int64_t numel_ = 0;
  Buffer<uint8_t> buf_;
};

}  // namespace zt
