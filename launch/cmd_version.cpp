// cmd_version.cpp: `zerotrain version` (also `zerotrain --version`): the build facts, for bug
// reports (launch/build_info.h); `--json` prints them as one JSON object.
#include <cstdio>

#include "launch/build_info.h"
#include "launch/command.h"
#include "runtime/options.h"

namespace zt {
namespace {

int cmd_version(int argc, char** argv) {
  bool json = false;
  po::options_description d("Output");
  d.add_options()("json", po::bool_switch(&json), "one JSON object instead of lines");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain version [--json]", d, vm)) return 0;
  if (json)
    std::printf("%s\n", build_info().dump().c_str());
  else
    std::printf("%s", build_info_text().c_str());
  return 0;
}

}  // namespace
ZT_COMMAND("version", "version, git commit and the libraries this binary was built with",
           cmd_version);
}  // namespace zt
