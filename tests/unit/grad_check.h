// grad_check.h: the numerical helpers of the tests: deterministic random inputs, central finite
// differences in double, and the normalised error max |a - b| / max |b| (the measure of ggml's
// test-backend-ops and nccl-tests). The op table's harness (op_harness.h) is built on them; the
// whole-model and layer tests use them directly.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/rng.h"

namespace zt::test {

inline std::vector<double> random_vec(size_t n, uint64_t seed, double scale = 1.0,
                                      double mean = 0.0) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = mean + scale * rng_normal(seed, 0x7e57, i);
  return v;
}

inline std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}
inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// d f / d x by central differences; f reads x (which this function perturbs and restores).
inline std::vector<double> numeric_grad(const std::function<double()>& f, std::vector<double>& x,
                                        double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double x0 = x[i];
    x[i] = x0 + h;
    double fp = f();
    x[i] = x0 - h;
    double fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

template <typename A, typename B>
double max_norm_err(const A* a, const B* b, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; ++i) {
    scale = std::max(scale, std::fabs((double)b[i]));
    err = std::max(err, std::fabs((double)a[i] - (double)b[i]));
  }
  return err / std::max(scale, 1e-30);
}
template <typename A, typename B>
double max_norm_err(const std::vector<A>& a, const std::vector<B>& b) {
  return a.size() == b.size() ? max_norm_err(a.data(), b.data(), a.size()) : INFINITY;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace zt::test
