// cuda_check.h: CUDA_CHECK, CUDA_CHECK_LAST and CUBLAS_CHECK turn a failed CUDA runtime or cuBLAS
// call into a zt::Error naming the file, line, the call, and the library's error name and string:
//   runtime/cuda/device_cuda.cpp:88: CUDA error cudaErrorInvalidValue (invalid argument) in
//   cudaMemcpy(...)
// Only for CUDA builds (-DZT_CUDA=ON); include it from runtime/cuda/ and other CUDA-only files.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "runtime/error.h"

namespace zt {

inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the next check does not report it again
  fail(file, ":", line, ": CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
       ") in ", call);
}

inline void cublas_check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail(file, ":", line, ": cuBLAS error ", cublasGetStatusName(status), " (",
       cublasGetStatusString(status), ") in ", call);
}

}  // namespace zt

#define CUDA_CHECK(call) ::zt::cuda_check((call), #call, __FILE__, __LINE__)
#define CUDA_CHECK_LAST() ::zt::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::zt::cublas_check((call), #call, __FILE__, __LINE__)
