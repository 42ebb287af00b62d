// attention.cu: fused causal attention on the GPU (ops_cuda.h). One warp per row; each lane
// holds the head's columns lane, lane + 32, ... (kPerLane of them, dh <= 32 * kPerLane) in
// registers. Forward streams the keys j <= t with the online softmax (running max and sum,
// rescaled accumulator) and keeps only lse_t; backward recomputes p_tj = exp(s_tj - lse_t):
//   D_t = dot(dO_t, O_t);  dS_tj = p_tj (dot(dO_t, v_j) - D_t)
//   dq_t = scale sum_j dS_tj k_j (warp per query row);  dk_j = scale sum_t dS_tj q_t,
//   dv_j = sum_t p_tj dO_t (warp per key row, t >= j).
#include <cmath>

#include "model/ops/cuda/ops_cuda.h"
#include "model/ops/cuda/reduce.cuh"
#include "runtime/cuda/cuda_check.h"

namespace zt::gpu {
namespace {

constexpr int kPerLane = 8;  // head dim up to 256
constexpr int kWarpsPerBlock = 4;

__device__ inline float warp_sum(float v) { return warp_reduce(v, Sum{}); }

// Where a row (b, t) of head h starts in a [B*T, H*dh] tensor.
struct Heads {
  int T, H, dh;
  __device__ int64_t at(int64_t b, int64_t t, int64_t h) const {
    return (b * T + t) * H * dh + h * dh;
  }
};

// The warp's row w of the B*H*T rows, ordered (b, h, t): its position t, head h, batch b and
// bh = b * H + h; false past the end (the whole warp returns together).
struct WarpRow {
  int64_t w, t, h, b, bh;
};
__device__ inline bool warp_row(int B, const Heads& hd, WarpRow& r) {
  r.w = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (r.w >= (int64_t)B * hd.H * hd.T) return false;
  r.t = r.w % hd.T, r.bh = r.w / hd.T, r.h = r.bh % hd.H, r.b = r.bh / hd.H;
  return true;
}

__device__ inline void load(float (&r)[kPerLane], const float* p, int dh, float scale = 1.0f) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int col = lane + 32 * c;
    r[c] = col < dh ? p[col] * scale : 0.0f;
  }
}

__device__ inline float dot(const float (&r)[kPerLane], const float* p, int dh) {
  const int lane = threadIdx.x % 32;
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int col = lane + 32 * c;
    if (col < dh) s += r[c] * p[col];
  }
  return warp_sum(s);
}

__device__ inline void store(float* p, const float (&r)[kPerLane], int dh, float scale,
                             bool accumulate) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int col = lane + 32 * c;
    if (col < dh) p[col] = accumulate ? p[col] + scale * r[c] : scale * r[c];
  }
}

__global__ void forward_kernel(float* out, float* lse, const float* q, const float* k,
                               const float* v, int B, Heads hd, float scale) {
  WarpRow r;
  if (!warp_row(B, hd, r)) return;
  const int64_t t = r.t, h = r.h, b = r.b, w = r.w;
  const int lane = threadIdx.x % 32;
  float qf[kPerLane], acc[kPerLane] = {};
  load(qf, q + hd.at(b, t, h), hd.dh, scale);
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = 0; j <= t; ++j) {
    const float s = dot(qf, k + hd.at(b, j, h), hd.dh);
    const float m_new = fmaxf(m, s), corr = expf(m - m_new), p = expf(s - m_new);
    l = l * corr + p;
    const float* vr = v + hd.at(b, j, h);
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int col = lane + 32 * c;
      acc[c] = acc[c] * corr + (col < hd.dh ? p * vr[col] : 0.0f);
    }
    m = m_new;
  }
  store(out + hd.at(b, t, h), acc, hd.dh, 1.0f / l, false);
  if (lane == 0) lse[w] = m + logf(l);
}

// D_t = dot(dO_t, O_t) into scratch, and dq_t.
__global__ void dq_kernel(float* dq, float* drow, const float* dout, const float* out,
                          const float* lse, const float* q, const float* k, const float* v, int B,
                          Heads hd, float scale, bool accumulate) {
  WarpRow r;
  if (!warp_row(B, hd, r)) return;
  const int64_t t = r.t, h = r.h, b = r.b, w = r.w;
  const int lane = threadIdx.x % 32;
  float dof[kPerLane], qf[kPerLane], acc[kPerLane] = {};
  load(dof, dout + hd.at(b, t, h), hd.dh);
  const float D = dot(dof, out + hd.at(b, t, h), hd.dh);
  if (lane == 0) drow[w] = D;
  if (!dq) return;
  load(qf, q + hd.at(b, t, h), hd.dh, scale);
  const float L = lse[w];
  for (int64_t j = 0; j <= t; ++j) {
    const float* kr = k + hd.at(b, j, h);
    const float p = expf(dot(qf, kr, hd.dh) - L);
    const float ds = p * (dot(dof, v + hd.at(b, j, h), hd.dh) - D);
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int col = lane + 32 * c;
      if (col < hd.dh) acc[c] += ds * kr[col];
    }
  }
  store(dq + hd.at(b, t, h), acc, hd.dh, scale, accumulate);
}

// dk_j and dv_j over the queries t >= j.
__global__ void dkdv_kernel(float* dk, float* dv, const float* drow, const float* dout,
                            const float* lse, const float* q, const float* k, const float* v, int B,
                            Heads hd, float scale, bool accumulate) {
  WarpRow r;
  if (!warp_row(B, hd, r)) return;
  const int64_t j = r.t, h = r.h, b = r.b;  // the key row
  const int lane = threadIdx.x % 32;
  float kf[kPerLane], vf[kPerLane], dka[kPerLane] = {}, dva[kPerLane] = {};
  load(kf, k + hd.at(b, j, h), hd.dh, scale);
  load(vf, v + hd.at(b, j, h), hd.dh);
  const int64_t row0 = r.bh * hd.T;  // this (b, h)'s rows in lse and drow
  for (int64_t t = j; t < hd.T; ++t) {
    const float* qr = q + hd.at(b, t, h);
    const float* dor = dout + hd.at(b, t, h);
    const float p = expf(dot(kf, qr, hd.dh) - lse[row0 + t]);
    const float ds = p * (dot(vf, dor, hd.dh) - drow[row0 + t]);
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int col = lane + 32 * c;
      if (col < hd.dh) {
        dva[c] += p * dor[col];
        dka[c] += ds * qr[col];
      }
    }
  }
  if (dk) store(dk + hd.at(b, j, h), dka, hd.dh, scale, accumulate);
  if (dv) store(dv + hd.at(b, j, h), dva, hd.dh, 1.0f, accumulate);
}

void check_head_dim(int dh) {
  ZT_CHECK(dh >= 1 && dh <= 32 * kPerLane, "GPU attention takes a head dim up to ", 32 * kPerLane,
           ", got ", dh);
}

int blocks_for(int64_t rows) { return (int)((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int B, int T, int H, int dh, cudaStream_t stream) {
  check_head_dim(dh);
  const int64_t rows = (int64_t)B * H * T;
  if (rows <= 0) return;
  forward_kernel<<<blocks_for(rows), 32 * kWarpsPerBlock, 0, stream>>>(
      out, lse, q, k, v, B, Heads{T, H, dh}, 1.0f / std::sqrt((float)dh));
  CUDA_CHECK_LAST();
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, int B,
                        int T, int H, int dh, float* scratch, bool accumulate,
                        cudaStream_t stream) {
  check_head_dim(dh);
  const int64_t rows = (int64_t)B * H * T;
  if (rows <= 0 || (!dq && !dk && !dv)) return;
  const Heads hd{T, H, dh};
  const float scale = 1.0f / std::sqrt((float)dh);
  dq_kernel<<<blocks_for(rows), 32 * kWarpsPerBlock, 0, stream>>>(dq, scratch, dout, out, lse, q, k,
                                                                  v, B, hd, scale, accumulate);
  CUDA_CHECK_LAST();
  if (!dk && !dv) return;
  dkdv_kernel<<<blocks_for(rows), 32 * kWarpsPerBlock, 0, stream>>>(dk, dv, scratch, dout, lse, q,
                                                                    k, v, B, hd, scale, accumulate);
  CUDA_CHECK_LAST();
}

}  // namespace zt::gpu
