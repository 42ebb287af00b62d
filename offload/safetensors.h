// safetensors.h: reading a model.safetensors file (the format export.h writes): its header
// checked once (every tensor's dtype, shape and byte range inside the file), then tensors read
// on demand. Any damage is one zt::Error naming the file and what is wrong.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/tensor.h"

namespace zt {

struct SafeTensor {
  std::string dtype;  // "F32", "I8"
  Shape shape;
  int64_t begin = 0, end = 0;  // byte range in the data section
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  const std::string& path() const { return path_; }
  const nlohmann::json& metadata() const { return metadata_; }  // string values
  const SafeTensor* find(const std::string& name) const;        // null if absent
  const std::map<std::string, SafeTensor>& tensors() const { return tensors_; }
  // Reads tensor `name` into dst, which holds shape's elements of dtype (throws naming the file
  // and the tensor when it is absent or has another dtype or shape).
  void read(const std::string& name, const char* dtype, const Shape& shape, void* dst) const;

 private:
  std::string path_;
  nlohmann::json metadata_;
  std::map<std::string, SafeTensor> tensors_;
  int64_t data_start_ = 0;
};

}  // namespace zt
