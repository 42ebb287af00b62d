// build_info.cpp: the build facts (build_info.h).
#include "launch/build_info.h"

#include <H5public.h>
#include <cblas.h>
#include <mpi.h>

#include <cstdio>

#include "parallel/comm/comm.h"
#include "runtime/isa.h"
#include "zt_git.h"
#ifdef ZT_CUDA
#include <cuda_runtime_api.h>
#endif

namespace zt {

namespace {

std::string isa_compiled() {
  std::string s = "x86-64";
#if defined(__AVX2__)
  s += " avx2";
#endif
#if defined(__FMA__)
  s += " fma";
#endif
#if defined(__AVX512F__)
  s += " avx512f";
#endif
#if defined(__AVX512BF16__)
  s += " avx512bf16";
#endif
#if defined(__AVX512VNNI__)
  s += " avx512vnni";
#endif
  return s;
}

std::string isa_machine() {
  std::string s;
  __builtin_cpu_init();
  for (auto [name, on] : {std::pair{"avx2", __builtin_cpu_supports("avx2")},
                          std::pair{"fma", __builtin_cpu_supports("fma")},
                          std::pair{"avx512f", __builtin_cpu_supports("avx512f")},
                          std::pair{"avx512vnni", __builtin_cpu_supports("avx512vnni")}})
    if (on) {
      if (!s.empty()) s += ' ';
      s += name;
    }
  return s.empty() ? "x86-64" : s;
}

// The ISA the ZT_DISPATCH kernels run at on this machine (runtime/isa.h): "native" in a
// -DZT_NATIVE=ON build, else the x86-64 level the loader's resolver picks.
std::string isa_dispatch() {
#if !ZT_DISPATCH_ENABLED
#if defined(ZT_NATIVE_BUILD)
  return "native";
#else
  return "none (compiled for the build's ISA)";
#endif
#else
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
  return "x86-64";
#endif
}

std::string mpi_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  MPI_Get_library_version(v, &n);  // callable before MPI_Init
  std::string s(v, (size_t)n);
  const size_t nl = s.find_first_of("\r\n,");
  return s.substr(0, nl);
}

std::string hdf5_version() {
  unsigned a = 0, b = 0, c = 0;
  H5get_libversion(&a, &b, &c);
  return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c);
}

std::string openblas_version() {
  const char* cfg = openblas_get_config();
  return cfg ? cfg : "unknown";
}

}  // namespace

nlohmann::json build_info() {
  nlohmann::json j = {{"version", ZT_VERSION},         {"commit", ZT_GIT_COMMIT},
                      {"compiler", ZT_CXX_COMPILER},   {"isa_compiled", isa_compiled()},
                      {"isa_machine", isa_machine()},  {"isa_dispatch", isa_dispatch()},
                      {"mpi", mpi_version()},          {"hdf5", hdf5_version()},
                      {"openblas", openblas_version()}};
#ifdef ZT_CUDA
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  j["device"] = "cpu, cuda";
  j["cuda_runtime"] = std::to_string(rt / 1000) + "." + std::to_string(rt % 1000 / 10);
  j["nccl"] = nccl_version();
#else
  j["device"] = "cpu (built without CUDA)";
#endif
  return j;
}

std::string build_info_text() {
  const nlohmann::json j = build_info();
  std::string s = "zerotrain " + j["version"].get<std::string>() + "\n";
  for (const auto& [k, v] : j.items())
    if (k != "version") s += "  " + k + ": " + v.get<std::string>() + "\n";
  return s;
}

}  // namespace zt
