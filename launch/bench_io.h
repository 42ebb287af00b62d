// bench_io.h: `zerotrain bench io`, checkpoint write and read throughput next to a plain
// sequential write and read of the same number of bytes on the same disk, in the same run.
#pragma once
#include <cstdint>

namespace zt {

// bench io [--dir DIR] [--params N] [--repeat R]
int bench_io(int argc, char** argv);

// One `{"bench":"io","what":...,"bytes":N,"gbs":y}` line on stdout for `bytes` moved in `ms`.
void io_line(const char* what, int64_t bytes, double ms);

}  // namespace zt
