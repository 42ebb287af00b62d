#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for zerotrain's tests and for trying the sbatch
# templates (launch/slurm/*.sbatch) on a workstation. It is not a production set-up: one node,
# daemons as the calling user (root on a test machine), no accounting, no cgroups.
#
#   launch/slurm/local-cluster.sh up       install slurm-wlm + munge if missing, start munged,
#                                          slurmctld and slurmd; returns once `srun -n 1 true` works
#   launch/slurm/local-cluster.sh down     stop what `up` started (by its pid files, never by name)
#   launch/slurm/local-cluster.sh status   each daemon and the node's state; exit 0 when all run
#
# Both are idempotent: `up` on a running cluster only checks it, `down` on a stopped one does
# nothing. Everything lives in ZT_SLURM_DIR (default /tmp/zt-slurm): slurm.conf (this host's
# cores and memory from `slurmd -C`, MpiDefault=pmix), the munge key and socket, spool, logs and
# pid files. Slurm's commands read /etc/slurm/slurm.conf: `up` links it to this cluster's file
# when there is none (and `down` removes that link); when another file is there, it is left
# alone and `up` says to `export SLURM_CONF=$ZT_SLURM_DIR/slurm.conf`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=${ZT_SLURM_DIR:-/tmp/zt-slurm}
ETC=/etc/slurm/slurm.conf
CONF=$D/slurm.conf
export SLURM_CONF=$CONF

die() { echo "local-cluster.sh: $*" >&2; exit 1; }

# pid_of NAME: the pid in NAME's pid file when that process is alive and is NAME, else nothing.
pid_of() {
  local f=$D/run/$1.pid pid
  [[ -f $f ]] || return 0
  pid=$(tr -dc '0-9' <"$f")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$1" ]] && echo "$pid"
  return 0
}

install_if_missing() {
  local b missing=0
  for b in munged slurmctld slurmd srun sbatch; do
    command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || missing=1
  done
  ((missing == 0)) || "$ROOT/launch/install-deps.sh"
  export PATH=$PATH:/usr/sbin
}

write_conf() {
  local node host
  node=$(slurmd -C | head -n 1)            # NodeName=host CPUs=.. ... RealMemory=..
  [[ $node == NodeName=* ]] || die "slurmd -C did not describe this host: $node"
  host=${node%% *}; host=${host#NodeName=}
  cat >"$CONF.new" <<EOF
# Written by zerotrain's launch/slurm/local-cluster.sh: a one-node test cluster.
ClusterName=zt-local
SlurmctldHost=$host
SlurmUser=$(id -un)
SlurmctldPort=${ZT_SLURM_PORT:-6817}
SlurmdPort=$((${ZT_SLURM_PORT:-6817} + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
MinJobAge=30
KillWait=10
InactiveLimit=0
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.new" "$CONF"
  # PMIx's per-step client directories under this cluster's state, not /tmp (where another
  # cluster's job of the same id would collide with them).
  mkdir -p "$D/pmix"
  echo "PMIxCliTmpDirBase=$D/pmix" >"$D/mpi.conf"
}

link_etc() {
  if [[ -L $ETC && $(readlink "$ETC") == "$CONF" ]]; then return; fi
  if [[ -e $ETC || -L $ETC ]]; then
    echo "local-cluster.sh: $ETC belongs to another Slurm set-up and is left alone;" \
      "export SLURM_CONF=$CONF to use this cluster" >&2
    return
  fi
  if mkdir -p "$(dirname "$ETC")" 2>/dev/null && ln -s "$CONF" "$ETC" 2>/dev/null; then
    touch "$D/run/etc-link"
  else
    echo "local-cluster.sh: cannot link $ETC; export SLURM_CONF=$CONF to use this cluster" >&2
  fi
}

start_munged() {
  [[ -n $(pid_of munged) ]] && return
  if [[ ! -s $D/munge/munge.key ]]; then
    dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$D/munge/munge.key"
  fi
  munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" \
    --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" \
    --seed-file="$D/munge/munged.seed" || die "munged did not start: $(tail -n 1 "$D/log/munged.log")"
}

# start NAME: start a Slurm daemon (it writes its own pid file) unless it runs.
start() {
  [[ -n $(pid_of "$1") ]] && return
  "$1" -f "$CONF" || die "$1 did not start: $(tail -n 2 "$D/log/$1.log" 2>/dev/null | tr '\n' ' ')"
  for _ in $(seq 100); do [[ -n $(pid_of "$1") ]] && return; sleep 0.1; done
  die "$1 wrote no pid file: $(tail -n 2 "$D/log/$1.log" 2>/dev/null | tr '\n' ' ')"
}

up() {
  install_if_missing
  mkdir -p "$D"/{spool/ctld,spool/d,log,run,munge}
  chmod 700 "$D/munge"
  [[ -n $(pid_of slurmctld) || -n $(pid_of slurmd) ]] || write_conf
  link_etc
  start_munged
  start slurmctld
  start slurmd
  local host
  host=$(sed -n 's/^SlurmctldHost=//p' "$CONF")
  for _ in $(seq 120); do
    case $(sinfo -h -n "$host" -o %T 2>/dev/null) in
    idle* | mixed* | allocated*) break ;;
    down* | drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  timeout 60 srun -n 1 true || die "the cluster is up but \`srun -n 1 true\` failed; logs in $D/log"
  echo "local-cluster.sh: one-node Slurm up on $host ($(sinfo -h -o '%c CPUs, %m MB'));" \
    "config $CONF, logs $D/log"
}

# stop NAME: TERM the daemon in NAME's pid file, wait for it, then KILL.
stop() {
  local pid
  pid=$(pid_of "$1")
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null || true
    echo "local-cluster.sh: stopped $1 ($pid)"
  fi
  rm -f "$D/run/$1.pid"
}

down() {
  stop slurmd
  stop slurmctld
  stop munged
  if [[ -f $D/run/etc-link ]]; then
    [[ -L $ETC && $(readlink "$ETC") == "$CONF" ]] && rm -f "$ETC"
    rm -f "$D/run/etc-link"
  fi
}

status() {
  local n pid rc=0
  for n in munged slurmctld slurmd; do
    pid=$(pid_of "$n")
    if [[ -n $pid ]]; then echo "$n: running ($pid)"; else echo "$n: stopped"; rc=3; fi
  done
  if ((rc == 0)); then sinfo -h -N -o 'node %N: %T, %c CPUs, %m MB' 2>/dev/null || rc=3; fi
  return $rc
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: local-cluster.sh up|down|status (state in ZT_SLURM_DIR, default /tmp/zt-slurm)" ;;
esac
