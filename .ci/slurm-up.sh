#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the slurm tests (and for trying `--launcher slurm` by hand).
# Installs Debian's slurmctld, slurmd, slurm-client and munge when missing (needs root), writes a munge key
# and a minimal slurm.conf (node = `hostname -s`, 2 CPUs), starts munged, slurmctld and slurmd, and waits
# until `srun hostname` answers. Idempotent: a running cluster with this configuration is left as it is.
# Accounting, enforced, when the MariaDB server at 127.0.0.1:3306 answers (user root, no password): Debian's
# slurmdbd stores it in the database slurm_acct_db (DB user slurm); account `trainlab` with QOS `normal`,
# default account of root (and of $SUDO_USER): an unknown account or QOS is refused by sbatch, as on a
# real site. Without MariaDB: no accounting (one line on stderr), any account or QOS name is accepted.
#   sudo .ci/slurm-up.sh           exit 0 once `srun hostname` answers
set -euo pipefail

# Zombies do not count: this machine's PID 1 reaps the daemons it inherits only now and then.
running() { pgrep -x -r D,R,S "$1" >/dev/null; }
answers() { timeout 20 srun --immediate=15 hostname >/dev/null 2>&1; }
# Up and busy (every CPU taken by jobs) counts as up: srun would only wait for a free CPU.
serving() { running munged && running slurmd && scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -N -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated|completing)"; }

NODE="$(hostname -s)"
ACCOUNT=trainlab
DB=slurm_acct_db
mariadb_root() { timeout 10 mysql --protocol=tcp -h 127.0.0.1 -P 3306 -u root "$@"; }
if command -v mysql >/dev/null && mariadb_root -e "SELECT 1" >/dev/null 2>&1; then
  ACCOUNTING=1
else
  ACCOUNTING=0
  echo "slurm-up: no MariaDB at 127.0.0.1:3306 (user root): no accounting, sbatch accepts any account or QOS name" >&2
fi
# Users whose jobs the accounting lets in: root and whoever called sudo.
USERS="root${SUDO_USER:+ $SUDO_USER}"
CONF_DIR=/etc/slurm
[ -d /etc/slurm-llnl ] && [ ! -d /etc/slurm ] && CONF_DIR=/etc/slurm-llnl

accounting_conf() {
  if [ "$ACCOUNTING" = 1 ]; then
    printf '%s\n' "AccountingStorageType=accounting_storage/slurmdbd" "AccountingStorageHost=${NODE}" \
      "# A job's user must have an association (account) and the job's QOS must be one it may use." \
      "AccountingStorageEnforce=associations,qos"
  else
    echo "AccountingStorageType=accounting_storage/none"
  fi
}

# slurmdbd.conf: slurmdbd on this node, storing into MariaDB on 127.0.0.1 as user slurm (password $1).
slurmdbd_conf() {
  cat <<EOF
AuthType=auth/munge
DbdHost=${NODE}
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$1
StorageLoc=${DB}
EOF
}

# The associations jobs need: the cluster, account trainlab (QOS normal) and its users.
associated() { [ -n "$(sacctmgr -n -P show assoc where cluster=trainlab account="${ACCOUNT}" user=root format=qos 2>/dev/null | grep -w normal)" ]; }

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
# A pending (requeued) job starts within 10 s of being eligible rather than up to 30-60 s (defaults).
SchedulerParameters=sched_interval=10,bf_interval=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=10
JobAcctGatherType=jobacct_gather/none
$(accounting_conf)
JobCompType=jobcomp/none
MpiDefault=none
NodeName=${NODE} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

if command -v srun >/dev/null && { serving || answers; } && slurm_conf | cmp -s - "$CONF_DIR/slurm.conf" \
   && { [ "$ACCOUNTING" = 0 ] || { running slurmdbd && associated; }; }; then
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
if [ "$ACCOUNTING" = 1 ] && ! command -v slurmdbd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmdbd >/dev/null
fi

# munge: one key, readable by the munge user only; munged runs as that user.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running munged; then
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

if [ "$changed" = 1 ] && running slurmctld; then
  # Some settings (AuthInfo) are read only at start: restart the daemons (jobs and their state survive).
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do running slurmctld || running slurmd || break; sleep 1; done
fi
# Accounting after slurm.conf (sacctmgr reads its storage type there) and before slurmctld starts: it refuses
# a cluster the database does not know, and holds the jobs it recovers when their user has no association.
if [ "$ACCOUNTING" = 1 ]; then
  # The DB password lives only in slurmdbd.conf (root-only); made once, kept on later runs.
  password="$(sed -n 's/^StoragePass=//p' "$CONF_DIR/slurmdbd.conf" 2>/dev/null || true)"
  [ -n "$password" ] || password="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  # slurm@localhost as well: MariaDB may name a 127.0.0.1 client localhost.
  mariadb_root <<EOF
CREATE DATABASE IF NOT EXISTS ${DB};
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '${password}';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '${password}';
GRANT ALL ON ${DB}.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON ${DB}.* TO 'slurm'@'localhost';
EOF
  if ! slurmdbd_conf "$password" | cmp -s - "$CONF_DIR/slurmdbd.conf"; then
    (umask 077; slurmdbd_conf "$password" >"$CONF_DIR/slurmdbd.conf")
    if running slurmdbd; then
      kill "$(cat /run/slurmdbd.pid)" 2>/dev/null || true
      for _ in $(seq 1 30); do running slurmdbd || break; sleep 1; done
    fi
  fi
  chmod 0600 "$CONF_DIR/slurmdbd.conf"
  running slurmdbd || slurmdbd
  for _ in $(seq 1 30); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 1; done
  # sacctmgr add refuses what exists: each entity is added only when missing.
  [ -n "$(sacctmgr -n -P show cluster trainlab format=cluster)" ] || sacctmgr -i add cluster trainlab >/dev/null
  [ -n "$(sacctmgr -n -P show qos normal format=name)" ] || sacctmgr -i add qos normal >/dev/null
  [ -n "$(sacctmgr -n -P show account "${ACCOUNT}" format=account)" ] \
    || sacctmgr -i add account "${ACCOUNT}" cluster=trainlab description="trainlab tests" organization=trainlab >/dev/null
  for user in $USERS; do
    [ -n "$(sacctmgr -n -P show assoc where cluster=trainlab account="${ACCOUNT}" user="$user" format=user)" ] \
      || sacctmgr -i add user "$user" account="${ACCOUNT}" cluster=trainlab >/dev/null
    sacctmgr -i modify user where name="$user" set defaultaccount="${ACCOUNT}" >/dev/null || true
  done
  sacctmgr -i modify account where name="${ACCOUNT}" cluster=trainlab set qos=normal defaultqos=normal >/dev/null || true
  associated || { echo "slurm-up: account ${ACCOUNT} (QOS normal) not set up; see /var/log/slurm/slurmdbd.log" >&2; exit 1; }
elif running slurmdbd; then
  kill "$(cat /run/slurmdbd.pid)" 2>/dev/null || true
fi
running slurmctld || slurmctld
running slurmd || slurmd
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
