#!/bin/bash
# A real single-node Slurm (slurmctld + slurmd + munge, Debian's packages) as plain processes,
# without systemd: for drpipe's Slurm tests in CI, and for trying `--executor slurm` on a
# laptop. Run as root. The node advertises two fake GPUs (gres on /dev/tty0-1, as Slurm's own
# test suite does), so that a GPU request is checked by a real scheduler.
#
#   .ci/slurm-localhost.sh install|start|stop|env
#
# State lives under $SLURM_DIR (default ./.slurm); clients need SLURM_CONF=$SLURM_DIR/etc/slurm.conf
# (`eval "$(.ci/slurm-localhost.sh env)"` sets it).
set -euo pipefail
P=${SLURM_DIR:-$PWD/.slurm}
P=$(mkdir -p "$P" && cd "$P" && pwd)
export SLURM_CONF=$P/etc/slurm.conf

install_pkgs() {
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
  mkdir -p "$P"/{etc,state/ctld,state/d,log,run}
  local host cpus mem
  host=$(hostname -s); cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512 ))
  cat > "$SLURM_CONF" <<CONF
ClusterName=drpipe-ci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$P/state/ctld
SlurmdSpoolDir=$P/state/d
SlurmctldPidFile=$P/run/slurmctld.pid
SlurmdPidFile=$P/run/slurmd.pid
SlurmctldLogFile=$P/log/slurmctld.log
SlurmdLogFile=$P/log/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  echo "Name=gpu File=/dev/tty[0-1]" > "$P/etc/gres.conf"
}

start() {
  write_conf
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  install -d -o munge -g munge -m 0755 /run/munge
  # A munged already answering is reused; otherwise start one (it daemonizes).
  { munge -n | unmunge; } >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null
  /usr/sbin/slurmctld -c -f "$SLURM_CONF"
  /usr/sbin/slurmd -f "$SLURM_CONF"
  for _ in $(seq 150); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && { sinfo; return 0; }
    sleep 0.2
  done
  echo "the Slurm node did not become idle:"; sinfo -R || true; tail -20 "$P"/log/*.log; return 1
}

stop() {
  scontrol shutdown 2>/dev/null || true
  for _ in $(seq 50); do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.2
  done
  [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
}

case ${1:-} in
  install) install_pkgs ;;
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 install|start|stop|env"; exit 2 ;;
esac
