// reference_dense.h: plain, obviously correct references of the dense ops in ops.h, templated on
// the scalar type T (float or double). Same argument order and conventions as ops.h: activations
// [n, d] row-major, weights [in, out], backward functions ACCUMULATE (+=) into every gradient and
// skip a null one. The sequence length of rope/attention is `seq` here (T is the scalar type).
// Straight loops, no speed tricks: the optimised fp32 ops and the finite differences of the tests
// are both checked against these.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "runtime/error.h"

namespace zt::ref {

// ---- embedding: out[i, :] = table[tok[i] - v0, :], zero outside the rows [v0, v0 + rows)
template <typename T>
void embedding_forward(T* out, const int32_t* tok, const T* table, int n, int d, int v0 = 0,
                       int rows = -1) {
  for (int i = 0; i < n; ++i) {
    const int64_t r = tok[i] - v0;
    const bool in = rows < 0 || (r >= 0 && r < rows);
    for (int j = 0; j < d; ++j) out[(int64_t)i * d + j] = in ? table[r * d + j] : T(0);
  }
}
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tok, int n, int d, int v0 = 0,
                        int rows = -1) {
  for (int i = 0; i < n; ++i) {
    const int64_t r = tok[i] - v0;
    if (rows >= 0 && (r < 0 || r >= rows)) continue;
    for (int j = 0; j < d; ++j) dtable[r * d + j] += dout[(int64_t)i * d + j];
  }
}

// ---- rmsnorm: out = x * rstd * g, rstd = 1 / sqrt(mean(x^2) + eps)           x [n, d]; g [d]
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* g, int n, int d, T eps) {
  for (int i = 0; i < n; ++i) {
    const T* xi = x + (int64_t)i * d;
    T ss = 0;
    for (int j = 0; j < d; ++j) ss += xi[j] * xi[j];
    T r = T(1) / std::sqrt(ss / d + eps);
    rstd[i] = r;
    for (int j = 0; j < d; ++j) out[(int64_t)i * d + j] = xi[j] * r * g[j];
  }
}
// dx_j += r g_j dout_j - x_j r^3 / d * sum_k dout_k g_k x_k ;  dg_j += sum_rows dout_j x_j r
template <typename T>
void rmsnorm_backward(T* dx, T* dg, const T* dout, const T* x, const T* g, const T* rstd, int n,
                      int d) {
  for (int i = 0; i < n; ++i) {
    const T* xi = x + (int64_t)i * d;
    const T* di = dout + (int64_t)i * d;
    T r = rstd[i];
    T dot = 0;
    for (int j = 0; j < d; ++j) dot += di[j] * g[j] * xi[j];
    for (int j = 0; j < d; ++j) {
      if (dx) dx[(int64_t)i * d + j] += r * g[j] * di[j] - xi[j] * r * r * r * dot / d;
      if (dg) dg[j] += di[j] * xi[j] * r;
    }
  }
}

// ---- matmul: c[m, n] (= or +=) op(a) op(b); a [m, k] ([k, m] transposed), b [k, n] ([n, k])
template <typename T>
void matmul(T* c, const T* a, const T* b, int m, int n, int k, bool trans_a, bool trans_b,
            bool accumulate = false) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      T s = 0;
      for (int p = 0; p < k; ++p)
        s += (trans_a ? a[(int64_t)p * m + i] : a[(int64_t)i * k + p]) *
             (trans_b ? b[(int64_t)j * k + p] : b[(int64_t)p * n + j]);
      T& y = c[(int64_t)i * n + j];
      y = accumulate ? y + s : s;
    }
}

// ---- linear: out[n, o] (= or +=) x[n, i] W[i, o]
template <typename T>
void linear_forward(T* out, const T* x, const T* w, int n, int in, int out_dim,
                    bool accumulate = false) {
  for (int r = 0; r < n; ++r)
    for (int o = 0; o < out_dim; ++o) {
      T s = 0;
      for (int i = 0; i < in; ++i) s += x[(int64_t)r * in + i] * w[(int64_t)i * out_dim + o];
      T& y = out[(int64_t)r * out_dim + o];
      y = accumulate ? y + s : s;
    }
}
// dx[n, i] += dout W^T ; dw[i, o] += x^T dout (ops.h's two halves, together)
template <typename T>
void linear_backward(T* dx, T* dw, const T* dout, const T* x, const T* w, int n, int in,
                     int out_dim) {
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < in; ++i)
      for (int o = 0; o < out_dim; ++o) {
        T go = dout[(int64_t)r * out_dim + o];
        if (dx) dx[(int64_t)r * in + i] += go * w[(int64_t)i * out_dim + o];
        if (dw) dw[(int64_t)i * out_dim + o] += x[(int64_t)r * in + i] * go;
      }
}

// ---- rope (rotate_half): pair (u_i, u_{i+dh/2}) at position p = pos0 + t rotated by
// theta = p * base^(-2i/dh):  (u_i, u_{i+h}) -> (u_i cos - u_{i+h} sin, u_{i+h} cos + u_i sin).
// x, out [B*seq, H*dh]; in place allowed. The angle is always computed in double.
template <typename T>
void rope_rotate(T* out, const T* x, int B, int seq, int H, int dh, double base, int pos0,
                 double sign) {
  int half = dh / 2;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < seq; ++t)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < half; ++i) {
          double theta = (double)(pos0 + t) * std::pow(base, -2.0 * i / dh);
          T c = (T)std::cos(theta), s = (T)(sign * std::sin(theta));
          int64_t at = ((int64_t)b * seq + t) * H * dh + (int64_t)h * dh + i;
          T u1 = x[at], u2 = x[at + half];
          out[at] = u1 * c - u2 * s;
          out[at + half] = u2 * c + u1 * s;
        }
}
template <typename T>
void rope_forward(T* out, const T* x, int B, int seq, int H, int dh, double base, int pos0 = 0) {
  rope_rotate(out, x, B, seq, H, dh, base, pos0, 1.0);
}
// the transpose of a rotation is the rotation by -theta: dx += R(-theta) dout
template <typename T>
void rope_backward(T* dx, const T* dout, int B, int seq, int H, int dh, double base, int pos0 = 0) {
  std::vector<T> tmp((size_t)B * seq * H * dh);
  rope_rotate(tmp.data(), dout, B, seq, H, dh, base, pos0, -1.0);
  for (size_t i = 0; i < tmp.size(); ++i) dx[i] += tmp[i];
}

// ---- causal attention per (b, h): s_tj = q_t . k_j / sqrt(dh) for j <= t, p = softmax_j(s),
// out_t = sum_j p_tj v_j. q, k, v, out [B*seq, H*dh]; probs [B, H, seq, seq], upper triangle 0.
template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v, int B, int seq, int H,
                       int dh) {
  int64_t ld = (int64_t)H * dh;
  T scale = T(1) / std::sqrt((T)dh);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      auto at = [&](int t) { return ((int64_t)b * seq + t) * ld + h * dh; };
      for (int t = 0; t < seq; ++t) {
        T* p = probs + (((int64_t)b * H + h) * seq + t) * seq;
        T mx = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          T s = 0;
          for (int c = 0; c < dh; ++c) s += q[at(t) + c] * k[at(j) + c];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        T sum = 0;
        for (int j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int j = 0; j <= t; ++j) p[j] /= sum;
        for (int j = t + 1; j < seq; ++j) p[j] = 0;
        for (int c = 0; c < dh; ++c) {
          T s = 0;
          for (int j = 0; j <= t; ++j) s += p[j] * v[at(j) + c];
          out[at(t) + c] = s;
        }
      }
    }
}
// dp_tj = dout_t . v_j ; ds_tj = p_tj (dp_tj - sum_k p_tk dp_tk) ;
// dq_t += scale sum_j ds_tj k_j ; dk_j += scale ds_tj q_t ; dv_j += p_tj dout_t
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q, const T* k,
                        const T* v, int B, int seq, int H, int dh) {
  int64_t ld = (int64_t)H * dh;
  T scale = T(1) / std::sqrt((T)dh);
  std::vector<T> dp(seq);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      auto at = [&](int t) { return ((int64_t)b * seq + t) * ld + h * dh; };
      for (int t = 0; t < seq; ++t) {
        const T* p = probs + (((int64_t)b * H + h) * seq + t) * seq;
        T pdp = 0;
        for (int j = 0; j <= t; ++j) {
          T s = 0;
          for (int c = 0; c < dh; ++c) s += dout[at(t) + c] * v[at(j) + c];
          dp[j] = s;
          pdp += p[j] * s;
        }
        for (int j = 0; j <= t; ++j) {
          T ds = p[j] * (dp[j] - pdp);
          for (int c = 0; c < dh; ++c) {
            if (dq) dq[at(t) + c] += scale * ds * k[at(j) + c];
            if (dk) dk[at(j) + c] += scale * ds * q[at(t) + c];
            if (dv) dv[at(j) + c] += p[j] * dout[at(t) + c];
          }
        }
      }
    }
}

// ---- swiglu: out = silu(a) * b, silu(z) = z * sigmoid(z)
template <typename T>
void swiglu_forward(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] / (T(1) + std::exp(-a[i])) * b[i];
}
// silu'(z) = sig(z) (1 + z (1 - sig(z)))
template <typename T>
void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T sig = T(1) / (T(1) + std::exp(-a[i]));
    if (da) da[i] += dout[i] * b[i] * sig * (T(1) + a[i] * (T(1) - sig));
    if (db) db[i] += dout[i] * a[i] * sig;
  }
}

// ---- cross-entropy: losses[i] = logsumexp(logits[i, :]) - logits[i, target[i]]; returns the mean.
inline void cross_entropy_check_targets(const int32_t* targets, int n, int V) {
  for (int i = 0; i < n; ++i)
    if (targets[i] < 0 || targets[i] >= V)
      fail("cross_entropy: target ", targets[i], " at position ", i, " is outside [0, ", V, ")");
}
template <typename T>
T cross_entropy_lse(const T* z, int V) {
  T mx = -INFINITY, s = 0;
  for (int j = 0; j < V; ++j) mx = std::max(mx, z[j]);
  for (int j = 0; j < V; ++j) s += std::exp(z[j] - mx);
  return mx + std::log(s);
}
template <typename T>
T cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, int n, int V) {
  cross_entropy_check_targets(targets, n, V);
  T total = 0;
  for (int i = 0; i < n; ++i) {
    const T* z = logits + (int64_t)i * V;
    losses[i] = cross_entropy_lse(z, V) - z[targets[i]];
    total += losses[i];
  }
  return n > 0 ? total / n : T(0);
}
// dlogits[i, :] += scale * (softmax(logits[i, :]) - onehot(target[i]))
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, T scale, int n,
                            int V) {
  cross_entropy_check_targets(targets, n, V);
  for (int i = 0; i < n; ++i) {
    const T* z = logits + (int64_t)i * V;
    T lse = cross_entropy_lse(z, V);
    for (int j = 0; j < V; ++j)
      dlogits[(int64_t)i * V + j] += scale * (std::exp(z[j] - lse) - (j == targets[i] ? 1 : 0));
  }
}

// ---- cross-entropy over vocabulary slices (ops.h): stats [n, 4] per slice, combined
template <typename T>
void cross_entropy_slice_stats(T* stats, const T* logits, const int32_t* targets, int n, int Vs,
                               int v0) {
  for (int i = 0; i < n; ++i) {
    const T* z = logits + (int64_t)i * Vs;
    T mx = -INFINITY, s = 0;
    for (int j = 0; j < Vs; ++j) mx = std::max(mx, z[j]);
    for (int j = 0; j < Vs; ++j) s += std::exp(z[j] - mx);
    const int64_t t = (int64_t)targets[i] - v0;
    const bool mine = t >= 0 && t < Vs;
    T* st = stats + (int64_t)i * 4;
    st[0] = mx, st[1] = s, st[2] = mine ? z[t] : T(0), st[3] = mine ? T(1) : T(0);
  }
}
template <typename T>
T cross_entropy_combine(T* losses, T* lse, const T* stats, int parts, int n,
                        const int32_t* targets) {
  T total = 0;
  for (int i = 0; i < n; ++i) {
    T m = -INFINITY, s = 0, zt = 0, found = 0;
    for (int p = 0; p < parts; ++p) m = std::max(m, stats[((int64_t)p * n + i) * 4]);
    for (int p = 0; p < parts; ++p) {
      const T* st = stats + ((int64_t)p * n + i) * 4;
      s += st[1] * std::exp(st[0] - m);
      zt += st[2];
      found += st[3];
    }
    if (found != T(1)) fail("cross_entropy: target ", targets[i], " is in no slice");
    lse[i] = m + std::log(s);
    losses[i] = lse[i] - zt;
    total += losses[i];
  }
  return n > 0 ? total / n : T(0);
}
template <typename T>
void cross_entropy_slice_backward(T* dlogits, const T* logits, const int32_t* targets, const T* lse,
                                  T scale, int n, int Vs, int v0) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < Vs; ++j)
      dlogits[(int64_t)i * Vs + j] +=
          scale * (std::exp(logits[(int64_t)i * Vs + j] - lse[i]) - (targets[i] - v0 == j ? 1 : 0));
}

}  // namespace zt::ref
