// device.cpp: the CPU backend of device.h, argument checks, and the dispatch to the CUDA backend.
// CUDA calls sit in `if constexpr (kCuda)` branches, so a CPU build compiles them but never links
// them, and asking a CPU build for cuda is one zt::Error telling how to rebuild.
#include "runtime/device.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include "runtime/error.h"

namespace zt {
namespace {

#ifdef ZT_CUDA
constexpr bool kCuda = true;
#else
constexpr bool kCuda = false;
#endif

[[noreturn]] void no_cuda(const char* what) {
  fail(what, ": this zerotrain binary was built without CUDA (rebuild with cmake -DZT_CUDA=ON)");
}

// true when the work belongs to the CUDA backend; throws for cuda in a CPU build.
bool on_cuda(DeviceKind kind, const char* what) {
  if (kind != DeviceKind::cuda) return false;
  if (!kCuda) no_cuda(what);
  return true;
}

void check_stream(const Stream* stream, DeviceKind kind, const char* what) {
  if (stream && stream->kind != kind)
    fail(what, ": a ", device_name(stream->kind), " stream given for work on ", device_name(kind));
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

void check_gemm(bool trans_a, bool trans_b, int m, int n, int k, int lda, int ldb, int ldc) {
  ZT_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm sizes m=", m, " n=", n, " k=", k);
  ZT_CHECK(lda >= std::max(1, trans_a ? m : k), "gemm lda=", lda, " m=", m, " k=", k,
           " trans_a=", trans_a);
  ZT_CHECK(ldb >= std::max(1, trans_b ? k : n), "gemm ldb=", ldb, " n=", n, " k=", k,
           " trans_b=", trans_b);
  ZT_CHECK(ldc >= std::max(1, n), "gemm ldc=", ldc, " n=", n);
}

// Elements a row-major rows x cols view with leading dimension ld spans.
size_t span(int rows, int cols, int ld) {
  return rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + cols : 0;
}

void widen_bf16(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

}  // namespace

const char* device_name(DeviceKind kind) { return kind == DeviceKind::cuda ? "cuda" : "cpu"; }

DeviceKind device_from_name(const std::string& name) {
  if (name == "cpu") return DeviceKind::cpu;
  if (name == "cuda") {
    if (!kCuda) no_cuda("--device cuda");
    return DeviceKind::cuda;
  }
  fail("unknown device '", name, "' (expected cpu or cuda)");
}

bool cuda_built() { return kCuda; }

int cuda_device_count() {
  if constexpr (kCuda) return cuda_backend::device_count();
  return 0;
}

void cuda_select_device(int local_rank) {
  if (!kCuda) no_cuda("selecting a CUDA device");
  ZT_CHECK(local_rank >= 0, "local rank ", local_rank);
  int count = cuda_device_count();
  if (count == 0) fail("--device cuda, but no CUDA device is visible (no driver or no GPU)");
  if constexpr (kCuda) cuda_backend::select_device(local_rank % count);
}

// memory

void* device_alloc(DeviceKind kind, size_t bytes, MemCategory cat) {
  if (on_cuda(kind, "device_alloc")) {
    if constexpr (kCuda) return cuda_backend::alloc(bytes, cat);
  }
  return zt::alloc(bytes, cat);
}

void device_free(DeviceKind kind, void* p) {
  if (!p) return;
  if (on_cuda(kind, "device_free")) {
    if constexpr (kCuda) return cuda_backend::free(p);
  }
  zt::free(p);
}

MemStats device_mem_stats(DeviceKind kind) {
  if (on_cuda(kind, "device_mem_stats")) {
    if constexpr (kCuda) return cuda_backend::mem_stats();
  }
  return mem_stats();
}

void device_copy(void* dst, DeviceKind dst_kind, const void* src, DeviceKind src_kind, size_t bytes,
                 Stream* stream) {
  if (bytes == 0) return;
  ZT_CHECK(dst && src, "device_copy of ", bytes, " bytes with a null pointer");
  bool cuda = dst_kind == DeviceKind::cuda || src_kind == DeviceKind::cuda ||
              (stream && stream->kind == DeviceKind::cuda);
  if (on_cuda(cuda ? DeviceKind::cuda : DeviceKind::cpu, "device_copy")) {
    if constexpr (kCuda) return cuda_backend::copy(dst, dst_kind, src, src_kind, bytes, stream);
  }
  std::memcpy(dst, src, bytes);
}

void* host_alloc_pinned(size_t bytes, MemCategory cat) {
  if constexpr (kCuda) return cuda_backend::host_alloc_pinned(bytes, cat);
  return zt::alloc(bytes, cat);
}

void host_free_pinned(void* p) {
  if (!p) return;
  if constexpr (kCuda) return cuda_backend::host_free_pinned(p);
  zt::free(p);
}

// streams and events

// Destroying a CUDA stream or event never throws (destructors call these).
[[maybe_unused]] static void release(DeviceKind kind, void*& handle, void (*destroy)(void*)) {
  if (kind == DeviceKind::cuda && handle) destroy(handle);
  handle = nullptr;
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if constexpr (kCuda) release(kind, handle, cuda_backend::stream_destroy);
    kind = o.kind, handle = o.handle;
    o.handle = nullptr;
  }
  return *this;
}

Stream::~Stream() {
  if constexpr (kCuda) release(kind, handle, cuda_backend::stream_destroy);
}

Stream create_stream(DeviceKind kind) {
  if (on_cuda(kind, "create_stream")) {
    if constexpr (kCuda) return Stream(kind, cuda_backend::stream_create());
  }
  return Stream(DeviceKind::cpu, nullptr);
}

void stream_sync(Stream& stream) {
  if (on_cuda(stream.kind, "stream_sync")) {
    if constexpr (kCuda) cuda_backend::stream_sync(stream.handle);
  }
}

Event::Event(Event&& o) noexcept
    : kind(o.kind), handle(o.handle), timing(o.timing), host_ms(o.host_ms) {
  o.handle = nullptr;
}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if constexpr (kCuda) release(kind, handle, cuda_backend::event_destroy);
    kind = o.kind, handle = o.handle, timing = o.timing, host_ms = o.host_ms;
    o.handle = nullptr;
  }
  return *this;
}

Event::~Event() {
  if constexpr (kCuda) release(kind, handle, cuda_backend::event_destroy);
}

Event create_event(DeviceKind kind, bool timing) {
  Event e;
  e.kind = kind;
  e.timing = timing;
  if (on_cuda(kind, "create_event")) {
    if constexpr (kCuda) e.handle = cuda_backend::event_create(timing);
  }
  return e;
}

void Event::record(Stream* stream) {
  check_stream(stream, kind, "Event::record");
  if (on_cuda(kind, "Event::record")) {
    if constexpr (kCuda) cuda_backend::event_record(handle, stream ? stream->handle : nullptr);
  } else if (timing) {
    host_ms = now_ms();
  }
}

void Event::wait(Stream* stream) {
  if (stream && stream->kind == DeviceKind::cpu) return sync();  // cpu work runs on the host
  if (on_cuda(kind, "Event::wait")) {
    if constexpr (kCuda) cuda_backend::event_wait(handle, stream ? stream->handle : nullptr);
  }
}

void Event::sync() {
  if (on_cuda(kind, "Event::sync")) {
    if constexpr (kCuda) cuda_backend::event_sync(handle);
  }
}

bool Event::done() {
  if (on_cuda(kind, "Event::done")) {
    if constexpr (kCuda) return cuda_backend::event_done(handle);
  }
  return true;
}

float event_elapsed_ms(const Event& start, const Event& end) {
  ZT_CHECK(start.timing && end.timing, "event_elapsed_ms needs events created with timing");
  ZT_CHECK(start.kind == end.kind, "event_elapsed_ms between a ", device_name(start.kind),
           " and a ", device_name(end.kind), " event");
  if (on_cuda(start.kind, "event_elapsed_ms")) {
    if constexpr (kCuda) return cuda_backend::event_elapsed_ms(start.handle, end.handle);
  }
  return (float)(end.host_ms - start.host_ms);
}

// gemm

namespace {
std::atomic<bool> g_tf32{false};
}  // namespace

void set_gpu_tf32(bool on) { g_tf32 = on; }
bool gpu_tf32() { return g_tf32; }

void gemm(DeviceKind kind, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc,
          Stream* stream) {
  check_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  check_stream(stream, kind, "gemm");
  if (m == 0 || n == 0) return;
  if (on_cuda(kind, "gemm")) {
    if constexpr (kCuda)
      return cuda_backend::gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                                stream ? stream->handle : nullptr, gpu_tf32());
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(DeviceKind kind, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
               const uint16_t* A, int lda, const uint16_t* B, int ldb, float beta, void* C,
               DType c_dtype, int ldc, Stream* stream) {
  check_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  check_stream(stream, kind, "gemm_bf16");
  if (c_dtype != DType::fp32 && c_dtype != DType::bf16)
    fail("gemm_bf16: C must be fp32 or bf16 (got ", dtype_name(c_dtype), ")");
  if (m == 0 || n == 0) return;
  if (on_cuda(kind, "gemm_bf16")) {
    if constexpr (kCuda)
      return cuda_backend::gemm_bf16(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                     c_dtype, ldc, stream ? stream->handle : nullptr);
  }
  // Reference path: widen A and B (and a bf16 C) to fp32, sgemm, round C back.
  Buffer<float> a(span(trans_a ? k : m, trans_a ? m : k, lda), MemCategory::buffers);
  Buffer<float> b(span(trans_b ? n : k, trans_b ? k : n, ldb), MemCategory::buffers);
  widen_bf16(A, a.data(), a.size());
  widen_bf16(B, b.data(), b.size());
  if (c_dtype == DType::fp32) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a.data(), lda, b.data(), ldb,
                beta, static_cast<float*>(C), ldc);
    return;
  }
  auto* c16 = static_cast<uint16_t*>(C);
  Buffer<float> c(span(m, n, ldc), MemCategory::buffers);
  if (beta != 0.0f) widen_bf16(c16, c.data(), c.size());
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a.data(), lda, b.data(), ldb,
              beta, c.data(), ldc);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) c16[(size_t)i * ldc + j] = fp32_to_bf16(c[(size_t)i * ldc + j]);
}

}  // namespace zt
