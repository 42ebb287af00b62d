// engine_state.h (tests): the engine's whole fp32 state, assembled on every rank, one unit after
// the other (ZeroEngine::gather_unit_state; collective).
#pragma once
#include <vector>

#include "parallel/zero/engine.h"

namespace zt::test {

inline void gather_full_state(ZeroEngine& engine, const Model& model,
                              std::vector<std::vector<float>>& params,
                              std::vector<std::vector<float>>* m = nullptr,
                              std::vector<std::vector<float>>* v = nullptr) {
  const int U = model.table.num_units();
  params.resize(U);
  if (m) m->resize(U);
  if (v) v->resize(U);
  for (int u = 0; u < U; ++u)
    engine.gather_unit_state(u, params[u], m ? &(*m)[u] : nullptr, v ? &(*v)[u] : nullptr);
}

}  // namespace zt::test
