/*
 * bench_adamw.cpp: `zerotrain bench adamw`. One process measures a STREAM triad and the AdamW
 * kernel (optim/adamw_simd.h) on the same OpenMP threads over arrays much larger than the caches,
 * and prints per impl (SPEC section 3)
 *   {"bench":"adamw","impl":"avx512","params":N,"gparams_per_s":x,"gbs":y,"triad_gbs":z,"threads":T}
 * (with --dtype bf16|fp16 the line adds "dtype"). Bytes counted are the bytes each must move,
 * write-allocate reads never counted:
 *   AdamW  28 per parameter: read p, m, v, g (16), write p, m, v (12); +2 for the 16-bit copy.
 *          p, m and v are read before they are written, so for them no write-allocate traffic
 *          exists; only the 16-bit copy (write-only) has an uncounted one.
 *   triad  24 per element: read b, c (16), write a (8). It runs twice: with plain stores (the CPU
 *          also reads each line of a first, uncounted, as in STREAM) and with non-temporal stores
 *          (no such read). triad_gbs is the better of the two, i.e. the machine's bandwidth, not a
 *          figure lowered by hidden traffic.
 * Both take the best of several timed passes; the triads run before and after the kernels and the
 * best is reported, so a burst of load from elsewhere does not flatter the ratio. stderr gets the
 * two triad figures and, per impl, a bare loop with the kernel's traffic over the kernel's own
 * buffers (its memory ceiling: on this machine the 4-read/3-write pattern streams faster than the
 * triad's 2-read/1-write, and where large arrays land matters).
 */
#include "launch/bench_adamw.h"

#include <omp.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "optim/adamw_simd.h"
#include "runtime/alloc.h"
#include "runtime/error.h"
#include "runtime/options.h"

namespace zt {
namespace {

// 3 x 160 MB, 15x a 32 MiB L3. Not a power of two: on the development machine, arrays 2^27 B
// (+ the allocator's 4 KiB) apart run much slower (docs/performance.md, "AdamW kernel").
constexpr int64_t kTriadElems = 20'000'000;
#if defined(__SSE2__)
constexpr bool kHaveStreamingStores = true;
#else
constexpr bool kHaveStreamingStores = false;
#endif

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// omp_set_num_threads for a scope.
struct OmpThreads {
  int saved = omp_get_max_threads();
  explicit OmpThreads(int t) { omp_set_num_threads(t); }
  ~OmpThreads() { omp_set_num_threads(saved); }
};

std::vector<AdamWImpl> parse_impls(const std::string& s) {
  const AdamWImpl all[] = {AdamWImpl::avx512, AdamWImpl::avx2, AdamWImpl::scalar,
                           AdamWImpl::reference};
  std::vector<AdamWImpl> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = std::min(s.find(',', pos), s.size());
    std::string name = s.substr(pos, end - pos);
    pos = end + 1;
    if (name == "all") {
      for (AdamWImpl i : all)
        if (adamw_impl_available(i)) out.push_back(i);
      continue;
    }
    auto it = std::find_if(std::begin(all), std::end(all),
                           [&](AdamWImpl i) { return name == adamw_impl_name(i); });
    if (it == std::end(all))
      fail("--impls: unknown impl '", name, "' (expected all, avx512, avx2, scalar, reference)");
    if (!adamw_impl_available(*it)) fail("--impls: this CPU cannot run ", name);
    out.push_back(*it);
  }
  return out;
}

struct AdamWTimes {
  double kernel_s;  // best seconds per AdamW step
  double bare_s;    // best seconds per pass of the bare loop with the same memory traffic
};

// Times `steps` AdamW steps over n parameters (after one warm-up step), then as many passes of a
// loop with the kernel's traffic and no arithmetic to speak of (p, m, v = x/2 + g, and the 16-bit
// copy) over the same buffers: the kernel's own memory ceiling, free of where the arrays landed.
AdamWTimes time_adamw(AdamWImpl impl, DType dtype, int64_t n, int steps) {
  Buffer<float> p(n, MemCategory::params), m(n, MemCategory::optim), v(n, MemCategory::optim);
  Buffer<float> g(n, MemCategory::grads);
  Buffer<uint16_t> p16(dtype == DType::fp32 ? 0 : n, MemCategory::params);
  // values in [-1, 1): no denormals, no infinities, so the timing is the arithmetic's
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    p[i] = (float)((i * 7919) % 2000) / 1000.0f - 1.0f;
    g[i] = (float)((i * 104729) % 2000) / 1000.0f - 1.0f;
  }
  AdamWConfig c;
  AdamWOptions o;
  o.impl = impl;
  if (dtype != DType::fp32) o.p16 = p16.data(), o.p16_dtype = dtype;
  AdamWTimes t = {1e30, 1e30};
  for (int s = 0; s <= steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    adamw_step_simd(p.data(), m.data(), v.data(), g.data(), n, s + 1, 1e-4f, c, true, o);
    if (s > 0) t.kernel_s = std::min(t.kernel_s, seconds_since(t0));
  }
  float *pp = p.data(), *pm = m.data(), *pv = v.data();
  const float* pg = g.data();
  uint16_t* ph = o.p16;
  for (int s = 0; s <= steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    if (ph) {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        float x = pp[i] * 0.5f + pg[i];
        pp[i] = x, pm[i] = pm[i] * 0.5f + pg[i], pv[i] = pv[i] * 0.5f + pg[i];
        ph[i] = (uint16_t)(std::bit_cast<uint32_t>(x) >> 16);
      }
    } else {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        pp[i] = pp[i] * 0.5f + pg[i], pm[i] = pm[i] * 0.5f + pg[i], pv[i] = pv[i] * 0.5f + pg[i];
      }
    }
    if (s > 0) t.bare_s = std::min(t.bare_s, seconds_since(t0));
  }
  return t;
}

}  // namespace

double measure_triad_gbs(int64_t n, int threads, int repeat, bool nontemporal) {
  ZT_CHECK(n > 0 && threads >= 1 && repeat >= 1, "n=", n, " threads=", threads, " repeat=", repeat);
  OmpThreads scope(threads);
  Buffer<double> a(n, MemCategory::buffers), b(n, MemCategory::buffers), c(n, MemCategory::buffers);
  double* pa = a.data();
  const double* pb = b.data();
  const double* pc = c.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) b[i] = 1.0, c[i] = 2.0;
  const double s = 3.0;
  double best = 1e30;
  for (int r = 0; r <= repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    if (!nontemporal) {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
    } else {
#if defined(__SSE2__)
      // pairs of doubles from 64-byte aligned buffers (the tracked allocator's alignment)
      const int64_t pairs = n / 2;
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < pairs; ++k)
        _mm_stream_pd(pa + 2 * k, _mm_add_pd(_mm_load_pd(pb + 2 * k),
                                             _mm_mul_pd(_mm_set1_pd(s), _mm_load_pd(pc + 2 * k))));
      if (n % 2) pa[n - 1] = pb[n - 1] + s * pc[n - 1];
      _mm_sfence();
#else
      ZT_CHECK(false, "non-temporal triad needs SSE2");
#endif
    }
    if (r > 0) best = std::min(best, seconds_since(t0));  // pass 0 warms up the pool
  }
  ZT_CHECK(a[0] == 7.0 && a[n - 1] == 7.0, "triad result ", a[0], ", ", a[n - 1]);
  return 24.0 * (double)n / best / 1e9;
}

int bench_adamw(int argc, char** argv) {
  po::options_description opts("bench adamw");
  opts.add_options()("params", po::value<int64_t>()->default_value(32'000'000),
                     "parameters per step (0.9 GB moved at the default: memory bound)")(
      "threads", po::value<int>()->default_value(omp_get_max_threads()),
      "OpenMP threads for the kernel and the triad (default: OMP_NUM_THREADS, else all cores)")(
      "steps", po::value<int>()->default_value(10), "timed steps per impl; the best is printed")(
      "dtype", po::value<std::string>()->default_value("fp32"),
      "fp32 (master only) | bf16 | fp16 (also write a 16-bit copy of the parameters)")(
      "impls", po::value<std::string>()->default_value("all"),
      "comma list of avx512, avx2, scalar, reference; all = those this CPU runs");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain bench adamw [flags]", opts, vm)) return 0;
  require_min(vm, "params", 1);
  require_min(vm, "threads", 1);
  require_min(vm, "steps", 1);
  require_choice(vm, "dtype", {"fp32", "bf16", "fp16"});
  const int64_t n = vm["params"].as<int64_t>();
  const int threads = vm["threads"].as<int>(), steps = vm["steps"].as<int>();
  const DType dtype = dtype_from_name(vm["dtype"].as<std::string>());
  const std::vector<AdamWImpl> impls = parse_impls(vm["impls"].as<std::string>());
  const double bytes = 28.0 + (dtype == DType::fp32 ? 0.0 : 2.0);

  // the machine's best triad: plain stores (which also read a in, uncounted) and streaming stores
  double triad[2] = {0, 0};  // plain, non-temporal
  auto run_triads = [&] {
    for (int nt = 0; nt < (kHaveStreamingStores ? 2 : 1); ++nt)
      triad[nt] = std::max(triad[nt], measure_triad_gbs(kTriadElems, threads, 10, nt == 1));
  };
  run_triads();
  std::vector<AdamWTimes> times;
  {
    OmpThreads scope(threads);
    for (AdamWImpl impl : impls) times.push_back(time_adamw(impl, dtype, n, steps));
  }
  run_triads();
  auto gbs = [&](double s) { return std::round(n * bytes / s / 1e7) / 1e2; };
  std::cerr << "triad GB/s (24 B per element): plain stores " << std::round(triad[0] * 100) / 100
            << ", non-temporal stores " << std::round(triad[1] * 100) / 100 << "\n";
  for (size_t k = 0; k < impls.size(); ++k)
    std::cerr << adamw_impl_name(impls[k]) << ": bare loop with the same traffic over the same "
              << "buffers " << gbs(times[k].bare_s) << " GB/s, kernel "
              << std::round(times[k].bare_s / times[k].kernel_s * 100) / 100 << " of it\n";
  const double triad_best = std::max(triad[0], triad[1]);
  for (size_t k = 0; k < impls.size(); ++k) {
    nlohmann::ordered_json line = {{"bench", "adamw"},
                                   {"impl", adamw_impl_name(impls[k])},
                                   {"params", n},
                                   {"gparams_per_s", std::round(n / times[k].kernel_s / 1e6) / 1e3},
                                   {"gbs", gbs(times[k].kernel_s)},
                                   {"triad_gbs", std::round(triad_best * 100) / 100},
                                   {"threads", threads}};
    if (dtype != DType::fp32) line["dtype"] = dtype_name(dtype);
    std::cout << line.dump() << std::endl;
  }
  return 0;
}

}  // namespace zt
