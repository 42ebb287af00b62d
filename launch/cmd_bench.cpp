// cmd_bench.cpp: `zerotrain bench WHAT [flags]`, micro-benchmarks that print one JSON object per
// line (SPEC section 3). Each benchmark is a function `bench_WHAT(argc, argv)` (argv[0] = WHAT)
// listed in kBenches; adding one is a function and a table row.
//   gemm: {"bench":"gemm","m":M,"n":N,"k":K,"threads":T,"gflops":g} per --sizes entry; with
//         --device cuda the line adds "device":"cuda" (threads 0), with --dtype bf16
//         "dtype":"bf16".
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "launch/bench_adamw.h"
#include "launch/bench_comm.h"
#include "launch/bench_gemm.h"
#include "launch/bench_io.h"
#include "launch/command.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/options.h"

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace zt {
namespace {

// ---- gemm
// ----------------------------------------------------------------------------------------

struct GemmSize {
  int m, n, k;
};

// "1024x688x256,256x256x256" -> sizes; anything else names the offending entry.
std::vector<GemmSize> parse_sizes(const std::string& s) {
  std::vector<GemmSize> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = std::min(s.find(',', pos), s.size());
    std::string item = s.substr(pos, end - pos);
    int v[3] = {0, 0, 0};
    const char* p = item.data();
    const char* last = item.data() + item.size();
    bool ok = true;
    for (int i = 0; i < 3 && ok; ++i) {
      auto r = std::from_chars(p, last, v[i]);
      ok = r.ec == std::errc() && v[i] > 0 &&
           (i == 2 ? r.ptr == last : r.ptr < last && *r.ptr == 'x');
      p = r.ptr + 1;
    }
    if (!ok) fail("--sizes: '", item, "' is not MxNxK with positive integers (in '", s, "')");
    out.push_back({v[0], v[1], v[2]});
    pos = end + 1;
  }
  return out;
}

int default_threads() {
  if (const char* e = std::getenv("OPENBLAS_NUM_THREADS"))
    if (int t = std::atoi(e); t > 0) return t;
  return std::max(1, (int)std::thread::hardware_concurrency());
}

// Device memory released on every path out of measure_gemm.
struct DeviceBuffer {
  DeviceKind kind;
  void* p;
  DeviceBuffer(DeviceKind k, size_t bytes)
      : kind(k), p(device_alloc(k, bytes, MemCategory::buffers)) {}
  ~DeviceBuffer() { device_free(kind, p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

struct BlasThreads {
  int saved = openblas_get_num_threads();
  explicit BlasThreads(int t) { openblas_set_num_threads(t); }
  ~BlasThreads() { openblas_set_num_threads(saved); }
};

int bench_gemm(int argc, char** argv) {
  po::options_description opts("bench gemm");
  opts.add_options()("sizes",
                     po::value<std::string>()->default_value(
                         "1024x688x256,1024x256x688,256x256x256,1024x1024x1024"),
                     "comma list of MxNxK: C[M,N] = A[M,K] B[K,N], row-major")(
      "threads", po::value<int>()->default_value(default_threads()),
      "OpenBLAS threads (default: OPENBLAS_NUM_THREADS, else the number of cores)")(
      "repeat", po::value<int>()->default_value(3),
      "timed trials per size, each >= 0.2 s; the median is printed")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu|cuda")(
      "dtype", po::value<std::string>()->default_value("fp32"),
      "fp32 (sgemm) | bf16 (bf16 inputs, fp32 accumulate and output)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain bench gemm [flags]", opts, vm)) return 0;
  require_min(vm, "threads", 1);
  require_min(vm, "repeat", 1);
  require_choice(vm, "device", {"cpu", "cuda"});
  require_choice(vm, "dtype", {"fp32", "bf16"});
  auto sizes = parse_sizes(vm["sizes"].as<std::string>());
  DeviceKind device = device_from_name(vm["device"].as<std::string>());
  if (device == DeviceKind::cuda) cuda_select_device(0);
  int threads = vm["threads"].as<int>();
  bool bf16 = vm["dtype"].as<std::string>() == "bf16";

  for (const GemmSize& s : sizes) {
    double g = measure_gemm(device, s.m, s.n, s.k, threads, vm["repeat"].as<int>(), 0.2, bf16);
    nlohmann::ordered_json line = {{"bench", "gemm"},
                                   {"m", s.m},
                                   {"n", s.n},
                                   {"k", s.k},
                                   {"threads", device == DeviceKind::cpu ? threads : 0},
                                   {"gflops", std::round(g * 100) / 100}};
    if (device == DeviceKind::cuda) line["device"] = "cuda";
    if (bf16) line["dtype"] = "bf16";
    std::cout << line.dump() << std::endl;
  }
  return 0;
}

// ---- dispatch
// ------------------------------------------------------------------------------------

struct Bench {
  const char* name;
  const char* summary;
  CommandFn fn;
};
const Bench kBenches[] = {
    {"gemm", "sgemm GFLOP/s per matrix size (OpenBLAS on cpu, cuBLAS on cuda)", bench_gemm},
    {"comm", "collective time and bus bandwidth, zerotrain next to MPI (run under mpirun)",
     bench_comm},
    {"adamw", "CPU AdamW kernel per impl: parameters/s and GB/s next to a same-run triad",
     bench_adamw},
    {"io", "checkpoint write/read GB/s next to plain sequential write/read, same disk", bench_io},
};

std::string bench_names() {
  std::string names;
  for (const Bench& b : kBenches) {
    if (!names.empty()) names += '|';
    names += b.name;
  }
  return names;
}

int cmd_bench(int argc, char** argv) {
  if (argc >= 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))) {
    std::cout << "usage: zerotrain bench {" << bench_names() << "} [flags]   (bench WHAT --help)\n";
    for (const Bench& b : kBenches) std::cout << "  " << b.name << "  " << b.summary << "\n";
    return 0;
  }
  if (argc < 2 || argv[1][0] == '-')
    fail("bench needs a benchmark name first: zerotrain bench {", bench_names(), "} [flags]");
  for (const Bench& b : kBenches)
    if (!std::strcmp(argv[1], b.name)) return b.fn(argc - 1, argv + 1);
  fail("unknown benchmark '", argv[1], "' (available: ", bench_names(), ")");
}

}  // namespace

double measure_gemm(DeviceKind device, int m, int n, int k, int threads, int repeat,
                    double min_seconds, bool bf16) {
  ZT_CHECK(m > 0 && n > 0 && k > 0 && threads >= 1 && repeat >= 1, "m=", m, " n=", n, " k=", k,
           " threads=", threads, " repeat=", repeat);
  BlasThreads blas(device == DeviceKind::cpu ? threads : openblas_get_num_threads());
  size_t elt = bf16 ? 2 : 4;
  DeviceBuffer A(device, (size_t)m * k * elt), B(device, (size_t)k * n * elt);
  DeviceBuffer C(device, (size_t)m * n * 4);
  // Inputs in [-1, 1): no denormals, no overflow, so the timing is the arithmetic's.
  for (auto [buf, count] : {std::pair{&A, (size_t)m * k}, std::pair{&B, (size_t)k * n}}) {
    std::vector<float> f(count);
    std::vector<uint16_t> h(bf16 ? count : 0);
    for (size_t i = 0; i < count; ++i) f[i] = (float)((i * 7919) % 2000) / 1000.0f - 1.0f;
    for (size_t i = 0; i < h.size(); ++i) h[i] = fp32_to_bf16(f[i]);
    device_copy(buf->p, device, bf16 ? (void*)h.data() : (void*)f.data(), DeviceKind::cpu,
                count * elt);
  }
  Stream stream = create_stream(device);
  Event start = create_event(device, /*timing=*/true), end = create_event(device, true);
  auto run = [&](long calls) {  // seconds for `calls` back-to-back gemms
    start.record(&stream);
    for (long i = 0; i < calls; ++i) {
      if (bf16)
        gemm_bf16(device, false, false, m, n, k, 1.0f, static_cast<const uint16_t*>(A.p), k,
                  static_cast<const uint16_t*>(B.p), n, 0.0f, C.p, DType::fp32, n, &stream);
      else
        gemm(device, false, false, m, n, k, 1.0f, static_cast<const float*>(A.p), k,
             static_cast<const float*>(B.p), n, 0.0f, static_cast<float*>(C.p), n, &stream);
    }
    end.record(&stream);
    end.sync();
    return std::max(1e-9, event_elapsed_ms(start, end) / 1e3);
  };
  run(2);  // warm-up: BLAS buffers, cuBLAS handle and kernel selection
  double per_call = run(1);
  std::vector<double> rates;
  for (int r = 0; r < repeat; ++r) {
    long calls = std::clamp((long)std::ceil(min_seconds * 1.05 / per_call), 1L, 1L << 30);
    double t = run(calls);
    while (t < min_seconds) {  // the estimate was optimistic: scale up and time again
      calls = std::clamp((long)std::ceil(calls * min_seconds * 1.1 / t), calls + 1, 1L << 30);
      t = run(calls);
    }
    per_call = t / calls;
    rates.push_back(2.0 * m * n * k * calls / t / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

ZT_COMMAND("bench", "micro-benchmarks, one JSON line each: bench gemm|comm|adamw|io", cmd_bench);

}  // namespace zt
