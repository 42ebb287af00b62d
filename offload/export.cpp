// export.cpp: checkpoint → model.h5 / model.safetensors, one tensor in memory at a time.
#include "offload/export.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "offload/checkpoint.h"
#include "offload/hdf5.h"
#include "runtime/error.h"

namespace zt {
namespace fs = std::filesystem;

namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this writer copies host floats as they are");

// The checkpoint's rank files, opened once; every tensor is assembled from the pieces they hold
// (read_checkpoint_tensor: any layout, any tensor-parallel slicing).
struct ShardSources {
  std::string step_dir;
  mutable std::vector<H5File> files;
};

ShardSources open_sources(const std::string& step_dir, const nlohmann::json& manifest) {
  ShardSources s{step_dir, {}};
  for (const auto& f : manifest.at("files"))
    s.files.push_back(
        H5File::open((fs::path(step_dir) / f.at("name").get<std::string>()).string()));
  if (s.files.empty()) fail("checkpoint '", step_dir, "' lists no rank files");
  return s;
}

std::vector<float> read_full_param(const ShardSources& src, const ParamSpec& p) {
  std::vector<float> full(p.numel);
  read_checkpoint_tensor(src.files, "params/", p, full.data(), src.step_dir);
  return full;
}

// The parameter table of the checkpoint's model, checked against the manifest's own table.
ParamTable checkpoint_table(const std::string& step_dir, const nlohmann::json& man,
                            const ModelConfig& cfg) {
  ParamTable table = build_param_table(cfg);
  if (!man.contains("params")) return table;
  const auto& listed = man.at("params");
  if (listed.size() != table.params.size())
    fail("checkpoint '", step_dir, "' lists ", listed.size(), " parameters, its config has ",
         table.params.size());
  for (const auto& e : listed) {
    const std::string name = e.at("name");
    const int i = table.find(name);
    if (i < 0) fail("checkpoint '", step_dir, "' lists unknown parameter ", name);
    if (e.at("shape").get<Shape>() != table.params[i].shape)
      fail("checkpoint '", step_dir, "' lists ", name, " with shape ", e.at("shape").dump(),
           ", its config says ", shape_str(table.params[i].shape));
  }
  return table;
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    fail("cannot write '", path, "': ", std::strerror(err));
  }
  ::close(fd);
}

void write_h5(const std::string& tmp, const ShardSources& src, const ParamTable& table,
              const nlohmann::json& cfg_json, int64_t step, int64_t tokens) {
  H5File out = H5File::create(tmp);
  h5_write_attr_str(out, "/", "config", cfg_json.dump());
  for (const auto& [key, v] : cfg_json.items()) {
    if (v.is_boolean())
      h5_write_attr_i64(out, "/", key, v.get<bool>() ? 1 : 0);
    else if (v.is_number_integer())
      h5_write_attr_i64(out, "/", key, v.get<int64_t>());
    else if (v.is_number())
      h5_write_attr_f64(out, "/", key, v.get<double>());
    else if (v.is_string())
      h5_write_attr_str(out, "/", key, v.get<std::string>());
  }
  h5_write_attr_i64(out, "/", "step", step);
  h5_write_attr_i64(out, "/", "tokens", tokens);
  for (const ParamSpec& p : table.params) {
    std::vector<float> x = read_full_param(src, p);
    h5_write_f32(out, "params/" + p.name, x.data(), p.shape);
  }
  out.close();
  fsync_path(tmp);
}

void write_safetensors(const std::string& tmp, const std::string& out_name, const ShardSources& src,
                       const ParamTable& table, const nlohmann::json& metadata) {
  const std::string header = safetensors_header(table, metadata);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write '", out_name, "': ", std::strerror(errno));
  auto put = [&](const void* data, size_t bytes) {
    if (std::fwrite(data, 1, bytes, f) != bytes) {
      int err = errno;
      std::fclose(f);
      fail("cannot write '", out_name, "': ", std::strerror(err), " (disk full?)");
    }
  };
  unsigned char len[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
  put(len, sizeof len);
  put(header.data(), header.size());
  for (const ParamSpec& p : table.params) {
    try {
      std::vector<float> x = read_full_param(src, p);
      put(x.data(), x.size() * sizeof(float));
    } catch (...) {
      std::fclose(f);
      throw;
    }
  }
  const bool ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok)
    fail("cannot write '", out_name, "': ", std::strerror(err), " (disk full?)");
}

}  // namespace

std::string safetensors_header(const ParamTable& table, const nlohmann::json& metadata) {
  nlohmann::ordered_json h;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [key, v] : metadata.items()) {
    ZT_CHECK(v.is_string(), "safetensors metadata value of '", key, "' is not a string");
    meta[key] = v.get<std::string>();
  }
  h["__metadata__"] = meta;
  int64_t begin = 0;
  for (const ParamSpec& p : table.params) {
    const int64_t end = begin + p.numel * (int64_t)sizeof(float);
    h[p.name] = {{"dtype", "F32"}, {"shape", p.shape}, {"data_offsets", {begin, end}}};
    begin = end;
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

ExportSummary export_model(const std::string& ckpt, const std::string& out) {
  const std::string ext = fs::path(out).extension().string();
  if (ext != ".h5" && ext != ".safetensors")
    fail("--out '", out, "' must end in .h5 or .safetensors");
  if (fs::is_directory(out)) fail("--out '", out, "' is a directory");

  ExportSummary s;
  s.step_dir = resolve_checkpoint(ckpt);
  const nlohmann::json man = read_manifest(s.step_dir);  // COMPLETE and checksums
  const nlohmann::json cfg_json = man.at("config");
  const ModelConfig cfg = cfg_json.get<ModelConfig>();
  const ParamTable table = checkpoint_table(s.step_dir, man, cfg);
  s.format = ext.substr(1);
  s.step = man.value("step", int64_t{0});
  s.tokens = man.value("tokens", int64_t{0});
  s.tensors = (int64_t)table.params.size();
  s.elements = table.total_numel();
  const ShardSources src = open_sources(s.step_dir, man);

  // A hidden temporary beside --out (same file system, so the rename is atomic).
  const fs::path out_path(out);
  std::string tmp_name = zt::cat(".", out_path.filename().string(), ".tmp.", ::getpid());
  const fs::path tmp_path = out_path.parent_path() / tmp_name;
  const std::string tmp = tmp_path.string();
  {
    FILE* probe = std::fopen(tmp.c_str(), "wb");
    if (!probe) fail("cannot write '", out, "': ", std::strerror(errno));
    std::fclose(probe);
  }
  try {
    if (s.format == "h5") {
      write_h5(tmp, src, table, cfg_json, s.step, s.tokens);
    } else {
      const nlohmann::json meta = {{"format", "pt"},
                                   {"config", cfg_json.dump()},
                                   {"step", std::to_string(s.step)},
                                   {"tokens", std::to_string(s.tokens)}};
      write_safetensors(tmp, out, src, table, meta);
    }
    std::error_code ec;
    fs::rename(tmp_path, out_path, ec);
    if (ec) fail("cannot write '", out, "': ", ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp_path, ignored);
    throw;
  }
  return s;
}

}  // namespace zt
