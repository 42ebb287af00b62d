// Fuzz target: the text side of `zerotrain prepare` (model/data/prepare.h) on arbitrary bytes:
// the UTF-8 check, terminal-text cleaning and the document split. None of them may fail; cleaned
// text holds no control bytes but tab and newline, and the documents come from it.
#include <cstdlib>
#include <string_view>

#include "model/data/prepare.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes((const char*)data, size);
  (void)zt::is_utf8_text(bytes);
  const std::string cleaned = zt::clean_terminal_text(bytes);
  for (unsigned char c : cleaned)
    if (c < 0x20 && c != '\t' && c != '\n') std::abort();
  size_t total = 0;
  for (const std::string& doc : zt::split_documents(cleaned)) total += doc.size();
  if (total > cleaned.size()) std::abort();
  return 0;
}
