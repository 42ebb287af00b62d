// main.cpp: zt_mpi_tests — GoogleTest under mpirun (any number of ranks, or one plain process).
// Rank 0 prints the usual report; the other ranks print only their failures, prefixed with their
// rank; the exit status is non-zero on every rank when any rank failed.
//
// `zt_mpi_tests --scenario NAME` instead runs one fault scenario (see run_scenario) that must end
// the whole job with a non-zero status; tests/mpi/expect_failure.sh checks that it does, in time.
#include <gtest/gtest.h>
#include <mpi.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "mpi_test.h"
#include "runtime/error.h"
#include "runtime/process.h"

namespace zt::test {
namespace {

std::unique_ptr<Communicator> g_world;
std::unique_ptr<ProcessGrid> g_dp_grid;  // made on first use: every rank reaches it together

// Ranks other than 0: one line per failed assertion.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
  }

 private:
  int rank_;
};

// Fault scenarios: rank 1 fails in the middle of a collective that rank 0 (and the others) wait
// on. The job must end: every rank exits non-zero, none hangs.
int run_scenario(const std::string& name) {
  ProcessContext ctx;
  std::unique_ptr<Communicator> world = make_world_communicator();
  int rank = world->rank();
  std::vector<float> a(1 << 22, 1.0f), b(a.size());
  world->all_reduce(a.data(), b.data(), a.size(), DType::fp32, ReduceOp::sum).wait();  // all up
  // Every rank starts an all-reduce (16 MB); rank 1 fails while it is in flight.
  Work w = world->all_reduce(a.data(), b.data(), a.size(), DType::fp32, ReduceOp::sum);
  if (rank == 1) {
    if (name == "error") fail("injected error on rank 1 in the middle of an all_reduce");
    if (name == "kill") raise(SIGKILL);
    if (name == "abort") abort_job("injected fatal error on rank 1", 3);
  }
  w.wait();
  if (rank == 1 && name == "hang") std::this_thread::sleep_for(std::chrono::seconds(120));
  for (int i = 0; i < 3; ++i)
    world->all_reduce(a.data(), b.data(), a.size(), DType::fp32, ReduceOp::sum).wait();
  std::printf("rank %d: scenario '%s' finished its collectives (it should not)\n", rank,
              name.c_str());
  return 0;
}

}  // namespace

Communicator& world() { return *g_world; }

ProcessGrid& dp_grid() {
  if (!g_dp_grid) g_dp_grid = std::make_unique<ProcessGrid>(world(), 1, 1, 1);
  return *g_dp_grid;
}

float exact_value(int rank, size_t i, int salt) {
  return (float)((rank * 7 + (int)(i % 13) + salt * 3) % 17) - 8.0f;
}

float random_value(int rank, size_t i, int salt) {
  uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ ((uint64_t)(rank + 1) << 40) ^ (uint64_t)salt;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return (float)((double)(x >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

float round_to(float v, DType dt) {
  if (dt == DType::bf16) return bf16_to_fp32(fp32_to_bf16(v));
  if (dt == DType::fp16) return fp16_to_fp32(fp32_to_fp16(v));
  return v;
}

float Values::get(size_t i) const {
  const uint8_t* p = bytes.data() + i * dtype_size(dt);
  if (dt == DType::fp32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dt == DType::bf16 ? bf16_to_fp32(h) : fp16_to_fp32(h);
}

void Values::set(size_t i, float v) {
  uint8_t* p = bytes.data() + i * dtype_size(dt);
  if (dt == DType::fp32) {
    std::memcpy(p, &v, 4);
    return;
  }
  uint16_t h = dt == DType::bf16 ? fp32_to_bf16(v) : fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

}  // namespace zt::test

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--scenario")) {
      try {
        return zt::test::run_scenario(argv[i + 1]);
      } catch (const zt::Error& e) {
        std::fprintf(stderr, "zt_mpi_tests: error: %s\n", e.what());
        return 2;
      }
    }
  ::testing::InitGoogleTest(&argc, argv);
  int failed = 0;
  {
    zt::ProcessContext ctx;
    zt::test::g_world = zt::make_world_communicator();
    if (ctx.rank() != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new zt::test::FailurePrinter(ctx.rank()));
    }
    failed = RUN_ALL_TESTS() != 0;
    if (ctx.mpi()) MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    zt::test::g_dp_grid.reset();
    zt::test::g_world.reset();
  }
  return failed ? 1 : 0;
}
