// backend.cpp: the argument checks every Communicator backend makes (backend.h).
#include "parallel/comm/backend.h"

#include "runtime/error.h"

namespace zt {

void check_reducible(const Communicator& c, const char* what, DType dt) {
  if (dt != DType::fp32 && dt != DType::bf16 && dt != DType::fp16)
    fail(what, " on communicator '", c.name(), "': cannot reduce ", dtype_name(dt),
         " (fp32, bf16 or fp16)");
}

void check_counts(const Communicator& c, const char* what, std::span<const size_t> counts) {
  if ((int)counts.size() != c.size())
    fail(what, " on communicator '", c.name(), "': ", counts.size(), " counts for ", c.size(),
         " ranks");
}

void check_peer(const Communicator& c, const char* what, int peer) {
  if (peer < 0 || peer >= c.size())
    fail(what, " on communicator '", c.name(), "': rank ", peer, " is not in 0..", c.size() - 1);
}

size_t sum_counts(std::span<const size_t> counts) {
  size_t s = 0;
  for (size_t c : counts) s += c;
  return s;
}

}  // namespace zt
