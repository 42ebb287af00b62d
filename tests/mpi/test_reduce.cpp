// The vectorised local reductions against the scalar reference: every dtype and op, lengths
// around the vector width, unaligned pointers, in place, streaming stores.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "mpi_test.h"
#include "parallel/comm/reduce.h"
#include "runtime/error.h"

namespace zt::test {
namespace {

TEST(Reduce, VectorKernelsEqualTheScalarReference) {
  for (DType dt : {DType::fp32, DType::bf16, DType::fp16})
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max})
      for (size_t n : {0, 1, 15, 16, 17, 63, 1000, 4099})
        for (size_t shift : {0, 1, 3})
          for (bool streaming : {false, true}) {
            size_t es = dtype_size(dt);
            Values a(n + shift, dt), b(n + shift, dt), got(n + shift, dt), want(n + shift, dt);
            for (size_t i = 0; i < n + shift; ++i) {
              a.set(i, random_value(0, i, 1) * 100);
              b.set(i, random_value(1, i, 1) * 100);
            }
            reduce_elements(got.at(shift), a.at(shift), b.at(shift), n, dt, op, streaming);
            reduce_elements_reference(want.at(shift), a.at(shift), b.at(shift), n, dt, op);
            EXPECT_EQ(std::memcmp(got.at(shift), want.at(shift), n * es), 0)
                << dtype_name(dt) << (op == ReduceOp::sum ? " sum" : " max") << " n " << n
                << " shift " << shift << " streaming " << streaming;
            // In place: dst == a.
            reduce_elements(a.at(shift), a.at(shift), b.at(shift), n, dt, op, streaming);
            EXPECT_EQ(std::memcmp(a.at(shift), want.at(shift), n * es), 0) << "in place";
          }
}

TEST(Reduce, Bf16AndFp16RoundToNearestEvenFromFp32) {
  // 1 + 2^-8 + 2^-9 in bf16 arithmetic: fp32 sum, one rounding (not two).
  Values a(1, DType::bf16), b(1, DType::bf16), out(1, DType::bf16);
  a.set(0, 1.0f);
  b.set(0, 0.00390625f + 0.001953125f);  // exact in bf16: 2^-8 + 2^-9
  reduce_elements(out.data(), a.data(), b.data(), 1, DType::bf16, ReduceOp::sum);
  EXPECT_EQ(out.get(0), round_to(1.0f + 0.00390625f + 0.001953125f, DType::bf16));
  EXPECT_THROW(reduce_elements(out.data(), a.data(), b.data(), 1, DType::int8, ReduceOp::sum),
               Error);
}

}  // namespace
}  // namespace zt::test
