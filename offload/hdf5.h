// hdf5.h: a small RAII layer over the HDF5 C API for checkpoints, exports and the reference file.
// H5File and H5Group own their handles (move-only) and convert to hid_t, so every free function
// takes any location (file or group) plus a path relative to it ("a/b") or absolute ("/a/b").
// Numeric reads convert from whatever type is stored; every failure raises zt::Error naming the
// file and the dataset or attribute (HDF5's own error printing is switched off).
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace zt {

class H5File {
 public:
  static H5File open(const std::string& path, bool writable = false);
  // Truncates an existing file. `userblock` bytes (0, or a power of two >= 512) at the start of
  // the file are left to the caller: HDF5 skips them (model.h5 keeps its checksum there).
  static H5File create(const std::string& path, int64_t userblock = 0);
  H5File(H5File&& o) noexcept;
  H5File& operator=(H5File&& o) noexcept;
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;
  ~H5File();  // closes, ignoring errors; call close() to see them

  void close();  // flushes and closes; raises on failure
  hid_t id() const { return id_; }
  operator hid_t() const { return id_; }
  const std::string& path() const { return path_; }
  // The POSIX descriptor under the file (the default sec2 driver), e.g. to start writeback early;
  // -1 when the driver has none.
  int fd() const;

 private:
  H5File(hid_t id, std::string path) : id_(id), path_(std::move(path)) {}
  hid_t id_ = -1;
  std::string path_;
};

class H5Group {
 public:
  static H5Group open(hid_t loc, const std::string& path);
  static H5Group create(hid_t loc, const std::string& path);  // with parents; opens if it exists
  H5Group(H5Group&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  H5Group& operator=(H5Group&& o) noexcept;
  H5Group(const H5Group&) = delete;
  H5Group& operator=(const H5Group&) = delete;
  ~H5Group();

  hid_t id() const { return id_; }
  operator hid_t() const { return id_; }

 private:
  explicit H5Group(hid_t id) : id_(id) {}
  hid_t id_ = -1;
};

bool h5_exists(hid_t loc, const std::string& path);  // a link that resolves to an object
std::vector<int64_t> h5_shape(hid_t loc, const std::string& path);           // {} for a scalar
std::vector<std::string> h5_list(hid_t loc, const std::string& group_path);  // sorted child names

// Whole dataset, row-major, converted to the requested type.
std::vector<double> h5_read_f64(hid_t loc, const std::string& path);
std::vector<float> h5_read_f32(hid_t loc, const std::string& path);
std::vector<int64_t> h5_read_i64(hid_t loc, const std::string& path);
// Straight into dst when the dataset has at most `capacity` elements (nothing is read otherwise);
// returns its element count.
int64_t h5_read_f32_into(hid_t loc, const std::string& path, float* dst, int64_t capacity);

// New dataset of `shape` ({} = scalar); missing parent groups are created; an existing dataset is
// an error. The data is stored contiguously (written from `data` itself where the file type is the
// memory type, as for little-endian machines). Returns the file offset of the stored elements (-1
// when none were stored); on a little-endian machine they are the bytes of `data` once the file is
// closed.
int64_t h5_write_f32(hid_t loc, const std::string& path, const float* data,
                     const std::vector<int64_t>& shape);
int64_t h5_write_f64(hid_t loc, const std::string& path, const double* data,
                     const std::vector<int64_t>& shape);
int64_t h5_write_i64(hid_t loc, const std::string& path, const int64_t* data,
                     const std::vector<int64_t>& shape);

// Scalar attributes of the object at obj_path ("." or "/" for loc itself). Strings read fixed or
// variable length; they are written as variable-length UTF-8. Writing replaces an existing one.
bool h5_attr_exists(hid_t loc, const std::string& obj_path, const std::string& name);
double h5_read_attr_f64(hid_t loc, const std::string& obj_path, const std::string& name);
int64_t h5_read_attr_i64(hid_t loc, const std::string& obj_path, const std::string& name);
std::string h5_read_attr_str(hid_t loc, const std::string& obj_path, const std::string& name);
void h5_write_attr_f64(hid_t loc, const std::string& obj_path, const std::string& name, double v);
void h5_write_attr_i64(hid_t loc, const std::string& obj_path, const std::string& name, int64_t v);
void h5_write_attr_str(hid_t loc, const std::string& obj_path, const std::string& name,
                       const std::string& v);
// A short 1-D int64 attribute (a slice's row, column and extents).
std::vector<int64_t> h5_read_attr_i64s(hid_t loc, const std::string& obj_path,
                                       const std::string& name);
void h5_write_attr_i64s(hid_t loc, const std::string& obj_path, const std::string& name,
                        const std::vector<int64_t>& v);

}  // namespace zt
