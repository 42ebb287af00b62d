// test_util.h: small helpers shared by the unit tests.
#pragma once
#include <string>

#include "runtime/error.h"

namespace zt::test {

// The zt::Error message of f(), or "" if it did not throw one.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace zt::test
