#!/bin/bash
# What an agent's periodic full resync costs (issue 24: at most 5 % of one core on average
# for a host with 300 routers): one network host with N routers (default 300) on etcd, its
# agent idle but for its resync every --resync-interval (default 30 s); the agent's CPU time
# (/proc/PID/stat, user + system, with the processes it ran and waited for: iptables-save,
# bridge) over WINDOW seconds (default 120), and the time one full
# resync of the host takes (its debug log). As root, in a private sandbox; not part of the
# test suite.
#
# Usage (as root): bench/resync.sh [N]     QR=path/to/qrouter (default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
export QR=${QR:-$PWD/target/debug/qrouter}
export N=${N:-${1:-300}}
export WINDOW=${WINDOW:-120}
if [[ ${INSIDE:-} != 1 ]]; then
    exec env INSIDE=1 unshare --net --mount --propagation private bash -c \
        'mount -t tmpfs bench /run && mkdir -p /run/netns && ip link set lo up && exec bash "$0"' "$0"
fi

# The underlay, etcd on it, and `host NAME IP` (bench/rig.sh).
source bench/rig.sh
host net1 192.168.50.21
HOST=$HOST_net1
nsenter -t "$HOST" --net --mount env QROUTER_STORE=etcd://$ETCD "$QR" -v agent \
    --host net1 --local-ip 192.168.50.21 --role network 2>>/run/agent.log &
AGENT=$!
PIDS+=($AGENT)
sleep 2
{
    for ((i = 0; i < N; i++)); do
        echo "network create t$i"
        echo "subnet create t$i --network t$i --subnet-range 172.$((16 + i / 256)).$((i % 256)).0/24 --no-dhcp"
        echo "router create r$i --host net1"
        echo "router add interface r$i t$i"
    done
} >/run/routers.txt
QROUTER_STORE=etcd://$ETCD "$QR" batch --atomic /run/routers.txt >/dev/null
until [[ $(nsenter -t "$HOST" --net --mount ip netns list | grep -c qrouter-) -ge $N ]]; do sleep 1; done
sleep 35 # the first resync after the batch, out of the window
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$AGENT/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$WINDOW"
after=$(ticks)
echo "agent with $N routers, idle for $WINDOW s (a full resync every 30 s):" \
    "$(awk -v t=$((after - before)) -v hz="$hz" -v w="$WINDOW" 'BEGIN {printf "%.2f", 100 * t / hz / w}') % of one core"
grep -o 'full resync.*' /run/agent.log | tail -n 3
