// bench_io.cpp: checkpoint (and, through bench_store.h, offload shard-store) I/O against plain
// sequential I/O. Both sides are made durable (fsync) when writing and evicted from the page
// cache (posix_fadvise DONTNEED after the fsync) before reading, so both measure the disk. One JSON
// line per measurement (SPEC section 3).
#include "launch/bench_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "launch/bench_store.h"
#include "model/params.h"
#include "offload/checkpoint.h"
#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/options.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

void evict(const fs::path& p) {  // drop the file's (clean, synced) pages from the cache
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open '", p.string(), "'");
  ::fsync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void evict_tree(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) evict(e.path());
}

double raw_write(const fs::path& p, const std::vector<char>& buf, int64_t bytes) {
  double t0 = now_ms();
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) fail("cannot write '", p.string(), "'");
  for (int64_t done = 0; done < bytes; done += (int64_t)buf.size()) {
    size_t n = (size_t)std::min<int64_t>((int64_t)buf.size(), bytes - done);
    if (std::fwrite(buf.data(), 1, n, f) != n) fail("cannot write '", p.string(), "' (disk full?)");
  }
  std::fflush(f);
  ::fsync(fileno(f));
  std::fclose(f);
  return now_ms() - t0;
}

double raw_read(const fs::path& p, std::vector<char>& buf) {
  double t0 = now_ms();
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) fail("cannot read '", p.string(), "'");
  while (std::fread(buf.data(), 1, buf.size(), f) > 0) {
  }
  std::fclose(f);
  return now_ms() - t0;
}

}  // namespace

void io_line(const char* what, int64_t bytes, double ms) {
  std::printf("%s\n", nlohmann::json{{"bench", "io"},
                                     {"what", what},
                                     {"bytes", bytes},
                                     {"gbs", (double)bytes / (ms / 1000) / 1e9}}
                          .dump()
                          .c_str());
  std::fflush(stdout);
}

int bench_io(int argc, char** argv) {
  std::string dir = fs::temp_directory_path() / "zerotrain-bench-io";
  ModelConfig cfg;  // the bench shape by default
  int repeat = 3;
  po::options_description d("bench io");
  d.add_options()                                                      //
      ("dir", with_default(&dir), "directory on the disk to measure")  //
      ("layers", with_default(&cfg.layers), "model size: blocks")      //
      ("model-dim", with_default(&cfg.model_dim),
       "model size: width")  //
      ("repeat", with_default(&repeat), "best of this many runs");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain bench io [--dir DIR]", d, vm)) return 0;
  require_min(vm, "repeat", 1);
  cfg.validate();
  const ParamTable table = build_param_table(cfg);
  UnitVectors p(table.num_units()), m(table.num_units()), v(table.num_units());
  for (int u = 0; u < table.num_units(); ++u) {
    p[u].assign(table.unit_numel(u), 0.25f);
    m[u].assign(table.unit_numel(u), 0.5f);
    v[u].assign(table.unit_numel(u), 0.75f);
  }
  const fs::path root = fs::path(dir) / cat("run-", getpid());
  fs::create_directories(root);
  TrainState st;
  st.step = 1;
  const std::unique_ptr<Communicator> one = make_local_communicator("world");
  double best_cw = 1e30, best_cr = 1e30, best_rw = 1e30, best_rr = 1e30;
  int64_t bytes = 0;
  std::vector<char> buf(8 << 20, 'z');
  for (int r = 0; r < repeat; ++r) {
    fs::remove_all(root / "ckpt");
    double t0 = now_ms();
    std::string step_dir = save_checkpoint(*one, (root / "ckpt").string(), cfg, table,
                                           unit_source(p, m, v), st, nlohmann::json::object(), 0);
    best_cw = std::min(best_cw, now_ms() - t0);
    bytes = (int64_t)fs::file_size(fs::path(step_dir) / "rank_00000.h5");
    evict_tree(root / "ckpt");
    UnitVectors p2, m2, v2;
    t0 = now_ms();
    load_checkpoint(step_dir, cfg, table, p2, &m2, &v2, nullptr);
    best_cr = std::min(best_cr, now_ms() - t0);
    best_rw = std::min(best_rw, raw_write(root / "raw.bin", buf, bytes));
    evict(root / "raw.bin");
    best_rr = std::min(best_rr, raw_read(root / "raw.bin", buf));
  }
  fs::remove_all(root);
  io_line("ckpt_write", bytes, best_cw);
  io_line("raw_write", bytes, best_rw);
  io_line("ckpt_read", bytes, best_cr);
  io_line("raw_read", bytes, best_rr);
  std::fprintf(stderr, "bench io: checkpoint write %.2f and read %.2f of the raw rate\n",
               best_rw / best_cw, best_rr / best_cr);
  bench_store(fs::path(dir) / cat("store-", getpid()), table, repeat,
              (double)bytes / (best_rw / 1000) / 1e9, (double)bytes / (best_rr / 1000) / 1e9);
  return 0;
}

}  // namespace zt
