// state_store.h: where the ZeRO engine keeps the arrays it offloads (fp32 master weights, AdamW
// moments, stage-3 parameter shards) when they do not live in memory. The engine declares its
// arrays, opens the store, then reads and writes element ranges of them asynchronously; an
// implementation does the I/O on its own threads (offload/shard_store.h: HDF5 shard files on
// NVMe). Declared here, implemented above (ARCHITECTURE.md layering: offload depends on parallel).
//
// Ranges start on a multiple of kStorePageBytes and end on one or at the array's end, so that an
// implementation can checksum pages. A buffer passed to write() must stay unchanged, and one
// passed to read() untouched, until the ticket is done.
#pragma once
#include <cstdint>
#include <future>
#include <string>

#include "runtime/dtype.h"

namespace zt {

inline constexpr int64_t kStorePageBytes = 16384;

struct StoreCounters {
  int64_t read_bytes = 0, write_bytes = 0;
  double busy_ms = 0;  // summed over the I/O threads
  StoreCounters operator-(const StoreCounters& o) const {
    return {read_bytes - o.read_bytes, write_bytes - o.write_bytes, busy_ms - o.busy_ms};
  }
};

class StateStore {
 public:
  using Ticket = std::shared_future<void>;  // get() waits and rethrows the I/O error
  virtual ~StateStore() = default;

  // Declares an array of `count` elements of `dt` (before open); returns its id.
  virtual int define(const std::string& name, DType dt, int64_t count) = 0;
  virtual void open() = 0;  // creates the backing storage of every declared array
  virtual Ticket read(int id, int64_t first, int64_t count, void* dst) = 0;
  virtual Ticket write(int id, int64_t first, int64_t count, const void* src) = 0;
  // Raises if the backing storage went missing or shrank (the engine calls it every step).
  virtual void check() = 0;
  virtual std::string where() const = 0;  // for messages and logs: the backing file
  virtual int64_t stored_bytes() const = 0;
  virtual StoreCounters counters() const = 0;
};

}  // namespace zt
