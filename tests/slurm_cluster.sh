#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on this machine, for tests/test_slurm.py (and for trying
# `python -m solution.jobs sbatch` where there is no cluster):
#
#   eval "$(bash tests/slurm_cluster.sh start)"   # stdout: export lines for SLURM_CONF, ABAW_SLURM, ABAW_SLURM_DIR
#   ...sbatch, squeue, sinfo...
#   bash tests/slurm_cluster.sh stop               # stops the daemons and removes $ABAW_SLURM_DIR
#
# start: when `sinfo` already answers (a cluster is there, or one this script started), it is
# used and nothing is started (ABAW_SLURM_DIR is then empty: nothing for stop to stop). Else,
# as root: installs Debian's slurm-wlm and munge when a daemon or sbatch is missing (apt-get,
# bounded by SLURM_INSTALL_TIMEOUT seconds, default 300), writes a one-node slurm.conf into a
# new temporary folder (no cgroups and no systemd; the node's CPUs and memory read from this
# machine; state, spool, logs, pid files and munge's key and socket all in that folder; free
# ports), starts munged, slurmctld and slurmd, and waits until sinfo shows the node idle.
# Exit 0 with ABAW_SLURM=ready when the cluster answers; otherwise non-zero, the reason on
# stderr, and `export ABAW_SLURM='unavailable: <reason>'` on stdout (tests/test_slurm.py
# skips with it, or fails under CI=true as root). Messages go to stderr, only exports to stdout.
# stop [DIR]: cancels the cluster's jobs, stops its daemons (by their pid files) and removes
# DIR (default $ABAW_SLURM_DIR); safe to call twice, or with nothing started.
set -uo pipefail

say() { echo "[slurm] $*" >&2; }
MARK=.abaw-slurm-cluster

unavailable() {
  say "no Slurm cluster: $1"
  printf 'export ABAW_SLURM=%q\n' "unavailable: $1"
  [ -n "${DIR:-}" ] && [ -f "$DIR/$MARK" ] && stop_dir "$DIR" >&2
  exit 1
}

answers() { timeout 10 sinfo -h -o %D > /dev/null 2>&1; }

# ------------------------------------------------------------------ install

install_slurm() {
  local limit="${SLURM_INSTALL_TIMEOUT:-300}" log policy_added=0 rc
  log="$(mktemp /tmp/abaw-slurm-apt.XXXXXX.log)"
  say "installing Debian's slurm-wlm and munge with apt-get (about a minute, at most ${limit} s; log: $log)"
  # No service may start from a package's postinst: the cluster is ours, in a temporary folder.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=60 --no-install-recommends)
  local start=$SECONDS
  # The time bound is on the download (the network is what may hang): a dpkg cut short would
  # leave the machine's packages half configured, so unpacking gets its own, generous bound.
  DEBIAN_FRONTEND=noninteractive timeout "$limit" "${apt[@]}" --download-only install slurm-wlm munge > "$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $((SECONDS - start)) -lt "$limit" ]; then
    say "apt-get could not fetch them; updating the package lists and trying again"
    DEBIAN_FRONTEND=noninteractive timeout $((limit - (SECONDS - start))) apt-get -q update >> "$log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive timeout $((limit - (SECONDS - start))) "${apt[@]}" --download-only install slurm-wlm munge >> "$log" 2>&1
    rc=$?
  fi
  if [ $rc -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive timeout 900 "${apt[@]}" install slurm-wlm munge >> "$log" 2>&1
    rc=$?
  fi
  [ $policy_added -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ $rc -ne 0 ]; then
    tail -n 15 "$log" >&2
    [ $rc -eq 124 ] && unavailable "apt-get could not fetch slurm-wlm and munge in ${limit} s (log: $log)"
    unavailable "apt-get install slurm-wlm munge failed with exit $rc (log: $log)"
  fi
  say "installed in $((SECONDS - start)) s"
  rm -f "$log"
}

# ------------------------------------------------------------------ start

free_port() {  # the first port from $1 on that nothing listens on (and the one after it too)
  local p=$1
  while [ "$p" -lt 65000 ]; do
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null && ! (exec 3<> "/dev/tcp/127.0.0.1/$((p + 1))") 2> /dev/null; then
      echo "$p"; return 0
    fi
    p=$((p + 2))
  done
  return 1
}

logs_tail() {
  local f
  for f in "$DIR"/log/*.log; do
    [ -s "$f" ] && { echo "--- $f (last lines)"; tail -n 8 "$f"; }
  done >&2
}

start() {
  if [ -z "${ABAW_SLURM_FORCE_NEW:-}" ] && command -v sinfo > /dev/null && answers; then
    say "a Slurm cluster already answers (SLURM_CONF=${SLURM_CONF:-default}); using it, starting nothing"
    [ -n "${SLURM_CONF:-}" ] && printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
    echo "export ABAW_SLURM=ready"
    echo "export ABAW_SLURM_DIR="
    return 0
  fi
  local missing=() tool
  for tool in sbatch squeue sinfo scancel slurmctld slurmd munged; do
    command -v "$tool" > /dev/null || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || unavailable "${missing[*]} not installed, and installing Debian's slurm-wlm and munge needs root"
    command -v apt-get > /dev/null || unavailable "${missing[*]} not installed, and there is no apt-get to install them"
    install_slurm
    for tool in "${missing[@]}"; do
      command -v "$tool" > /dev/null || unavailable "$tool still missing after installing slurm-wlm and munge"
    done
  fi
  [ "$(id -u)" -eq 0 ] || unavailable "starting slurmd and munged here needs root"

  DIR="$(mktemp -d /tmp/abaw-slurm.XXXXXX)" || unavailable "cannot make a temporary folder"
  touch "$DIR/$MARK"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/munge"
  chmod 700 "$DIR/munge"
  say "starting a one-node cluster in $DIR"

  # munge: our own key, socket, pid and log, so a munged of the machine is never touched.
  local sock="$DIR/munge/munge.socket"
  if ! mungekey --create --keyfile="$DIR/munge/munge.key" 2> /dev/null; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none || unavailable "cannot write a munge key"
  fi
  chmod 600 "$DIR/munge/munge.key"
  munged --force --socket="$sock" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" 2>> "$DIR/log/munged.log" ||
    { logs_tail; unavailable "munged did not start (log: $DIR/log/munged.log)"; }
  local i
  for i in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  munge -n -S "$sock" 2> /dev/null | unmunge -S "$sock" > /dev/null 2>&1 ||
    { logs_tail; unavailable "munged does not answer on $sock"; }

  # This machine as the node: its name, the CPUs this process may use, 90 % of its memory.
  local host cpus mem port
  host="$(hostname -s 2> /dev/null || hostname)"
  host="${host:-localhost}"
  cpus="$(nproc 2> /dev/null || getconf _NPROCESSORS_ONLN)"
  mem="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  port="$(free_port 6817)" || unavailable "no free port for slurmctld and slurmd"
  cat > "$DIR/slurm.conf" << EOF
# A one-node cluster for tests (written by tests/slurm_cluster.sh; removed by its stop).
ClusterName=abawtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd: a container can run this.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
MailProg=/bin/true
PlugStackConfig=$DIR/plugstack.conf
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  : > "$DIR/plugstack.conf"
  export SLURM_CONF="$DIR/slurm.conf"
  slurmctld -f "$SLURM_CONF" -c -i 2>> "$DIR/log/slurmctld.log" ||
    { logs_tail; unavailable "slurmctld did not start (log: $DIR/log/slurmctld.log)"; }
  slurmd -f "$SLURM_CONF" -N "$host" 2>> "$DIR/log/slurmd.log" ||
    { logs_tail; unavailable "slurmd did not start (log: $DIR/log/slurmd.log)"; }

  local state=""
  for i in $(seq 120); do  # up to a minute
    state="$(timeout 5 sinfo -h -N -n "$host" -o %T 2> /dev/null | head -n 1)"
    [ "$state" = idle ] && break
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    logs_tail
    timeout 5 sinfo -R >&2 2> /dev/null
    unavailable "the node did not become idle within a minute (state: ${state:-no answer}; logs in $DIR/log)"
  fi
  say "ready: node $host ($cpus CPUs, ${mem} MB), SLURM_CONF=$SLURM_CONF; stop it with: bash tests/slurm_cluster.sh stop $DIR"
  printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
  echo "export ABAW_SLURM=ready"
  printf 'export ABAW_SLURM_DIR=%q\n' "$DIR"
}

# ------------------------------------------------------------------ stop

stop_pid() {  # SIGTERM the daemon of pid file $1, SIGKILL after 10 s
  local pid i
  pid="$(cat "$1" 2> /dev/null)" || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2> /dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2> /dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2> /dev/null
}

stop_dir() {
  local dir="$1" i
  if [ ! -f "$dir/$MARK" ]; then
    say "$dir is not a cluster folder of this script; leaving it alone"
    return 1
  fi
  if [ -f "$dir/slurm.conf" ] && [ -f "$dir/run/slurmctld.pid" ] && command -v squeue > /dev/null; then
    local jobs
    jobs="$(SLURM_CONF="$dir/slurm.conf" timeout 10 squeue -h -o %A 2> /dev/null)"
    if [ -n "$jobs" ]; then
      say "cancelling the cluster's jobs: $(echo $jobs)"
      SLURM_CONF="$dir/slurm.conf" timeout 10 scancel $jobs 2> /dev/null
      for i in $(seq 30); do
        [ -z "$(SLURM_CONF="$dir/slurm.conf" timeout 5 squeue -h -t R,CG -o %A 2> /dev/null)" ] && break
        sleep 0.5
      done
    fi
  fi
  stop_pid "$dir/run/slurmd.pid"
  stop_pid "$dir/run/slurmctld.pid"
  stop_pid "$dir/run/munged.pid"
  rm -rf "$dir"
  say "stopped the cluster of $dir"
}

case "${1:-}" in
  start) start ;;
  stop)
    dir="${2:-${ABAW_SLURM_DIR:-}}"
    if [ -z "$dir" ]; then say "no cluster folder given (nor \$ABAW_SLURM_DIR): nothing to stop"; exit 0; fi
    [ -d "$dir" ] || { say "$dir is gone: nothing to stop"; exit 0; }
    stop_dir "$dir" ;;
  *) echo "usage: bash $0 start | stop [DIR]   (eval the output of start)" >&2; exit 2 ;;
esac
