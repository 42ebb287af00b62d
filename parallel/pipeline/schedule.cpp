// schedule.cpp: the pipeline schedules (schedule.h).
#include "parallel/pipeline/schedule.h"

#include <algorithm>
#include <deque>
#include <map>

#include "runtime/error.h"

namespace zt {

const char* pipe_schedule_name(PipeScheduleKind k) {
  switch (k) {
    case PipeScheduleKind::one_f_one_b: return "1f1b";
    case PipeScheduleKind::interleaved: return "interleaved";
    case PipeScheduleKind::zero_bubble: return "zb";
  }
  return "?";
}

PipeScheduleKind pipe_schedule_from_name(const std::string& n) {
  if (n == "1f1b") return PipeScheduleKind::one_f_one_b;
  if (n == "interleaved") return PipeScheduleKind::interleaved;
  if (n == "zb") return PipeScheduleKind::zero_bubble;
  fail("--pp-schedule must be 1f1b, interleaved or zb (got '", n, "')");
}

std::string pipe_schedule_error(PipeScheduleKind k, int P, int M, int V) {
  if (P < 1) return cat("--pp must be >= 1 (got ", P, ")");
  if (M < 1) return cat("--grad-accum (the microbatches of a step) must be >= 1 (got ", M, ")");
  if (V < 1) return cat("--virtual-stages must be >= 1 (got ", V, ")");
  if (k != PipeScheduleKind::interleaved && V != 1)
    return cat("--virtual-stages ", V, " needs --pp-schedule interleaved");
  if (k == PipeScheduleKind::interleaved && V > 1 && (M < P || M % P != 0))
    return cat("--pp-schedule interleaved needs the microbatches (--grad-accum ", M,
               ") to be a multiple of --pp ", P);
  return "";
}

namespace {

using Schedule = std::vector<std::vector<PipeAction>>;

// Warmup forwards, then one forward and one backward in turn, then the remaining backwards.
Schedule one_f_one_b(int P, int M) {
  Schedule s(P);
  for (int st = 0; st < P; ++st) {
    const int warmup = std::min(P - st - 1, M);
    for (int i = 0; i < warmup; ++i) s[st].push_back({PipeOp::F, i, 0});
    for (int i = 0; i < M - warmup; ++i) {
      s[st].push_back({PipeOp::F, warmup + i, 0});
      s[st].push_back({PipeOp::B, i, 0});
    }
    for (int i = M - warmup; i < M; ++i) s[st].push_back({PipeOp::B, i, 0});
  }
  return s;
}

// Megatron's interleaved 1F1B: the k-th forward of a stage is microbatch (k / PV) P + k % P of
// chunk (k % PV) / P; backwards run the chunks in reverse.
Schedule interleaved(int P, int M, int V) {
  Schedule s(P);
  const int total = M * V;
  auto chunk = [&](int k, bool forward) {
    const int c = (k % (P * V)) / P;
    return forward ? c : V - 1 - c;
  };
  auto micro = [&](int k) { return (k / (P * V)) * P + k % P; };
  for (int st = 0; st < P; ++st) {
    const int warmup = M == P ? total : std::min((P - st - 1) * 2 + (V - 1) * P, total);
    auto F = [&](int k) { s[st].push_back({PipeOp::F, micro(k), chunk(k, true)}); };
    auto B = [&](int k) { s[st].push_back({PipeOp::B, micro(k), chunk(k, false)}); };
    for (int k = 0; k < warmup; ++k) F(k);
    for (int k = 0; k < total - warmup; ++k) {
      F(k + warmup);
      B(k);
    }
    for (int k = total - warmup; k < total; ++k) B(k);
  }
  return s;
}

// ZB-H1: 1F1B's three loops with B the input-gradient pass alone, each followed by a weight pass W,
// except that stage st holds back its first st weight passes and runs them at the end, where it
// would otherwise wait for the stages after it. A stage then holds at most P microbatches (F done,
// W not yet), 1F1B's peak on its first stage.
Schedule zero_bubble(int P, int M) {
  Schedule s(P);
  for (int st = 0; st < P; ++st) {
    const int warmup = std::min(P - st - 1, M);
    int w = 0;  // the next weight pass
    auto B = [&](int j) {
      s[st].push_back({PipeOp::B, j, 0});
      if (j >= st) s[st].push_back({PipeOp::W, w++, 0});
    };
    for (int i = 0; i < warmup; ++i) s[st].push_back({PipeOp::F, i, 0});
    for (int i = 0; i < M - warmup; ++i) {
      s[st].push_back({PipeOp::F, warmup + i, 0});
      B(i);
    }
    for (int i = M - warmup; i < M; ++i) B(i);
    while (w < M) s[st].push_back({PipeOp::W, w++, 0});
  }
  return s;
}

}  // namespace

std::vector<std::vector<PipeAction>> pipe_schedule(PipeScheduleKind k, int P, int M, int V) {
  const std::string err = pipe_schedule_error(k, P, M, V);
  if (!err.empty()) fail(err);
  switch (k) {
    case PipeScheduleKind::one_f_one_b: return one_f_one_b(P, M);
    case PipeScheduleKind::interleaved: return V == 1 ? one_f_one_b(P, M) : interleaved(P, M, V);
    case PipeScheduleKind::zero_bubble: return zero_bubble(P, M);
  }
  return {};
}

double pipe_schedule_bubble(PipeScheduleKind k, int P, int M, int V, double f, double b, double w) {
  const Schedule s = pipe_schedule(k, P, M, V);
  const bool split = k == PipeScheduleKind::zero_bubble;
  const int PV = P * V;
  // Finish time of each action by (op, micro, virtual stage); a stage runs its list in order, an
  // action starting when the stage is free and its inputs are done.
  std::map<std::tuple<char, int, int>, double> end;
  std::vector<size_t> pos(P, 0);
  std::vector<double> free_at(P, 0);
  double busy = 0;
  for (bool moved = true; moved;) {
    moved = false;
    for (int st = 0; st < P; ++st) {
      while (pos[st] < s[st].size()) {
        const PipeAction& a = s[st][pos[st]];
        const int v = a.chunk * P + st;
        double start = free_at[st];
        auto need = [&](char op, int vv) {
          auto it = end.find({op, a.micro, vv});
          if (it == end.end()) return false;
          start = std::max(start, it->second);
          return true;
        };
        bool ok = true;
        if (a.op == PipeOp::F && v > 0) ok = need('F', v - 1);
        if (a.op == PipeOp::B) ok = need('F', v) && (v == PV - 1 || need('B', v + 1));
        if (a.op == PipeOp::W) ok = need('B', v);
        if (!ok) break;
        const double cost = a.op == PipeOp::F ? f : a.op == PipeOp::W ? w : split ? b : b + w;
        end[{(char)a.op, a.micro, v}] = free_at[st] = start + cost;
        busy += cost;
        ++pos[st];
        moved = true;
      }
    }
  }
  for (int st = 0; st < P; ++st) ZT_CHECK(pos[st] == s[st].size(), "schedule deadlocks");
  const double makespan = *std::max_element(free_at.begin(), free_at.end());
  return 1.0 - busy / (P * makespan);
}

}  // namespace zt
