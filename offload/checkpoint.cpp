// checkpoint.cpp: writing, verifying, finding and loading checkpoints (SPEC section 5 layout;
// checkpoint.h). The rank files' checksums are in checksum.cpp.
#include "offload/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "model/qat.h"
#include "offload/checksum.h"
#include "offload/export.h"
#include "offload/hdf5.h"
#include "offload/safetensors.h"
#include "parallel/comm/gather.h"
#include "runtime/error.h"
#include "runtime/json_num.h"
#include "runtime/split.h"

namespace zt {
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "zerotrain-checkpoint";
constexpr int kVersion = 1;

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", (long long)step);
  return buf;
}

// Writes `text` to path via a temporary file and a rename; `durable` also fsyncs it first.
void write_file_atomic(const fs::path& path, const std::string& text, bool durable = true) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("cannot write '", tmp.string(), "'");
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
              (!durable || fsync(fileno(f)) == 0);
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) fail("cannot write '", tmp.string(), "' (disk full?)");
  }
  fs::rename(tmp, path);
}

void fsync_file(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open '", p.string(), "' to sync it to disk");
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) fail("cannot sync '", p.string(), "' to disk");
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("cannot read '", p.string(), "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool is_complete_step_dir(const fs::path& p) {
  return fs::is_directory(p) && p.filename().string().rfind("step_", 0) == 0 &&
         p.filename().string().find(".tmp") == std::string::npos && fs::exists(p / "COMPLETE");
}

void check_config_matches(const nlohmann::json& saved, const ModelConfig& cfg,
                          const std::string& where) {
  nlohmann::json ours = cfg;
  for (auto it = ours.begin(); it != ours.end(); ++it) {
    if (it.key() == "qat") continue;  // QAT may start (or change) at a resume: qat_scales_match
    if (!saved.contains(it.key()) || saved[it.key()] != it.value())
      fail("checkpoint '", where, "' has ", it.key(), " = ",
           saved.contains(it.key()) ? saved[it.key()].dump() : "(missing)", " but this run has ",
           it.value().dump(), ": it belongs to a different model");
  }
}

}  // namespace

UnitSource unit_source(const UnitVectors& params, const UnitVectors& m, const UnitVectors& v) {
  return [&params, &m, &v](int u) { return UnitState{params[u].data(), m[u].data(), v[u].data()}; };
}

std::string rank_file_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank_%05d.h5", rank);
  return name;
}

std::string checkpoint_tmp_dir(const std::string& ckpt_dir, int64_t step) {
  return (fs::path(ckpt_dir) / (step_name(step) + ".tmp")).string();
}

void prepare_checkpoint_dir(const std::string& ckpt_dir, int64_t step) {
  std::error_code ec;
  fs::create_directories(ckpt_dir, ec);
  if (ec) fail("cannot create --ckpt-dir '", ckpt_dir, "': ", ec.message());
  const fs::path tmp = checkpoint_tmp_dir(ckpt_dir, step);
  fs::remove_all(tmp);  // the leftovers of an attempt that died
  fs::create_directories(tmp, ec);
  if (ec) fail("cannot create '", tmp.string(), "': ", ec.message());
}

RankFile write_rank_file(const std::string& tmp_dir, int rank, int world, const ParamTable& table,
                         const UnitSource& state, int64_t step, bool replicated) {
  // The stored elements are the tensors' bytes as they are in memory (f32 little-endian), so the
  // pages holding them are hashed from memory.
  static_assert(std::endian::native == std::endian::little);
  constexpr int64_t kWriteback = 8 << 20;  // start writing to disk every this many bytes
  const std::string name = rank_file_name(rank);
  const fs::path path = fs::path(tmp_dir) / name;
  DataPageHasher hasher;
  {
    H5File f = H5File::create(path.string());
    const int fd = f.fd();
    int64_t unflushed = 0;
    for (int u = 0; u < table.num_units(); ++u) {
      hasher.wait_idle();  // the previous unit's data may go now
      const UnitState us = state(u);
      if (!us.held) continue;
      int64_t next = 0;  // with us.pieces: where the next parameter's piece starts
      for (const ParamSpec& p : table.params) {
        if (p.unit != u) continue;
        // This rank's even piece of the (slice of the) flattened tensor: in the unit's full state
        // at its place, or next in line among the rank's pieces.
        const auto [off, n] = even_piece(p.numel, us.parts, us.index);
        const int64_t at = us.pieces ? next : p.offset + off;
        next += n;
        const bool sliced = p.numel != p.full_numel;
        if (n == 0 || (!sliced && !replicated)) continue;  // another rank has the whole tensor
        const std::vector<int64_t> shape =
            n == p.full_numel ? p.full_shape : std::vector<int64_t>{n};
        for (auto [group, src] : {std::pair{"params/", us.p}, std::pair{"optim/exp_avg/", us.m},
                                  std::pair{"optim/exp_avg_sq/", us.v}}) {
          const std::string ds = group + p.name;
          const float* data = src + at;
          hasher.add(h5_write_f32(f, ds, data, shape), data, n * (int64_t)sizeof(float));
          h5_write_attr_i64(f, ds, "logical_offset", off);
          if (sliced)  // where the slice sits in the tensor seen as [rows, cols]
            h5_write_attr_i64s(f, ds, "slice",
                               {p.row0, p.col0, view_rows(p.shape), view_cols(p.shape)});
        }
        // Start writeback of what is written so far (fsync below still waits for all of it), so
        // the disk works while the rest is written instead of only afterwards.
        unflushed += 3 * n * (int64_t)sizeof(float);
        if (fd >= 0 && unflushed >= kWriteback) {
          ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
          unflushed = 0;
        }
      }
    }
    hasher.wait_idle();
    h5_write_attr_i64(f, "/", "rank", rank);
    h5_write_attr_i64(f, "/", "world", world);
    h5_write_attr_i64(f, "/", "step", step);
    f.close();
  }
  // The pages not hashed from memory (HDF5's metadata around the data) are read back from the
  // page cache while fsync puts the file on disk (before COMPLETE can name it).
  std::future<uint64_t> sum =
      std::async(std::launch::async, [&] { return hasher.finish(path.string()); });
  fsync_file(path);
  return {name, (uint64_t)fs::file_size(path), sum.get()};
}

std::string finish_checkpoint(const std::string& ckpt_dir, const std::vector<RankFile>& files,
                              const ModelConfig& cfg, const TrainState& st, nlohmann::json layout,
                              int keep_last) {
  const fs::path root(ckpt_dir), tmp_dir = checkpoint_tmp_dir(ckpt_dir, st.step);
  const std::string name = step_name(st.step);
  const fs::path final_dir = root / name;
  nlohmann::json ptable = nlohmann::json::array();
  for (const ParamSpec& p : build_param_table(cfg).params)  // every tensor, whoever wrote it
    ptable.push_back(
        {{"name", p.name},
         {"shape", p.full_shape},
         {"tensor_parallel", split_name(p.split)},
         {"partition",
          "even pieces of the flattened tensor, or of each tensor-parallel slice of it (the "
          "datasets' attribute slice), over the rank files; attribute logical_offset"}});
  nlohmann::json jfiles = nlohmann::json::array();
  for (const RankFile& f : files)
    jfiles.push_back({{"name", f.name}, {"bytes", f.bytes}, {"page_hash64", f.checksum}});
  nlohmann::json manifest = {{"format", kFormat},   {"version", kVersion}, {"step", st.step},
                             {"tokens", st.tokens}, {"config", cfg},       {"train", st.train},
                             {"layout", layout},    {"params", ptable},    {"files", jfiles}};
  if (!st.build.is_null()) manifest["build"] = st.build;
  write_file_atomic(tmp_dir / "manifest.json", manifest.dump(2) + "\n");
  // The rank files and the manifest are on disk now. COMPLETE and `latest` need not be synced:
  // losing either in a crash only makes --resume fall back to scanning (or to the previous
  // checkpoint); neither can make a damaged checkpoint look whole.
  write_file_atomic(tmp_dir / "COMPLETE", "complete\n", /*durable=*/false);
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a re-run of the same step replaces it
  fs::rename(tmp_dir, final_dir);
  write_file_atomic(root / "latest", name + "\n", /*durable=*/false);

  if (keep_last > 0) {  // only now that a newer one is complete
    std::vector<fs::path> steps;
    for (const auto& e : fs::directory_iterator(root))
      if (is_complete_step_dir(e.path())) steps.push_back(e.path());
    std::sort(steps.begin(), steps.end());
    for (size_t i = 0; i + (size_t)keep_last < steps.size(); ++i)
      if (steps[i] != final_dir) fs::remove_all(steps[i]);
  }
  return final_dir.string();
}

std::string save_checkpoint(Communicator& world, const std::string& ckpt_dir,
                            const ModelConfig& cfg, const ParamTable& table,
                            const UnitSource& state, const TrainState& st,
                            const nlohmann::json& layout, int keep_last, bool replicated) {
  const bool root = world.rank() == 0;
  if (root) prepare_checkpoint_dir(ckpt_dir, st.step);
  world.barrier().wait();
  const RankFile mine = write_rank_file(checkpoint_tmp_dir(ckpt_dir, st.step), world.rank(),
                                        world.size(), table, state, st.step, replicated);
  const std::vector<uint64_t> sums =
      gather_values(world, std::vector<uint64_t>{mine.bytes, mine.checksum});
  std::string final_dir;
  if (root) {
    std::vector<RankFile> files;
    for (int r = 0; r < world.size(); ++r)
      files.push_back({rank_file_name(r), sums[2 * r], sums[2 * r + 1]});
    final_dir = finish_checkpoint(ckpt_dir, files, cfg, st, layout, keep_last);
  }
  world.barrier().wait();  // nobody runs ahead of a failed write
  return root ? final_dir : (fs::path(ckpt_dir) / step_name(st.step)).string();
}

namespace {
// Every rank file the manifest lists exists, has its size and passes its checksum.
void verify_files(const fs::path& d, const nlohmann::json& manifest) {
  for (const auto& f : manifest.at("files")) {
    fs::path p = d / f.at("name").get<std::string>();
    if (!fs::exists(p)) fail("checkpoint file '", p.string(), "' is missing");
    if (fs::file_size(p) != f.at("bytes").get<uint64_t>())
      fail("checkpoint file '", p.string(), "' has ", fs::file_size(p), " bytes, manifest says ",
           f.at("bytes").get<uint64_t>(), " (truncated?)");
    // page_hash64: file_checksum; hash64: the whole-file checksum of older checkpoints.
    const bool paged = f.contains("page_hash64");
    if (!paged && !f.contains("hash64"))
      fail("checkpoint manifest '", (d / "manifest.json").string(), "' has no checksum for '",
           p.string(), "'");
    const uint64_t want = f.at(paged ? "page_hash64" : "hash64").get<uint64_t>();
    if ((paged ? file_checksum(p.string()) : file_checksum_v1(p.string())) != want)
      fail("checkpoint file '", p.string(), "' fails its checksum (damaged)");
  }
}
}  // namespace

namespace {
// What the loaders take from a manifest, checked once where it is read: a damaged one (edited by
// hand, a bad disk) is one error naming the file and the field, never an exception from inside a
// loader.
void check_manifest(const nlohmann::json& j, const fs::path& file) {
  const std::string where = cat("checkpoint manifest '", file.string(), "'");
  try {
    for (const auto& f : j.at("files")) {
      const std::string name = f.at("name").get<std::string>();
      if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        fail(where, " names '", name, "', not a file of the checkpoint's directory");
      json_whole<uint64_t>(f.at("bytes"), "bytes");
      if (f.contains("page_hash64")) json_whole<uint64_t>(f.at("page_hash64"), "page_hash64");
      if (f.contains("hash64")) json_whole<uint64_t>(f.at("hash64"), "hash64");
    }
    if (json_whole<int64_t>(j.at("step"), "step") < 0 ||
        json_whole<int64_t>(j.at("tokens"), "tokens") < 0)
      fail(where, " has a negative step or token count");
    const ModelConfig cfg = j.at("config").get<ModelConfig>();
    try {
      cfg.validate();
    } catch (const Error& e) {
      fail(where, " holds a model configuration that cannot be built: ", e.what());
    }
    if (j.contains("train") && !j.at("train").is_null()) {  // null: written outside `train`
      const nlohmann::json& t = j.at("train");
      if (!t.is_object()) fail(where, ": 'train' is not an object");
      for (const auto& k : t.value("skip_steps", nlohmann::json::array()))
        json_whole<int64_t>(k, "skip_steps");
      if (t.contains("data") && t.at("data").is_object() && t.at("data").contains("files"))
        for (const auto& f : t.at("data").at("files")) f.at("name").get<std::string>();
    }
    if (j.contains("params"))
      for (const auto& p : j.at("params")) {
        p.at("name").get<std::string>();
        if (!p.at("shape").is_array())
          fail(where, ": the shape of ", p.at("name"), " is not a list");
        for (const auto& d : p.at("shape")) json_whole<int64_t>(d, "shape");
      }
  } catch (const nlohmann::json::exception& e) {
    fail(where, " is damaged: ", e.what());
  }
}
}  // namespace

nlohmann::json read_manifest(const std::string& step_dir, bool verify) {
  fs::path d(step_dir);
  if (!fs::exists(d / "COMPLETE"))
    fail("checkpoint '", step_dir, "' is incomplete (no COMPLETE marker)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(d / "manifest.json"));
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint manifest '", (d / "manifest.json").string(), "' is damaged: ", e.what());
  }
  if (!j.is_object() || !j.contains("format") || j.at("format") != kFormat)
    fail("'", (d / "manifest.json").string(), "' is not a zerotrain checkpoint manifest");
  if (!j.contains("files") || !j.at("files").is_array())
    fail("checkpoint manifest '", (d / "manifest.json").string(), "' lists no rank files");
  check_manifest(j, d / "manifest.json");
  if (verify) verify_files(d, j);
  return j;
}

std::string find_latest_checkpoint(const std::string& ckpt_dir, bool report) {
  fs::path root(ckpt_dir);
  if (!fs::is_directory(root)) return "";
  std::vector<fs::path> steps;
  for (const auto& e : fs::directory_iterator(root)) {
    std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos)
      steps.push_back(e.path());
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const fs::path& p : steps) {
    try {
      read_manifest(p.string());
      return p.string();
    } catch (const Error& e) {
      if (report)
        std::fprintf(stderr, "zerotrain: skipping checkpoint %s: %s\n", p.c_str(), e.what());
    }
  }
  return "";
}

std::string resolve_checkpoint(const std::string& path) {
  fs::path p(path);
  if (!fs::exists(p)) fail("checkpoint '", path, "' does not exist");
  if (fs::exists(p / "manifest.json") || fs::exists(p / "COMPLETE")) return p.string();
  if (fs::exists(p / "latest")) {
    std::string name = read_text(p / "latest");
    name.erase(name.find_last_not_of(" \n\r\t") + 1);
    if (fs::exists(p / name / "COMPLETE")) return (p / name).string();
  }
  std::string found = find_latest_checkpoint(path);
  if (found.empty()) fail("no complete checkpoint under '", path, "'");
  return found;
}

namespace {

// Where a piece of elements [off, off + n) of a tensor's slice lands in the whole tensor: the
// slice (row0, col0, rows, cols) of the tensor seen as [rows, cols] with `full_cols` columns.
// Calls f(first element of the run in the piece, its index in the tensor, run length).
template <typename F>
void for_slice_runs(const std::vector<int64_t>& slice, int64_t full_cols, int64_t off, int64_t n,
                    F&& f) {
  const int64_t row0 = slice[0], col0 = slice[1], cols = slice[3];
  for (int64_t k = 0; k < n;) {
    const int64_t e = off + k, r = e / cols, c = e % cols, len = std::min(n - k, cols - c);
    f(k, (row0 + r) * full_cols + col0 + c, len);
    k += len;
  }
}

}  // namespace

void read_checkpoint_tensor(std::vector<H5File>& files, const std::string& group,
                            const ParamSpec& t, float* dst, const std::string& step_dir) {
  const std::string ds = group + t.name;
  std::vector<float> piece;
  int64_t covered = 0;
  for (H5File& f : files) {
    if (!h5_exists(f, ds)) continue;
    const int64_t off = h5_read_attr_i64(f, ds, "logical_offset");
    auto bad = [&](int64_t n, int64_t of) {
      fail("checkpoint file '", f.path(), "' dataset ", ds, " (", n, " elements at offset ", off,
           ") does not fit ", t.name, "'s ", of);
    };
    int64_t n = 0;
    if (!h5_attr_exists(f, ds, "slice")) {  // a piece of the whole tensor
      const int64_t room = off >= 0 && off <= t.numel ? t.numel - off : -1;
      n = h5_read_f32_into(f, ds, dst + std::max<int64_t>(off, 0), room);
      if (n > room) bad(n, t.numel);
    } else {  // a piece of a tensor-parallel slice: scattered into the tensor run by run
      const std::vector<int64_t> sl = h5_read_attr_i64s(f, ds, "slice");
      const int64_t rows = view_rows(t.shape), cols = view_cols(t.shape);
      if (sl.size() != 4 || sl[0] < 0 || sl[1] < 0 || sl[2] < 1 || sl[3] < 1 ||
          sl[0] + sl[2] > rows || sl[1] + sl[3] > cols)
        fail("checkpoint file '", f.path(), "' dataset ", ds, " has a slice outside ", t.name);
      const int64_t slice_numel = sl[2] * sl[3];
      const int64_t room = off >= 0 && off <= slice_numel ? slice_numel - off : -1;
      piece.resize(std::max<int64_t>(room, 1));
      n = h5_read_f32_into(f, ds, piece.data(), room);
      if (n > room) bad(n, slice_numel);
      for_slice_runs(sl, cols, off, n, [&](int64_t k, int64_t at, int64_t len) {
        std::copy(piece.begin() + k, piece.begin() + k + len, dst + at);
      });
    }
    covered += n;
  }
  if (covered != t.numel)
    fail("checkpoint '", step_dir, "' holds ", covered, " of the ", t.numel, " elements of ",
         t.name, group == "params/" ? "" : cat(" (", group, ")"));
}

namespace {

// Unit u's tensors (whole tensors: a table without a tensor slice, with every expert or a rank's)
// from the rank files (each holds pieces at their logical offsets; together they cover every
// tensor) into p, m, v (the unit's logical buffer each, units[u].full_numel; m and v may be null).
// Without `scales` the QAT step sizes are left as they are (zero): the checkpoint has other ones.
void read_unit(std::vector<H5File>& files, const ParamTable& table, int u, float* p, float* m,
               float* v, bool scales, const std::string& step_dir) {
  for (const ParamSpec& t : table.params) {
    if (t.unit != u || (t.qweight >= 0 && !scales)) continue;
    for (auto [group, dst] : {std::pair{"params/", p}, std::pair{"optim/exp_avg/", m},
                              std::pair{"optim/exp_avg_sq/", v}})
      if (dst) read_checkpoint_tensor(files, group, t, dst + t.full_offset, step_dir);
  }
}

// Opens the rank files of a checkpoint of `cfg`, runs read(files) (with `verify`, while a second
// thread checks the files' checksums) and fills `st`.
template <typename F>
void read_checkpoint(const std::string& step_dir, const ModelConfig& cfg, TrainState* st, F read,
                     bool verify = true) {
  nlohmann::json man = read_manifest(step_dir, /*verify=*/false);
  check_config_matches(man.at("config"), cfg, step_dir);
  const bool scales = qat_scales_match(man.at("config").get<ModelConfig>().qat, cfg.qat);
  // The checksums are verified on a second thread while the tensors are read (both pull the same
  // pages from disk once); a damaged file is the error reported even when a read failed first.
  std::future<void> verified;
  if (verify)
    verified = std::async(std::launch::async, [&] { verify_files(fs::path(step_dir), man); });
  try {
    std::vector<H5File> files;
    for (const auto& entry : man.at("files"))
      files.push_back(
          H5File::open((fs::path(step_dir) / entry.at("name").get<std::string>()).string()));
    read(files, scales);
  } catch (...) {
    if (verified.valid()) verified.get();
    throw;
  }
  if (verified.valid()) verified.get();
  if (st) {
    st->step = man.at("step");
    st->tokens = man.at("tokens");
    // A checkpoint written outside `train` (bench io) has no train state: an empty one.
    const nlohmann::json train = man.value("train", nlohmann::json());
    st->train = train.is_object() ? train : nlohmann::json::object();
  }
}

}  // namespace

void load_checkpoint(const std::string& step_dir, const ModelConfig& cfg, const ParamTable& table,
                     UnitVectors& params, UnitVectors* m, UnitVectors* v, TrainState* st) {
  read_checkpoint(step_dir, cfg, st, [&](std::vector<H5File>& files, bool scales) {
    const int U = table.num_units();
    params.assign(U, {});
    if (m) m->assign(U, {});
    if (v) v->assign(U, {});
    for (int u = 0; u < U; ++u) {
      const int64_t n = table.units[u].full_numel;
      params[u].assign(n, 0.0f);
      if (m) (*m)[u].assign(n, 0.0f);
      if (v) (*v)[u].assign(n, 0.0f);
      read_unit(files, table, u, params[u].data(), m ? (*m)[u].data() : nullptr,
                v ? (*v)[u].data() : nullptr, scales, step_dir);
    }
  });
}

void load_checkpoint(const std::string& step_dir, const ModelConfig& cfg, const ParamTable& table,
                     const UnitSink& sink, bool moments, TrainState* st, bool verify,
                     const std::vector<bool>& units) {
  read_checkpoint(
      step_dir, cfg, st,
      [&](std::vector<H5File>& files, bool scales) {
        std::vector<float> up, um, uv;  // one unit at a time
        for (int u = 0; u < table.num_units(); ++u) {
          if (!units.empty() && !units[u]) continue;
          const int64_t n = table.units[u].full_numel;
          up.assign(n, 0.0f);
          um.assign(moments ? n : 0, 0.0f);
          uv.assign(moments ? n : 0, 0.0f);
          read_unit(files, table, u, up.data(), moments ? um.data() : nullptr,
                    moments ? uv.data() : nullptr, scales, step_dir);
          sink(u, up, moments ? &um : nullptr, moments ? &uv : nullptr);
        }
      },
      verify);
}

static bool is_h5_file(const std::string& path) {
  return fs::is_regular_file(path) && fs::path(path).extension() == ".h5";
}

static bool is_safetensors_file(const std::string& path) {
  return fs::is_regular_file(path) && fs::path(path).extension() == ".safetensors";
}

static ModelConfig safetensors_config(const SafetensorsFile& f) {
  const nlohmann::json& meta = f.metadata();
  if (!meta.contains("config") || !meta["config"].is_string())
    fail("'", f.path(), "' is not a zerotrain model export (no config in __metadata__)");
  const nlohmann::json c = nlohmann::json::parse(meta["config"].get<std::string>(), nullptr, false);
  if (!c.is_object()) fail("'", f.path(), "' has a config that is not a JSON object");
  try {
    return c.get<ModelConfig>();
  } catch (const nlohmann::json::exception& e) {
    fail("'", f.path(), "' has a damaged config: ", e.what());
  }
}

// A model.safetensors export: F32 tensors by name; a quantized export's I8 weights become the
// integer levels of an integer-mode model (QatState::integer), their `.scale` its step sizes (the
// float weights of those linears are then not read: every pass takes the levels).
static void load_safetensors(const std::string& path, Model& model) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  const ParamTable& t = model.table;
  bool integer = false;
  for (size_t i = 0; i < t.params.size(); ++i) {
    const ParamSpec& p = t.params[i];
    float* dst = model.unit_params[p.unit] + p.offset;
    const SafeTensor* e = f.find(p.name);
    if (p.qweight >= 0 && !e) {  // a quantized export: the scales of its weight
      const ParamSpec& w = t.params[p.qweight];
      f.read(w.name + ".scale", "F32", p.shape, dst);
      continue;
    }
    if (p.qscale >= 0 && e && e->dtype == "I8") {
      std::vector<int8_t>& lv = model.qat.level[i];
      lv.resize((size_t)p.numel);
      f.read(p.name, "I8", p.shape, lv.data());
      integer = true;
      continue;
    }
    f.read(p.name, "F32", p.shape, dst);
  }
  model.qat.integer = integer;
  if (integer) {  // every quantized weight as levels, packed for the fastest integer kernel here
    model.qat.packed.assign(t.params.size(), {});
    for (size_t i = 0; i < t.params.size(); ++i) {
      const ParamSpec& p = t.params[i];
      if (p.qscale < 0) continue;
      if (model.qat.level[i].empty())
        fail("'", path, "' holds some quantized weights as I8 but ", p.name, " as F32");
      model.qat.packed[i] = pack_int8_weight(model.qat.level[i].data(), (int)p.shape[0],
                                             (int)p.shape[1], qat_group(t, p));
    }
  }
  int64_t step = 0;
  if (f.metadata().contains("step")) {
    const nlohmann::json& v = f.metadata()["step"];
    char* end = nullptr;
    const std::string text = v.is_string() ? v.get<std::string>() : "";
    step = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || step < 0)
      fail("'", path, "' has a step in __metadata__ that is not a count: ", v.dump());
  }
  model.qat.active = integer || qat_trained_at(model.cfg.qat, step);
}

ModelConfig checkpoint_model_config(const std::string& path) {
  if (is_safetensors_file(path)) return safetensors_config(SafetensorsFile::open(path));
  if (is_h5_file(path)) {
    verify_h5_export(path);
    H5File f = H5File::open(path);
    if (!h5_attr_exists(f, "/", "config"))
      fail("'", path, "' is not a zerotrain model export (no config attribute)");
    const nlohmann::json c =
        nlohmann::json::parse(h5_read_attr_str(f, "/", "config"), nullptr, false);
    if (!c.is_object()) fail("'", path, "' has a config that is not a JSON object");
    try {
      return c.get<ModelConfig>();
    } catch (const nlohmann::json::exception& e) {
      fail("'", path, "' has a damaged config: ", e.what());
    }
  }
  return read_manifest(resolve_checkpoint(path)).at("config").get<ModelConfig>();
}

void load_model_weights(const std::string& path, Model& model) {
  model.qat.keep = true;  // the weights stay as loaded: fake quant of them once
  if (model.cfg.qat.on()) model.qat.level.assign(model.table.params.size(), {});
  if (is_safetensors_file(path)) {
    load_safetensors(path, model);
    return;
  }
  if (!is_h5_file(path)) {
    UnitVectors params;
    TrainState st;
    load_checkpoint(resolve_checkpoint(path), model.cfg, model.table, params, nullptr, nullptr,
                    &st);
    for (int u = 0; u < model.table.num_units(); ++u)
      std::copy(params[u].begin(), params[u].end(), model.unit_params[u]);
    model.qat.active = qat_trained_at(model.cfg.qat, st.step);
    return;
  }
  verify_h5_export(path);
  H5File f = H5File::open(path);
  for (const ParamSpec& p : model.table.params) {
    std::string ds = "params/" + p.name;
    if (h5_shape(f, ds) != p.shape) fail("'", path, "' dataset ", ds, " has the wrong shape");
    std::vector<float> x = h5_read_f32(f, ds);
    std::copy(x.begin(), x.end(), model.unit_params[p.unit] + p.offset);
  }
  const int64_t step = h5_attr_exists(f, "/", "step") ? h5_read_attr_i64(f, "/", "step") : 0;
  model.qat.active = qat_trained_at(model.cfg.qat, step);
}

}  // namespace zt
