// params.h: the parameter table. Every parameter of SPEC section 1 with its name, shape, init,
// weight-decay flag, how tensor parallelism splits it, and which expert it belongs to.
//
// Parameters are grouped into units, the grain ZeRO gathers, partitions and reduces; a unit's
// parameters are laid out back to back in one flat buffer (offsets are element offsets inside it).
// With QAT every block linear's weight is followed by its step sizes `<weight>.qscale` in the same
// unit (initialised from the weight, no decay, lr x kQatStepLr / Qp: docs/qat.md).
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

// Which slice of the model a rank holds under tensor parallelism: part `rank` of `size`.
struct TensorSlice {
  int size = 1, rank = 0;
};

// Which routed experts a rank holds under expert parallelism: rank j of `size` holds experts
// [j * X / size, (j + 1) * X / size) of every MoE block (SPEC section 6).
struct ExpertSlice {
  int size = 1, rank = 0;
  int count(int experts) const { return experts / size; }  // experts per rank
  int first(int experts) const { return rank * count(experts); }
};

// The step sizes' lr multiplier, over Qp: a step size is about 1/Qp of its weights' size, and its
// gradient sums a group's, so Adam moves it further per step than a weight (measured: docs/qat.md).
constexpr float kQatStepLr = 0.1f;

struct ParamSpec {
  std::string name;    // SPEC name, e.g. "blocks.1.moe.experts.3.w2"
  Shape shape;         // this rank's slice: [in, out] matrices, [vocab, d] embedding, [d] gains
  int unit = 0;        // index into ParamTable::units
  int64_t offset = 0;  // element offset inside the unit's flat buffer
  int64_t numel = 0;
  // The whole (logical) tensor of SPEC section 1 and where this rank's slice sits in it, the
  // tensor seen as [rows, cols] (a vector as [1, n]): rows [row0, row0 + slice rows), columns
  // [col0, col0 + slice cols). full_offset: the offset in the unit's logical buffer, the layout
  // of the whole table (tensor slice 1 of 1), which checkpoints exchange.
  Shape full_shape;
  int64_t full_numel = 0, full_offset = 0;
  int64_t row0 = 0, col0 = 0;
  int layer = -1;   // block index; -1 for the embedding, final norm and head
  int expert = -1;  // routed expert index (blocks.l.moe.experts.e.*); -1 otherwise
  Split split = Split::none;
  bool decay = true;  // weight decay (matrices yes, norm gains no)
  bool is_norm = false;
  float init_std = 0;  // N(0, init_std) for matrices; gains are 1
  // QAT (SPEC section 7): a block linear's weight trains through fake quant with the step sizes
  // of parameter `qscale` ([out] or [in/G, out], right after it in the table); a step-size
  // parameter names its weight in `qweight`. -1 otherwise.
  int qscale = -1, qweight = -1;
  float lr_scale = 1;  // AdamW's lr for this parameter = the schedule's x lr_scale
};

struct UnitSpec {
  UnitKind kind = UnitKind::embed;
  int layer = -1;  // block index of block and experts units
  int64_t numel = 0;
  int64_t full_numel = 0;  // the logical unit (every slice, every expert)
};

struct ParamTable {
  std::vector<ParamSpec> params;
  QatConfig qat;                // the model's (step-size parameters are in the table when it is on)
  std::vector<UnitSpec> units;  // in forward order
  int num_units() const { return (int)units.size(); }
  int64_t unit_numel(int u) const { return units[u].numel; }
  int64_t total_numel() const;
  int find(const std::string& name) const;             // -1 if absent
  const ParamSpec& at(const std::string& name) const;  // throws naming it
  // Index of the unit of `kind` for block `layer` (-1 for embed / head), or -1 if absent.
  int unit_of(UnitKind kind, int layer = -1) const;
};

// The table of this rank's slice (the whole model at the default 1 of 1). Split parameters hold
// 1/size of their columns, rows or vocabulary; `size` must divide heads, the FFN hidden sizes and
// the vocabulary (tensor_slice_error). Under expert parallelism an experts unit holds only the
// rank's experts (`ep`; ep.size divides the experts); the others are absent from the table, but
// every parameter's full_offset and every unit's full_numel stay those of the whole model.
ParamTable build_param_table(const ModelConfig& cfg, TensorSlice tp = {}, ExpertSlice ep = {});
// Why `size` tensor-parallel ranks cannot split the model ("" when they can), naming the flag.
std::string tensor_slice_error(const ModelConfig& cfg, int size);

// A tensor's [rows, cols] view: matrices as they are, vectors as [1, n].
inline int64_t view_rows(const Shape& s) { return s.size() == 2 ? s[0] : 1; }
inline int64_t view_cols(const Shape& s) { return s.empty() ? 1 : s.back(); }

// Copies this rank's slice of parameter p out of `logical` (the unit's logical buffer) into
// `local` (the unit's buffer), or back (to_logical).
void copy_slice(const ParamSpec& p, const float* logical, float* local);
void copy_slice_back(const ParamSpec& p, const float* local, float* logical);

// What the whole model's table adds up to.
struct ParamCounts {
  int64_t params = 0;          // every parameter
  int64_t active = 0;          // matrix parameters a token passes through (the head's matmul,
                               // top_k of each MoE block's experts, not the embedding lookup)
  double flops_per_token = 0;  // training: 6 x active + attention scores and values
};
// `t` must hold every parameter (a tensor slice is fine: counts use the whole tensors; an expert
// slice is not: build the whole table).
ParamCounts count_params(const ParamTable& t, const ModelConfig& cfg);

// SPEC init into a unit's flat buffer: every element's value depends only on (seed, name, index).
void init_unit_params(float* unit_buf, const ParamTable& t, int unit, uint64_t seed);

}  // namespace zt
