// dev_ops.h: the model's ops on one device, chosen by its kind (runtime/device.h): the CPU ops of
// model/ops/ops.h on host pointers, or, in CUDA builds, the GPU kernels of model/ops/cuda/ and
// cuBLAS on device pointers. The same calls in the same order give the CPU run's bits on the CPU,
// which is how the device passes (device_passes.h) are tested on machines without a GPU.
//
// Conventions are ops.h's (what accumulates, what is saved), with three differences the GPU
// needs:
//  - attention saves `attention_saved_size` floats: the probabilities [B, H, T, T] on the CPU, each
//    query row's log-sum-exp [B*H*T] on the GPU (which never forms T x T scores); its backward
//    also reads the forward's output and needs [B*H*T] of scratch on the GPU;
//  - the MoE plan is made on the host (its router's picks are copied back), then uploaded
//    (DevPlan);
//  - cross_entropy_forward and the aux loss return their value on the host.
// Work goes to the default stream; copies to and from the host are complete when they return.
#pragma once
#include <cstdint>
#include <vector>

#include "model/device/dev_buffer.h"
#include "model/ops/ops.h"

namespace zt::dev {

// Fills, copies and adds on the device (n elements).
void zero(DeviceKind k, float* p, int64_t n);
void copy(DeviceKind k, float* dst, const float* src, int64_t n);
void add(DeviceKind k, float* y, const float* x, int64_t n);  // y += x
// Host <-> device; complete on return.
void upload(DeviceKind k, void* dst, const void* host, size_t bytes);
void download(DeviceKind k, void* host, const void* src, size_t bytes);

// c[m, n] (=, or += when accumulate) op(a) op(b), as ops.h's matmul; and the linear layer on it.
void matmul(DeviceKind k, float* c, const float* a, const float* b, int m, int n, int kk,
            bool trans_a, bool trans_b, bool accumulate = false);
void linear_forward(DeviceKind k, float* out, const float* x, const float* w, int n, int in,
                    int out_dim, bool accumulate = false);
void linear_backward_input(DeviceKind k, float* dx, const float* dout, const float* w, int n,
                           int in, int out_dim, bool accumulate = true);
void linear_backward_weight(DeviceKind k, float* dw, const float* dout, const float* x, int n,
                            int in, int out_dim);

void rmsnorm_forward(DeviceKind k, float* out, float* rstd, const float* x, const float* g, int n,
                     int d, float eps);
void rmsnorm_backward(DeviceKind k, float* dx, float* dg, const float* dout, const float* x,
                      const float* g, const float* rstd, int n, int d);
void rope_forward(DeviceKind k, float* out, const float* x, int B, int T, int H, int dh,
                  float base);
void rope_backward(DeviceKind k, float* dx, const float* dout, int B, int T, int H, int dh,
                   float base, bool accumulate);
void swiglu_forward(DeviceKind k, float* out, const float* a, const float* b, int64_t n);
void swiglu_backward(DeviceKind k, float* da, float* db, const float* dout, const float* a,
                     const float* b, int64_t n);
void embedding_forward(DeviceKind k, float* out, const int32_t* tok, const float* table, int n,
                       int d);
void embedding_backward(DeviceKind k, float* dtable, const float* dout, const int32_t* tok, int n,
                        int d);

int64_t attention_saved_size(DeviceKind k, int B, int T, int H);
void attention_forward(DeviceKind k, float* out, float* saved, const float* q, const float* kk,
                       const float* v, int B, int T, int H, int dh);
void attention_backward(DeviceKind k, float* dq, float* dk, float* dv, const float* dout,
                        const float* out, const float* saved, const float* q, const float* kk,
                        const float* v, int B, int T, int H, int dh, float* scratch,
                        bool accumulate);

// losses [n] on the device; returns their mean (summed on the host in the CPU op's order). The
// targets were checked on the host when the tokens were split (layers.h, split_tokens).
double cross_entropy_forward(DeviceKind k, float* losses, const float* logits,
                             const int32_t* targets, int n, int V);
void cross_entropy_backward(DeviceKind k, float* dlogits, const float* logits,
                            const int32_t* targets, float scale, int n, int V);

// Router: probs, gates and the picks on the device; the picks copied to idx_host [n, K] too.
void router_forward(DeviceKind k, float* probs, int32_t* idx, std::vector<int32_t>& idx_host,
                    float* gates, const float* logits, int n, int E, int K, bool renorm);
void router_backward(DeviceKind k, float* dlogits, const float* dgates, const float* dprobs,
                     const float* probs, const int32_t* idx, int n, int E, int K, bool renorm);
// The balance loss from the device's probs and the host's picks; its backward adds to dprobs
// (on a GPU through `staging`, [n, E] kept by the caller).
double moe_aux_loss_forward(DeviceKind k, const float* probs, const std::vector<int32_t>& idx_host,
                            int n, int E, int K, float alpha);
void moe_aux_loss_backward(DeviceKind k, float* dprobs, const std::vector<int32_t>& idx_host, int n,
                           int E, int K, float alpha, float dloss, DevBuf<float>& staging);

// A MoE plan on the host and, on a GPU, its rows' tokens, slots and the inverse on the device.
struct DevPlan {
  MoePlan plan;
  DevBuf<int32_t> token, slot, row_of;
  void upload(DeviceKind k);  // after moe_plan filled `plan`
};
void moe_dispatch_forward(DeviceKind k, float* xe, const float* x, const DevPlan& p, int d);
void moe_dispatch_backward(DeviceKind k, float* dx, const float* dxe, const DevPlan& p, int d);
void moe_combine_forward(DeviceKind k, float* out, const float* ye, const float* gates,
                         const DevPlan& p, int d);
void moe_combine_backward(DeviceKind k, float* dye, float* dgates, const float* dout,
                          const float* ye, const float* gates, const DevPlan& p, int d);

}  // namespace zt::dev
