// Fuzz target: a token file (model/data/token_file.h): the header and size checks of opening it,
// then every token read through the stream with a 256-token vocabulary (ids at or above it must
// be refused, naming the position).
#include <vector>

#include "model/data/token_file.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = zt::fuzz::write_file("tokens.bin", data, size);
  zt::fuzz::expect_clean_error([&] {
    zt::TokenData stream({path}, /*vocab=*/256);
    std::vector<int32_t> out(4096);
    for (int64_t off = 0; off < stream.size(); off += (int64_t)out.size())
      stream.read(off, std::min<int64_t>((int64_t)out.size(), stream.size() - off), out.data());
    stream.read(stream.size(), 1, out.data());  // past the end: refused
  });
  return 0;
}
