// alloc.cpp: tracked allocator; a 64-byte header before each block remembers size and category.
#include "runtime/alloc.h"

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/error.h"

namespace zt {
namespace {

constexpr size_t kAlign = 64;
struct Header {
  size_t bytes;
  int cat;
};
static_assert(sizeof(Header) <= kAlign);

std::atomic<int64_t> g_current[(int)MemCategory::count];
std::atomic<int64_t> g_peak[(int)MemCategory::count];
std::atomic<int64_t> g_total;
std::atomic<int64_t> g_total_peak;

void raise_peak(std::atomic<int64_t>& peak, int64_t v) {
  int64_t p = peak.load(std::memory_order_relaxed);
  while (v > p && !peak.compare_exchange_weak(p, v, std::memory_order_relaxed)) {
  }
}

// A training step frees and allocates the same large blocks every step (ZeRO-3's gathered units,
// gradient buffers, activations). glibc's defaults give blocks above 128 KiB (its threshold
// then adapts up to 32 MiB) back to the kernel on free, so every step faulted them in again and
// the kernel cleared each page: 2,850 page faults per rank and step on the bench shape at ZeRO-3,
// about 3% of the step in `perf record`. Blocks up to 32 MiB now come from the heap and freed
// memory stays in the process for the next step (the resident size stays at its peak, which is
// what the step needs anyway); larger blocks are still mapped.
struct KeepFreedMemory {
  KeepFreedMemory() {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  }
} keep_freed_memory;

}  // namespace

const char* mem_category_name(MemCategory c) {
  static const char* names[] = {"params", "grads", "optim", "activations", "buffers"};
  return names[(int)c];
}

void* alloc(size_t bytes, MemCategory cat, Init init) {
  size_t total = kAlign + ((bytes + kAlign - 1) / kAlign) * kAlign;
  void* raw = std::aligned_alloc(kAlign, total);
  if (!raw) fail("out of host memory allocating ", bytes, " bytes for ", mem_category_name(cat));
  if (init == Init::zero)
    std::memset(raw, 0, total);
  else
    std::memset(raw, 0, kAlign);  // the header only
  auto* h = static_cast<Header*>(raw);
  h->bytes = bytes;
  h->cat = (int)cat;
  int c = (int)cat;
  raise_peak(g_peak[c], g_current[c].fetch_add((int64_t)bytes) + (int64_t)bytes);
  raise_peak(g_total_peak, g_total.fetch_add((int64_t)bytes) + (int64_t)bytes);
  return static_cast<char*>(raw) + kAlign;
}

void free(void* p) {
  if (!p) return;
  void* raw = static_cast<char*>(p) - kAlign;
  auto* h = static_cast<Header*>(raw);
  g_current[h->cat].fetch_sub((int64_t)h->bytes);
  g_total.fetch_sub((int64_t)h->bytes);
  std::free(raw);
}

MemStats mem_stats() {
  MemStats s;
  for (int c = 0; c < (int)MemCategory::count; ++c) {
    s.current[c] = g_current[c].load();
    s.peak[c] = g_peak[c].load();
  }
  s.total_current = g_total.load();
  s.total_peak = g_total_peak.load();
  return s;
}

void mem_reset_peaks() {
  for (int c = 0; c < (int)MemCategory::count; ++c) g_peak[c].store(g_current[c].load());
  g_total_peak.store(g_total.load());
}

}  // namespace zt
