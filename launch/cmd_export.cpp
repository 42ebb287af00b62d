// cmd_export.cpp: `zerotrain export --ckpt DIR --out model.h5|model.safetensors` — a checkpoint
// consolidated into one file of full fp32 tensors (offload/export.h describes both formats).
#include <cstdio>

#include "launch/command.h"
#include "offload/export.h"
#include "runtime/options.h"

namespace zt {
namespace {

int cmd_export(int argc, char** argv) {
  std::string ckpt, out;
  po::options_description d("Export");
  d.add_options()                                                                       //
      ("ckpt", po::value(&ckpt)->required(), "checkpoint directory or step directory")  //
      ("out", po::value(&out)->required(), "output file: model.h5 or model.safetensors");
  po::variables_map vm;
  if (!parse_options(argc, argv,
                     "usage: zerotrain export --ckpt DIR --out model.h5|model.safetensors", d, vm))
    return 0;
  ExportSummary s = export_model(ckpt, out);
  std::printf("exported %s (step %lld, %lld tensors, %lld parameters) to %s\n", s.step_dir.c_str(),
              (long long)s.step, (long long)s.tensors, (long long)s.elements, out.c_str());
  return 0;
}

}  // namespace
ZT_COMMAND("export", "checkpoint to one model.h5 or model.safetensors (full fp32 tensors)",
           cmd_export);
}  // namespace zt
