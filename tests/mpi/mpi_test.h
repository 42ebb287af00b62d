// mpi_test.h: what the zt_mpi_tests binary shares. main.cpp starts the ProcessContext once and
// keeps the world communicator; every test runs on every rank, in the same order, so a test must
// issue the same collectives on every rank even when an expectation fails (use EXPECT_*).
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/comm/comm.h"
#include "parallel/grid.h"
#include "runtime/dtype.h"

namespace zt::test {

Communicator& world();   // the world communicator of this run (local when run as one process)
ProcessGrid& dp_grid();  // the world as one data-parallel group (tp = pp = ep = 1), made once

// Deterministic inputs: exact small integers (sums are exact in every dtype) or values in [-1, 1).
float exact_value(int rank, size_t i, int salt = 0);
float random_value(int rank, size_t i, int salt = 0);

// A buffer of `count` elements of dt, read and written as floats.
struct Values {
  DType dt;
  std::vector<uint8_t> bytes;
  Values(size_t count, DType d) : dt(d), bytes(count * dtype_size(d) + 1) {}  // +1: never empty
  size_t size() const { return (bytes.size() - 1) / dtype_size(dt); }
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
  float get(size_t i) const;
  void set(size_t i, float v);  // rounds to dt
  char* at(size_t i) { return reinterpret_cast<char*>(bytes.data()) + i * dtype_size(dt); }
};

float round_to(float v, DType dt);  // v rounded to dt and back

}  // namespace zt::test
