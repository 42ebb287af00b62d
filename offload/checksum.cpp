// checksum.cpp: the rank-file checksums (checksum.h).
#include "offload/checksum.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "runtime/error.h"
#include "runtime/hash.h"

namespace zt {
namespace {

constexpr uint64_t kPrime = kHashPrime, kBasis = kHashLanes[0];

constexpr int64_t kPage = 4096;

uint64_t page_hash(const unsigned char* page) {
  uint64_t lane[4] = {kHashLanes[0], kHashLanes[1], kHashLanes[2], kHashLanes[3]};
  hash_lanes(page, kPage, lane);
  uint64_t h = lane[0];
  for (int k = 1; k < 4; ++k) h = (h ^ lane[k]) * kPrime;
  return h;
}

uint64_t fold_pages(const std::vector<uint64_t>& pages, uint64_t bytes) {
  uint64_t h = kBasis;
  for (uint64_t p : pages) h = (h ^ p) * kPrime;
  return (h ^ bytes) * kPrime;
}

// The checksum of the file at `path` from byte `base` on, given the hashes of some of its pages
// (page index counted from `base`, hash): the others are read from the file.
uint64_t page_checksum(const std::string& path,
                       const std::vector<std::pair<int64_t, uint64_t>>& known, int64_t base = 0) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot read '", path, "'");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < base) fail("cannot read '", path, "'");
  const int64_t bytes = end - base;
  const int64_t npages = (bytes + kPage - 1) / kPage;
  std::vector<uint64_t> hash(npages);
  std::vector<char> have(npages, 0);
  for (auto [page, h] : known)
    if (page < npages) hash[page] = h, have[page] = 1;
  constexpr int64_t kRun = 256;  // pages per read (1 MiB)
  std::vector<unsigned char> buf(kRun * kPage);
  for (int64_t i = 0; i < npages;) {
    if (have[i]) {
      ++i;
      continue;
    }
    int64_t j = i + 1;
    while (j < npages && j - i < kRun && !have[j]) ++j;
    const int64_t want = std::min<int64_t>((j - i) * kPage, bytes - i * kPage);
    for (int64_t got = 0; got < want;) {
      ssize_t n = ::pread(fd, buf.data() + got, (size_t)(want - got), base + i * kPage + got);
      if (n <= 0) fail("cannot read '", path, "'");
      got += n;
    }
    std::memset(buf.data() + want, 0, (size_t)((j - i) * kPage - want));
    for (int64_t k = i; k < j; ++k) hash[k] = page_hash(buf.data() + (k - i) * kPage);
    i = j;
  }
  return fold_pages(hash, (uint64_t)bytes);
}

}  // namespace

uint64_t file_checksum(const std::string& path) { return page_checksum(path, {}); }

uint64_t file_checksum_after(const std::string& path, int64_t skip) {
  return page_checksum(path, {}, skip);
}

DataPageHasher::DataPageHasher() : worker_([this] { run(); }) {}
DataPageHasher::~DataPageHasher() { stop(); }

void DataPageHasher::add(int64_t at, const void* data, int64_t bytes) {
  if (at < 0 || bytes < kPage) return;
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.push_back({at, static_cast<const unsigned char*>(data), bytes});
  cv_.notify_one();
}

void DataPageHasher::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return jobs_.empty() && !busy_; });
}

uint64_t DataPageHasher::finish(const std::string& path) {
  stop();
  return page_checksum(path, done_);
}

void DataPageHasher::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, all done
    Job j = jobs_.front();
    jobs_.pop_front();
    busy_ = true;
    lock.unlock();
    for (int64_t page = (j.at + kPage - 1) / kPage; (page + 1) * kPage <= j.at + j.bytes; ++page)
      done_.push_back({page, page_hash(j.data + (page * kPage - j.at))});
    lock.lock();
    busy_ = false;
    if (jobs_.empty()) idle_cv_.notify_all();
  }
}

void DataPageHasher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  worker_.join();
}

uint64_t file_checksum_v1(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot read '", path, "'");
  uint64_t lane[4] = {kHashLanes[0], kHashLanes[1], kHashLanes[2], kHashLanes[3]};
  std::vector<char> buf(1 << 20);  // a multiple of 32 bytes: the lanes carry across reads
  uint64_t total = 0;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
    total += n;
    hash_lanes(buf.data(), n, lane);
  }
  std::fclose(f);
  uint64_t h = total;
  for (uint64_t l : lane) h = (h ^ l) * kPrime;
  return h;
}

}  // namespace zt
