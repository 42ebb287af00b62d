// trace.h: Chrome trace events (chrome://tracing, Perfetto) for `train --trace FILE`.
// Each rank records complete events ("ph": "X") on two tracks: compute (forward, backward,
// optimizer, waits on communication) and comm (each collective from issue to the moment its
// completion was observed). Recording is off unless enabled and costs one branch when off.
#pragma once
#include <mutex>
#include <string>
#include <vector>

namespace zt {

enum class TraceTrack : int { compute = 0, comm = 1 };

class Tracer {
 public:
  static Tracer& get();
  void enable(int rank);
  bool on() const { return on_; }
  // A span of [t0_ms, t1_ms] on the steady clock (runtime/metrics.h now_ms()).
  void span(const std::string& name, TraceTrack track, double t0_ms, double t1_ms);
  // This rank's events, comma-separated JSON objects (with the track-naming metadata).
  std::string events_json() const;

 private:
  struct Event {
    std::string name;
    TraceTrack track;
    double t0, t1;
  };
  bool on_ = false;
  int rank_ = 0;
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

// Records its lifetime as a compute-track span when tracing is on.
class TraceScope {
 public:
  explicit TraceScope(const char* name, TraceTrack track = TraceTrack::compute);
  ~TraceScope();

 private:
  const char* name_;
  TraceTrack track_;
  double t0_ = 0;
};

// Writes {"traceEvents": [joined]} to path (via a temporary file), naming the file on failure.
void write_trace_file(const std::string& path, const std::vector<std::string>& rank_events);

}  // namespace zt
