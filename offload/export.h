// export.h: `zerotrain export` — a checkpoint consolidated into one file of full fp32 tensors with
// SPEC section 1 names, for other tools.
//
//   model.h5           /params/<name> fp32 datasets; root attributes: "config" (the model config as
//                      JSON, what load_model_weights reads), one attribute per config field
//                      (vocab, layers, model_dim, ...; bools as 0/1), "step", "tokens"; a 512-byte
//                      HDF5 user block in front holds the checksum of the rest (seal_h5_export)
//   model.safetensors  8-byte little-endian header length N, N bytes of JSON header padded with
//                      spaces to a multiple of 8: {"__metadata__": {"format": "pt", "config": JSON,
//                      "step": "S", "tokens": "T"}, "<name>": {"dtype": "F32", "shape": [...],
//                      "data_offsets": [begin, end]}, ...}, then the tensors' raw little-endian
//                      bytes back to back in parameter-table order (offsets relative to the data)
//
// Streaming: one tensor at a time is read from the checkpoint's rank file(s) (each rank file holds
// pieces of /params/<name> at a "logical_offset" into the flattened tensor), written and freed, so
// memory is bounded by the largest tensor. Output goes to a temporary file beside --out that is
// renamed into place only when complete; on any error it is removed and --out is left as it was.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/params.h"

namespace zt {

// --quantized (SPEC section 7): each quantized block weight as I8 levels `<name>` plus F32 step
// sizes `<name>.scale` ([out] or [in/G, out]); the other tensors F32; metadata "quantized" says
// how. The checkpoint's trained step sizes when its QAT matches and had started, else absmax / qp
// per group (post-training quantization).
struct ExportQuant {
  bool on = false;
  QatBits bits = QatBits::none;  // none: the checkpoint's QAT bits
  int group_size = -1;           // -1: the checkpoint's
};

struct ExportSummary {
  std::string step_dir;  // the checkpoint that was exported
  std::string format;    // "h5" or "safetensors"
  int64_t tensors = 0;
  int64_t elements = 0;
  int64_t step = 0;
  int64_t tokens = 0;
  std::string quant;  // how --quantized quantized ("" without it)
};

// model.h5 starts with an HDF5 user block of this many bytes holding the page_hash64 checksum of
// the rest (offload/checksum.h), so that a damaged export is refused before libhdf5 parses it.
inline constexpr int64_t kH5ExportUserBlock = 512;
// Writes the checksum block of the closed model.h5 at `path` (created with the user block).
void seal_h5_export(const std::string& path);
// Throws zt::Error naming `path` unless it is a sealed model.h5 whose bytes match their checksum.
void verify_h5_export(const std::string& path);

// Exports checkpoint `ckpt` (checkpoint root or step directory) to `out`, whose extension (.h5 or
// .safetensors) picks the format. Throws zt::Error naming the path on a bad extension, a missing,
// incomplete or damaged checkpoint, or an output that cannot be written.
ExportSummary export_model(const std::string& ckpt, const std::string& out,
                           const ExportQuant& quant = {});

// The safetensors header for `table` (tensors in table order, contiguous from offset 0), already
// padded with spaces to a multiple of 8 bytes; `metadata` must hold string values only.
std::string safetensors_header(const ParamTable& table, const nlohmann::json& metadata);

}  // namespace zt
