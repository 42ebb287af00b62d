// bench_store.cpp: see bench_store.h.
#include "launch/bench_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <vector>

#include "launch/bench_io.h"
#include "offload/shard_store.h"
#include "runtime/error.h"
#include "runtime/metrics.h"

namespace zt {
namespace {

constexpr int64_t kTile = 1 << 20;  // elements per request (4 MiB)
constexpr size_t kInFlight = 4;

struct Request {
  int id;
  int64_t first, count;
};

// Every (array, tile) request of the store, in file order.
std::vector<Request> requests(ShardStore& st, const ParamTable& table) {
  std::vector<Request> out;
  for (int u = 0; u < table.num_units(); ++u)
    for (const char* what : {"params", "exp_avg", "exp_avg_sq"}) {
      const int64_t n = table.unit_numel(u);
      const int id = st.define(cat("unit_", u, "/", what), DType::fp32, n);
      for (int64_t j = 0; j < n; j += kTile) out.push_back({id, j, std::min(kTile, n - j)});
    }
  return out;
}

// Runs fn(request, buffer) with at most kInFlight tickets outstanding; returns milliseconds.
template <typename F>
double pipelined(const std::vector<Request>& reqs, std::vector<std::vector<float>>& bufs, F fn) {
  const double t0 = now_ms();
  std::deque<StateStore::Ticket> inflight;
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (inflight.size() == kInFlight) {
      inflight.front().get();
      inflight.pop_front();
    }
    inflight.push_back(fn(reqs[i], bufs[i % kInFlight].data()));
  }
  for (auto& t : inflight) t.get();
  return now_ms() - t0;
}

}  // namespace

void bench_store(const std::filesystem::path& dir, const ParamTable& table, int repeat,
                 double raw_write_gbs, double raw_read_gbs) {
  std::vector<std::vector<float>> bufs(kInFlight, std::vector<float>(kTile, 0.5f));
  double best_w = 1e30, best_r = 1e30;
  int64_t bytes = 0;
  for (int r = 0; r < repeat; ++r) {
    ShardStore st(dir.string(), 0);
    std::vector<Request> reqs = requests(st, table);
    st.open();
    bytes = 0;
    for (const Request& q : reqs) bytes += q.count * 4;
    const double w = pipelined(reqs, bufs, [&](const Request& q, float* b) {
      return st.write(q.id, q.first, q.count, b);
    });
    const double t0 = now_ms();
    st.sync();  // durable, as the raw write is
    best_w = std::min(best_w, w + now_ms() - t0);
    int fd = ::open(st.where().c_str(), O_RDONLY);
    if (fd < 0) fail("cannot open ", st.where());
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // read from the disk, not the cache
    ::close(fd);
    best_r = std::min(best_r, pipelined(reqs, bufs, [&](const Request& q, float* b) {
                        return st.read(q.id, q.first, q.count, b);
                      }));
  }
  std::filesystem::remove_all(dir);
  io_line("store_write", bytes, best_w);
  io_line("store_read", bytes, best_r);
  const double w_gbs = bytes / (best_w / 1000) / 1e9, r_gbs = bytes / (best_r / 1000) / 1e9;
  std::fprintf(stderr, "bench io: shard store write %.2f and read %.2f of the raw rate\n",
               w_gbs / raw_write_gbs, r_gbs / raw_read_gbs);
}

}  // namespace zt
