#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing convbench's job-array path against the real engine.
#
#   bash benchmarks/slurm-local.sh start    # as root; Debian's slurm-wlm and munge (apt-get install slurm-wlm munge)
#   bash benchmarks/slurm-local.sh stop
#
# munged runs as the munge user with a fresh random key; slurmctld and slurmd run as root on this host, with one
# node of this machine's cores and memory. Then `sbatch --array=0-2 --wait examples/slurm-array.sbatch ...` works,
# and `python -m pytest -m slurm tests/test_shards.py` submits a real array.
set -euo pipefail
ETC=/etc/slurm
STATE=/var/spool/slurm-local
case "${1:-start}" in
start)
    for tool in munged slurmctld slurmd sbatch; do
        command -v "$tool" >/dev/null || { echo "slurm-local: $tool is missing (apt-get install slurm-wlm munge)" >&2; exit 2; }
    done
    host=$(hostname -s)
    cores=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge "$ETC" "$STATE/ctld" "$STATE/d" /var/log/slurm
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    chmod 0700 /etc/munge /var/lib/munge /var/log/munge
    chmod 0400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
    cat > "$ETC/slurm.conf" <<EOF
ClusterName=convbench
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cores RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 1 30); do
        if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed|allocated"; then
            echo "slurm-local: node $host up ($cores cores, $mem MiB)"
            exit 0
        fi
        scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm-local: the node did not come up; see /var/log/slurm/" >&2
    exit 1
    ;;
stop)
    pkill -x slurmd || true
    pkill -x slurmctld || true
    ;;
*)
    echo "usage: slurm-local.sh start|stop" >&2
    exit 2
    ;;
esac
