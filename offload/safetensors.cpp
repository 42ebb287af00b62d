// safetensors.cpp: the safetensors reader (safetensors.h).
#include "offload/safetensors.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/error.h"

namespace zt {

namespace {
int64_t dtype_bytes(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "I8" || d == "U8") return 1;
  if (d == "F16" || d == "BF16") return 2;
  return 0;
}
}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  std::error_code ec;
  const int64_t size = (int64_t)std::filesystem::file_size(path, ec);
  if (ec) fail("cannot read '", path, "': ", ec.message());
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  if (!in.read(reinterpret_cast<char*>(len), 8)) fail("'", path, "' is not a safetensors file");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= (uint64_t)len[i] << (8 * i);
  if (n == 0 || n > (uint64_t)size - 8)
    fail("'", path, "' is not a safetensors file (header length ", n, " of a ", size,
         "-byte file)");
  std::string header(n, '\0');
  if (!in.read(header.data(), (std::streamsize)n)) fail("cannot read '", path, "'");
  nlohmann::json h = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!h.is_object()) fail("'", path, "' has a safetensors header that is not a JSON object");
  f.data_start_ = 8 + (int64_t)n;
  const int64_t data = size - f.data_start_;
  for (auto& item : h.items()) {
    const std::string name = item.key();  // (a structured binding cannot be captured: clang 14)
    nlohmann::json& e = item.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail("'", path, "': __metadata__ is not an object");
      f.metadata_ = e;
      continue;
    }
    auto bad = [&](const char* what) { fail("'", path, "' tensor ", name, ": ", what); };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets") || !e["dtype"].is_string() || !e["shape"].is_array() ||
        !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      bad("needs dtype, shape and data_offsets [begin, end]");
    SafeTensor t;
    t.dtype = e["dtype"].get<std::string>();
    const int64_t eb = dtype_bytes(t.dtype);
    if (eb == 0) bad("has an unknown dtype");
    int64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t)1 << 40)
        bad("has a bad shape");
      t.shape.push_back(d.get<int64_t>());
      if (t.shape.back() > 0 && numel > ((int64_t)1 << 40) / t.shape.back()) bad("has a bad shape");
      numel *= t.shape.back();
    }
    for (const auto& o : e["data_offsets"])
      if (!o.is_number_integer()) bad("has bad data_offsets");
    t.begin = e["data_offsets"][0].get<int64_t>();
    t.end = e["data_offsets"][1].get<int64_t>();
    if (t.begin < 0 || t.end < t.begin || t.end > data) bad("lies outside the file");
    if (t.end - t.begin != numel * eb) bad("has data_offsets that do not match its shape");
    f.tensors_[name] = std::move(t);
  }
  return f;
}

const SafeTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void SafetensorsFile::read(const std::string& name, const char* dtype, const Shape& shape,
                           void* dst) const {
  const SafeTensor* t = find(name);
  if (!t) fail("'", path_, "' has no tensor ", name);
  if (t->dtype != dtype || t->shape != shape)
    fail("'", path_, "' tensor ", name, " is ", t->dtype, " ", shape_str(t->shape),
         ", this model needs ", dtype, " ", shape_str(shape));
  std::ifstream in(path_, std::ios::binary);
  in.seekg(data_start_ + t->begin);
  if (!in.read(static_cast<char*>(dst), t->end - t->begin))
    fail("cannot read tensor ", name, " of '", path_, "'");
}

}  // namespace zt
