// token_file.h: llm.c token files, one or many (shards), memory-mapped.
//
// A file is a 256-int32 little-endian header ([0] magic, [1] version, [2] token count, the rest 0)
// followed by `count` tokens, in one of llm.c's two formats (dev/data/data_common.py):
//   gpt2     magic 20240520, version 1, uint16 tokens
//   llama3   magic 20240801, version 7, uint32 tokens
// Opening a file checks the header and the size and maps the body; nothing of the body is read
// until a sample asks for it, so a rank touches only the pages of the samples it takes. Token ids
// are checked as they are read (an id >= --vocab is one error naming the file and the position).
// Writes go to PATH.tmp and are renamed into place, so a reader never sees a half-written file;
// every error is one line naming the file.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zt {

enum class TokenFormat : uint8_t { gpt2, llama3 };
const char* token_format_name(TokenFormat f);  // "gpt2" | "llama3"
constexpr int kTokenFileHeaderInts = 256;

// One token file, mapped read-only.
class MappedTokenFile {
 public:
  explicit MappedTokenFile(const std::string& path);  // validates the header and the size
  ~MappedTokenFile();
  MappedTokenFile(const MappedTokenFile&) = delete;
  MappedTokenFile& operator=(const MappedTokenFile&) = delete;

  const std::string& path() const { return path_; }
  TokenFormat format() const { return format_; }
  int64_t size() const { return count_; }
  uint32_t operator[](int64_t i) const {
    return format_ == TokenFormat::gpt2 ? static_cast<const uint16_t*>(body_)[i]
                                        : static_cast<const uint32_t*>(body_)[i];
  }

 private:
  std::string path_;
  TokenFormat format_ = TokenFormat::gpt2;
  int64_t count_ = 0;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const void* body_ = nullptr;
};

// A token stream: one file, or shards read as their concatenation in name order.
class TokenData {
 public:
  TokenData() = default;
  // `files` in stream order; ids must be < vocab.
  TokenData(const std::vector<std::string>& files, int vocab);

  bool empty() const { return total_ == 0; }
  int64_t size() const { return total_; }
  int vocab() const { return vocab_; }
  // Tokens [off, off + n) of the stream into out (int32); throws naming the file and the position
  // of an id >= vocab, or of a range past the end.
  void read(int64_t off, int64_t n, int32_t* out) const;
  // What the stream is, for checkpoints: {"files": [{"name": basename, "tokens": n}], "tokens":
  // total, "format": ...}. Names without directories: the same shards moved elsewhere are the same
  // data.
  nlohmann::json describe() const;
  // "PATH" for one file, "N shards in DIR" for several.
  std::string what() const;
  const std::vector<std::string>& files() const { return paths_; }

 private:
  std::vector<std::string> paths_;
  std::vector<std::shared_ptr<MappedTokenFile>> files_;
  std::vector<int64_t> start_;  // [files + 1]: the stream offset of each file's first token
  int64_t total_ = 0;
  int vocab_ = 0;
};

// The files --data (or --val-data, eval's --data) names, in stream order: a token file; a glob
// ("DIR/*_train_*.bin", sorted by name); or a directory: its `role`.bin (train.bin, val.bin) if
// present, else its shards whose name holds "_<role>_" or starts with "<role>_" (llm.c's
// fineweb_train_000001.bin, prepare's train_000000.bin), sorted by name. With `required`, nothing
// found is an error naming the flag; else an empty list.
std::vector<std::string> resolve_token_files(const std::string& spec, const std::string& role,
                                             const std::string& flag, bool required = true);

// Writes a token file of `format` (gpt2: every id < 65,536), atomically.
void write_token_file(const std::string& path, const std::vector<uint32_t>& tokens,
                      TokenFormat format = TokenFormat::gpt2);

// Streams tokens into shard files of at most `shard_tokens` each (0: one file), named
// DIR/ROLE.bin when unsharded, else DIR/ROLE_000000.bin, ...; every file is written as .tmp and
// renamed into place only by finish(), so an abandoned writer (destroyed without finish) leaves
// nothing.
class TokenWriter {
 public:
  TokenWriter(const std::string& dir, const std::string& role, int64_t shard_tokens,
              TokenFormat format = TokenFormat::gpt2);
  ~TokenWriter();
  void append(uint32_t token);
  int64_t tokens() const { return total_; }
  std::vector<std::string> finish();  // the files written, in order

 private:
  void open_next();
  void close_current();
  std::string dir_, role_;
  int64_t shard_tokens_;
  TokenFormat format_;
  std::vector<uint32_t> pending_;  // the current shard's tokens not yet flushed
  std::vector<std::string> done_;  // finished .tmp files
  std::string current_;
  void* file_ = nullptr;  // FILE*
  int64_t in_current_ = 0, total_ = 0;
  bool finished_ = false;
};

}  // namespace zt
