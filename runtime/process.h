// process.h: who this process is in the job, and the lifetime of MPI.
//
// Rank, world size and local rank come from the launcher's environment, read before MPI starts:
//   Open MPI (mpirun):  OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
//   Slurm (srun):       SLURM_PROCID, SLURM_NTASKS (SLURM_STEP_NUM_TASKS when set), SLURM_LOCALID
//   neither:            a single process (rank 0 of 1); MPI is not initialised at all.
// Open MPI's variables win when both are present (mpirun inside a Slurm allocation).
//
// ProcessContext initialises MPI with MPI_THREAD_MULTIPLE when a launcher started the process
// (the MPI communicators are progressed by a communication thread while the compute thread may
// call MPI too), checks that MPI agrees with the environment, and in CUDA runs selects GPU
// `local_rank % device_count`. Create one, early, in the subcommand that needs it.
//
// Failure: a ProcessContext destroyed by an exception (a zt::Error leaving the subcommand) does
// NOT call MPI_Finalize, which would wait for ranks that may never arrive. The process then exits
// non-zero with MPI unfinalised, and the launcher (mpirun; srun --kill-on-bad-exit) ends the other
// ranks, naming the one that failed. abort_job() ends the whole job at once from any thread.
#pragma once
#include <functional>
#include <string>

#include "runtime/device.h"

namespace zt {

struct ProcessInfo {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::string launcher = "none";  // "openmpi" | "slurm" | "none"
};

// Reads the variables above through `env` (nullptr = unset). A variable that is set but not a
// number, or values that do not fit together (rank >= world), raise zt::Error naming the variable.
using EnvLookup = std::function<const char*(const char* name)>;
ProcessInfo discover_process(const EnvLookup& env);
ProcessInfo discover_process();          // from the real environment
const char* real_env(const char* name);  // std::getenv, as an EnvLookup

// Why MPI cannot start in this environment, before it is touched ("" when it can): srun started
// several tasks with no PMI for Open MPI to find its peers (a cluster whose MpiDefault is none,
// `srun` without `--mpi=pmix`), where MPI_Init would die with Open MPI's multi-line abort.
std::string launch_error(const ProcessInfo& info, const EnvLookup& env);

class ProcessContext {
 public:
  explicit ProcessContext(DeviceKind device = DeviceKind::cpu);
  ProcessContext(const ProcessInfo& info, DeviceKind device);
  ~ProcessContext();
  ProcessContext(const ProcessContext&) = delete;
  ProcessContext& operator=(const ProcessContext&) = delete;

  const ProcessInfo& info() const { return info_; }
  int rank() const { return info_.rank; }
  int world() const { return info_.world; }
  int local_rank() const { return info_.local_rank; }
  bool mpi() const { return mpi_; }  // MPI was initialised (a launcher started us)

 private:
  ProcessInfo info_;
  bool mpi_ = false;
  int uncaught_at_start_ = 0;
};

// The live context (nullptr before one exists or after it is gone).
const ProcessContext* process_context();

// Runs `fn` when the live context shuts down, before MPI_Finalize (latest registered first); the
// communication layer stops its thread here. `normal` is false when an exception ends the context.
void at_process_shutdown(std::function<void(bool normal)> fn);

// Prints "zerotrain: rank R: MESSAGE" on stderr and ends every rank of the job with `code`
// (MPI_Abort when MPI is up, else std::_Exit). Safe from any thread.
[[noreturn]] void abort_job(const std::string& message, int code = 3);

// Before functions that are the same on every rank (flag validation): rank 0 raises the error as a
// zt::Error (main prints the one line, exit status 2); every other rank exits with status 2
// without printing, a moment later, so the line is out before the launcher ends the job.
[[noreturn]] void fail_on_rank0(const ProcessInfo& info, const std::string& message);

}  // namespace zt
