// alloc.h: the tracked allocator. Every byte zerotrain holds goes through zt::alloc with a
// category, so the memory metrics (SPEC section 4 "mem") are read from counters, never computed
// from formulas. Allocations are 64-byte aligned. Counters are per process and thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace zt {

enum class MemCategory : int { params = 0, grads, optim, activations, buffers, count };
const char* mem_category_name(MemCategory c);

// Whether a new block is zeroed: zero unless the caller writes every byte before reading any
// (a gather's or a conversion's destination), where zeroing would be a wasted memory pass.
enum class Init : bool { none, zero };
void* alloc(size_t bytes, MemCategory cat, Init init = Init::zero);
void free(void* p);  // nullptr is fine

struct MemStats {
  int64_t current[(int)MemCategory::count] = {};
  int64_t peak[(int)MemCategory::count] = {};
  int64_t total_current = 0;
  int64_t total_peak = 0;
};
MemStats mem_stats();
void mem_reset_peaks();  // peaks restart from the current values

// Typed owning buffer over the tracked allocator.
template <typename T>
struct Buffer {
  Buffer() = default;
  Buffer(size_t n, MemCategory cat) { reset(n, cat); }
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr, o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      zt::free(ptr_);
      ptr_ = o.ptr_, n_ = o.n_;
      o.ptr_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { zt::free(ptr_); }

  void reset(size_t n, MemCategory cat, Init init = Init::zero) {
    zt::free(ptr_);
    ptr_ = n ? static_cast<T*>(zt::alloc(n * sizeof(T), cat, init)) : nullptr;
    n_ = n;
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return ptr_[i]; }
  const T& operator[](size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace zt
