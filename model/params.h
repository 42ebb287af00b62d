// params.h: the parameter table. Every parameter of SPEC section 1 with its name, shape, init,
// weight-decay flag, how tensor parallelism splits it, and which expert it belongs to.
//
// Parameters are grouped into units, the grain ZeRO gathers, partitions and reduces; a unit's
// parameters are laid out back to back in one flat buffer (offsets are element offsets inside it).
// Units in forward order:
//   embed            the embedding
//   block l          attention, norms, and the dense FFN, or the router and the shared expert
//   experts l        the routed experts of MoE block l (a unit of their own: under expert
//                    parallelism they are partitioned and reduced over their own group)
//   head             the final norm and the untied head
// Parameter counts, active parameters and training FLOPs are derived from the table.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/tensor.h"

namespace zt {

// How tensor parallelism cuts a weight (SPEC section 6, Megatron layout).
enum class Split : uint8_t {
  none,    // replicated: norm gains, router
  column,  // [in, out] by output columns: wq / wk / wv (by heads), w1 / w3
  row,     // [in, out] by input rows: wo, w2
  vocab,   // by vocabulary: the embedding's rows, the untied head's columns
};
const char* split_name(Split s);

enum class UnitKind : uint8_t { embed, block, experts, head };

struct ParamSpec {
  std::string name;    // SPEC name, e.g. "blocks.1.moe.experts.3.w2"
  Shape shape;         // [in, out] for matrices, [vocab, d] for the embedding, [d] for norm gains
  int unit = 0;        // index into ParamTable::units
  int64_t offset = 0;  // element offset inside the unit's flat buffer
  int64_t numel = 0;
  int layer = -1;   // block index; -1 for the embedding, final norm and head
  int expert = -1;  // routed expert index (blocks.l.moe.experts.e.*); -1 otherwise
  Split split = Split::none;
  bool decay = true;  // weight decay (matrices yes, norm gains no)
  bool is_norm = false;
  float init_std = 0;  // N(0, init_std) for matrices; gains are 1
};

struct UnitSpec {
  UnitKind kind = UnitKind::embed;
  int layer = -1;  // block index of block and experts units
  int64_t numel = 0;
};

struct ParamTable {
  std::vector<ParamSpec> params;
  std::vector<UnitSpec> units;  // in forward order
  int num_units() const { return (int)units.size(); }
  int64_t unit_numel(int u) const { return units[u].numel; }
  int64_t total_numel() const;
  int find(const std::string& name) const;             // -1 if absent
  const ParamSpec& at(const std::string& name) const;  // throws naming it
  // Index of the unit of `kind` for block `layer` (-1 for embed / head), or -1 if absent.
  int unit_of(UnitKind kind, int layer = -1) const;
};

ParamTable build_param_table(const ModelConfig& cfg);

// What the table adds up to.
struct ParamCounts {
  int64_t params = 0;          // every parameter
  int64_t active = 0;          // matrix parameters a token passes through (the head's matmul,
                               // top_k of each MoE block's experts, not the embedding lookup)
  double flops_per_token = 0;  // training: 6 x active + attention scores and values
};
ParamCounts count_params(const ParamTable& t, const ModelConfig& cfg);

// SPEC init into a unit's flat buffer: every element's value depends only on (seed, name, index).
void init_unit_params(float* unit_buf, const ParamTable& t, int unit, uint64_t seed);

}  // namespace zt
