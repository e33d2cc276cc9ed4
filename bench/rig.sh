# Sourced by bench/multihost.sh and bench/resync.sh, inside their sandbox: every process
# started is killed at exit; an underlay bridge with etcd on it (ETCD, QROUTER_STORE_URL);
# `host NAME IP` makes a fake host (its own network + mount namespace on the underlay) and
# sets HOST_<NAME> to the pid that holds it.

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# etcd on the underlay, in the sandbox itself.
ip link add uly type bridge && ip addr add 192.168.50.1/24 dev uly && ip link set uly up
etcd --data-dir /run/etcd --listen-client-urls http://192.168.50.1:23790 \
    --advertise-client-urls http://192.168.50.1:23790 --listen-peer-urls http://127.0.0.1:23791 \
    --max-txn-ops 100000 --max-request-bytes 67108864 >/run/etcd.log 2>&1 &
PIDS+=($!)
ETCD=192.168.50.1:23790
export QROUTER_STORE_URL=etcd://$ETCD
for _ in $(seq 100); do curl -s -o /dev/null -X POST http://$ETCD/v3/kv/range -d '{"key":"AA=="}' && break; sleep 0.1; done

# A fake host: its own network + mount namespace on the underlay.
host() { # NAME IP
    unshare --net --mount --propagation private sh -c \
        'mount -t tmpfs h /run && mkdir -p /run/netns && ip link set lo up && exec sleep infinity' &
    local pid=$!
    PIDS+=($pid)
    sleep 0.2
    ip link add "u-$1" type veth peer name eth0 netns "$pid"
    ip link set "u-$1" master uly up
    nsenter -t "$pid" --net --mount sh -c "ip addr add $2/24 dev eth0 && ip link set eth0 up"
    eval "HOST_$1=$pid"
}
