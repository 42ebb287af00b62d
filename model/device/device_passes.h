// device_passes.h: the whole model's forward and backward over one microbatch on one device
// (runtime/device.h's kinds), with its parameters, gradients and activations in that device's
// memory: the GPU training path's passes, which run on the CPU too (the same ops, the same
// order: the host passes' losses and gradients, tested without a GPU).
//
// What it runs: the model of SPEC section 1, dense and MoE blocks (router, top-k with capacity,
// routed experts one GEMM each, shared expert, aux loss), tied or untied head, on one rank's
// whole model. Tensor, pipeline and expert parallelism and QAT stay on the host passes
// (model/passes.h); device_supports() says which.
//
// Parameters come from the host unit by unit (the ZeRO engine keeps the master weights and the
// optimizer there); gradients go back unit by unit. Both through the hooks of passes.h, which
// the device passes call in the same order as model_forward / model_backward.
#pragma once
#include <string>
#include <vector>

#include "model/device/dev_buffer.h"
#include "model/device/dev_ops.h"
#include "model/passes.h"

namespace zt {

// Empty when the device passes run this model, else what they do not run (one line).
std::string device_supports(const Model& m);

// The model's parameters and gradients on a device, one buffer per unit, laid out as the host's
// (ParamTable offsets). The host Model gives the shapes and parameter indices.
struct DeviceModel {
  DeviceModel(const Model& host, DeviceKind kind);
  const Model& host;
  DeviceKind kind;
  std::vector<DevBuf<float>> params, grads;  // [units]

  const float* param(int idx) const;
  float* grad(int idx);
  void upload_params(int unit, const float* src);  // the unit's parameters from the host
  // The unit's gradients from the host (to accumulate onto them, as the host passes do), to the
  // host (overwriting dst), or zeroed.
  void upload_grads(int unit, const float* src);
  void download_grads(int unit, float* dst);
  void zero_grads(int unit);
};

// What backward needs of one block, on the device (acts.h's BlockActs without the parallel
// layouts' buffers). `saved` is attention's (dev_ops.h: probabilities or log-sum-exps).
struct DeviceBlockActs {
  DevBuf<float> xa, q, k, v, att, saved, h, xf, rstd_a, rstd_f;
  DevBuf<float> fa, fb, fs;              // dense FFN [N, ffn_dim]
  DevBuf<float> rlogits, rprobs, gates;  // MoE: [N, E], [N, E], [N, K]
  DevBuf<int32_t> idx;                   // [N, K] the router's picks (on a GPU; see idx_host)
  std::vector<int32_t> idx_host;         // the same picks on the host (plan, load, aux loss)
  dev::DevPlan plan;
  DevBuf<float> xe, ye, ea, eb, es;  // dispatched rows, expert outputs, expert SwiGLU
  DevBuf<float> sa, sb, ss;          // shared expert [N, shared hidden]
};

struct DeviceActs {
  int B = 0, T = 0, N = 0;
  std::vector<int32_t> inputs, targets;  // [N] on the host
  DevBuf<int32_t> d_inputs, d_targets;   // ... and on the device
  std::vector<DevBuf<float>> resid;      // [layers + 1]
  std::vector<DeviceBlockActs> blocks;   // [layers]
  DevBuf<float> xn, rstd, logits, losses, dres;
};

// Backward temporaries shared by the blocks and the head.
struct DeviceScratch {
  DevBuf<float> dxf, datt, dq, dk, dv, dqr, dkr, dxa, att;  // att: attention's scratch
  DevBuf<float> dha, dhb, dhs, dye, dxe, dgates, dprobs, drlogits, dlogits;
  DevBuf<float> aux;  // the aux loss's gradient on its way to the device
};

// model_forward / model_backward of passes.h on the device model.
LossParts device_forward(DeviceModel& m, DeviceActs& a, const int32_t* tokens, int B, int T,
                         const UnitHooks* hooks = nullptr, bool backward_next = false);
void device_backward(DeviceModel& m, DeviceActs& a, DeviceScratch& s, float loss_scale,
                     const UnitHooks* hooks = nullptr);

}  // namespace zt
