// cmd_eval.cpp: `zerotrain eval --ckpt PATH --data FILE` — loss of a checkpoint or exported
// model.h5 / model.safetensors (a quantized one through integer matmuls) on a token file; prints
// {"ce": x, "aux_loss": y, "tokens": n}.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "launch/command.h"
#include "model/data/token_file.h"
#include "model/evaluate.h"
#include "offload/checkpoint.h"
#include "runtime/options.h"

namespace zt {
namespace {

int cmd_eval(int argc, char** argv) {
  std::string ckpt, data;
  int64_t eval_tokens = 0;  // the whole split
  int micro_batch = 8;
  po::options_description d("Evaluation");
  d.add_options()  //
      ("ckpt", po::value(&ckpt)->required(),
       "checkpoint directory, step directory, model.h5 or model.safetensors")  //
      ("data", po::value(&data)->required(),
       "token file, glob of shards, or directory (its val.bin or val shards)")  //
      ("eval-tokens", with_default(&eval_tokens),
       "target tokens to evaluate at most, from the start (0 = the whole file)")  //
      ("micro-batch", with_default(&micro_batch),
       "windows of seq_len tokens per forward pass (>= 1)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain eval --ckpt PATH --data FILE", d, vm)) return 0;
  require_min(vm, "eval-tokens", 0);
  require_min(vm, "micro-batch", 1);

  ModelConfig cfg = checkpoint_model_config(ckpt);
  Model model(cfg, 0, /*with_grads=*/false);
  load_model_weights(ckpt, model);
  const TokenData tokens(resolve_token_files(data, "val", "--data"), cfg.vocab);
  EvalResult r = evaluate(model, tokens, cfg.seq_len, eval_tokens > 0 ? eval_tokens : tokens.size(),
                          micro_batch);
  std::printf(
      "%s\n",
      nlohmann::json{{"ce", r.ce}, {"aux_loss", r.aux}, {"tokens", r.tokens}}.dump().c_str());
  return 0;
}

}  // namespace
ZT_COMMAND("eval", "loss of a checkpoint on a token file (one JSON line)", cmd_eval);
}  // namespace zt
