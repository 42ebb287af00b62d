// qat.cpp: the model side of QAT (qat.h, qat_linear.h).
#include "model/qat.h"

#include <vector>

#include "model/qat_linear.h"
#include "model/tp_hook.h"
#include "runtime/error.h"

namespace zt {

void init_unit_step_sizes(const ParamTable& t, int u, float* buf, TensorParallelHook* tp,
                          bool mse) {
  for (const ParamSpec& p : t.params) {
    if (p.unit != u || p.qweight < 0) continue;
    const ParamSpec& w = t.params[p.qweight];
    const float* wv = buf + w.offset;
    int in = (int)w.shape[0], group = qat_group(t, w);
    std::vector<float> whole;
    if (tp && w.split == Split::row && p.split == Split::none) {
      // A row-parallel slice with per-channel step sizes: they see the whole column.
      whole.resize((size_t)w.full_numel);
      tp->gather(wv, w.numel, whole.data());  // the slices' rows in rank order: the whole weight
      wv = whole.data(), in = group = (int)w.full_shape[0];
    }
    init_step_sizes(buf + p.offset, wv, in, (int)w.shape[1], group, t.qat.qp(), mse);
  }
}

void qat_input_split(Model& m, float* x, int64_t n, int d) {
  if (!m.qat.active) return;
  if (!m.tp) {
    fake_quant_rows(x, n, d);
    return;
  }
  std::vector<float> mine((size_t)n), all((size_t)n * m.slice.size);
  row_absmax(mine.data(), x, n, d);
  m.tp->gather(mine.data(), n, all.data());
  for (int r = 0; r < m.slice.size; ++r)
    for (int64_t i = 0; i < n; ++i) mine[i] = std::max(mine[i], all[(size_t)r * n + i]);
  fake_quant_rows(x, n, d, mine.data());
}

const float* qat_weight(Model& m, int w) {
  if (!is_quantized(m, w)) return m.param(w);
  Buffer<float>& q = m.qat.fq[w];
  const ParamSpec& p = m.table.params[w];
  if (q.size() == 0) {
    q.reset((size_t)p.numel, MemCategory::buffers);
    const int in = (int)p.shape[0], out = (int)p.shape[1], g = qat_group(m.table, p);
    fake_quant_weight(q.data(), m.param(w), m.param(p.qscale), in, out, g, m.table.qat.qp());
    if (m.qat.measure)
      add_quant_error(m.qat.error, m.param(w), m.param(p.qscale), in, out, g, m.table.qat.qp());
  }
  return q.data();
}

void qat_linear_forward(Model& m, int w, float* out, const float* x, int n, int in, int o,
                        bool accumulate) {
  if (!m.qat.integer || !is_quantized(m, w)) {
    linear_forward(out, x, qat_weight(m, w), n, in, o, accumulate);
    return;
  }
  const ParamSpec& p = m.table.params[w];
  ZT_CHECK(m.qat.level[w].size() == (size_t)p.numel, "no integer levels for ", p.name);
  m.qat.xi.resize((size_t)n * in);
  m.qat.sx.resize((size_t)n);
  quantize_rows(m.qat.xi.data(), m.qat.sx.data(), x, n, in);
  if (w < (int)m.qat.packed.size() && !m.qat.packed[w].empty()) {
    int8_linear_forward(out, m.qat.xi.data(), m.qat.sx.data(), m.qat.packed[w], m.param(p.qscale),
                        n, accumulate);
    return;
  }
  int8_linear_forward(out, m.qat.xi.data(), m.qat.sx.data(), m.qat.level[w].data(),
                      m.param(p.qscale), n, in, o, qat_group(m.table, p), accumulate);
}

void qat_weight_grad(Model& m, std::vector<WeightGradJob>& jobs, bool defer, int w, const float* x,
                     const float* dout, int n, int in, int o) {
  WeightQuant q;
  if (is_quantized(m, w)) {
    const ParamSpec& p = m.table.params[w];
    const ParamSpec& sp = m.table.params[p.qscale];
    q = {m.param(w), m.param(p.qscale), m.grad(p.qscale), qat_group(m.table, p), m.table.qat.qp()};
    q.shared = m.table.qat.group_rows((int)p.full_shape[0]);
    q.scratch = &m.qat.grad_scratch;
    if (m.tp && p.split == Split::row && sp.split == Split::none) q.sum = m.tp, q.layer = p.layer;
  }
  weight_grad(jobs, defer, m.grad(w), x, dout, n, in, o, /*transient_x=*/false, q);
}

void qat_release(Model& m, int l) {
  if (m.qat.keep || m.qat.fq.empty()) return;
  for (size_t i = 0; i < m.table.params.size(); ++i)
    if (m.table.params[i].layer == l && m.qat.fq[i].size() > 0)
      m.qat.fq[i].reset(0, MemCategory::buffers);
}

}  // namespace zt
