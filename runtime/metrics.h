// metrics.h: JSON Lines metrics (SPEC section 4) and the terminal progress line.
#pragma once
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace zt {

// Appends one JSON object per line; flushed after every line so a killed run keeps its metrics.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::string& path);  // "" = disabled; throws naming the file
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const nlohmann::json& j);

 private:
  FILE* f_ = nullptr;
  std::string path_;
};

// "step 120/300 [=====>    ] loss 2.913 lr 2.1e-03 1.2k tok/s ..." on one line: redrawn with \r
// when stdout is a terminal and `bar` allows it, printed as plain lines otherwise. (Under mpirun a
// rank's stdout is a pseudo-terminal that ends up in logs: the trainer passes bar = false there.)
class Progress {
 public:
  explicit Progress(int64_t total, bool bar = true);
  void update(int64_t step, const std::string& figures);
  void finish();

 private:
  int64_t total_;
  bool tty_;
  bool open_line_ = false;
};

inline double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

std::string human_bytes(double bytes);  // "12.3 MiB"

}  // namespace zt
