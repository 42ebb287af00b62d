// trace.cpp: Chrome trace recording and writing.
#include "runtime/trace.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/metrics.h"

namespace zt {

Tracer& Tracer::get() {
  static Tracer t;
  return t;
}

void Tracer::enable(int rank) {
  rank_ = rank;
  on_ = true;
}

void Tracer::span(const std::string& name, TraceTrack track, double t0_ms, double t1_ms) {
  if (!on_) return;
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back({name, track, t0_ms, t1_ms});
}

std::string Tracer::events_json() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto add = [&](const nlohmann::json& j) {
    if (!out.empty()) out += ",\n";
    out += j.dump();
  };
  add({{"name", "process_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"args", {{"name", cat("rank ", rank_)}}}});
  add({{"name", "thread_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"tid", 0},
       {"args", {{"name", "compute"}}}});
  add({{"name", "thread_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"tid", 1},
       {"args", {{"name", "comm"}}}});
  for (const Event& e : events_)
    add({{"name", e.name},
         {"ph", "X"},
         {"pid", rank_},
         {"tid", (int)e.track},
         {"ts", e.t0 * 1000.0},  // microseconds
         {"dur", (e.t1 - e.t0) * 1000.0}});
  return out;
}

TraceScope::TraceScope(const char* name, TraceTrack track) : name_(name), track_(track) {
  if (Tracer::get().on()) t0_ = now_ms();
}

TraceScope::~TraceScope() {
  if (Tracer::get().on()) Tracer::get().span(name_, track_, t0_, now_ms());
}

void write_trace_file(const std::string& path, const std::vector<std::string>& rank_events) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) fail("cannot write --trace file '", path, "'");
  std::fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n", f);
  bool first = true;
  for (const std::string& e : rank_events) {
    if (e.empty()) continue;
    if (!first) std::fputs(",\n", f);
    std::fputs(e.c_str(), f);
    first = false;
  }
  std::fputs("\n]}\n", f);
  if (std::fclose(f) != 0) fail("cannot write --trace file '", path, "'");
  std::filesystem::rename(tmp, path);
}

}  // namespace zt
