// fault.cpp: ZT_TEST_FAULT (fault.h).
#include "runtime/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/error.h"

namespace zt {
namespace {

struct Fault {
  enum Kind { none, kill, hang, nan } kind = none;
  long long step = -1;
  int rank = -1;
};

Fault parse_fault() {
  Fault f;
  const char* v = std::getenv("ZT_TEST_FAULT");
  if (!v || !*v) return f;
  char kind[16] = {};
  long long step = -1;
  int rank = -1;
  if (std::sscanf(v, "%15[a-z]@%lld:%d", kind, &step, &rank) != 3 || step < 0 || rank < 0 ||
      (std::strcmp(kind, "kill") != 0 && std::strcmp(kind, "hang") != 0 &&
       std::strcmp(kind, "nan") != 0))
    fail("ZT_TEST_FAULT='", v, "' is not KIND@STEP:RANK with KIND kill, hang or nan");
  f.kind = std::strcmp(kind, "kill") == 0   ? Fault::kill
           : std::strcmp(kind, "hang") == 0 ? Fault::hang
                                            : Fault::nan;
  f.step = step, f.rank = rank;
  return f;
}

const Fault& fault() {
  static const Fault f = parse_fault();
  return f;
}

}  // namespace

bool test_fault_nan(int64_t step, int rank) {
  const Fault& f = fault();
  return f.kind == Fault::nan && f.step == step && f.rank == rank;
}

void test_fault_point(int64_t step, int rank) {
  const Fault& f = fault();
  if ((f.kind != Fault::kill && f.kind != Fault::hang) || f.step != step || f.rank != rank) return;
  std::fprintf(stderr, "zerotrain: rank %d: ZT_TEST_FAULT: %s at step %lld\n", rank,
               f.kind == Fault::kill ? "killing itself" : "hanging", (long long)step);
  std::fflush(stderr);
  if (f.kind == Fault::kill) ::raise(SIGKILL);
  for (;;) ::pause();
}

}  // namespace zt
