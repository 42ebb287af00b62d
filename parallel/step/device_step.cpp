// device_step.cpp: the data-parallel step with the passes on a device (train_step.h). The engine's
// hooks stay in charge of the host side (stage-3 gathers, gradient buffers, reductions); around
// them the step moves a unit's parameters to the device on its first use after an update (only
// that use goes to the engine: later microbatches and backward gather nothing), its
// gradients buffer (zero, or what earlier microbatches accumulated) to the device when its
// backward starts, and the gradients back when they are complete: the same sums in the same order
// as the host passes, so on the CPU the same bits at every stage and grad-accum.
#include "model/device/device_passes.h"
#include "parallel/step/train_step.h"
#include "runtime/error.h"
#include "runtime/trace.h"

namespace zt {
namespace {

class DeviceStep : public TrainStep {
 public:
  DeviceStep(Model& model, ZeroEngine& engine, ProcessGrid& grid, DeviceKind kind)
      : model_(model), engine_(engine), dp_(grid.dp()), dm_(model, kind) {
    fresh_.assign(model.table.num_units(), false);
    engine_.passes_keep_params();  // backward reads the device's copies
    in_place_ = engine_.stage() <= 1 && engine_.precision() == DType::fp32;
    // 16-bit runs take the GPU's tensor cores for their fp32 GEMMs (runtime/device.h).
    if (kind == DeviceKind::cuda) set_gpu_tf32(engine_.precision() != DType::fp32);
    const UnitHooks& e = engine_.hooks();
    hooks_.use = [this, &e](int u, Pass p) {
      if (p == Pass::forward) {
        if (fresh_[u]) return;  // the device has them: no gather, no working copy
        e.use(u, p);            // the first use since the parameters changed
        TraceScope ts("copy to device");
        dm_.upload_params(u, model_.unit_params[u]);
        fresh_[u] = true;
        return;
      }
      ZT_CHECK(fresh_[u], "unit ", u, "'s backward before its forward");
      e.use(u, p);                          // the gradient buffer
      if (in_place_ && micro_ > 0) return;  // the device holds the sum so far
      TraceScope ts("copy to device");      // accumulate onto the host's, in the host passes' order
      dm_.upload_grads(u, model_.unit_grads[u]);
    };
    hooks_.done = e.done;
    hooks_.grads_ready = [this, &e](int u) {
      if (!in_place_ || micro_ == micro_total_ - 1) {
        TraceScope ts("copy from device");
        dm_.download_grads(u, model_.unit_grads[u]);
      }
      if (e.grads_ready) e.grads_ready(u);
    };
  }

  StepLosses run(int micro, const MicrobatchSource& batch, int B, int T,
                 float grad_scale) override {
    stale();  // the last step's update (or a resume) changed them
    micro_total_ = micro;
    return run_microbatches(engine_, dp_, model_.cfg, micro, grad_scale, [&](int i, float scale) {
      micro_ = i;
      LossParts lp;
      {
        TraceScope ts("forward");
        lp = device_forward(dm_, acts_, batch(i), B, T, &hooks_, /*backward_next=*/true);
      }
      TraceScope ts("backward");
      device_backward(dm_, acts_, scratch_, scale, &hooks_);
      return lp;
    });
  }

  LossParts evaluate(const int32_t* tokens, int B, int T) override {
    if (!evaluating_) stale(), evaluating_ = true;
    return device_forward(dm_, acts_, tokens, B, T, &hooks_);
  }

  void end_evaluation() override {
    engine_.release_gathered();
    evaluating_ = false;
  }

 private:
  void stale() { fresh_.assign(fresh_.size(), false); }

  Model& model_;
  ZeroEngine& engine_;
  Communicator& dp_;
  DeviceModel dm_;
  DeviceActs acts_;
  DeviceScratch scratch_;
  UnitHooks hooks_;
  std::vector<bool> fresh_;  // [units]: the device holds the unit's current parameters
  bool evaluating_ = false;
  // Stages 0-1 in fp32: the engine's gradient buffer only accumulates until the last microbatch,
  // so the device keeps the sum in between (one copy each way per step, not per microbatch).
  bool in_place_ = false;
  int micro_ = 0, micro_total_ = 1;
};

}  // namespace

std::unique_ptr<TrainStep> make_device_step(Model& model, ZeroEngine& engine, ProcessGrid& grid,
                                            DeviceKind kind) {
  return std::make_unique<DeviceStep>(model, engine, grid, kind);
}

}  // namespace zt
