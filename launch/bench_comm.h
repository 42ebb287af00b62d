// bench_comm.h: `zerotrain bench comm`, the collective benchmark (SPEC section 3).
#pragma once

namespace zt {

// argv[0] = "comm". Prints, from rank 0, one line per (op, size, implementation):
// {"bench":"comm","op":...,"impl":"zerotrain|mpi|nccl","dtype":"fp32","bytes":N,"ranks":R,
//  "time_ms":t,"busbw_gbs":b}
int bench_comm(int argc, char** argv);

}  // namespace zt
