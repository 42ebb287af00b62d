// device.h: where memory lives and work runs. One small API over two backends:
//   cpu  - host memory from the tracked allocator, OpenBLAS sgemm, streams that run synchronously;
//   cuda - cudaMalloc'd memory, cuBLAS, cudaStream_t / cudaEvent_t (only with -DZT_CUDA=ON).
// Conventions:
//   - Matrices are ROW-MAJOR: element (i, j) of an r x c matrix with leading dimension ld is
//     p[i * ld + j], ld >= c. gemm computes C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C.
//   - Stream* = nullptr means the default stream. device_copy without a stream is complete when it
//     returns; gemm without a stream is only ordered on the default stream (the host does not
//     wait).
//   - Streams from create_stream are "blocking" CUDA streams: work on the default stream waits for
//     them and they wait for it. Use explicit streams everywhere to get overlap.
//   - Device memory is counted per category like host memory (device_mem_stats), zero-initialised.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/alloc.h"
#include "runtime/dtype.h"

namespace zt {

enum class DeviceKind { cpu, cuda };
const char* device_name(DeviceKind kind);
DeviceKind device_from_name(const std::string& name);  // "cpu" | "cuda"; throws naming the value

bool cuda_built();        // compiled with -DZT_CUDA=ON
int cuda_device_count();  // 0 in CPU builds or without a driver/device; never aborts
void cuda_select_device(int local_rank);  // device local_rank % count; throws if there is none

struct Stream;

// memory

void* device_alloc(DeviceKind kind, size_t bytes, MemCategory cat);  // zero-initialised
void device_free(DeviceKind kind, void* p);                          // nullptr is fine
MemStats device_mem_stats(DeviceKind kind);  // cpu: mem_stats(); cuda: the current device's counts
// Copies bytes from src (on src_kind) to dst (on dst_kind): h2h, h2d, d2h, d2d. With a CUDA
// stream the copy is asynchronous (host buffers should then be pinned).
void device_copy(void* dst, DeviceKind dst_kind, const void* src, DeviceKind src_kind, size_t bytes,
                 Stream* stream = nullptr);

// Page-locked host memory for fast asynchronous copies, counted in the host allocator's category.
// CPU builds (or no CUDA device): ordinary tracked host memory. Free with host_free_pinned.
void* host_alloc_pinned(size_t bytes, MemCategory cat);  // zero-initialised
void host_free_pinned(void* p);

// streams and events

// A queue of work on one device. cpu: every call runs synchronously, so the stream is a no-op.
struct Stream {
  DeviceKind kind = DeviceKind::cpu;
  void* handle = nullptr;  // cudaStream_t when kind == cuda; nullptr = the default stream

  Stream() = default;
  Stream(DeviceKind k, void* h) : kind(k), handle(h) {}
  Stream(Stream&& o) noexcept : kind(o.kind), handle(o.handle) { o.handle = nullptr; }
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();
};
Stream create_stream(DeviceKind kind);
void stream_sync(Stream& stream);  // block the host until all work queued on stream is done

// A point in a stream's work. cpu: work is already done when recorded; with timing the host clock
// is read at record time, so event_elapsed_ms works on both backends.
struct Event {
  DeviceKind kind = DeviceKind::cpu;
  void* handle = nullptr;  // cudaEvent_t when kind == cuda
  bool timing = false;
  double host_ms = 0;  // cpu + timing: steady-clock time of the last record

  Event() = default;
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  void record(Stream* stream = nullptr);  // after all work queued on stream so far
  void wait(Stream* stream = nullptr);    // later work on stream waits for it (host does not)
  void sync();                            // block the host until it has happened
  bool done();                            // has it happened (non-blocking)
};
Event create_event(DeviceKind kind, bool timing = false);      // no timing: cudaEventDisableTiming
float event_elapsed_ms(const Event& start, const Event& end);  // both recorded with timing

// gemm

// Row-major C[m,n] = alpha * op(A) op(B) + beta * C, op(X) = X^T when trans_x.
// A is [m,k] (or [k,m] when trans_a) with leading dimension lda; B is [k,n] (or [n,k]); all
// pointers on `kind`. cpu: cblas_sgemm; cuda: cublasSgemm (the host does not wait).
void gemm(DeviceKind kind, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc,
          Stream* stream = nullptr);
// fp32 GEMMs on the GPU through the TF32 tensor cores (inputs rounded to a 10-bit mantissa, fp32
// accumulation), for every thread: off by default; the device step (parallel/step/) turns it on
// for --precision bf16 / fp16, whose runs round to 16 bits anyway. No effect on the CPU.
void set_gpu_tf32(bool on);
bool gpu_tf32();

// Same with bf16 A and B (raw bits, see dtype.h) and fp32 accumulation; C is fp32 or bf16
// (c_dtype). cuda: cublasGemmEx (CUDA_R_16BF, CUBLAS_COMPUTE_32F); cpu: a reference that widens
// the inputs to fp32 temporaries and calls cblas_sgemm.
void gemm_bf16(DeviceKind kind, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
               const uint16_t* A, int lda, const uint16_t* B, int ldb, float beta, void* C,
               DType c_dtype, int ldc, Stream* stream = nullptr);

// The CUDA backend, defined only in CUDA builds (runtime/cuda/device_cuda.cpp). Call the
// dispatching functions above instead. Stream and event handles are cudaStream_t / cudaEvent_t.
namespace cuda_backend {
int device_count();
void select_device(int device);
void* alloc(size_t bytes, MemCategory cat);
void free(void* p);
MemStats mem_stats();
void copy(void* dst, DeviceKind dst_kind, const void* src, DeviceKind src_kind, size_t bytes,
          Stream* stream);
void* host_alloc_pinned(size_t bytes, MemCategory cat);
void host_free_pinned(void* p);
void* stream_create();
void stream_destroy(void* s);
void stream_sync(void* s);
void* event_create(bool timing);
void event_destroy(void* e);
void event_record(void* e, void* s);
void event_wait(void* e, void* s);
void event_sync(void* e);
bool event_done(void* e);
float event_elapsed_ms(void* start, void* end);
void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, void* s, bool tf32);
void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, void* C, DType c_dtype, int ldc,
               void* s);
}  // namespace cuda_backend

}  // namespace zt
