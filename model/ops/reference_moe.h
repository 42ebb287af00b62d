/*
 * reference_moe.h: plain references of the MoE ops in ops.h (router, aux loss, plan, dispatch,
 * combine), templated on T = float or double, same argument order. Obvious loops, no threads;
 * the tests check these against finite differences and the fast ops against these.
 * Backward functions accumulate (+=) like the ops; a null gradient pointer means not needed.
 */
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/ops/ops.h"

namespace zt::ref {

// probs = softmax(logits); idx = top K by (prob desc, index asc); gates = picked probs,
// renormalised when renorm.                           logits, probs [n, E]; idx, gates [n, K]
template <typename T>
void router_forward(T* probs, int32_t* idx, T* gates, const T* logits, int n, int E, int K,
                    bool renorm) {
  for (int i = 0; i < n; ++i) {
    const T* l = logits + (int64_t)i * E;
    T* p = probs + (int64_t)i * E;
    T mx = l[0];
    for (int e = 1; e < E; ++e)
      if (l[e] > mx) mx = l[e];
    T sum = 0;
    for (int e = 0; e < E; ++e) sum += std::exp(l[e] - mx);
    for (int e = 0; e < E; ++e) p[e] = std::exp(l[e] - mx) / sum;
    std::vector<bool> taken(E, false);
    T picked = 0;
    for (int k = 0; k < K; ++k) {
      int best = -1;
      for (int e = 0; e < E; ++e)
        if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
      taken[best] = true;
      idx[(int64_t)i * K + k] = best;
      gates[(int64_t)i * K + k] = p[best];
      picked += p[best];
    }
    if (renorm)
      for (int k = 0; k < K; ++k) gates[(int64_t)i * K + k] /= picked;
  }
}

// dlogits += through gates (dgates [n, K], may be null) and probs (dprobs [n, E], may be null)
template <typename T>
void router_backward(T* dlogits, const T* dgates, const T* dprobs, const T* probs,
                     const int32_t* idx, int n, int E, int K, bool renorm) {
  if (!dlogits) return;
  std::vector<T> dp(E);
  for (int i = 0; i < n; ++i) {
    const T* p = probs + (int64_t)i * E;
    const int32_t* ix = idx + (int64_t)i * K;
    // gradient w.r.t. probs
    for (int e = 0; e < E; ++e) dp[e] = dprobs ? dprobs[(int64_t)i * E + e] : T(0);
    if (dgates) {
      const T* dg = dgates + (int64_t)i * K;
      if (renorm) {  // g_k = p_k / S: dg_k/dp_j = delta_kj / S - p_k / S^2
        T S = 0;
        for (int k = 0; k < K; ++k) S += p[ix[k]];
        for (int j = 0; j < K; ++j)
          for (int k = 0; k < K; ++k)
            dp[ix[j]] += dg[k] * ((j == k ? T(1) / S : T(0)) - p[ix[k]] / (S * S));
      } else {
        for (int k = 0; k < K; ++k) dp[ix[k]] += dg[k];
      }
    }
    // softmax Jacobian: dp_e/dl_j = p_e (delta_ej - p_j)
    for (int j = 0; j < E; ++j) {
      T s = 0;
      for (int e = 0; e < E; ++e) s += dp[e] * p[e] * ((e == j ? T(1) : T(0)) - p[j]);
      dlogits[(int64_t)i * E + j] += s;
    }
  }
}

// alpha * E * sum_e f_e * P_e
template <typename T>
T moe_aux_loss_forward(const T* probs, const int32_t* idx, int n, int E, int K, T alpha) {
  T loss = 0;
  for (int e = 0; e < E; ++e) {
    T count = 0, P = 0;
    for (int a = 0; a < n * K; ++a) count += idx[a] == e ? T(1) : T(0);
    for (int t = 0; t < n; ++t) P += probs[(int64_t)t * E + e];
    loss += (count / (n * K)) * (P / n);
  }
  return alpha * E * loss;
}

template <typename T>
void moe_aux_loss_backward(T* dprobs, const int32_t* idx, int n, int E, int K, T alpha, T dloss) {
  if (!dprobs) return;
  for (int e = 0; e < E; ++e) {
    T count = 0;
    for (int a = 0; a < n * K; ++a) count += idx[a] == e ? T(1) : T(0);
    for (int t = 0; t < n; ++t)
      dprobs[(int64_t)t * E + e] += dloss * alpha * E * (count / (n * K)) / n;
  }
}

// expert by expert, token by token: the first `capacity` assignments are kept
inline void moe_plan(MoePlan& plan, const int32_t* idx, int n, int E, int K, int capacity) {
  plan = MoePlan{};
  plan.n = n;
  plan.E = E;
  plan.K = K;
  plan.offset.push_back(0);
  for (int e = 0; e < E; ++e) {
    int taken = 0;
    for (int t = 0; t < n; ++t)
      for (int k = 0; k < K; ++k) {
        if (idx[t * K + k] != e) continue;
        if (capacity > 0 && taken == capacity) {
          plan.dropped++;
          continue;
        }
        plan.token.push_back(t);
        plan.slot.push_back(k);
        taken++;
      }
    plan.offset.push_back((int32_t)plan.token.size());
  }
}

// xe[r, :] = x[token[r], :]
template <typename T>
void moe_dispatch_forward(T* xe, const T* x, const MoePlan& plan, int d) {
  for (int r = 0; r < plan.rows(); ++r)
    for (int j = 0; j < d; ++j) xe[(int64_t)r * d + j] = x[(int64_t)plan.token[r] * d + j];
}

template <typename T>
void moe_dispatch_backward(T* dx, const T* dxe, const MoePlan& plan, int d) {
  if (!dx) return;
  for (int r = 0; r < plan.rows(); ++r)
    for (int j = 0; j < d; ++j) dx[(int64_t)plan.token[r] * d + j] += dxe[(int64_t)r * d + j];
}

// out[token[r], :] += gates[token[r], slot[r]] * ye[r, :]
template <typename T>
void moe_combine_forward(T* out, const T* ye, const T* gates, const MoePlan& plan, int d) {
  for (int r = 0; r < plan.rows(); ++r) {
    T g = gates[(int64_t)plan.token[r] * plan.K + plan.slot[r]];
    for (int j = 0; j < d; ++j) out[(int64_t)plan.token[r] * d + j] += g * ye[(int64_t)r * d + j];
  }
}

template <typename T>
void moe_combine_backward(T* dye, T* dgates, const T* dout, const T* ye, const T* gates,
                          const MoePlan& plan, int d) {
  for (int r = 0; r < plan.rows(); ++r) {
    int64_t gi = (int64_t)plan.token[r] * plan.K + plan.slot[r];
    for (int j = 0; j < d; ++j) {
      T dO = dout[(int64_t)plan.token[r] * d + j];
      if (dye) dye[(int64_t)r * d + j] += gates[gi] * dO;
      if (dgates) dgates[gi] += dO * ye[(int64_t)r * d + j];
    }
  }
}

}  // namespace zt::ref
