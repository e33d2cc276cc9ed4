#!/bin/bash
# The etcd store and the agents against the embedded store, in one run on one machine (as
# root, in a private sandbox; not part of the test suite). Figures go to bench/README.md.
#
#  1. one CLI command: `network list` (a read) and `instance create` (a change the kernel
#     must apply) on the embedded store, and on etcd with the host's agent applying it and
#     the CLI waiting for it; the difference between waiting and --no-wait is how long a
#     change takes to be live (applied by its host's agent, reported) after it is written;
#  2. N routers (default 1000) spread over 3 network hosts, written in one atomic batch:
#     how long until every host's agent has applied them, and each agent's peak memory;
#     The same batch on one host with the embedded store, for comparison;
#  3. the agent of the first host killed and restarted: how long until it has re-converged.
#
# Usage (as root): bench/multihost.sh [N]     QR=path/to/qrouter (default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
export QR=${QR:-$PWD/target/debug/qrouter}
export N=${N:-${1:-1000}}
if [[ ${INSIDE:-} != 1 ]]; then
    exec env INSIDE=1 unshare --net --mount --propagation private bash -c \
        'mount -t tmpfs bench /run && mkdir -p /run/netns && ip link set lo up && exec bash "$0"' "$0"
fi

# The underlay, etcd on it, and `host NAME IP` (bench/rig.sh).
source bench/rig.sh

now_us() { echo "${EPOCHREALTIME/./}"; }
REPS=${REPS:-30}
median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'; }

agent() { # NAME IP ROLE
    local pid=HOST_$1
    nsenter -t "${!pid}" --net --mount env QROUTER_STORE=etcd://$ETCD "$QR" agent \
        --host "$1" --local-ip "$2" --role "$3" 2>>"/run/agent-$1.log" &
    eval "AGENT_$1=$!"
    PIDS+=($!)
}
b64() { printf %s "$1" | base64 -w0; }
mod_revision() { # KEY
    curl -s -X POST http://$ETCD/v3/kv/range -d "{\"key\":\"$(b64 "$1")\"}" |
        grep -o '"mod_revision":"[0-9]*"' | cut -d'"' -f4
}
applied() { # HOST -> revision it applied
    curl -s -X POST http://$ETCD/v3/kv/range -d "{\"key\":\"$(b64 /qrouter/applied/$1)\"}" |
        grep -o '"value":"[^"]*"' | cut -d'"' -f4 | base64 -d 2>/dev/null || echo 0
}
applied_mod() { # HOST -> mod revision of its applied key
    curl -s -X POST http://$ETCD/v3/kv/range -d "{\"key\":\"$(b64 /qrouter/applied/$1)\"}" |
        grep -o '"mod_revision":"[0-9]*"' | cut -d'"' -f4 || echo 0
}

echo "== 1. one command (median of $REPS), binary $QR"
host h1 192.168.50.11
agent h1 192.168.50.11 all
embedded() { QROUTER_STATE_DIR=/run/embedded nsenter -t "$HOST_h1" --net --mount "$QR" "$@"; }
onetcd() { QROUTER_STORE=etcd://$ETCD "$QR" "$@"; }
# Without DHCP on either store: the same work, and h1 (a compute host) runs no dnsmasq.
embedded network create n >/dev/null && embedded subnet create s --network n --subnet-range 10.1.0.0/16 --no-dhcp >/dev/null
onetcd network create n >/dev/null && onetcd subnet create s --network n --subnet-range 10.1.0.0/16 --no-dhcp >/dev/null
sleep 1
for what in embedded onetcd; do
    # Hosts are an etcd store's: the embedded store runs everything where it is.
    placed=(); [[ $what == onetcd ]] && placed=(--host h1)
    t=(); for ((i = 0; i < REPS; i++)); do s=$(now_us); $what network list >/dev/null; t+=($(($(now_us) - s))); done
    echo "network list, $what: $(printf '%s\n' "${t[@]}" | median_ms) ms"
    t=(); for ((i = 0; i < REPS; i++)); do s=$(now_us); $what instance create "vm-$i" --network n "${placed[@]}" >/dev/null; t+=($(($(now_us) - s))); done
    echo "instance create, $what: $(printf '%s\n' "${t[@]}" | median_ms) ms"
done
# Each followed by a pause, untimed, so that the agent applying one is not measured with the next.
t=(); for ((i = 0; i < REPS; i++)); do s=$(now_us); onetcd --no-wait instance create "nw-$i" --network n --host h1 >/dev/null; t+=($(($(now_us) - s))); sleep 0.05; done
echo "instance create, onetcd --no-wait: $(printf '%s\n' "${t[@]}" | median_ms) ms"
# Write -> applied: what waiting adds to the same command (the CLI watches the host's applied
# revision; curl is too slow to measure it with: 12 ms a request here).
echo "write -> applied on its host: the difference of the last two lines"
kill -9 "$AGENT_h1"

echo "== 2. $N routers over 3 network hosts, from nothing"
for k in 1 2 3; do host "net$k" "192.168.50.2$k"; agent "net$k" "192.168.50.2$k" network; done
sleep 2
{
    for ((i = 0; i < N; i++)); do
        echo "network create t$i"
        echo "subnet create t$i --network t$i --subnet-range 172.$((16 + i / 256)).$((i % 256)).0/24 --no-dhcp"
        echo "router create r$i --host net$((i % 3 + 1))"
        echo "router add interface r$i t$i"
    done
} >/run/routers.txt
s=$(now_us)
onetcd --no-wait batch --atomic /run/routers.txt >/dev/null
w=$(now_us)
# (r0's id from the list: `router show` would ask its agent, busy applying the batch)
r0=$(onetcd router list -f value -c ID -c Name | awk '$2 == "r0" {print $1}')
rev=$(mod_revision "/qrouter/state/router/$r0")
for k in 1 2 3; do while (($(applied "net$k") < rev)); do sleep 0.05; done; done
e=$(now_us)
echo "written in $(((w - s) / 1000)) ms; all 3 hosts applied $N routers $(((e - w) / 1000)) ms after the write"
for k in 1 2 3; do
    p=AGENT_net$k
    echo "agent net$k: $(nsenter -t "${!p}" --net --mount ip netns list | wc -l) namespaces, peak RSS $(grep VmHWM /proc/${!p}/status | awk '{print $2/1024 " MB"}')"
done

# The same routers on one host with the embedded store, converged by the command itself.
host emb 192.168.50.30
s=$(now_us)
# (without the --host of each router: hosts are an etcd store's)
sed 's/ --host net[0-9]*$//' /run/routers.txt |
    QROUTER_STATE_DIR=/run/emb nsenter -t "$HOST_emb" --net --mount "$QR" batch --atomic - >/dev/null
e=$(now_us)
echo "embedded store, one host: batch --atomic of the same $N routers, converged, in $(((e - s) / 1000)) ms"

echo "== 3. restart the agent of net1"
before=$(applied_mod net1)
kill -9 "$AGENT_net1"
s=$(now_us)
agent net1 192.168.50.21 network
while (($(applied_mod net1) <= before)); do sleep 0.05; done
e=$(now_us)
echo "net1's agent re-converged $(nsenter -t "$HOST_net1" --net --mount ip netns list | wc -l) routers $(((e - s) / 1000)) ms after it started; peak RSS $(grep VmHWM /proc/$AGENT_net1/status | awk '{print $2/1024 " MB"}')"
tail -n 2 /run/agent-net1.log
# AGENT_LOG_LINES=N: the last N lines of the restarted agent's log too, on stderr.
if [[ -n ${AGENT_LOG_LINES:-} ]]; then tail -n "$AGENT_LOG_LINES" /run/agent-net1.log >&2; fi
