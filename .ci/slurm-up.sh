#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the slurm tests (and for trying `--launcher slurm` by hand).
# Installs Debian's slurmctld, slurmd, slurm-client and munge when missing (needs root), writes a munge key
# and a minimal slurm.conf (node = `hostname -s`, 2 CPUs), starts munged, slurmctld and slurmd, and waits
# until `srun hostname` answers. Idempotent: a running cluster with this configuration is left as it is.
#   sudo .ci/slurm-up.sh           exit 0 once `srun hostname` answers
set -euo pipefail

answers() { timeout 20 srun --immediate=15 hostname >/dev/null 2>&1; }
# Up and busy (every CPU taken by jobs) counts as up: srun would only wait for a free CPU.
serving() { pgrep -x munged >/dev/null && pgrep -x slurmd >/dev/null && scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -N -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated|completing)"; }

NODE="$(hostname -s)"
CONF_DIR=/etc/slurm
[ -d /etc/slurm-llnl ] && [ ! -d /etc/slurm ] && CONF_DIR=/etc/slurm-llnl

# slurm.conf: one node, linuxproc tracking (no cgroups in a container), requeue allowed.
slurm_conf() {
  cat <<EOF
ClusterName=trainlab
SlurmctldHost=${NODE}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again after cred_expire seconds (default 120): 30, for the requeue test.
AuthInfo=cred_expire=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
NodeName=${NODE} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

if command -v srun >/dev/null && { serving || answers; } && slurm_conf | cmp -s - "$CONF_DIR/slurm.conf"; then
  echo "slurm: up"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm-up: needs root to install and start SLURM" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

# munge: one key, readable by the munge user only; munged runs as that user.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  su -s /bin/sh munge -c "/usr/sbin/munged"
fi

install -d -m 0755 "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true
if ! slurm_conf | cmp -s - "$CONF_DIR/slurm.conf"; then
  slurm_conf >"$CONF_DIR/slurm.conf"
  changed=1
else
  changed=0
fi

if [ "$changed" = 1 ] && pgrep -x slurmctld >/dev/null; then
  # Some settings (AuthInfo) are read only at start: restart the daemons (jobs and their state survive).
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 1; done
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
# A node that was down (slurmd restarted, machine rebooted) returns to service.
for _ in $(seq 1 60); do
  if answers; then
    echo "slurm: up (srun hostname answers; node ${NODE}, partition debug)"
    exit 0
  fi
  scontrol update NodeName="${NODE}" State=RESUME >/dev/null 2>&1 || true
  sleep 2
done
echo "slurm-up: srun hostname did not answer; see /var/log/slurm/*.log" >&2
exit 1
