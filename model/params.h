// params.h: the parameter registry. Every parameter of SPEC section 1 with its name, shape, unit,
// init and weight-decay flag. Parameters are grouped into units (embedding, one per block, final)
// and each unit's parameters are laid out back to back in one flat buffer, the grain ZeRO will
// gather and partition. Offsets are element offsets inside the unit's flat buffer.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/tensor.h"

namespace zt {

struct ParamSpec {
  std::string name;    // SPEC name, e.g. "blocks.1.moe.experts.3.w2"
  Shape shape;         // [in, out] for matrices, [d] for norm gains
  int unit = 0;        // 0 = embed, 1..layers = blocks, layers+1 = final
  int64_t offset = 0;  // element offset inside the unit's flat buffer
  int64_t numel = 0;
  bool decay = true;  // weight decay (matrices yes, norm gains no)
  bool is_norm = false;
  float init_std = 0;  // N(0, init_std) for matrices; gains are 1
};

struct ParamTable {
  std::vector<ParamSpec> params;
  std::vector<int64_t> unit_numel;  // [units]
  int num_units() const { return (int)unit_numel.size(); }
  int64_t total_numel() const;
  int find(const std::string& name) const;             // -1 if absent
  const ParamSpec& at(const std::string& name) const;  // throws naming it
};

ParamTable build_param_table(const ModelConfig& cfg);

// SPEC init into a unit's flat buffer: every element's value depends only on (seed, name, index).
void init_unit_params(float* unit_buf, const ParamTable& t, int unit, uint64_t seed);

}  // namespace zt
