// Fuzz target: a `--config` INI file for `zerotrain train` (launch/train_options.cpp): parsing it
// and every check of the values it sets.
#include <cstdio>

#include "launch/train_options.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = zt::fuzz::write_file("train.ini", data, size);
  std::string data_flag = zt::fuzz::scratch_dir();
  char* argv[] = {(char*)"train",  (char*)"--config", path.data(),
                  (char*)"--data", data_flag.data(),  nullptr};
  zt::fuzz::expect_clean_error([&] {
    zt::TrainOptions o;
    zt::parse_train_options(5, argv, o);
  });
  return 0;
}
