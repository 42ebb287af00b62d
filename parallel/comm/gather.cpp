// gather.cpp: exact small exchanges (gather.h).
#include "parallel/comm/gather.h"

#include <algorithm>

namespace zt {

std::vector<double> sum_exact(Communicator& comm, const std::vector<double>& mine) {
  if (comm.size() == 1) return mine;
  const std::vector<double> all = gather_values(comm, mine);
  std::vector<double> s(mine.size(), 0.0);
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = 0; i < mine.size(); ++i) s[i] += all[r * mine.size() + i];
  return s;
}

double sum_exact(Communicator& comm, double x) {
  return sum_exact(comm, std::vector<double>{x})[0];
}

std::vector<int64_t> max_exact(Communicator& comm, const std::vector<int64_t>& mine) {
  const std::vector<int64_t> all = gather_values(comm, mine);
  std::vector<int64_t> m(mine);  // every rank's, rank 0's included (not only the others')
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = 0; i < mine.size(); ++i) m[i] = std::max(m[i], all[r * mine.size() + i]);
  return m;
}

bool any_rank(Communicator& comm, bool flag) { return max_exact(comm, {flag ? 1 : 0})[0] != 0; }

std::vector<std::string> gather_strings(Communicator& comm, const std::string& mine) {
  const std::vector<int64_t> sizes =
      gather_values(comm, std::vector<int64_t>{(int64_t)mine.size()});
  std::vector<size_t> counts(sizes.begin(), sizes.end());
  ControlTraffic control;
  std::string all;
  for (int64_t c : sizes) all.resize(all.size() + (size_t)c);
  comm.all_gather(mine.data(), all.data(), counts, DType::int8).wait();
  std::vector<std::string> out;
  size_t off = 0;
  for (int64_t c : sizes) out.push_back(all.substr(off, (size_t)c)), off += (size_t)c;
  return out;
}

}  // namespace zt
