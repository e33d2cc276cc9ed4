#!/bin/bash
# What IPv6 costs a router (issue 28's budget: adding an IPv6 subnet to a router at most 1.5x
# adding an IPv4 one), in a private sandbox with a PID namespace of its own, so every radvd
# and dnsmasq it starts ends with it. For each of 9 routers (median reported), each with its
# gateway on ext_net (no IPv6 subnet there; its --ipv6-gateway names the upstream, so the
# IPv4 routers stay IPv4 only, as they are today):
# - `router add subnet` of an IPv4 subnet to a router that has none (a qr-, its address,
#   its SNAT rules);
# - `router add subnet` of a SLAAC IPv6 subnet to a router that routes no IPv6 yet, the
#   dearest case: the qr- with its address and link-local, IPv6 forwarding, the ip6tables
#   filter, radvd's configuration and its start;
# - a second IPv6 subnet on another network of that router: a qr-, radvd's configuration
#   rewritten and a SIGHUP.
# Networks and subnets are made beforehand (untimed), all with DHCP (a SLAAC subnet needs
# it, as in Neutron): each network has its dnsmasq.
# Usage (as root): bench/ipv6.sh      Not part of the test suite.
# Measured (two runs, load average 4-5 on 2 shared cores): IPv4 23.1 / 26.8 ms, first IPv6
# 36.6 / 33.2 ms, second IPv6 28.2 / 31.5 ms. On a quiet machine (static build at 5cd9d5e):
# IPv4 12.4 / 11.4 ms, first IPv6 16.2 / 14.8 ms (1.30x), second IPv6 12.7 / 11.7 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QR=${QR:-$ROOT/target/release/qrouter}
export QROUTER_STATE_DIR=/run/qrouter-bench

now_us() { echo "${EPOCHREALTIME/./}"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {
    local s
    s=$(now_us)
    "$QR" "$@" >/dev/null
    echo $(($(now_us) - s))
}

inner() {
    local v4=() v6=() v6b=()
    {
        echo "network create ext_net --external --bridge br-ex"
        echo "subnet create ext --network ext_net --subnet-range 10.10.0.0/16 --gateway 10.10.10.1"
        echo "network set ext_net --ipv6-gateway fe80::1"
        for k in 1 2 3 4 5 6 7 8 9; do
            echo "network create a$k"
            echo "subnet create a$k --network a$k --subnet-range 172.16.$k.0/24"
            for net in b c; do
                local range=2001:db8:$k$([[ $net == b ]] && echo 0 || echo 1)::/64
                echo "network create $net$k"
                echo "subnet create $net$k --network $net$k --subnet-range $range --ipv6-ra-mode slaac --ipv6-address-mode slaac"
            done
            echo "router create r4_$k"
            echo "router set r4_$k --external-gateway ext_net"
            echo "router create r6_$k"
            echo "router set r6_$k --external-gateway ext_net"
        done
    } >/run/lines
    $QR batch --atomic /run/lines >/dev/null
    for k in 1 2 3 4 5 6 7 8 9; do
        v4+=($(timed router add subnet "r4_$k" "a$k"))
        v6+=($(timed router add subnet "r6_$k" "b$k"))
        v6b+=($(timed router add subnet "r6_$k" "c$k"))
    done
    echo "router add subnet, IPv4:                    $(median "${v4[@]}") us (${v4[*]})"
    echo "router add subnet, first IPv6 (radvd start): $(median "${v6[@]}") us (${v6[*]})"
    echo "router add subnet, second IPv6 (SIGHUP):     $(median "${v6b[@]}") us (${v6b[*]})"
    echo "radvd running: $(pgrep -c -x radvd || true) (9 routers, each radvd with its privsep child)"
}

if [[ ${1:-} == --inner ]]; then
    inner
    exit
fi
[[ $(id -u) == 0 ]] || { echo "ipv6.sh: run it as root" >&2; exit 2; }
[[ -n ${QR_PREBUILT:-} ]] || cargo --quiet build-static
unshare --net --mount --pid --fork --mount-proc --propagation private sh -c \
    'mount -t tmpfs bench-run /run && mkdir -p /run/netns && ip link set lo up && exec "$@"' \
    sandbox "$ROOT/bench/ipv6.sh" --inner
