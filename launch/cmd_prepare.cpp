// cmd_prepare.cpp: `zerotrain prepare --input FILE_OR_DIR... --output DIR [--val-fraction 0.05]`.
// Text files -> DIR/train.bin and DIR/val.bin (model/data/prepare.h); prints one summary line.
#include <cstdio>
#include <string>
#include <vector>

#include "launch/command.h"
#include "model/data/prepare.h"
#include "runtime/options.h"

namespace zt {

static int cmd_prepare(int argc, char** argv) {
  po::options_description data("Data");
  data.add_options()("input", po::value<std::vector<std::string>>()->multitoken()->required(),
                     "UTF-8 text files or directories (read recursively, sorted by name)")(
      "output", po::value<std::string>()->required(), "directory for train.bin and val.bin")(
      "val-fraction", po::value<double>()->default_value(0.05),
      "fraction of documents held out for val.bin, in [0, 1)");
  po::variables_map vm;
  if (!parse_options(argc, argv,
                     "usage: zerotrain prepare --input FILE_OR_DIR... --output DIR "
                     "[--val-fraction 0.05]",
                     data, vm))
    return 0;
  std::string out = vm["output"].as<std::string>();
  PrepareResult r = prepare_corpus(vm["input"].as<std::vector<std::string>>(), out,
                                   vm["val-fraction"].as<double>());
  std::printf(
      "prepare: %d files (%zu skipped), %lld documents -> %s/train.bin %lld tokens (%lld "
      "documents), "
      "%s/val.bin %lld tokens (%lld documents)\n",
      r.files, r.skipped.size(), (long long)r.documents, out.c_str(), (long long)r.train_tokens,
      (long long)r.train_documents, out.c_str(), (long long)r.val_tokens,
      (long long)r.val_documents);
  return 0;
}

ZT_COMMAND("prepare", "text files -> train.bin / val.bin token files", cmd_prepare);

}  // namespace zt
