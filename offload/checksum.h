// checksum.h: the checksums of checkpoint rank files (the manifest's "page_hash64", and
// "hash64" of checkpoints written before it).
//
// page_hash64: every 4 KiB page of the file (the last one zero-padded) gets four FNV-1a-style
// lanes over its 8-byte words, folded; the page hashes are folded in file order, then the length.
// It detects flipped, swapped and truncated bytes like FNV-1a over the file, but the pages can be
// hashed in any order: the writer hashes the pages that hold tensor data from the tensors in
// memory (DataPageHasher) while later ones are still being written, and reads back only the few
// pages around them (HDF5 metadata) once the file is closed.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace zt {

// The page_hash64 checksum of the file at `path`.
uint64_t file_checksum(const std::string& path);
// The page_hash64 checksum of the bytes of `path` after its first `skip` (as if the file began
// there): model.h5 exports keep it in their HDF5 user block.
uint64_t file_checksum_after(const std::string& path, int64_t skip);
// The hash64 checksum of earlier checkpoints: four FNV-1a-style lanes over the file's 8-byte
// words, folded. Still verified so that older checkpoints load.
uint64_t file_checksum_v1(const std::string& path);

// Hashes the pages of a file being written that lie wholly inside one dataset's stored data, from
// the data in memory, on a second thread while the following datasets are written.
class DataPageHasher {
 public:
  DataPageHasher();
  ~DataPageHasher();
  DataPageHasher(const DataPageHasher&) = delete;
  DataPageHasher& operator=(const DataPageHasher&) = delete;

  // `bytes` bytes at file offset `at` hold `data` (which must stay unchanged until wait_idle()).
  void add(int64_t at, const void* data, int64_t bytes);
  // Waits until every page added so far is hashed (its data may then change).
  void wait_idle();
  // The page_hash64 checksum of the closed file at `path`: the pages not hashed yet are read.
  uint64_t finish(const std::string& path);

 private:
  struct Job {
    int64_t at;
    const unsigned char* data;
    int64_t bytes;
  };
  void run();
  void stop();

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false, busy_ = false;
  std::vector<std::pair<int64_t, uint64_t>> done_;  // page, hash; the worker's until stop()
  std::thread worker_;
};

}  // namespace zt
