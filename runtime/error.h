// error.h: the one error type of zerotrain and the checks that raise it.
// Every message names the offending value; ZT_CHECK adds file and line for internal invariants,
// zt::fail() is for user-facing errors (flags, files) whose message stands alone.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace zt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Build a message from any streamable pieces: zt::cat("bad value ", x, " for --flag").
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(cat(std::forward<Args>(args)...));
}

}  // namespace zt

#define ZT_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::zt::fail(__FILE__, ":", __LINE__, ": check failed: " #cond ": ", ##__VA_ARGS__); \
  } while (0)
