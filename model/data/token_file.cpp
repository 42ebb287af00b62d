// token_file.cpp: mapped llm.c token files, shard sets and the atomic writers (token_file.h).
#include "model/data/token_file.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "runtime/error.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

constexpr int32_t kMagic[] = {20240520, 20240801};
constexpr int32_t kVersion[] = {1, 7};
constexpr int64_t kHeaderBytes = kTokenFileHeaderInts * 4;

int token_bytes(TokenFormat f) { return f == TokenFormat::gpt2 ? 2 : 4; }

void put_le32(unsigned char* p, uint32_t u) {
  for (int b = 0; b < 4; ++b) p[b] = (unsigned char)(u >> (8 * b));
}
int32_t get_le32(const unsigned char* p) {
  uint32_t u = 0;
  for (int b = 0; b < 4; ++b) u |= (uint32_t)p[b] << (8 * b);
  return (int32_t)u;
}

std::vector<unsigned char> header(TokenFormat f, int64_t count) {
  std::vector<unsigned char> h(kHeaderBytes, 0);
  put_le32(&h[0], (uint32_t)kMagic[(int)f]);
  put_le32(&h[4], (uint32_t)kVersion[(int)f]);
  put_le32(&h[8], (uint32_t)count);
  return h;
}

// Little-endian body bytes of tokens [0, n).
void body_bytes(const uint32_t* t, int64_t n, TokenFormat f, std::vector<unsigned char>& out) {
  const int w = token_bytes(f);
  out.resize((size_t)n * w);
  for (int64_t i = 0; i < n; ++i)
    for (int b = 0; b < w; ++b) out[(size_t)i * w + b] = (unsigned char)(t[i] >> (8 * b));
}

void write_all(FILE* f, const std::string& path, const void* p, size_t n) {
  if (n && std::fwrite(p, 1, n, f) != n) fail(path, ": write failed: ", std::strerror(errno));
}

// fsync, close and rename tmp -> path; removes tmp on failure.
void commit(FILE* f, const std::string& tmp, const std::string& path) {
  bool ok = std::fflush(f) == 0;
  ok = ::fsync(fileno(f)) == 0 && ok;
  int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path, ": write failed: ", std::strerror(err));
  }
}

void rename_into_place(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail(path, ": cannot rename '", tmp, "' into place: ", std::strerror(err));
  }
}

bool is_shard_of(const std::string& name, const std::string& role) {
  if (name.size() < 4 || name.compare(name.size() - 4, 4, ".bin") != 0) return false;
  return name.find("_" + role + "_") != std::string::npos || name.rfind(role + "_", 0) == 0;
}

}  // namespace

const char* token_format_name(TokenFormat f) { return f == TokenFormat::gpt2 ? "gpt2" : "llama3"; }

MappedTokenFile::MappedTokenFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open token file: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot stat token file: ", std::strerror(err));
  }
  const int64_t bytes = st.st_size;
  unsigned char h[16] = {};
  const ssize_t got = bytes >= kHeaderBytes ? ::pread(fd, h, sizeof h, 0) : 0;
  if (bytes < kHeaderBytes || got != (ssize_t)sizeof h) {
    ::close(fd);
    fail(path, ": too short for a token file header (", bytes, " bytes, need ", kHeaderBytes, ")");
  }
  const int32_t magic = get_le32(h), version = get_le32(h + 4), count = get_le32(h + 8);
  int f = -1;
  for (int k = 0; k < 2; ++k)
    if (magic == kMagic[k]) f = k;
  auto bad = [&](auto&&... why) {
    ::close(fd);
    fail(path, ": ", why...);
  };
  if (f < 0)
    bad("not a token file: magic is ", magic, ", expected ", kMagic[0], " (llm.c gpt2, uint16) or ",
        kMagic[1], " (llm.c llama-3, uint32)");
  format_ = (TokenFormat)f;
  if (version != kVersion[f])
    bad("token file version ", version, " is not supported for magic ", magic, " (expected ",
        kVersion[f], ")");
  if (count < 0) bad("negative token count ", count, " in header");
  const int64_t want = kHeaderBytes + (int64_t)count * token_bytes(format_);
  if (bytes != want)
    bad("header says ", count, " tokens (", want, " bytes) but the file has ", bytes, " bytes");
  count_ = count;
  map_bytes_ = (size_t)bytes;
  if (count_ > 0) {
    map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      bad("cannot map token file: ", std::strerror(errno));
    }
    ::madvise(map_, map_bytes_, MADV_RANDOM);  // samples are scattered: no read-ahead
    body_ = static_cast<const unsigned char*>(map_) + kHeaderBytes;
  }
  ::close(fd);
}

MappedTokenFile::~MappedTokenFile() {
  if (map_) ::munmap(map_, map_bytes_);
}

TokenData::TokenData(const std::vector<std::string>& files, int vocab)
    : paths_(files), vocab_(vocab) {
  start_.push_back(0);
  for (const std::string& p : files) {
    files_.push_back(std::make_shared<MappedTokenFile>(p));
    if (files_.size() > 1 && files_.back()->format() != files_.front()->format())
      fail(p, ": ", token_format_name(files_.back()->format()), " format, but ",
           files_.front()->path(), " is ", token_format_name(files_.front()->format()),
           ": the shards of one stream share a "
           "format");
    total_ += files_.back()->size();
    start_.push_back(total_);
  }
}

void TokenData::read(int64_t off, int64_t n, int32_t* out) const {
  if (off < 0 || n < 0 || off + n > total_)
    fail(what(), ": tokens [", off, ", ", off + n, ") are outside the ", total_, " tokens");
  // The file holding `off`, then on through the following ones.
  size_t f = (size_t)(std::upper_bound(start_.begin(), start_.end(), off) - start_.begin()) - 1;
  while (n > 0) {
    const MappedTokenFile& file = *files_[f];
    const int64_t i0 = off - start_[f], take = std::min(n, file.size() - i0);
    for (int64_t i = 0; i < take; ++i) {
      const uint32_t t = file[i0 + i];
      if (t >= (uint32_t)vocab_)
        fail(file.path(), ": token id ", t, " at position ", i0 + i, " is >= --vocab ", vocab_);
      out[i] = (int32_t)t;
    }
    out += take, off += take, n -= take, ++f;
  }
}

nlohmann::json TokenData::describe() const {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : files_)
    files.push_back({{"name", fs::path(f->path()).filename().string()}, {"tokens", f->size()}});
  return {{"files", files},
          {"tokens", total_},
          {"format", files_.empty() ? "" : token_format_name(files_.front()->format())}};
}

std::string TokenData::what() const {
  if (paths_.size() == 1) return paths_[0];
  return cat(paths_.size(), " shards in ",
             paths_.empty() ? std::string("?") : fs::path(paths_[0]).parent_path().string());
}

std::vector<std::string> resolve_token_files(const std::string& spec, const std::string& role,
                                             const std::string& flag, bool required) {
  std::vector<std::string> out;
  std::error_code ec;
  if (spec.find_first_of("*?[") != std::string::npos && !fs::exists(spec, ec)) {
    glob_t g{};
    if (::glob(spec.c_str(), 0, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
    ::globfree(&g);
    std::sort(out.begin(), out.end());
    if (out.empty()) fail(flag, ": no file matches '", spec, "'");
    return out;
  }
  if (fs::is_directory(spec, ec)) {
    const fs::path one = fs::path(spec) / (role + ".bin");
    if (fs::exists(one, ec)) return {one.string()};
    for (fs::directory_iterator it(spec, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_regular_file() && is_shard_of(it->path().filename().string(), role))
        out.push_back(it->path().string());
    std::sort(out.begin(), out.end());
    if (out.empty() && required)
      fail(flag, ": no ", role, ".bin and no ", role, " shards (*_", role, "_*.bin, ", role,
           "_*.bin) in directory '", spec, "'");
    return out;
  }
  if (!fs::exists(spec, ec)) {
    if (!required) return {};
    fail(flag, ": no token file at '", spec, "'");
  }
  return {spec};
}

void write_token_file(const std::string& path, const std::vector<uint32_t>& tokens,
                      TokenFormat format) {
  if (tokens.size() > (size_t)std::numeric_limits<int32_t>::max())
    fail(path, ": ", tokens.size(), " tokens do not fit the int32 count of a token file");
  if (format == TokenFormat::gpt2)
    for (uint32_t t : tokens)
      if (t > 0xffff) fail(path, ": token id ", t, " does not fit the gpt2 (uint16) format");
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(path, ": cannot create '", tmp, "': ", std::strerror(errno));
  try {
    const std::vector<unsigned char> h = header(format, (int64_t)tokens.size());
    std::vector<unsigned char> body;
    body_bytes(tokens.data(), (int64_t)tokens.size(), format, body);
    write_all(f, path, h.data(), h.size());
    write_all(f, path, body.data(), body.size());
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  commit(f, tmp, path);
  rename_into_place(tmp, path);
}

TokenWriter::TokenWriter(const std::string& dir, const std::string& role, int64_t shard_tokens,
                         TokenFormat format)
    : dir_(dir), role_(role), shard_tokens_(shard_tokens), format_(format) {
  if (shard_tokens < 0) fail("--shard-tokens must be >= 0 (got ", shard_tokens, ")");
  if (shard_tokens > std::numeric_limits<int32_t>::max())
    fail("--shard-tokens ", shard_tokens, " does not fit a token file's int32 count");
}

TokenWriter::~TokenWriter() {
  if (finished_) return;
  if (file_) std::fclose(static_cast<FILE*>(file_));
  if (!current_.empty()) std::remove((current_ + ".tmp").c_str());
  for (const std::string& p : done_) std::remove((p + ".tmp").c_str());
}

void TokenWriter::open_next() {
  char num[32];
  std::snprintf(num, sizeof num, "_%06zu", done_.size());
  const std::string name = role_ + (shard_tokens_ == 0 ? "" : num) + ".bin";
  current_ = (fs::path(dir_) / name).string();
  FILE* f = std::fopen((current_ + ".tmp").c_str(), "wb");
  if (!f) fail(current_, ": cannot create '", current_, ".tmp': ", std::strerror(errno));
  file_ = f;
  const std::vector<unsigned char> h = header(format_, 0);  // the count is set on close
  write_all(f, current_, h.data(), h.size());
  in_current_ = 0;
}

void TokenWriter::append(uint32_t token) {
  if (format_ == TokenFormat::gpt2 && token > 0xffff)
    fail(dir_, ": token id ", token, " does not fit the gpt2 (uint16) format");
  if (!file_) open_next();
  pending_.push_back(token);
  ++in_current_, ++total_;
  if (pending_.size() >= (1u << 20)) {
    std::vector<unsigned char> b;
    body_bytes(pending_.data(), (int64_t)pending_.size(), format_, b);
    write_all(static_cast<FILE*>(file_), current_, b.data(), b.size());
    pending_.clear();
  }
  if (shard_tokens_ > 0 && in_current_ == shard_tokens_) close_current();
  if (shard_tokens_ == 0 && in_current_ == std::numeric_limits<int32_t>::max())
    fail(current_, ": more than ", in_current_, " tokens: give --shard-tokens");
}

void TokenWriter::close_current() {
  FILE* f = static_cast<FILE*>(file_);
  std::vector<unsigned char> b;
  body_bytes(pending_.data(), (int64_t)pending_.size(), format_, b);
  write_all(f, current_, b.data(), b.size());
  pending_.clear();
  unsigned char count[4];
  put_le32(count, (uint32_t)in_current_);
  if (std::fseek(f, 8, SEEK_SET) != 0) fail(current_, ": seek failed: ", std::strerror(errno));
  write_all(f, current_, count, 4);
  file_ = nullptr;
  commit(f, current_ + ".tmp", current_);
  done_.push_back(current_);
  current_.clear();
}

std::vector<std::string> TokenWriter::finish() {
  if (file_ || done_.empty()) {  // the last, partial shard (or an empty single file)
    if (!file_) open_next();
    close_current();
  }
  for (const std::string& p : done_) rename_into_place(p + ".tmp", p);
  finished_ = true;
  // What an earlier writer of this role left in DIR that is not part of this output: the other
  // form (ROLE.bin or ROLE_NNNNNN.bin), or shards past the last one written.
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    const bool single = n == role_ + ".bin";
    const bool shard = n.size() == role_.size() + 11 && n.rfind(role_ + "_", 0) == 0 &&
                       n.compare(n.size() - 4, 4, ".bin") == 0 &&
                       std::all_of(n.begin() + role_.size() + 1, n.end() - 4, ::isdigit);
    if ((single || shard) &&
        std::find(done_.begin(), done_.end(), it->path().string()) == done_.end())
      stale.push_back(it->path());
  }
  for (const fs::path& p : stale) fs::remove(p, ec);
  return done_;
}

}  // namespace zt
