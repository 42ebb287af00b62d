// Fuzz target: a model.h5 export (offload/export.h) as eval and generate read it: its checksum
// block checked, then the model configuration, then, for a small model, every tensor loaded.
// Damage is expected to stop at the checksum; the seed is a valid export, so the mutations that
// keep the block intact reach libhdf5 through the loaders' shape and type checks.
#include "model/model.h"
#include "offload/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = zt::fuzz::write_file("model.h5", data, size);
  zt::fuzz::expect_clean_error([&] {
    const zt::ModelConfig cfg = zt::checkpoint_model_config(path);
    cfg.validate();
    // A small model only (the table's length, then its size): a config of a huge model is valid.
    if ((int64_t)cfg.layers * (cfg.experts + 4) > 1000) return;
    if (zt::build_param_table(cfg).total_numel() > (1 << 20)) return;
    zt::Model model(cfg, 1, /*with_grads=*/false);
    zt::load_model_weights(path, model);
  });
  return 0;
}
