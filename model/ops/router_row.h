// router_row.h: one token's router, forward and backward (the formulas in router.cpp's header),
// shared by the CPU loop (router.cpp) and the GPU kernel (model/ops/cuda/moe.cu), so that both
// pick the same experts in the same order: host code, and device code as well under nvcc.
#pragma once
#include <math.h>

#include <cstdint>

#ifdef __CUDACC__
#define ZT_HOST_DEVICE __host__ __device__
#else
#define ZT_HOST_DEVICE
#endif

namespace zt {

// p [E] = softmax(l); ix [K] the top K (probability descending, ties to the lower expert);
// g [K] the picked probabilities, renormalised to sum 1 when renorm.
ZT_HOST_DEVICE inline void router_row_forward(float* p, int32_t* ix, float* g, const float* l,
                                              int E, int K, bool renorm) {
  float mx = l[0];
  for (int e = 1; e < E; ++e) mx = fmaxf(mx, l[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; ++e) {
    p[e] = expf(l[e] - mx);
    sum += p[e];
  }
  const float inv = 1.0f / sum;
  for (int e = 0; e < E; ++e) p[e] *= inv;
  // The next pick is the best expert that comes strictly after the previous pick in that order.
  float picked = 0.0f;
  for (int k = 0; k < K; ++k) {
    int best = -1;
    for (int e = 0; e < E; ++e) {
      if (k > 0) {
        const float pp = p[ix[k - 1]];
        if (!(p[e] < pp || (p[e] == pp && e > ix[k - 1]))) continue;
      }
      if (best < 0 || p[e] > p[best]) best = e;
    }
    if (best < 0)  // only with NaN probabilities: take the lowest expert not yet picked
      for (int e = 0; e < E && best < 0; ++e) {
        best = e;
        for (int j = 0; j < k; ++j)
          if (ix[j] == e) best = -1;
      }
    ix[k] = best;
    g[k] = p[best];
    picked += p[best];
  }
  if (renorm) {
    const float inv_s = 1.0f / picked;
    for (int k = 0; k < K; ++k) g[k] *= inv_s;
  }
}

// dl [E] += d/dlogits through dg [K] (the gates' gradient, may be null) and dpr [E] (the
// probabilities', may be null).
ZT_HOST_DEVICE inline void router_row_backward(float* dl, const float* dg, const float* dpr,
                                               const float* p, const int32_t* ix, int E, int K,
                                               bool renorm) {
  float S = 0.0f, dot = 0.0f;  // c_k: the gradient reaching p[ix[k]] through the gates
  for (int k = 0; k < K; ++k) S += p[ix[k]];
  if (dg && renorm)
    for (int k = 0; k < K; ++k) dot += dg[k] * (p[ix[k]] / S);
  const float inv_s = renorm ? 1.0f / S : 1.0f;
  float s = 0.0f;  // sum_e p_e dp_e
  if (dpr)
    for (int e = 0; e < E; ++e) s += p[e] * dpr[e];
  if (dg)
    for (int k = 0; k < K; ++k) s += p[ix[k]] * (dg[k] - dot) * inv_s;
  for (int e = 0; e < E; ++e) dl[e] += p[e] * ((dpr ? dpr[e] : 0.0f) - s);
  if (dg)
    for (int k = 0; k < K; ++k) dl[ix[k]] += p[ix[k]] * (dg[k] - dot) * inv_s;
}

}  // namespace zt
