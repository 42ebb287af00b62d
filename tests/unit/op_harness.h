// op_harness.h: one harness for every op of model/ops (ggml's test-backend-ops is the model).
//
// An OpCase is one op at one size: its named operands (inputs, outputs, what forward saves for
// backward, the gradients backward accumulates, integer operands such as token ids), the op on a
// backend (fp32) and its plain reference (double, model/ops/reference_*.h). The harness fills the
// inputs with deterministic random values, rounded to fp32 so both sides see the same numbers,
// and checks:
//   Grad         the reference's backward against central finite differences of
//                L = sum over outputs of dot(out, dout), for every input with a gradient
//                (grad_tol, normalised error; skipped for large cases);
//   MatchesRef   the op's outputs, saved tensors, integer outputs and gradients against the
//                reference's, backward starting from non-zero gradients so += is checked (tol);
//   Accumulates  backward twice adds twice the increment;
//   One at a time (nullable_grads) each gradient alone, the others null, equals the full run.
// Backends: the op side runs on a Backend; today the CPU (host buffers). A GPU backend supplies
// its own buffers and the same cases run on it unchanged.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/unit/grad_check.h"

namespace zt::test {

enum class Role {
  in,     // input, random; its gradient (if any) is the operand named in `grad`
  out,    // written by forward (= or += onto its random start); dout is the operand `grad`
  saved,  // written by forward, read by backward (rstd, attention probabilities)
  grad,   // accumulated by backward; starts random (+= is checked)
  dout,   // the gradient of an output, an input of backward (random, or `fill` when set)
};

struct Operand {
  Operand(std::string n, int64_t sz, Role r = Role::in, std::string g = "", double sc = 1.0,
          double mn = 0.0, bool fl = false, bool ex = false)
      : name(std::move(n)),
        size(sz),
        role(r),
        grad(std::move(g)),
        scale(sc),
        mean(mn),
        fill(fl),
        exact(ex) {}
  std::string name;
  int64_t size;
  Role role;
  std::string grad;    // in: its gradient's name; out: its dout's name ("" = none)
  double scale, mean;  // random values: mean + scale * N(0, 1)
  bool fill;           // dout: every element `mean` (an op taking one scale)
  bool exact;          // out: the op must give the reference's bits (a copy)
};

// The operands of one run, by name, on scalar type T; integer operands are shared by both sides.
template <typename T>
struct Operands {
  std::map<std::string, std::vector<T>> v;
  std::map<std::string, std::vector<int32_t>> ints;
  T* operator()(const std::string& name) {  // nullptr when absent (a null gradient)
    auto it = v.find(name);
    return it == v.end() ? nullptr : it->second.data();
  }
  int32_t* i(const std::string& name) { return ints.at(name).data(); }
};

struct OpCase {
  std::string name;  // "rmsnorm n=7 d=13"
  std::vector<Operand> operands;
  std::map<std::string, std::vector<int32_t>> ints;  // integer inputs (token ids, expert picks)
  std::vector<std::string> int_outs;                 // integer operands forward writes
  std::function<void(Operands<float>&)> forward, backward;           // the op
  std::function<void(Operands<double>&)> ref_forward, ref_backward;  // the reference
  // Makes the reference's inputs (before rounding), when random values do not do: separated
  // router logits, say. Called after the random fill.
  std::function<void(Operands<double>&)> shape_inputs;
  double tol = 1e-5;       // op vs reference, normalised
  double grad_tol = 1e-6;  // reference backward vs finite differences, normalised
  bool finite_differences = true;
  bool nullable_grads = false;
  int threads = 1;
  uint64_t seed = 1;
};

// Where the op side's buffers live and how its results come back (the CPU: they are the host's).
struct Backend {
  const char* name;
  std::function<bool()> available;
  std::function<void(const std::function<void(Operands<float>&)>&, Operands<float>&)> run;
};
inline const Backend& cpu_backend() {
  static const Backend b{
      "cpu", [] { return true; },
      [](const std::function<void(Operands<float>&)>& f, Operands<float>& o) { f(o); }};
  return b;
}

namespace harness {

inline std::vector<double> fd_rounded(std::vector<double> x) {
  for (double& e : x) e = (double)(float)e;
  return x;
}

// Fresh operands: inputs and gradient / output starts random (deterministic per case and name).
inline Operands<double> make_operands(const OpCase& c) {
  Operands<double> o;
  o.ints = c.ints;
  uint64_t salt = c.seed * 1000;
  for (const Operand& p : c.operands) {
    ++salt;
    std::vector<double>& x = o.v[p.name];
    if (p.role == Role::saved) {
      x.assign(p.size, 0.0);
    } else if (p.role == Role::dout && p.fill) {
      x.assign(p.size, p.mean);
    } else {
      x = random_vec(p.size, salt, p.scale, p.mean);
    }
  }
  if (c.shape_inputs) c.shape_inputs(o);
  for (auto& [name, x] : o.v) x = fd_rounded(x);
  return o;
}

inline Operands<float> to_float_operands(const Operands<double>& d) {
  Operands<float> f;
  f.ints = d.ints;
  for (const auto& [name, x] : d.v) f.v[name] = to_float(x);
  return f;
}

inline std::vector<const Operand*> with_role(const OpCase& c, Role r) {
  std::vector<const Operand*> out;
  for (const Operand& p : c.operands)
    if (p.role == r) out.push_back(&p);
  return out;
}

struct Threads {  // the case's OpenMP thread count for its duration (ctest pins 1)
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};

}  // namespace harness

inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

// The reference's backward against finite differences of L = sum dot(out, dout).
inline void check_grad(const OpCase& c) {
  using namespace harness;
  if (!c.finite_differences) return;
  Operands<double> base = make_operands(c);
  for (const Operand* in : with_role(c, Role::in)) {
    if (in->grad.empty()) continue;
    Operands<double> o = base;
    auto L = [&] {
      Operands<double> run = o;  // outputs restart from their starting values
      c.ref_forward(run);
      double s = 0;
      for (const Operand* out : with_role(c, Role::out))
        if (!out->grad.empty()) s += dot(run.v[out->name], run.v[out->grad]);
      return s;
    };
    Operands<double> an = o;
    c.ref_forward(an);
    for (const Operand* g : with_role(c, Role::grad))
      std::fill(an.v[g->name].begin(), an.v[g->name].end(), 0.0);
    c.ref_backward(an);
    std::vector<double> num = numeric_grad(L, o.v[in->name]);
    EXPECT_LT(max_norm_err(an.v[in->grad], num), c.grad_tol) << c.name << ": d" << in->name;
  }
}

// The op on `b` against the reference: outputs, saved tensors, integer outputs, gradients;
// backward twice; each gradient alone.
inline void check_against_reference(const OpCase& c, const Backend& b = cpu_backend()) {
  using namespace harness;
  Threads threads(c.threads);
  Operands<double> ref = make_operands(c);
  Operands<float> op = to_float_operands(ref);
  const Operands<float> start = op;
  c.ref_forward(ref);
  c.ref_backward(ref);
  b.run(c.forward, op);
  const Operands<float> after_forward = op;
  b.run(c.backward, op);
  const std::string on = std::string(" on ") + b.name;
  for (const Operand& p : c.operands) {
    if (p.role == Role::in || p.role == Role::dout) continue;
    const double err = max_norm_err(op.v[p.name], ref.v[p.name]);
    if (p.exact)
      EXPECT_EQ(err, 0.0) << c.name << ": " << p.name << on;
    else
      EXPECT_LT(err, c.tol) << c.name << ": " << p.name << on;
  }
  for (const std::string& n : c.int_outs) EXPECT_EQ(op.ints[n], ref.ints[n]) << c.name << ": " << n;

  // Backward twice from zero gradients gives twice what once does (+= rather than =).
  const std::vector<const Operand*> grads = with_role(c, Role::grad);
  Operands<float> once = after_forward;
  for (const Operand* g : grads) std::fill(once.v[g->name].begin(), once.v[g->name].end(), 0.f);
  Operands<float> twice = once;
  b.run(c.backward, once);
  b.run(c.backward, twice);
  b.run(c.backward, twice);
  for (const Operand* g : grads) {
    std::vector<float> doubled = once.v[g->name];
    for (float& x : doubled) x *= 2;
    EXPECT_LT(max_norm_err(twice.v[g->name], doubled), 1e-6)
        << c.name << ": backward twice, " << g->name << on;
  }
  if (!c.nullable_grads) return;
  for (const Operand* keep : grads) {  // one gradient at a time, the others null
    Operands<float> one = after_forward;
    for (const Operand* g : grads)
      if (g != keep) one.v.erase(g->name);
    b.run(c.backward, one);
    EXPECT_EQ(one.v[keep->name], op.v[keep->name])
        << c.name << ": " << keep->name << " alone" << on;
  }
}

}  // namespace zt::test
