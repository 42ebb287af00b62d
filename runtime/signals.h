// signals.h: preemption. Slurm (and most schedulers) send SIGTERM, or SIGUSR1 with --signal, some
// time before killing a job. The handler only records the request; the trainer checks it once per
// step, agrees with the other ranks, writes a checkpoint and exits 0.
#pragma once
#include <string>
#include <vector>

namespace zt {

// "USR1,TERM" (names with or without SIG, any case: USR1 USR2 TERM INT HUP ALRM) -> the
// signals; zt::Error naming --preempt-signal and the bad name otherwise. Another MPI stack or
// NCCL may use SIGUSR1 itself: then name only the others.
std::vector<int> parse_preempt_signals(const std::string& names);
void install_stop_handlers(const std::vector<int>& signals);  // others keep their default action
bool stop_requested();                                        // a handled signal arrived
int stop_signal();                                            // which one (0 if none)

}  // namespace zt
