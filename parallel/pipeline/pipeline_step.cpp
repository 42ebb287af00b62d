// pipeline_step.cpp: a pipeline stage's train step (pipeline_step.h).
#include "parallel/pipeline/pipeline_step.h"

#include <deque>

#include "model/layers.h"
#include "parallel/comm/gather.h"
#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/trace.h"

namespace zt {
namespace {

class PipelineStep : public TrainStep {
 public:
  PipelineStep(Model& m, ZeroEngine& e, ProcessGrid& grid, const PipelineLayout& layout,
               PipeScheduleKind kind)
      : m_(m),
        e_(e),
        grid_(grid),
        lay_(layout),
        kind_(kind),
        pp_(grid.pp()),
        stage_(grid.coord().pp),
        P_(layout.stages),
        V_(layout.chunks) {
    ZT_CHECK(pp_.size() == P_, "pipeline of ", P_, " stages on a pp group of ", pp_.size());
    // The units of each of this stage's chunks, in forward order, and how many chunks use each.
    users_.assign(m.table.num_units(), 0);
    for (int c = 0; c < V_; ++c) {
      const PipeChunk& ch = lay_.chunk(stage_, c);
      std::vector<int> us;
      if (ch.embed) us.push_back(m.embed_unit);
      for (int l = ch.first_block; l < ch.end_block; ++l) {
        us.push_back(m.blocks[l].unit);
        if (m.blocks[l].expert_unit >= 0) us.push_back(m.blocks[l].expert_unit);
      }
      if (ch.head) {
        us.push_back(m.head_unit);
        if (!m.cfg.untie_embeddings && !ch.embed) us.push_back(m.embed_unit);
      }
      for (int u : us) ++users_[u];
      chunk_units_.push_back(std::move(us));
    }
  }

  StepLosses run(int micro, const MicrobatchSource& batch, int B, int T,
                 float grad_scale) override {
    if (micro != sched_micro_) {
      schedule_ = pipe_schedule(kind_, P_, micro, V_)[stage_];
      sched_micro_ = micro;
    }
    const int dp = grid_.dp().size();
    const float loss_scale = grad_scale / (float)(micro * dp) * (float)e_.loss_scale();
    const bool split = kind_ == PipeScheduleKind::zero_bubble;
    wait_ms_ = 0;
    sums_ = {};
    slot_.assign(micro, -1);
    chunks_left_.assign(micro, V_);
    free_.clear();
    for (int k = (int)pool_.size() - 1; k >= 0; --k) free_.push_back(k);
    finished_.assign(V_, 0);
    chunks_done_.assign(m_.table.num_units(), 0);
    e_.begin_step(micro, /*per_step=*/true);
    for (const PipeAction& a : schedule_) {
      if (slot_[a.micro] < 0) {  // a microbatch's first action here: F of chunk 0
        slot_[a.micro] = take_slot();
        // every stage needs the tokens: the first the inputs, the last the targets
        load_tokens(m_, pool_[slot_[a.micro]], batch(a.micro), B, T);
      }
      const double t0 = now_ms(), w0 = wait_ms_;
      switch (a.op) {
        case PipeOp::F: forward(a.micro, a.chunk); break;
        case PipeOp::B: backward(a.micro, a.chunk, loss_scale, split); break;
        case PipeOp::W: weights(a.micro, a.chunk); break;
      }
      if (Tracer::get().on()) trace_action(a, split, t0 + (wait_ms_ - w0), now_ms());
      if (a.op == (split ? PipeOp::W : PipeOp::B)) {  // the chunk is done with this microbatch
        if (--chunks_left_[a.micro] == 0) free_.push_back(slot_[a.micro]);
        if (++finished_[a.chunk] == micro) chunk_done(a.chunk);
      }
    }
    drain_sends();
    // The global batch's means: the head's stage has the cross-entropy, every stage the aux loss
    // of its blocks; summed over the stages (where a stage that is done waits for the last one:
    // idle, counted), then over dp.
    const double t0 = now_ms();
    std::vector<double> s = sum_exact(pp_, loss_sums(sums_.ce, sums_.aux, sums_.dropped, load()));
    wait_ms_ += now_ms() - t0;
    s = sum_exact(grid_.dp(), s);
    const double n = (double)micro * dp;
    return {s[0] / n, s[1] / n, (int64_t)s[2], {s.begin() + 3, s.end()}};
  }

  LossParts evaluate(const int32_t* tokens, int B, int T) override {
    sums_ = {};
    slot_.assign(1, 0);
    if (pool_.empty()) pool_.emplace_back();
    load_tokens(m_, pool_[0], tokens, B, T);
    for (int v = 0; v < P_ * V_; ++v)
      if (v % P_ == stage_) forward(0, v / P_);
    drain_sends();
    std::vector<double> s = sum_exact(pp_, loss_sums(sums_.ce, sums_.aux, sums_.dropped, load()));
    LossParts lp;
    lp.ce = s[0], lp.aux = s[1], lp.dropped = (int64_t)s[2];
    return lp;
  }

  void end_evaluation() override { e_.release_gathered(); }
  const char* schedule_name() const override { return pipe_schedule_name(kind_); }
  double wait_ms() const override { return wait_ms_; }

 private:
  struct Sums {
    double ce = 0, aux = 0;
    int64_t dropped = 0;
    std::vector<int64_t> load;  // [layers x experts]: this stage's blocks'
  };
  std::vector<int64_t> load() const {  // the same length on every stage
    std::vector<int64_t> l(load_size(m_.cfg), 0);
    add_load(l, sums_.load);
    return l;
  }
  struct Outgoing {
    Buffer<float> buf;
    Work sent;
    double t0 = 0;
    std::string what;  // trace span name
  };

  // The action's compute as a span (after the wait for its input, which has its own span):
  // "forward mb 3", "backward mb 3" (input and weights), "backward input mb 3", "backward weight
  // mb 3", with " chunk c" when the stage holds several.
  void trace_action(const PipeAction& a, bool split, double t0, double t1) const {
    const char* op = a.op == PipeOp::F   ? "forward"
                     : a.op == PipeOp::W ? "backward weight"
                     : split             ? "backward input"
                                         : "backward";
    std::string name = cat(op, " mb ", a.micro);
    if (V_ > 1) name += cat(" chunk ", a.chunk);
    Tracer::get().span(name, TraceTrack::compute, t0, t1);
  }

  int virt(int chunk) const { return chunk * P_ + stage_; }
  int rank_of(int v) const { return v % P_; }
  // Messages match by (peer, tag) in issue order, and every schedule runs a chunk's forwards, and
  // its backwards, in microbatch order on both sides: the virtual stage and direction suffice.
  int tag(int /*micro*/, int v, int dir) const { return v * 2 + dir; }
  int64_t rows_d(const Acts& a) const { return (int64_t)a.rows * m_.cfg.model_dim; }

  int take_slot() {
    if (free_.empty()) {
      pool_.emplace_back();
      return (int)pool_.size() - 1;
    }
    const int k = free_.back();
    free_.pop_back();
    return k;
  }

  void use(int chunk, Pass p) {
    for (int u : chunk_units_[chunk]) e_.hooks().use(u, p);
  }

  // The activation or gradient for virtual stage v from its neighbour, into dst.
  void receive(float* dst, int64_t n, int from_v, int micro, int v, int dir) {
    Work w = pp_.recv(dst, (size_t)n, DType::fp32, rank_of(from_v), tag(micro, v, dir));
    const double t0 = now_ms();
    w.wait();
    const double t1 = now_ms();
    wait_ms_ += t1 - t0;
    if (Tracer::get().on())
      Tracer::get().span(cat(dir ? "wait grad mb " : "wait act mb ", micro), TraceTrack::compute,
                         t0, t1);
  }

  // src, copied (the caller may overwrite it), to virtual stage to_v.
  void send(const float* src, int64_t n, int to_v, int micro, int dir) {
    Outgoing& o = out_.emplace_back();
    o.buf.reset((size_t)n, MemCategory::buffers);
    std::copy(src, src + n, o.buf.data());
    o.t0 = now_ms();
    o.sent = pp_.send(o.buf.data(), (size_t)n, DType::fp32, rank_of(to_v), tag(micro, to_v, dir));
    if (Tracer::get().on()) o.what = cat(dir ? "send grad mb " : "send act mb ", micro);
    while (!out_.empty() && out_.front().sent.test()) pop_send();
  }

  void pop_send() {
    Outgoing& o = out_.front();
    if (!o.what.empty()) Tracer::get().span(o.what, TraceTrack::comm, o.t0, now_ms());
    out_.pop_front();
  }

  void drain_sends() {
    const double t0 = now_ms();
    for (Outgoing& o : out_) o.sent.wait();
    wait_ms_ += now_ms() - t0;
    while (!out_.empty()) pop_send();
  }

  void forward(int micro, int chunk) {
    Acts& a = pool_[slot_[micro]];
    const PipeChunk& ch = lay_.chunk(stage_, chunk);
    const int v = virt(chunk);
    use(chunk, Pass::forward);
    if (ch.embed)
      embed_forward(m_, a);
    else
      receive(room(a.resid[ch.first_block], rows_d(a)), rows_d(a), v - 1, micro, v, 0);
    LossParts lp;
    for (int l = ch.first_block; l < ch.end_block; ++l) block_forward(m_, l, a, lp);
    sums_.aux += lp.aux, sums_.dropped += lp.dropped;
    if (sums_.load.empty()) sums_.load.assign(load_size(m_.cfg), 0);
    add_load(sums_.load, lp.load);
    if (ch.head) {
      head_forward(m_, a, lp);
      sums_.ce += lp.ce;
    } else {
      send(a.resid[ch.end_block].data(), rows_d(a), v + 1, micro, 0);
    }
  }

  // The input-gradient pass (with the weight pass unless `split`).
  void backward(int micro, int chunk, float loss_scale, bool split) {
    Acts& a = pool_[slot_[micro]];
    const PipeChunk& ch = lay_.chunk(stage_, chunk);
    const int v = virt(chunk);
    use(chunk, Pass::backward);
    if (ch.head)
      head_backward(m_, a, scratch_, loss_scale, split);
    else
      receive(room(a.dres, rows_d(a)), rows_d(a), v + 1, micro, v, 1);
    for (int l = ch.end_block - 1; l >= ch.first_block; --l)
      block_backward(m_, l, a, scratch_, loss_scale, split);
    if (ch.embed) {
      if (!split) embed_backward(m_, a);
    } else {
      send(a.dres.data(), rows_d(a), v - 1, micro, 1);
    }
  }

  void weights(int micro, int chunk) {
    Acts& a = pool_[slot_[micro]];
    const PipeChunk& ch = lay_.chunk(stage_, chunk);
    for (int l = ch.first_block; l < ch.end_block; ++l) block_backward_weight(m_, l, a);
    if (ch.head) head_backward_weight(m_, a);
    if (ch.embed) embed_backward(m_, a);
  }

  // The chunk's last microbatch is done: its units (once no other chunk of this stage uses them)
  // are given back and their gradients reduced.
  void chunk_done(int chunk) {
    for (int u : chunk_units_[chunk]) {
      if (++chunks_done_[u] < users_[u]) continue;
      e_.hooks().done(u, Pass::backward);
      e_.hooks().grads_ready(u);
    }
  }

  Model& m_;
  ZeroEngine& e_;
  ProcessGrid& grid_;
  PipelineLayout lay_;
  PipeScheduleKind kind_;
  Communicator& pp_;
  int stage_, P_, V_;
  std::vector<std::vector<int>> chunk_units_;  // [chunk]: units in forward order
  std::vector<int> users_, chunks_done_;       // [unit]: chunks of this stage using it, done
  std::vector<PipeAction> schedule_;
  int sched_micro_ = -1;
  // The activations of the microbatches in flight (forwarded here, backward not done): a schedule
  // holds at most P (1F1B: P - stage), so the pool stays that small and its buffers are reused.
  std::deque<Acts> pool_;
  std::vector<int> free_;         // pool slots not in use
  std::vector<int> slot_;         // [micro]: its pool slot (-1: not started here)
  std::vector<int> chunks_left_;  // [micro]: this stage's chunks still to finish its backward
  std::vector<int> finished_;     // [chunk]: microbatches whose backward is complete
  GradScratch scratch_;
  std::deque<Outgoing> out_;
  Sums sums_;
  double wait_ms_ = 0;
};

}  // namespace

std::unique_ptr<TrainStep> make_pipeline_step(Model& model, ZeroEngine& engine, ProcessGrid& grid,
                                              const PipelineLayout& layout, PipeScheduleKind kind) {
  return std::make_unique<PipelineStep>(model, engine, grid, layout, kind);
}

}  // namespace zt
