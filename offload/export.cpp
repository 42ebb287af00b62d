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
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "model/qat.h"
#include "offload/checkpoint.h"
#include "offload/checksum.h"
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
  H5File out = H5File::create(tmp, kH5ExportUserBlock);
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
  seal_h5_export(tmp);
  fsync_path(tmp);
}

// One tensor of a safetensors file: its header entry and, when written, its bytes.
struct SafeEntry {
  std::string name, dtype;
  Shape shape;
  int64_t elem_bytes;
  std::function<std::vector<char>()> bytes;
};

std::string header_of(const std::vector<SafeEntry>& entries, const nlohmann::json& metadata) {
  nlohmann::ordered_json h;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [key, v] : metadata.items()) {
    ZT_CHECK(v.is_string(), "safetensors metadata value of '", key, "' is not a string");
    meta[key] = v.get<std::string>();
  }
  h["__metadata__"] = meta;
  int64_t begin = 0;
  for (const SafeEntry& e : entries) {
    const int64_t end = begin + shape_numel(e.shape) * e.elem_bytes;
    h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {begin, end}}};
    begin = end;
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

template <typename T>
std::vector<char> as_bytes(const std::vector<T>& x) {
  const char* p = reinterpret_cast<const char*>(x.data());
  return std::vector<char>(p, p + x.size() * sizeof(T));
}

// Every tensor of `table` as F32, read from the checkpoint.
std::vector<SafeEntry> f32_entries(const ShardSources& src, const ParamTable& table) {
  std::vector<SafeEntry> e;
  for (const ParamSpec& p : table.params)
    e.push_back(
        {p.name, "F32", p.shape, 4, [&src, &p] { return as_bytes(read_full_param(src, p)); }});
  return e;
}

void write_safetensors(const std::string& tmp, const std::string& out_name,
                       const std::vector<SafeEntry>& entries, const nlohmann::json& metadata) {
  const std::string header = header_of(entries, metadata);
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
  for (const SafeEntry& e : entries) {
    try {
      const std::vector<char> x = e.bytes();
      ZT_CHECK((int64_t)x.size() == shape_numel(e.shape) * e.elem_bytes, e.name, " bytes");
      put(x.data(), x.size());
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

// The tensors of a quantized export of the checkpoint (table `ck`) as the model of `out` lays
// them out: each quantized weight as I8 levels plus F32 `<name>.scale`, the rest F32. The step
// sizes are the checkpoint's (`trained`) or absmax / qp (post-training quantization).
std::vector<SafeEntry> quantized_entries(const ShardSources& src, const ParamTable& ck,
                                         const ParamTable& out, bool trained) {
  std::vector<SafeEntry> e;
  for (const ParamSpec& p : out.params) {
    if (p.qweight >= 0) continue;  // with its weight, as <weight>.scale
    const ParamSpec& from = ck.at(p.name);
    if (p.qscale < 0) {
      e.push_back({p.name, "F32", p.shape, 4,
                   [&src, &from] { return as_bytes(read_full_param(src, from)); }});
      continue;
    }
    const ParamSpec& sp = out.params[p.qscale];
    // Levels and step sizes come from one read of the weight: computed for the levels, kept for
    // the scales (the entries are written in order).
    auto scales = std::make_shared<std::vector<float>>();
    const int in = (int)p.shape[0], cols = (int)p.shape[1], g = qat_group(out, p);
    const int qp = out.qat.qp();
    e.push_back(
        {p.name, "I8", p.shape, 1, [&src, &ck, &from, &sp, scales, in, cols, g, qp, trained] {
           const std::vector<float> w = read_full_param(src, from);
           if (trained) {
             *scales = read_full_param(src, ck.at(sp.name));
           } else {
             scales->assign((size_t)sp.numel, 0.0f);
             init_step_sizes(scales->data(), w.data(), in, cols, g, qp, /*mse=*/false);
           }
           for (float& x : *scales) x = std::max(x, kMinStep);  // the step q(w) used
           std::vector<int8_t> levels(w.size());
           quantize_weight(levels.data(), w.data(), scales->data(), in, cols, g, qp);
           return as_bytes(levels);
         }});
    e.push_back({p.name + ".scale", "F32", sp.shape, 4, [scales] { return as_bytes(*scales); }});
  }
  return e;
}

}  // namespace

std::string safetensors_header(const ParamTable& table, const nlohmann::json& metadata) {
  std::vector<SafeEntry> e;
  for (const ParamSpec& p : table.params) e.push_back({p.name, "F32", p.shape, 4, nullptr});
  return header_of(e, metadata);
}

// The user block: "zerotrain model.h5\nbytes_after <N>\npage_hash64 <16 hex digits>\n", zeros.
static constexpr char kSealMagic[] = "zerotrain model.h5\n";

void seal_h5_export(const std::string& path) {
  const uint64_t bytes = fs::file_size(path) - (uint64_t)kH5ExportUserBlock;
  const uint64_t hash = file_checksum_after(path, kH5ExportUserBlock);
  char block[kH5ExportUserBlock] = {};
  std::snprintf(block, sizeof block, "%sbytes_after %llu\npage_hash64 %016llx\n", kSealMagic,
                (unsigned long long)bytes, (unsigned long long)hash);
  const int fd = ::open(path.c_str(), O_WRONLY);
  const bool ok = fd >= 0 && ::pwrite(fd, block, sizeof block, 0) == (ssize_t)sizeof block;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) fail("cannot write '", path, "': ", std::strerror(err));
}

void verify_h5_export(const std::string& path) {
  char block[kH5ExportUserBlock + 1] = {};
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot read '", path, "': ", std::strerror(errno));
  const ssize_t got = ::pread(fd, block, kH5ExportUserBlock, 0);
  ::close(fd);
  if (got != kH5ExportUserBlock || std::strncmp(block, kSealMagic, sizeof kSealMagic - 1) != 0)
    fail("'", path, "' is not a model.h5 written by zerotrain export (no checksum block; a ",
         "file from another tool or an older zerotrain: export it again from its checkpoint)");
  unsigned long long bytes = 0, hash = 0;
  if (std::sscanf(block + sizeof kSealMagic - 1, "bytes_after %llu\npage_hash64 %llx", &bytes,
                  &hash) != 2)
    fail("'", path, "' has a damaged checksum block");
  const uint64_t have = fs::file_size(path) - (uint64_t)kH5ExportUserBlock;
  if (have != bytes)
    fail("'", path, "' is damaged: ", have, " bytes after its checksum block, ", bytes,
         " when written (truncated or appended to)");
  if (file_checksum_after(path, kH5ExportUserBlock) != hash)
    fail("'", path, "' is damaged: its checksum does not match its bytes");
}

ExportSummary export_model(const std::string& ckpt, const std::string& out,
                           const ExportQuant& quant) {
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

  // --quantized: the model written has the target QAT settings (and its table the step sizes).
  ModelConfig out_cfg = cfg;
  bool trained = false;
  if (quant.on) {
    if (s.format != "safetensors")
      fail("--quantized writes model.safetensors (got --out '", out, "')");
    QatConfig& q = out_cfg.qat;
    if (quant.bits != QatBits::none) q.bits = quant.bits;
    if (!q.on())
      fail("--quantized needs int8, int4 or int2: checkpoint '", s.step_dir,
           "' did not train with QAT");
    if (quant.group_size >= 0) q.group_size = quant.group_size;
    trained = qat_scales_match(cfg.qat, q) && qat_trained_at(cfg.qat, s.step);
    if (!trained) q.start_step = 0;
    out_cfg.validate();  // the group size against the model's input sizes, naming the flag
    s.quant = cat(qat_name(q.bits), " ",
                  q.bits == QatBits::int8 || q.group_size == 0
                      ? std::string("per output channel")
                      : cat("in groups of ", q.group_size, " input rows"),
                  trained ? ", trained step sizes (QAT)" : ", absmax step sizes (post-training)");
  }
  const ParamTable out_table = quant.on ? build_param_table(out_cfg) : table;
  if (quant.on) s.tensors = s.elements = 0;
  if (quant.on)
    for (const ParamSpec& p : out_table.params) ++s.tensors, s.elements += p.numel;

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
      nlohmann::json meta = {{"format", "pt"},
                             {"config", nlohmann::json(out_cfg).dump()},
                             {"step", std::to_string(s.step)},
                             {"tokens", std::to_string(s.tokens)}};
      if (quant.on) meta["quantized"] = s.quant;
      write_safetensors(
          tmp, out,
          quant.on ? quantized_entries(src, table, out_table, trained) : f32_entries(src, table),
          meta);
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
