#!/bin/bash
# What DHCP costs (issue 17's figures), in a private sandbox with a PID namespace of its own,
# so every dnsmasq it starts ends with it:
# - a network and subnet created with DHCP against the same without (median of 5 each):
#   the difference is the qdhcp namespace, its veth and one dnsmasq start;
# - sync of N routers whose interfaces are on N/5 DHCP networks (5 subnets each), from
#   nothing, as after a reboot: every namespace, bridge and dnsmasq made again.
# Usage (as root): bench/dhcp.sh [N]      default N: 1000. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QR=$ROOT/target/release/qrouter
export QROUTER_STATE_DIR=/run/qrouter-bench

now_us() { echo "${EPOCHREALTIME/./}"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

inner() {
    local n=$1 with=() without=()
    for k in 1 2 3 4 5; do
        local s
        s=$(now_us)
        $QR network create d$k >/dev/null
        $QR subnet create d$k --network d$k --subnet-range 192.168.$k.0/24 >/dev/null
        with+=($(($(now_us) - s)))
        s=$(now_us)
        $QR network create p$k >/dev/null
        $QR subnet create p$k --network p$k --subnet-range 192.169.$k.0/24 --no-dhcp >/dev/null
        without+=($(($(now_us) - s)))
    done
    echo "network + subnet with DHCP:    $(median "${with[@]}") us"
    echo "network + subnet without DHCP: $(median "${without[@]}") us"

    local nets=$((n / 5))
    {
        echo "network create ext_net --external --bridge br-ex"
        echo "subnet create ext --network ext_net --subnet-range 10.10.0.0/16 --gateway 10.10.10.1"
        for ((i = 0; i < n; i++)); do
            local net=$((i / 5)) sub=$((i % 5))
            ((sub == 0)) && echo "network create t$net"
            echo "subnet create s$i --network t$net --subnet-range 10.$((100 + net / 256)).$((sub * 50)).0/24"
            echo "router create r$i"
            echo "router add interface r$i s$i"
            echo "router set r$i --external-gateway ext_net"
        done
    } >/run/lines
    $QR batch --atomic /run/lines >/dev/null
    # A reboot: every dnsmasq, namespace and bridge gone; the store stays.
    for pid in /run/qrouter-bench/dhcp/*.pid; do kill "$(cat "$pid")" 2>/dev/null || true; done
    sleep 0.5
    for ns in /run/netns/*; do ip netns del "$(basename "$ns")"; done
    for b in $(ip -o link show type bridge | awk -F': ' '{print $2}'); do ip link del "$b"; done
    local s
    s=$(now_us)
    $QR sync >/dev/null
    echo "sync of $n routers on $nets DHCP networks: $(awk -v us="$(($(now_us) - s))" 'BEGIN {printf "%.2f", us / 1e6}') s"
    echo "dnsmasq running after sync: $(pgrep -c -x dnsmasq || true)"
}

if [[ ${1:-} == --inner ]]; then
    inner "$2"
    exit
fi
[[ $(id -u) == 0 ]] || { echo "dhcp.sh: run it as root" >&2; exit 2; }
cargo --quiet build-static
unshare --net --mount --pid --fork --mount-proc --propagation private sh -c \
    'mount -t tmpfs bench-run /run && mkdir -p /run/netns && ip link set lo up && exec "$@"' \
    sandbox "$ROOT/bench/dhcp.sh" --inner "${1:-1000}"
