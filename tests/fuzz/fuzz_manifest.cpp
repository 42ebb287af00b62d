// Fuzz target: a checkpoint step directory whose manifest.json is the input (offload/checkpoint.h):
// reading and verifying it (the rank files it lists are absent, or an empty list passes), then
// what resume and eval take from it, the model configuration.
#include "offload/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zt::fuzz::write_file("manifest.json", data, size);
  zt::fuzz::write_file("COMPLETE", nullptr, 0);
  const std::string& dir = zt::fuzz::scratch_dir();
  zt::fuzz::expect_clean_error([&] { zt::read_manifest(dir, /*verify=*/true); });
  zt::fuzz::expect_clean_error([&] { zt::read_manifest(dir, /*verify=*/false); });
  zt::fuzz::expect_clean_error([&] { zt::checkpoint_model_config(dir); });
  return 0;
}
