// test_ops.cpp: every op of model/ops/ops.h as a table of cases (name, operands and shapes, the op,
// its reference) run by one harness (op_harness.h): the reference against finite differences, the
// fp32 op against the reference on odd sizes and on the sizes that take the threaded and tiled
// paths, += accumulation, null gradients. Facts particular to one op (RoPE's rotation formula,
// causality, capacity dropping) are in test_ops_dense.cpp and test_ops_moe.cpp.
#include <gtest/gtest.h>

#include "model/ops/ops.h"
#include "model/ops/reference_dense.h"
#include "model/ops/reference_moe.h"
#include "tests/unit/moe_inputs.h"
#include "tests/unit/op_harness.h"

namespace zt::test {
namespace {

using F = Operands<float>;
using D = Operands<double>;

std::vector<int32_t> ids(int n, int V, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (int32_t)(rng_uniform(seed, 0x70c, i) * V) % V;
  return t;
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> kv) {
  std::string s;
  for (auto [k, v] : kv) {
    s += ' ';
    s += k;
    s += '=';
    s += std::to_string(v);
  }
  return s;
}

// ---- dense ops

OpCase embedding_case(int n, int d, int V, int threads = 1) {
  OpCase c;
  c.name = "embedding" + dims({{"n", n}, {"d", d}, {"V", V}});
  c.operands = {{"table", (int64_t)V * d, Role::in, "dtable"},
                {"out", (int64_t)n * d, Role::out, "dout", 1, 0, false, true},
                {"dout", (int64_t)n * d, Role::dout},
                {"dtable", (int64_t)V * d, Role::grad}};
  c.ints["tok"] = ids(n, V, 4);
  c.forward = [=](F& o) { embedding_forward(o("out"), o.i("tok"), o("table"), n, d); };
  c.backward = [=](F& o) { embedding_backward(o("dtable"), o("dout"), o.i("tok"), n, d); };
  c.ref_forward = [=](D& o) { ref::embedding_forward(o("out"), o.i("tok"), o("table"), n, d); };
  c.ref_backward = [=](D& o) { ref::embedding_backward(o("dtable"), o("dout"), o.i("tok"), n, d); };
  c.finite_differences = (int64_t)V * d < 2000;
  c.threads = threads;
  return c;
}

OpCase rmsnorm_case(int n, int d, int threads = 1) {
  OpCase c;
  c.name = "rmsnorm" + dims({{"n", n}, {"d", d}});
  c.operands = {{"x", (int64_t)n * d, Role::in, "dx", 2.0},
                {"g", d, Role::in, "dg", 0.3, 1.0},
                {"out", (int64_t)n * d, Role::out, "dout"},
                {"rstd", n, Role::saved},
                {"dout", (int64_t)n * d, Role::dout},
                {"dx", (int64_t)n * d, Role::grad},
                {"dg", d, Role::grad}};
  c.forward = [=](F& o) { rmsnorm_forward(o("out"), o("rstd"), o("x"), o("g"), n, d, 1e-5f); };
  c.backward = [=](F& o) {
    rmsnorm_backward(o("dx"), o("dg"), o("dout"), o("x"), o("g"), o("rstd"), n, d);
  };
  c.ref_forward = [=](D& o) {
    ref::rmsnorm_forward(o("out"), o("rstd"), o("x"), o("g"), n, d, 1e-5);
  };
  c.ref_backward = [=](D& o) {
    ref::rmsnorm_backward(o("dx"), o("dg"), o("dout"), o("x"), o("g"), o("rstd"), n, d);
  };
  c.finite_differences = n * d < 200;
  c.nullable_grads = true;
  c.threads = threads;
  return c;
}

OpCase linear_case(int n, int in, int out, bool accumulate) {
  OpCase c;
  c.name = "linear" + dims({{"n", n}, {"in", in}, {"out", out}}) + (accumulate ? " +=" : "");
  c.operands = {{"x", (int64_t)n * in, Role::in, "dx"},   {"w", (int64_t)in * out, Role::in, "dw"},
                {"y", (int64_t)n * out, Role::out, "dy"}, {"dy", (int64_t)n * out, Role::dout},
                {"dx", (int64_t)n * in, Role::grad},      {"dw", (int64_t)in * out, Role::grad}};
  c.forward = [=](F& o) { linear_forward(o("y"), o("x"), o("w"), n, in, out, accumulate); };
  c.backward = [=](F& o) {
    linear_backward(o("dx"), o("dw"), o("dy"), o("x"), o("w"), n, in, out);
  };
  c.ref_forward = [=](D& o) {
    ref::linear_forward(o("y"), o("x"), o("w"), n, in, out, accumulate);
  };
  c.ref_backward = [=](D& o) {
    ref::linear_backward(o("dx"), o("dw"), o("dy"), o("x"), o("w"), n, in, out);
  };
  c.finite_differences = n * in + in * out < 200;
  c.nullable_grads = true;
  return c;
}

// matmul with each transposition: a GEMM's backward is two more GEMMs (linear covers them), so the
// case is forward only.
OpCase matmul_case(int m, int n, int k, bool ta, bool tb, bool accumulate) {
  OpCase c;
  c.name = "matmul" + dims({{"m", m}, {"n", n}, {"k", k}}) + (ta ? " a^T" : "") +
           (tb ? " b^T" : "") + (accumulate ? " +=" : "");
  c.operands = {{"a", (int64_t)m * k, Role::in},
                {"b", (int64_t)k * n, Role::in},
                {"c", (int64_t)m * n, Role::out}};
  c.forward = [=](F& o) { matmul(o("c"), o("a"), o("b"), m, n, k, ta, tb, accumulate); };
  c.ref_forward = [=](D& o) { ref::matmul(o("c"), o("a"), o("b"), m, n, k, ta, tb, accumulate); };
  c.backward = [](F&) {};
  c.ref_backward = [](D&) {};
  return c;
}

OpCase rope_case(int B, int T, int H, int dh, float base, int pos0, int threads = 1) {
  OpCase c;
  const int64_t sz = (int64_t)B * T * H * dh;
  c.name = "rope" + dims({{"B", B}, {"T", T}, {"H", H}, {"dh", dh}, {"pos0", pos0}}) +
           " base=" + std::to_string((int)base);
  c.operands = {{"x", sz, Role::in, "dx"},
                {"out", sz, Role::out, "dout"},
                {"dout", sz, Role::dout},
                {"dx", sz, Role::grad}};
  c.forward = [=](F& o) { rope_forward(o("out"), o("x"), B, T, H, dh, base, pos0); };
  c.backward = [=](F& o) { rope_backward(o("dx"), o("dout"), B, T, H, dh, base, pos0); };
  c.ref_forward = [=](D& o) {
    ref::rope_forward(o("out"), o("x"), B, T, H, dh, (double)base, pos0);
  };
  c.ref_backward = [=](D& o) {
    ref::rope_backward(o("dx"), o("dout"), B, T, H, dh, (double)base, pos0);
  };
  c.finite_differences = sz < 200;
  c.threads = threads;
  return c;
}

OpCase attention_case(int B, int T, int H, int dh, int threads = 1) {
  OpCase c;
  const int64_t sz = (int64_t)B * T * H * dh;
  c.name = "attention" + dims({{"B", B}, {"T", T}, {"H", H}, {"dh", dh}});
  c.operands = {{"q", sz, Role::in, "dq"},
                {"k", sz, Role::in, "dk"},
                {"v", sz, Role::in, "dv"},
                {"out", sz, Role::out, "dout"},
                {"probs", (int64_t)B * H * T * T, Role::saved},
                {"dout", sz, Role::dout},
                {"dq", sz, Role::grad, "", 0.1},
                {"dk", sz, Role::grad, "", 0.1},
                {"dv", sz, Role::grad, "", 0.1}};
  c.forward = [=](F& o) {
    attention_forward(o("out"), o("probs"), o("q"), o("k"), o("v"), B, T, H, dh);
  };
  c.backward = [=](F& o) {
    attention_backward(o("dq"), o("dk"), o("dv"), o("dout"), o("probs"), o("q"), o("k"), o("v"), B,
                       T, H, dh);
  };
  c.ref_forward = [=](D& o) {
    ref::attention_forward(o("out"), o("probs"), o("q"), o("k"), o("v"), B, T, H, dh);
  };
  c.ref_backward = [=](D& o) {
    ref::attention_backward(o("dq"), o("dk"), o("dv"), o("dout"), o("probs"), o("q"), o("k"),
                            o("v"), B, T, H, dh);
  };
  c.finite_differences = sz < 100;
  c.nullable_grads = true;
  c.threads = threads;
  return c;
}

OpCase swiglu_case(int64_t n, double a_scale, int threads = 1) {
  OpCase c;
  c.name = "swiglu" + dims({{"n", n}}) + " a~" + std::to_string((int)a_scale);
  c.operands = {
      {"a", n, Role::in, "da", a_scale}, {"b", n, Role::in, "db"}, {"out", n, Role::out, "dout"},
      {"dout", n, Role::dout},           {"da", n, Role::grad},    {"db", n, Role::grad}};
  c.forward = [=](F& o) { swiglu_forward(o("out"), o("a"), o("b"), n); };
  c.backward = [=](F& o) { swiglu_backward(o("da"), o("db"), o("dout"), o("a"), o("b"), n); };
  c.ref_forward = [=](D& o) { ref::swiglu_forward(o("out"), o("a"), o("b"), n); };
  c.ref_backward = [=](D& o) {
    ref::swiglu_backward(o("da"), o("db"), o("dout"), o("a"), o("b"), n);
  };
  c.finite_differences = n < 100;
  c.nullable_grads = true;
  c.threads = threads;
  return c;
}

// The backward takes one weight for every row's loss (scale = dloss / n for a mean): L = scale *
// sum of the losses, so dlosses is that scale everywhere. dlogits starts at zero: the gradient is
// small next to any other start.
OpCase cross_entropy_case(int n, int V, double spread, double offset, double scale,
                          int threads = 1) {
  OpCase c;
  c.name = "cross_entropy" + dims({{"n", n}, {"V", V}}) + " logits~" + std::to_string((int)spread) +
           "+" + std::to_string((int)offset);
  c.operands = {{"logits", (int64_t)n * V, Role::in, "dlogits", spread, offset},
                {"losses", n, Role::out, "dlosses"},
                {"mean", 1, Role::saved},
                {"dlosses", n, Role::dout, "", 1, scale, true},
                {"dlogits", (int64_t)n * V, Role::grad, "", 0.0}};
  c.ints["targets"] = ids(n, V, 69);
  c.forward = [=](F& o) {
    o("mean")[0] = cross_entropy_forward(o("losses"), o("logits"), o.i("targets"), n, V);
  };
  c.backward = [=](F& o) {
    cross_entropy_backward(o("dlogits"), o("logits"), o.i("targets"), o("dlosses")[0], n, V);
  };
  c.ref_forward = [=](D& o) {
    o("mean")[0] = ref::cross_entropy_forward(o("losses"), o("logits"), o.i("targets"), n, V);
  };
  c.ref_backward = [=](D& o) {
    ref::cross_entropy_backward(o("dlogits"), o("logits"), o.i("targets"), o("dlosses")[0], n, V);
  };
  c.finite_differences = n * V < 100;
  c.threads = threads;
  return c;
}

// ---- MoE ops

std::vector<int32_t> route_separated(int n, int E, int K, uint64_t seed) {
  return route(separated_logits(n, E, seed), n, E, K);
}

OpCase router_case(int n, int E, int K, bool renorm, bool with_dprobs) {
  OpCase c;
  c.name = "router" + dims({{"n", n}, {"E", E}, {"K", K}}) + (renorm ? " renorm" : "") +
           (with_dprobs ? " +dprobs" : "");
  c.operands = {{"logits", (int64_t)n * E, Role::in, "dlogits"},
                {"probs", (int64_t)n * E, Role::out, with_dprobs ? "dprobs" : ""},
                {"gates", (int64_t)n * K, Role::out, "dgates"},
                {"dgates", (int64_t)n * K, Role::dout},
                {"dlogits", (int64_t)n * E, Role::grad}};
  if (with_dprobs) c.operands.push_back({"dprobs", (int64_t)n * E, Role::dout});
  c.ints["idx"].assign((size_t)n * K, 0);
  c.int_outs = {"idx"};
  c.shape_inputs = [=](D& o) { o.v["logits"] = separated_logits(n, E, 11); };
  c.forward = [=](F& o) {
    router_forward(o("probs"), o.i("idx"), o("gates"), o("logits"), n, E, K, renorm);
  };
  c.backward = [=](F& o) {
    router_backward(o("dlogits"), o("dgates"), o("dprobs"), o("probs"), o.i("idx"), n, E, K,
                    renorm);
  };
  c.ref_forward = [=](D& o) {
    ref::router_forward(o("probs"), o.i("idx"), o("gates"), o("logits"), n, E, K, renorm);
  };
  c.ref_backward = [=](D& o) {
    ref::router_backward(o("dlogits"), o("dgates"), o("dprobs"), o("probs"), o.i("idx"), n, E, K,
                         renorm);
  };
  c.grad_tol = 1e-7;
  return c;
}

OpCase aux_loss_case(int n, int E, int K) {
  OpCase c;
  c.name = "moe_aux_loss" + dims({{"n", n}, {"E", E}, {"K", K}});
  c.operands = {{"probs", (int64_t)n * E, Role::in, "dprobs", 0.2, 0.5},
                {"loss", 1, Role::out, "dloss"},
                {"dloss", 1, Role::dout, "", 1, 1.7, true},
                {"dprobs", (int64_t)n * E, Role::grad}};
  c.ints["idx"] = route_separated(n, E, K, 21);
  c.forward = [=](F& o) {
    o("loss")[0] = moe_aux_loss_forward(o("probs"), o.i("idx"), n, E, K, 0.01f);
  };
  c.backward = [=](F& o) {
    moe_aux_loss_backward(o("dprobs"), o.i("idx"), n, E, K, 0.01f, o("dloss")[0]);
  };
  c.ref_forward = [=](D& o) {
    o("loss")[0] = ref::moe_aux_loss_forward(o("probs"), o.i("idx"), n, E, K, 0.01);
  };
  c.ref_backward = [=](D& o) {
    ref::moe_aux_loss_backward(o("dprobs"), o.i("idx"), n, E, K, 0.01, o("dloss")[0]);
  };
  c.grad_tol = 1e-7;
  return c;
}

MoePlan plan_of(int n, int E, int K, int capacity, uint64_t seed) {
  std::vector<int32_t> idx = route_separated(n, E, K, seed);
  MoePlan plan;
  ref::moe_plan(plan, idx.data(), n, E, K, capacity);
  return plan;
}

OpCase dispatch_case(int n, int E, int K, int d, int capacity) {
  OpCase c;
  const MoePlan plan = plan_of(n, E, K, capacity, 31);
  const int64_t rows = plan.rows();
  c.name = "moe_dispatch" + dims({{"n", n}, {"E", E}, {"K", K}, {"d", d}, {"cap", capacity}});
  c.operands = {{"x", (int64_t)n * d, Role::in, "dx"},
                {"xe", rows * d, Role::out, "dxe", 1, 0, false, true},
                {"dxe", rows * d, Role::dout},
                {"dx", (int64_t)n * d, Role::grad}};
  c.forward = [=](F& o) { moe_dispatch_forward(o("xe"), o("x"), plan, d); };
  c.backward = [=](F& o) { moe_dispatch_backward(o("dx"), o("dxe"), plan, d); };
  c.ref_forward = [=](D& o) { ref::moe_dispatch_forward(o("xe"), o("x"), plan, d); };
  c.ref_backward = [=](D& o) { ref::moe_dispatch_backward(o("dx"), o("dxe"), plan, d); };
  c.grad_tol = 1e-7;
  return c;
}

OpCase combine_case(int n, int E, int K, int d, int capacity) {
  OpCase c;
  const MoePlan plan = plan_of(n, E, K, capacity, 41);
  const int64_t rows = plan.rows();
  c.name = "moe_combine" + dims({{"n", n}, {"E", E}, {"K", K}, {"d", d}, {"cap", capacity}});
  c.operands = {{"ye", rows * d, Role::in, "dye"},
                {"gates", (int64_t)n * K, Role::in, "dgates", 0.3, 0.5},
                {"out", (int64_t)n * d, Role::out, "dout"},  // out += ...
                {"dout", (int64_t)n * d, Role::dout},
                {"dye", rows * d, Role::grad},
                {"dgates", (int64_t)n * K, Role::grad}};
  c.forward = [=](F& o) { moe_combine_forward(o("out"), o("ye"), o("gates"), plan, d); };
  c.backward = [=](F& o) {
    moe_combine_backward(o("dye"), o("dgates"), o("dout"), o("ye"), o("gates"), plan, d);
  };
  c.ref_forward = [=](D& o) { ref::moe_combine_forward(o("out"), o("ye"), o("gates"), plan, d); };
  c.ref_backward = [=](D& o) {
    ref::moe_combine_backward(o("dye"), o("dgates"), o("dout"), o("ye"), o("gates"), plan, d);
  };
  c.grad_tol = 1e-7;
  c.nullable_grads = true;
  return c;
}

// ---- the table

std::vector<OpCase> all_cases() {
  std::vector<OpCase> t;
  t.push_back(embedding_case(9, 5, 4));  // V < n: rows shared by several tokens
  t.push_back(embedding_case(7, 13, 37));
  t.push_back(embedding_case(1000, 200, 37, 2));  // threaded, every row hit many times
  t.push_back(rmsnorm_case(4, 7));
  t.push_back(rmsnorm_case(7, 13));
  t.push_back(rmsnorm_case(300, 257, 2));  // threaded rows and column blocks, ragged last block
  for (bool acc : {false, true}) {
    t.push_back(linear_case(3, 4, 5, acc));
    t.push_back(linear_case(7, 13, 37, acc));
    t.push_back(linear_case(1, 1, 1, acc));
    t.push_back(linear_case(129, 67, 33, acc));
  }
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool acc : {false, true}) {
        t.push_back(matmul_case(7, 13, 5, ta, tb, acc));
        t.push_back(matmul_case(65, 33, 129, ta, tb, acc));
      }
  t.push_back(matmul_case(4, 3, 0, false, false, false));  // an empty sum: zeros
  t.push_back(matmul_case(4, 3, 0, true, false, true));    // ... or unchanged
  t.push_back(rope_case(2, 3, 2, 4, 10000.f, 5));
  t.push_back(rope_case(2, 5, 3, 6, 10000.f, 0));
  t.push_back(rope_case(2, 5, 3, 6, 500.f, 3));
  t.push_back(rope_case(2, 300, 4, 64, 10000.f, 1000, 2));  // threaded, positions past 1000
  t.push_back(attention_case(2, 4, 2, 3));
  t.push_back(attention_case(2, 5, 3, 6));
  t.push_back(attention_case(1, 1, 1, 4));
  t.push_back(attention_case(2, 77, 2, 64, 2));   // whole register tiles plus ragged rows
  t.push_back(attention_case(1, 45, 3, 40, 2));   // ragged columns
  t.push_back(attention_case(2, 128, 4, 64, 2));  // the bench shape's T and dh
  t.push_back(swiglu_case(11, 3.0));
  t.push_back(swiglu_case(13, 1.0));
  t.push_back(swiglu_case(1001, 30.0));  // saturated sigmoid both ways
  t.push_back(swiglu_case(100003, 4.0, 2));
  t.push_back(cross_entropy_case(5, 7, 2.0, 0.0, 0.37));
  t.push_back(cross_entropy_case(7, 37, 3.0, 0.0, 0.5 / 7));
  t.push_back(cross_entropy_case(7, 37, 30.0, 1000.0, 0.5 / 7));  // needs the max-subtraction
  t.push_back(cross_entropy_case(300, 257, 2.0, 0.0, 0.5 / 300, 2));
  for (int K : {1, 2, 3, 5})
    for (bool renorm : {false, true})
      for (bool dprobs : {false, true}) t.push_back(router_case(13, 5, K, renorm, dprobs));
  t.push_back(aux_loss_case(7, 4, 2));
  for (int K : {1, 2, 5}) t.push_back(aux_loss_case(13, 5, K));
  for (int cap : {0, 3}) {
    t.push_back(dispatch_case(9, 4, 2, 3, cap));
    t.push_back(combine_case(9, 4, 2, 3, cap));
    for (int K : {1, 2, 5}) {
      t.push_back(dispatch_case(13, 5, K, 7, cap));
      t.push_back(combine_case(13, 5, K, 7, cap));
    }
  }
  return t;
}

class Op : public ::testing::TestWithParam<OpCase> {};

TEST_P(Op, ReferenceGradMatchesFiniteDifferences) { check_grad(GetParam()); }
TEST_P(Op, MatchesReference) { check_against_reference(GetParam(), cpu_backend()); }

std::string case_name(const ::testing::TestParamInfo<OpCase>& info) {
  std::string s = std::to_string(info.index) + "_" + info.param.name;
  for (char& ch : s)
    if (!std::isalnum((unsigned char)ch)) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Table, Op, ::testing::ValuesIn(all_cases()), case_name);

}  // namespace
}  // namespace zt::test
