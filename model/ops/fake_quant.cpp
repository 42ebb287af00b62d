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

// Rows [r0, r1) of w: f(i, o, v = w / s, s) for every element.
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

ZT_DISPATCH void fake_quant_span(float* q, const float* w, const float* s, int r0, int r1, int out,
                                 int G, int qp) {
  for_rows(w, s, r0, r1, out, G,
           [&](int i, int o, float v, float so) { q[(int64_t)i * out + o] = level(v, qp) * so; });
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
                                const float* s, int in, int out, int G, int qp) {
  const float gscale = 1.0f / std::sqrt((float)G * (float)qp);
  const int groups = in / G;
  // Groups over threads: each thread owns its groups' step-size gradients.
#pragma omp parallel for schedule(static) if ((int64_t)in * out > (1 << 16))
  for (int gi = 0; gi < groups; ++gi) {
    float* dsg = ds + (int64_t)gi * out;
    for_rows(w, s, gi * G, (gi + 1) * G, out, G, [&](int i, int o, float v, float) {
      const int64_t at = (int64_t)i * out + o;
      if (v < -limit(qp)) {
        dsg[o] -= gscale * g[at] * (float)qp;
      } else if (v > limit(qp)) {
        dsg[o] += gscale * g[at] * (float)qp;
      } else {
        dw[at] += g[at];
        dsg[o] += gscale * g[at] * (std::nearbyint(v) - v);
      }
    });
  }
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
    const float* xr = x + r * d;
    float amax = 0;
    for (int j = 0; j < d; ++j) amax = std::max(amax, std::fabs(xr[j]));
    const float st = amax > 0 ? amax / 127.0f : 1.0f;
    sx[r] = amax > 0 ? st : 0.0f;
    for (int j = 0; j < d; ++j) xi[r * d + j] = (int8_t)level(xr[j] / st, 127);
  }
}

void fake_quant_rows(float* x, int64_t n, int d) {
#pragma omp parallel for schedule(static) if (n * d > (1 << 16))
  for (int64_t r = 0; r < n; ++r) {
    float* xr = x + r * d;
    float amax = 0;
    for (int j = 0; j < d; ++j) amax = std::max(amax, std::fabs(xr[j]));
    if (amax == 0) continue;
    const float st = amax / 127.0f;
    for (int j = 0; j < d; ++j) xr[j] = level(xr[j] / st, 127) * st;
  }
}

void add_quant_error(QuantError& e, const float* w, const float* s, int in, int out, int G,
                     int qp) {
  for_rows(w, s, 0, in, out, G, [&](int i, int o, float v, float so) {
    const float x = w[(int64_t)i * out + o];
    e.abs_diff += std::fabs(x - level(v, qp) * so);
    e.abs_w += std::fabs(x);
    e.clipped += std::fabs(v) > limit(qp);
  });
  e.count += (int64_t)in * out;
}

}  // namespace zt
