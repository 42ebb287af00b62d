// attention.cpp: causal multi-head attention forward and backward (fp32).
// Per (batch, head), with Q, K, V, dO the head's [T, dh] column blocks and scale = 1/sqrt(dh):
//   forward   S = scale Q K^T (lower triangle), P = softmax(S) row-wise, O = P V
//   backward  dP = dO V^T, dS = P o (dP - rowsum(P o dP)),
//             dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dO
// (batch, head) pairs run in parallel (OpenMP). Each product goes through one small register-tiled
// kernel (tile below, 8 x 32 accumulators that stay in registers), which only visits the causal
// lower triangle up to tile granularity; P (saved in probs, upper triangle zero) and dS being zero
// above the diagonal makes the few extra products exact zeros.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/ops/ops.h"
#include "model/ops/vec_math.h"
#include "runtime/isa.h"

namespace zt {

constexpr int MR = 8, NR = 32;  // register tile: rows of C x columns of C

// One tile C[r, j] (= or +=) alpha * sum_{p in [k0, k1)} A(r, p) B(p, j), r < R, j < NR, with
// A(r, p) = a[r * as + p * ak] and B(p, j) = b[p * ldb + j]. R and NR are compile-time so the
// accumulators live in vector registers.
template <int R>
__attribute__((always_inline)) static inline void tile(int k0, int k1, const float* a, int64_t as,
                                                       int64_t ak, const float* b, int64_t ldb,
                                                       float* c, int64_t ldc, float alpha,
                                                       bool overwrite) {
  float acc[R][NR] = {};
  for (int p = k0; p < k1; ++p) {
    const float* bp = b + p * ldb;
    for (int r = 0; r < R; ++r) {
      float av = a[r * as + p * ak];
      for (int j = 0; j < NR; ++j) acc[r][j] += av * bp[j];
    }
  }
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    if (overwrite)
      for (int j = 0; j < NR; ++j) cr[j] = alpha * acc[r][j];
    else
      for (int j = 0; j < NR; ++j) cr[j] += alpha * acc[r][j];
  }
}

// The same for a ragged tile, mr <= MR rows and nr < NR columns (odd sizes only).
__attribute__((always_inline)) static inline void tile_edge(int mr, int nr, int k0, int k1,
                                                            const float* a, int64_t as, int64_t ak,
                                                            const float* b, int64_t ldb, float* c,
                                                            int64_t ldc, float alpha,
                                                            bool overwrite) {
  float acc[MR][NR] = {};
  for (int p = k0; p < k1; ++p)
    for (int r = 0; r < mr; ++r) {
      float av = a[r * as + p * ak];
      for (int j = 0; j < nr; ++j) acc[r][j] += av * b[p * ldb + j];
    }
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j)
      c[r * ldc + j] = overwrite ? alpha * acc[r][j] : c[r * ldc + j] + alpha * acc[r][j];
}

// Which part of C = A B a product needs, for a block of C rows [i0, i1):
enum class Span {
  cols_lower,  // C is lower triangular: columns j < i1 (rounded up to whole tiles)
  k_lower,     // A is lower triangular: p < i1
  k_upper,     // A is upper triangular (the transpose of a lower one): p >= i0
};

// C[m, n] (= or +=) alpha * A[m, kk] B[kk, n] restricted by span; addressing as in tile(). The
// tiles are inlined into it, so they run at the ISA it is dispatched to.
ZT_DISPATCH static void gemm(Span span, int m, int n, int kk, const float* a, int64_t as,
                             int64_t ak, const float* b, int64_t ldb, float* c, int64_t ldc,
                             float alpha, bool overwrite) {
  for (int i0 = 0; i0 < m; i0 += MR) {
    int mr = std::min(MR, m - i0), i1 = i0 + mr;
    int n_end = span == Span::cols_lower ? std::min(n, (i1 + NR - 1) / NR * NR) : n;
    int k0 = span == Span::k_upper ? i0 : 0;
    int k1 = span == Span::k_lower ? std::min(kk, i1) : kk;
    const float* ai = a + i0 * as;
    float* ci = c + i0 * ldc;
    for (int j0 = 0; j0 < n_end; j0 += NR) {
      int nr = std::min(NR, n_end - j0);
      if (nr < NR) {
        tile_edge(mr, nr, k0, k1, ai, as, ak, b + j0, ldb, ci + j0, ldc, alpha, overwrite);
        continue;
      }
      switch (mr) {
#define ZT_TILE(R) \
  case R: tile<R>(k0, k1, ai, as, ak, b + j0, ldb, ci + j0, ldc, alpha, overwrite); break;
        ZT_TILE(1) ZT_TILE(2) ZT_TILE(3) ZT_TILE(4) ZT_TILE(5) ZT_TILE(6) ZT_TILE(7) ZT_TILE(8)
#undef ZT_TILE
      }
    }
  }
}

// dst[c, j] = src[j * ld + c]: a head's [T, dh] block transposed to [dh, T], 8 rows at a time
static void transpose(float* dst, const float* src, int T, int dh, int64_t ld) {
  constexpr int rows = 8;
  int j0 = 0;
  for (; j0 + rows <= T; j0 += rows)
    for (int c = 0; c < dh; ++c) {
      float col[rows];
      for (int r = 0; r < rows; ++r) col[r] = src[(j0 + r) * ld + c];
      for (int r = 0; r < rows; ++r) dst[(int64_t)c * T + j0 + r] = col[r];
    }
  for (int j = j0; j < T; ++j)
    for (int c = 0; c < dh; ++c) dst[(int64_t)c * T + j] = src[j * ld + c];
}

// dst[j, c] = src[j * ld + c]: a head's [T, dh] block made contiguous. As the B operand of a tile,
// the head block's long row stride would put many of its rows in the same L1 set.
static void pack(float* dst, const float* src, int T, int dh, int64_t ld) {
  for (int j = 0; j < T; ++j) {
    float* d = dst + (int64_t)j * dh;
    const float* s = src + j * ld;
#pragma omp simd
    for (int c = 0; c < dh; ++c) d[c] = s[c];
  }
}

// max of p[0..n), 16 running maxima wide (a plain max reduction does not vectorise)
static float row_max(const float* p, int n) {
  float m[16];
  std::fill(m, m + 16, -INFINITY);
  int j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 16; ++u) m[u] = std::max(m[u], p[j + u]);
  for (; j < n; ++j) m[0] = std::max(m[0], p[j]);
  return *std::max_element(m, m + 16);
}

void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       int B, int T, int H, int dh) {
  int64_t ld = (int64_t)H * dh;
  float scale = 1.0f / std::sqrt((float)dh);
#pragma omp parallel
  {
    std::vector<float> kt((size_t)dh * T), vh((size_t)T * dh);  // [dh, T], [T, dh]
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        int64_t off = (int64_t)b * T * ld + (int64_t)h * dh;  // the head's [T, dh] block
        float* P = probs + ((int64_t)b * H + h) * T * T;      // [T, T]
        transpose(kt.data(), k + off, T, dh, ld);
        gemm(Span::cols_lower, T, T, dh, q + off, ld, 1, kt.data(), T, P, T, scale, true);
        for (int t = 0; t < T; ++t) {  // causal softmax of row t over j <= t
          float* p = P + (int64_t)t * T;
          float mx = row_max(p, t + 1), sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int j = 0; j <= t; ++j) sum += (p[j] = exp_fast(p[j] - mx));
          float inv = 1.0f / sum;
          for (int j = 0; j <= t; ++j) p[j] *= inv;
          for (int j = t + 1; j < T; ++j) p[j] = 0;
        }
        pack(vh.data(), v + off, T, dh, ld);
        gemm(Span::k_lower, T, dh, T, P, T, 1, vh.data(), dh, out + off, ld, 1.0f, true);
      }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                        const float* q, const float* k, const float* v, int B, int T, int H, int dh,
                        bool accumulate) {
  int64_t ld = (int64_t)H * dh;
  const bool over = !accumulate;  // each (b, h) writes its [T, dh] blocks once, every row
  float scale = 1.0f / std::sqrt((float)dh);
#pragma omp parallel
  {
    std::vector<float> vt((size_t)dh * T), ds((size_t)T * T);              // [dh, T], [T, T]
    std::vector<float> qh((size_t)T * dh), kh(qh.size()), doh(qh.size());  // [T, dh]
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        int64_t off = (int64_t)b * T * ld + (int64_t)h * dh;
        const float* P = probs + ((int64_t)b * H + h) * T * T;
        if (dv) {  // dV += P^T dO
          pack(doh.data(), dout + off, T, dh, ld);
          gemm(Span::k_upper, T, dh, T, P, 1, T, doh.data(), dh, dv + off, ld, 1.0f, over);
        }
        if (!dq && !dk) continue;
        transpose(vt.data(), v + off, T, dh, ld);  // dP = dO V^T into ds
        gemm(Span::cols_lower, T, T, dh, dout + off, ld, 1, vt.data(), T, ds.data(), T, 1.0f, true);
        for (int t = 0; t < T; ++t) {  // dS = P o (dP - rowsum(P o dP))
          const float* p = P + (int64_t)t * T;
          float* d = ds.data() + (int64_t)t * T;
          float pdp = 0;
#pragma omp simd reduction(+ : pdp)
          for (int j = 0; j <= t; ++j) pdp += p[j] * d[j];
          for (int j = 0; j <= t; ++j) d[j] = p[j] * (d[j] - pdp);
          // zeros above the diagonal, as far as the tiles of the next two products read
          for (int j = t + 1, end = std::min(T, (t / MR + 1) * MR); j < end; ++j) d[j] = 0;
        }
        if (dq) {  // dQ += scale dS K
          pack(kh.data(), k + off, T, dh, ld);
          gemm(Span::k_lower, T, dh, T, ds.data(), T, 1, kh.data(), dh, dq + off, ld, scale, over);
        }
        if (dk) {  // dK += scale dS^T Q
          pack(qh.data(), q + off, T, dh, ld);
          gemm(Span::k_upper, T, dh, T, ds.data(), 1, T, qh.data(), dh, dk + off, ld, scale, over);
        }
      }
  }
}

void attention_decode_forward(float* out, const float* q, const float* k_cache,
                              const float* v_cache, int len, int H, int dh, int ld, float* scores) {
  const float scale = 1.0f / std::sqrt((float)dh);
  for (int h = 0; h < H; ++h) {
    const float* qh = q + h * dh;
    float mx = -INFINITY;
    for (int t = 0; t < len; ++t) {
      const float* kt = k_cache + (int64_t)t * ld + h * dh;
      float s = 0;
      for (int i = 0; i < dh; ++i) s += qh[i] * kt[i];
      scores[t] = s * scale;
      mx = std::max(mx, scores[t]);
    }
    float sum = 0;
    for (int t = 0; t < len; ++t) sum += (scores[t] = std::exp(scores[t] - mx));
    float* oh = out + h * dh;
    std::fill(oh, oh + dh, 0.0f);
    for (int t = 0; t < len; ++t) {
      const float* vt = v_cache + (int64_t)t * ld + h * dh;
      const float p = scores[t] / sum;
      for (int i = 0; i < dh; ++i) oh[i] += p * vt[i];
    }
  }
}

}  // namespace zt
