#!/bin/bash
# qrouter against the by-hand baseline (../shared/bench/by-hand.sh), in the same run on the
# same machine. Each measurement runs in a fresh private sandbox (network + mount namespace,
# private /run), never in the machine's own network. Not part of the test suite.
#
# Each router is the by-hand work: a namespace, two tenant networks (bridge + subnet + qr-
# interface), a gateway on the external network and SNAT. qrouter builds it the way a script
# does, one invocation per step (network create x2, subnet create x2, router create,
# router add interface x2, router set --external-gateway), and through `qrouter batch`:
# line by line (each line its own change), and --atomic (all lines one change). The tenant
# subnets have no DHCP (`--no-dhcp`), as the by-hand routers have none.
#
# Usage (as root): bench/bench.sh [--reference BIN] [N ...]
#   default N: 10 100 1000 (by-hand: up to 100). With --reference, an older qrouter binary
#   (a fixed commit built in its own worktree) runs each measurement too, alternating with
#   this one in the same run, so the two are compared under the same load.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# QR names a binary already built (the inner runs get it this way too); by default this
# checkout's, built below.
BUILD=""
[[ -n ${QR:-} ]] || BUILD=1
QR=${QR:-$ROOT/target/release/qrouter}
BYHAND=${BYHAND:-$ROOT/../shared/bench/by-hand.sh}
export QROUTER_STATE_DIR=/run/qrouter-bench

now_us() { echo "${EPOCHREALTIME/./}"; }

sandbox() {
    unshare --net --mount --propagation private sh -c \
        'mount -t tmpfs bench-run /run && mkdir -p /run/netns && ip link set lo up && exec "$@"' \
        sandbox "$@"
}

# An older binary (--reference) may predate DHCP, and with it `--no-dhcp`.
NO_DHCP=""
if [[ ${1:-} == --inner ]] && "$QR" subnet create --help 2>/dev/null | grep -q -- --no-dhcp; then
    NO_DHCP=--no-dhcp
fi

# The commands for N routers, one per line: the external network first, then each router.
commands() {
    echo "network create ext_net --external --bridge br-ex"
    echo "subnet create ext --network ext_net --subnet-range 10.10.0.0/16 --gateway 10.10.10.1"
    echo "instance create upstream --network ext_net --fixed-ip 10.10.10.1"
    for ((i = 0; i < $1; i++)); do
        for k in 0 1; do
            local net=$((2 * i + k))
            echo "network create n$net"
            echo "subnet create s$net --network n$net --subnet-range 172.$((16 + net / 256)).$((net % 256)).0/24 $NO_DHCP"
        done
        echo "router create r$i"
        echo "router add interface r$i s$((2 * i))"
        echo "router add interface r$i s$((2 * i + 1))"
        echo "router set r$i --external-gateway ext_net"
    done
}

# Median wall time in ms of running "$@" $REPS times.
median_ms() {
    local t=()
    for ((r = 0; r < REPS; r++)); do
        local s
        s=$(now_us)
        "$@" >/dev/null
        t+=($(($(now_us) - s)))
    done
    printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}

# Microseconds one run of "$@" takes.
took_us() {
    local s
    s=$(now_us)
    "$@" >/dev/null
    echo $(($(now_us) - s))
}

# The median of the arguments (microseconds), in ms.
median_of() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

# The same, two decimals.
median_of2() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}

# Peak resident memory in MB of one run of "$@".
peak_mb() {
    /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1/1024}'
}

# A sandbox that exits leaves the kernel tearing down its namespaces and links in the
# background, under the same lock every netlink change takes: measuring before that is done
# would charge one run's teardown to the next. The kernel starts the teardown a second or
# two after the exit and then holds the lock in one stretch (measured: 10 s after 300
# routers, 33 s after 1000, during which a veth takes as long to make): so wait until a
# small probe has run at idle speed for 5 s on end.
probe_us() {
    local s
    s=$(now_us)
    sandbox ip link add probe0 type veth peer name probe1
    echo $(($(now_us) - s))
}
settle() {
    local calm=0
    for ((i = 0; i < 1800 && calm < 25; i++)); do
        if (($(probe_us) <= IDLE_US * 3 / 2 + 2000)); then
            calm=$((calm + 1))
        else
            calm=0
        fi
        sleep 0.2
    done
}
# --- measurements; each runs inside its own sandbox and prints one figure --------------------
inner() {
    local what=$1 n=${2:-0}
    case $what in
    byhand)
        local s
        s=$(now_us)
        "$BYHAND" "$n"
        echo $(($(now_us) - s))
        ;;
    script)
        commands "$n" >/run/cmds
        local s
        s=$(now_us)
        while read -r line; do
            # shellcheck disable=SC2086 # one word per argument, as a script types them
            $QR -f value $line >/dev/null
        done </run/cmds
        echo $(($(now_us) - s))
        ;;
    batch | atomic)
        commands "$n" >/run/cmds
        local s atomic=()
        [[ $what == atomic ]] && atomic=(--atomic)
        s=$(now_us)
        $QR batch "${atomic[@]}" /run/cmds >/dev/null
        echo $(($(now_us) - s))
        ;;
    empty)
        # qrouter and /bin/true alternating in one loop: the cost of starting qrouter.
        local q=() t=()
        for ((r = 0; r < 50; r++)); do
            q+=($(took_us "$QR" router list))
            t+=($(took_us /bin/true))
        done
        echo "$(median_of2 "${q[@]}") $(median_of2 "${t[@]}")"
        ;;
    big)
        # N routers present: show, list, memory, sync from nothing, deleting 100.
        commands "$n" >/run/cmds
        $QR batch /run/cmds >/dev/null
        local mid=r$((n / 2))
        echo "show $(REPS=20 median_ms "$QR" router show "$mid")"
        echo "list $(REPS=10 median_ms "$QR" router list)"
        echo "mem_show $(peak_mb "$QR" router show "$mid")"
        echo "mem_list $(peak_mb "$QR" router list)"
        # A static trace through the middle router (issue 19: at most 20 ms with N present).
        $QR instance create vmtrace --network n$((2 * (n / 2))) >/dev/null
        if "$QR" trace --help >/dev/null 2>&1; then
            echo "trace $(REPS=20 median_ms "$QR" trace vmtrace 10.10.10.1)"
        fi
        $QR instance delete vmtrace >/dev/null
        # Changes to live routers (gateway set, traffic possible), each on another router:
        # an interface added and removed, a floating IP made and deleted. Median of five.
        local add=() rm=() fip=() fipdel=()
        for ((k = 1; k <= 5; k++)); do
            $QR network create live$k >/dev/null
            $QR subnet create live$k --network live$k --subnet-range 192.168.$k.0/24 $NO_DHCP >/dev/null
            $QR instance create vm$k --network n$((2 * k)) >/dev/null
            add+=($(took_us $QR router add interface r$k live$k))
            fip+=($(took_us $QR floating ip create ext_net --instance vm$k))
            local id
            id=$($QR floating ip list -f value -c ID)
            fipdel+=($(took_us $QR floating ip delete "$id"))
            rm+=($(took_us $QR router remove interface r$k live$k))
            $QR instance delete vm$k >/dev/null
            $QR network delete live$k >/dev/null
        done
        echo "live_add $(median_of "${add[@]}")"
        echo "live_rm $(median_of "${rm[@]}")"
        echo "live_fip $(median_of "${fip[@]}")"
        echo "live_fipdel $(median_of "${fipdel[@]}")"
        # A router with a gateway and two interfaces deleted, its namespace with it: five
        # routers made for it, as the others were.
        local rdel=()
        for ((k = 1; k <= 5; k++)); do
            for j in 0 1; do
                echo "network create gone$k-$j"
                echo "subnet create gone$k-$j --network gone$k-$j --subnet-range 192.168.$((100 + 2 * k + j)).0/24 $NO_DHCP"
                echo "router add interface gone$k gone$k-$j"
            done | sed "3i router create gone$k" >/run/gone
            echo "router set gone$k --external-gateway ext_net" >>/run/gone
            $QR batch /run/gone >/dev/null
            rdel+=($(took_us $QR router delete --force "gone$k"))
        done
        echo "live_rdel $(median_of "${rdel[@]}")"
        # A reboot: every namespace and bridge is gone, the store remains.
        for ns in /run/netns/*; do ip netns del "$(basename "$ns")"; done
        # The kernel tears namespaces down in the background: a link dump meanwhile may come
        # back interrupted and incomplete, so bridges are listed until none is left.
        local bridges
        while bridges=$(ip -o link show type bridge 2>/dev/null | cut -d' ' -f2 | tr -d : | sed 's/@.*//') &&
            [[ -n $bridges ]]; do
            for b in $bridges; do ip link del "$b" 2>/dev/null || true; done
        done
        # ... and wait for it to end, as between runs, so that sync is not charged for it.
        settle
        local s
        s=$(now_us)
        local mem
        mem=$(peak_mb "$QR" sync)
        echo "sync $(($(now_us) - s))"
        echo "mem_sync $mem"
        s=$(now_us)
        $QR sync >/dev/null
        echo "sync_noop $(($(now_us) - s))"
        $QR router list -f value -c Name | grep -q "^$mid$"
        local victims=()
        for ((i = 0; i < 100 && i < n; i++)); do victims+=("r$i"); done
        s=$(now_us)
        $QR router delete --force "${victims[@]}" >/dev/null
        echo "delete100 $(($(now_us) - s))"
        ;;
    esac
}

if [[ ${1:-} == --inner ]]; then
    shift
    inner "$@"
    exit
fi

REF=""
if [[ ${1:-} == --reference ]]; then
    REF=$(realpath "${2:?--reference needs a binary}")
    [[ -x $REF ]] || { echo "bench.sh: $REF is not an executable" >&2; exit 2; }
    shift 2
fi
[[ $(id -u) == 0 ]] || { echo "bench.sh: run it as root (it makes namespaces in a sandbox)" >&2; exit 2; }
[[ -x $BYHAND ]] || { echo "bench.sh: by-hand baseline not found at $BYHAND (set BYHAND=)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "bench.sh: needs GNU time: apt-get install time" >&2; exit 2; }
SIZES=("${@:-10 100 1000}")
read -r -a SIZES <<<"${SIZES[*]}"
[[ -z $BUILD ]] || cargo --quiet build-static
IDLE_US=$(probe_us)
export IDLE_US
# run [BIN] MODE N: one measurement in a fresh sandbox, of this qrouter or of BIN.
run() {
    local bin=$QR
    [[ $1 == /* ]] && { bin=$1; shift; }
    settle
    QR=$bin sandbox "$ROOT/bench/bench.sh" --inner "$@"
}
per_router() { awk -v us="$1" -v n="$2" 'BEGIN {printf "%.2f", us / 1000 / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1fx", a / b}'; }

echo "qrouter $($QR --version | cut -d' ' -f2) on $(nproc) cores, $(uname -r), $(iptables --version)"
[[ -z $REF ]] || echo "reference: $REF (its figures in the last two columns, run alternating with these)"
echo
# A row: the label, this binary's figure and ratio, then the reference's where there is one.
row() {
    if [[ -n $REF ]]; then
        printf '%-36s %12s %14s %12s %14s\n' "$@"
    else
        printf '%-36s %12s %14s\n' "$1" "$2" "$3"
    fi
}
row "build N routers" "ms/router" "vs by-hand" "reference" "vs by-hand"
declare -A BASE
for n in "${SIZES[@]}"; do
    ((n <= 100)) || continue
    BASE[$n]=$(per_router "$(run byhand "$n")" "$n")
    row "by-hand (ip/iptables), N=$n" "${BASE[$n]}" "1.0x" "" ""
done
last_base=${BASE[100]:-${BASE[10]:-}}
for mode in script batch atomic; do
    for n in "${SIZES[@]}"; do
        ref_ms="" ref_ratio=""
        if [[ -n $REF ]]; then
            ref_ms=$(per_router "$(run "$REF" "$mode" "$n")" "$n")
        fi
        ms=$(per_router "$(run "$mode" "$n")" "$n")
        base=${BASE[$n]:-$last_base}
        note=""
        [[ -n ${BASE[$n]:-} ]] || note=" (vs N=100)"
        [[ -z $REF ]] || ref_ratio="$(ratio "$base" "$ref_ms")$note"
        case $mode in
        script) label="qrouter, one process per step" ;;
        batch) label="qrouter batch" ;;
        atomic) label="qrouter batch --atomic" ;;
        esac
        row "$label, N=$n" "$ms" "$(ratio "$base" "$ms")$note" "$ref_ms" "$ref_ratio"
    done
done
echo
line() {
    if [[ -n $REF ]]; then
        printf '%-48s %10s %12s\n' "$1" "$2" "$3"
    else
        printf '%-48s %10s\n' "$1" "$2"
    fi
}
seconds() { [[ -z ${1:-} ]] || awk -v us="$1" 'BEGIN {printf "%.2f s", us / 1e6}'; }
ms() { [[ -z ${1:-} ]] || echo "$1 ms"; }
mb() { [[ -z ${1:-} ]] || echo "$1 MB"; }
[[ -z $REF ]] || line "" "this" "reference"
read -r q_empty true_empty < <(run empty)
ref_empty="" ref_true=""
[[ -z $REF ]] || read -r ref_empty ref_true < <(run "$REF" empty)
line "one invocation, empty store (router list)" "$(ms "$q_empty")" "$(ms "$ref_empty")"
line "/bin/true in the same loop" "$(ms "$true_empty")" "$(ms "$ref_true")"
big=${SIZES[-1]}
declare -A NEW OLD
while read -r key val; do NEW[$key]=$val; done < <(run big "$big")
if [[ -n $REF ]]; then
    while read -r key val; do OLD[$key]=$val; done < <(run "$REF" big "$big")
fi
line "router show, $big routers present" "$(ms "${NEW[show]}")" "$(ms "${OLD[show]:-}")"
line "router list, $big routers present" "$(ms "${NEW[list]}")" "$(ms "${OLD[list]:-}")"
line "peak memory of show ($big routers)" "$(mb "${NEW[mem_show]}")" "$(mb "${OLD[mem_show]:-}")"
line "peak memory of list ($big routers)" "$(mb "${NEW[mem_list]}")" "$(mb "${OLD[mem_list]:-}")"
line "trace (static), $big routers present" "$(ms "${NEW[trace]:-}")" "$(ms "${OLD[trace]:-}")"
line "router add interface, gateway set, $big present" "$(ms "${NEW[live_add]}")" "$(ms "${OLD[live_add]:-}")"
line "router remove interface, same" "$(ms "${NEW[live_rm]}")" "$(ms "${OLD[live_rm]:-}")"
line "floating ip create, $big routers present" "$(ms "${NEW[live_fip]}")" "$(ms "${OLD[live_fip]:-}")"
line "floating ip delete, same" "$(ms "${NEW[live_fipdel]}")" "$(ms "${OLD[live_fipdel]:-}")"
line "router delete, same" "$(ms "${NEW[live_rdel]:-}")" "$(ms "${OLD[live_rdel]:-}")"
line "sync of $big routers from nothing" "$(seconds "${NEW[sync]}")" "$(seconds "${OLD[sync]:-}")"
line "peak memory of sync ($big routers)" "$(mb "${NEW[mem_sync]}")" "$(mb "${OLD[mem_sync]:-}")"
line "sync with nothing to do, $big routers" "$(seconds "${NEW[sync_noop]}")" "$(seconds "${OLD[sync_noop]:-}")"
line "router delete --force of 100 routers" "$(seconds "${NEW[delete100]}")" "$(seconds "${OLD[delete100]:-}")"
