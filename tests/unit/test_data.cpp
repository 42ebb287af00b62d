// Data pipeline: llm.c token files (both formats, mapped, shards, the writers), `prepare`
// (cleaning, document split, shards) and the epoch sampler.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "model/data/prepare.h"
#include "model/data/sampler.h"
#include "model/data/token_file.h"
#include "runtime/error.h"
#include "test_util.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("zt_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A token file built by hand: header ints then raw body bytes.
std::string token_file_bytes(int32_t magic, int32_t version, int32_t count,
                             const std::string& body) {
  std::string s(1024, '\0');
  int32_t h[3] = {magic, version, count};
  for (int k = 0; k < 3; ++k)
    for (int b = 0; b < 4; ++b) s[4 * k + b] = (char)((uint32_t)h[k] >> (8 * b));
  return s + body;
}

using test::error_of;

// Every token of a stream (one file or shards), ids checked against vocab.
std::vector<uint32_t> read_all(const std::vector<std::string>& files, int vocab) {
  TokenData d(files, vocab);
  std::vector<int32_t> t((size_t)d.size());
  d.read(0, d.size(), t.data());
  return {t.begin(), t.end()};
}
std::vector<uint32_t> read_all(const std::string& path, int vocab) {
  return read_all(std::vector<std::string>{path}, vocab);
}

std::string decode(const std::vector<uint32_t>& tokens) {
  return std::string(tokens.begin(), tokens.end());
}

}  // namespace

// ---- token files ----

TEST(TokenFile, RoundTripAndLayout) {
  TempDir dir;
  std::string path = dir / "t.bin";
  std::vector<uint32_t> tokens = {0, 1, 255, 256, 50256, 65535};
  write_token_file(path, tokens);
  std::string raw = read_bytes(path);
  ASSERT_EQ(raw.size(), 1024u + 2 * tokens.size());
  EXPECT_EQ(raw,
            token_file_bytes(20240520, 1, 6,
                             std::string("\x00\x00\x01\x00\xff\x00\x00\x01\x50\xc4\xff\xff", 12)));
  EXPECT_EQ(read_all(path, 65536), tokens);
  MappedTokenFile f(path);
  EXPECT_EQ(f.format(), TokenFormat::gpt2);
  EXPECT_EQ(f.size(), 6);

  write_token_file(path, {});  // empty and overwrite
  EXPECT_TRUE(read_all(path, 256).empty());
  EXPECT_NE(error_of([&] { write_token_file(path, {70000}); }).find("does not fit"),
            std::string::npos);
}

TEST(TokenFile, Llama3FormatRoundTrip) {  // llm.c's uint32 format, vocabularies past 65,536
  TempDir dir;
  std::string path = dir / "l3.bin";
  std::vector<uint32_t> tokens = {0, 65536, 128255, 7};
  write_token_file(path, tokens, TokenFormat::llama3);
  std::string raw = read_bytes(path);
  ASSERT_EQ(raw.size(), 1024u + 4 * tokens.size());
  EXPECT_EQ(raw, token_file_bytes(20240801, 7, 4,
                                  std::string("\x00\x00\x00\x00\x00\x00\x01\x00\xff\xf4\x01\x00"
                                              "\x07\x00\x00\x00",
                                              16)));
  EXPECT_EQ(read_all(path, 128256), tokens);
  EXPECT_EQ(MappedTokenFile(path).format(), TokenFormat::llama3);
  const std::string msg = error_of([&] { read_all(path, 100000); });
  EXPECT_NE(msg.find("token id 128255 at position 2 is >= --vocab 100000"), std::string::npos)
      << msg;
}

TEST(TokenFile, WriteIsAtomic) {
  TempDir dir;
  std::string path = dir / "t.bin";
  write_token_file(path, {1, 2, 3});
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(fs::directory_iterator(dir.path)->path().filename(), "t.bin");
  std::string missing = dir / "no_such_dir/t.bin";
  EXPECT_NE(error_of([&] { write_token_file(missing, {1}); }).find(missing), std::string::npos);
  EXPECT_FALSE(fs::exists(missing));
}

TEST(TokenFile, BadFilesNameTheFile) {
  TempDir dir;
  std::string path = dir / "bad.bin";
  auto check = [&](const std::string& bytes, std::vector<std::string> parts) {
    write_bytes(path, bytes);
    std::string msg = error_of([&] { read_all(path, 256); });
    ASSERT_FALSE(msg.empty()) << "no error for " << parts[0];
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  };
  check(std::string(100, '\0'), {"too short", "100"});
  check(token_file_bytes(12345, 1, 2, "ab"), {"magic", "12345", "20240520", "20240801"});
  check(token_file_bytes(20240520, 3, 2, "abcd"), {"version", "3"});
  check(token_file_bytes(20240801, 1, 1, "abcd"), {"version 1", "expected 7"});
  check(token_file_bytes(20240520, 1, 10, std::string(10, 'a')), {"10 tokens", "1044"});
  check(token_file_bytes(20240520, 1, 2, "abcde"), {"2 tokens", "1028"});  // trailing garbage
  check(token_file_bytes(20240801, 7, 2, "abcdefg"), {"2 tokens", "1032"});
  check(token_file_bytes(20240520, 1, 3, std::string("\x05\x00\x00\x01\x07\x00", 6)),
        {"token id 256", "position 1", "--vocab 256"});
  std::string missing = dir / "missing.bin";
  EXPECT_NE(error_of([&] { read_all(missing, 256); }).find(missing), std::string::npos);
}

TEST(TokenFile, IdsAreCheckedAsTheyAreRead) {
  // A bad id does not stop the file from opening: the samples before it read, the one holding it
  // fails naming the file and the position.
  TempDir dir;
  std::vector<uint32_t> tokens(5000, 3);
  tokens[4321] = 300;
  const std::string path = dir / "t.bin";
  write_token_file(path, tokens);
  TokenData d({path}, 256);
  std::vector<int32_t> out(100);
  d.read(0, 100, out.data());
  EXPECT_EQ(out[99], 3);
  const std::string msg = error_of([&] { d.read(4300, 100, out.data()); });
  EXPECT_NE(msg.find(path + ": token id 300 at position 4321 is >= --vocab 256"), std::string::npos)
      << msg;
  EXPECT_NE(error_of([&] { d.read(4990, 20, out.data()); }).find("outside the 5000 tokens"),
            std::string::npos);
}

TEST(TokenFile, ShardsReadAsOneStreamInNameOrder) {
  TempDir dir;
  std::vector<uint32_t> all;
  for (uint32_t i = 0; i < 300; ++i) all.push_back(i % 251);
  // Written out of order; name order is the stream order. Plus a val shard and a stray file.
  write_token_file(dir / "fw_train_000002.bin", {all.begin() + 200, all.end()});
  write_token_file(dir / "fw_train_000000.bin", {all.begin(), all.begin() + 70});
  write_token_file(dir / "fw_train_000001.bin", {all.begin() + 70, all.begin() + 200});
  write_token_file(dir / "fw_val_000000.bin", {1, 2, 3});
  write_bytes(dir / "notes.txt", "not a shard");
  const std::vector<std::string> files = resolve_token_files(dir.path, "train", "--data");
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(fs::path(files[0]).filename(), "fw_train_000000.bin");
  EXPECT_EQ(fs::path(files[2]).filename(), "fw_train_000002.bin");
  EXPECT_EQ(read_all(files, 256), all);
  TokenData d(files, 256);
  std::vector<int32_t> out(150);  // across two boundaries
  d.read(60, 150, out.data());
  for (int i = 0; i < 150; ++i) EXPECT_EQ(out[i], (int32_t)all[60 + i]);
  EXPECT_EQ(d.describe()["files"][1]["name"], "fw_train_000001.bin");
  EXPECT_EQ(d.describe()["tokens"], 300);
  EXPECT_EQ(resolve_token_files(dir / "fw_train_*.bin", "train", "--data"), files);
  EXPECT_EQ(resolve_token_files(dir.path, "val", "--data").size(), 1u);
  // A directory's ROLE.bin wins over its shards; nothing at all is an error naming the flag.
  write_token_file(dir / "train.bin", {9});
  EXPECT_EQ(resolve_token_files(dir.path, "train", "--data"),
            std::vector<std::string>{dir / "train.bin"});
  TempDir empty;
  EXPECT_NE(error_of([&] {
              resolve_token_files(empty.path, "train", "--data");
            }).find("--data: no train.bin and no train shards"),
            std::string::npos);
  EXPECT_TRUE(resolve_token_files(empty.path, "val", "--data", false).empty());
  EXPECT_NE(error_of([&] {
              resolve_token_files(empty / "x_*.bin", "train", "--data");
            }).find("--data: no file matches"),
            std::string::npos);
  // The shards of one stream share a format.
  write_token_file(dir / "fw_train_000003.bin", {1}, TokenFormat::llama3);
  EXPECT_NE(error_of([&] {
              TokenData(resolve_token_files(dir / "fw_train_*", "train", "--data"), 256);
            }).find("share a format"),
            std::string::npos);
}

TEST(TokenFile, WriterShardsAndReplacesEarlierOutput) {
  TempDir dir;
  write_token_file(dir / "train.bin", {1});               // an earlier unsharded run
  write_token_file(dir / "train_000009.bin", {1});        // and an earlier longer sharded one
  write_token_file(dir / "other_train_000000.bin", {1});  // not this writer's
  {
    TokenWriter abandoned(dir.path, "train", 4);
    for (uint32_t i = 0; i < 10; ++i) abandoned.append(i);
  }  // destroyed without finish: nothing of it remains
  EXPECT_FALSE(fs::exists(dir / "train_000000.bin"));
  EXPECT_FALSE(fs::exists(dir / "train_000000.bin.tmp"));
  TokenWriter w(dir.path, "train", 4);
  for (uint32_t i = 0; i < 10; ++i) w.append(i);
  const std::vector<std::string> files = w.finish();
  ASSERT_EQ(files.size(), 3u);  // 4 + 4 + 2
  EXPECT_EQ(MappedTokenFile(files[2]).size(), 2);
  EXPECT_EQ(read_all(files, 256), (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_FALSE(fs::exists(dir / "train.bin"));
  EXPECT_FALSE(fs::exists(dir / "train_000009.bin"));
  EXPECT_TRUE(fs::exists(dir / "other_train_000000.bin"));
}

TEST(TokenFile, EveryLayoutSeesTheSameGlobalBatchesAcrossShards) {
  // The samples of a step, taken by 1 rank or by each of 4 ranks in its slice, are the same
  // tokens, also where a sample spans two shards.
  TempDir dir;
  std::vector<uint32_t> all;
  for (uint32_t i = 0; i < 2000; ++i) all.push_back((i * 7 + i / 13) % 256);
  write_token_file(dir / "train_000000.bin", {all.begin(), all.begin() + 777});
  write_token_file(dir / "train_000001.bin", {all.begin() + 777, all.end()});
  const TokenData shards(resolve_token_files(dir.path, "train", "--data"), 256);
  write_token_file(dir / "whole.bin", all);
  const TokenData whole({dir / "whole.bin"}, 256);
  const int T = 16, B = 2, accum = 2;
  Sampler s(shards.size(), T, 5);
  for (int64_t step = 0; step < 40; ++step) {
    std::vector<int32_t> one((size_t)B * accum * 4 * (T + 1)), four(one.size()), ref(one.size());
    for (int i = 0; i < accum * 4; ++i)  // dp 1 with grad-accum 8
      fill_samples(s, shards, first_sample(step, B, accum * 4, 1, 0, i), B, T,
                   &one[(size_t)i * B * (T + 1)]);
    for (int r = 0; r < 4; ++r)  // dp 4 with grad-accum 2, rank-major
      for (int i = 0; i < accum; ++i)
        fill_samples(s, shards, first_sample(step, B, accum, 4, r, i), B, T,
                     &four[(size_t)(r * accum + i) * B * (T + 1)]);
    for (int i = 0; i < accum * 4; ++i)
      fill_samples(s, whole, first_sample(step, B, accum * 4, 1, 0, i), B, T,
                   &ref[(size_t)i * B * (T + 1)]);
    EXPECT_EQ(one, four) << "step " << step;
    EXPECT_EQ(one, ref) << "step " << step;
  }
}

// ---- prepare ----

TEST(Prepare, CleansTerminalText) {
  EXPECT_EQ(clean_terminal_text("\x1b[32m\xe6\x9d\x8e\xe7\x99\xbd\x1b[m\n"),
            "\xe6\x9d\x8e\xe7\x99\xbd\n");
  EXPECT_EQ(clean_terminal_text("\x1b[1;33mA\x1b[;mB\x1b[;[34;1mC\x1b[0m"), "ABC");
  EXPECT_EQ(clean_terminal_text("a\x1b(Bb\x1b=c\x1b]0;title\x07"
                                "d\x1b]2;t\x1b\\e"),
            "abcde");
  EXPECT_EQ(clean_terminal_text("very *__\b\bUN*lucky\r\n\a"), "very *UN*lucky\n");
  EXPECT_EQ(clean_terminal_text("\b\n\bx\t\x1b"), "\nx\t");
}

TEST(Prepare, ValRuleSpreadsDocuments) {
  std::vector<int64_t> val;
  for (int64_t i = 0; i < 1000; ++i)
    if (is_val_document(i, 0.05)) val.push_back(i);
  ASSERT_EQ(val.size(), 50u);
  for (size_t k = 0; k < val.size(); ++k) EXPECT_EQ(val[k], 19 + 20 * (int64_t)k);
  for (int64_t i = 0; i < 100; ++i) EXPECT_FALSE(is_val_document(i, 0.0));
}

TEST(Prepare, SplitsFortuneFilesExactly) {
  TempDir dir;
  fs::create_directories(dir.path / "in/sub");
  write_bytes(dir / "in/a.txt", "\x1b[32mTitle A\x1b[m\nline a1\n%\n\x1b[33mB\x1b[m body\n%\n");
  write_bytes(dir / "in/sub/b.txt", "c1\n%\n\n%\nd1\n\x1b[;[34;1md2\x1b[m\n");
  write_bytes(dir / "in/b.dat", std::string("\x00\x00\x00\x02\x00\x00\x00\x04", 8));  // binary
  fs::create_symlink("a.txt", dir.path / "in/z_link.txt");                            // read once
  fs::create_symlink("..", dir.path / "in/sub/loop");                                 // no cycle

  PrepareResult r = prepare_corpus({dir / "in"}, dir / "out/data", 0.5);
  // Documents in order: "Title A\nline a1\n", "B body\n", "c1\n", "d1\nd2\n" (the blank one is
  // dropped); with f = 0.5 documents 1 and 3 go to val.
  EXPECT_EQ(r.files, 2);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].find("b.dat"), std::string::npos);
  EXPECT_EQ(r.documents, 4);
  EXPECT_EQ(r.train_documents, 2);
  EXPECT_EQ(r.val_documents, 2);
  std::string train = decode(read_all(dir / "out/data/train.bin", 256));
  std::string val = decode(read_all(dir / "out/data/val.bin", 256));
  EXPECT_EQ(train, "Title A\nline a1\n\nc1\n");
  EXPECT_EQ(val, "B body\n\nd1\nd2\n");
  EXPECT_EQ(r.train_tokens, (int64_t)train.size());
  EXPECT_EQ(r.val_tokens, (int64_t)val.size());

  // Sharded: the same streams in shards of 5 tokens, and the single files replaced by them.
  PrepareResult s = prepare_corpus({dir / "in"}, dir / "out/data", 0.5, 5);
  EXPECT_EQ(s.train_files.size(), (train.size() + 4) / 5);
  EXPECT_EQ(fs::path(s.train_files[0]).filename(), "train_000000.bin");
  EXPECT_EQ(decode(read_all(s.train_files, 256)), train);
  EXPECT_EQ(decode(read_all(resolve_token_files(dir / "out/data", "val", "--data"), 256)), val);
  EXPECT_FALSE(fs::exists(dir / "out/data/train.bin"));
}

TEST(Prepare, ErrorsAreOneClearLine) {
  TempDir dir;
  write_bytes(dir / "a.txt", "one\n%\ntwo\n%\nthree\n");
  write_bytes(dir / "bin.dat", std::string("\x00\xff", 2));
  auto msg = [&](std::vector<std::string> in, double f) {
    return error_of([&] { prepare_corpus(in, dir / "out", f); });
  };
  EXPECT_NE(msg({dir / "missing"}, 0.05).find(dir / "missing"), std::string::npos);
  EXPECT_NE(msg({dir / "a.txt"}, 1.0).find("--val-fraction"), std::string::npos);
  EXPECT_NE(msg({dir / "a.txt"}, -0.1).find("--val-fraction"), std::string::npos);
  EXPECT_NE(msg({dir / "bin.dat"}, 0.05).find("no readable"), std::string::npos);
  EXPECT_NE(msg({dir / "a.txt"}, 0.05).find("val split is empty"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out/train.bin"));
  EXPECT_FALSE(fs::exists(dir / "out/train.bin.tmp"));
  EXPECT_TRUE(msg({dir / "a.txt"}, 0.5).empty());
}

TEST(Prepare, CommandLine) {
  TempDir dir;
  write_bytes(dir / "a.txt", "one\n%\ntwo\n%\nthree\n");
  std::string base = std::string(ZT_BINARY) + " prepare --output " + (dir / "out");
  EXPECT_EQ(std::system((base + " --val-fraction 0.5 --input " + (dir / "a.txt") + " >" +
                         (dir / "log") + " 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(read_bytes(dir / "log").find("1 files (0 skipped), 3 documents"), std::string::npos);
  EXPECT_EQ(decode(read_all(dir / "out/val.bin", 256)), "two\n");
  int rc = std::system((base + " --input " + (dir / "nope") + " 2>" + (dir / "err")).c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  EXPECT_NE(read_bytes(dir / "err").find(dir / "nope"), std::string::npos);
}

// ---- sampler ----

TEST(Sampler, EachEpochIsAPermutationOfAllWindows) {
  const int64_t ntokens = 1000;
  const int seq_len = 16;
  Sampler s(ntokens, seq_len, 1234);
  const int64_t S = s.samples_per_epoch();
  EXPECT_EQ(S, (ntokens - 1) / seq_len);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> starts;
    for (int64_t j = epoch * S; j < (epoch + 1) * S; ++j) {
      int64_t st = s.start(j);
      EXPECT_EQ(st % seq_len, 0);
      EXPECT_GE(st, 0);
      EXPECT_LE(st + seq_len + 1, ntokens);  // the whole sample is inside the file
      starts.insert(st);
    }
    EXPECT_EQ((int64_t)starts.size(), S);
  }
  std::vector<int64_t> e0, e1;
  for (int64_t j = 0; j < S; ++j) e0.push_back(s.start(j)), e1.push_back(s.start(S + j));
  EXPECT_NE(e0, e1);  // epochs are shuffled differently
}

TEST(Sampler, DeterministicPerSeedAndOrderIndependent) {
  Sampler a(5000, 8, 7), b(5000, 8, 7), c(5000, 8, 8);
  const int64_t S = a.samples_per_epoch(), n = 3 * S;
  std::vector<int64_t> fwd(n), rev(n), other(n);
  for (int64_t j = 0; j < n; ++j) fwd[j] = a.start(j), other[j] = c.start(j);
  for (int64_t j = n - 1; j >= 0; --j) rev[j] = b.start(j);
  EXPECT_EQ(fwd, rev);
  EXPECT_NE(fwd, other);
  const std::vector<int64_t> p1 = epoch_permutation(S, 7, 1);  // the sampler's compact copy
  for (int64_t j = 0; j < S; ++j) EXPECT_EQ(fwd[S + j], p1[j] * 8);
  for (int64_t j : {5 * S + 3, int64_t{2}, 5 * S + 3, 4 * S}) {  // jumping between epochs
    Sampler fresh(5000, 8, 7);
    EXPECT_EQ(a.start(j), fresh.start(j));
  }
  // A shuffle, not the identity: most windows move.
  int fixed = 0;
  for (int64_t j = 0; j < S; ++j) fixed += fwd[j] == j * 8;
  EXPECT_LT(fixed, S / 10);
}

TEST(Sampler, TooFewTokensNamesTheFile) {
  std::string msg = error_of([] { Sampler s(16, 16, 1, "data/val.bin"); });
  EXPECT_NE(msg.find("data/val.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("16 tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--seq-len 16"), std::string::npos) << msg;
  Sampler just(17, 16, 1);
  EXPECT_EQ(just.samples_per_epoch(), 1);
  EXPECT_EQ(just.start(5), 0);
}

}  // namespace zt
