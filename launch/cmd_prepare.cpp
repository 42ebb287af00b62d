// cmd_prepare.cpp: `zerotrain prepare --input FILE_OR_DIR... --output DIR [--val-fraction 0.05]
// [--shard-tokens N]`. Text files -> DIR/train.bin and DIR/val.bin, or shards of N tokens
// (model/data/prepare.h); prints one summary line.
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
      "output", po::value<std::string>()->required(),
      "directory for train.bin and val.bin (or their shards)")(
      "val-fraction", po::value<double>()->default_value(0.05, "0.05"),
      "fraction of documents held out for validation, in [0, 1)")(
      "shard-tokens", po::value<int64_t>()->default_value(0),
      "write shards of at most N tokens (train_000000.bin, ..., val_000000.bin, ...); 0 = one "
      "file per split");
  po::variables_map vm;
  if (!parse_options(argc, argv,
                     "usage: zerotrain prepare --input FILE_OR_DIR... --output DIR "
                     "[--val-fraction 0.05] [--shard-tokens N]",
                     data, vm))
    return 0;
  require_min(vm, "shard-tokens", 0);
  std::string out = vm["output"].as<std::string>();
  PrepareResult r =
      prepare_corpus(vm["input"].as<std::vector<std::string>>(), out,
                     vm["val-fraction"].as<double>(), vm["shard-tokens"].as<int64_t>());
  auto where = [&](const std::vector<std::string>& f) {
    return f.size() == 1 ? f[0] : std::to_string(f.size()) + " shards " + f.front() + " ..";
  };
  std::printf(
      "prepare: %d files (%zu skipped), %lld documents -> %s %lld tokens (%lld documents), %s "
      "%lld tokens (%lld documents)\n",
      r.files, r.skipped.size(), (long long)r.documents, where(r.train_files).c_str(),
      (long long)r.train_tokens, (long long)r.train_documents, where(r.val_files).c_str(),
      (long long)r.val_tokens, (long long)r.val_documents);
  return 0;
}

ZT_COMMAND("prepare", "text files -> train / val token files (one each, or shards)", cmd_prepare);

}  // namespace zt
