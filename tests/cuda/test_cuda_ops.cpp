// The model's ops (dense and MoE) and AdamW on the GPU (model/ops/cuda/ops_cuda.h,
// optim/cuda/adamw_cuda.h) against their CPU versions on the same fp32 inputs, forward and
// backward, with odd sizes (rows and widths not multiples of the block or warp). Every test skips
// when no CUDA device is visible.
//
// Error: max |gpu - cpu| / max |cpu| over the output. Tolerances: 1e-5 where only the summation
// order differs (RMSNorm, cross-entropy, embedding's atomic adds, the router's backward, MoE
// dispatch and combine, fused attention against the CPU's kept probabilities); the router's
// picks exactly; 1e-5 for SwiGLU (the CPU's polynomial exp against CUDA's expf, both within
// ~2e-7); 1e-6 for RoPE and AdamW (elementwise, the same formula; FMA contraction may differ);
// fake quantization's values and dw exactly (the same IEEE operations); the 16-bit copy of AdamW
// equal to the GPU's own parameter rounded once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/ops/cuda/ops_cuda.h"
#include "model/ops/ops.h"
#include "model/ops/quant_ops.h"
#include "optim/adamw.h"
#include "optim/cuda/adamw_cuda.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/dtype.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

using fvec = std::vector<float>;

fvec rnd(size_t n, uint64_t seed, double scale = 1.0) {
  return test::to_float(test::random_vec(n, seed, scale));
}

// Infinite when either side holds a NaN or an infinity: an output left unwritten (the tests fill
// them with NaN) or a kernel gone wrong fails every bound.
double rel_err(const fvec& gpu, const fvec& cpu) {
  EXPECT_EQ(gpu.size(), cpu.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (!std::isfinite(gpu[i]) || !std::isfinite(cpu[i])) return INFINITY;
    num = std::max(num, std::fabs((double)gpu[i] - cpu[i]));
    den = std::max(den, std::fabs((double)cpu[i]));
  }
  return den > 0 ? num / den : num;
}

void sync() { CUDA_CHECK(cudaDeviceSynchronize()); }

// A device output starts as NaN, so that an element the kernel does not write fails the check.
fvec nan_like(const fvec& v) { return fvec(v.size(), NAN); }

TEST(CudaOps, RmsNormForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (auto [n, d] : {std::pair{37, 200}, std::pair{5, 1000}, std::pair{64, 31}}) {
    const fvec x = rnd((size_t)n * d, 1), g = rnd(d, 2), dout = rnd((size_t)n * d, 3);
    const fvec dx0 = rnd((size_t)n * d, 4), dg0 = rnd(d, 5);  // backward accumulates
    fvec out(x.size()), rstd(n), dx = dx0, dg = dg0;
    rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), n, d, 1e-5f);
    rmsnorm_backward(dx.data(), dg.data(), dout.data(), x.data(), g.data(), rstd.data(), n, d);
    DeviceVec<float> X(x), G(g), Dout(dout), Out(nan_like(out)), R(nan_like(rstd)), Dx(dx0),
        Dg(dg0);
    gpu::rmsnorm_forward(Out.p, R.p, X.p, G.p, n, d, 1e-5f);
    gpu::rmsnorm_backward(Dx.p, Dg.p, Dout.p, X.p, G.p, R.p, n, d);
    sync();
    EXPECT_LT(rel_err(Out.to_host(), out), 1e-5) << n << "x" << d;
    EXPECT_LT(rel_err(R.to_host(), rstd), 1e-5) << n << "x" << d;
    EXPECT_LT(rel_err(Dx.to_host(), dx), 1e-5) << n << "x" << d;
    EXPECT_LT(rel_err(Dg.to_host(), dg), 1e-5) << n << "x" << d;
  }
}

TEST(CudaOps, SwigluForwardBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 100003;
  const fvec a = rnd(n, 10, 4.0), b = rnd(n, 11), dout = rnd(n, 12);
  const fvec da0 = rnd(n, 13), db0 = rnd(n, 14);
  fvec out(n), da = da0, db = db0;
  swiglu_forward(out.data(), a.data(), b.data(), n);
  swiglu_backward(da.data(), db.data(), dout.data(), a.data(), b.data(), n);
  DeviceVec<float> A(a), B(b), Dout(dout), Out(nan_like(out)), Da(da0), Db(db0);
  gpu::swiglu_forward(Out.p, A.p, B.p, n);
  gpu::swiglu_backward(Da.p, Db.p, Dout.p, A.p, B.p, n);
  sync();
  EXPECT_LT(rel_err(Out.to_host(), out), 1e-5);
  EXPECT_LT(rel_err(Da.to_host(), da), 1e-5);
  EXPECT_LT(rel_err(Db.to_host(), db), 1e-5);
}

TEST(CudaOps, RopeForwardBackwardAtAnOffset) {
  SKIP_WITHOUT_GPU();
  const int B = 3, T = 37, H = 5, dh = 12, pos0 = 1000;
  const size_t sz = (size_t)B * T * H * dh;
  const fvec x = rnd(sz, 20), dout = rnd(sz, 21), dx0 = rnd(sz, 22);
  fvec out(sz), dx = dx0, dxo(sz);
  rope_forward(out.data(), x.data(), B, T, H, dh, 10000.f, pos0);
  rope_backward(dx.data(), dout.data(), B, T, H, dh, 10000.f, pos0);
  rope_backward(dxo.data(), dout.data(), B, T, H, dh, 10000.f, pos0, false);
  DeviceVec<float> X(x), Dout(dout), Out(nan_like(out)), Dx(dx0), Dxo(fvec(sz, NAN)), In(x);
  gpu::rope_forward(Out.p, X.p, B, T, H, dh, 10000.f, pos0);
  gpu::rope_forward(In.p, In.p, B, T, H, dh, 10000.f, pos0);  // in place
  gpu::rope_backward(Dx.p, Dout.p, B, T, H, dh, 10000.f, pos0);
  gpu::rope_backward(Dxo.p, Dout.p, B, T, H, dh, 10000.f, pos0, false);
  sync();
  EXPECT_LT(rel_err(Out.to_host(), out), 1e-6);
  EXPECT_LT(rel_err(In.to_host(), out), 1e-6);
  EXPECT_LT(rel_err(Dx.to_host(), dx), 1e-6);
  EXPECT_LT(rel_err(Dxo.to_host(), dxo), 1e-6);
}

TEST(CudaOps, EmbeddingOfAVocabularySlice) {
  SKIP_WITHOUT_GPU();
  const int n = 301, d = 40, V = 50, v0 = 10, rows = 25;  // tokens outside [10, 35) are not held
  std::vector<int32_t> tok(n);
  for (int i = 0; i < n; ++i) tok[i] = (i * 7 + 3) % V;  // repeats: the gradient adds them
  const fvec table = rnd((size_t)rows * d, 30), dout = rnd((size_t)n * d, 31);
  const fvec dt0 = rnd((size_t)rows * d, 32);
  fvec out((size_t)n * d), dt = dt0;
  embedding_forward(out.data(), tok.data(), table.data(), n, d, v0, rows);
  embedding_backward(dt.data(), dout.data(), tok.data(), n, d, v0, rows);
  DeviceVec<int32_t> Tok(tok);
  DeviceVec<float> Table(table), Dout(dout), Out(nan_like(out)), Dt(dt0);
  gpu::embedding_forward(Out.p, Tok.p, Table.p, n, d, v0, rows);
  gpu::embedding_backward(Dt.p, Dout.p, Tok.p, n, d, v0, rows);
  sync();
  EXPECT_EQ(Out.to_host(), out);  // a copy
  EXPECT_LT(rel_err(Dt.to_host(), dt), 1e-5);
}

TEST(CudaOps, CrossEntropyForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (auto [n, V] : {std::pair{33, 257}, std::pair{4, 5000}}) {
    const fvec logits = rnd((size_t)n * V, 40, 3.0), dl0 = rnd((size_t)n * V, 41, 1e-3);
    std::vector<int32_t> tg(n);
    for (int i = 0; i < n; ++i) tg[i] = (i * 31 + 7) % V;
    fvec losses(n), dl = dl0;
    cross_entropy_forward(losses.data(), logits.data(), tg.data(), n, V);
    cross_entropy_backward(dl.data(), logits.data(), tg.data(), 1.0f / n, n, V);
    DeviceVec<int32_t> Tg(tg);
    DeviceVec<float> L(logits), Losses(nan_like(losses)), Dl(dl0);
    gpu::cross_entropy_forward(Losses.p, L.p, Tg.p, n, V);
    gpu::cross_entropy_backward(Dl.p, L.p, Tg.p, 1.0f / n, n, V);
    sync();
    EXPECT_LT(rel_err(Losses.to_host(), losses), 1e-5) << n << "x" << V;
    EXPECT_LT(rel_err(Dl.to_host(), dl), 1e-5) << n << "x" << V;
  }
}

TEST(CudaOps, CrossEntropyTargetOutsideTheVocabularyIsNaN) {
  SKIP_WITHOUT_GPU();
  const fvec logits = rnd(2 * 7, 42);
  DeviceVec<int32_t> Tg(std::vector<int32_t>{3, 7});
  DeviceVec<float> L(logits), Losses(fvec(2, 0.f));
  gpu::cross_entropy_forward(Losses.p, L.p, Tg.p, 2, 7);
  sync();
  const fvec got = Losses.to_host();
  EXPECT_TRUE(std::isfinite(got[0]));
  EXPECT_TRUE(std::isnan(got[1]));
}

// The fused kernel against the CPU's (which keeps the probabilities): outputs and all three
// gradients, accumulating and overwriting, at a short odd shape and at T = 1024.
TEST(CudaOps, FusedAttentionMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    int B, T, H, dh;
  };
  for (const Shape sh : {Shape{2, 37, 3, 40}, Shape{1, 1024, 2, 64}, Shape{1, 9, 1, 256}}) {
    const auto [B, T, H, dh] = sh;
    const size_t sz = (size_t)B * T * H * dh, rows = (size_t)B * H * T;
    const fvec q = rnd(sz, 90), k = rnd(sz, 91), v = rnd(sz, 92), dout = rnd(sz, 93);
    const fvec dq0 = rnd(sz, 94), dk0 = rnd(sz, 95), dv0 = rnd(sz, 96);
    fvec out(sz), probs(rows * T), dq = dq0, dk = dk0, dv = dv0;
    attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
    attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(),
                       k.data(), v.data(), B, T, H, dh);
    fvec oq(sz, 0.f), ok(sz, 0.f), ov(sz, 0.f);  // what overwriting gives
    attention_backward(oq.data(), ok.data(), ov.data(), dout.data(), probs.data(), q.data(),
                       k.data(), v.data(), B, T, H, dh);
    DeviceVec<float> Q(q), K(k), V(v), Dout(dout), Out(fvec(sz, NAN)), Lse(fvec(rows, NAN)),
        Scratch(fvec(rows, 0.f)), Dq(dq0), Dk(dk0), Dv(dv0), Oq(fvec(sz, NAN)), Ok(fvec(sz, NAN)),
        Ov(fvec(sz, NAN));
    gpu::attention_forward(Out.p, Lse.p, Q.p, K.p, V.p, B, T, H, dh);
    gpu::attention_backward(Dq.p, Dk.p, Dv.p, Dout.p, Out.p, Lse.p, Q.p, K.p, V.p, B, T, H, dh,
                            Scratch.p);
    gpu::attention_backward(Oq.p, Ok.p, Ov.p, Dout.p, Out.p, Lse.p, Q.p, K.p, V.p, B, T, H, dh,
                            Scratch.p, /*accumulate=*/false);
    sync();
    const std::string at = "T " + std::to_string(T) + " dh " + std::to_string(dh);
    EXPECT_LT(rel_err(Out.to_host(), out), 1e-5) << at;
    EXPECT_LT(rel_err(Dq.to_host(), dq), 1e-5) << at;
    EXPECT_LT(rel_err(Dk.to_host(), dk), 1e-5) << at;
    EXPECT_LT(rel_err(Dv.to_host(), dv), 1e-5) << at;
    EXPECT_LT(rel_err(Oq.to_host(), oq), 1e-5) << at;
    EXPECT_LT(rel_err(Ok.to_host(), ok), 1e-5) << at;
    EXPECT_LT(rel_err(Ov.to_host(), ov), 1e-5) << at;
  }
}

// The gradients a caller does not ask for (null) are skipped and the others unchanged: attention
// with dv alone, then dk alone, dh below a warp; RMSNorm with dg alone.
TEST(CudaOps, NullGradientsAreSkipped) {
  SKIP_WITHOUT_GPU();
  const int B = 1, T = 21, H = 2, dh = 12;
  const size_t sz = (size_t)B * T * H * dh, rows = (size_t)B * H * T;
  const fvec q = rnd(sz, 110), k = rnd(sz, 111), v = rnd(sz, 112), dout = rnd(sz, 113);
  fvec out(sz), probs(rows * T), dv(sz, 0.f), dk(sz, 0.f);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
  attention_backward(nullptr, nullptr, dv.data(), dout.data(), probs.data(), q.data(), k.data(),
                     v.data(), B, T, H, dh);
  attention_backward(nullptr, dk.data(), nullptr, dout.data(), probs.data(), q.data(), k.data(),
                     v.data(), B, T, H, dh);
  DeviceVec<float> Q(q), K(k), V(v), Dout(dout), Out(nan_like(out)), Lse(fvec(rows, NAN)),
      Scratch(fvec(rows, 0.f)), Dv(fvec(sz, 0.f)), Dk(fvec(sz, 0.f));
  gpu::attention_forward(Out.p, Lse.p, Q.p, K.p, V.p, B, T, H, dh);
  gpu::attention_backward(nullptr, nullptr, Dv.p, Dout.p, Out.p, Lse.p, Q.p, K.p, V.p, B, T, H, dh,
                          Scratch.p);
  gpu::attention_backward(nullptr, Dk.p, nullptr, Dout.p, Out.p, Lse.p, Q.p, K.p, V.p, B, T, H, dh,
                          Scratch.p);
  const int n = 9, d = 20;
  const fvec x = rnd((size_t)n * d, 114), g = rnd(d, 115), dy = rnd((size_t)n * d, 116);
  fvec y((size_t)n * d), rstd(n), dg(d, 0.f);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), g.data(), n, d, 1e-5f);
  rmsnorm_backward(nullptr, dg.data(), dy.data(), x.data(), g.data(), rstd.data(), n, d);
  DeviceVec<float> X(x), G(g), Dy(dy), R(rstd), Dg(fvec(d, 0.f));
  gpu::rmsnorm_backward(nullptr, Dg.p, Dy.p, X.p, G.p, R.p, n, d);
  sync();
  EXPECT_LT(rel_err(Out.to_host(), out), 1e-5);
  EXPECT_LT(rel_err(Dv.to_host(), dv), 1e-5);
  EXPECT_LT(rel_err(Dk.to_host(), dk), 1e-5);
  EXPECT_LT(rel_err(Dg.to_host(), dg), 1e-5);
}

TEST(CudaOps, RouterPicksAndGradientsAsTheCpu) {
  SKIP_WITHOUT_GPU();
  const int n = 333, E = 8, K = 2;
  for (bool renorm : {true, false}) {
    fvec logits = rnd((size_t)n * E, 70, 2.0);
    for (int e = 0; e < E; ++e) logits[(size_t)5 * E + e] = 0.5f;  // a row of ties
    const fvec dgates = rnd((size_t)n * K, 71), dprobs = rnd((size_t)n * E, 72);
    const fvec dl0 = rnd((size_t)n * E, 73);
    fvec probs((size_t)n * E), gates((size_t)n * K), dl = dl0;
    std::vector<int32_t> idx((size_t)n * K);
    router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, renorm);
    router_backward(dl.data(), dgates.data(), dprobs.data(), probs.data(), idx.data(), n, E, K,
                    renorm);
    DeviceVec<float> L(logits), P(nan_like(probs)), G(nan_like(gates)), Dg(dgates), Dp(dprobs),
        Dl(dl0);
    DeviceVec<int32_t> Idx(std::vector<int32_t>(idx.size(), -1));
    gpu::router_forward(P.p, Idx.p, G.p, L.p, n, E, K, renorm);
    gpu::router_backward(Dl.p, Dg.p, Dp.p, P.p, Idx.p, n, E, K, renorm);
    sync();
    EXPECT_EQ(Idx.to_host(), idx) << "renorm " << renorm;
    EXPECT_LT(rel_err(P.to_host(), probs), 1e-5);
    EXPECT_LT(rel_err(G.to_host(), gates), 1e-5);
    EXPECT_LT(rel_err(Dl.to_host(), dl), 1e-5);
  }
}

TEST(CudaOps, MoeDispatchAndCombineWithDroppedAssignments) {
  SKIP_WITHOUT_GPU();
  const int n = 257, E = 4, K = 2, d = 72;
  std::vector<int32_t> idx((size_t)n * K);
  for (int i = 0; i < n; ++i) {  // expert 0 is popular: capacity drops some of its rows
    idx[(size_t)i * K] = i % 3 == 0 ? 0 : i % E;
    idx[(size_t)i * K + 1] = (idx[(size_t)i * K] + 1 + i % (E - 1)) % E;
  }
  MoePlan plan;
  moe_plan(plan, idx.data(), n, E, K, moe_capacity(1.0, n, K, E));
  ASSERT_GT(plan.dropped, 0);
  const int rows = plan.rows();
  const fvec x = rnd((size_t)n * d, 80), gates = rnd((size_t)n * K, 81);
  const fvec ye = rnd((size_t)rows * d, 82), dout = rnd((size_t)n * d, 83);
  const fvec dx0 = rnd((size_t)n * d, 84), out0 = rnd((size_t)n * d, 85);
  const fvec dye0 = rnd((size_t)rows * d, 86), dg0 = rnd((size_t)n * K, 87);
  fvec xe((size_t)rows * d), dx = dx0, out = out0, dye = dye0, dg = dg0;
  moe_dispatch_forward(xe.data(), x.data(), plan, d);
  moe_dispatch_backward(dx.data(), ye.data(), plan, d);  // ye as the rows' gradient
  moe_combine_forward(out.data(), ye.data(), gates.data(), plan, d);
  moe_combine_backward(dye.data(), dg.data(), dout.data(), ye.data(), gates.data(), plan, d);
  DeviceVec<int32_t> Tok(plan.token), Slot(plan.slot), RowOf(gpu::plan_rows_of(plan));
  const gpu::DevicePlan dp{n, K, rows, Tok.p, Slot.p, RowOf.p};
  DeviceVec<float> X(x), G(gates), Ye(ye), Dout(dout), Xe(fvec(xe.size(), NAN)), Dx(dx0), Out(out0),
      Dye(dye0), Dg(dg0);
  gpu::moe_dispatch_forward(Xe.p, X.p, dp, d);
  gpu::moe_dispatch_backward(Dx.p, Ye.p, dp, d);
  gpu::moe_combine_forward(Out.p, Ye.p, G.p, dp, d);
  gpu::moe_combine_backward(Dye.p, Dg.p, Dout.p, Ye.p, G.p, dp, d);
  sync();
  EXPECT_EQ(Xe.to_host(), xe);  // a copy
  EXPECT_LT(rel_err(Dx.to_host(), dx), 1e-5);
  EXPECT_LT(rel_err(Out.to_host(), out), 1e-5);
  EXPECT_LT(rel_err(Dye.to_host(), dye), 1e-5);
  EXPECT_LT(rel_err(Dg.to_host(), dg), 1e-5);
}

// QAT's fake quantization: the forward values bitwise the CPU's (same IEEE operations, round
// half to even), the LSQ gradients (dw exactly, ds to the summation order), at int2 / int4 /
// int8 with groups and per channel, and activations per row with and without given maxima.
TEST(CudaOps, FakeQuantAsTheCpu) {
  SKIP_WITHOUT_GPU();
  const int in = 96, out = 70;
  for (auto [qp, G] : {std::pair{1, 16}, std::pair{7, 32}, std::pair{127, 96}}) {
    const fvec w = rnd((size_t)in * out, 100), g = rnd((size_t)in * out, 101);
    fvec s((size_t)(in / G) * out);
    init_step_sizes(s.data(), w.data(), in, out, G, qp, /*mse=*/true);
    s[3] = 0.0f;  // a step size that shrank to nothing counts as kMinStep
    const fvec dw0 = rnd(w.size(), 102), ds0 = rnd(s.size(), 103);
    fvec q(w.size()), dw = dw0, ds = ds0;
    fake_quant_weight(q.data(), w.data(), s.data(), in, out, G, qp);
    fake_quant_weight_backward(dw.data(), ds.data(), g.data(), w.data(), s.data(), in, out, G, qp);
    DeviceVec<float> W(w), S(s), Gr(g), Q(fvec(q.size(), NAN)), Dw(dw0), Ds(ds0);
    gpu::fake_quant_weight(Q.p, W.p, S.p, in, out, G, qp);
    gpu::fake_quant_weight_backward(Dw.p, Ds.p, Gr.p, W.p, S.p, in, out, G, qp);
    sync();
    EXPECT_EQ(Q.to_host(), q) << "qp " << qp;
    EXPECT_EQ(Dw.to_host(), dw) << "qp " << qp;
    EXPECT_LT(rel_err(Ds.to_host(), ds), 1e-5) << "qp " << qp;
  }
  const int64_t n = 41;
  const int d = 300;
  fvec x = rnd((size_t)n * d, 104);
  for (int j = 0; j < d; ++j) x[(size_t)7 * d + j] = 0.0f;  // an all-zero row stays as it is
  fvec amax(n), xq = x, xg = x, given(n);
  row_absmax(amax.data(), x.data(), n, d);
  for (int64_t r = 0; r < n; ++r) given[r] = 2.0f * amax[r] + 0.5f;
  fake_quant_rows(xq.data(), n, d);
  fake_quant_rows(xg.data(), n, d, given.data());
  DeviceVec<float> X(x), Amax(fvec(n, NAN)), Xq(x), Xg(x), Given(given);
  gpu::row_absmax(Amax.p, X.p, n, d);
  gpu::fake_quant_rows(Xq.p, n, d);
  gpu::fake_quant_rows(Xg.p, n, d, Given.p);
  sync();
  EXPECT_EQ(Amax.to_host(), amax);
  EXPECT_EQ(Xq.to_host(), xq);
  EXPECT_EQ(Xg.to_host(), xg);
}

TEST(CudaAdamW, MatchesTheReferenceWithClippingAnd16BitCopies) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 300007;
  const AdamWConfig c;
  const float scale = 0.37f;
  const fvec p0 = rnd(n, 50), m0 = rnd(n, 51, 1e-2), v0i = rnd(n, 52, 1e-2), g = rnd(n, 53);
  fvec v0(n);
  for (int64_t i = 0; i < n; ++i) v0[i] = std::fabs(v0i[i]);
  for (DType dt : {DType::bf16, DType::fp16}) {
    fvec p = p0, m = m0, v = v0, gs(n);
    for (int64_t i = 0; i < n; ++i) gs[i] = g[i] * scale;
    for (int64_t step = 1; step <= 3; ++step)
      adamw_step_reference(p.data(), m.data(), v.data(), gs.data(), n, step, 1e-3f, c, true);
    DeviceVec<float> P(p0), M(m0), V(v0), G(g);
    DeviceVec<uint16_t> P16(std::vector<uint16_t>(n, 0));
    for (int64_t step = 1; step <= 3; ++step)
      gpu::adamw_step(P.p, M.p, V.p, G.p, n, step, 1e-3f, c, true, scale, P16.p, dt);
    sync();
    const fvec gp = P.to_host();
    EXPECT_LT(rel_err(gp, p), 1e-6) << dtype_name(dt);
    EXPECT_LT(rel_err(M.to_host(), m), 1e-6) << dtype_name(dt);
    EXPECT_LT(rel_err(V.to_host(), v), 1e-6) << dtype_name(dt);
    const std::vector<uint16_t> h = P16.to_host();
    int64_t off = 0;  // the copy is the GPU's own p rounded once; at most one ulp from the CPU's
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t want = dt == DType::bf16 ? fp32_to_bf16(gp[i]) : fp32_to_fp16(gp[i]);
      off += h[i] != want;
    }
    EXPECT_EQ(off, 0) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace zt
