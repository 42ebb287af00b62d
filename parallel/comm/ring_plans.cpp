// ring_plans.cpp: builders of the message plans (ring_plans.h).
#include "parallel/comm/ring_plans.h"

#include <algorithm>

#include "parallel/comm/backend.h"
#include "runtime/split.h"

namespace zt {

int64_t MessagePlan::bytes_sent() const {
  int64_t b = 0;
  for (const Send& s : sends) b += s.bytes;
  return b;
}

int MessagePlan::reducing_recvs() const {
  int n = 0;
  for (const Recv& r : recvs) n += r.local != nullptr;
  return n;
}

void MessagePlan::bind_scratch(char* base) {
  for (int i : recv_in_scratch) recvs[i].dst = base + (size_t)recvs[i].dst;
  for (int i : send_in_scratch) sends[i].ptr = base + (size_t)sends[i].ptr;
  recv_in_scratch.clear();
  send_in_scratch.clear();
}

namespace {

struct Blocks {
  std::vector<size_t> count, offset;  // elements
  explicit Blocks(std::span<const size_t> counts) : count(counts.begin(), counts.end()) {
    offset.resize(count.size());
    size_t o = 0;
    for (size_t i = 0; i < count.size(); ++i) offset[i] = o, o += count[i];
  }
  size_t max() const { return count.empty() ? 0 : *std::max_element(count.begin(), count.end()); }
};

size_t chunks_of(size_t elems, size_t chunk) { return (elems + chunk - 1) / chunk; }
int mod(int a, int n) { return ((a % n) + n) % n; }
size_t elems_per(size_t bytes, size_t es) { return std::max<size_t>(1, bytes / es); }

// Where a partial sum goes: a pointer, or (in_scratch) an offset into the plan's scratch.
struct PartialAt {
  char* ptr;
  bool in_scratch;
};

// Ring reduce-scatter into `plan`. Step s: send block (r-s-1), receive block (r-s-2), both mod n.
// partial(s, b, at) is where the sum of step s for element `at` of block b goes (final: s == n-2,
// block r).
template <typename PartialDst>
void build_ring_reduce(MessagePlan& plan, int r, int n, const char* send, const Blocks& blocks,
                       size_t es, size_t chunk, PartialDst partial, bool streaming_final) {
  const int left = mod(r - 1, n), right = mod(r + 1, n);
  int prev_first_recv = -1;  // the previous step's first receive
  for (int s = 0; s + 1 < n; ++s) {
    const int sb = mod(r - s - 1, n), rb = mod(r - s - 2, n);
    const int first_recv = (int)plan.recvs.size();
    for (size_t c = 0; c < chunks_of(blocks.count[sb], chunk); ++c) {
      const size_t len = std::min(chunk, blocks.count[sb] - c * chunk);
      MessagePlan::Send m{right, nullptr, (int)(len * es), -1};
      if (s == 0) {
        m.ptr = send + (blocks.offset[sb] + c * chunk) * es;
      } else {
        const PartialAt at = partial(s - 1, sb, c * chunk);
        m.ptr = at.ptr;
        m.after_recv = prev_first_recv + (int)c;
        if (at.in_scratch) plan.send_in_scratch.push_back((int)plan.sends.size());
      }
      plan.sends.push_back(m);
    }
    for (size_t c = 0; c < chunks_of(blocks.count[rb], chunk); ++c) {
      const size_t len = std::min(chunk, blocks.count[rb] - c * chunk);
      const PartialAt at = partial(s, rb, c * chunk);
      MessagePlan::Recv m{left, at.ptr, (int)(len * es)};
      m.local = send + (blocks.offset[rb] + c * chunk) * es;
      m.elems = len;
      m.streaming = streaming_final && s == n - 2;
      if (at.in_scratch) plan.recv_in_scratch.push_back((int)plan.recvs.size());
      plan.recvs.push_back(m);
    }
    prev_first_recv = first_recv;
  }
}

// Ring all-gather into `out` (blocks at their offsets). Block r must already be in out, or be
// sent from `own` (own != nullptr) at step 0. When own_ready >= 0 (all-reduce: the receives of the
// last reduce-scatter step, in messages of `ready_chunk` elements), a step-0 send waits for the
// last of those receives it covers; receives wait for the first `after_sends` sends (all-reduce:
// every reduce-scatter send, whose partials live in out).
void build_ring_gather(MessagePlan& plan, int r, int n, const char* own, char* out,
                       const Blocks& blocks, size_t es, size_t chunk, int own_ready,
                       size_t ready_chunk, int after_sends) {
  const int left = mod(r - 1, n), right = mod(r + 1, n);
  int prev_first_recv = -1;
  for (int s = 0; s + 1 < n; ++s) {
    const int sb = mod(r - s, n), rb = mod(r - s - 1, n);
    const int first_recv = (int)plan.recvs.size();
    for (size_t c = 0; c < chunks_of(blocks.count[sb], chunk); ++c) {
      const size_t len = std::min(chunk, blocks.count[sb] - c * chunk);
      MessagePlan::Send m{right, out + (blocks.offset[sb] + c * chunk) * es, (int)(len * es), -1};
      if (s == 0) {
        if (own) m.ptr = own + c * chunk * es;
        if (own_ready >= 0) {
          const size_t end = std::min((c + 1) * chunk, blocks.count[sb]);  // elements covered
          m.after_recv = own_ready + (int)(chunks_of(end, ready_chunk) - 1);
        }
      } else {
        m.after_recv = prev_first_recv + (int)c;
      }
      plan.sends.push_back(m);
    }
    for (size_t c = 0; c < chunks_of(blocks.count[rb], chunk); ++c) {
      const size_t len = std::min(chunk, blocks.count[rb] - c * chunk);
      MessagePlan::Recv m{left, out + (blocks.offset[rb] + c * chunk) * es, (int)(len * es)};
      m.after_sends = after_sends;
      plan.recvs.push_back(m);
    }
    prev_first_recv = first_recv;
  }
}

// Cuts `bytes` into messages of at most `chunk` bytes.
template <typename F>
void for_chunks(size_t bytes, size_t chunk, F&& f) {
  for (size_t o = 0; o < bytes; o += chunk) f(o, std::min(chunk, bytes - o));
}

MessagePlan empty_plan(DType dt, ReduceOp op) {
  MessagePlan p;
  p.dt = dt;
  p.op = op;
  return p;
}

}  // namespace

MessagePlan plan_all_reduce(int r, int n, const void* send, void* recv, size_t count, DType dt,
                            ReduceOp op, const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, op);
  const size_t es = dtype_size(dt);
  const std::vector<size_t> counts = even_split_counts(count, n);
  const Blocks blocks(counts);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  const size_t chunk = elems_per(ch.reduce, es);
  // Partial sums of the reduce-scatter live in `out` at their block's place: the all-gather
  // overwrites them only after every send that reads them is complete.
  build_ring_reduce(
      plan, r, n, in, blocks, es, chunk,
      [&](int, int b, size_t at) {
        return PartialAt{out + (blocks.offset[b] + at) * es, false};
      },
      ch.streaming);
  // The all-gather's first sends wait for the receives of the last reduce-scatter step that
  // produce their part of block r; it moves whole multiples of the reduce message.
  const size_t gather_chunk = chunk * std::max<size_t>(1, ch.copy / ch.reduce);
  const int last_step_recv = (int)(plan.recvs.size() - chunks_of(blocks.count[r], chunk));
  build_ring_gather(plan, r, n, nullptr, out, blocks, es, gather_chunk, last_step_recv, chunk,
                    (int)plan.sends.size());
  return plan;
}

MessagePlan plan_reduce_scatter(int r, int n, const void* send, void* recv,
                                std::span<const size_t> counts, DType dt, ReduceOp op,
                                const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, op);
  const size_t es = dtype_size(dt);
  const Blocks blocks(counts);
  char* out = static_cast<char*>(recv);
  const size_t maxb = blocks.max();
  // Step s < n-2 keeps its partial in scratch region s; the last step writes `recv`.
  plan.scratch_bytes = n > 2 ? (size_t)(n - 2) * maxb * es : 0;
  build_ring_reduce(
      plan, r, n, static_cast<const char*>(send), blocks, es, elems_per(ch.reduce, es),
      [&](int s, int, size_t at) {
        if (s == n - 2) return PartialAt{out + at * es, false};
        return PartialAt{reinterpret_cast<char*>(((size_t)s * maxb + at) * es), true};
      },
      ch.streaming);
  return plan;
}

MessagePlan plan_all_gather(int r, int n, const void* send, void* recv,
                            std::span<const size_t> counts, DType dt, const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, ReduceOp::sum);
  const size_t es = dtype_size(dt);
  const Blocks blocks(counts);
  char* out = static_cast<char*>(recv);
  plan.copy_dst = out + blocks.offset[r] * es;
  plan.copy_src = static_cast<const char*>(send);
  plan.copy_bytes = blocks.count[r] * es;
  build_ring_gather(plan, r, n, static_cast<const char*>(send), out, blocks, es,
                    elems_per(ch.copy, es), -1, 1, 0);
  return plan;
}

MessagePlan plan_broadcast(int r, int n, void* buf, size_t count, DType dt, int root,
                           const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, ReduceOp::sum);
  const int pos = mod(r - root, n), prev = mod(r - 1, n), next = mod(r + 1, n);
  char* p = static_cast<char*>(buf);
  int i = 0;
  for_chunks(count * dtype_size(dt), ch.copy, [&](size_t o, size_t len) {
    if (pos > 0) plan.recvs.push_back({prev, p + o, (int)len});
    if (pos < n - 1) plan.sends.push_back({next, p + o, (int)len, pos > 0 ? i : -1});
    ++i;
  });
  return plan;
}

MessagePlan plan_all_to_all(int r, int n, const void* send, std::span<const size_t> send_counts,
                            void* recv, std::span<const size_t> recv_counts, DType dt,
                            const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, ReduceOp::sum);
  const size_t es = dtype_size(dt);
  const Blocks sb(send_counts), rb(recv_counts);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  plan.copy_dst = out + rb.offset[r] * es;
  plan.copy_src = in + sb.offset[r] * es;
  plan.copy_bytes = sb.count[r] * es;
  for (int k = 1; k < n; ++k) {  // pairwise: step k sends to r+k, receives from r-k
    const int to = mod(r + k, n), from = mod(r - k, n);
    for_chunks(sb.count[to] * es, ch.copy, [&](size_t o, size_t len) {
      plan.sends.push_back({to, in + sb.offset[to] * es + o, (int)len, -1});
    });
    for_chunks(rb.count[from] * es, ch.copy, [&](size_t o, size_t len) {
      plan.recvs.push_back({from, out + rb.offset[from] * es + o, (int)len});
    });
  }
  return plan;
}

MessagePlan plan_send(int peer, const void* buf, size_t count, DType dt, const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, ReduceOp::sum);
  for_chunks(count * dtype_size(dt), ch.copy, [&](size_t o, size_t len) {
    plan.sends.push_back({peer, static_cast<const char*>(buf) + o, (int)len, -1});
  });
  return plan;
}

MessagePlan plan_recv(int peer, void* buf, size_t count, DType dt, const PlanChunks& ch) {
  MessagePlan plan = empty_plan(dt, ReduceOp::sum);
  for_chunks(count * dtype_size(dt), ch.copy, [&](size_t o, size_t len) {
    plan.recvs.push_back({peer, static_cast<char*>(buf) + o, (int)len});
  });
  return plan;
}

}  // namespace zt
