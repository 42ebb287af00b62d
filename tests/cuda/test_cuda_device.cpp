// Device layer on the GPU (zt_cuda_tests, CUDA builds only): cuBLAS gemm against the CPU gemm in
// all four transpose combinations with odd sizes and padded leading dimensions; bf16 gemm against
// the CPU reference on the same bf16 inputs; copies in every direction; streams and events
// ordering; per-category device memory counters; CUDA_CHECK messages. Every test skips when
// cuda_device_count() == 0, so the suite passes on machines without a GPU.
//
// Tolerances (max |gpu - ref| / max |ref|): fp32 gemm 1e-5 (cuBLAS's default math mode has no
// TF32; only the summation order differs), with TF32 turned on 2e-3; bf16 gemm with fp32 C 1e-4
// (products of bf16 values are exact in fp32, so again only the order differs), bf16 C 1/128 (one
// rounding to bf16).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "runtime/cuda/cuda_check.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

struct GemmCase {
  bool ta, tb;
  int m, n, k, lda, ldb, ldc;
  std::vector<float> A, B, C;
};

GemmCase make_case(bool ta, bool tb, int m, int n, int k, uint64_t seed) {
  GemmCase g{ta, tb, m, n, k, (ta ? m : k) + 3, (tb ? k : n) + 2, n + 5, {}, {}, {}};
  g.A = test::to_float(test::random_vec((size_t)(ta ? k : m) * g.lda, seed));
  g.B = test::to_float(test::random_vec((size_t)(tb ? n : k) * g.ldb, seed + 1));
  g.C = test::to_float(test::random_vec((size_t)m * g.ldc, seed + 2));
  return g;
}

// The GPU gemm against the CPU's in all four transpose combinations, to tol.
void expect_gemm_matches(uint64_t seed, double tol) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      GemmCase g = make_case(ta, tb, 67, 45, 83, seed + 2 * ta + tb);
      std::vector<float> ref = g.C;
      gemm(DeviceKind::cpu, ta, tb, g.m, g.n, g.k, 0.7f, g.A.data(), g.lda, g.B.data(), g.ldb,
           -0.3f, ref.data(), g.ldc);
      DeviceVec<float> A(g.A), B(g.B), C(g.C);
      gemm(kGpu, ta, tb, g.m, g.n, g.k, 0.7f, A.p, g.lda, B.p, g.ldb, -0.3f, C.p, g.ldc);
      EXPECT_LT(test::max_norm_err(C.to_host(), ref), tol)
          << "trans_a=" << ta << " trans_b=" << tb << " tf32=" << gpu_tf32();
    }
}

TEST(CudaGemm, MatchesCpuAllTransposes) {
  SKIP_WITHOUT_GPU();
  expect_gemm_matches(10, 1e-5);
}

// With TF32 on, the same products through the tensor cores: inputs rounded to a 10-bit mantissa
// (2^-11 relative each), k = 83 terms: 2e-3 of the largest.
TEST(CudaGemm, Tf32IsCloseAndOffByDefault) {
  SKIP_WITHOUT_GPU();
  EXPECT_FALSE(gpu_tf32());
  set_gpu_tf32(true);
  expect_gemm_matches(20, 2e-3);
  set_gpu_tf32(false);
}

TEST(CudaGemm, Bf16MatchesCpuReference) {
  SKIP_WITHOUT_GPU();
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (DType ct : {DType::fp32, DType::bf16}) {
        GemmCase g = make_case(ta, tb, 61, 39, 127, 40 + 2 * ta + tb);
        std::vector<uint16_t> a16(g.A.size()), b16(g.B.size()), c16(g.C.size());
        for (size_t i = 0; i < g.A.size(); ++i) a16[i] = fp32_to_bf16(g.A[i]);
        for (size_t i = 0; i < g.B.size(); ++i) b16[i] = fp32_to_bf16(g.B[i]);
        for (size_t i = 0; i < g.C.size(); ++i)
          g.C[i] = bf16_to_fp32(c16[i] = fp32_to_bf16(g.C[i]));
        std::vector<float> ref = g.C;  // fp32 C: the CPU reference with fp32 output
        gemm_bf16(DeviceKind::cpu, ta, tb, g.m, g.n, g.k, 1.5f, a16.data(), g.lda, b16.data(),
                  g.ldb, 0.5f, ref.data(), DType::fp32, g.ldc);
        DeviceVec<uint16_t> A(a16), B(b16);
        std::vector<float> out;
        if (ct == DType::fp32) {
          DeviceVec<float> C(g.C);
          gemm_bf16(kGpu, ta, tb, g.m, g.n, g.k, 1.5f, A.p, g.lda, B.p, g.ldb, 0.5f, C.p, ct,
                    g.ldc);
          out = C.to_host();
        } else {
          DeviceVec<uint16_t> C(c16);
          gemm_bf16(kGpu, ta, tb, g.m, g.n, g.k, 1.5f, A.p, g.lda, B.p, g.ldb, 0.5f, C.p, ct,
                    g.ldc);
          for (uint16_t h : C.to_host()) out.push_back(bf16_to_fp32(h));
        }
        EXPECT_LT(test::max_norm_err(out, ref), ct == DType::fp32 ? 1e-4 : 1.0 / 128)
            << "trans_a=" << ta << " trans_b=" << tb << " c=" << dtype_name(ct);
      }
}

TEST(CudaDevice, CopiesEveryDirectionAndCountsMemory) {
  SKIP_WITHOUT_GPU();
  cuda_select_device(0);
  std::vector<float> src = test::to_float(test::random_vec(4099, 3));
  size_t bytes = src.size() * sizeof(float);
  int64_t before = device_mem_stats(kGpu).current[(int)MemCategory::grads];
  void* d1 = device_alloc(kGpu, bytes, MemCategory::grads);
  void* d2 = device_alloc(kGpu, bytes, MemCategory::grads);
  EXPECT_EQ(device_mem_stats(kGpu).current[(int)MemCategory::grads], before + 2 * (int64_t)bytes);
  std::vector<float> zeros(src.size(), 1.0f);
  device_copy(zeros.data(), DeviceKind::cpu, d1, kGpu, bytes);  // device_alloc zero-fills
  EXPECT_EQ(zeros, std::vector<float>(src.size(), 0.0f));

  device_copy(d1, kGpu, src.data(), DeviceKind::cpu, bytes);  // h2d
  device_copy(d2, kGpu, d1, kGpu, bytes);                     // d2d
  auto* pinned = static_cast<float*>(host_alloc_pinned(bytes, MemCategory::buffers));
  Stream s = create_stream(kGpu);
  device_copy(pinned, DeviceKind::cpu, d2, kGpu, bytes, &s);  // d2h, async
  stream_sync(s);
  EXPECT_EQ(std::vector<float>(pinned, pinned + src.size()), src);
  std::vector<float> back(src.size());
  device_copy(back.data(), DeviceKind::cpu, pinned, DeviceKind::cpu, bytes);  // h2h
  EXPECT_EQ(back, src);
  host_free_pinned(pinned);
  device_free(kGpu, d1);
  device_free(kGpu, d2);
  EXPECT_EQ(device_mem_stats(kGpu).current[(int)MemCategory::grads], before);
  EXPECT_GE(device_mem_stats(kGpu).peak[(int)MemCategory::grads], before + 2 * (int64_t)bytes);
}

// Stream 1 fills X and computes Y = X X (a gemm long enough to still be running); stream 2 waits
// on an event recorded after the gemm and copies Y out. Without the wait, stream 2 would copy
// zeros or a partial result; with it, the copy must equal the CPU product.
TEST(CudaDevice, EventOrdersWorkAcrossStreams) {
  SKIP_WITHOUT_GPU();
  const int n = 1024;
  std::vector<float> x = test::to_float(test::random_vec((size_t)n * n, 9, 0.05));
  std::vector<float> ref((size_t)n * n);
  gemm(DeviceKind::cpu, false, false, n, n, n, 1.0f, x.data(), n, x.data(), n, 0.0f, ref.data(), n);
  size_t bytes = x.size() * sizeof(float);
  auto* X = static_cast<float*>(device_alloc(kGpu, bytes, MemCategory::activations));
  auto* Y = static_cast<float*>(device_alloc(kGpu, bytes, MemCategory::activations));
  auto* Z = static_cast<float*>(device_alloc(kGpu, bytes, MemCategory::activations));
  auto* hx = static_cast<float*>(host_alloc_pinned(bytes, MemCategory::buffers));
  std::copy(x.begin(), x.end(), hx);
  Stream s1 = create_stream(kGpu), s2 = create_stream(kGpu);
  Event ready = create_event(kGpu);
  Event t0 = create_event(kGpu, /*timing=*/true), t1 = create_event(kGpu, /*timing=*/true);
  t0.record(&s1);
  device_copy(X, kGpu, hx, DeviceKind::cpu, bytes, &s1);
  for (int rep = 0; rep < 8; ++rep)  // keep s1 busy for a while; Y ends as X X
    gemm(kGpu, false, false, n, n, n, 1.0f, X, n, X, n, 0.0f, Y, n, &s1);
  ready.record(&s1);
  t1.record(&s1);
  ready.wait(&s2);
  device_copy(Z, kGpu, Y, kGpu, bytes, &s2);
  stream_sync(s2);
  EXPECT_TRUE(ready.done());
  std::vector<float> out(x.size());
  device_copy(out.data(), DeviceKind::cpu, Z, kGpu, bytes);
  EXPECT_LT(test::max_norm_err(out, ref), 1e-5);
  t1.sync();
  EXPECT_GT(event_elapsed_ms(t0, t1), 0.0f);
  host_free_pinned(hx);
  for (void* p : {X, Y, Z}) device_free(kGpu, p);
}

TEST(CudaDevice, ErrorsNameTheCallFileAndLine) {
  SKIP_WITHOUT_GPU();
  try {
    CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL() << "expected a zt::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("test_cuda_device.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cudaSetDevice"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cudaErrorInvalidDevice"), std::string::npos) << msg;
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the failed call left no error behind
  EXPECT_THROW(gemm(kGpu, false, false, 4, 4, 4, 1.0f, nullptr, 2, nullptr, 4, 0.0f, nullptr, 4),
               Error);  // lda < k, caught before cuBLAS
}

}  // namespace
}  // namespace zt
