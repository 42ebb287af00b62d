// engine_unit.h: the buffers of one unit inside the ZeRO engine (internal to parallel/zero).
#pragma once
#include <vector>

#include "parallel/zero/engine.h"
#include "runtime/alloc.h"

namespace zt {

// The arrays the optimizer step reads and writes, which offload may place in the state store.
enum StateArray : int { kParams = 0, kMaster, kMomentM, kMomentV, kStateArrays };

// Buffers of one unit. `cdt` is the compute/communication dtype (the run's precision).
struct ZeroEngine::Unit {
  // From the plan (plan.h, ZeroUnitPlan): the group that partitions the unit and this rank in it.
  Communicator* comm = nullptr;
  int rank = 0;
  UnitLayout lay;
  std::vector<UpdateRegion> regions;  // in increasing j
  int64_t state_len = 0;              // elements of master / m / v: stage 0 padded, else shard
  NormPart norm = NormPart::all;
  // parameters
  Buffer<uint8_t>
      pfull;  // [padded] cdt. stages 0-2: the parameters (params); 3: gathered (buffers)
  Buffer<uint8_t> pshard;  // [shard] cdt. stage 3: this rank's parameters (params); with
                           // parameter offload only between the read and the all-gather
  Buffer<float> master;    // 16-bit runs: fp32 master, [state_len] (optim)
  Buffer<float> work;      // 16-bit runs: fp32 copy the model computes with (buffers)
  // gradients
  Buffer<float> gwork;     // [padded] fp32, what backward writes: fp32 stages 0-1 keep it (grads),
                           // otherwise it lives for one unit's backward (buffers)
  Buffer<uint8_t> g16;     // [padded] 16-bit: stages 0-1 accumulated (grads); 2-3 transient
  Buffer<uint8_t> gshard;  // [shard] cdt. stage 1: the reduce-scatter result (grads)
  Buffer<float> gacc;      // [shard] fp32. stages 2-3: reduced gradient, accumulated (grads)
  Buffer<uint8_t> grecv;   // [shard] cdt. stages 2-3: reduce-scatter receive buffer (buffers)
  Buffer<float> m, v;      // AdamW moments [state_len] (optim)
  std::vector<Work> gathers, reduces;
  bool gather_issued = false, gathered = false, acquired = false, reduce_pending = false;
  double gather_t0 = 0, reduce_t0 = 0;  // issue times, for the trace
  // offload: the store's id of each StateArray kept there (-1: in memory), and the read of the
  // parameter shard in flight
  int sid[kStateArrays] = {-1, -1, -1, -1};
  StateStore::Ticket fetch;
  bool fetching = false;
};

// One staging slot of the streamed optimizer step: a tile of every array kept in the store, and
// the store's reads into it and writes from it that are in flight. The slots live as long as the
// engine (allocated at the first streamed step): freshly allocated buffers every step cost page
// faults and zeroing.
struct ZeroEngine::StagingSlot {
  Buffer<uint8_t> buf[kStateArrays];
  std::vector<StateStore::Ticket> reads, writes;
};

}  // namespace zt
