// shard_store.cpp: see shard_store.h.
#include "offload/shard_store.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <filesystem>

#include "runtime/error.h"
#include "runtime/hash.h"
#include "runtime/metrics.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

std::string errno_text() { return std::strerror(errno); }

// Closes an HDF5 handle of any kind when it leaves scope.
struct H5Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~H5Handle() {
    if (id >= 0) close(id);
  }
};

int64_t page_count(int64_t bytes) { return (bytes + kStorePageBytes - 1) / kStorePageBytes; }

}  // namespace

ShardStore::ShardStore(std::string dir, int rank, int io_threads)
    : dir_(std::move(dir)), threads_wanted_(io_threads) {
  char name[48];
  std::snprintf(name, sizeof name, "offload_rank_%05d", rank);
  path_ = (fs::path(dir_) / (std::string(name) + ".h5")).string();
  lock_path_ = (fs::path(dir_) / (std::string(name) + ".lock")).string();
}

ShardStore::~ShardStore() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  if (fd_ >= 0) ::close(fd_);
  // After a failure the file may hold a half-written step: remove it. After a clean run it
  // stays for inspection (h5ls / h5dump), holding the last step's state of this rank.
  if (created_ && std::uncaught_exceptions() > 0) ::unlink(path_.c_str());
  if (lock_fd_ >= 0) {
    ::unlink(lock_path_.c_str());
    ::close(lock_fd_);
  }
}

int ShardStore::define(const std::string& name, DType dt, int64_t count) {
  ZT_CHECK(fd_ < 0, "define('", name, "') after open()");
  ZT_CHECK(count > 0, "array '", name, "' of ", count, " elements");
  Array a;
  a.name = name;
  a.dt = dt;
  a.count = count;
  arrays_.push_back(std::move(a));
  return (int)arrays_.size() - 1;
}

void ShardStore::open() {
  ZT_CHECK(fd_ < 0, "open() twice");
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail("--nvme-dir '", dir_, "': cannot create it: ", ec.message());
  lock_fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT, 0644);
  if (lock_fd_ < 0) fail("--nvme-dir '", dir_, "' is not writable: ", errno_text());
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail("--nvme-dir '", dir_, "': ", path_, " is in use by another zerotrain process");
  }
  // A size limit (ulimit -f) must give an error here, not kill the process with SIGXFSZ.
  std::signal(SIGXFSZ, SIG_IGN);

  // Room first, before HDF5 writes anything: HDF5 1.10 does not recover from a failed write at
  // close (a later library shutdown crashes), so claim more than the file will need up front.
  created_ = true;
  {
    int64_t need = 1 << 20;  // superblock, groups and dataset headers
    for (const Array& a : arrays_) need += a.count * (int64_t)dtype_size(a.dt) + 4096;
    int probe = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (probe < 0) fail("--nvme-dir '", dir_, "': cannot create ", path_, ": ", errno_text());
    const int e = ::posix_fallocate(probe, 0, need);
    ::close(probe);
    if (e != 0)
      fail("--nvme-dir '", dir_, "' has no room for ", path_, " (", need,
           " bytes): ", std::strerror(e));
  }
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  {
    H5Handle fapl{H5Pcreate(H5P_FILE_ACCESS), H5Pclose};
    H5Pset_alignment(fapl.id, 4096, 4096);  // data extents start on 4 KiB boundaries
    H5Handle file{H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id), H5Fclose};
    if (file.id < 0) fail("--nvme-dir '", dir_, "': cannot create ", path_);
    H5Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
    H5Pset_create_intermediate_group(lcpl.id, 1);
    for (Array& a : arrays_) {
      H5Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
      H5Pset_layout(dcpl.id, H5D_CONTIGUOUS);
      H5Pset_alloc_time(dcpl.id, H5D_ALLOC_TIME_EARLY);
      H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER);
      hsize_t dims[1] = {(hsize_t)a.count};
      H5Handle space{H5Screate_simple(1, dims, nullptr), H5Sclose};
      hid_t type = a.dt == DType::fp32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT16;
      H5Handle ds{
          H5Dcreate2(file.id, a.name.c_str(), type, space.id, lcpl.id, dcpl.id, H5P_DEFAULT),
          H5Dclose};
      if (ds.id < 0) fail("cannot create dataset '", a.name, "' in ", path_);
      haddr_t off = H5Dget_offset(ds.id);
      if (off == HADDR_UNDEF) fail("dataset '", a.name, "' in ", path_, " has no file extent");
      a.offset = (int64_t)off;
      a.page_hash.assign((size_t)page_count(a.count * (int64_t)dtype_size(a.dt)), 0);
      file_bytes_ = std::max(file_bytes_, a.offset + a.count * (int64_t)dtype_size(a.dt));
    }
    const herr_t closed = H5Fclose(file.id);
    file.id = -1;  // closed even when that failed: never close twice
    if (closed < 0)
      fail("--nvme-dir '", dir_, "' has no room for ", path_, " (", file_bytes_,
           " bytes): HDF5 could not write it");
  }
  fd_ = ::open(path_.c_str(), O_RDWR);
  if (fd_ < 0) fail("cannot open ", path_, ": ", errno_text());
  if (int e = ::posix_fallocate(fd_, 0, file_bytes_); e != 0)
    fail("--nvme-dir '", dir_, "' has no room for ", path_, " (", file_bytes_,
         " bytes): ", std::strerror(e));
  struct stat st;
  ::fstat(fd_, &st);
  dev_ = st.st_dev, ino_ = st.st_ino;
  for (int i = 0; i < threads_wanted_; ++i) threads_.emplace_back([this] { run_io(); });
}

void ShardStore::run_io() {
  for (;;) {
    std::packaged_task<void()> job;
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait(g, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    const double t0 = now_ms();
    job();  // an exception lands in the ticket
    std::lock_guard<std::mutex> g(stats_mu_);
    stats_.busy_ms += now_ms() - t0;
  }
}

StateStore::Ticket ShardStore::submit(std::function<void()> fn) {
  ZT_CHECK(fd_ >= 0, "I/O before open()");
  std::packaged_task<void()> job(std::move(fn));
  Ticket t = job.get_future().share();
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return t;
}

void ShardStore::check_range(const Array& a, int64_t first, int64_t count) const {
  const int64_t es = (int64_t)dtype_size(a.dt), end = first + count;
  ZT_CHECK(first >= 0 && count > 0 && end <= a.count, "range [", first, ", ", end, ") of '", a.name,
           "' (", a.count, " elements)");
  ZT_CHECK(
      (first * es) % kStorePageBytes == 0 && ((end * es) % kStorePageBytes == 0 || end == a.count),
      "range [", first, ", ", end, ") of '", a.name, "' is not page-aligned");
}

StateStore::Ticket ShardStore::read(int id, int64_t first, int64_t count, void* dst) {
  Array& a = arrays_.at((size_t)id);
  check_range(a, first, count);
  const int64_t es = (int64_t)dtype_size(a.dt);
  return submit([this, &a, first, count, es, dst] {
    do_read(a, first * es, count * es, static_cast<char*>(dst));
  });
}

StateStore::Ticket ShardStore::write(int id, int64_t first, int64_t count, const void* src) {
  Array& a = arrays_.at((size_t)id);
  check_range(a, first, count);
  const int64_t es = (int64_t)dtype_size(a.dt);
  return submit([this, &a, first, count, es, src] {
    do_write(a, first * es, count * es, static_cast<const char*>(src));
  });
}

void ShardStore::do_read(Array& a, int64_t byte0, int64_t bytes, char* dst) {
  for (int64_t done = 0; done < bytes;) {
    ssize_t n = ::pread(fd_, dst + done, (size_t)(bytes - done), a.offset + byte0 + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read offload shard file ", path_, " ('", a.name, "'): ", errno_text());
    if (n == 0)
      fail("offload shard file ", path_, " is truncated: '", a.name, "' ends past its end");
    done += n;
  }
  const int64_t total = a.count * (int64_t)dtype_size(a.dt);
  for (int64_t b = byte0; b < byte0 + bytes; b += kStorePageBytes) {
    const int64_t len = std::min(kStorePageBytes, total - b);
    const uint64_t want = a.page_hash[(size_t)(b / kStorePageBytes)];
    ZT_CHECK(want != 0, "'", a.name, "' page ", b / kStorePageBytes, " read before written");
    if (hash_bytes(dst + (b - byte0), (size_t)len) != want)
      fail("offload shard file ", path_, " is damaged: '", a.name, "' bytes ", b, "-", b + len,
           " (of the dataset)",
           " differ from what was written (the run cannot continue; resume from the last "
           "checkpoint)");
  }
  std::lock_guard<std::mutex> g(stats_mu_);
  stats_.read_bytes += bytes;
}

void ShardStore::do_write(Array& a, int64_t byte0, int64_t bytes, const char* src) {
  const int64_t total = a.count * (int64_t)dtype_size(a.dt);
  for (int64_t b = byte0; b < byte0 + bytes; b += kStorePageBytes) {
    uint64_t h = hash_bytes(src + (b - byte0), (size_t)std::min(kStorePageBytes, total - b));
    a.page_hash[(size_t)(b / kStorePageBytes)] = h ? h : 1;  // 0 means "never written"
  }
  for (int64_t done = 0; done < bytes;) {
    ssize_t n = ::pwrite(fd_, src + done, (size_t)(bytes - done), a.offset + byte0 + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail("cannot write offload shard file ", path_, " ('", a.name, "'): ", errno_text());
    done += n;
  }
  std::lock_guard<std::mutex> g(stats_mu_);
  stats_.write_bytes += bytes;
}

void ShardStore::check() {
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_)
    fail("offload shard file ", path_,
         " was removed or replaced during the run (the run cannot continue; resume from the "
         "last checkpoint)");
  if (st.st_size < file_bytes_)
    fail("offload shard file ", path_, " is truncated: ", st.st_size, " bytes of ", file_bytes_);
}

void ShardStore::sync() {
  if (fd_ >= 0 && ::fdatasync(fd_) != 0) fail("cannot sync ", path_, ": ", errno_text());
}

StoreCounters ShardStore::counters() const {
  std::lock_guard<std::mutex> g(stats_mu_);
  return stats_;
}

}  // namespace zt
