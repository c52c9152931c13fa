#!/usr/bin/env bash
# Stop the test SLURM started by tests/slurm/start.sh DIR: only the daemons whose PID files it wrote
# (in reverse start order), then remove the /etc/slurm links it made. The state directory stays
# (logs) unless --clean is given.
set -uo pipefail

STATE=$(realpath -m "${1:-/tmp/kernelft-slurm}")
clean=${2:-}
[ -d "$STATE/pids" ] || { echo "no test SLURM state in $STATE"; exit 0; }

for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    pidfile=$STATE/pids/$daemon.pid
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
done
if [ -f "$STATE/links" ]; then
    while read -r link; do
        [ -L "$link" ] && [[ "$(readlink "$link")" == "$STATE"/* ]] && rm -f "$link"
    done <"$STATE/links"
    rm -f "$STATE/links"
fi
[ "$clean" = "--clean" ] && rm -rf "$STATE"
echo "test SLURM in $STATE stopped"
