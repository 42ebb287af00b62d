// signals.cpp: async-signal-safe stop request (a lock-free atomic store only).
#include "runtime/signals.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <sstream>

#include "runtime/error.h"

namespace zt {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

void on_signal(int sig) { g_signal.store(sig, std::memory_order_relaxed); }

}  // namespace

std::vector<int> parse_preempt_signals(const std::string& names) {
  static const std::pair<const char*, int> known[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                                                      {"TERM", SIGTERM}, {"INT", SIGINT},
                                                      {"HUP", SIGHUP},   {"ALRM", SIGALRM}};
  std::vector<int> out;
  std::stringstream in(names);
  for (std::string w; std::getline(in, w, ',');) {
    std::string n;
    for (char c : w)
      if (!std::isspace((unsigned char)c)) n += (char)std::toupper((unsigned char)c);
    if (n.empty()) continue;
    if (n.rfind("SIG", 0) == 0) n = n.substr(3);
    int sig = 0;
    for (const auto& [name, number] : known)
      if (n == name) sig = number;
    if (!sig) fail("--preempt-signal: '", w, "' is not one of USR1, USR2, TERM, INT, HUP, ALRM");
    if (std::find(out.begin(), out.end(), sig) == out.end()) out.push_back(sig);
  }
  if (out.empty()) fail("--preempt-signal needs at least one signal (e.g. USR1,TERM)");
  return out;
}

void install_stop_handlers(const std::vector<int>& signals) {
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : signals) sigaction(sig, &sa, nullptr);
}

bool stop_requested() { return g_signal.load(std::memory_order_relaxed) != 0; }
int stop_signal() { return g_signal.load(std::memory_order_relaxed); }

}  // namespace zt
