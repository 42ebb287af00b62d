// cmd_export.cpp: `zerotrain export --ckpt DIR --out model.h5|model.safetensors` — a checkpoint
// consolidated into one file of full fp32 tensors (offload/export.h describes both formats).
#include <cstdio>

#include "launch/command.h"
#include "offload/export.h"
#include "runtime/error.h"
#include "runtime/options.h"

namespace zt {
namespace {

int cmd_export(int argc, char** argv) {
  std::string ckpt, out;
  int group_size = -1;
  po::options_description d("Export");
  d.add_options()                                                                         //
      ("ckpt", po::value(&ckpt)->required(), "checkpoint directory or step directory")    //
      ("out", po::value(&out)->required(), "output file: model.h5 or model.safetensors")  //
      ("quantized", po::value<std::string>()->implicit_value(""),
       "model.safetensors with int8 storage of the quantized block weights and F32 step sizes: "
       "int8|int4|int2 (alone: the checkpoint's QAT bits); a checkpoint without QAT is "
       "quantized after training (absmax step sizes)")  //
      ("qat-group-size", po::value(&group_size),
       "with --quantized: input rows per step size (default: the checkpoint's; 0 = per channel)");
  po::variables_map vm;
  if (!parse_options(argc, argv,
                     "usage: zerotrain export --ckpt DIR --out model.h5|model.safetensors", d, vm))
    return 0;
  ExportQuant q;
  if (vm.count("quantized")) {
    q.on = true;
    const std::string bits = vm["quantized"].as<std::string>();
    if (!bits.empty()) q.bits = parse_qat_bits(bits, "--quantized");
    if (q.bits == QatBits::none && !bits.empty())
      fail("--quantized must be int8, int4 or int2 (got 'none')");
  }
  if (vm.count("qat-group-size")) {
    if (!q.on) fail("--qat-group-size is only used with --quantized");
    require_min(vm, "qat-group-size", 0);
    q.group_size = group_size;
  }
  ExportSummary s = export_model(ckpt, out, q);
  std::printf("exported %s (step %lld, %lld tensors, %lld parameters%s) to %s\n",
              s.step_dir.c_str(), (long long)s.step, (long long)s.tensors, (long long)s.elements,
              s.quant.empty() ? "" : (", " + s.quant).c_str(), out.c_str());
  return 0;
}

}  // namespace
ZT_COMMAND("export", "checkpoint to one model.h5 or model.safetensors (full fp32 tensors)",
           cmd_export);
}  // namespace zt
