// cmd_generate.cpp: `zerotrain generate --ckpt PATH --prompt TEXT` — sample a continuation.
#include <cstdio>

#include "launch/command.h"
#include "model/generate.h"
#include "offload/checkpoint.h"
#include "runtime/error.h"
#include "runtime/options.h"

namespace zt {
namespace {

int cmd_generate(int argc, char** argv) {
  std::string ckpt, prompt;
  SampleOptions s;
  po::options_description d("Generation");
  d.add_options()  //
      ("ckpt", po::value(&ckpt)->required(),
       "checkpoint directory, step directory, model.h5 or model.safetensors")            //
      ("prompt", po::value(&prompt)->required(), "text to continue (bytes are tokens)")  //
      ("max-new-tokens", with_default(&s.max_new_tokens),
       "tokens to generate (>= 0)")  //
      ("temperature", with_default(&s.temperature),
       "softmax temperature (>= 0; 0 = greedy)")  //
      ("top-k", with_default(&s.top_k),
       "sample among the k most likely tokens (0 = all)")  //
      ("seed", with_default(&s.seed), "sampling seed");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain generate --ckpt PATH --prompt TEXT", d, vm))
    return 0;
  require_min(vm, "max-new-tokens", 0);
  require_min(vm, "temperature", 0);
  require_min(vm, "top-k", 0);

  ModelConfig cfg = checkpoint_model_config(ckpt);
  if (cfg.vocab != 256) fail("generate reads and writes bytes; this model has --vocab ", cfg.vocab);
  Model model(cfg, 0, /*with_grads=*/false);
  load_model_weights(ckpt, model);
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  for (int32_t& t : tokens) t &= 0xff;
  std::vector<int32_t> out = generate(model, tokens, s);
  std::string text(prompt);
  for (int32_t t : out) text.push_back((char)t);
  std::printf("%s\n", text.c_str());
  return 0;
}

}  // namespace
ZT_COMMAND("generate", "sample text from a checkpoint given --prompt", cmd_generate);
}  // namespace zt
