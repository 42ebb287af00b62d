// tensor_parallel.cpp: the tensor-parallel hook over the tp communicator (tensor_parallel.h).
#include "parallel/tensor/tensor_parallel.h"

#include <vector>

#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/trace.h"

namespace zt {

namespace {
// Completes w and shows it on the trace's communication track.
TpWait traced(Work w, const char* what, TpPoint where, int layer) {
  const double t0 = now_ms();
  return TpWait([w, t0, what, where, layer]() mutable {
    w.wait();
    if (Tracer::get().on())
      Tracer::get().span(layer >= 0 ? cat("tp ", what, " ", tp_point_name(where), " block ", layer)
                                    : cat("tp ", what, " ", tp_point_name(where)),
                         TraceTrack::comm, t0, now_ms());
  });
}
}  // namespace

TpWait TensorParallel::sum_partial(TpPoint where, int layer, float* x, int64_t n) {
  return traced(tp_.all_reduce(x, x, (size_t)n, DType::fp32, ReduceOp::sum), "all_reduce", where,
                layer);
}

TpWait TensorParallel::gather_rows(TpPoint where, int layer, const float* local, int64_t n,
                                   float* full) {
  const std::vector<size_t> counts(tp_.size(), (size_t)n);
  return traced(tp_.all_gather(local, full, counts, DType::fp32), "all_gather", where, layer);
}

TpWait TensorParallel::sum_rows(TpPoint where, int layer, const float* full, float* local,
                                int64_t n) {
  const std::vector<size_t> counts(tp_.size(), (size_t)n);
  return traced(tp_.reduce_scatter(full, local, counts, DType::fp32, ReduceOp::sum),
                "reduce_scatter", where, layer);
}

void TensorParallel::gather(const float* mine, int64_t n, float* all) {
  const double t0 = now_ms();
  tp_.all_gather(mine, all, std::vector<size_t>(tp_.size(), (size_t)n), DType::fp32).wait();
  if (Tracer::get().on())
    Tracer::get().span("tp gather loss stats", TraceTrack::comm, t0, now_ms());
}

}  // namespace zt
