// The NVMe shard store (offload/shard_store.h): round trips through the HDF5 shard file, page
// alignment, and every way the file can go wrong: a flipped byte, truncation, removal, an
// unwritable directory, a full disk (a file-size limit), a second process on the same files.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <numeric>
#include <vector>

#include "offload/hdf5.h"
#include "offload/shard_store.h"
#include "test_util.h"

namespace zt::test {
namespace {

namespace fs = std::filesystem;

struct StoreTest : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("zt_test_store_" + std::to_string(::getpid()));
  fs::path file = dir / "offload_rank_00003.h5";
  void TearDown() override { fs::remove_all(dir); }
};

std::vector<float> ramp(int64_t n, float start) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

int64_t dataset_offset(const fs::path& file, const char* name) {
  H5File f = H5File::open(file.string());
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  int64_t off = (int64_t)H5Dget_offset(ds);
  H5Dclose(ds);
  return off;
}

TEST_F(StoreTest, RoundTripInTilesAndReadableWithHdf5) {
  const int64_t n = 100000, h = 50001;  // h: an odd length, the last page partial
  {
    ShardStore st(dir.string(), 3);
    int a = st.define("unit_0/exp_avg", DType::fp32, n);
    int b = st.define("unit_1/params", DType::bf16, h);
    st.open();
    std::vector<float> x = ramp(n, 1.0f);
    std::vector<uint16_t> y(h);
    for (int64_t i = 0; i < h; ++i) y[i] = (uint16_t)(i * 7);
    st.write(a, 0, n, x.data()).get();
    st.write(b, 0, h, y.data()).get();
    // Tiles of 8192 elements, as the engine streams them, read back in a different order.
    std::vector<float> back(n, -1.0f);
    std::vector<StateStore::Ticket> ts;
    for (int64_t j = (n - 1) / 8192 * 8192; j >= 0; j -= 8192)
      ts.push_back(st.read(a, j, std::min<int64_t>(8192, n - j), back.data() + j));
    for (auto& t : ts) t.get();
    EXPECT_EQ(back, x);
    std::vector<uint16_t> yb(h);
    st.read(b, 0, h, yb.data()).get();
    EXPECT_EQ(yb, y);
    // An updated tile replaces its pages.
    std::vector<float> tile = ramp(8192, -5.0f);
    st.write(a, 8192, 8192, tile.data()).get();
    st.read(a, 8192, 8192, back.data()).get();
    EXPECT_EQ(std::vector<float>(back.begin(), back.begin() + 8192), tile);
    EXPECT_GE(st.stored_bytes(), n * 4 + h * 2);
    StoreCounters c = st.counters();
    EXPECT_EQ(c.write_bytes, n * 4 + h * 2 + 8192 * 4);
    st.check();
  }
  // After a clean close the file stays, an HDF5 file with the declared datasets; the lock goes.
  ASSERT_TRUE(fs::exists(file));
  EXPECT_FALSE(fs::exists(dir / "offload_rank_00003.lock"));
  H5File f = H5File::open(file.string());
  EXPECT_EQ(h5_shape(f, "unit_0/exp_avg"), std::vector<int64_t>{n});
  EXPECT_EQ(h5_shape(f, "unit_1/params"), std::vector<int64_t>{h});
  std::vector<float> x = h5_read_f32(f, "unit_0/exp_avg");
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_EQ(x[8192], -5.0f);
}

TEST_F(StoreTest, RangesMustBeWholePages) {
  ShardStore st(dir.string(), 3);
  int a = st.define("a", DType::fp32, 10000);
  st.open();
  std::vector<float> x(10000);
  EXPECT_NE(error_of([&] { st.write(a, 1, 100, x.data()); }).find("not page-aligned"),
            std::string::npos);
  EXPECT_NE(error_of([&] { st.read(a, 0, 10001, x.data()); }).find("10000 elements"),
            std::string::npos);
  st.write(a, 0, 10000, x.data()).get();
  st.read(a, 4096, 10000 - 4096, x.data()).get();  // to the array's end: fine
}

TEST_F(StoreTest, AFlippedByteIsAnErrorNamingFileAndArray) {
  ShardStore st(dir.string(), 3);
  int a = st.define("unit_2/exp_avg_sq", DType::fp32, 20000);
  st.open();
  std::vector<float> x = ramp(20000, 0.5f);
  st.write(a, 0, 20000, x.data()).get();
  const int64_t off = dataset_offset(file, "unit_2/exp_avg_sq") + 4 * 12345;
  int fd = ::open(file.c_str(), O_RDWR);
  char byte;
  ASSERT_EQ(::pread(fd, &byte, 1, off), 1);
  byte ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &byte, 1, off), 1);
  ::close(fd);
  std::string e = error_of([&] { st.read(a, 0, 20000, x.data()).get(); });
  EXPECT_NE(e.find(file.string()), std::string::npos) << e;
  EXPECT_NE(e.find("damaged"), std::string::npos) << e;
  EXPECT_NE(e.find("unit_2/exp_avg_sq"), std::string::npos) << e;
  st.read(a, 0, 8192, x.data()).get();  // the pages before it are intact
}

TEST_F(StoreTest, TruncatedAndRemovedFilesAreErrors) {
  ShardStore st(dir.string(), 3);
  int a = st.define("a", DType::fp32, 20000);
  st.open();
  std::vector<float> x(20000, 2.0f);
  st.write(a, 0, 20000, x.data()).get();
  ASSERT_EQ(::truncate(file.c_str(), dataset_offset(file, "a") + 4000), 0);
  EXPECT_NE(error_of([&] { st.check(); }).find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { st.read(a, 0, 20000, x.data()).get(); }).find("truncated"),
            std::string::npos);
  fs::remove(file);
  EXPECT_NE(error_of([&] { st.check(); }).find("removed or replaced"), std::string::npos);
}

TEST_F(StoreTest, UnwritableDirectoryIsAnError) {
  fs::create_directories(dir);
  const fs::path plain = dir / "a_file";
  {
    std::FILE* f = std::fopen(plain.c_str(), "w");
    std::fclose(f);
  }
  ShardStore st((plain / "sub").string(), 0);
  st.define("a", DType::fp32, 100);
  std::string e = error_of([&] { st.open(); });
  EXPECT_NE(e.find("--nvme-dir"), std::string::npos) << e;
  EXPECT_NE(e.find("a_file/sub"), std::string::npos) << e;
}

TEST_F(StoreTest, AFullDiskIsAnErrorAtStartAndLeavesNoFile) {
  struct rlimit old;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 256 << 10;  // files may not grow past 256 KiB, like a nearly full disk
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string e = error_of([&] {
    ShardStore st(dir.string(), 3);
    st.define("big", DType::fp32, 1 << 20);
    st.open();
  });
  ::setrlimit(RLIMIT_FSIZE, &old);
  EXPECT_NE(e.find("no room"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(file));
}

TEST_F(StoreTest, ASecondProcessOnTheSameFilesIsRefused) {
  ShardStore first(dir.string(), 3);
  first.define("a", DType::fp32, 100);
  first.open();
  ShardStore second(dir.string(), 3);
  second.define("a", DType::fp32, 100);
  EXPECT_NE(error_of([&] { second.open(); }).find("in use by another"), std::string::npos);
}

}  // namespace
}  // namespace zt::test
