// evaluate.cpp: windowed evaluation; full windows go through in microbatches of micro_batch.
#include "model/evaluate.h"

#include <algorithm>

#include "model/passes.h"
#include "runtime/error.h"

namespace zt {

EvalResult evaluate(const ForwardFn& forward, const TokenData& tokens, int T, int64_t max_tokens,
                    int micro_batch) {
  const int64_t avail = tokens.size() - 1;  // target tokens the file can provide
  int64_t budget = std::min(max_tokens, avail);
  if (budget <= 0) fail(tokens.what(), ": ", tokens.size(), " tokens: nothing to evaluate");
  EvalResult r;
  double ce_sum = 0, aux_sum = 0;
  std::vector<int32_t> batch;
  int64_t pos = 0;  // start of the next window
  while (budget > 0) {
    // As many full windows as fit in one microbatch, or one short final window.
    int len = (int)std::min<int64_t>(T, budget);
    int nb = len == T ? (int)std::min<int64_t>(micro_batch, budget / T) : 1;
    batch.resize((size_t)nb * (len + 1));
    for (int b = 0; b < nb; ++b)
      tokens.read(pos + (int64_t)b * len, len + 1, &batch[(size_t)b * (len + 1)]);
    LossParts lp = forward(batch.data(), nb, len);
    int64_t n = (int64_t)nb * len;
    ce_sum += lp.ce * (double)n;
    aux_sum += lp.aux * (double)n;
    r.tokens += n;
    budget -= n;
    pos += n;
  }
  r.ce = ce_sum / (double)r.tokens;
  r.aux = aux_sum / (double)r.tokens;
  return r;
}

EvalResult evaluate(Model& model, const TokenData& tokens, int seq_len, int64_t max_tokens,
                    int micro_batch) {
  Acts acts;
  return evaluate(
      [&](const int32_t* t, int B, int T) { return model_forward(model, acts, t, B, T); }, tokens,
      seq_len, max_tokens, micro_batch);
}

}  // namespace zt
