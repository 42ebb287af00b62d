// bench_comm.cpp: `zerotrain bench comm` — zerotrain's collectives next to the MPI library's own,
// measured in the same run on the same buffers.
//
// Per op, size and implementation: a warm-up call (also checked against the expected values),
// then --repeat timed runs, each between barriers, of k back-to-back calls (k so that a run takes
// >= 5 ms); time_ms is the fastest run divided by k, as seen by the slowest rank. Bus bandwidth
// as nccl-tests defines it, S the whole buffer in bytes and n ranks:
//   all_reduce S/t * 2(n-1)/n;  reduce_scatter, all_gather, all_to_all S/t * (n-1)/n;
//   broadcast S/t.
// S is rounded down to a multiple of n elements. Buffers are page-aligned and, with
// --hugepages on (default), backed by 2 MiB transparent huge pages (see docs/communication.md).
#include "launch/bench_comm.h"

#include <mpi.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "parallel/comm/comm.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/options.h"
#include "runtime/process.h"

namespace zt {
namespace {

const char* kOps[] = {"all_reduce", "reduce_scatter", "all_gather", "all_to_all", "broadcast"};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = std::min(s.find(',', pos), s.size());
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

// "64MB", "512K", "1G", "4096" -> bytes (K/M/G are powers of 1024; a trailing B or iB is fine).
size_t parse_bytes(const std::string& item) {
  size_t i = 0;
  while (i < item.size() && std::isdigit((unsigned char)item[i])) ++i;
  std::string unit = item.substr(i);
  for (auto& ch : unit) ch = (char)std::toupper((unsigned char)ch);
  size_t mult = 0;
  if (unit == "" || unit == "B") mult = 1;
  if (unit == "K" || unit == "KB" || unit == "KIB") mult = 1ull << 10;
  if (unit == "M" || unit == "MB" || unit == "MIB") mult = 1ull << 20;
  if (unit == "G" || unit == "GB" || unit == "GIB") mult = 1ull << 30;
  if (i == 0 || mult == 0) fail("--sizes: '", item, "' is not a size like 64MB, 512K or 4096");
  return std::stoull(item.substr(0, i)) * mult;
}

// Page-aligned host memory, optionally on transparent huge pages, touched before use.
struct HostBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  HostBuffer(size_t n, bool huge) : bytes(std::max<size_t>(n, 1)) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("bench comm: cannot map ", bytes, " bytes");
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
    std::memset(p, 0, bytes);
  }
  ~HostBuffer() { munmap(p, bytes); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
};

double max_over_ranks(double v, bool mpi) {
  if (mpi) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return v;
}
void world_barrier(bool mpi) {
  if (mpi) MPI_Barrier(MPI_COMM_WORLD);
}

double bus_factor(const std::string& op, int n) {
  if (op == "all_reduce") return 2.0 * (n - 1) / n;
  if (op == "broadcast") return 1.0;
  return 1.0 * (n - 1) / n;
}

// Input values are small integers (exact in bf16 and fp16): element i of rank r is
// r + 1 + i % 5, so every result is known.
float input_value(int rank, size_t i) { return (float)(rank + 1 + i % 5); }

void fill(void* p, size_t count, DType dt, int rank) {
  for (size_t i = 0; i < count; ++i) {
    float v = input_value(rank, i);
    if (dt == DType::fp32) static_cast<float*>(p)[i] = v;
    if (dt == DType::bf16) static_cast<uint16_t*>(p)[i] = fp32_to_bf16(v);
    if (dt == DType::fp16) static_cast<uint16_t*>(p)[i] = fp32_to_fp16(v);
  }
}
float load(const void* p, size_t i, DType dt) {
  if (dt == DType::fp32) return static_cast<const float*>(p)[i];
  if (dt == DType::bf16) return bf16_to_fp32(static_cast<const uint16_t*>(p)[i]);
  return fp16_to_fp32(static_cast<const uint16_t*>(p)[i]);
}

// One benchmarked case: buffers laid out for `op` with `count` elements in all.
struct Case {
  std::string op;
  size_t count;  // whole buffer, a multiple of n
  DType dt;
  int n, rank;
  HostBuffer send, recv;
  // Where the communicator reads and writes: the host buffers, or copies on the GPU (--device
  // cuda).
  DeviceKind device;
  void* dsend;
  void* drecv;
  Case(const std::string& o, size_t c, DType d, int n_, int r, bool huge, DeviceKind dev)
      : op(o),
        count(c),
        dt(d),
        n(n_),
        rank(r),
        send(c * dtype_size(d), huge),
        recv(c * dtype_size(d), huge),
        device(dev) {
    size_t block = count / n;
    if (op == "all_gather")
      fill(send.p, block, dt, rank);
    else
      fill(send.p, count, dt, rank);
    dsend = send.p, drecv = recv.p;
    if (device == DeviceKind::cuda) {
      dsend = device_alloc(device, send.bytes, MemCategory::buffers);
      drecv = device_alloc(device, recv.bytes, MemCategory::buffers);
      device_copy(dsend, device, send.p, DeviceKind::cpu, send.bytes);
    }
  }
  ~Case() {
    if (device == DeviceKind::cuda) device_free(device, dsend), device_free(device, drecv);
  }
  Case(const Case&) = delete;
  Case& operator=(const Case&) = delete;

  // The output before a call: zeros, except the root's broadcast buffer, which holds the data.
  void reset_output() {
    if (op == "broadcast" && rank == 0)
      std::memcpy(recv.p, send.p, count * dtype_size(dt));
    else
      std::memset(recv.p, 0, recv.bytes);
    if (device == DeviceKind::cuda) device_copy(drecv, device, recv.p, DeviceKind::cpu, recv.bytes);
  }

  Work run_zerotrain(Communicator& c) {
    size_t block = count / n;
    std::vector<size_t> counts(n, block);
    if (op == "all_reduce") return c.all_reduce(dsend, drecv, count, dt, ReduceOp::sum);
    if (op == "reduce_scatter") return c.reduce_scatter(dsend, drecv, count, dt, ReduceOp::sum);
    if (op == "all_gather") return c.all_gather(dsend, drecv, count, dt);
    if (op == "all_to_all") return c.all_to_all(dsend, counts, drecv, counts, dt);
    return c.broadcast(drecv, count, dt, 0);
  }

  bool mpi_supports() const {
    return dt == DType::fp32 || op == "all_gather" || op == "all_to_all" || op == "broadcast";
  }

  void run_mpi() {
    int block = (int)(count / n);
    MPI_Datatype t = dt == DType::fp32 ? MPI_FLOAT : MPI_UINT16_T;
    if (op == "all_reduce") MPI_Allreduce(send.p, recv.p, (int)count, t, MPI_SUM, MPI_COMM_WORLD);
    if (op == "reduce_scatter")
      MPI_Reduce_scatter_block(send.p, recv.p, block, t, MPI_SUM, MPI_COMM_WORLD);
    if (op == "all_gather") MPI_Allgather(send.p, block, t, recv.p, block, t, MPI_COMM_WORLD);
    if (op == "all_to_all") MPI_Alltoall(send.p, block, t, recv.p, block, t, MPI_COMM_WORLD);
    if (op == "broadcast") MPI_Bcast(recv.p, (int)count, t, 0, MPI_COMM_WORLD);
  }

  // Compares a sample of the output with the known result.
  void check(const char* impl) {
    if (device == DeviceKind::cuda) device_copy(recv.p, DeviceKind::cpu, drecv, device, recv.bytes);
    size_t block = count / n;
    size_t out_count = op == "reduce_scatter" ? block : count;
    for (size_t i = 0; i < out_count; i += 4099) {
      float want = 0;
      if (op == "all_reduce") {
        for (int r = 0; r < n; ++r) want += input_value(r, i);
      } else if (op == "reduce_scatter") {
        for (int r = 0; r < n; ++r) want += input_value(r, rank * block + i);
      } else if (op == "all_gather") {
        want = input_value((int)(i / block), i % block);
      } else if (op == "all_to_all") {  // block j came from rank j, its block `rank`
        want = input_value((int)(i / block), rank * block + i % block);
      } else {
        want = input_value(0, i);
      }
      float got = load(recv.p, i, dt);
      if (got != want)
        fail("bench comm: ", impl, " ", op, " gave ", got, " at element ", i, " on rank ", rank,
             ", expected ", want);
    }
  }
};

int bench_comm_impl(int argc, char** argv) {
  po::options_description opts("bench comm");
  opts.add_options()("sizes", po::value<std::string>()->default_value("1MB,16MB,64MB"),
                     "comma list of whole-buffer sizes (K, M, G suffixes = KiB, MiB, GiB)")(
      "ops",
      po::value<std::string>()->default_value(
          "all_reduce,reduce_scatter,all_gather,all_to_all,broadcast"),
      "comma list of collectives")("dtype", po::value<std::string>()->default_value("fp32"),
                                   "fp32 | bf16 | fp16 (the MPI library reduces fp32 only)")(
      "impl", po::value<std::string>()->default_value("zerotrain,mpi"),
      "comma list: zerotrain, mpi (the MPI library's own collective)")(
      "repeat", po::value<int>()->default_value(5), "timed runs per case; the fastest counts")(
      "hugepages", po::value<std::string>()->default_value("on"),
      "on: buffers on 2 MiB transparent huge pages (madvise); off: 4 KiB pages")(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu (zerotrain's MPI backend) | cuda (NCCL on GPU buffers, impl \"nccl\"; CUDA builds)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: [mpirun -np N] zerotrain bench comm [flags]", opts, vm))
    return 0;
  require_min(vm, "repeat", 1);
  require_choice(vm, "dtype", {"fp32", "bf16", "fp16"});
  require_choice(vm, "hugepages", {"on", "off"});
  require_choice(vm, "device", {"cpu", "cuda"});
  DeviceKind device = device_from_name(vm["device"].as<std::string>());
  std::vector<size_t> sizes;
  for (const std::string& s : split_list(vm["sizes"].as<std::string>()))
    sizes.push_back(parse_bytes(s));
  std::vector<std::string> ops = split_list(vm["ops"].as<std::string>());
  for (const std::string& o : ops)
    if (std::find(std::begin(kOps), std::end(kOps), o) == std::end(kOps))
      fail("--ops: unknown collective '", o,
           "' (all_reduce, reduce_scatter, all_gather, all_to_all, broadcast)");
  std::vector<std::string> impls = split_list(vm["impl"].as<std::string>());
  for (const std::string& i : impls)
    if (i != "zerotrain" && i != "mpi")
      fail("--impl: unknown implementation '", i, "' (zerotrain, mpi)");
  if (sizes.empty() || ops.empty() || impls.empty())
    fail("--sizes, --ops and --impl need at least one entry");
  DType dt = dtype_from_name(vm["dtype"].as<std::string>());
  bool huge = vm["hugepages"].as<std::string>() == "on";
  int repeat = vm["repeat"].as<int>();

  ProcessContext ctx(device);
  bool mpi = ctx.mpi();
  std::unique_ptr<Communicator> world = make_world_communicator();
  int n = world->size(), rank = world->rank();
  // GPU: NCCL over the world's ranks, ordered on `compute`; the host waits for the stream.
  Stream compute;
  std::unique_ptr<Communicator> nccl;
  if (device == DeviceKind::cuda) {
    compute = create_stream(device);
    nccl = make_nccl_communicator(*world, &compute);
    impls = {"nccl"};
  }
  size_t es = dtype_size(dt);

  for (const std::string& op : ops) {
    for (size_t bytes : sizes) {
      size_t count = bytes / es;
      count -= count % n;
      if (count == 0)
        fail("--sizes: ", bytes, " bytes is less than one ", dtype_name(dt), " element per rank");
      Case c(op, count, dt, n, rank, huge, device);
      for (const std::string& impl : impls) {
        bool zt = impl == "zerotrain";
        if (impl == "mpi" && (!mpi || !c.mpi_supports())) continue;
        auto call = [&] {
          if (impl == "nccl") {
            c.run_zerotrain(*nccl).wait();
            stream_sync(compute);
          } else if (zt) {
            c.run_zerotrain(*world).wait();
          } else {
            c.run_mpi();
          }
        };
        c.reset_output();
        world_barrier(mpi);
        auto t0 = std::chrono::steady_clock::now();
        call();
        double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        c.check(impl.c_str());
        long k = std::clamp((long)std::ceil(0.005 / std::max(1e-7, max_over_ranks(warm, mpi))), 1L,
                            1000L);
        double best = 1e30;
        for (int rep = 0; rep < repeat; ++rep) {
          world_barrier(mpi);
          auto t1 = std::chrono::steady_clock::now();
          for (long i = 0; i < k; ++i) call();
          world_barrier(mpi);
          double t =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() / k;
          best = std::min(best, max_over_ranks(t, mpi));
        }
        double total = (double)count * es;
        if (rank == 0) {
          nlohmann::ordered_json line = {
              {"bench", "comm"},
              {"op", op},
              {"impl", impl},
              {"dtype", dtype_name(dt)},
              {"bytes", (int64_t)total},
              {"ranks", n},
              {"time_ms", std::round(best * 1e6) / 1e3},
              {"busbw_gbs", std::round(total / best * bus_factor(op, n) / 1e9 * 100) / 100}};
          std::cout << line.dump() << std::endl;
        }
      }
    }
  }
  return 0;
}

}  // namespace

int bench_comm(int argc, char** argv) { return bench_comm_impl(argc, argv); }

}  // namespace zt
