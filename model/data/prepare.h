// prepare.h: text files -> train / val token files (SPEC section 2, `zerotrain prepare`).
// Tokens are bytes (vocab 256). Cleaning: terminal escape sequences (ESC [ ... colour codes and
// other ESC sequences) are removed, a backspace overstrike ("_\bx", "__\b\bUN") keeps what a
// terminal shows, and other control bytes except tab and newline are dropped. A line holding just
// "%" ends a document (the fortune format) and is dropped. Document i goes to val when floor((i +
// 1) * f) > floor(i * f), so about a fraction f of documents, spread evenly over the corpus, are
// held out. Each split is its documents joined with "\n".
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zt {

struct PrepareResult {
  int files = 0;                     // text files read
  std::vector<std::string> skipped;  // "PATH: reason", for files that were not read
  int64_t documents = 0, train_documents = 0, val_documents = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  std::vector<std::string> train_files, val_files;  // written, in stream order
};

// Reads the inputs (files, or directories walked recursively in sorted name order) one file at a
// time, splits and writes OUT_DIR/train.bin and OUT_DIR/val.bin, or with shard_tokens > 0 shards
// of at most that many tokens, OUT_DIR/train_000000.bin, ... and val_000000.bin, ... (the gpt2
// format: byte tokens fit it). Output of the other form or of more shards left from an earlier
// run in OUT_DIR is removed, so the directory holds one stream per split. Fails on a missing
// input, nothing readable, val_fraction outside [0, 1), or an empty split, writing nothing. Each
// skipped file is also named on stderr.
PrepareResult prepare_corpus(const std::vector<std::string>& inputs, const std::string& out_dir,
                             double val_fraction, int64_t shard_tokens = 0);

// The pieces, exposed for tests.
// Regular files under the inputs, symlinks followed, each file once; unreadable entries go to
// `skipped`.
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          std::vector<std::string>& skipped);
bool is_utf8_text(std::string_view bytes);  // strict UTF-8 without NUL bytes
std::string clean_terminal_text(std::string_view text);
std::vector<std::string> split_documents(std::string_view cleaned);  // drops blank documents
bool is_val_document(int64_t i, double val_fraction);

}  // namespace zt
