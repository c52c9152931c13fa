#!/usr/bin/env bash
# Start a single-node SLURM with accounting (munge, MariaDB, slurmdbd, slurmctld, slurmd) for
# tests/test_slurm.py. Everything lives under one state directory (first argument, default
# /tmp/kernelft-slurm); tests/slurm/stop.sh DIR stops exactly the daemons started here (PID files)
# and removes the /etc/slurm links made here. Needs root and tests/slurm/install.sh.
#
# Measured facts behind each setting: ../shared/notes/slurm-local.md (sacct needs slurmdbd + MariaDB;
# the jobstep plugin drops SLURM_CONF, so the config must be visible at /etc/slurm; munge socket
# passed to every daemon; job_comment shows the Snakemake rule in sacct).
set -euo pipefail

STATE=$(realpath -m "${1:-/tmp/kernelft-slurm}")
CLUSTER=kernelft
HOST=$(hostname -s)
DB_PORT=${KERNELFT_SLURM_DB_PORT:-13306}
DBD_PORT=${KERNELFT_SLURM_DBD_PORT:-16819}
CTLD_PORT=${KERNELFT_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${KERNELFT_SLURM_SLURMD_PORT:-16818}
DB_PASS=kernelft-test

if [ -e "$STATE/pids" ] && [ -n "$(ls -A "$STATE/pids" 2>/dev/null)" ]; then
    echo "a test SLURM already runs from $STATE (stop it with tests/slurm/stop.sh $STATE)" >&2
    exit 1
fi
for name in slurm.conf cgroup.conf slurmdbd.conf; do
    if [ -e "/etc/slurm/$name" ] && [ ! -L "/etc/slurm/$name" ]; then
        echo "/etc/slurm/$name exists and is not ours: this machine has its own SLURM; not starting" >&2
        exit 1
    fi
done

rm -rf "$STATE"
mkdir -p "$STATE"/{etc,pids,log,munge,spool/ctld,spool/d,db}
chmod 755 "$STATE"
log() { echo "[slurm-test $(date +%T)] $*"; }

# --- munge: own key and socket, run as the munge user -------------------------------------------
chown munge:munge "$STATE/munge"
chmod 755 "$STATE/munge"
MUNGE_SOCKET=$STATE/munge/munge.socket
runuser -u munge -- mungekey --create --keyfile="$STATE/munge/munge.key"
runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed" --force </dev/null >/dev/null 2>&1
for _ in $(seq 50); do [ -s "$STATE/munge/munged.pid" ] && break; sleep 0.1; done
cp "$STATE/munge/munged.pid" "$STATE/pids/munged.pid"
log "munged up"

# --- MariaDB for slurmdbd --------------------------------------------------------------------------
chown mysql:mysql "$STATE/db"
mariadb-install-db --no-defaults --datadir="$STATE/db" --user=mysql --auth-root-authentication-method=socket \
    >"$STATE/log/mariadb-install.log" 2>&1
DB_SOCKET=$STATE/db/mysqld.sock
mariadbd --no-defaults --datadir="$STATE/db" --socket="$DB_SOCKET" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --user=mysql --pid-file="$STATE/db/mysqld.pid" \
    --log-error="$STATE/log/mariadb.log" --skip-log-bin --innodb-buffer-pool-size=64M \
    </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/pids/mariadbd.pid"
for _ in $(seq 100); do mariadb-admin --socket="$DB_SOCKET" -u root ping >/dev/null 2>&1 && break; sleep 0.2; done
mariadb --socket="$DB_SOCKET" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
log "mariadb up on 127.0.0.1:$DB_PORT"

# --- configuration ---------------------------------------------------------------------------------
CPUS=$(nproc --all)  # --all: the machine's, whatever OMP_NUM_THREADS the caller has
MEM_MB=$(awk '/MemAvailable/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat >"$STATE/etc/slurm.conf" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$STATE/etc/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
IgnoreSystemd=yes
CONF
cat >"$STATE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/etc/slurmdbd.conf"
# The jobstep plugin drops SLURM_CONF before its inner srun: make the config visible at /etc/slurm.
mkdir -p /etc/slurm
for name in slurm.conf cgroup.conf slurmdbd.conf; do
    ln -sfn "$STATE/etc/$name" "/etc/slurm/$name"
    echo "/etc/slurm/$name" >>"$STATE/links"
done
export SLURM_CONF=$STATE/etc/slurm.conf

# --- daemons ---------------------------------------------------------------------------------------
wait_for_pid() {  # $1: the daemon's own PID file, $2: our copy
    for _ in $(seq 100); do [ -s "$1" ] && break; sleep 0.1; done
    [ -s "$1" ] || { echo "$(basename "$2" .pid) did not start; see $STATE/log" >&2; exit 1; }
    cp "$1" "$2"
}
slurmdbd </dev/null >/dev/null 2>&1
wait_for_pid "$STATE/slurmdbd.pid" "$STATE/pids/slurmdbd.pid"
for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
log "slurmdbd up on port $DBD_PORT"
sacctmgr -i add cluster "$CLUSTER" >/dev/null
slurmctld </dev/null >/dev/null 2>&1
wait_for_pid "$STATE/slurmctld.pid" "$STATE/pids/slurmctld.pid"
slurmd </dev/null >/dev/null 2>&1
wait_for_pid "$STATE/slurmd.pid" "$STATE/pids/slurmd.pid"
for _ in $(seq 100); do
    sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
    sleep 0.2
done
sinfo -h -o %t | grep -qE '^(idle|mix|alloc)' || { echo "node did not come up: $(sinfo)" >&2; exit 1; }
log "slurmctld and slurmd up: $(sinfo -h -o '%P %D %t %c CPUs %m MB')"
echo "export SLURM_CONF=$SLURM_CONF" >"$STATE/env.sh"
