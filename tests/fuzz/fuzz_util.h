// fuzz_util.h: what the libFuzzer targets share (tests/fuzz/README.md). A reader given damaged
// bytes may fail only with zt::Error (the one error line `zerotrain` prints, exit 2); any other
// exception, a crash, a sanitizer report, a hang or a runaway allocation is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

#include "runtime/error.h"

namespace zt::fuzz {

// A directory of this process's own for the files a target writes (removed at exit; the string
// is never freed, as the exit handler reads it after static destructors may have run).
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    auto* d = new std::string(
        (std::filesystem::temp_directory_path() / ("zt-fuzz-" + std::to_string(::getpid())))
            .string());
    std::filesystem::create_directories(*d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

// PATH (under scratch_dir()) holding exactly `size` bytes of `data`.
inline std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

// Runs fn; zt::Error is the clean way to refuse an input, anything else aborts (a finding).
template <class F>
void expect_clean_error(F&& fn) {
  try {
    fn();
  } catch (const zt::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: not a zt::Error (zerotrain would say 'internal error'): %s\n",
                 e.what());
    std::abort();
  }
}

}  // namespace zt::fuzz
