// token_file.cpp: reading and atomically writing llm.c token files (see token_file.h).
#include "model/data/token_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "runtime/error.h"

namespace zt {

static void put_le32(unsigned char* p, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int b = 0; b < 4; ++b) p[b] = (unsigned char)(u >> (8 * b));
}

static int32_t get_le32(const unsigned char* p) {
  uint32_t u = 0;
  for (int b = 0; b < 4; ++b) u |= (uint32_t)p[b] << (8 * b);
  return (int32_t)u;
}

void write_token_file(const std::string& path, const std::vector<uint16_t>& tokens) {
  if (tokens.size() > (size_t)std::numeric_limits<int32_t>::max())
    fail(path, ": ", tokens.size(), " tokens do not fit the int32 count of a token file");
  std::vector<unsigned char> bytes(kTokenFileHeaderInts * 4 + tokens.size() * 2, 0);
  put_le32(&bytes[0], kTokenFileMagic);
  put_le32(&bytes[4], kTokenFileVersion);
  put_le32(&bytes[8], (int32_t)tokens.size());
  unsigned char* body = bytes.data() + kTokenFileHeaderInts * 4;
  for (size_t i = 0; i < tokens.size(); ++i) {
    body[2 * i] = (unsigned char)(tokens[i] & 0xff);
    body[2 * i + 1] = (unsigned char)(tokens[i] >> 8);
  }

  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(path, ": cannot create '", tmp, "': ", std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(fileno(f)) == 0 && ok;
  int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path, ": write failed: ", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    fail(path, ": cannot rename '", tmp, "' into place: ", std::strerror(err));
  }
}

TokenFile read_token_file(const std::string& path, int vocab) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(path, ": cannot open token file: ", std::strerror(errno));
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  bool read_error = std::ferror(f);
  std::fclose(f);
  if (read_error) fail(path, ": read error");

  const size_t header_bytes = kTokenFileHeaderInts * 4;
  if (bytes.size() < header_bytes)
    fail(path, ": too short for a token file header (", bytes.size(), " bytes, need ", header_bytes,
         ")");
  int32_t magic = get_le32(&bytes[0]), version = get_le32(&bytes[4]), count = get_le32(&bytes[8]);
  if (magic != kTokenFileMagic)
    fail(path, ": not a token file: magic is ", magic, ", expected ", kTokenFileMagic);
  if (version != kTokenFileVersion)
    fail(path, ": token file version ", version, " is not supported (expected ", kTokenFileVersion,
         ")");
  if (count < 0) fail(path, ": negative token count ", count, " in header");
  size_t body_bytes = bytes.size() - header_bytes;
  if (body_bytes != 2 * (size_t)count)
    fail(path, ": header says ", count, " tokens (", header_bytes + 2 * (size_t)count,
         " bytes) but the file has ", bytes.size(), " bytes");

  TokenFile tf{path, std::vector<uint16_t>((size_t)count)};
  const unsigned char* body = bytes.data() + header_bytes;
  for (int32_t i = 0; i < count; ++i) {
    uint16_t t = (uint16_t)(body[2 * i] | (body[2 * i + 1] << 8));
    if ((int)t >= vocab) fail(path, ": token id ", t, " at position ", i, " is >= --vocab ", vocab);
    tf.tokens[i] = t;
  }
  return tf;
}

}  // namespace zt
