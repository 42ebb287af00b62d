// Every collective of the world communicator against a naive reference computed on each rank
// from the inputs every rank can generate: sizes 0, 1, primes, counts not divisible by the number
// of ranks and a few MB; fp32, bf16, fp16; sum and max; in place; uneven and empty blocks; many
// operations outstanding at once, waited on out of order; the byte counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <thread>

#include "mpi_test.h"
#include "parallel/comm/gather.h"
#include "runtime/error.h"
#include "runtime/split.h"

namespace zt::test {
namespace {

const DType kDtypes[] = {DType::fp32, DType::bf16, DType::fp16};

int nranks() { return world().size(); }
int me() { return world().rank(); }

// A few MB at 2 ranks; smaller when ranks share the cores (3-4 ranks oversubscribed).
size_t big_count() { return nranks() <= 2 ? 2'000'003 : 300'007; }

std::vector<size_t> test_sizes() {
  int n = nranks();
  return {0, 1, 13, 1009, (size_t)n * 4099 + 1, big_count()};
}

using Gen = float (*)(int, size_t, int);

Values make_input(size_t count, DType dt, Gen gen, int rank, int salt = 0, size_t base = 0) {
  Values v(count, dt);
  for (size_t i = 0; i < count; ++i) v.set(i, gen(rank, base + i, salt));
  return v;
}

// The reduction over ranks of element i, each input rounded to dt first.
float reference(Gen gen, DType dt, ReduceOp op, size_t i, int salt = 0) {
  float acc = round_to(gen(0, i, salt), dt);
  for (int r = 1; r < nranks(); ++r) {
    float v = round_to(gen(r, i, salt), dt);
    acc = op == ReduceOp::sum ? acc + v : std::max(acc, v);
  }
  return acc;
}

// Rounding budget for a sum of n values in [-1, 1) rounded once per ring hop.
float tolerance(DType dt) {
  int n = nranks();
  if (dt == DType::fp32) return 1e-5f * n;
  if (dt == DType::bf16) return (float)n * n * std::ldexp(1.0f, -8);
  return (float)n * n * std::ldexp(1.0f, -11);
}

// Counts the mismatches of out[i] against want(i), reporting the first.
template <typename Want>
void expect_values(const Values& out, size_t count, Want want, float tol, const std::string& what) {
  size_t bad = 0, first = 0;
  float got0 = 0, want0 = 0;
  for (size_t i = 0; i < count; ++i) {
    float w = want(i), g = out.get(i);
    if (!(std::fabs(g - w) <= tol)) {
      if (!bad) first = i, got0 = g, want0 = w;
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << count << " wrong, first at " << first
                     << ": got " << got0 << ", want " << want0 << " (rank " << me() << " of "
                     << nranks() << ")";
}

std::string label(const char* op, DType dt, size_t count) {
  return cat(op, " ", dtype_name(dt), " x ", count);
}

TEST(AllReduce, SumAndMaxOfExactValuesEveryDtypeAndSize) {
  for (DType dt : kDtypes)
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max})
      for (size_t count : test_sizes()) {
        Values in = make_input(count, dt, exact_value, me()), out(count, dt);
        world().all_reduce(in.data(), out.data(), count, dt, op).wait();
        expect_values(
            out, count, [&](size_t i) { return reference(exact_value, dt, op, i); }, 0,
            label(op == ReduceOp::sum ? "all_reduce sum" : "all_reduce max", dt, count));
      }
}

TEST(AllReduce, RandomValuesWithinRoundingOfFp32Accumulation) {
  for (DType dt : kDtypes)
    for (size_t count : {(size_t)1009, big_count()}) {
      Values in = make_input(count, dt, random_value, me()), out(count, dt);
      world().all_reduce(in.data(), out.data(), count, dt, ReduceOp::sum).wait();
      expect_values(
          out, count, [&](size_t i) { return reference(random_value, dt, ReduceOp::sum, i); },
          tolerance(dt), label("all_reduce random", dt, count));
    }
}

TEST(AllReduce, InPlace) {
  for (DType dt : kDtypes) {
    size_t count = big_count();
    Values buf = make_input(count, dt, exact_value, me(), 1);
    world().all_reduce(buf.data(), buf.data(), count, dt, ReduceOp::sum).wait();
    expect_values(
        buf, count, [&](size_t i) { return reference(exact_value, dt, ReduceOp::sum, i, 1); }, 0,
        label("all_reduce in place", dt, count));
  }
}

// reduce_scatter with explicit block sizes; checks this rank's block.
void check_reduce_scatter(std::span<const size_t> counts, DType dt, ReduceOp op, bool in_place) {
  size_t total = std::accumulate(counts.begin(), counts.end(), (size_t)0);
  size_t off = std::accumulate(counts.begin(), counts.begin() + me(), (size_t)0);
  size_t mine = counts[me()];
  Values in = make_input(total, dt, exact_value, me(), 2), out(mine, dt);
  void* dst = in_place ? (void*)in.at(off) : out.data();
  world().reduce_scatter(in.data(), dst, counts, dt, op).wait();
  Values result(mine, dt);
  std::memcpy(result.data(), dst, mine * dtype_size(dt));
  expect_values(
      result, mine, [&](size_t i) { return reference(exact_value, dt, op, off + i, 2); }, 0,
      label(in_place ? "reduce_scatter in place" : "reduce_scatter", dt, total));
}

TEST(ReduceScatter, EvenSplitOfEverySize) {
  for (DType dt : kDtypes)
    for (size_t count : test_sizes()) {
      auto counts = even_split_counts(count, nranks());
      check_reduce_scatter(counts, dt, ReduceOp::sum, false);
    }
  check_reduce_scatter(even_split_counts(big_count(), nranks()), DType::fp32, ReduceOp::max, false);
}

TEST(ReduceScatter, UnevenBlocksIncludingEmptyOnes) {
  std::vector<size_t> counts(nranks());
  for (int r = 0; r < nranks(); ++r) counts[r] = r % 2 ? 0 : 300'000 + 17 * r;  // odd ranks empty
  for (DType dt : kDtypes) check_reduce_scatter(counts, dt, ReduceOp::sum, false);
  for (int r = 0; r < nranks(); ++r) counts[r] = (size_t)(r + 1) * 5;
  check_reduce_scatter(counts, DType::fp32, ReduceOp::max, false);
}

TEST(ReduceScatter, InPlace) {
  check_reduce_scatter(even_split_counts(big_count(), nranks()), DType::bf16, ReduceOp::sum, true);
  check_reduce_scatter(even_split_counts(1009, nranks()), DType::fp32, ReduceOp::sum, true);
}

void check_all_gather(std::span<const size_t> counts, DType dt, bool in_place) {
  size_t total = std::accumulate(counts.begin(), counts.end(), (size_t)0);
  size_t off = std::accumulate(counts.begin(), counts.begin() + me(), (size_t)0);
  Values out(total, dt);
  Values mine = make_input(counts[me()], dt, random_value, me(), 3, off);
  const void* src = mine.data();
  if (in_place) {
    std::memcpy(out.at(off), mine.data(), counts[me()] * dtype_size(dt));
    src = out.at(off);
  }
  world().all_gather(src, out.data(), counts, dt).wait();
  // Element i belongs to the rank whose block holds it; that rank generated it at index i.
  std::vector<int> owner(total);
  for (int r = 0, i = 0; r < nranks(); ++r)
    for (size_t k = 0; k < counts[r]; ++k) owner[i++] = r;
  expect_values(
      out, total, [&](size_t i) { return round_to(random_value(owner[i], i, 3), dt); }, 0,
      label(in_place ? "all_gather in place" : "all_gather", dt, total));
}

TEST(AllGather, EvenSplitOfEverySize) {
  for (DType dt : kDtypes)
    for (size_t count : test_sizes())
      check_all_gather(even_split_counts(count, nranks()), dt, false);
}

TEST(AllGather, UnevenBlocksAndInPlace) {
  std::vector<size_t> counts(nranks());
  for (int r = 0; r < nranks(); ++r) counts[r] = r == 1 ? 0 : 200'000 + 31 * r;
  check_all_gather(counts, DType::fp16, false);
  check_all_gather(counts, DType::fp32, true);
  check_all_gather(even_split_counts(big_count(), nranks()), DType::bf16, true);
}

TEST(Broadcast, FromEveryRoot) {
  for (int root = 0; root < nranks(); ++root)
    for (DType dt : kDtypes)
      for (size_t count : {(size_t)0, (size_t)1, (size_t)1009, big_count()}) {
        Values buf(count, dt);
        if (me() == root) buf = make_input(count, dt, random_value, root, 4);
        world().broadcast(buf.data(), count, dt, root).wait();
        expect_values(
            buf, count, [&](size_t i) { return round_to(random_value(root, i, 4), dt); }, 0,
            label(cat("broadcast from ", root).c_str(), dt, count));
      }
}

TEST(AllToAll, PerRankCountsIncludingEmpty) {
  int n = nranks();
  // count(i -> j): elements rank i sends to rank j; zero for some pairs.
  auto count_of = [](int i, int j) -> size_t {
    return (i + 2 * j) % 3 == 0 ? 0 : 1000 * (i + 1) + 7 * j;
  };
  for (DType dt : kDtypes) {
    std::vector<size_t> send_counts(n), recv_counts(n);
    for (int j = 0; j < n; ++j)
      send_counts[j] = count_of(me(), j), recv_counts[j] = count_of(j, me());
    size_t send_total = std::accumulate(send_counts.begin(), send_counts.end(), (size_t)0);
    size_t recv_total = std::accumulate(recv_counts.begin(), recv_counts.end(), (size_t)0);
    // Element k of the block for rank j carries value(me, j * 100000 + k).
    Values in(send_total, dt), out(recv_total, dt);
    for (int j = 0, i = 0; j < n; ++j)
      for (size_t k = 0; k < send_counts[j]; ++k)
        in.set(i++, random_value(me(), j * 100000 + k, 5));
    world().all_to_all(in.data(), send_counts, out.data(), recv_counts, dt).wait();
    std::vector<float> want;
    for (int j = 0; j < n; ++j)
      for (size_t k = 0; k < recv_counts[j]; ++k)
        want.push_back(round_to(random_value(j, me() * 100000 + k, 5), dt));
    expect_values(
        out, recv_total, [&](size_t i) { return want[i]; }, 0, label("all_to_all", dt, recv_total));
  }
}

TEST(SendRecv, RingWithTagsWaitedOutOfOrder) {
  int n = nranks();
  if (n == 1) {  // one rank has no peer: refused with a clear error
    float x = 0;
    EXPECT_THROW(world().send(&x, 1, DType::fp32, 0, 0), Error);
    return;
  }
  int right = (me() + 1) % n, left = (me() + n - 1) % n;
  size_t counts[] = {1, big_count(), 0, 4099};
  std::vector<Values> out, in;
  std::vector<Work> works;
  for (int t = 0; t < 4; ++t) {
    in.push_back(make_input(counts[t], DType::fp32, random_value, me(), 10 + t));
    out.emplace_back(counts[t], DType::fp32);
  }
  // Receives first (tags in reverse), then the sends: matching is by tag.
  for (int t = 3; t >= 0; --t)
    works.push_back(world().recv(out[t].data(), counts[t], DType::fp32, left, t));
  for (int t = 0; t < 4; ++t)
    works.push_back(world().send(in[t].data(), counts[t], DType::fp32, right, t));
  for (int k : {5, 0, 7, 2, 6, 1, 4, 3}) works[k].wait();
  for (int t = 0; t < 4; ++t)
    expect_values(
        out[t], counts[t], [&](size_t i) { return random_value(left, i, 10 + t); }, 0,
        cat("recv tag ", t));
  EXPECT_THROW(world().send(in[0].data(), 1, DType::fp32, n, 0), Error);  // no such rank
  EXPECT_THROW(world().recv(out[0].data(), 1, DType::fp32, left, -1), Error);
}

TEST(Barrier, EveryRankPasses) {
  for (int i = 0; i < 3; ++i) world().barrier().wait();
}

TEST(Outstanding, ManyOperationsWaitedInReverseOrder) {
  int n = nranks();
  size_t count = big_count() / 3 + 1;
  std::vector<Values> ins, outs;
  std::vector<Work> works;
  for (int k = 0; k < 6; ++k) {
    ins.push_back(make_input(count, DType::fp32, exact_value, me(), 20 + k));
    outs.emplace_back(count, DType::fp32);
  }
  std::vector<size_t> shards = even_split_counts(count, n);
  size_t off = (size_t)even_piece((int64_t)count, n, me()).off;
  for (int k = 0; k < 6; ++k) {
    if (k % 3 == 0)
      works.push_back(
          world().all_reduce(ins[k].data(), outs[k].data(), count, DType::fp32, ReduceOp::sum));
    if (k % 3 == 1)
      works.push_back(world().reduce_scatter(ins[k].data(), outs[k].data(), shards, DType::fp32,
                                             ReduceOp::sum));
    if (k % 3 == 2)
      works.push_back(world().all_gather(ins[k].at(off), outs[k].data(), shards, DType::fp32));
  }
  for (int k = 5; k >= 0; --k) {
    works[k].wait();
    EXPECT_TRUE(works[k].test());
  }
  for (int k = 0; k < 6; ++k) {
    if (k % 3 == 0)
      expect_values(
          outs[k], count,
          [&](size_t i) { return reference(exact_value, DType::fp32, ReduceOp::sum, i, 20 + k); },
          0, cat("op ", k));
    if (k % 3 == 1)
      expect_values(
          outs[k], shards[me()],
          [&](size_t i) {
            return reference(exact_value, DType::fp32, ReduceOp::sum, off + i, 20 + k);
          },
          0, cat("op ", k));
    if (k % 3 == 2) {
      std::vector<int> owner;
      for (int r = 0; r < n; ++r) owner.insert(owner.end(), shards[r], r);
      expect_values(
          outs[k], count, [&](size_t i) { return exact_value(owner[i], i, 20 + k); }, 0,
          cat("op ", k));
    }
  }
}

TEST(Counters, BytesSentFollowTheRingAndWaitsAddExposedTime) {
  int n = nranks(), r = me();
  std::vector<size_t> counts(n);
  for (int i = 0; i < n; ++i) counts[i] = 1000 + 10 * i;
  size_t total = std::accumulate(counts.begin(), counts.end(), (size_t)0);
  Values in = make_input(total, DType::bf16, exact_value, r), out(total, DType::bf16);
  auto bytes = [](size_t elems) { return (int64_t)elems * 2; };
  int64_t not_mine = bytes(total - counts[r]), not_right = bytes(total - counts[(r + 1) % n]);
  bool alone = n == 1;

  CommStats s0 = world().stats(), g0 = comm_stats();
  world().reduce_scatter(in.data(), out.data(), counts, DType::bf16, ReduceOp::sum).wait();
  CommStats d = world().stats() - s0;
  EXPECT_EQ(d.bytes[(int)CommKind::reduce_scatter], alone ? 0 : not_mine);

  s0 = world().stats();
  world().all_gather(in.data(), out.data(), counts, DType::bf16).wait();
  d = world().stats() - s0;
  EXPECT_EQ(d.bytes[(int)CommKind::allgather], alone ? 0 : not_right);

  s0 = world().stats();
  world().all_reduce(in.data(), out.data(), total, DType::bf16, ReduceOp::sum).wait();
  d = world().stats() - s0;
  auto even = even_split_counts(total, n);
  EXPECT_EQ(d.bytes[(int)CommKind::allreduce],
            alone ? 0 : bytes(total - even[r]) + bytes(total - even[(r + 1) % n]));
  EXPECT_GE(d.exposed_ms, 0.0);

  // A wait that has to block counts its time: rank 0 arrives 30 ms late.
  s0 = world().stats();
  if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
  world().barrier().wait();
  d = world().stats() - s0;
  if (!alone && r != 0) {
    EXPECT_GE(d.exposed_ms, 10.0);
  }

  CommStats g = comm_stats() - g0;  // the process-wide totals include everything above
  EXPECT_GE(g.bytes[(int)CommKind::allreduce], d.bytes[(int)CommKind::allreduce]);
  EXPECT_GE(g.exposed_ms, d.exposed_ms);
  for (int k = 0; k < (int)CommKind::count; ++k)
    EXPECT_NE(std::string(comm_kind_name((CommKind)k)), "");
}

TEST(Counters, ExactValueExchangesAreControlTraffic) {
  // gather.h: the small exchanges count as control bytes, never as the model's all-gathers, and
  // every rank gets the same maxima and sums, every rank's values included.
  const int n = nranks(), r = me();
  const CommStats s0 = world().stats();
  const std::vector<int64_t> m = max_exact(world(), {r == 0 ? 100 : r, -r});
  const double sum = sum_exact(world(), (double)(r + 1));
  const bool any = any_rank(world(), r == n - 1);
  const CommStats d = world().stats() - s0;
  EXPECT_EQ(m[0], 100);  // rank 0's value is the largest: every rank sees it
  EXPECT_EQ(m[1], 0);
  EXPECT_EQ(sum, n * (n + 1) / 2.0);
  EXPECT_TRUE(any);
  EXPECT_EQ(d.bytes[(int)CommKind::allgather], 0);
  EXPECT_EQ(d.bytes[(int)CommKind::control], n == 1 ? 0 : (n - 1) * (16 + 8 + 8));
  {
    ControlTraffic control;  // a scope makes any operation control traffic
    float x = 1;
    const CommStats c0 = world().stats();
    world().all_reduce(&x, &x, 1, DType::fp32, ReduceOp::max).wait();
    const CommStats c = world().stats() - c0;
    EXPECT_EQ(c.bytes[(int)CommKind::allreduce], 0);
    EXPECT_EQ(c.bytes[(int)CommKind::control] > 0, n > 1);
  }
  float y = 1;  // and only inside it
  const CommStats a0 = world().stats();
  world().all_reduce(&y, &y, 1, DType::fp32, ReduceOp::max).wait();
  EXPECT_EQ((world().stats() - a0).bytes[(int)CommKind::control], 0);
}

TEST(Arguments, RefusedOnEveryRankWithoutCommunicating) {
  int n = nranks();
  float x[4] = {};
  std::vector<size_t> wrong(n + 1, 1);
  EXPECT_THROW(world().reduce_scatter(x, x, wrong, DType::fp32, ReduceOp::sum), Error);
  EXPECT_THROW(world().all_gather(x, x, wrong, DType::fp32), Error);
  EXPECT_THROW(world().all_reduce(x, x, 4, DType::int8, ReduceOp::sum), Error);
  EXPECT_THROW(world().broadcast(x, 1, DType::fp32, n), Error);
  world().barrier().wait();  // still in step
}

}  // namespace
}  // namespace zt::test
