#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests and for trying a Slurm cmd.sh without a real cluster.
#
#   tools/slurm_local.sh start  DIR   start munged, slurmctld and slurmd with everything under DIR
#   tools/slurm_local.sh stop   DIR   cancel its jobs, stop the daemons (by their pid files)
#   tools/slurm_local.sh status DIR   exit 0 when the node is up (prints sinfo)
#
# After `start`, point the Slurm commands at it:  export SLURM_CONF=DIR/slurm.conf
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge) and root (slurmd runs jobs as their user).
# Nothing outside DIR is written: its own munge key and socket, ports picked free on 127.0.0.1, state, spool and
# logs (DIR/log/*.log; DIR/log/jobcomp.log has one line per finished job). The node is this machine with its real
# CPU count and memory (slurmd -C), proctrack/linuxproc and no cgroups, so it also runs in a container.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
die() { echo "slurm_local.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || usage
action=$1
dir=$2

conf=$dir/slurm.conf
export SLURM_CONF=$conf
# The daemons, in the order they start (stopped in reverse).
daemons="munged slurmctld slurmd"
pid_file() { echo "$dir/run/$1.pid"; }

running() {  # running NAME: its pid file names a live process
  local f pid; f=$(pid_file "$1")
  [ -s "$f" ] && pid=$(cat "$f") && kill -0 "$pid" 2> /dev/null
}

free_port() {  # a TCP port free on the loopback now (the kernel's pick)
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

node_up() { [ -f "$conf" ] && sinfo -h -o %T 2> /dev/null | grep -qE '^(idle|mixed|allocated)'; }

write_conf() {
  local node hw ctld_port slurmd_port
  node=$(hostname -s)
  # "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105": this machine.
  hw=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  cat > "$conf.tmp" <<EOF
# Written by tools/slurm_local.sh: a one-node cluster on the loopback, everything under $dir.
ClusterName=asrkt-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (a container may have none to give): processes tracked through /proc, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No slurmdbd here (so no sacct): a text file with one line per finished job instead.
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# sbatch --wait polls every 2 s while MinJobAge < 6 (its wait grows to 8-10 s otherwise); finished jobs stay 5 s.
MinJobAge=5
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
}

start() {
  local p
  for p in munged mungekey slurmctld slurmd sinfo; do
    command -v "$p" > /dev/null || die "Slurm is not installed ($p not found): apt-get install slurm-wlm munge"
  done
  [ "$(id -u)" -eq 0 ] || die "slurmd must run as root (it starts jobs as their user)"
  for d in $daemons; do
    ! running "$d" || die "$d is already running for $dir (pid $(cat "$(pid_file "$d")")): stop it first"
  done
  trap 'echo "slurm_local.sh: start failed: stopping what did start" >&2; stop' EXIT
  mkdir -p "$dir"/{munge,run,state,spool,log}
  dir=$(cd "$dir" && pwd)  # absolute: the daemons chdir
  conf=$dir/slurm.conf; export SLURM_CONF=$conf
  chmod 700 "$dir/munge"
  [ -s "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
  # --force: munged refuses a socket below a world-writable folder such as /tmp otherwise.
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$(pid_file munged)" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    || die "munged did not start: see $dir/log/munged.log"
  write_conf
  slurmctld -f "$conf" || die "slurmctld did not start: see $dir/log/slurmctld.log"
  slurmd -f "$conf" -N "$(hostname -s)" || die "slurmd did not start: see $dir/log/slurmd.log"
  for _ in $(seq 150); do
    if node_up; then
      trap - EXIT
      echo "slurm_local.sh: node up; export SLURM_CONF=$conf"
      return 0
    fi
    sleep 0.2
  done
  sinfo >&2 || true
  tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  die "the node did not become idle within 30 s (logs in $dir/log)"
}

stop() {
  local jobs
  if [ -f "$conf" ] && running slurmctld; then
    # Jobs first: slurmstepd would outlive slurmd and keep running them.
    jobs=$(squeue -h -o %A 2> /dev/null) || true
    # shellcheck disable=SC2086
    [ -z "$jobs" ] || scancel $jobs || true
    for _ in $(seq 100); do
      jobs=$(squeue -h -o %A 2> /dev/null) || break
      [ -z "$jobs" ] && break
      sleep 0.1
    done
    [ -z "${jobs:-}" ] || echo "slurm_local.sh: jobs still listed at stop: $jobs" >&2
  fi
  # The Slurm daemons together (about 2 s each to exit), munged last: they authenticate through it to the end.
  terminate slurmd slurmctld
  terminate munged
}

terminate() {  # terminate NAME...: SIGTERM by pid file, wait up to 10 s, then SIGKILL
  local d f pid pids="" alive=""
  for d in "$@"; do
    f=$(pid_file "$d")
    if running "$d"; then pid=$(cat "$f"); kill -TERM "$pid" && pids="$pids $d:$pid"; fi
    rm -f "$f"  # (the daemons remove theirs too)
  done
  for _ in $(seq 100); do
    alive=""
    for d in $pids; do kill -0 "${d#*:}" 2> /dev/null && alive="$alive $d"; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  for d in $alive; do
    echo "slurm_local.sh: ${d%%:*} (pid ${d#*:}) ignored SIGTERM for 10 s: killing it" >&2
    kill -KILL "${d#*:}" 2> /dev/null || true
  done
}

status() {
  local d ok=0
  for d in $daemons; do
    if running "$d"; then echo "$d: running (pid $(cat "$(pid_file "$d")"))"; else echo "$d: not running"; ok=1; fi
  done
  [ "$ok" -eq 0 ] && node_up && sinfo && return 0
  return 1
}

case $action in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
