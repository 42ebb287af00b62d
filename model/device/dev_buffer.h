// dev_buffer.h: an array on one device (runtime/device.h), zeroed, counted in a memory category,
// freed when it goes: host memory from the tracked allocator on the CPU, cudaMalloc on a GPU.
#pragma once
#include <cstddef>

#include "runtime/device.h"

namespace zt {

template <typename T>
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(DevBuf&& o) noexcept : kind_(o.kind_), ptr_(o.ptr_), n_(o.n_) {
    o.ptr_ = nullptr, o.n_ = 0;
  }
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) {
      device_free(kind_, ptr_);
      kind_ = o.kind_, ptr_ = o.ptr_, n_ = o.n_;
      o.ptr_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { device_free(kind_, ptr_); }

  // n elements (zeroed) on `kind`; the old ones are freed.
  void reset(DeviceKind kind, size_t n, MemCategory cat) {
    device_free(kind_, ptr_);
    ptr_ = nullptr, n_ = 0, kind_ = kind;
    if (n) ptr_ = static_cast<T*>(device_alloc(kind, n * sizeof(T), cat));
    n_ = n;
  }
  // At least n elements afterwards (reallocated, zeroed, only when smaller).
  T* room(DeviceKind kind, size_t n, MemCategory cat = MemCategory::activations) {
    if (n_ < n || kind_ != kind) reset(kind, n, cat);
    return ptr_;
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  DeviceKind kind_ = DeviceKind::cpu;
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace zt
