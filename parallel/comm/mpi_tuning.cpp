// mpi_tuning.cpp: reads the MPI backend's environment once (mpi_tuning.h).
#include "parallel/comm/mpi_tuning.h"

#include <mpi.h>

#include <atomic>
#include <cstdlib>

#include "parallel/comm/comm.h"

namespace zt {
namespace {

double env_number(const char* name, double fallback, double lo) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (end == v || *end || d < lo)
    fail("environment variable ", name, "='", v, "' is not a number >= ", lo);
  return d;
}

}  // namespace

const MpiTuning& mpi_tuning() {
  static const MpiTuning t = [] {
    MpiTuning t;
    t.chunk_bytes = (size_t)env_number("ZT_COMM_CHUNK_KB", 1024, 4) * 1024;
    t.copy_chunk_bytes = (size_t)env_number("ZT_COMM_COPY_CHUNK_KB", 4096, 4) * 1024;
    t.slots = (int)env_number("ZT_COMM_SLOTS", 4, 1);
    t.window = (int)env_number("ZT_COMM_WINDOW", 16, 1);
    t.streaming = env_number("ZT_COMM_STREAMING", 1, 0) != 0;
    t.timeout_s = env_number("ZT_COMM_TIMEOUT_S", 600, 0);
    const char* ag = std::getenv("ZT_COMM_ALLGATHER");
    std::string ag_s = ag ? ag : "ring";
    if (ag_s != "ring" && ag_s != "mpi") fail("ZT_COMM_ALLGATHER='", ag_s, "' is not ring or mpi");
    t.builtin_allgather = ag_s == "mpi";
    if (t.chunk_bytes > (1u << 30) || t.copy_chunk_bytes > (1u << 30))
      fail("ZT_COMM_CHUNK_KB / ZT_COMM_COPY_CHUNK_KB must be at most 1048576 (1 GiB)");
    return t;
  }();
  return t;
}

namespace {
std::atomic<double> g_timeout_override{-1};
}

void set_comm_timeout(double seconds) { g_timeout_override = seconds; }

double comm_timeout_s() {
  const double o = g_timeout_override;
  return o >= 0 ? o : mpi_tuning().timeout_s;
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  return std::string(buf, len);
}

}  // namespace zt
