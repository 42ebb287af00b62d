// process.cpp: rank discovery from the launcher's environment and the MPI lifetime.
#include "runtime/process.h"

#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/error.h"

extern "C" void openblas_set_num_threads(int);

namespace zt {
namespace {

// A whole decimal integer, or an error naming the variable.
int env_int(const EnvLookup& env, const char* name, int lo) {
  const char* v = env(name);
  std::string s = v ? v : "";
  int out = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || out < lo)
    fail("environment variable ", name, "='", s, "' is not an integer >= ", lo);
  return out;
}

bool env_set(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  return v && *v;
}

std::mutex g_mutex;
const ProcessContext* g_context = nullptr;
std::vector<std::function<void(bool)>>& shutdown_hooks() {
  static std::vector<std::function<void(bool)>> hooks;
  return hooks;
}

}  // namespace

ProcessInfo discover_process(const EnvLookup& env) {
  ProcessInfo info;
  if (env_set(env, "OMPI_COMM_WORLD_SIZE") || env_set(env, "OMPI_COMM_WORLD_RANK")) {
    info.launcher = "openmpi";
    info.world = env_int(env, "OMPI_COMM_WORLD_SIZE", 1);
    info.rank = env_int(env, "OMPI_COMM_WORLD_RANK", 0);
    info.local_rank = env_set(env, "OMPI_COMM_WORLD_LOCAL_RANK")
                          ? env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0)
                          : 0;
    if (info.rank >= info.world)
      fail("OMPI_COMM_WORLD_RANK=", info.rank, " is not below OMPI_COMM_WORLD_SIZE=", info.world);
  } else if (env_set(env, "SLURM_PROCID")) {
    info.launcher = "slurm";
    const char* ntasks =
        env_set(env, "SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    if (!env_set(env, ntasks)) fail("SLURM_PROCID is set but SLURM_NTASKS is not");
    info.world = env_int(env, ntasks, 1);
    info.rank = env_int(env, "SLURM_PROCID", 0);
    info.local_rank = env_set(env, "SLURM_LOCALID") ? env_int(env, "SLURM_LOCALID", 0) : 0;
    if (info.rank >= info.world)
      fail("SLURM_PROCID=", info.rank, " is not below ", ntasks, "=", info.world);
  }
  return info;
}

std::string launch_error(const ProcessInfo& info, const EnvLookup& env) {
  if (info.launcher != "slurm" || info.world <= 1) return "";
  for (const char* v : {"PMIX_RANK", "PMIX_NAMESPACE", "PMI_RANK", "PMI_FD"})
    if (env_set(env, v)) return "";
  return cat("srun started ", info.world,
             " tasks without a PMI interface for MPI to find its peers: run `srun --mpi=pmix ...` "
             "(or set MpiDefault=pmix in slurm.conf; `srun --mpi=list` shows what this Slurm has)");
}

const char* real_env(const char* name) { return std::getenv(name); }

ProcessInfo discover_process() { return discover_process(real_env); }

namespace {

// Under a launcher, unless OMP_NUM_THREADS says otherwise: each rank's OpenMP loops and OpenBLAS
// (one shared pool) get its share of the cores it may run on, cores / ranks on the node, at
// least 1. The OpenMP default (every core in every rank) oversubscribes a node with more than
// one rank, and spinning OpenMP threads then take the cores from the other ranks' compute.
void share_cores() {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 1;
  MPI_Comm_size(node, &local);
  MPI_Comm_free(&node);
  cpu_set_t set;
  const int cores = sched_getaffinity(0, sizeof set, &set) == 0
                        ? CPU_COUNT(&set)
                        : (int)std::max(1u, std::thread::hardware_concurrency());
  const int share = std::max(1, cores / std::max(1, local));
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(share);
  if (!std::getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(omp_get_max_threads());
}

}  // namespace

ProcessContext::ProcessContext(DeviceKind device) : ProcessContext(discover_process(), device) {}

ProcessContext::ProcessContext(const ProcessInfo& info, DeviceKind device) : info_(info) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_context) fail("only one ProcessContext may exist at a time");
    g_context = this;
  }
  uncaught_at_start_ = std::uncaught_exceptions();
  try {
    if (const std::string e = launch_error(info_, real_env); !e.empty()) fail_on_rank0(info_, e);
    if (info_.launcher != "none") {
      int initialised = 0;
      MPI_Initialized(&initialised);
      if (initialised) fail("MPI is already initialised");
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        fail("MPI_Init_thread failed");
      mpi_ = true;
      if (provided < MPI_THREAD_MULTIPLE)
        fail("this MPI library does not provide MPI_THREAD_MULTIPLE (got level ", provided,
             "); zerotrain's communication thread needs it");
      int rank = 0, size = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      if (rank != info_.rank || size != info_.world)
        fail("MPI says rank ", rank, " of ", size, " but the ", info_.launcher,
             " environment says rank ", info_.rank, " of ", info_.world,
             " (was zerotrain started by the launcher directly?)");
    }
    if (mpi_) share_cores();
    if (device == DeviceKind::cuda) cuda_select_device(info_.local_rank);
  } catch (...) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_context = nullptr;
    throw;
  }
}

ProcessContext::~ProcessContext() {
  bool normal = std::uncaught_exceptions() <= uncaught_at_start_;
  std::vector<std::function<void(bool)>> hooks;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    hooks.swap(shutdown_hooks());
  }
  for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) (*it)(normal);
  if (mpi_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // After an error on this rank the others may be inside a collective with us: MPI_Finalize
    // would wait for them forever. Leaving MPI unfinalised makes the launcher end the job.
    if (!finalized && (normal || info_.world == 1)) MPI_Finalize();
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  g_context = nullptr;
}

const ProcessContext* process_context() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_context;
}

void at_process_shutdown(std::function<void(bool)> fn) {
  std::lock_guard<std::mutex> lock(g_mutex);
  shutdown_hooks().push_back(std::move(fn));
}

void abort_job(const std::string& message, int code) {
  int rank = 0, initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  bool live = initialised && !finalized;
  if (live) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "zerotrain: rank %d: %s\n", rank, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (live) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void fail_on_rank0(const ProcessInfo& info, const std::string& message) {
  if (info.rank == 0) fail(message);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::fflush(stdout);
  std::exit(2);
}

}  // namespace zt
