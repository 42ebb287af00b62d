// The MPI backend's message plans (parallel/comm/ring_plans.h) run against each other for n
// simulated ranks in one process, no MPI: each rank posts its messages in order under the same
// rules as the MPI runner (dependencies, a window of messages in flight each way, a few receive
// slots for reducing receives), and a send completes only when its receive is matched (MPI's
// rendezvous protocol, the case that can deadlock). Every operation must complete for n = 2..5,
// windows 1..4 and 1..3 slots, with tiny messages (many per block), and give the exact result
// (small integers in fp32: every summation order is exact).
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <map>
#include <numeric>

#include "parallel/comm/reduce.h"
#include "parallel/comm/ring_bytes.h"
#include "parallel/comm/ring_plans.h"
#include "runtime/split.h"

namespace zt {
namespace {

const PlanChunks kTiny{16, 24, false};  // bytes: 4 floats per reducing message, 6 per copy

struct Limits {
  int window = 16, slots = 4;
};

// One simulated rank running its plan.
struct SimRank {
  MessagePlan plan;
  std::vector<char> scratch;
  std::vector<char> recv_done, send_done;
  size_t next_send = 0, next_recv = 0, sends_prefix = 0, recvs_complete = 0, sends_complete = 0;
  int recvs_in_flight = 0, sends_in_flight = 0, free_slots = 0;

  void start(const Limits& lim) {
    if (plan.scratch_bytes) {
      scratch.assign(plan.scratch_bytes, 0);
      plan.bind_scratch(scratch.data());
    }
    free_slots = std::min(plan.reducing_recvs(), lim.slots);
    recv_done.assign(plan.recvs.size(), 0);
    send_done.assign(plan.sends.size(), 0);
  }
  bool done() const {
    return recvs_complete == plan.recvs.size() && sends_complete == plan.sends.size();
  }
};

struct Posted {
  int rank, index;
};

// Runs every rank's plan to completion; false if they stop with messages left (a deadlock).
bool simulate(std::vector<SimRank>& ranks, const Limits& lim) {
  const int n = (int)ranks.size();
  for (SimRank& r : ranks) r.start(lim);
  std::map<std::pair<int, int>, std::deque<Posted>> sends, recvs;  // (from, to)
  std::vector<bool> copied(n, false);
  for (;;) {
    bool moved = false;
    for (int me = 0; me < n; ++me) {  // post what the rules allow, as mpi_plan_op.cpp does
      SimRank& r = ranks[me];
      while (r.next_recv < r.plan.recvs.size() && r.recvs_in_flight < lim.window) {
        const MessagePlan::Recv& m = r.plan.recvs[r.next_recv];
        if ((size_t)m.after_sends > r.sends_prefix) break;
        if (m.local) {
          if (r.free_slots == 0) break;
          --r.free_slots;
        }
        recvs[{m.peer, me}].push_back({me, (int)r.next_recv++});
        ++r.recvs_in_flight;
        moved = true;
      }
      while (r.next_send < r.plan.sends.size() && r.sends_in_flight < lim.window) {
        const MessagePlan::Send& m = r.plan.sends[r.next_send];
        if (m.after_recv >= 0 && !r.recv_done[m.after_recv]) break;
        sends[{me, m.peer}].push_back({me, (int)r.next_send++});
        ++r.sends_in_flight;
        moved = true;
      }
      if (!copied[me] && r.plan.copy_bytes && r.plan.copy_dst != r.plan.copy_src) {
        std::memmove(r.plan.copy_dst, r.plan.copy_src, r.plan.copy_bytes);
        copied[me] = true;
      }
    }
    for (auto& [pair, q] : sends) {  // match the heads of every (from, to) pair, in order
      auto& rq = recvs[pair];
      while (!q.empty() && !rq.empty()) {
        SimRank& src = ranks[q.front().rank];
        SimRank& dst = ranks[rq.front().rank];
        const MessagePlan::Send& s = src.plan.sends[q.front().index];
        const MessagePlan::Recv& m = dst.plan.recvs[rq.front().index];
        EXPECT_EQ(s.bytes, m.bytes) << "message sizes of " << pair.first << " -> " << pair.second;
        if (m.local) {
          std::vector<char> slot(s.ptr, s.ptr + s.bytes);
          reduce_elements_reference(m.dst, m.local, slot.data(), m.elems, dst.plan.dt, dst.plan.op);
          ++dst.free_slots;
        } else {
          std::memcpy(m.dst, s.ptr, (size_t)std::min(s.bytes, m.bytes));
        }
        dst.recv_done[rq.front().index] = 1;
        ++dst.recvs_complete;
        --dst.recvs_in_flight;
        src.send_done[q.front().index] = 1;
        ++src.sends_complete;
        --src.sends_in_flight;
        while (src.sends_prefix < src.plan.sends.size() && src.send_done[src.sends_prefix])
          ++src.sends_prefix;
        q.pop_front();
        rq.pop_front();
        moved = true;
      }
    }
    if (!moved) break;
  }
  bool all = true;
  for (SimRank& r : ranks) all &= r.done();
  return all;
}

std::vector<float> ramp(size_t n, int rank) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (float)((i * 7 + (size_t)rank * 13) % 17);
  return v;
}

const std::vector<Limits> kLimits = {{1, 1}, {2, 1}, {3, 2}, {4, 3}, {16, 4}};

TEST(RingPlans, AllReduceSumsEveryRanksBuffer) {
  for (int n = 2; n <= 5; ++n)
    for (size_t count : {1, 5, 37, 100})
      for (const Limits& lim : kLimits) {
        std::vector<std::vector<float>> in(n), out(n, std::vector<float>(count, -1.f));
        std::vector<SimRank> ranks(n);
        for (int r = 0; r < n; ++r) {
          in[r] = ramp(count, r);
          ranks[r].plan = plan_all_reduce(r, n, in[r].data(), out[r].data(), count, DType::fp32,
                                          ReduceOp::sum, kTiny);
        }
        ASSERT_TRUE(simulate(ranks, lim)) << "n " << n << " count " << count;
        for (int r = 0; r < n; ++r)
          for (size_t i = 0; i < count; ++i) {
            float want = 0;
            for (int q = 0; q < n; ++q) want += in[q][i];
            ASSERT_EQ(out[r][i], want) << "rank " << r << " element " << i;
          }
      }
}

TEST(RingPlans, ReduceScatterLeavesEachRankItsReducedBlock) {
  for (int n = 2; n <= 5; ++n)
    for (const Limits& lim : kLimits) {
      std::vector<size_t> counts(n);
      for (int r = 0; r < n; ++r) counts[r] = (size_t)(r * 5 + 3) % 11;  // uneven, some zero-ish
      const size_t total = std::accumulate(counts.begin(), counts.end(), size_t(0));
      std::vector<std::vector<float>> in(n), out(n);
      std::vector<SimRank> ranks(n);
      for (int r = 0; r < n; ++r) {
        in[r] = ramp(total, r);
        out[r].assign(counts[r], -1.f);
        ranks[r].plan = plan_reduce_scatter(r, n, in[r].data(), out[r].data(), counts, DType::fp32,
                                            ReduceOp::max, kTiny);
      }
      ASSERT_TRUE(simulate(ranks, lim)) << "n " << n;
      size_t off = 0;
      for (int r = 0; r < n; ++r) {
        for (size_t i = 0; i < counts[r]; ++i) {
          float want = in[0][off + i];
          for (int q = 1; q < n; ++q) want = std::max(want, in[q][off + i]);
          ASSERT_EQ(out[r][i], want) << "rank " << r << " element " << i;
        }
        off += counts[r];
      }
    }
}

TEST(RingPlans, AllGatherAndBroadcastDeliverEveryBlock) {
  for (int n = 2; n <= 5; ++n)
    for (const Limits& lim : kLimits) {
      std::vector<size_t> counts = even_split_counts(29, n);
      std::vector<std::vector<float>> own(n), out(n, std::vector<float>(29, -1.f));
      std::vector<SimRank> ranks(n);
      for (int r = 0; r < n; ++r) {
        own[r] = ramp(counts[r], r);
        ranks[r].plan =
            plan_all_gather(r, n, own[r].data(), out[r].data(), counts, DType::fp32, kTiny);
      }
      ASSERT_TRUE(simulate(ranks, lim)) << "all_gather n " << n;
      for (int r = 0; r < n; ++r)
        for (int q = 0, off = 0; q < n; off += (int)counts[q], ++q)
          for (size_t i = 0; i < counts[q]; ++i) ASSERT_EQ(out[r][off + i], own[q][i]);

      for (int root = 0; root < n; ++root) {
        std::vector<std::vector<float>> buf(n, std::vector<float>(31, 0.f));
        buf[root] = ramp(31, 9);
        std::vector<SimRank> b(n);
        for (int r = 0; r < n; ++r)
          b[r].plan = plan_broadcast(r, n, buf[r].data(), 31, DType::fp32, root, kTiny);
        ASSERT_TRUE(simulate(b, lim)) << "broadcast n " << n << " root " << root;
        for (int r = 0; r < n; ++r) ASSERT_EQ(buf[r], buf[root]);
      }
    }
}

TEST(RingPlans, AllToAllAndPointToPointMatchTheirPeers) {
  for (int n = 2; n <= 5; ++n)
    for (const Limits& lim : kLimits) {
      // count(i -> j) elements, some zero; value encodes (sender, receiver, index).
      auto count = [](int i, int j) { return (size_t)((i * 3 + j * 5) % 7); };
      std::vector<std::vector<float>> in(n), out(n);
      std::vector<std::vector<size_t>> sc(n, std::vector<size_t>(n)), rc(n, std::vector<size_t>(n));
      std::vector<SimRank> ranks(n);
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          sc[i][j] = count(i, j);
          rc[i][j] = count(j, i);
          for (size_t k = 0; k < sc[i][j]; ++k) in[i].push_back((float)(i * 100 + j * 10 + k));
        }
        out[i].assign(std::accumulate(rc[i].begin(), rc[i].end(), size_t(0)), -1.f);
      }
      for (int i = 0; i < n; ++i)
        ranks[i].plan =
            plan_all_to_all(i, n, in[i].data(), sc[i], out[i].data(), rc[i], DType::fp32, kTiny);
      ASSERT_TRUE(simulate(ranks, lim)) << "all_to_all n " << n;
      for (int i = 0; i < n; ++i)
        for (int j = 0, off = 0; j < n; off += (int)rc[i][j], ++j)
          for (size_t k = 0; k < rc[i][j]; ++k)
            ASSERT_EQ(out[i][off + k], (float)(j * 100 + i * 10 + k)) << i << " from " << j;
    }
  // A ring of sends: rank r sends 19 floats to r+1 and receives from r-1.
  const int n = 4;
  std::vector<std::vector<float>> in(n), out(n, std::vector<float>(19, 0.f));
  std::vector<SimRank> ranks(n);
  for (int r = 0; r < n; ++r) {
    in[r] = ramp(19, r);
    ranks[r].plan = plan_send((r + 1) % n, in[r].data(), 19, DType::fp32, kTiny);
  }
  for (int r = 0; r < n; ++r) {  // the receives of each rank follow its send in its plan
    MessagePlan rv = plan_recv((r + n - 1) % n, out[r].data(), 19, DType::fp32, kTiny);
    ranks[r].plan.recvs = rv.recvs;
  }
  ASSERT_TRUE(simulate(ranks, {1, 1}));
  for (int r = 0; r < n; ++r) EXPECT_EQ(out[r], in[(r + n - 1) % n]);
}

TEST(RingPlans, BytesSentAreTheRingVolumes) {
  // comm.h: all_reduce 2N(n-1)/n, reduce_scatter and all_gather N(n-1)/n, N the whole buffer.
  const int n = 4;
  const size_t count = 400;  // floats, divisible by n
  std::vector<float> a(count), b(count);
  EXPECT_EQ(plan_all_reduce(1, n, a.data(), b.data(), count, DType::fp32, ReduceOp::sum, kTiny)
                .bytes_sent(),
            (int64_t)(2 * count * 4 * (n - 1) / n));
  auto even = even_split_counts(count, n);
  EXPECT_EQ(plan_reduce_scatter(2, n, a.data(), b.data(), even, DType::fp32, ReduceOp::sum, kTiny)
                .bytes_sent(),
            (int64_t)(count * 4 * (n - 1) / n));
  EXPECT_EQ(plan_all_gather(3, n, a.data(), b.data(), even, DType::fp32, kTiny).bytes_sent(),
            (int64_t)(count * 4 * (n - 1) / n));
}

TEST(RingPlans, BytesSentAreTheFormulasOfRingBytes) {
  // parallel/comm/ring_bytes.h is what the backends count and the planner predicts: every rank's
  // plan sends exactly it, uneven blocks and sizes that do not divide included.
  for (int n : {2, 3, 4, 5}) {
    for (size_t count : {size_t(1), size_t(7), size_t(400), size_t(1001)}) {
      std::vector<float> a(count), b(count);
      const std::vector<size_t> even = even_split_counts(count, n);
      std::vector<size_t> uneven(n);
      for (int r = 0; r < n; ++r) uneven[r] = count / n + (size_t)(3 * r % 5);
      std::vector<float> big(std::accumulate(uneven.begin(), uneven.end(), size_t(0)));
      for (int r = 0; r < n; ++r) {
        SCOPED_TRACE(testing::Message() << "n " << n << " count " << count << " rank " << r);
        EXPECT_EQ(
            plan_all_reduce(r, n, a.data(), b.data(), count, DType::fp32, ReduceOp::sum, kTiny)
                .bytes_sent(),
            all_reduce_bytes(count, n, r, 4));
        EXPECT_EQ(
            plan_reduce_scatter(r, n, a.data(), b.data(), even, DType::bf16, ReduceOp::sum, kTiny)
                .bytes_sent(),
            reduce_scatter_bytes(even, r, 2));
        EXPECT_EQ(
            plan_all_gather(r, n, big.data(), big.data(), uneven, DType::fp32, kTiny).bytes_sent(),
            all_gather_bytes(uneven, r, 4));
        EXPECT_EQ(plan_all_to_all(r, n, big.data(), uneven, big.data(), uneven, DType::fp32, kTiny)
                      .bytes_sent(),
                  all_to_all_bytes(uneven, r, 4));
      }
    }
  }
}

}  // namespace
}  // namespace zt
