#!/usr/bin/env bash
# The xwan testbed: a LAN, a router with two uplinks, two ISPs and an
# "internet", each a network namespace, joined by veth pairs.
#
#   h1..hN ── sw (bridge br0) ── lan0 [rtr] wan1 ── cust [isp1] core ── isp1 [inet]
#                                           wan2 ── cust [isp2] core ── isp2 [inet]
#
# Namespaces are named PREFIX-NODE (PREFIX-rtr, PREFIX-h1, ...). Interfaces are
# created directly inside their namespaces, so their names are short and
# nothing is ever added to the root namespace.
#
# Addresses (fixed, shared by every test):
#   hK   eth0  192.168.50.(9+K)/24, default via 192.168.50.1
#   rtr  lan0  192.168.50.1/24   wan1 198.18.1.2/24   wan2 198.18.2.2/24
#        (no default route: the router mode sets one up)
#   isp1 cust  198.18.1.1/24     core 198.18.11.1/24
#   isp2 cust  198.18.2.1/24     core 198.18.12.1/24
#   inet isp1  198.18.11.2/24    isp2 198.18.12.2/24
#        lo    203.0.113.10/32, 203.0.113.11/32 (the servers)
# Each ISP drops, in FORWARD, any packet from its customer whose source is
# not the customer's address, as real ISPs do: a reply that leaves by the
# wrong WAN is lost.
#
# Usage:
#   testbed.sh up PREFIX [--lan-hosts N] [--queues Q] [--tx-offload on|off] [--mtu M]
#   testbed.sh down PREFIX
#   testbed.sh router PREFIX kernel CONFIG             # apply `xwan kernel-script -c CONFIG`
#   testbed.sh router PREFIX kernel-script SCRIPT.sh   # run an already generated recipe
#   testbed.sh exec PREFIX NODE COMMAND...             # run a command in PREFIX-NODE
#
# `up` removes leftovers of the same prefix first; `down` removes every
# namespace of the prefix (and the processes in them). Both are idempotent.
# The xwan binary used by `router ... kernel` is $XWAN, or `xwan` on PATH.

set -euo pipefail

readonly NODE_RE='(h[0-9]+|sw|rtr|isp1|isp2|inet)'

die() {
    echo "testbed.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '/^# Usage:/,/^# The xwan binary/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_prefix() {
    [[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
        die "bad prefix '$1': 1 to 10 characters, a lower-case letter then letters or digits"
}

# Run a command inside a namespace of the testbed.
nsx() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# The testbed's namespaces that exist now, one per line.
namespaces_of() {
    ip netns list | awk '{ print $1 }' | grep -E "^$1-${NODE_RE}\$" || true
}

# Stop the processes living in a namespace: TERM, then KILL after 2 s.
kill_ns_processes() {
    local ns=$1 pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 20); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -n $pids ]] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

cmd_down() {
    [[ $# -eq 1 ]] || usage
    local p=$1 ns
    check_prefix "$p"
    for ns in $(namespaces_of "$p"); do
        kill_ns_processes "$ns"
        ip netns del "$ns" 2>/dev/null || true
    done
}

# A fresh namespace with lo up and no IPv6 (no DAD or router solicitations
# to disturb packet counts).
add_ns() {
    local ns=$1
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    nsx "$ns" ip link set lo up
}

# veth NS1 IF1 NS2 IF2 [QUEUES]: a veth pair between two namespaces.
veth() {
    local ns1=$1 if1=$2 ns2=$3 if2=$4 queues=${5:-1}
    local -a opts=(mtu "$MTU")
    if ((queues > 1)); then
        opts+=(numrxqueues "$queues" numtxqueues "$queues")
    fi
    ip link add "$if1" netns "$ns1" "${opts[@]}" type veth peer name "$if2" netns "$ns2" "${opts[@]}"
    nsx "$ns1" ip link set dev "$if1" up
    nsx "$ns2" ip link set dev "$if2" up
}

# The transmit checksum offload of an endpoint's interface.
tx_offload() {
    nsx "$1" ethtool -K "$2" tx "$TX_OFFLOAD" >/dev/null
}

isp() {
    local p=$1 n=$2 ns="$1-isp$2"
    nsx "$ns" ip addr add "198.18.$n.1/24" dev cust
    nsx "$ns" ip addr add "198.18.1$n.1/24" dev core
    nsx "$ns" ip route add 203.0.113.0/24 via "198.18.1$n.2"
    nsx "$ns" ip route add 198.18.0.0/16 via "198.18.1$n.2"
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
    nsx "$ns" iptables -w -A FORWARD -i cust ! -s "198.18.$n.2" -j DROP
}

# in_range VALUE LO HI: VALUE is a decimal number within LO..HI.
in_range() {
    [[ $1 =~ ^[0-9]{1,6}$ ]] || return 1
    (($1 >= $2 && $1 <= $3))
}

cmd_up() {
    [[ $# -ge 1 ]] || usage
    local p=$1
    shift
    check_prefix "$p"
    local hosts=2 queues=1
    TX_OFFLOAD=on
    MTU=1500
    while [[ $# -gt 0 ]]; do
        [[ $# -ge 2 ]] || die "$1 needs a value"
        case $1 in
        --lan-hosts) hosts=$2 ;;
        --queues) queues=$2 ;;
        --tx-offload) TX_OFFLOAD=$2 ;;
        --mtu) MTU=$2 ;;
        *) die "unknown option $1" ;;
        esac
        shift 2
    done
    in_range "$hosts" 1 200 || die "--lan-hosts must be 1..200"
    in_range "$queues" 1 64 || die "--queues must be 1..64"
    [[ $TX_OFFLOAD == on || $TX_OFFLOAD == off ]] || die "--tx-offload must be on or off"
    in_range "$MTU" 576 9000 || die "--mtu must be 576..9000"

    cmd_down "$p"
    # A half-built testbed is removed, whatever failed.
    # shellcheck disable=SC2064 # expand now: $p is local
    trap "cmd_down $p" EXIT

    local node k
    for node in rtr sw isp1 isp2 inet $(seq -f 'h%g' "$hosts"); do
        add_ns "$p-$node"
    done
    for node in sw isp1 isp2 inet $(seq -f 'h%g' "$hosts"); do
        nsx "$p-$node" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    done

    # The switch: a bridge joining the LAN hosts and the router.
    nsx "$p-sw" ip link add br0 mtu "$MTU" type bridge stp_state 0 mcast_snooping 0
    nsx "$p-sw" ip link set br0 up
    veth "$p-rtr" lan0 "$p-sw" rtr "$queues"
    nsx "$p-sw" ip link set rtr master br0
    for k in $(seq "$hosts"); do
        veth "$p-h$k" eth0 "$p-sw" "h$k"
        nsx "$p-sw" ip link set "h$k" master br0
        nsx "$p-h$k" ip addr add "192.168.50.$((9 + k))/24" dev eth0
        nsx "$p-h$k" ip route add default via 192.168.50.1
        tx_offload "$p-h$k" eth0
    done

    # The router: addresses only; the router mode adds the rest.
    veth "$p-rtr" wan1 "$p-isp1" cust "$queues"
    veth "$p-rtr" wan2 "$p-isp2" cust "$queues"
    nsx "$p-rtr" ip addr add 192.168.50.1/24 dev lan0
    nsx "$p-rtr" ip addr add 198.18.1.2/24 dev wan1
    nsx "$p-rtr" ip addr add 198.18.2.2/24 dev wan2

    # The ISPs and the internet behind them.
    veth "$p-isp1" core "$p-inet" isp1
    veth "$p-isp2" core "$p-inet" isp2
    isp "$p" 1
    isp "$p" 2
    nsx "$p-inet" ip addr add 198.18.11.2/24 dev isp1
    nsx "$p-inet" ip addr add 198.18.12.2/24 dev isp2
    nsx "$p-inet" ip addr add 203.0.113.10/32 dev lo
    nsx "$p-inet" ip addr add 203.0.113.11/32 dev lo
    nsx "$p-inet" ip route add 198.18.1.0/24 via 198.18.11.1
    nsx "$p-inet" ip route add 198.18.2.0/24 via 198.18.12.1
    tx_offload "$p-inet" isp1
    tx_offload "$p-inet" isp2

    trap - EXIT
}

# Apply a kernel recipe (a bash script) inside the router namespace.
run_recipe() {
    local p=$1 script=$2
    [[ -f $script ]] || die "no such script: $script"
    nsx "$p-rtr" bash "$script"
}

cmd_router() {
    [[ $# -ge 2 ]] || usage
    local p=$1 mode=$2
    shift 2
    check_prefix "$p"
    ip netns list | awk '{ print $1 }' | grep -qx "$p-rtr" || die "no testbed '$p' (run: testbed.sh up $p)"
    case $mode in
    kernel)
        [[ $# -eq 1 ]] || usage
        local script
        script=$(mktemp --suffix=.sh)
        # shellcheck disable=SC2064 # expand now: the local is gone at exit
        trap "rm -f '$script'" EXIT
        "${XWAN:-xwan}" kernel-script -c "$1" >"$script"
        run_recipe "$p" "$script"
        ;;
    kernel-script)
        [[ $# -eq 1 ]] || usage
        run_recipe "$p" "$1"
        ;;
    *) die "unknown router mode '$mode' (kernel, kernel-script)" ;;
    esac
}

cmd_exec() {
    [[ $# -ge 3 ]] || usage
    local p=$1 node=$2
    shift 2
    check_prefix "$p"
    [[ $node =~ ^${NODE_RE}$ ]] || die "unknown node '$node'"
    exec ip netns exec "$p-$node" "$@"
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
router) cmd_router "$@" ;;
exec) cmd_exec "$@" ;;
*) usage ;;
esac
