#!/usr/bin/env bash
# Install a single-node SLURM with accounting for tests/test_slurm.py (Debian/Ubuntu, as root):
# slurm-wlm (slurmctld + slurmd), munge, slurmdbd and MariaDB. The daemons are NOT started here
# (a policy-rc.d returning 101 keeps apt from starting them); tests/slurm/start.sh starts them.
set -euo pipefail

if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
    && command -v munged >/dev/null; then
    echo "slurm, slurmdbd, munge and mariadb already installed"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "tests/slurm/install.sh needs root (apt-get); skipping" >&2
    exit 0
fi

# Keep apt from starting the daemons; restore any policy-rc.d that was there before.
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
    backup=$(mktemp)
    cp -p "$policy" "$backup"
fi
restore() {
    if [ -n "$backup" ]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm slurmdbd munge mariadb-server >/dev/null
echo "installed: $(slurmctld -V), munge $(munged -V 2>&1 | head -1), $(mariadbd --version)"
