// device_cuda.cpp: the CUDA backend of device.h (CUDA runtime API and cuBLAS, no kernels).
//   memory  - cudaMalloc, zeroed, counted per device and category (the host allocator's
//             categories, kept here so runtime/alloc.* stays host-only);
//   pinned  - tracked host memory page-locked with cudaHostRegister, so it stays in mem_stats();
//   streams - blocking cudaStream_t; events cudaEvent_t (cudaEventDisableTiming unless timed);
//   gemm    - cuBLAS with one handle per (thread, device); row-major via the transpose trick.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "runtime/cuda/cuda_check.h"
#include "runtime/device.h"

namespace zt::cuda_backend {
namespace {

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// device memory counters
struct Block {
  size_t bytes;
  int cat;
  int device;
};
struct Counters {
  std::mutex mu;
  std::unordered_map<void*, Block> blocks;
  std::map<int, MemStats> per_device;
};
// Never destroyed, so frees from other static destructors at exit still find it.
Counters& counters() {
  static Counters* c = new Counters;
  return *c;
}

void count(MemStats& s, int cat, int64_t delta) {
  s.current[cat] += delta;
  s.total_current += delta;
  s.peak[cat] = std::max(s.peak[cat], s.current[cat]);
  s.total_peak = std::max(s.total_peak, s.total_current);
}

// ---- pinned host blocks: the tracked allocation each page-aligned pointer came from -------------
struct Pinned {
  void* raw;
  bool registered;
};
std::mutex g_pinned_mu;
std::unordered_map<void*, Pinned>* g_pinned = new std::unordered_map<void*, Pinned>;

cudaMemcpyKind copy_kind(DeviceKind dst, DeviceKind src) {
  bool d = dst == DeviceKind::cuda, s = src == DeviceKind::cuda;
  return d ? (s ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
           : (s ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
}

// cuBLAS handles belong to one device, and setting a shared handle's stream from two threads
// races, so each thread keeps one handle per device, destroyed when the thread exits.
struct Handles {
  std::vector<cublasHandle_t> by_device;
  ~Handles() {
    for (cublasHandle_t h : by_device)
      if (h) cublasDestroy(h);  // errors ignored: nothing to do about them at exit
  }
};

cublasHandle_t handle_for(void* stream) {
  thread_local Handles handles;
  int d = current_device();
  if ((int)handles.by_device.size() <= d) handles.by_device.resize(d + 1, nullptr);
  cublasHandle_t& h = handles.by_device[d];
  if (!h) CUBLAS_CHECK(cublasCreate(&h));
  CUBLAS_CHECK(cublasSetStream(h, static_cast<cudaStream_t>(stream)));
  return h;
}

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {  // no driver, no device: not an error here
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

void select_device(int device) { CUDA_CHECK(cudaSetDevice(device)); }

// memory

void* alloc(size_t bytes, MemCategory cat) {
  int d = current_device();
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (err != cudaSuccess) {
    cudaGetLastError();
    int64_t held = mem_stats().total_current;
    fail("out of CUDA memory on device ", d, " allocating ", bytes, " bytes for ",
         mem_category_name(cat), " (", cudaGetErrorString(err), "; zerotrain holds ", held,
         " bytes there)");
  }
  // Zeroed on the default stream, and waited for: streams made with cudaStreamNonBlocking (for
  // example a communication library's) would not otherwise be ordered after the memset.
  CUDA_CHECK(cudaMemset(p, 0, bytes));
  CUDA_CHECK(cudaStreamSynchronize(nullptr));
  Counters& c = counters();
  std::lock_guard<std::mutex> lock(c.mu);
  c.blocks[p] = Block{bytes, (int)cat, d};
  count(c.per_device[d], (int)cat, (int64_t)bytes);
  return p;
}

void free(void* p) {
  Counters& c = counters();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.blocks.find(p);
    ZT_CHECK(it != c.blocks.end(), "device_free of a pointer device_alloc did not return: ", p);
    count(c.per_device[it->second.device], it->second.cat, -(int64_t)it->second.bytes);
    c.blocks.erase(it);
  }
  cudaError_t err = cudaFree(p);
  if (err == cudaErrorCudartUnloading) return;  // process exit: the driver frees everything
  CUDA_CHECK(err);
}

MemStats mem_stats() {
  int d = current_device();
  Counters& c = counters();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.per_device[d];
}

void copy(void* dst, DeviceKind dst_kind, const void* src, DeviceKind src_kind, size_t bytes,
          Stream* stream) {
  cudaMemcpyKind kind = copy_kind(dst_kind, src_kind);
  if (stream && stream->kind == DeviceKind::cuda) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, static_cast<cudaStream_t>(stream->handle)));
    return;
  }
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
  // cudaMemcpy may return before a device-side write lands (d2d, staged h2d); the contract
  // "complete on return" needs the default stream drained.
  if (kind != cudaMemcpyDeviceToHost) CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

void* host_alloc_pinned(size_t bytes, MemCategory cat) {
  // Register whole pages of our own: two registrations may not share a page.
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t pages_bytes = (std::max<size_t>(bytes, 1) + page - 1) / page * page;
  char* raw = static_cast<char*>(zt::alloc(pages_bytes + page, cat));
  char* p = raw + (page - (uintptr_t)raw % page) % page;
  bool registered = device_count() > 0 &&
                    cudaHostRegister(p, pages_bytes, cudaHostRegisterDefault) == cudaSuccess;
  if (!registered) cudaGetLastError();  // fall back to pageable memory
  std::lock_guard<std::mutex> lock(g_pinned_mu);
  (*g_pinned)[p] = Pinned{raw, registered};
  return p;
}

void host_free_pinned(void* p) {
  Pinned blk;
  {
    std::lock_guard<std::mutex> lock(g_pinned_mu);
    auto it = g_pinned->find(p);
    ZT_CHECK(it != g_pinned->end(), "host_free_pinned of a pointer it did not allocate: ", p);
    blk = it->second;
    g_pinned->erase(it);
  }
  if (blk.registered) {
    cudaError_t err = cudaHostUnregister(p);
    if (err != cudaErrorCudartUnloading) CUDA_CHECK(err);
  }
  zt::free(blk.raw);
}

// streams and events

void* stream_create() {
  cudaStream_t s = nullptr;
  CUDA_CHECK(cudaStreamCreate(&s));
  return s;
}
void stream_destroy(void* s) { cudaStreamDestroy(static_cast<cudaStream_t>(s)); }
void stream_sync(void* s) { CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(s))); }

void* event_create(bool timing) {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return e;
}
void event_destroy(void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); }
void event_record(void* e, void* s) {
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), static_cast<cudaStream_t>(s)));
}
void event_wait(void* e, void* s) {
  CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(s), static_cast<cudaEvent_t>(e), 0));
}
void event_sync(void* e) { CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(e))); }
bool event_done(void* e) {
  cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(e));
  if (err == cudaErrorNotReady) return false;
  CUDA_CHECK(err);
  return true;
}
float event_elapsed_ms(void* start, void* end) {
  float ms = 0;
  CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

// gemm

// cuBLAS is column-major. A row-major [r,c] buffer read column-major is its transpose [c,r], so
// row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T: swap the operands (B
// first), swap m and n, keep each operand's own transpose flag and leading dimension.

void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, void* s, bool tf32) {
  if (!tf32) {
    CUBLAS_CHECK(cublasSgemm(handle_for(s), op(trans_b), op(trans_a), n, m, k, &alpha, B, ldb, A,
                             lda, &beta, C, ldc));
    return;
  }
  CUBLAS_CHECK(cublasGemmEx(handle_for(s), op(trans_b), op(trans_a), n, m, k, &alpha, B, CUDA_R_32F,
                            ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                            CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
}

void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, void* C, DType c_dtype, int ldc,
               void* s) {
  cudaDataType c_type = c_dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  CUBLAS_CHECK(cublasGemmEx(handle_for(s), op(trans_b), op(trans_a), n, m, k, &alpha, B,
                            CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, c_type, ldc,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace zt::cuda_backend
