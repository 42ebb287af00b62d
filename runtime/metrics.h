// metrics.h: JSON Lines metrics (SPEC section 4) and the terminal progress line.
#pragma once
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace zt {

// Writes one JSON object per line; flushed after every line so a killed run keeps its metrics.
// A new file, or with `append` (a resumed run) the end of an existing one.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  // "" = disabled; throws naming the file
  explicit MetricsWriter(const std::string& path, bool append = false);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const nlohmann::json& j);

 private:
  FILE* f_ = nullptr;
  std::string path_;
};

// "step 120/300 [=====>    ] loss 2.913 lr 2.1e-03 1.2k tok/s ... | 1m05s elapsed, ETA 4m20s" on
// one line: redrawn with \r when stdout is a terminal and `bar` allows it, printed as plain lines
// otherwise. (Under mpirun a rank's stdout is a pseudo-terminal that ends up in logs: the trainer
// passes bar = false there.) Each update adds the time since construction and an ETA from the steps
// done since `first` (a resumed run starts past 0): "... | 1m05s elapsed, ETA 4m20s".
class Progress {
 public:
  explicit Progress(int64_t total, bool bar = true, int64_t first = 0);
  void update(int64_t step, const std::string& figures);
  void finish();
  double elapsed_s() const;

 private:
  int64_t total_, first_;
  bool tty_;
  bool open_line_ = false;
  double t0_ms_;
};

// "45s", "3m05s", "2h07m".
std::string human_duration(double seconds);

inline double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

std::string human_bytes(double bytes);  // "12.3 MiB"

}  // namespace zt
