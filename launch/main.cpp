// main.cpp: `zerotrain SUBCOMMAND [flags]`. Dispatches to the registered subcommands; any zt::Error
// becomes one line on stderr and exit status 2 (bad input) so scripts can tell it from a crash.
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>

#include "launch/command.h"
#include "runtime/error.h"

namespace zt {
namespace {
struct Entry {
  const char* summary;
  CommandFn fn;
};
std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r;
  return r;
}
void usage(FILE* out) {
  std::fprintf(out, "usage: zerotrain SUBCOMMAND [flags]   (zerotrain SUBCOMMAND --help)\n\n");
  for (const auto& [name, e] : registry())
    std::fprintf(out, "  %-10s %s\n", name.c_str(), e.summary);
}
}  // namespace

CommandRegistrar::CommandRegistrar(const char* name, const char* summary, CommandFn fn) {
  registry()[name] = Entry{summary, fn};
}

}  // namespace zt

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    zt::usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "-V")) argv[1] = (char*)"version";
  auto it = zt::registry().find(argv[1]);
  if (it == zt::registry().end()) {
    std::string names;
    for (const auto& [name, e] : zt::registry()) names += (names.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "zerotrain: error: unknown subcommand '%s' (one of: %s)\n", argv[1],
                 names.c_str());
    return 2;
  }
  try {
    return it->second.fn(argc - 1, argv + 1);
  } catch (const zt::Error& e) {
    std::fprintf(stderr, "zerotrain %s: error: %s\n", argv[1], e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zerotrain %s: internal error: %s\n", argv[1], e.what());
    return 3;
  }
}
