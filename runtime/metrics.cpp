// metrics.cpp: JSON Lines writer and progress line.
#include "runtime/metrics.h"

#include <unistd.h>

#include <cmath>

#include "runtime/error.h"

namespace zt {

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  if (path.empty()) return;
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f_) fail("cannot open --metrics file '", path, "' for writing");
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const nlohmann::json& j) {
  if (!f_) return;
  std::string line = j.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    fail("cannot write to --metrics file '", path_, "'");
}

Progress::Progress(int64_t total, bool bar, int64_t first)
    : total_(total), first_(first), tty_(bar && isatty(STDOUT_FILENO)), t0_ms_(now_ms()) {}

double Progress::elapsed_s() const { return (now_ms() - t0_ms_) / 1000; }

std::string human_duration(double s) {
  char b[32];
  const long long t = std::llround(std::max(0.0, s));
  if (t < 60)
    std::snprintf(b, sizeof b, "%llds", t);
  else if (t < 3600)
    std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, t / 60 % 60);
  return b;
}

void Progress::update(int64_t step, const std::string& line) {
  const double el = elapsed_s();
  std::string figures = line + " | " + human_duration(el) + " elapsed";
  if (step > first_ && step < total_)
    figures += ", ETA " + human_duration(el / (double)(step - first_) * (double)(total_ - step));
  if (!tty_) {
    std::printf("step %lld/%lld %s\n", (long long)step, (long long)total_, figures.c_str());
    std::fflush(stdout);
    return;
  }
  const int width = 24;
  int fill = total_ > 0 ? (int)std::lround(width * (double)step / (double)total_) : width;
  std::string bar(fill, '=');
  if (fill < width) bar += '>' + std::string(width - fill - 1, ' ');
  std::printf("\r\033[Kstep %lld/%lld [%s] %s", (long long)step, (long long)total_, bar.c_str(),
              figures.c_str());
  std::fflush(stdout);
  open_line_ = true;
}

void Progress::finish() {
  if (open_line_) std::printf("\n");
  open_line_ = false;
  std::fflush(stdout);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

}  // namespace zt
