// shard_store.h: the NVMe side of offload. One HDF5 file per rank under --nvme-dir,
// `offload_rank_NNNNN.h5`, with one contiguous dataset per declared array (named like
// "unit_3/m"), so the file opens with h5ls / h5dump. The datasets are created with their space
// allocated up front (posix_fallocate, so a full disk is an error at start, not mid-run); after
// that the store reads and writes their byte extents directly with pread / pwrite on a pool of
// I/O threads, outside HDF5's global lock.
//
// Integrity: every 16 KiB page written gets a checksum kept in memory; a read verifies the pages
// it returns, so a flipped byte or a truncated file is an error naming the file, array and page
// instead of silently wrong weights. check() notices a file that was removed or replaced.
// The file is scratch state, meaningful only to the process that writes it (checkpoints are what
// persists; a new run recreates the file): a lock file keeps a second run off it while it is in
// use. When the store is destroyed by an error the file is removed, so no half-written state is
// left behind; after a clean run it stays, readable with h5dump, and the lock file goes.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "parallel/zero/state_store.h"

namespace zt {

class ShardStore final : public StateStore {
 public:
  ShardStore(std::string dir, int rank, int io_threads = 2);
  ~ShardStore() override;
  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;

  int define(const std::string& name, DType dt, int64_t count) override;
  void open() override;
  Ticket read(int id, int64_t first, int64_t count, void* dst) override;
  Ticket write(int id, int64_t first, int64_t count, const void* src) override;
  void check() override;
  std::string where() const override { return path_; }
  int64_t stored_bytes() const override { return file_bytes_; }
  StoreCounters counters() const override;
  void sync();  // makes what was written durable (benchmarks measure the disk with it)

 private:
  struct Array {
    std::string name;
    DType dt;
    int64_t count = 0, offset = 0;    // elements; byte offset of the data in the file
    std::vector<uint64_t> page_hash;  // 0 = never written
  };
  Ticket submit(std::function<void()> job);
  void run_io();
  void do_read(Array& a, int64_t byte0, int64_t bytes, char* dst);
  void do_write(Array& a, int64_t byte0, int64_t bytes, const char* src);
  void check_range(const Array& a, int64_t first, int64_t count) const;

  std::string dir_, path_, lock_path_;
  int fd_ = -1, lock_fd_ = -1, threads_wanted_;
  bool created_ = false;
  uint64_t dev_ = 0, ino_ = 0;
  int64_t file_bytes_ = 0;
  std::vector<Array> arrays_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  mutable std::mutex stats_mu_;
  StoreCounters stats_;
};

}  // namespace zt
