// build_info.h: what this zerotrain binary is, for `zerotrain version`, the head of every metrics
// file and every checkpoint manifest: version, git commit, compiler, the CPU instruction sets it
// was compiled for and the ones this machine has, and the libraries' versions (MPI, HDF5,
// OpenBLAS; CUDA and NCCL in CUDA builds).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace zt {

nlohmann::json build_info();
std::string build_info_text();  // the same, one "key: value" per line

}  // namespace zt
