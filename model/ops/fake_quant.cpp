// fake_quant.cpp: fake quantization of weights and activations, LSQ backward, step-size init
// (quant_ops.h). One rounding rule everywhere (nearbyint: half to even), so the integer export
// holds exactly the levels the fake-quantized forward used.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/ops/quant_ops.h"
#include "runtime/isa.h"
#include "runtime/split.h"

namespace zt {
namespace {

inline float step(float s) { return std::max(s, kMinStep); }
// Clipped: outside the levels by more than rounding (absmax / qp itself is inside).
inline float limit(int qp) { return (float)qp * (1.0f + 1e-6f); }
inline float level(float v, int qp) { return std::clamp(std::nearbyint(v), -(float)qp, (float)qp); }

// Rows [r0, r1) of w: f(i, o, v = w / s, s) for every element (the cold paths).
template <typename F>
inline void for_rows(const float* w, const float* s, int r0, int r1, int out, int G, F&& f) {
  for (int i = r0; i < r1; ++i) {
    const float* sg = s + (int64_t)(i / G) * out;
    const float* wr = w + (int64_t)i * out;
    for (int o = 0; o < out; ++o) {
      const float so = step(sg[o]);
      f(i, o, wr[o] / so, so);
    }
  }
}

// The hot loops, compiled per ISA (runtime/isa.h): nearbyint is one instruction from SSE4.1 on.
ZT_DISPATCH void fake_quant_span(float* q, const float* w, const float* s, int r0, int r1, int out,
                                 int G, int qp) {
  const float lo = -(float)qp, hi = (float)qp;
  for (int i = r0; i < r1; ++i) {
    const float* sg = s + (int64_t)(i / G) * out;
    const float* wr = w + (int64_t)i * out;
    float* qr = q + (int64_t)i * out;
#pragma omp simd
    for (int o = 0; o < out; ++o) {
      const float so = std::max(sg[o], kMinStep);
      qr[o] = std::min(std::max(std::nearbyint(wr[o] / so), lo), hi) * so;
    }
  }
}

ZT_DISPATCH void lsq_group(float* dw, float* dsg, const float* g, const float* w, const float* sg,
                           int r0, int r1, int out, int qp, float gscale) {
  const float lim = limit(qp), fq = (float)qp;
  for (int i = r0; i < r1; ++i) {
    const float* gr = g + (int64_t)i * out;
    const float* wr = w + (int64_t)i * out;
    float* dwr = dw + (int64_t)i * out;
#pragma omp simd
    for (int o = 0; o < out; ++o) {
      const float so = std::max(sg[o], kMinStep), v = wr[o] / so;
      const bool inside = std::fabs(v) <= lim;
      const float dq = inside ? std::nearbyint(v) - v : (v < 0 ? -fq : fq);
      dwr[o] += inside ? gr[o] : 0.0f;
      dsg[o] += gscale * gr[o] * dq;
    }
  }
}

ZT_DISPATCH float absmax_span(const float* x, int d) {
  float m = 0;
#pragma omp simd reduction(max : m)
  for (int j = 0; j < d; ++j) m = std::max(m, std::fabs(x[j]));
  return m;
}

ZT_DISPATCH void quantize_row(int8_t* xi, const float* x, int d, float st) {
#pragma omp simd
  for (int j = 0; j < d; ++j)
    xi[j] = (int8_t)std::min(std::max(std::nearbyint(x[j] / st), -127.0f), 127.0f);
}

ZT_DISPATCH void fake_quant_row(float* x, int d, float st) {
#pragma omp simd
  for (int j = 0; j < d; ++j)
    x[j] = std::min(std::max(std::nearbyint(x[j] / st), -127.0f), 127.0f) * st;
}

ZT_DISPATCH void error_row(const float* w, const float* s, int out, int qp, float& diff,
                           float& abs_w, int& clipped) {
  const float lim = limit(qp), fq = (float)qp;
  float d = 0, a = 0;
  int c = 0;
#pragma omp simd reduction(+ : d, a, c)
  for (int o = 0; o < out; ++o) {
    const float so = std::max(s[o], kMinStep), v = w[o] / so;
    d += std::fabs(w[o] - std::min(std::max(std::nearbyint(v), -fq), fq) * so);
    a += std::fabs(w[o]);
    c += std::fabs(v) > lim;
  }
  diff = d, abs_w = a, clipped = c;
}

}  // namespace

void fake_quant_weight(float* q, const float* w, const float* s, int in, int out, int G, int qp) {
#pragma omp parallel if ((int64_t)in * out > (1 << 16))
  {
    const EvenPiece r = even_piece(in, omp_get_num_threads(), omp_get_thread_num());
    fake_quant_span(q, w, s, (int)r.off, (int)(r.off + r.n), out, G, qp);
  }
}

void fake_quant_weight_backward(float* dw, float* ds, const float* g, const float* w,
                                const float* s, int in, int out, int G, int qp, int shared) {
  const float gscale = 1.0f / std::sqrt((float)(shared > 0 ? shared : G) * (float)qp);
  const int groups = in / G;
  // Groups over threads: each thread owns its groups' step-size gradients.
#pragma omp parallel for schedule(static) if ((int64_t)in * out > (1 << 16))
  for (int gi = 0; gi < groups; ++gi)
    lsq_group(dw, ds + (int64_t)gi * out, g, w, s + (int64_t)gi * out, gi * G, (gi + 1) * G, out,
              qp, gscale);
}

void quantize_weight(int8_t* wi, const float* w, const float* s, int in, int out, int G, int qp) {
  for_rows(w, s, 0, in, out, G,
           [&](int i, int o, float v, float) { wi[(int64_t)i * out + o] = (int8_t)level(v, qp); });
}

void init_step_sizes(float* s, const float* w, int in, int out, int G, int qp, bool mse) {
  const int groups = in / G;
  constexpr int kCandidates = 20;
#pragma omp parallel for schedule(static) if ((int64_t)in * out > (1 << 16))
  for (int gi = 0; gi < groups; ++gi) {
    std::vector<float> err(mse ? kCandidates : 0);
    for (int o = 0; o < out; ++o) {
      float amax = 0;
      for (int i = gi * G; i < (gi + 1) * G; ++i)
        amax = std::max(amax, std::fabs(w[(int64_t)i * out + o]));
      float& so = s[(int64_t)gi * out + o];
      so = std::max(amax / (float)qp, kMinStep);
      if (!mse || amax == 0) continue;
      double best = INFINITY;
      float best_s = so;
      for (int c = 0; c < kCandidates; ++c) {
        const float cand = std::max(amax / (float)qp * (1.0f - 0.035f * (float)c), kMinStep);
        double e = 0;
        for (int i = gi * G; i < (gi + 1) * G; ++i) {
          const float x = w[(int64_t)i * out + o];
          const float d = x - level(x / cand, qp) * cand;
          e += (double)d * d;
        }
        if (e < best) best = e, best_s = cand;
      }
      so = best_s;
    }
  }
}

void quantize_rows(int8_t* xi, float* sx, const float* x, int64_t n, int d) {
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t r = 0; r < n; ++r) {
    const float amax = absmax_span(x + r * d, d);
    sx[r] = amax > 0 ? amax / 127.0f : 0.0f;
    quantize_row(xi + r * d, x + r * d, d, amax > 0 ? amax / 127.0f : 1.0f);
  }
}

void row_absmax(float* amax, const float* x, int64_t n, int d) {
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t r = 0; r < n; ++r) amax[r] = absmax_span(x + r * d, d);
}

void fake_quant_rows(float* x, int64_t n, int d, const float* given) {
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t r = 0; r < n; ++r) {
    const float amax = given ? given[r] : absmax_span(x + r * d, d);
    if (amax > 0) fake_quant_row(x + r * d, d, amax / 127.0f);
  }
}

void add_quant_error(QuantError& e, const float* w, const float* s, int in, int out, int G,
                     int qp) {
  for (int i = 0; i < in; ++i) {
    float diff = 0, abs_w = 0;
    int clipped = 0;
    error_row(w + (int64_t)i * out, s + (int64_t)(i / G) * out, out, qp, diff, abs_w, clipped);
    e.abs_diff += diff, e.abs_w += abs_w, e.clipped += clipped;
  }
  e.count += (int64_t)in * out;
}

}  // namespace zt
