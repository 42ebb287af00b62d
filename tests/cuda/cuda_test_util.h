// cuda_test_util.h: what the GPU tests (zt_cuda_tests) share: the skip when no device is visible
// and a device copy of a host vector.
#pragma once
#include <gtest/gtest.h>

#include <vector>

#include "runtime/device.h"

namespace zt {

#define SKIP_WITHOUT_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible"

inline constexpr DeviceKind kGpu = DeviceKind::cuda;

// Device copy of a host vector, freed on scope exit.
template <typename T>
struct DeviceVec {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceVec(const std::vector<T>& host)
      : p(static_cast<T*>(device_alloc(kGpu, host.size() * sizeof(T), MemCategory::buffers))),
        n(host.size()) {
    device_copy(p, kGpu, host.data(), DeviceKind::cpu, n * sizeof(T));
  }
  ~DeviceVec() { device_free(kGpu, p); }
  std::vector<T> to_host() const {
    std::vector<T> h(n);
    device_copy(h.data(), DeviceKind::cpu, p, kGpu, n * sizeof(T));
    return h;
  }
};

}  // namespace zt
