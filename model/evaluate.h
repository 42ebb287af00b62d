// evaluate.h: the loss of a model on a token file, as SPEC section 3 `eval` defines it.
// Window i holds tokens [i*T, i*T+T] (inputs the first T, targets shifted by one), windows in
// order from the stream's start, at most max_tokens target tokens in all (the last window is cut
// short when the budget or the file ends inside it).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/data/token_file.h"
#include "model/layers.h"

namespace zt {

struct EvalResult {
  double ce = 0;   // mean cross-entropy per target token
  double aux = 0;  // token-weighted mean of the microbatches' aux loss
  int64_t tokens = 0;
};

// The loss of one batch of tokens [B, T+1] (a forward pass, whoever owns the parameters).
using ForwardFn = std::function<LossParts(const int32_t* tokens, int B, int T)>;

EvalResult evaluate(const ForwardFn& forward, const TokenData& tokens, int seq_len,
                    int64_t max_tokens, int micro_batch);
// The same for a model that holds all of its own parameters.
EvalResult evaluate(Model& model, const TokenData& tokens, int seq_len, int64_t max_tokens,
                    int micro_batch);

}  // namespace zt
