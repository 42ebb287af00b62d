// test_ops_dense.cpp: facts particular to one dense op, beyond the table of test_ops.cpp: RoPE
// against a direct complex-rotation formula, in place, its pos0 offset and its inverse;
// attention's causal mask and probability rows, and decoding one position over a KV cache;
// cross-entropy of uniform logits and its out-of-range target error; the backward ops' overwrite
// mode; the embedding's tokens outside its table.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <string>

#include "model/ops/ops.h"
#include "model/ops/reference_dense.h"
#include "runtime/error.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

using test::max_norm_err;
using test::random_vec;
using test::to_double;
using test::to_float;
using dvec = std::vector<double>;
using fvec = std::vector<float>;

constexpr double fp32_tol = 1e-5;  // fp32 op vs double reference

dvec rounded(const dvec& x) { return to_double(to_float(x)); }

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

TEST(Rope, InPlaceEqualsOutOfPlace) {
  int B = 2, T = 5, H = 3, dh = 6;
  fvec x = to_float(random_vec((size_t)B * T * H * dh, 35)), out(x.size()), inplace = x;
  rope_forward(out.data(), x.data(), B, T, H, dh, 10000.f, 3);
  rope_forward(inplace.data(), inplace.data(), B, T, H, dh, 10000.f, 3);
  EXPECT_EQ(inplace, out);
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

TEST(Rope, BackwardInvertsForward) {
  int B = 2, T = 5, H = 3, dh = 6;
  size_t sz = (size_t)B * T * H * dh;
  fvec x = to_float(random_vec(sz, 40)), y(sz), back(sz, 0.f);
  rope_forward(y.data(), x.data(), B, T, H, dh, 10000.f, 2);
  rope_backward(back.data(), y.data(), B, T, H, dh, 10000.f, 2);  // R^T R x = x
  EXPECT_LT(max_norm_err(back, x), 1e-6);
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

// Decoding position t over the keys and values of positions 0..t gives row t of the causal
// attention of the whole sequence.
TEST(Attention, DecodeOverTheCacheIsTheCausalRow) {
  int T = 11, H = 3, dh = 8, d = H * dh;
  fvec q = to_float(random_vec((size_t)T * d, 57)), k = to_float(random_vec((size_t)T * d, 58)),
       v = to_float(random_vec((size_t)T * d, 59));
  fvec out((size_t)T * d), probs((size_t)H * T * T), row(d), scores(T);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), 1, T, H, dh);
  for (int t = 0; t < T; ++t) {
    attention_decode_forward(row.data(), q.data() + (size_t)t * d, k.data(), v.data(), t + 1, H, dh,
                             d, scores.data());
    EXPECT_LT(max_norm_err(row.data(), out.data() + (size_t)t * d, d), fp32_tol) << "t " << t;
  }
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

// A token below the table's first row is never held, also for a whole table (rows < 0): a zero
// row and no gradient, never a read or write before the table.
TEST(Embedding, ATokenBelowTheTableIsNotHeld) {
  const int d = 3;
  const fvec table = {1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> tok = {-1, 1};
  fvec out(2 * d, 9.f), dtable(table.size(), 0.f);
  embedding_forward(out.data(), tok.data(), table.data(), 2, d);
  EXPECT_EQ(out, (fvec{0, 0, 0, 4, 5, 6}));
  const fvec dout = {1, 1, 1, 2, 2, 2};
  embedding_backward(dtable.data(), dout.data(), tok.data(), 2, d);
  EXPECT_EQ(dtable, (fvec{0, 0, 0, 2, 2, 2}));
}

// The backward ops' overwrite mode (the block's first product into each scratch buffer) writes
// every element: from a buffer of NaN it gives what accumulating into zeros gives.
TEST(Backward, OverwriteModeEqualsAccumulatingIntoZeros) {
  const int B = 2, T = 19, H = 2, dh = 6, n = B * T, in = 10, od = H * dh;  // T: partial tiles
  const size_t sz = (size_t)n * od;
  auto same = [](const fvec& over, const fvec& acc, const char* what) {
    ASSERT_EQ(over.size(), acc.size());
    for (size_t i = 0; i < acc.size(); ++i) ASSERT_FLOAT_EQ(over[i], acc[i]) << what << " " << i;
  };
  const fvec nan(sz, NAN), dout = to_float(random_vec(sz, 60));
  {  // linear_backward_input: dx [n, in] = dout [n, od] W^T
    const fvec w = to_float(random_vec((size_t)in * od, 61));
    fvec over((size_t)n * in, NAN), acc((size_t)n * in, 0.f);
    linear_backward_input(over.data(), dout.data(), w.data(), n, in, od, false);
    linear_backward_input(acc.data(), dout.data(), w.data(), n, in, od);
    same(over, acc, "linear_backward_input");
    fvec empty(8, NAN);  // no columns: the overwritten dx is zero
    linear_backward_input(empty.data(), nullptr, nullptr, 2, 4, 0, false);
    same(empty, fvec(8, 0.f), "linear_backward_input, out_dim 0");
  }
  {
    fvec over = nan, acc(sz, 0.f);
    rope_backward(over.data(), dout.data(), B, T, H, dh, 10000.f, 3, false);
    rope_backward(acc.data(), dout.data(), B, T, H, dh, 10000.f, 3);
    same(over, acc, "rope_backward");
  }
  const fvec q = to_float(random_vec(sz, 62)), k = to_float(random_vec(sz, 63)),
             v = to_float(random_vec(sz, 64));
  fvec out(sz), probs((size_t)B * H * T * T);
  attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh);
  fvec dq = nan, dk = nan, dv = nan, aq(sz, 0.f), ak(sz, 0.f), av(sz, 0.f);
  attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(),
                     v.data(), B, T, H, dh, false);
  attention_backward(aq.data(), ak.data(), av.data(), dout.data(), probs.data(), q.data(), k.data(),
                     v.data(), B, T, H, dh);
  same(dq, aq, "attention dq");
  same(dk, ak, "attention dk");
  same(dv, av, "attention dv");
}

}  // namespace
}  // namespace zt
