// mpi_tuning.h: the MPI backend's tunables (environment variables, read once) and its error check.
//   ZT_COMM_CHUNK_KB       reducing message size (default 1024)
//   ZT_COMM_COPY_CHUNK_KB  forward-only message size: all-gather, broadcast, all-to-all, send
//                          (default 4096)
//   ZT_COMM_SLOTS          receive slots per reducing operation (default 4)
//   ZT_COMM_WINDOW         messages in flight per direction per operation (default 16)
//   ZT_COMM_STREAMING      non-temporal stores for final reduced results (default 1)
//   ZT_COMM_TIMEOUT_S      Work::wait watchdog in seconds, 0 = none (default 600)
//   ZT_COMM_ALLGATHER      ring | mpi (MPI_Iallgatherv instead of the ring)
#pragma once
#include <cstddef>
#include <string>

#include "parallel/comm/message_plan.h"
#include "runtime/error.h"

namespace zt {

struct MpiTuning {
  size_t chunk_bytes;       // reducing messages
  size_t copy_chunk_bytes;  // forward-only messages
  int slots;
  int window;
  bool streaming;
  double timeout_s;
  bool builtin_allgather;
  PlanChunks plan_chunks() const { return {chunk_bytes, copy_chunk_bytes, streaming}; }
};
const MpiTuning& mpi_tuning();

std::string mpi_error_string(int rc);

#define ZT_MPI(call, where)                                                                   \
  do {                                                                                        \
    int zt_rc_ = (call);                                                                      \
    if (zt_rc_ != MPI_SUCCESS) fail(where, ": " #call " failed: ", mpi_error_string(zt_rc_)); \
  } while (0)

}  // namespace zt
