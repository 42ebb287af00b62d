// expert_parallel.cpp: the expert-parallel hook over the ep communicator (expert_parallel.h).
#include "parallel/expert/expert_parallel.h"

#include <vector>

#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/trace.h"

namespace zt {

void ExpertParallel::exchange_counts(const int32_t* send, int32_t* recv, int n) {
  const std::vector<size_t> bytes(ep_.size(), (size_t)n * sizeof(int32_t));
  ep_.all_to_all(send, bytes, recv, bytes, DType::int8).wait();
}

TpWait ExpertParallel::exchange_rows(EpPoint where, int layer, const float* send,
                                     const int32_t* send_rows, float* recv,
                                     const int32_t* recv_rows, int width) {
  std::vector<size_t> sc(ep_.size()), rc(ep_.size());
  for (int i = 0; i < ep_.size(); ++i) {
    sc[i] = (size_t)send_rows[i] * width;
    rc[i] = (size_t)recv_rows[i] * width;
  }
  const double t0 = now_ms();
  Work w = ep_.all_to_all(send, sc, recv, rc, DType::fp32);
  return TpWait([w, t0, where, layer]() mutable {
    w.wait();
    if (Tracer::get().on())
      Tracer::get().span(cat("ep all_to_all ", ep_point_name(where), " block ", layer),
                         TraceTrack::comm, t0, now_ms());
  });
}

}  // namespace zt
