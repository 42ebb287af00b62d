// dev_ops.cpp: each op on the CPU (model/ops/) or, in CUDA builds, on the GPU (model/ops/cuda/,
// cuBLAS through runtime/device.h). In a CPU build asking for cuda is one error telling how to
// rebuild (the device step refuses earlier, with the flag's name).
#include "model/device/dev_ops.h"

#include <cstring>

#include "runtime/error.h"

#ifdef ZT_CUDA
#include <cuda_runtime.h>

#include "model/ops/cuda/ops_cuda.h"
#include "runtime/cuda/cuda_check.h"
// Runs `call` when k is cuda and returns from the op.
#define ZT_ON_GPU(k, call)       \
  if ((k) == DeviceKind::cuda) { \
    call;                        \
    return;                      \
  }
#else
#define ZT_ON_GPU(k, call) \
  if ((k) == DeviceKind::cuda) no_cuda();
#endif

namespace zt::dev {
namespace {

[[maybe_unused]] [[noreturn]] void no_cuda() {
  fail("a GPU op: this zerotrain binary was built without CUDA (rebuild with cmake -DZT_CUDA=ON)");
}

bool gpu(DeviceKind k) {
  if (k != DeviceKind::cuda) return false;
#ifndef ZT_CUDA
  no_cuda();
#endif
  return true;
}

}  // namespace

void zero(DeviceKind k, float* p, int64_t n) {
  if (n <= 0) return;
  ZT_ON_GPU(k, CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(float) * (size_t)n)));
  std::memset(p, 0, sizeof(float) * (size_t)n);
}

void copy(DeviceKind k, float* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  ZT_ON_GPU(k, CUDA_CHECK(
                   cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyDeviceToDevice)));
  std::memcpy(dst, src, sizeof(float) * (size_t)n);
}

void add(DeviceKind k, float* y, const float* x, int64_t n) {
  ZT_ON_GPU(k, gpu::add(y, x, n));
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void upload(DeviceKind k, void* dst, const void* host, size_t bytes) {
  if (bytes) device_copy(dst, k, host, DeviceKind::cpu, bytes);
}

void download(DeviceKind k, void* host, const void* src, size_t bytes) {
  if (bytes) device_copy(host, DeviceKind::cpu, src, k, bytes);
}

void matmul(DeviceKind k, float* c, const float* a, const float* b, int m, int n, int kk,
            bool trans_a, bool trans_b, bool accumulate) {
  if (!gpu(k)) return zt::matmul(c, a, b, m, n, kk, trans_a, trans_b, accumulate);
  if (m <= 0 || n <= 0) return;
  if (kk <= 0) {  // an empty sum, as the CPU op
    if (!accumulate) zero(k, c, (int64_t)m * n);
    return;
  }
  gemm(k, trans_a, trans_b, m, n, kk, 1.0f, a, trans_a ? m : kk, b, trans_b ? kk : n,
       accumulate ? 1.0f : 0.0f, c, n);
}

void linear_forward(DeviceKind k, float* out, const float* x, const float* w, int n, int in,
                    int out_dim, bool accumulate) {
  matmul(k, out, x, w, n, out_dim, in, false, false, accumulate);
}

void linear_backward_input(DeviceKind k, float* dx, const float* dout, const float* w, int n,
                           int in, int out_dim, bool accumulate) {
  matmul(k, dx, dout, w, n, in, out_dim, false, true, accumulate);
}

void linear_backward_weight(DeviceKind k, float* dw, const float* dout, const float* x, int n,
                            int in, int out_dim) {
  if (n > 0) matmul(k, dw, x, dout, in, out_dim, n, true, false, true);
}

void rmsnorm_forward(DeviceKind k, float* out, float* rstd, const float* x, const float* g, int n,
                     int d, float eps) {
  ZT_ON_GPU(k, gpu::rmsnorm_forward(out, rstd, x, g, n, d, eps));
  zt::rmsnorm_forward(out, rstd, x, g, n, d, eps);
}

void rmsnorm_backward(DeviceKind k, float* dx, float* dg, const float* dout, const float* x,
                      const float* g, const float* rstd, int n, int d) {
  ZT_ON_GPU(k, gpu::rmsnorm_backward(dx, dg, dout, x, g, rstd, n, d));
  zt::rmsnorm_backward(dx, dg, dout, x, g, rstd, n, d);
}

void rope_forward(DeviceKind k, float* out, const float* x, int B, int T, int H, int dh,
                  float base) {
  ZT_ON_GPU(k, gpu::rope_forward(out, x, B, T, H, dh, base));
  zt::rope_forward(out, x, B, T, H, dh, base);
}

void rope_backward(DeviceKind k, float* dx, const float* dout, int B, int T, int H, int dh,
                   float base, bool accumulate) {
  ZT_ON_GPU(k, gpu::rope_backward(dx, dout, B, T, H, dh, base, 0, accumulate));
  zt::rope_backward(dx, dout, B, T, H, dh, base, 0, accumulate);
}

void swiglu_forward(DeviceKind k, float* out, const float* a, const float* b, int64_t n) {
  ZT_ON_GPU(k, gpu::swiglu_forward(out, a, b, n));
  zt::swiglu_forward(out, a, b, n);
}

void swiglu_backward(DeviceKind k, float* da, float* db, const float* dout, const float* a,
                     const float* b, int64_t n) {
  ZT_ON_GPU(k, gpu::swiglu_backward(da, db, dout, a, b, n));
  zt::swiglu_backward(da, db, dout, a, b, n);
}

void embedding_forward(DeviceKind k, float* out, const int32_t* tok, const float* table, int n,
                       int d) {
  ZT_ON_GPU(k, gpu::embedding_forward(out, tok, table, n, d));
  zt::embedding_forward(out, tok, table, n, d);
}

void embedding_backward(DeviceKind k, float* dtable, const float* dout, const int32_t* tok, int n,
                        int d) {
  ZT_ON_GPU(k, gpu::embedding_backward(dtable, dout, tok, n, d));
  zt::embedding_backward(dtable, dout, tok, n, d);
}

int64_t attention_saved_size(DeviceKind k, int B, int T, int H) {
  return (int64_t)B * H * T * (gpu(k) ? 1 : T);
}

void attention_forward(DeviceKind k, float* out, float* saved, const float* q, const float* kk,
                       const float* v, int B, int T, int H, int dh) {
  ZT_ON_GPU(k, gpu::attention_forward(out, saved, q, kk, v, B, T, H, dh));
  zt::attention_forward(out, saved, q, kk, v, B, T, H, dh);
}

void attention_backward(DeviceKind k, float* dq, float* dk, float* dv, const float* dout,
                        const float* out, const float* saved, const float* q, const float* kk,
                        const float* v, int B, int T, int H, int dh, float* scratch,
                        bool accumulate) {
  ZT_ON_GPU(k, gpu::attention_backward(dq, dk, dv, dout, out, saved, q, kk, v, B, T, H, dh, scratch,
                                       accumulate));
  (void)out, (void)scratch;
  zt::attention_backward(dq, dk, dv, dout, saved, q, kk, v, B, T, H, dh, accumulate);
}

double cross_entropy_forward(DeviceKind k, float* losses, const float* logits,
                             const int32_t* targets, int n, int V) {
  if (!gpu(k)) return zt::cross_entropy_forward(losses, logits, targets, n, V);
#ifdef ZT_CUDA
  gpu::cross_entropy_forward(losses, logits, targets, n, V);
#endif
  std::vector<float> host((size_t)n);
  download(k, host.data(), losses, sizeof(float) * (size_t)n);
  double total = 0;  // as the CPU op sums
  for (int i = 0; i < n; ++i) total += host[i];
  return n > 0 ? (float)(total / n) : 0.0f;
}

void cross_entropy_backward(DeviceKind k, float* dlogits, const float* logits,
                            const int32_t* targets, float scale, int n, int V) {
  ZT_ON_GPU(k, gpu::cross_entropy_backward(dlogits, logits, targets, scale, n, V));
  zt::cross_entropy_backward(dlogits, logits, targets, scale, n, V);
}

void router_forward(DeviceKind k, float* probs, int32_t* idx, std::vector<int32_t>& idx_host,
                    float* gates, const float* logits, int n, int E, int K, bool renorm) {
  idx_host.resize((size_t)n * K);
  if (!gpu(k)) return zt::router_forward(probs, idx_host.data(), gates, logits, n, E, K, renorm);
#ifdef ZT_CUDA
  gpu::router_forward(probs, idx, gates, logits, n, E, K, renorm);
#endif
  download(k, idx_host.data(), idx, sizeof(int32_t) * idx_host.size());
}

void router_backward(DeviceKind k, float* dlogits, const float* dgates, const float* dprobs,
                     const float* probs, const int32_t* idx, int n, int E, int K, bool renorm) {
  ZT_ON_GPU(k, gpu::router_backward(dlogits, dgates, dprobs, probs, idx, n, E, K, renorm));
  zt::router_backward(dlogits, dgates, dprobs, probs, idx, n, E, K, renorm);
}

double moe_aux_loss_forward(DeviceKind k, const float* probs, const std::vector<int32_t>& idx_host,
                            int n, int E, int K, float alpha) {
  if (!gpu(k)) return zt::moe_aux_loss_forward(probs, idx_host.data(), n, E, K, alpha);
  std::vector<float> host((size_t)n * E);  // [n, E]: small next to the block's activations
  download(k, host.data(), probs, sizeof(float) * host.size());
  return zt::moe_aux_loss_forward(host.data(), idx_host.data(), n, E, K, alpha);
}

void moe_aux_loss_backward(DeviceKind k, float* dprobs, const std::vector<int32_t>& idx_host, int n,
                           int E, int K, float alpha, float dloss, DevBuf<float>& staging) {
  if (!gpu(k)) return zt::moe_aux_loss_backward(dprobs, idx_host.data(), n, E, K, alpha, dloss);
  std::vector<float> host((size_t)n * E, 0.0f);
  zt::moe_aux_loss_backward(host.data(), idx_host.data(), n, E, K, alpha, dloss);
  float* d = staging.room(k, host.size());
  upload(k, d, host.data(), sizeof(float) * host.size());
  add(k, dprobs, d, (int64_t)host.size());
}

void DevPlan::upload(DeviceKind k) {
  if (!gpu(k)) return;
#ifdef ZT_CUDA
  const std::vector<int32_t> inv = gpu::plan_rows_of(plan);
  auto put = [&](DevBuf<int32_t>& b, const std::vector<int32_t>& v) {
    b.room(k, v.size());
    dev::upload(k, b.data(), v.data(), sizeof(int32_t) * v.size());
  };
  put(token, plan.token);
  put(slot, plan.slot);
  put(row_of, inv);
#endif
}

#ifdef ZT_CUDA
namespace {
gpu::DevicePlan on_device(const DevPlan& p) {
  return {p.plan.n, p.plan.K, p.plan.rows(), p.token.data(), p.slot.data(), p.row_of.data()};
}
}  // namespace
#endif

void moe_dispatch_forward(DeviceKind k, float* xe, const float* x, const DevPlan& p, int d) {
  ZT_ON_GPU(k, gpu::moe_dispatch_forward(xe, x, on_device(p), d));
  zt::moe_dispatch_forward(xe, x, p.plan, d);
}

void moe_dispatch_backward(DeviceKind k, float* dx, const float* dxe, const DevPlan& p, int d) {
  ZT_ON_GPU(k, gpu::moe_dispatch_backward(dx, dxe, on_device(p), d));
  zt::moe_dispatch_backward(dx, dxe, p.plan, d);
}

void moe_combine_forward(DeviceKind k, float* out, const float* ye, const float* gates,
                         const DevPlan& p, int d) {
  ZT_ON_GPU(k, gpu::moe_combine_forward(out, ye, gates, on_device(p), d));
  zt::moe_combine_forward(out, ye, gates, p.plan, d);
}

void moe_combine_backward(DeviceKind k, float* dye, float* dgates, const float* dout,
                          const float* ye, const float* gates, const DevPlan& p, int d) {
  ZT_ON_GPU(k, gpu::moe_combine_backward(dye, dgates, dout, ye, gates, on_device(p), d));
  zt::moe_combine_backward(dye, dgates, dout, ye, gates, p.plan, d);
}

}  // namespace zt::dev
