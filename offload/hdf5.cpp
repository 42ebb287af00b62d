// hdf5.cpp: HDF5 C API calls behind hdf5.h, each checked and turned into a one-line zt::Error.
#include "offload/hdf5.h"

#include <algorithm>

#include "runtime/error.h"

namespace zt {

namespace {

// HDF5 prints its error stack to stderr by default; we report errors ourselves.
void quiet() {
  static thread_local bool done = false;
  if (!done) H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr), done = true;
}

// Owns one hid_t and closes it with the matching H5?close.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  Handle(hid_t id, herr_t (*close)(hid_t)) : id(id), close(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (id >= 0) close(id);
  }
  bool ok() const { return id >= 0; }
  operator hid_t() const { return id; }
};

// The innermost message of HDF5's error stack; read it before any other HDF5 call resets it.
std::string last_h5_error() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e->desc) *(std::string*)out = e->desc;
        return 0;
      },
      &msg);
  return msg;
}

std::string file_name(hid_t loc) {
  ssize_t n = H5Fget_name(loc, nullptr, 0);
  if (n <= 0) return "<hdf5>";
  std::string s((size_t)n, '\0');
  H5Fget_name(loc, s.data(), (size_t)n + 1);
  return s;
}

// Absolute path of `path` relative to loc.
std::string full_path(hid_t loc, const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  std::string base;
  ssize_t n = H5Iget_name(loc, nullptr, 0);
  if (n > 0) {
    base.assign((size_t)n, '\0');
    H5Iget_name(loc, base.data(), (size_t)n + 1);
  }
  if (path.empty() || path == ".") return base.empty() ? "/" : base;
  if (base.empty() || base.back() != '/') base += '/';
  return base + path;
}

// "FILE: KIND 'PATH': WHAT (HDF5's reason)"
[[noreturn]] void h5_fail(hid_t loc, const std::string& kind, const std::string& path,
                          const std::string& what) {
  std::string why = last_h5_error();
  fail(file_name(loc), ": ", kind, " '", full_path(loc, path), "': ", what,
       why.empty() ? "" : " (" + why + ")");
}

std::string attr_kind(const std::string& name) { return "attribute '" + name + "' of"; }

std::vector<int64_t> space_shape(hid_t space, int64_t* count) {
  int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  *count = (int64_t)H5Sget_simple_extent_npoints(space);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// An open dataset with its dataspace, shape and element count; failures name file and dataset.
struct OpenDataset {
  Handle ds, space;
  std::vector<int64_t> shape;
  int64_t count = 0;
  OpenDataset(hid_t loc, const std::string& path)
      : ds((quiet(), H5Dopen2(loc, path.c_str(), H5P_DEFAULT)), H5Dclose),
        space(ds.ok() ? H5Dget_space(ds) : -1, H5Sclose) {
    if (!ds.ok()) h5_fail(loc, "dataset", path, "cannot open");
    if (!space.ok()) h5_fail(loc, "dataset", path, "cannot read its shape");
    shape = space_shape(space, &count);
  }
  void read(hid_t loc, const std::string& path, hid_t mem_type, const char* as, void* dst) {
    if (count > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
      h5_fail(loc, "dataset", path, std::string("cannot read as ") + as);
  }
};

template <typename T>
std::vector<T> read_dataset(hid_t loc, const std::string& path, hid_t mem_type, const char* as) {
  OpenDataset d(loc, path);
  std::vector<T> out((size_t)d.count);
  d.read(loc, path, mem_type, as, out.data());
  return out;
}

int64_t write_dataset(hid_t loc, const std::string& path, hid_t mem_type, hid_t file_type,
                      const void* data, const std::vector<int64_t>& shape) {
  quiet();
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(file_name(loc), ": dataset '", full_path(loc, path), "': negative dimension");
    count *= d;
  }
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(shape.empty() ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple((int)dims.size(), dims.data(), nullptr),
               H5Sclose);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  if (!space.ok() || !lcpl.ok() || H5Pset_create_intermediate_group(lcpl, 1) < 0)
    h5_fail(loc, "dataset", path, "cannot set up its creation");
  if (h5_exists(loc, path)) fail(file_name(loc), ": dataset '", full_path(loc, path), "' exists");
  Handle ds(H5Dcreate2(loc, path.c_str(), file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT),
            H5Dclose);
  if (!ds.ok()) h5_fail(loc, "dataset", path, "cannot create");
  if (count == 0) return -1;
  if (H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    h5_fail(loc, "dataset", path, "cannot write");
  const haddr_t at = H5Dget_offset(ds);
  return at == HADDR_UNDEF ? -1 : (int64_t)at;
}

Handle open_attr(hid_t loc, const std::string& obj, const std::string& name) {
  quiet();
  Handle a(H5Aopen_by_name(loc, obj.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.ok()) h5_fail(loc, attr_kind(name), obj, "cannot open");
  return Handle(std::exchange(a.id, -1), H5Aclose);
}

template <typename T>
T read_scalar_attr(hid_t loc, const std::string& obj, const std::string& name, hid_t mem_type,
                   const char* as) {
  Handle a = open_attr(loc, obj, name);
  Handle space(H5Aget_space(a), H5Sclose);
  if (!space.ok() || H5Sget_simple_extent_npoints(space) != 1)
    h5_fail(loc, attr_kind(name), obj, "is not a single value");
  T v{};
  if (H5Aread(a, mem_type, &v) < 0)
    h5_fail(loc, attr_kind(name), obj, std::string("cannot read as ") + as);
  return v;
}

void write_scalar_attr(hid_t loc, const std::string& obj, const std::string& name, hid_t file_type,
                       hid_t mem_type, const void* v) {
  quiet();
  htri_t exists = H5Aexists_by_name(loc, obj.c_str(), name.c_str(), H5P_DEFAULT);
  if (exists < 0) h5_fail(loc, attr_kind(name), obj, "cannot open its object");
  if (exists > 0 && H5Adelete_by_name(loc, obj.c_str(), name.c_str(), H5P_DEFAULT) < 0)
    h5_fail(loc, attr_kind(name), obj, "cannot replace");
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate_by_name(loc, obj.c_str(), name.c_str(), file_type, space, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.ok()) h5_fail(loc, attr_kind(name), obj, "cannot create");
  if (H5Awrite(a, mem_type, v) < 0) h5_fail(loc, attr_kind(name), obj, "cannot write");
}

}  // namespace

// ---- H5File, H5Group ----

H5File H5File::open(const std::string& path, bool writable) {
  quiet();
  hid_t id = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    std::string why = last_h5_error();
    fail(path, ": cannot open HDF5 file", writable ? " for writing" : "",
         why.empty() ? "" : " (" + why + ")");
  }
  return H5File(id, path);
}

H5File H5File::create(const std::string& path, int64_t userblock) {
  quiet();
  Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  if (!fcpl.ok() || (userblock > 0 && H5Pset_userblock(fcpl, (hsize_t)userblock) < 0))
    fail(path, ": cannot set a user block of ", userblock, " bytes");
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  if (id < 0) {
    std::string why = last_h5_error();
    fail(path, ": cannot create HDF5 file", why.empty() ? "" : " (" + why + ")");
  }
  return H5File(id, path);
}

int H5File::fd() const {
  void* handle = nullptr;
  if (id_ < 0 || H5Fget_vfd_handle(id_, H5P_DEFAULT, &handle) < 0 || !handle) return -1;
  return *static_cast<int*>(handle);
}

H5File::H5File(H5File&& o) noexcept : id_(o.id_), path_(std::move(o.path_)) { o.id_ = -1; }

H5File& H5File::operator=(H5File&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) H5Fclose(id_);
    id_ = std::exchange(o.id_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

H5File::~H5File() {
  if (id_ >= 0) H5Fclose(id_);
}

void H5File::close() {
  if (id_ < 0) return;
  quiet();
  hid_t id = std::exchange(id_, -1);
  unsigned intent = 0;
  bool writable = H5Fget_intent(id, &intent) >= 0 && (intent & H5F_ACC_RDWR);
  bool ok = !writable || H5Fflush(id, H5F_SCOPE_LOCAL) >= 0;
  std::string why = ok ? "" : last_h5_error();
  ok = H5Fclose(id) >= 0 && ok;
  if (!ok) {
    if (why.empty()) why = last_h5_error();
    fail(path_, ": cannot write and close HDF5 file", why.empty() ? "" : " (" + why + ")");
  }
}

H5Group H5Group::open(hid_t loc, const std::string& path) {
  quiet();
  hid_t id = H5Gopen2(loc, path.c_str(), H5P_DEFAULT);
  if (id < 0) h5_fail(loc, "group", path, "cannot open");
  return H5Group(id);
}

H5Group H5Group::create(hid_t loc, const std::string& path) {
  quiet();
  if (h5_exists(loc, path)) return open(loc, path);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  if (!lcpl.ok() || H5Pset_create_intermediate_group(lcpl, 1) < 0)
    h5_fail(loc, "group", path, "cannot set up its creation");
  hid_t id = H5Gcreate2(loc, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) h5_fail(loc, "group", path, "cannot create");
  return H5Group(id);
}

H5Group& H5Group::operator=(H5Group&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) H5Gclose(id_);
    id_ = std::exchange(o.id_, -1);
  }
  return *this;
}

H5Group::~H5Group() {
  if (id_ >= 0) H5Gclose(id_);
}

// ---- queries ----

bool h5_exists(hid_t loc, const std::string& path) {
  quiet();
  if (path.empty() || path == "." || path == "/") return true;
  // H5Lexists needs every parent to exist, so check each prefix in turn.
  size_t pos = path[0] == '/' ? 1 : 0;
  for (;;) {
    size_t slash = path.find('/', pos);
    std::string prefix = path.substr(0, slash);
    if (slash != pos) {  // skip empty components ("a//b")
      if (H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
      if (H5Oexists_by_name(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    }
    if (slash == std::string::npos || slash + 1 == path.size()) return true;
    pos = slash + 1;
  }
}

std::vector<int64_t> h5_shape(hid_t loc, const std::string& path) {
  return OpenDataset(loc, path).shape;
}

std::vector<std::string> h5_list(hid_t loc, const std::string& group_path) {
  quiet();
  Handle g(H5Gopen2(loc, group_path.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) h5_fail(loc, "group", group_path, "cannot open");
  H5G_info_t info;
  if (H5Gget_info(g, &info) < 0) h5_fail(loc, "group", group_path, "cannot list");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) h5_fail(loc, "group", group_path, "cannot list");
    std::string s((size_t)n, '\0');
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, s.data(), (size_t)n + 1, H5P_DEFAULT);
    names.push_back(std::move(s));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ---- datasets ----

std::vector<double> h5_read_f64(hid_t loc, const std::string& path) {
  return read_dataset<double>(loc, path, H5T_NATIVE_DOUBLE, "f64");
}
std::vector<float> h5_read_f32(hid_t loc, const std::string& path) {
  return read_dataset<float>(loc, path, H5T_NATIVE_FLOAT, "f32");
}
std::vector<int64_t> h5_read_i64(hid_t loc, const std::string& path) {
  return read_dataset<int64_t>(loc, path, H5T_NATIVE_INT64, "i64");
}
int64_t h5_read_f32_into(hid_t loc, const std::string& path, float* dst, int64_t capacity) {
  OpenDataset d(loc, path);
  if (d.count <= capacity) d.read(loc, path, H5T_NATIVE_FLOAT, "f32", dst);
  return d.count;
}

int64_t h5_write_f32(hid_t loc, const std::string& path, const float* data,
                     const std::vector<int64_t>& shape) {
  return write_dataset(loc, path, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data, shape);
}
int64_t h5_write_f64(hid_t loc, const std::string& path, const double* data,
                     const std::vector<int64_t>& shape) {
  return write_dataset(loc, path, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, data, shape);
}
int64_t h5_write_i64(hid_t loc, const std::string& path, const int64_t* data,
                     const std::vector<int64_t>& shape) {
  return write_dataset(loc, path, H5T_NATIVE_INT64, H5T_STD_I64LE, data, shape);
}

// ---- attributes ----

bool h5_attr_exists(hid_t loc, const std::string& obj_path, const std::string& name) {
  quiet();
  return h5_exists(loc, obj_path) &&
         H5Aexists_by_name(loc, obj_path.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

double h5_read_attr_f64(hid_t loc, const std::string& obj_path, const std::string& name) {
  return read_scalar_attr<double>(loc, obj_path, name, H5T_NATIVE_DOUBLE, "f64");
}

int64_t h5_read_attr_i64(hid_t loc, const std::string& obj_path, const std::string& name) {
  return read_scalar_attr<int64_t>(loc, obj_path, name, H5T_NATIVE_INT64, "i64");
}

std::string h5_read_attr_str(hid_t loc, const std::string& obj_path, const std::string& name) {
  Handle a = open_attr(loc, obj_path, name);
  Handle type(H5Aget_type(a), H5Tclose);
  if (!type.ok() || H5Tget_class(type) != H5T_STRING)
    h5_fail(loc, attr_kind(name), obj_path, "is not a string");
  Handle space(H5Aget_space(a), H5Sclose);
  if (!space.ok() || H5Sget_simple_extent_npoints(space) != 1)
    h5_fail(loc, attr_kind(name), obj_path, "is not a single string");
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_cset(mem, H5Tget_cset(type));
  if (H5Tis_variable_str(type) > 0) {
    H5Tset_size(mem, H5T_VARIABLE);
    char* p = nullptr;
    if (H5Aread(a, mem, &p) < 0) h5_fail(loc, attr_kind(name), obj_path, "cannot read");
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  size_t size = H5Tget_size(type);
  H5Tset_size(mem, size);
  H5Tset_strpad(mem, H5T_STR_NULLPAD);
  std::string s(size, '\0');
  if (size > 0 && H5Aread(a, mem, s.data()) < 0)
    h5_fail(loc, attr_kind(name), obj_path, "cannot read");
  s.resize(std::min(s.find('\0'), s.size()));
  if (H5Tget_strpad(type) == H5T_STR_SPACEPAD) s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

void h5_write_attr_f64(hid_t loc, const std::string& obj_path, const std::string& name, double v) {
  write_scalar_attr(loc, obj_path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

void h5_write_attr_i64(hid_t loc, const std::string& obj_path, const std::string& name, int64_t v) {
  write_scalar_attr(loc, obj_path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

void h5_write_attr_str(hid_t loc, const std::string& obj_path, const std::string& name,
                       const std::string& v) {
  quiet();
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.ok() || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
    h5_fail(loc, attr_kind(name), obj_path, "cannot make a string type");
  const char* p = v.c_str();
  write_scalar_attr(loc, obj_path, name, type, type, &p);
}

std::vector<int64_t> h5_read_attr_i64s(hid_t loc, const std::string& obj_path,
                                       const std::string& name) {
  Handle a = open_attr(loc, obj_path, name);
  Handle space(H5Aget_space(a), H5Sclose);
  const hssize_t n = space.ok() ? H5Sget_simple_extent_npoints(space) : -1;
  if (n < 0 || n > 64) h5_fail(loc, attr_kind(name), obj_path, "is not a short list of integers");
  std::vector<int64_t> v((size_t)n);
  if (n > 0 && H5Aread(a, H5T_NATIVE_INT64, v.data()) < 0)
    h5_fail(loc, attr_kind(name), obj_path, "cannot read as i64");
  return v;
}

void h5_write_attr_i64s(hid_t loc, const std::string& obj_path, const std::string& name,
                        const std::vector<int64_t>& v) {
  quiet();
  htri_t exists = H5Aexists_by_name(loc, obj_path.c_str(), name.c_str(), H5P_DEFAULT);
  if (exists < 0) h5_fail(loc, attr_kind(name), obj_path, "cannot open its object");
  if (exists > 0 && H5Adelete_by_name(loc, obj_path.c_str(), name.c_str(), H5P_DEFAULT) < 0)
    h5_fail(loc, attr_kind(name), obj_path, "cannot replace");
  const hsize_t dims[1] = {(hsize_t)v.size()};
  Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  Handle a(H5Acreate_by_name(loc, obj_path.c_str(), name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.ok()) h5_fail(loc, attr_kind(name), obj_path, "cannot create");
  if (H5Awrite(a, H5T_NATIVE_INT64, v.data()) < 0)
    h5_fail(loc, attr_kind(name), obj_path, "cannot write");
}

}  // namespace zt
