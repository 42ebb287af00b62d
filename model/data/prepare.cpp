// prepare.cpp: corpus walking, cleaning, document split and the train/val token files.
#include "model/data/prepare.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "model/data/token_file.h"
#include "runtime/error.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

using FileId = std::pair<dev_t, ino_t>;

struct Walker {
  std::vector<std::string>& skipped;
  std::vector<std::string> files;
  std::set<FileId> seen;  // files and directories already taken (symlinks resolve to the same id)

  void visit(const std::string& path, bool top) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {  // follows symlinks
      if (top) fail("--input '", path, "': ", std::strerror(errno));
      skipped.push_back(path + ": broken link or unreadable");
      return;
    }
    if (!seen.insert({st.st_dev, st.st_ino}).second) return;
    if (S_ISREG(st.st_mode)) {
      files.push_back(path);
    } else if (S_ISDIR(st.st_mode)) {
      std::error_code ec;
      std::vector<std::string> names;
      for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
        names.push_back(it->path().filename().string());
      if (ec) {
        if (top) fail("--input '", path, "': cannot list directory: ", ec.message());
        skipped.push_back(path + ": cannot list directory: " + ec.message());
        return;
      }
      std::sort(names.begin(), names.end());
      for (const auto& name : names) visit((fs::path(path) / name).string(), false);
    } else if (top) {
      fail("--input '", path, "': not a regular file or directory");
    }
  }
};

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return false;
  out = std::move(ss).str();
  return true;
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n'; });
}

}  // namespace

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          std::vector<std::string>& skipped) {
  Walker w{skipped, {}, {}};
  for (const auto& in : inputs) w.visit(in, true);
  return std::move(w.files);
}

bool is_utf8_text(std::string_view s) {
  const auto* p = (const unsigned char*)s.data();
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0)
      len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
      len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
      len = 4, cp = c & 0x07, min = 0x10000;
    else
      return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string clean_terminal_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t n = s.size(), i = 0;
  auto in = [&](size_t k, int lo, int hi) { return k < n && s[k] >= lo && s[k] <= hi; };
  while (i < n) {
    char c = s[i];
    if (c == '\x1b') {
      ++i;
      if (i < n && s[i] == '[') {  // CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, final
        ++i;
        for (;;) {
          while (in(i, 0x20, 0x3F)) ++i;
          if (in(i, '[', '[')) {  // "\x1b[;[34;1m" in the corpus: a stray '[' restarts the CSI
            ++i;
            continue;
          }
          if (in(i, 0x40, 0x7E)) ++i;  // else malformed: drop what was read, keep the next byte
          break;
        }
      } else if (i < n &&
                 (s[i] == ']' || s[i] == 'P' || s[i] == 'X' || s[i] == '^' || s[i] == '_')) {
        ++i;  // OSC, DCS, SOS, PM, APC: a string ended by BEL or ESC \ (or, if broken, the line)
        while (i < n && s[i] != '\a' && s[i] != '\n' && !(s[i] == '\x1b' && in(i + 1, '\\', '\\')))
          ++i;
        if (i < n && s[i] == '\a')
          i += 1;
        else if (i < n && s[i] == '\x1b')
          i += 2;
      } else {  // ESC, intermediates 0x20-0x2F, final 0x30-0x7E (e.g. "\x1b(B", "\x1b=")
        size_t k = i;
        while (in(k, 0x20, 0x2F)) ++k;
        if (in(k, 0x30, 0x7E)) i = k + 1;
      }
    } else if (c == '\b') {  // overstrike: the next character replaces the previous one
      ++i;
      if (!out.empty() && out.back() != '\n') {
        while (!out.empty() && ((unsigned char)out.back() & 0xC0) == 0x80) out.pop_back();
        if (!out.empty()) out.pop_back();
      }
    } else if (((unsigned char)c < 0x20 && c != '\t' && c != '\n') || c == '\x7f') {
      ++i;
    } else {
      out.push_back(c);
      ++i;
    }
  }
  return out;
}

std::vector<std::string> split_documents(std::string_view s) {
  std::vector<std::string> docs;
  std::string cur;
  size_t i = 0;
  while (i < s.size()) {
    size_t nl = s.find('\n', i);
    size_t end = nl == std::string_view::npos ? s.size() : nl + 1;
    std::string_view line = s.substr(i, end - i);
    std::string_view body = line.substr(0, line.size() - (nl == std::string_view::npos ? 0 : 1));
    if (body == "%") {
      if (!is_blank(cur)) docs.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.append(line);
    }
    i = end;
  }
  if (!is_blank(cur)) docs.push_back(std::move(cur));
  return docs;
}

bool is_val_document(int64_t i, double f) {
  return std::floor((double)(i + 1) * f) > std::floor((double)i * f);
}

PrepareResult prepare_corpus(const std::vector<std::string>& inputs, const std::string& out_dir,
                             double val_fraction, int64_t shard_tokens) {
  if (!(val_fraction >= 0 && val_fraction < 1))
    fail("--val-fraction must be in [0, 1) (got ", val_fraction, ")");
  if (inputs.empty()) fail("no --input given");
  PrepareResult r;
  std::vector<std::string> paths = list_input_files(inputs, r.skipped);
  auto skip = [&](const std::string& why) {
    r.skipped.push_back(why);
    std::fprintf(stderr, "zerotrain prepare: skipped %s\n", why.c_str());
  };
  for (const auto& s : r.skipped)
    std::fprintf(stderr, "zerotrain prepare: skipped %s\n", s.c_str());

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir))
    fail("--output '", out_dir, "': cannot create directory", ec ? ": " + ec.message() : "");
  // One file at a time: its documents go to their split's writer as they are found, joined with
  // "\n" (nothing is renamed into place unless both splits are good).
  TokenWriter train(out_dir, "train", shard_tokens), val(out_dir, "val", shard_tokens);
  for (const auto& path : paths) {
    std::string bytes;
    if (!read_file(path, bytes)) {
      skip(path + ": cannot read");
      continue;
    }
    if (!is_utf8_text(bytes)) {
      skip(path + ": not UTF-8 text");
      continue;
    }
    ++r.files;
    for (const std::string& d : split_documents(clean_terminal_text(bytes))) {
      const bool is_val = is_val_document(r.documents++, val_fraction);
      TokenWriter& w = is_val ? val : train;
      int64_t& docs = is_val ? r.val_documents : r.train_documents;
      if (docs++ > 0) w.append('\n');
      for (unsigned char c : d) w.append(c);
    }
  }
  if (r.files == 0) fail("no readable UTF-8 text file in --input (", r.skipped.size(), " skipped)");
  if (r.documents == 0) fail("--input holds no text (", r.files, " files, all blank)");
  if (r.train_documents == 0)
    fail("train split is empty: ", r.documents, " documents with --val-fraction ", val_fraction);
  if (r.val_documents == 0)
    fail("val split is empty: ", r.documents, " documents with --val-fraction ", val_fraction,
         " give no validation document (raise --val-fraction or add text)");
  r.train_tokens = train.tokens();
  r.val_tokens = val.tokens();
  r.train_files = train.finish();
  r.val_files = val.finish();
  return r;
}

}  // namespace zt
