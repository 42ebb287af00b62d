// train_qat.cpp: QAT in a training run (SPEC section 7; the model side is model/qat.h): when fake
// quant starts, the step sizes' initialisation from the weights, and the step's "qat" metrics.
#include <cstdio>

#include "launch/train_setup.h"
#include "model/qat.h"
#include "parallel/comm/gather.h"
#include "runtime/error.h"

namespace zt {
namespace {

// Every unit's step sizes from its weights as they are now (collective over each unit's group):
// the unit's state is gathered, its step sizes set, and loaded back, the moments with it.
void init_step_sizes_from_weights(TrainRun& r) {
  Model& m = *r.model;
  const ParamTable& t = m.table;
  for (int u = 0; u < t.num_units(); ++u) {
    bool quantized = false;
    for (const ParamSpec& p : t.params) quantized |= p.unit == u && p.qweight >= 0;
    if (!quantized || !m.owns(u)) continue;
    std::vector<float> p, mo, v;  // this rank's slice of the unit
    r.engine->gather_unit_state(u, p, &mo, &v);
    init_unit_step_sizes(t, u, p.data(), m.tp);
    auto logical = [&](const std::vector<float>& local) {
      std::vector<float> whole((size_t)t.units[u].full_numel, 0.0f);
      for (const ParamSpec& q : t.params)
        if (q.unit == u) copy_slice_back(q, local.data(), whole.data());
      return whole;
    };
    const std::vector<float> lm = logical(mo), lv = logical(v);
    r.engine->load_unit_state(u, logical(p), &lm, &lv);
  }
}

}  // namespace

void prepare_qat_step(TrainRun& r, bool measure) {
  const QatConfig& q = r.o.model.qat;
  QatState& s = r.model->qat;
  s.active = qat_active_at(q, r.state.step);
  s.measure = s.active && measure;
  s.error = {};
  if (!s.active || r.qat_ready) return;
  init_step_sizes_from_weights(r);
  r.qat_ready = true;
  if (r.rank0()) {
    std::printf(
        "zerotrain train: QAT %s (%s) from step %lld: step sizes initialised from the "
        "weights\n",
        qat_name(q.bits),
        q.bits == QatBits::int8 || q.group_size == 0
            ? "per output channel"
            : cat("groups of ", q.group_size, " input rows").c_str(),
        (long long)r.state.step + 1);
    std::fflush(stdout);
  }
}

QuantError end_qat_step(TrainRun& r) {
  r.model->qat.measure = false;
  r.model->qat.grad_scratch.reset(0, MemCategory::buffers);
  return r.model->qat.error;
}

nlohmann::json qat_metrics(TrainRun& r, const QuantError& e) {
  const QatConfig& q = r.o.model.qat;
  // Summed over the ranks: each counts the weights it quantized (replicas alike, so the ratios
  // weigh every weight the same, give or take expert parallelism's unreplicated experts).
  const std::vector<double> s =
      sum_exact(*r.world, {e.abs_diff, e.abs_w, (double)e.clipped, (double)e.count});
  nlohmann::json j = {{"bits", qat_name(q.bits)},
                      {"group_size", q.bits == QatBits::int8 ? 0 : q.group_size},
                      {"active", r.model->qat.active}};
  if (s[3] > 0) {
    j["rel_error"] = s[1] > 0 ? s[0] / s[1] : 0.0;
    j["clipped"] = s[2] / s[3];
  }
  return j;
}

}  // namespace zt
