// tp_hook.cpp: the names of the tensor-parallel sums (for traces and messages).
#include "model/tp_hook.h"

namespace zt {

const char* tp_point_name(TpPoint p) {
  static const char* names[] = {"embed_out",      "attn_out",   "ffn_out",     "attn_dinput",
                                "ffn_dinput",     "moe_dgates", "head_dinput", "norm_grad",
                                "qat_scale_grad", "attn_in",    "ffn_in",      "head_in",
                                "ffn_dout",       "attn_dout",  "embed_dout"};
  return names[(int)p];
}

}  // namespace zt
