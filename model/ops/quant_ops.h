// quant_ops.h: the ops of quantization-aware training (SPEC section 7), on raw pointers, in the
// conventions of ops.h.
//
// Weights w [in, out] (row-major, y = x w) with step sizes s [in / G, out]: input rows i of one
// group of G share s[(i / G) * out + o] (G = in: one step size per output channel). Levels
// -qp..qp (int8 127, int4 7, int2 1: ternary):
//   q(w) = clamp(round(w / s), -qp, qp) * s                 (round half to even; s >= kMinStep)
// Backward (LSQ, arXiv 1902.08153: straight-through estimator), given g = dL/dq(w):
//   dw += g            where |w / s| <= qp (1 + 1e-6), nothing where w is clipped
//   ds += gscale * sum over the group of g * (round(v) - v inside, the clamp level outside)
//   with v = w / s and gscale = 1 / sqrt(G * qp) (G elements share a step size).
// Activations, the inputs of quantized linears: int8 per row (token), dynamic absmax:
//   s_t = max_j |x_tj| / 127, x <- round(x / s_t) * s_t; the gradient passes straight through.
// The integer linear runs int8 x int8 products into int32 sums, one per group, each scaled once.
// References for the tests: tests/unit/quant_ops_test.cpp (closed forms and an int64 GEMM).
#pragma once
#include <cstdint>
#include <vector>

namespace zt {

constexpr float kMinStep =
    1e-12f;  // step sizes below this count as this (a trained one may shrink)

// q [in, out] = q(w); q may alias w.
void fake_quant_weight(float* q, const float* w, const float* s, int in, int out, int G, int qp);
// dw, ds += the LSQ gradients given g [in, out] = dL/dq(w). `shared`: how many weights share a
// step size, for gscale (0: G; a tensor-parallel slice of a column has G = its rows of it).
void fake_quant_weight_backward(float* dw, float* ds, const float* g, const float* w,
                                const float* s, int in, int out, int G, int qp, int shared = 0);
// The integer levels round(w / s) clamped, as stored by an export.
void quantize_weight(int8_t* wi, const float* w, const float* s, int in, int out, int G, int qp);

// Step sizes for w: mse, the one of 20 candidates f * absmax / qp (f from 1 down to 0.335)
// with the least squared error over the group (QAT's start); otherwise absmax / qp
// (post-training quantization). An all-zero group gets kMinStep.
void init_step_sizes(float* s, const float* w, int in, int out, int G, int qp, bool mse);

// x [n, d] fake-quantized to int8 per row, in place; with amax [n], each row's absmax given (a
// row split over tensor-parallel ranks: the largest over all of them).
void fake_quant_rows(float* x, int64_t n, int d, const float* amax = nullptr);
// Each row's absmax [n].
void row_absmax(float* amax, const float* x, int64_t n, int d);
// Its integer form: xi [n, d] and the row scales sx [n] (x = xi * sx).
void quantize_rows(int8_t* xi, float* sx, const float* x, int64_t n, int d);

// y[n, out] (=, or += when accumulate) sx[r] * sum over groups g of s[g, o] * (sum over the
// group's rows i of xi[r, i] * wi[i, o]), the inner sums in int32.
void int8_linear_forward(float* y, const int8_t* xi, const float* sx, const int8_t* wi,
                         const float* s, int n, int in, int out, int G, bool accumulate);

// The weight of int8_linear_forward packed for AVX-512 VNNI (vpdpbusd: 4 input rows by 16 output
// columns per instruction), with each group's column sums (the activations go in as unsigned
// x + 128, corrected by 128 x the sums). Empty when the CPU lacks VNNI or G is not a multiple of 4.
struct Int8Packed {
  int in = 0, out = 0, G = 0;
  std::vector<int8_t> w;        // [in / 4][ceil(out / 16)][16][4]
  std::vector<int32_t> colsum;  // [in / G][ceil(out / 16) x 16]: 128 x each group's column sum
  bool empty() const { return w.empty(); }
};
bool int8_vnni_available();
// `vnni` false: empty (the tests compare both paths).
Int8Packed pack_int8_weight(const int8_t* wi, int in, int out, int G, bool vnni = true);
// int8_linear_forward through a packed weight: the same integer sums, the same result.
void int8_linear_forward(float* y, const int8_t* xi, const float* sx, const Int8Packed& w,
                         const float* s, int n, bool accumulate);

// What quantization does to w: sum |w - q(w)|, sum |w|, elements clipped (|w / s| > qp: the
// straight-through gradient does not reach them).
struct QuantError {
  double abs_diff = 0, abs_w = 0;
  int64_t clipped = 0, count = 0;
};
void add_quant_error(QuantError& e, const float* w, const float* s, int in, int out, int G, int qp);

}  // namespace zt
