// Rank discovery from the launcher's environment (no MPI): Open MPI, Slurm, neither, both, and
// malformed values, each named in the error.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "runtime/error.h"
#include "runtime/process.h"

namespace zt {
namespace {

ProcessInfo discover(const std::map<std::string, std::string>& env) {
  return discover_process([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& env) {
  try {
    discover(env);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ProcessDiscovery, NoLauncherIsOneProcess) {
  ProcessInfo p = discover({});
  EXPECT_EQ(p.rank, 0);
  EXPECT_EQ(p.world, 1);
  EXPECT_EQ(p.local_rank, 0);
  EXPECT_EQ(p.launcher, "none");
}

TEST(ProcessDiscovery, OpenMpi) {
  ProcessInfo p = discover({{"OMPI_COMM_WORLD_RANK", "5"},
                            {"OMPI_COMM_WORLD_SIZE", "8"},
                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(p.rank, 5);
  EXPECT_EQ(p.world, 8);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.launcher, "openmpi");
}

TEST(ProcessDiscovery, Slurm) {
  ProcessInfo p = discover({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "3"}});
  EXPECT_EQ(p.rank, 3);
  EXPECT_EQ(p.world, 4);
  EXPECT_EQ(p.local_rank, 3);
  EXPECT_EQ(p.launcher, "slurm");
  // A job step's own task count wins over the allocation's.
  p = discover({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "16"}, {"SLURM_STEP_NUM_TASKS", "2"}});
  EXPECT_EQ(p.world, 2);
  EXPECT_EQ(p.local_rank, 0);
}

TEST(ProcessDiscovery, OpenMpiWinsInsideASlurmAllocation) {
  ProcessInfo p = discover({{"SLURM_PROCID", "0"},
                            {"SLURM_NTASKS", "1"},
                            {"OMPI_COMM_WORLD_RANK", "2"},
                            {"OMPI_COMM_WORLD_SIZE", "3"}});
  EXPECT_EQ(p.launcher, "openmpi");
  EXPECT_EQ(p.rank, 2);
  EXPECT_EQ(p.world, 3);
}

TEST(ProcessDiscovery, MalformedValuesNameTheVariable) {
  EXPECT_NE(error_of({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}})
                .find("OMPI_COMM_WORLD_RANK='x'"),
            std::string::npos);
  EXPECT_NE(error_of({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"}})
                .find("not below OMPI_COMM_WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(error_of({{"OMPI_COMM_WORLD_RANK", "0"}}).find("OMPI_COMM_WORLD_SIZE"),
            std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "0"}}).find("SLURM_NTASKS is not"), std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "0"}}).find("SLURM_NTASKS='0'"),
            std::string::npos);
  EXPECT_NE(error_of({{"SLURM_PROCID", "-1"}, {"SLURM_NTASKS", "2"}}).find("SLURM_PROCID='-1'"),
            std::string::npos);
}

TEST(ProcessDiscovery, SrunWithoutPmiIsOneLineBeforeMpi) {
  auto lookup = [](const std::map<std::string, std::string>& env) {
    return [env](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    };
  };
  const std::map<std::string, std::string> srun = {
      {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}};
  const ProcessInfo info = discover(srun);
  EXPECT_NE(launch_error(info, lookup(srun)).find("srun --mpi=pmix"), std::string::npos);
  for (const char* pmi : {"PMIX_RANK", "PMI_FD"}) {
    std::map<std::string, std::string> with = srun;
    with.emplace(pmi, "0");
    EXPECT_EQ(launch_error(info, lookup(with)), "") << pmi;
  }
  const std::map<std::string, std::string> one = {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}};
  EXPECT_EQ(launch_error(discover(one), lookup(one)), "");  // a singleton needs no PMI
  const std::map<std::string, std::string> ompi = {{"OMPI_COMM_WORLD_SIZE", "2"},
                                                   {"OMPI_COMM_WORLD_RANK", "0"}};
  EXPECT_EQ(launch_error(discover(ompi), lookup(ompi)), "");
}

TEST(ProcessDiscovery, NoContextBeforeOneIsCreated) { EXPECT_EQ(process_context(), nullptr); }

}  // namespace
}  // namespace zt
