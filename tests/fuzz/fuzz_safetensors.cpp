// Fuzz target: a model.safetensors file (offload/safetensors.h): its header checked, every tensor
// it lists read, and the model configuration eval and generate take from its metadata.
#include <vector>

#include "offload/checkpoint.h"
#include "offload/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = zt::fuzz::write_file("model.safetensors", data, size);
  zt::fuzz::expect_clean_error([&] {
    const zt::SafetensorsFile f = zt::SafetensorsFile::open(path);
    for (const auto& [name, t] : f.tensors()) {
      std::vector<char> buf((size_t)(t.end - t.begin));  // within the file: open checked it
      f.read(name, t.dtype.c_str(), t.shape, buf.data());
    }
  });
  zt::fuzz::expect_clean_error([&] { zt::checkpoint_model_config(path); });
  return 0;
}
