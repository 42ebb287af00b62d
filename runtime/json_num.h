// json_num.h: whole numbers read from JSON that users and disks hand us (configs, manifests).
// nlohmann converts a JSON float to an integer type with a plain cast: undefined behaviour beyond
// the type's range (1e300 as an int) and a silent truncation inside it (2.5 reads as 2). These
// take an integer, or a float with an integral value, that fits T; anything else is the library's
// own type_error naming the key, so the callers that already turn json::exception into one error
// line naming the file do so here too.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace zt {

template <class T>
T json_whole(const nlohmann::json& v, const std::string& key) {
  using lim = std::numeric_limits<T>;
  auto refuse = [&]() -> T {
    throw nlohmann::json::type_error::create(302,
                                             "'" + key + "' must be a whole number in [" +
                                                 std::to_string(lim::min()) + ", " +
                                                 std::to_string(lim::max()) + "], not " + v.dump(),
                                             &v);
  };
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u <= (uint64_t)lim::max() ? (T)u : refuse();
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (lim::is_signed)
      return i >= (int64_t)lim::min() && i <= (int64_t)lim::max() ? (T)i : refuse();
    return i >= 0 && (uint64_t)i <= (uint64_t)lim::max() ? (T)i : refuse();
  }
  if (v.is_number_float()) {
    // 2^63 and 2^64 are exact doubles; the bounds are half-open so the cast below is defined.
    const double d = v.get<double>(), hi = std::ldexp(1.0, lim::digits);
    const double lo = lim::is_signed ? -hi : 0.0;
    return std::isfinite(d) && d == std::floor(d) && d >= lo && d < hi ? (T)d : refuse();
  }
  return refuse();
}

// json_whole of j[key]; j.at(key)'s out_of_range when it is absent.
template <class T>
void json_whole_to(const nlohmann::json& j, const char* key, T& out) {
  out = json_whole<T>(j.at(key), key);
}

}  // namespace zt
