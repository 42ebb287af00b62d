// bench_gemm.h: the sgemm rate `zerotrain bench gemm` reports, for reuse by `train`, which
// measures it in the same run to report its achieved fraction of the machine's gemm rate.
#pragma once
#include "runtime/device.h"

namespace zt {

// GFLOP/s (2*m*n*k per call) of a row-major sgemm C[m,n] = A[m,k] B[k,n] on `device`: warm up,
// then time enough back-to-back calls for >= min_seconds, `repeat` times; returns the median.
// threads: OpenBLAS threads for the CPU (restored afterwards); ignored on cuda. bf16: A and B in
// bf16 with fp32 accumulation and an fp32 C (gemm_bf16).
double measure_gemm(DeviceKind device, int m, int n, int k, int threads, int repeat = 1,
                    double min_seconds = 0.2, bool bf16 = false);

// The CPU fp32 figure, as `zerotrain bench gemm --threads T` prints it.
inline double measure_gemm_gflops(int m, int n, int k, int threads) {
  return measure_gemm(DeviceKind::cpu, m, n, k, threads);
}

}  // namespace zt
