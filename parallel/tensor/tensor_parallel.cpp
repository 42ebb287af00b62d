// tensor_parallel.cpp: the tensor-parallel hook over the tp communicator (tensor_parallel.h).
#include "parallel/tensor/tensor_parallel.h"

#include <vector>

#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/trace.h"

namespace zt {

TpWait TensorParallel::sum_partial(TpPoint where, int layer, float* x, int64_t n) {
  const double t0 = now_ms();
  Work w = tp_.all_reduce(x, x, (size_t)n, DType::fp32, ReduceOp::sum);
  return TpWait([w, t0, where, layer]() mutable {
    w.wait();
    if (Tracer::get().on())
      Tracer::get().span(layer >= 0 ? cat("tp ", tp_point_name(where), " block ", layer)
                                    : cat("tp ", tp_point_name(where)),
                         TraceTrack::comm, t0, now_ms());
  });
}

void TensorParallel::gather(const float* mine, int64_t n, float* all) {
  const double t0 = now_ms();
  tp_.all_gather(mine, all, std::vector<size_t>(tp_.size(), (size_t)n), DType::fp32).wait();
  if (Tracer::get().on()) Tracer::get().span("tp gather loss stats", TraceTrack::comm, t0, now_ms());
}

}  // namespace zt
