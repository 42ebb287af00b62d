// signals.h: preemption. Slurm (and most schedulers) send SIGTERM, or SIGUSR1 with --signal, some
// time before killing a job. The handler only records the request; the trainer checks it once per
// step, agrees with the other ranks, writes a checkpoint and exits 0.
#pragma once

namespace zt {

void install_stop_handlers();  // SIGTERM and SIGUSR1
bool stop_requested();         // a handled signal arrived
int stop_signal();             // which one (0 if none)

}  // namespace zt
