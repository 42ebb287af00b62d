// schedule.h: the order in which a pipeline stage runs its microbatches (SPEC section 6,
// --pp-schedule), as pure functions of (stages P, microbatches M, virtual stages V).
//
// A stage's schedule is a list of actions on (microbatch, chunk): F runs the chunk's forward, B
// its backward, W the backward's weight half when it is a separate action (zb; otherwise B runs
// both). A chunk is one of the stage's V model chunks: virtual stage v = chunk * P + stage holds
// the v-th piece of the layers, so a microbatch flows v = 0, 1, ..., P*V - 1 forward and back.
// F(j, v) needs F(j, v - 1) (its activation), B(j, v) needs F(j, v) and B(j, v + 1) (its output
// gradient), W(j, v) needs B(j, v).
//
//   1f1b         warmup forwards (P - stage - 1), then one forward and one backward in turn, then
//                the remaining backwards: three loops. Bubble (P - 1) / (M + P - 1).
//   interleaved  Megatron's interleaved 1F1B over V chunks per stage: the bubble shrinks by V
//                ((P - 1) / (V M + P - 1)); M must be a multiple of P.
//   zb           zero-bubble in the ZB-H1 style: B is the input-gradient pass only (on the critical
//                path); stage st defers its first st weight passes W to the end, where it would
//                otherwise wait for the later stages. Every stage holds at most P microbatches
//                (forwarded, weight pass not done): 1F1B's peak, on its first stage. Bubble
//                (P - 1)(F + B - W) of idle per stage: (P - 1) / (3M + P - 1) with F = B = W and
//                M >= P.
#pragma once
#include <string>
#include <vector>

namespace zt {

enum class PipeOp : char { F = 'F', B = 'B', W = 'W' };

struct PipeAction {
  PipeOp op;
  int micro, chunk;
  bool operator==(const PipeAction&) const = default;
};

enum class PipeScheduleKind { one_f_one_b, interleaved, zero_bubble };
const char* pipe_schedule_name(PipeScheduleKind k);                 // "1f1b" | "interleaved" | "zb"
PipeScheduleKind pipe_schedule_from_name(const std::string& name);  // throws naming --pp-schedule

// Why the schedule cannot run P stages, M microbatches, V chunks per stage ("" when it can),
// naming the flag.
std::string pipe_schedule_error(PipeScheduleKind k, int P, int M, int V);

// Every stage's actions, in order: [stage][i]. Throws with pipe_schedule_error's line.
std::vector<std::vector<PipeAction>> pipe_schedule(PipeScheduleKind k, int P, int M, int V = 1);

// The idle fraction of a schedule run with unit-time actions (the formulas' bubble): 1 - busy /
// (stages x makespan), each action taking `f`, `b` and `w` time units (1f1b and interleaved run
// B and W as one action of b + w).
double pipe_schedule_bubble(PipeScheduleKind k, int P, int M, int V, double f = 1, double b = 1,
                            double w = 1);

}  // namespace zt
