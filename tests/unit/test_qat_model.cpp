// QAT in the model (model/qat.h): the step-size parameters in the table, the fake-quantized
// forward and its LSQ backward through the layers (the deferred weight pass: test_layers.cpp),
// integer mode against fake quant, and a model before its QAT start equal to the plain model.
#include <gtest/gtest.h>

#include <cmath>

#include "model/passes.h"
#include "model/qat.h"
#include "runtime/error.h"
#include "tests/model_run.h"

namespace zt {
namespace {

ModelConfig qat_config(QatBits bits, int group) {
  ModelConfig c;
  c.vocab = 29, c.layers = 3, c.model_dim = 16, c.heads = 2, c.ffn_dim = 24, c.experts = 4;
  c.top_k = 2, c.shared_experts = 1, c.dense_layers = 1, c.expert_ffn_dim = 8, c.seq_len = 6;
  c.qat.bits = bits, c.qat.group_size = group;
  return c;
}

std::vector<int32_t> tokens(int B, int T, int V) {
  std::vector<int32_t> t((size_t)B * (T + 1));
  for (size_t i = 0; i < t.size(); ++i) t[i] = (int32_t)((i * 13 + 5) % V);
  return t;
}

TEST(QatModel, StepSizesFollowEveryBlockLinear) {
  const ParamTable plain = build_param_table(qat_config(QatBits::none, 0));
  const ParamTable t = build_param_table(qat_config(QatBits::int4, 8));
  int linears = 0;
  for (const ParamSpec& p : t.params) {
    if (p.qweight >= 0) {
      const ParamSpec& w = t.params[p.qweight];
      EXPECT_EQ(p.name, w.name + ".qscale");
      EXPECT_EQ(w.qscale, t.find(p.name));
      EXPECT_EQ(p.unit, w.unit);
      EXPECT_EQ(p.shape, (Shape{w.shape[0] / 8, w.shape[1]}));
      EXPECT_FALSE(p.decay);
      EXPECT_EQ(p.lr_scale, kQatStepLr / 7);
      ++linears;
      continue;
    }
    EXPECT_GE(plain.find(p.name), 0) << p.name;
    const bool block_linear =
        p.name.find(".attn.w") != std::string::npos || p.name.find(".w1") != std::string::npos ||
        p.name.find(".w2") != std::string::npos || p.name.find(".w3") != std::string::npos;
    EXPECT_EQ(p.qscale >= 0, block_linear) << p.name;  // not embed, head, router, norms
  }
  // 3 blocks x 4 attention + dense 3 + 2 MoE x (4 experts + shared) x 3
  EXPECT_EQ(linears, 12 + 3 + 2 * 5 * 3);
  const ParamTable t8 = build_param_table(qat_config(QatBits::int8, 8));
  EXPECT_EQ(t8.params[t8.params[t8.find("blocks.0.attn.wq")].qscale].shape, (Shape{16}))
      << "int8 is per output channel";
  // Under tp: per-channel step sizes of a column-parallel weight split with its columns, those of
  // a row-parallel one are whole; groups of a row-parallel weight split with its rows.
  for (QatBits bits : {QatBits::int8, QatBits::int4}) {
    ModelConfig c = qat_config(bits, 4);
    c.vocab = 30;
    for (int r = 0; r < 2; ++r) {
      const ParamTable s = build_param_table(c, TensorSlice{2, r});
      const ParamSpec& q = s.at("blocks.0.attn.wq.qscale");
      const ParamSpec& o = s.at("blocks.0.attn.wo.qscale");
      EXPECT_EQ(q.numel * 2, q.full_numel);
      EXPECT_EQ(q.col0, q.full_shape.back() / 2 * r);
      EXPECT_EQ(q.shape.back(), q.full_shape.back() / 2);
      if (bits == QatBits::int8) {
        EXPECT_EQ(o.split, Split::none);
        EXPECT_EQ(o.numel, o.full_numel);
      } else {
        EXPECT_EQ(o.split, Split::row);
        EXPECT_EQ(o.row0, o.full_shape[0] / 2 * r);
      }
    }
  }
  ModelConfig bad = qat_config(QatBits::int2, 16);  // 24 = --ffn-dim
  EXPECT_THROW(
      try { bad.validate(); } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--qat-group-size 16 does not divide"),
                  std::string::npos);
        throw;
      },
      Error);
}

TEST(QatModel, BeforeItsStartTheModelIsThePlainOne) {
  const ModelConfig c = qat_config(QatBits::int2, 8);
  ModelConfig p = c;
  p.qat = {};
  Model q(c, 3), plain(p, 3);
  const int B = 2, T = c.seq_len;
  const std::vector<int32_t> tok = tokens(B, T, c.vocab);
  test::ModelRun rq(q), rp(plain);
  q.zero_grads(), plain.zero_grads();
  EXPECT_EQ(rq.forward(tok.data(), B, T).loss(), rp.forward(tok.data(), B, T).loss());
  rq.backward(1.0f), rp.backward(1.0f);
  for (const ParamSpec& s : plain.table.params) {
    const int i = q.table.find(s.name);
    EXPECT_EQ(std::vector<float>(q.grad(i), q.grad(i) + s.numel),
              std::vector<float>(plain.grad(s.name), plain.grad(s.name) + s.numel))
        << s.name;
  }
  for (const ParamSpec& s : q.table.params) {
    if (s.qweight < 0) continue;
    for (int64_t k = 0; k < s.numel; ++k) ASSERT_EQ(q.grad((int)(&s - &q.table.params[0]))[k], 0);
  }
}

TEST(QatModel, FakeQuantChangesTheLossAndTrainsTheStepSizes) {
  for (QatBits bits : {QatBits::int8, QatBits::int4, QatBits::int2}) {
    const ModelConfig c = qat_config(bits, 8);
    Model q(c, 3);
    const int B = 2, T = c.seq_len;
    const std::vector<int32_t> tok = tokens(B, T, c.vocab);
    test::ModelRun run(q);
    const double fp = run.forward(tok.data(), B, T).loss();
    q.qat.active = true;
    q.zero_grads();
    const double fq = run.forward(tok.data(), B, T).loss();
    run.backward(1.0f);
    EXPECT_NE(fp, fq);
    EXPECT_LT(std::fabs(fp - fq), bits == QatBits::int2 ? 0.5 : 0.05) << qat_name(bits);
    double scale_grads = 0;
    for (const ParamSpec& s : q.table.params)
      if (s.qweight >= 0)
        for (int64_t k = 0; k < s.numel; ++k)
          scale_grads += std::fabs(q.grad((int)(&s - &q.table.params[0]))[k]);
    EXPECT_GT(scale_grads, 0) << qat_name(bits);
    for (const Buffer<float>& b : q.qat.fq) EXPECT_EQ(b.size(), 0u) << "released after the pass";
  }
}

TEST(QatModel, IntegerModeMatchesFakeQuant) {
  for (QatBits bits : {QatBits::int8, QatBits::int4, QatBits::int2}) {
    const ModelConfig c = qat_config(bits, 8);
    Model fq(c, 7), im(c, 7);
    fq.qat.active = im.qat.active = im.qat.integer = true;
    im.qat.level.assign(im.table.params.size(), {});
    for (size_t i = 0; i < im.table.params.size(); ++i) {
      const ParamSpec& p = im.table.params[i];
      if (p.qscale < 0) continue;
      im.qat.level[i].resize((size_t)p.numel);
      quantize_weight(im.qat.level[i].data(), im.param((int)i), im.param(p.qscale), (int)p.shape[0],
                      (int)p.shape[1], qat_group(im.table, p), c.qat.qp());
    }
    const int B = 2, T = c.seq_len;
    const std::vector<int32_t> tok = tokens(B, T, c.vocab);
    test::ModelRun a(fq), b(im);
    const double lf = a.forward(tok.data(), B, T).ce, li = b.forward(tok.data(), B, T).ce;
    EXPECT_NEAR(li, lf, 1e-5 * lf) << qat_name(bits);
  }
}

}  // namespace
}  // namespace zt
