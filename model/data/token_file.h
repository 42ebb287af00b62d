// token_file.h: the llm.c token file. A 256-int32 little-endian header ([0] magic 20240520,
// [1] version 1, [2] token count, the rest 0) followed by `count` uint16 tokens. Writes go to
// PATH.tmp and are renamed into place, so a reader never sees a half-written file; every read error
// is one line naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace zt {

constexpr int32_t kTokenFileMagic = 20240520;
constexpr int32_t kTokenFileVersion = 1;
constexpr int kTokenFileHeaderInts = 256;

struct TokenFile {
  std::string path;
  std::vector<uint16_t> tokens;  // (count,)
};

void write_token_file(const std::string& path, const std::vector<uint16_t>& tokens);

// Reads the whole file; fails on a bad header, a size that does not match the count, or a token
// id >= vocab.
TokenFile read_token_file(const std::string& path, int vocab);

}  // namespace zt
