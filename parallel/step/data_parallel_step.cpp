// data_parallel_step.cpp: the data-parallel train step (train_step.h): microbatch after microbatch,
// forward then backward through the whole model, the ZeRO engine driven by the passes' hooks; and
// that loop over the microbatches, which the device step (device_step.cpp) shares.
#include "model/passes.h"
#include "parallel/comm/gather.h"
#include "parallel/step/train_step.h"
#include "runtime/trace.h"

namespace zt {
namespace {

class DataParallelStep : public TrainStep {
 public:
  DataParallelStep(Model& model, ZeroEngine& engine, ProcessGrid& grid)
      : model_(model), engine_(engine), dp_(grid.dp()) {}

  StepLosses run(int micro, const MicrobatchSource& batch, int B, int T,
                 float grad_scale) override {
    return run_microbatches(engine_, dp_, model_.cfg, micro, grad_scale, [&](int i, float scale) {
      LossParts lp;
      {
        TraceScope ts("forward");
        lp = model_forward(model_, acts_, batch(i), B, T, &engine_.hooks(),
                           /*backward_next=*/true);
      }
      TraceScope ts("backward");
      model_backward(model_, acts_, scratch_, scale, &engine_.hooks());
      return lp;
    });
  }

  LossParts evaluate(const int32_t* tokens, int B, int T) override {
    return model_forward(model_, acts_, tokens, B, T, &engine_.hooks());
  }

  void end_evaluation() override { engine_.release_gathered(); }

 private:
  Model& model_;
  ZeroEngine& engine_;
  Communicator& dp_;
  Acts acts_;
  GradScratch scratch_;
};

}  // namespace

StepLosses run_microbatches(ZeroEngine& engine, Communicator& dp, const ModelConfig& c, int micro,
                            float grad_scale, const MicrobatchPass& pass) {
  const float loss_scale = grad_scale / (float)(micro * dp.size());  // of the global mean
  double ce = 0, aux = 0;
  int64_t dropped = 0;
  std::vector<int64_t> load(load_size(c), 0);
  engine.begin_step(micro);
  for (int i = 0; i < micro; ++i) {
    const LossParts lp = pass(i, loss_scale * (float)engine.loss_scale());
    engine.end_microbatch();
    ce += lp.ce, aux += lp.aux, dropped += lp.dropped;
    add_load(load, lp.load);
  }
  const std::vector<double> s = sum_exact(dp, loss_sums(ce, aux, dropped, load));
  const double n = (double)micro * dp.size();
  return {s[0] / n, s[1] / n, (int64_t)s[2], {s.begin() + 3, s.end()}};
}

std::vector<double> loss_sums(double ce, double aux, int64_t dropped,
                              const std::vector<int64_t>& load) {
  std::vector<double> v{ce, aux, (double)dropped};
  v.insert(v.end(), load.begin(), load.end());
  return v;
}

void add_load(std::vector<int64_t>& into, const std::vector<int64_t>& load) {
  for (size_t e = 0; e < load.size() && e < into.size(); ++e) into[e] += load[e];
}

std::unique_ptr<TrainStep> make_data_parallel_step(Model& model, ZeroEngine& engine,
                                                   ProcessGrid& grid) {
  return std::make_unique<DataParallelStep>(model, engine, grid);
}

}  // namespace zt
