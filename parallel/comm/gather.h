// gather.h: small blocking exchanges of values every rank of a communicator needs: byte-exact
// (an all-gather of the raw values, combined in rank order on every rank), so all ranks get the
// same bits and nothing is rounded to fp32 on the way, as the reducing collectives would. Their
// bytes count as control traffic (comm.h, ControlTraffic), not as all-gathers.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "parallel/comm/comm.h"

namespace zt {

// Every rank's `mine` (the same length on each rank), concatenated in rank order.
template <typename T>
std::vector<T> gather_values(Communicator& comm, const std::vector<T>& mine) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (comm.size() == 1) return mine;
  ControlTraffic control;
  std::vector<T> all(mine.size() * (size_t)comm.size());
  const std::vector<size_t> bytes(comm.size(), mine.size() * sizeof(T));
  comm.all_gather(mine.data(), all.data(), bytes, DType::int8).wait();
  return all;
}

// Element-wise sums in rank order (doubles: the gradient norm, the losses) and maxima (byte
// counts) of `mine` over the ranks.
std::vector<double> sum_exact(Communicator& comm, const std::vector<double>& mine);
double sum_exact(Communicator& comm, double x);
std::vector<int64_t> max_exact(Communicator& comm, const std::vector<int64_t>& mine);
bool any_rank(Communicator& comm, bool flag);  // true on every rank if it is true on one

// Every rank's string, in rank order (lengths first, then the bytes).
std::vector<std::string> gather_strings(Communicator& comm, const std::string& mine);

}  // namespace zt
