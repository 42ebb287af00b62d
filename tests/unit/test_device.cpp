// Device layer on the CPU: row-major gemm (all four transpose combinations, odd sizes, padded
// leading dimensions, beta != 0) against a naive double-precision loop; the bf16 reference gemm;
// copies, streams, events, counted allocation; and how a CPU build answers a request for cuda.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/device.h"
#include "runtime/error.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

// C = alpha * op(A) op(B) + beta * C, row-major, in double.
std::vector<double> naive_gemm(bool ta, bool tb, int m, int n, int k, double alpha,
                               const std::vector<float>& A, int lda, const std::vector<float>& B,
                               int ldb, double beta, const std::vector<float>& C, int ldc) {
  std::vector<double> out(C.begin(), C.end());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        double a = ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
        double b = tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
        s += a * b;
      }
      out[(size_t)i * ldc + j] = alpha * s + beta * C[(size_t)i * ldc + j];
    }
  return out;
}

struct GemmCase {
  bool ta, tb;
  int m, n, k, lda, ldb, ldc;
  std::vector<float> A, B, C;
};

// Odd sizes; every leading dimension padded by a few elements so ld mistakes show.
GemmCase make_case(bool ta, bool tb, int m, int n, int k, uint64_t seed) {
  GemmCase g{ta, tb, m, n, k, (ta ? m : k) + 3, (tb ? k : n) + 2, n + 5, {}, {}, {}};
  g.A = test::to_float(test::random_vec((size_t)(ta ? k : m) * g.lda, seed));
  g.B = test::to_float(test::random_vec((size_t)(tb ? n : k) * g.ldb, seed + 1));
  g.C = test::to_float(test::random_vec((size_t)m * g.ldc, seed + 2));
  return g;
}

TEST(Gemm, CpuMatchesNaiveLoopAllTransposes) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      GemmCase g = make_case(ta, tb, 37, 23, 51, 100 + 2 * ta + tb);
      auto ref = naive_gemm(ta, tb, g.m, g.n, g.k, 0.7, g.A, g.lda, g.B, g.ldb, -0.3, g.C, g.ldc);
      std::vector<float> c = g.C;
      gemm(DeviceKind::cpu, ta, tb, g.m, g.n, g.k, 0.7f, g.A.data(), g.lda, g.B.data(), g.ldb,
           -0.3f, c.data(), g.ldc);
      EXPECT_LT(test::max_norm_err(c, ref), 1e-5) << "trans_a=" << ta << " trans_b=" << tb;
    }
}

TEST(Gemm, CpuBetaZeroIgnoresOldC) {
  GemmCase g = make_case(false, true, 5, 7, 3, 7);
  std::vector<float> c(g.C.size(), std::nanf(""));
  auto ref = naive_gemm(false, true, 5, 7, 3, 1.0, g.A, g.lda, g.B, g.ldb, 0.0,
                        std::vector<float>(c.size(), 0.0f), g.ldc);
  gemm(DeviceKind::cpu, false, true, 5, 7, 3, 1.0f, g.A.data(), g.lda, g.B.data(), g.ldb, 0.0f,
       c.data(), g.ldc);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 7; ++j) EXPECT_NEAR(c[i * g.ldc + j], ref[i * g.ldc + j], 1e-5);
}

TEST(Gemm, RejectsTooSmallLeadingDimension) {
  std::vector<float> a(12), b(12), c(12);
  EXPECT_THROW(gemm(DeviceKind::cpu, false, false, 3, 4, 3, 1.0f, a.data(), 2, b.data(), 4, 0.0f,
                    c.data(), 4),
               Error);
}

TEST(Gemm, Bf16CpuReferenceMatchesRoundedInputs) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (DType ct : {DType::fp32, DType::bf16}) {
        GemmCase g = make_case(ta, tb, 19, 13, 29, 300 + 2 * ta + tb);
        std::vector<uint16_t> a16(g.A.size()), b16(g.B.size()), c16(g.C.size());
        for (size_t i = 0; i < g.A.size(); ++i)
          g.A[i] = bf16_to_fp32(a16[i] = fp32_to_bf16(g.A[i]));
        for (size_t i = 0; i < g.B.size(); ++i)
          g.B[i] = bf16_to_fp32(b16[i] = fp32_to_bf16(g.B[i]));
        for (size_t i = 0; i < g.C.size(); ++i)
          g.C[i] = bf16_to_fp32(c16[i] = fp32_to_bf16(g.C[i]));
        auto ref = naive_gemm(ta, tb, g.m, g.n, g.k, 1.5, g.A, g.lda, g.B, g.ldb, 0.5, g.C, g.ldc);
        std::vector<float> out = g.C;
        void* c = ct == DType::fp32 ? (void*)out.data() : (void*)c16.data();
        gemm_bf16(DeviceKind::cpu, ta, tb, g.m, g.n, g.k, 1.5f, a16.data(), g.lda, b16.data(),
                  g.ldb, 0.5f, c, ct, g.ldc);
        if (ct == DType::bf16)
          for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_fp32(c16[i]);
        // fp32 C: only summation order differs; bf16 C: one rounding to 8 mantissa bits.
        EXPECT_LT(test::max_norm_err(out, ref), ct == DType::fp32 ? 1e-5 : 1.0 / 128)
            << "trans_a=" << ta << " trans_b=" << tb << " c=" << dtype_name(ct);
      }
}

TEST(Device, CopyHostToHostWithAndWithoutStream) {
  std::vector<float> src = test::to_float(test::random_vec(1001, 5));
  std::vector<float> dst(1001, 0.0f);
  device_copy(dst.data(), DeviceKind::cpu, src.data(), DeviceKind::cpu, src.size() * 4);
  EXPECT_EQ(dst, src);
  Stream s = create_stream(DeviceKind::cpu);
  std::vector<float> dst2(1001, 0.0f);
  device_copy(dst2.data(), DeviceKind::cpu, src.data(), DeviceKind::cpu, src.size() * 4, &s);
  stream_sync(s);
  EXPECT_EQ(dst2, src);
}

TEST(Device, AllocIsZeroedAndCountedByCategory) {
  int64_t before = device_mem_stats(DeviceKind::cpu).current[(int)MemCategory::activations];
  auto* p = static_cast<float*>(device_alloc(DeviceKind::cpu, 4000, MemCategory::activations));
  EXPECT_EQ(device_mem_stats(DeviceKind::cpu).current[(int)MemCategory::activations],
            before + 4000);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(p[i], 0.0f);
  device_free(DeviceKind::cpu, p);
  EXPECT_EQ(device_mem_stats(DeviceKind::cpu).current[(int)MemCategory::activations], before);

  int64_t b0 = mem_stats().current[(int)MemCategory::buffers];
  void* pinned = host_alloc_pinned(100, MemCategory::buffers);
  EXPECT_GE(mem_stats().current[(int)MemCategory::buffers], b0 + 100);  // pinned may add pages
  host_free_pinned(pinned);
  EXPECT_EQ(mem_stats().current[(int)MemCategory::buffers], b0);
}

TEST(Device, CpuEventsAreDoneAndTimeTheHost) {
  Stream s = create_stream(DeviceKind::cpu);
  Event start = create_event(DeviceKind::cpu, /*timing=*/true);
  Event end = create_event(DeviceKind::cpu, /*timing=*/true);
  start.record(&s);
  volatile double x = 0;
  for (int i = 0; i < 100000; ++i) x = x + i;
  end.record(&s);
  end.wait(&s);
  end.sync();
  EXPECT_TRUE(end.done());
  EXPECT_GE(event_elapsed_ms(start, end), 0.0f);
  Event untimed = create_event(DeviceKind::cpu);
  EXPECT_THROW(event_elapsed_ms(start, untimed), Error);
}

TEST(Device, NamesParse) {
  EXPECT_EQ(device_from_name("cpu"), DeviceKind::cpu);
  EXPECT_STREQ(device_name(DeviceKind::cuda), "cuda");
  try {
    device_from_name("tpu");
    FAIL() << "expected a zt::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tpu"), std::string::npos) << e.what();
  }
}

#ifdef ZT_CUDA
TEST(Device, CudaBuildKnowsCuda) {
  EXPECT_TRUE(cuda_built());
  EXPECT_EQ(device_from_name("cuda"), DeviceKind::cuda);
  EXPECT_GE(cuda_device_count(), 0);
}
#else
TEST(Device, CpuBuildRejectsCudaNamingTheBuildOption) {
  EXPECT_FALSE(cuda_built());
  EXPECT_EQ(cuda_device_count(), 0);
  for (auto f : {+[] { device_from_name("cuda"); }, +[] { cuda_select_device(0); },
                 +[] { device_alloc(DeviceKind::cuda, 16, MemCategory::buffers); },
                 +[] { create_stream(DeviceKind::cuda); }}) {
    try {
      f();
      FAIL() << "expected a zt::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ZT_CUDA"), std::string::npos) << e.what();
    }
  }
}
#endif

}  // namespace
}  // namespace zt
