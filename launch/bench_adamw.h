// bench_adamw.h: `zerotrain bench adamw`, the CPU AdamW kernel's rate next to a memory-bandwidth
// triad measured in the same run (docs/performance.md, "AdamW kernel").
#pragma once
#include <cstdint>

namespace zt {

// STREAM triad a[i] = b[i] + s c[i] over three arrays of n doubles on `threads` OpenMP threads;
// the best of `repeat` passes in GB/s, counting 24 bytes per element (2 reads + 1 write) as
// STREAM does. With plain stores the CPU also reads each line of a before writing it
// (write-allocate, uncounted); `nontemporal` writes a with streaming stores, which skip that read,
// so its figure is the bytes really moved.
double measure_triad_gbs(int64_t n, int threads, int repeat, bool nontemporal);

// bench adamw [--params N] [--threads T] [--steps S] [--dtype fp32|bf16|fp16] [--impls LIST]
int bench_adamw(int argc, char** argv);

}  // namespace zt
