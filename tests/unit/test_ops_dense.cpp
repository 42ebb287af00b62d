/*
 * test_ops_dense.cpp: the dense ops (embedding, rmsnorm, matmul, rope, attention, swiglu,
 * cross-entropy) against their plain references in model/ops/reference_dense.h.
 * For every op:
 *  - Grad:       the double reference's backward matches central finite differences of
 *                L = sum(forward(x) * w), random w, for every input with a gradient.
 *                Tolerance 1e-6 normalised (the differences themselves are good to ~1e-9).
 *  - MatchesRef: the fp32 op matches the double reference run on the same (fp32-rounded) inputs,
 *                forward and backward, on odd sizes (n=7, d=13, T=5, 3 heads of 6, V=37) and on
 *                sizes that take the threaded / tiled paths. Tolerance 1e-5 normalised (fp32 has
 *                6e-8 epsilon; sums of a few hundred terms stay well inside).
 *  - Accumulates: a second backward call doubles every gradient (the += convention).
 * Plus op-specific facts: RoPE against a direct complex-rotation formula and its pos0 offset,
 * attention's causal mask and probability rows, cross-entropy's out-of-range target error.
 */
#include <gtest/gtest.h>
#include <omp.h>

#include <complex>
#include <functional>
#include <string>

#include "model/ops/ops.h"
#include "model/ops/reference_dense.h"
#include "runtime/error.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

using test::max_norm_err;
using test::numeric_grad;
using test::random_vec;
using test::to_double;
using test::to_float;
using dvec = std::vector<double>;
using fvec = std::vector<float>;

constexpr double grad_tol = 1e-6;  // reference backward vs finite differences
constexpr double fp32_tol = 1e-5;  // fp32 op vs double reference

// rounds through fp32, so the reference sees exactly the fp32 op's inputs
dvec rounded(const dvec& x) { return to_double(to_float(x)); }

std::vector<int32_t> random_tokens(int n, int V, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (int32_t)(rng_uniform(seed, 0x70c, i) * V) % V;
  return t;
}

// Runs the enclosed test code with `n` OpenMP threads (ctest pins OMP_NUM_THREADS=1), restoring
// the previous count afterwards, so the threaded paths are exercised with real concurrency.
struct WithThreads {
  int saved = omp_get_max_threads();
  explicit WithThreads(int n) { omp_set_num_threads(n); }
  ~WithThreads() { omp_set_num_threads(saved); }
};

// ------------------------------------------------------------------------------- embedding

TEST(Embedding, GradMatchesFiniteDifferences) {
  int n = 9, d = 5, V = 4;  // V < n: several tokens share a table row
  auto tok = random_tokens(n, V, 1);
  dvec table = random_vec(V * d, 2), w = random_vec(n * d, 3), out(n * d);
  auto L = [&] {
    ref::embedding_forward(out.data(), tok.data(), table.data(), n, d);
    return test::dot(out, w);
  };
  dvec dtable(V * d, 0.0);
  ref::embedding_backward(dtable.data(), w.data(), tok.data(), n, d);
  EXPECT_LT(max_norm_err(dtable, numeric_grad(L, table)), grad_tol);
}

void embedding_vs_ref(int n, int d, int V) {
  auto tok = random_tokens(n, V, 4);
  dvec table = rounded(random_vec((size_t)V * d, 5)), dout = rounded(random_vec((size_t)n * d, 6));
  dvec dt0 = rounded(random_vec((size_t)V * d, 7));  // gradients start non-zero: += is checked
  dvec rout(n * d), rdt = dt0;
  ref::embedding_forward(rout.data(), tok.data(), table.data(), n, d);
  ref::embedding_backward(rdt.data(), dout.data(), tok.data(), n, d);
  fvec out(n * d), dt = to_float(dt0);
  embedding_forward(out.data(), tok.data(), to_float(table).data(), n, d);
  embedding_backward(dt.data(), to_float(dout).data(), tok.data(), n, d);
  EXPECT_EQ(max_norm_err(out, rout), 0.0) << n << "x" << d;  // a copy is exact
  EXPECT_LT(max_norm_err(dt, rdt), fp32_tol) << n << "x" << d;
}

TEST(Embedding, MatchesRef) {
  embedding_vs_ref(7, 13, 37);
  WithThreads two(2);
  embedding_vs_ref(1000, 200, 37);  // threaded, every table row hit many times
}

TEST(Embedding, BackwardAccumulates) {
  int n = 7, d = 13, V = 5;
  auto tok = random_tokens(n, V, 8);
  fvec dout = to_float(random_vec(n * d, 9)), once(V * d, 0.f), twice(V * d, 0.f);
  embedding_backward(once.data(), dout.data(), tok.data(), n, d);
  embedding_backward(twice.data(), dout.data(), tok.data(), n, d);
  embedding_backward(twice.data(), dout.data(), tok.data(), n, d);
  for (auto& x : once) x *= 2;
  EXPECT_LT(max_norm_err(twice, once), 1e-6);
}

// -------------------------------------------------------------------------------- rmsnorm

TEST(RmsNorm, GradMatchesFiniteDifferences) {
  int n = 4, d = 7;
  double eps = 1e-5;
  dvec x = random_vec(n * d, 10), g = random_vec(d, 11, 0.5, 1.0), w = random_vec(n * d, 12);
  dvec out(n * d), rstd(n);
  auto L = [&] {
    ref::rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), n, d, eps);
    return test::dot(out, w);
  };
  L();
  dvec dx(n * d, 0.0), dg(d, 0.0);
  ref::rmsnorm_backward(dx.data(), dg.data(), w.data(), x.data(), g.data(), rstd.data(), n, d);
  EXPECT_LT(max_norm_err(dx, numeric_grad(L, x)), grad_tol);
  EXPECT_LT(max_norm_err(dg, numeric_grad(L, g)), grad_tol);
}

void rmsnorm_vs_ref(int n, int d) {
  float eps = 1e-5f;
  dvec x = rounded(random_vec((size_t)n * d, 13, 2.0)), g = rounded(random_vec(d, 14, 0.3, 1.0));
  dvec dout = rounded(random_vec((size_t)n * d, 15)), dx0 = rounded(random_vec((size_t)n * d, 16));
  dvec dg0 = rounded(random_vec(d, 17));
  dvec rout(n * d), rrstd(n), rdx = dx0, rdg = dg0;
  ref::rmsnorm_forward(rout.data(), rrstd.data(), x.data(), g.data(), n, d, (double)eps);
  ref::rmsnorm_backward(rdx.data(), rdg.data(), dout.data(), x.data(), g.data(), rrstd.data(), n,
                        d);
  fvec out(n * d), rstd(n), dx = to_float(dx0), dg = to_float(dg0);
  fvec xf = to_float(x), gf = to_float(g), doutf = to_float(dout);
  rmsnorm_forward(out.data(), rstd.data(), xf.data(), gf.data(), n, d, eps);
  rmsnorm_backward(dx.data(), dg.data(), doutf.data(), xf.data(), gf.data(), rstd.data(), n, d);
  EXPECT_LT(max_norm_err(out, rout), fp32_tol) << n << "x" << d;
  EXPECT_LT(max_norm_err(rstd, rrstd), fp32_tol) << n << "x" << d;
  EXPECT_LT(max_norm_err(dx, rdx), fp32_tol) << n << "x" << d;
  EXPECT_LT(max_norm_err(dg, rdg), fp32_tol) << n << "x" << d;
  // a null gradient is skipped, the other one still computed
  fvec dx_only = to_float(dx0), dg_only = to_float(dg0);
  rmsnorm_backward(dx_only.data(), nullptr, doutf.data(), xf.data(), gf.data(), rstd.data(), n, d);
  rmsnorm_backward(nullptr, dg_only.data(), doutf.data(), xf.data(), gf.data(), rstd.data(), n, d);
  EXPECT_EQ(dx_only, dx);
  EXPECT_EQ(dg_only, dg);
}

TEST(RmsNorm, MatchesRef) {
  rmsnorm_vs_ref(7, 13);
  WithThreads two(2);
  rmsnorm_vs_ref(300, 257);  // threaded rows and column blocks, ragged last block
}

TEST(RmsNorm, BackwardAccumulates) {
  int n = 7, d = 13;
  fvec x = to_float(random_vec(n * d, 18)), g = to_float(random_vec(d, 19, 0.3, 1.0));
  fvec dout = to_float(random_vec(n * d, 20)), out(n * d), rstd(n);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), n, d, 1e-5f);
  fvec dx1(n * d, 0.f), dg1(d, 0.f), dx2(n * d, 0.f), dg2(d, 0.f);
  rmsnorm_backward(dx1.data(), dg1.data(), dout.data(), x.data(), g.data(), rstd.data(), n, d);
  for (int rep = 0; rep < 2; ++rep)
    rmsnorm_backward(dx2.data(), dg2.data(), dout.data(), x.data(), g.data(), rstd.data(), n, d);
  for (auto& v : dx1) v *= 2;
  for (auto& v : dg1) v *= 2;
  EXPECT_LT(max_norm_err(dx2, dx1), 1e-6);
  EXPECT_LT(max_norm_err(dg2, dg1), 1e-6);
}

// --------------------------------------------------------------------------------- matmul

TEST(Matmul, GradMatchesFiniteDifferences) {
  int n = 3, in = 4, o = 5;
  dvec x = random_vec(n * in, 21), W = random_vec(in * o, 22), w = random_vec(n * o, 23);
  dvec out(n * o);
  auto L = [&] {
    ref::linear_forward(out.data(), x.data(), W.data(), n, in, o);
    return test::dot(out, w);
  };
  dvec dx(n * in, 0.0), dW(in * o, 0.0);
  ref::linear_backward(dx.data(), dW.data(), w.data(), x.data(), W.data(), n, in, o);
  EXPECT_LT(max_norm_err(dx, numeric_grad(L, x)), grad_tol);
  EXPECT_LT(max_norm_err(dW, numeric_grad(L, W)), grad_tol);
}

void matmul_vs_ref(int n, int in, int o) {
  dvec x = rounded(random_vec((size_t)n * in, 24)), W = rounded(random_vec((size_t)in * o, 25));
  dvec dout = rounded(random_vec((size_t)n * o, 26)), out0 = rounded(random_vec((size_t)n * o, 27));
  dvec dx0 = rounded(random_vec((size_t)n * in, 28)), dW0 = rounded(random_vec((size_t)in * o, 29));
  fvec xf = to_float(x), Wf = to_float(W), doutf = to_float(dout);
  for (bool acc : {false, true}) {
    dvec rout = out0;
    ref::linear_forward(rout.data(), x.data(), W.data(), n, in, o, acc);
    fvec out = to_float(out0);
    linear_forward(out.data(), xf.data(), Wf.data(), n, in, o, acc);
    EXPECT_LT(max_norm_err(out, rout), fp32_tol) << n << "x" << in << "x" << o << " acc " << acc;
  }
  dvec rdx = dx0, rdW = dW0;
  ref::linear_backward(rdx.data(), rdW.data(), dout.data(), x.data(), W.data(), n, in, o);
  fvec dx = to_float(dx0), dW = to_float(dW0);
  linear_backward(dx.data(), dW.data(), doutf.data(), xf.data(), Wf.data(), n, in, o);
  EXPECT_LT(max_norm_err(dx, rdx), fp32_tol) << n << "x" << in << "x" << o;
  EXPECT_LT(max_norm_err(dW, rdW), fp32_tol) << n << "x" << in << "x" << o;
}

TEST(Matmul, MatchesRef) {
  matmul_vs_ref(7, 13, 37);
  matmul_vs_ref(1, 1, 1);
  matmul_vs_ref(129, 67, 33);
}

TEST(Matmul, BackwardAccumulatesAndSkipsNull) {
  int n = 7, in = 13, o = 5;
  fvec x = to_float(random_vec(n * in, 30)), W = to_float(random_vec(in * o, 31));
  fvec dout = to_float(random_vec(n * o, 32));
  fvec dx1(n * in, 0.f), dW1(in * o, 0.f), dx2(n * in, 0.f), dW2(in * o, 0.f);
  linear_backward(dx1.data(), dW1.data(), dout.data(), x.data(), W.data(), n, in, o);
  linear_backward(dx2.data(), nullptr, dout.data(), x.data(), W.data(), n, in, o);
  linear_backward(nullptr, dW2.data(), dout.data(), x.data(), W.data(), n, in, o);
  EXPECT_EQ(dx2, dx1);
  EXPECT_EQ(dW2, dW1);
  linear_backward(dx2.data(), dW2.data(), dout.data(), x.data(), W.data(), n, in, o);
  for (auto& v : dx1) v *= 2;
  for (auto& v : dW1) v *= 2;
  EXPECT_LT(max_norm_err(dx2, dx1), 1e-6);
  EXPECT_LT(max_norm_err(dW2, dW1), 1e-6);
}

// ----------------------------------------------------------------------------------- rope

TEST(Rope, GradMatchesFiniteDifferences) {
  int B = 2, T = 3, H = 2, dh = 4, pos0 = 5;
  size_t sz = (size_t)B * T * H * dh;
  dvec x = random_vec(sz, 33), w = random_vec(sz, 34), out(sz);
  auto L = [&] {
    ref::rope_forward(out.data(), x.data(), B, T, H, dh, 10000.0, pos0);
    return test::dot(out, w);
  };
  dvec dx(sz, 0.0);
  ref::rope_backward(dx.data(), w.data(), B, T, H, dh, 10000.0, pos0);
  EXPECT_LT(max_norm_err(dx, numeric_grad(L, x)), grad_tol);
}

void rope_vs_ref(int B, int T, int H, int dh, float base, int pos0) {
  size_t sz = (size_t)B * T * H * dh;
  dvec x = rounded(random_vec(sz, 35)), dout = rounded(random_vec(sz, 36));
  dvec dx0 = rounded(random_vec(sz, 37)), rout(sz), rdx = dx0;
  ref::rope_forward(rout.data(), x.data(), B, T, H, dh, (double)base, pos0);
  ref::rope_backward(rdx.data(), dout.data(), B, T, H, dh, (double)base, pos0);
  fvec out(sz), dx = to_float(dx0), inplace = to_float(x);
  rope_forward(out.data(), to_float(x).data(), B, T, H, dh, base, pos0);
  rope_forward(inplace.data(), inplace.data(), B, T, H, dh, base, pos0);
  rope_backward(dx.data(), to_float(dout).data(), B, T, H, dh, base, pos0);
  EXPECT_LT(max_norm_err(out, rout), fp32_tol) << T << " pos0 " << pos0;
  EXPECT_EQ(inplace, out);
  EXPECT_LT(max_norm_err(dx, rdx), fp32_tol) << T << " pos0 " << pos0;
}

TEST(Rope, MatchesRef) {
  rope_vs_ref(2, 5, 3, 6, 10000.f, 0);
  rope_vs_ref(2, 5, 3, 6, 500.f, 3);
  WithThreads two(2);
  rope_vs_ref(2, 300, 4, 64, 10000.f, 1000);  // threaded, positions past 1000
}

// The rotation written independently: (u_i + i u_{i+dh/2}) * e^{i theta}, theta = p / base^(2i/dh).
TEST(Rope, MatchesDirectFormula) {
  int dh = 8, half = 4;
  double base = 10000;
  dvec u = rounded(random_vec(dh, 38));
  for (int p : {0, 1, 7, 100, 4095}) {
    dvec rout(dh);
    fvec out(dh);
    ref::rope_forward(rout.data(), u.data(), 1, 1, 1, dh, base, p);
    rope_forward(out.data(), to_float(u).data(), 1, 1, 1, dh, (float)base, p);
    dvec want(dh);
    for (int i = 0; i < half; ++i) {
      auto z = std::complex<double>(u[i], u[i + half]) *
               std::polar(1.0, p / std::pow(base, 2.0 * i / dh));
      want[i] = z.real();
      want[i + half] = z.imag();
    }
    EXPECT_LT(max_norm_err(rout, want), 1e-12) << "position " << p;
    EXPECT_LT(max_norm_err(out, want), fp32_tol) << "position " << p;
  }
}

// Rows t of a sequence started at pos0 = s are rows s + t of the same rows placed in a longer one.
TEST(Rope, Pos0EqualsSlicingALongerSequence) {
  int T = 4, H = 3, dh = 6, s = 9, ld = H * dh;
  fvec long_x = to_float(random_vec((size_t)(s + T) * ld, 39)), long_out(long_x.size());
  rope_forward(long_out.data(), long_x.data(), 1, s + T, H, dh, 10000.f, 0);
  fvec x(long_x.begin() + s * ld, long_x.end()), out(x.size());
  rope_forward(out.data(), x.data(), 1, T, H, dh, 10000.f, s);
  EXPECT_EQ(out, fvec(long_out.begin() + s * ld, long_out.end()));
  dvec dlx = to_double(long_x), dlout(dlx.size()), dx(dlx.begin() + s * ld, dlx.end()),
       dout(dx.size());
  ref::rope_forward(dlout.data(), dlx.data(), 1, s + T, H, dh, 10000.0, 0);
  ref::rope_forward(dout.data(), dx.data(), 1, T, H, dh, 10000.0, s);
  EXPECT_EQ(dout, dvec(dlout.begin() + s * ld, dlout.end()));
}

TEST(Rope, BackwardAccumulatesAndInvertsForward) {
  int B = 2, T = 5, H = 3, dh = 6;
  size_t sz = (size_t)B * T * H * dh;
  fvec x = to_float(random_vec(sz, 40)), y(sz), back(sz, 0.f);
  rope_forward(y.data(), x.data(), B, T, H, dh, 10000.f, 2);
  rope_backward(back.data(), y.data(), B, T, H, dh, 10000.f, 2);  // R^T R x = x
  EXPECT_LT(max_norm_err(back, x), 1e-6);
  rope_backward(back.data(), y.data(), B, T, H, dh, 10000.f, 2);
  for (auto& v : x) v *= 2;
  EXPECT_LT(max_norm_err(back, x), 1e-6);
}

// ------------------------------------------------------------------------------ attention

TEST(Attention, GradMatchesFiniteDifferences) {
  int B = 2, T = 4, H = 2, dh = 3;
  size_t sz = (size_t)B * T * H * dh;
  dvec q = random_vec(sz, 41), k = random_vec(sz, 42), v = random_vec(sz, 43);
  dvec w = random_vec(sz, 44), out(sz), probs((size_t)B * H * T * T);
  auto L = [&] {
    ref::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
    return test::dot(out, w);
  };
  L();
  dvec dq(sz, 0.0), dk(sz, 0.0), dv(sz, 0.0);
  ref::attention_backward(dq.data(), dk.data(), dv.data(), w.data(), probs.data(), q.data(),
                          k.data(), v.data(), B, T, H, dh);
  EXPECT_LT(max_norm_err(dq, numeric_grad(L, q)), grad_tol);
  EXPECT_LT(max_norm_err(dk, numeric_grad(L, k)), grad_tol);
  EXPECT_LT(max_norm_err(dv, numeric_grad(L, v)), grad_tol);
}

void attention_vs_ref(int B, int T, int H, int dh) {
  size_t sz = (size_t)B * T * H * dh, psz = (size_t)B * H * T * T;
  dvec q = rounded(random_vec(sz, 45)), k = rounded(random_vec(sz, 46)),
       v = rounded(random_vec(sz, 47)), dout = rounded(random_vec(sz, 48));
  dvec g0 = rounded(random_vec(sz, 49, 0.1));  // every gradient starts here: += is checked
  dvec rout(sz), rprobs(psz), rdq = g0, rdk = g0, rdv = g0;
  ref::attention_forward(rout.data(), rprobs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
  ref::attention_backward(rdq.data(), rdk.data(), rdv.data(), dout.data(), rprobs.data(), q.data(),
                          k.data(), v.data(), B, T, H, dh);
  fvec qf = to_float(q), kf = to_float(k), vf = to_float(v), doutf = to_float(dout);
  fvec out(sz), probs(psz, -1.f), dq = to_float(g0), dk = dq, dv = dq;
  attention_forward(out.data(), probs.data(), qf.data(), kf.data(), vf.data(), B, T, H, dh);
  attention_backward(dq.data(), dk.data(), dv.data(), doutf.data(), probs.data(), qf.data(),
                     kf.data(), vf.data(), B, T, H, dh);
  std::string at = "B" + std::to_string(B) + " T" + std::to_string(T) + " H" + std::to_string(H) +
                   " dh" + std::to_string(dh);
  EXPECT_LT(max_norm_err(out, rout), fp32_tol) << at;
  EXPECT_LT(max_norm_err(probs, rprobs), fp32_tol) << at;
  EXPECT_LT(max_norm_err(dq, rdq), fp32_tol) << at;
  EXPECT_LT(max_norm_err(dk, rdk), fp32_tol) << at;
  EXPECT_LT(max_norm_err(dv, rdv), fp32_tol) << at;
  // one gradient at a time: the null ones are skipped, the requested one unchanged
  fvec one = to_float(g0);
  attention_backward(one.data(), nullptr, nullptr, doutf.data(), probs.data(), qf.data(), kf.data(),
                     vf.data(), B, T, H, dh);
  EXPECT_EQ(one, dq) << at;
  one = to_float(g0);
  attention_backward(nullptr, one.data(), nullptr, doutf.data(), probs.data(), qf.data(), kf.data(),
                     vf.data(), B, T, H, dh);
  EXPECT_EQ(one, dk) << at;
  one = to_float(g0);
  attention_backward(nullptr, nullptr, one.data(), doutf.data(), probs.data(), qf.data(), kf.data(),
                     vf.data(), B, T, H, dh);
  EXPECT_EQ(one, dv) << at;
}

TEST(Attention, MatchesRef) {
  attention_vs_ref(2, 5, 3, 6);
  attention_vs_ref(1, 1, 1, 4);
  WithThreads two(2);
  attention_vs_ref(2, 77, 2, 64);   // whole register tiles plus ragged rows
  attention_vs_ref(1, 45, 3, 40);   // ragged columns
  attention_vs_ref(2, 128, 4, 64);  // the bench shape's T and dh
}

TEST(Attention, IsCausalAndProbsAreDistributions) {
  int B = 2, T = 9, H = 3, dh = 6, t0 = 4;
  size_t sz = (size_t)B * T * H * dh, ld = H * dh;
  fvec q = to_float(random_vec(sz, 50)), k = to_float(random_vec(sz, 51)),
       v = to_float(random_vec(sz, 52));
  fvec out(sz), probs((size_t)B * H * T * T);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
  for (int bh = 0; bh < B * H; ++bh)
    for (int t = 0; t < T; ++t) {
      double sum = 0;
      for (int j = 0; j < T; ++j) {
        float p = probs[((size_t)bh * T + t) * T + j];
        if (j > t) {
          EXPECT_EQ(p, 0.f) << "future position " << j << " of row " << t;
        }
        EXPECT_GE(p, 0.f);
        sum += p;
      }
      EXPECT_NEAR(sum, 1.0, 1e-6) << "row " << t;
    }
  // change q, k, v at every position after t0: outputs at t <= t0 must not move at all
  fvec q2 = q, k2 = k, v2 = v, out2(sz), probs2(probs.size());
  for (int b = 0; b < B; ++b)
    for (int t = t0 + 1; t < T; ++t)
      for (size_t c = 0; c < ld; ++c) {
        size_t i = ((size_t)b * T + t) * ld + c;
        q2[i] += 1.f, k2[i] -= 2.f, v2[i] *= 3.f;
      }
  attention_forward(out2.data(), probs2.data(), q2.data(), k2.data(), v2.data(), B, T, H, dh);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t <= t0; ++t)
      for (size_t c = 0; c < ld; ++c) {
        size_t i = ((size_t)b * T + t) * ld + c;
        EXPECT_EQ(out2[i], out[i]) << "b " << b << " t " << t;
      }
}

TEST(Attention, BackwardAccumulates) {
  int B = 2, T = 5, H = 3, dh = 6;
  size_t sz = (size_t)B * T * H * dh;
  fvec q = to_float(random_vec(sz, 53)), k = to_float(random_vec(sz, 54)),
       v = to_float(random_vec(sz, 55)), dout = to_float(random_vec(sz, 56));
  fvec out(sz), probs((size_t)B * H * T * T);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
  fvec dq1(sz, 0.f), dk1(sz, 0.f), dv1(sz, 0.f), dq2(sz, 0.f), dk2(sz, 0.f), dv2(sz, 0.f);
  attention_backward(dq1.data(), dk1.data(), dv1.data(), dout.data(), probs.data(), q.data(),
                     k.data(), v.data(), B, T, H, dh);
  for (int rep = 0; rep < 2; ++rep)
    attention_backward(dq2.data(), dk2.data(), dv2.data(), dout.data(), probs.data(), q.data(),
                       k.data(), v.data(), B, T, H, dh);
  for (fvec* g : {&dq1, &dk1, &dv1})
    for (auto& x : *g) x *= 2;
  EXPECT_LT(max_norm_err(dq2, dq1), 1e-6);
  EXPECT_LT(max_norm_err(dk2, dk1), 1e-6);
  EXPECT_LT(max_norm_err(dv2, dv1), 1e-6);
}

// --------------------------------------------------------------------------------- swiglu

TEST(SwiGLU, GradMatchesFiniteDifferences) {
  int n = 11;
  dvec a = random_vec(n, 57, 3.0), b = random_vec(n, 58), w = random_vec(n, 59), out(n);
  auto L = [&] {
    ref::swiglu_forward(out.data(), a.data(), b.data(), n);
    return test::dot(out, w);
  };
  dvec da(n, 0.0), db(n, 0.0);
  ref::swiglu_backward(da.data(), db.data(), w.data(), a.data(), b.data(), n);
  EXPECT_LT(max_norm_err(da, numeric_grad(L, a)), grad_tol);
  EXPECT_LT(max_norm_err(db, numeric_grad(L, b)), grad_tol);
}

void swiglu_vs_ref(int64_t n, double a_scale) {
  dvec a = rounded(random_vec(n, 60, a_scale)), b = rounded(random_vec(n, 61)),
       dout = rounded(random_vec(n, 62)), g0 = rounded(random_vec(n, 63));
  dvec rout(n), rda = g0, rdb = g0;
  ref::swiglu_forward(rout.data(), a.data(), b.data(), n);
  ref::swiglu_backward(rda.data(), rdb.data(), dout.data(), a.data(), b.data(), n);
  fvec af = to_float(a), bf = to_float(b), doutf = to_float(dout);
  fvec out(n), da = to_float(g0), db = da;
  swiglu_forward(out.data(), af.data(), bf.data(), n);
  swiglu_backward(da.data(), db.data(), doutf.data(), af.data(), bf.data(), n);
  EXPECT_LT(max_norm_err(out, rout), fp32_tol) << n << " scale " << a_scale;
  EXPECT_LT(max_norm_err(da, rda), fp32_tol) << n << " scale " << a_scale;
  EXPECT_LT(max_norm_err(db, rdb), fp32_tol) << n << " scale " << a_scale;
  fvec one = to_float(g0);
  swiglu_backward(nullptr, one.data(), doutf.data(), af.data(), bf.data(), n);
  EXPECT_EQ(one, db);
}

TEST(SwiGLU, MatchesRef) {
  swiglu_vs_ref(13, 1.0);
  swiglu_vs_ref(1001, 30.0);  // saturated sigmoid both ways
  WithThreads two(2);
  swiglu_vs_ref(100003, 4.0);
}

TEST(SwiGLU, BackwardAccumulates) {
  int n = 13;
  fvec a = to_float(random_vec(n, 64)), b = to_float(random_vec(n, 65)),
       dout = to_float(random_vec(n, 66));
  fvec da1(n, 0.f), db1(n, 0.f), da2(n, 0.f), db2(n, 0.f);
  swiglu_backward(da1.data(), db1.data(), dout.data(), a.data(), b.data(), n);
  for (int rep = 0; rep < 2; ++rep)
    swiglu_backward(da2.data(), db2.data(), dout.data(), a.data(), b.data(), n);
  for (auto& x : da1) x *= 2;
  for (auto& x : db1) x *= 2;
  EXPECT_LT(max_norm_err(da2, da1), 1e-6);
  EXPECT_LT(max_norm_err(db2, db1), 1e-6);
}

// -------------------------------------------------------------------------- cross-entropy

// The backward only takes a uniform weight (scale) per row, so L = scale * sum_i losses_i.
TEST(CrossEntropy, GradMatchesFiniteDifferences) {
  int n = 5, V = 7;
  double scale = 0.37;
  auto tgt = random_tokens(n, V, 67);
  dvec z = random_vec(n * V, 68, 2.0), losses(n);
  auto L = [&] {
    double mean = ref::cross_entropy_forward(losses.data(), z.data(), tgt.data(), n, V);
    return scale * mean * n;
  };
  dvec dz(n * V, 0.0);
  ref::cross_entropy_backward(dz.data(), z.data(), tgt.data(), scale, n, V);
  EXPECT_LT(max_norm_err(dz, numeric_grad(L, z)), grad_tol);
}

TEST(CrossEntropy, UniformLogitsGiveLogV) {
  int n = 3, V = 37;
  dvec z(n * V, 1.5), losses(n);
  std::vector<int32_t> tgt = {0, 17, 36};
  EXPECT_NEAR(ref::cross_entropy_forward(losses.data(), z.data(), tgt.data(), n, V), std::log(V),
              1e-14);
  fvec zf(n * V, 1.5f), lf(n);
  EXPECT_NEAR(cross_entropy_forward(lf.data(), zf.data(), tgt.data(), n, V), std::log(V), 1e-6);
}

void cross_entropy_vs_ref(int n, int V, double spread, double offset) {
  auto tgt = random_tokens(n, V, 69);
  dvec z = rounded(random_vec((size_t)n * V, 70, spread, offset));
  dvec rl(n), rdz((size_t)n * V, 0.0);  // from zero: the gradient is small next to any start
  double rmean = ref::cross_entropy_forward(rl.data(), z.data(), tgt.data(), n, V);
  ref::cross_entropy_backward(rdz.data(), z.data(), tgt.data(), 0.5 / n, n, V);
  fvec zf = to_float(z), l(n), dz((size_t)n * V, 0.f);
  float mean = cross_entropy_forward(l.data(), zf.data(), tgt.data(), n, V);
  cross_entropy_backward(dz.data(), zf.data(), tgt.data(), 0.5f / n, n, V);
  EXPECT_LT(max_norm_err(l, rl), fp32_tol) << n << "x" << V << " offset " << offset;
  EXPECT_NEAR(mean, rmean, fp32_tol * std::fabs(rmean)) << n << "x" << V;
  EXPECT_LT(max_norm_err(dz, rdz), fp32_tol) << n << "x" << V << " offset " << offset;
}

TEST(CrossEntropy, MatchesRef) {
  cross_entropy_vs_ref(7, 37, 3.0, 0.0);
  cross_entropy_vs_ref(7, 37, 30.0, 1000.0);  // large logits: needs the max-subtraction
  WithThreads two(2);
  cross_entropy_vs_ref(300, 257, 2.0, 0.0);
}

TEST(CrossEntropy, BackwardAccumulates) {
  int n = 7, V = 37;
  auto tgt = random_tokens(n, V, 72);
  fvec z = to_float(random_vec(n * V, 73)), d1(n * V, 0.f), d2(n * V, 0.f);
  cross_entropy_backward(d1.data(), z.data(), tgt.data(), 1.0f / n, n, V);
  for (int rep = 0; rep < 2; ++rep)
    cross_entropy_backward(d2.data(), z.data(), tgt.data(), 1.0f / n, n, V);
  for (auto& x : d1) x *= 2;
  EXPECT_LT(max_norm_err(d2, d1), 1e-6);
}

TEST(CrossEntropy, TargetOutOfRangeNamesItAndItsPosition) {
  int n = 6, V = 37;
  fvec z(n * V, 0.f), losses(n), dz(n * V, 0.f);
  for (int32_t bad : {37, -1, 1000}) {
    std::vector<int32_t> tgt = {0, 1, 2, 3, bad, 5};
    for (int pass = 0; pass < 2; ++pass) {
      try {
        if (pass == 0)
          cross_entropy_forward(losses.data(), z.data(), tgt.data(), n, V);
        else
          cross_entropy_backward(dz.data(), z.data(), tgt.data(), 1.f, n, V);
        ADD_FAILURE() << "no error for target " << bad;
      } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("target " + std::to_string(bad)), std::string::npos) << msg;
        EXPECT_NE(msg.find("position 4"), std::string::npos) << msg;
      }
    }
  }
  EXPECT_THROW(ref::cross_entropy_forward(losses.data(), z.data(),
                                          std::vector<int32_t>{0, 1, 2, 3, 37, 5}.data(), n, V),
               Error);
}

}  // namespace
}  // namespace zt
