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
# Without --ipv6 every namespace has IPv6 disabled (no DAD, router
# solicitations or MLD to disturb packet counts). With --ipv6 the same
# topology is dual-stack, the IPv4 side unchanged:
#   hK   eth0  fd00:50::X/64 where X is 9+K written in hex: the number of the
#              host's IPv4 octet (h1 fd00:50::a, h2 fd00:50::b, h7 fd00:50::10),
#              default via fd00:50::1
#   rtr  lan0  fd00:50::1/64
#        wan1  SLAAC from isp1's router advertisements: token ::2, so
#              2001:db8:1::2/64, and the RA's default route via fe80::1
#              (accept_ra=2: a forwarding box ignores RAs otherwise)
#        wan2  2001:db8:2::2/64, static: isp2 gives one address (masquerade);
#              its gateway is fe80::1, which isp2 does not advertise (no RA)
#        The router's only IPv6 default route is the one isp1's RA installs
#        on wan1 (realistic for a router on SLAAC); the router mode adds the rest.
#   isp1 cust  2001:db8:1::1/64, fe80::1; sends RAs (dnsmasq) for
#              2001:db8:1::/64 with the autonomous flag, and a default route
#        core  2001:db8:11::1/64
#        It routes the delegated prefix 2001:db8:100::/56 via 2001:db8:1::2:
#        a static route stands in for DHCPv6-PD.
#   isp2 cust  2001:db8:2::1/64, fe80::1    core 2001:db8:12::1/64
#   inet isp1  2001:db8:11::2/64             isp2 2001:db8:12::2/64
#        lo    2001:db8:ffff::10/128, 2001:db8:ffff::11/128 (the servers)
# The ISPs' cust interfaces have fe80::1 as their only link-local address,
# so it is the RAs' source and the router's next hop either way.
# accept_dad=0 everywhere (addresses usable at once, no DAD delay), and
# accept_ra=0 everywhere but the router's wan1. Each ISP drops in ip6tables
# FORWARD any packet from its customer whose source is not the customer's
# (isp1: 2001:db8:1::2 and 2001:db8:100::/56; isp2: 2001:db8:2::2).
# `up --ipv6` returns once the router has its SLAAC address and the RA's
# default route (it waits at most 3 s for them), so tests start alike.
#
# Usage:
#   testbed.sh up PREFIX [--lan-hosts N] [--queues Q] [--tx-offload on|off] [--mtu M] [--ipv6]
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

# A fresh namespace with lo up. Without --ipv6: no IPv6 (no DAD or router
# solicitations to disturb packet counts). With it: IPv6 without DAD (an
# address is usable at once) and deaf to router advertisements (only the
# router's wan1 listens, set apart in cmd_up); interfaces made later in the
# namespace inherit the `default` settings.
add_ns() {
    local ns=$1
    ip netns add "$ns"
    if ((IPV6)); then
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
            net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
    else
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    fi
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

# The IPv6 side of ISP n: its link to the customer, its core link, routes to
# the servers and the other ISP through inet, and anti-spoofing.
isp6() {
    local p=$1 n=$2 ns="$1-isp$2" src
    nsx "$ns" ip -6 addr add "2001:db8:$n::1/64" dev cust
    # fe80::1 is the only link-local address of cust, so it is the RAs'
    # source and the router's next hop whoever sets it (RA for isp1, the
    # config for isp2): the generated one goes, and no other is made later.
    # (core keeps its own: the kernel solicits a forwarded packet's next hop
    # from a link-local address, and sends nothing without one.)
    nsx "$ns" ip link set dev cust addrgenmode none
    nsx "$ns" ip -6 addr flush dev cust scope link
    nsx "$ns" ip -6 addr add fe80::1/64 dev cust
    nsx "$ns" ip -6 addr add "2001:db8:1$n::1/64" dev core
    nsx "$ns" ip -6 route add 2001:db8:ffff::/64 via "2001:db8:1$n::2"
    nsx "$ns" ip -6 route add 2001:db8::/32 via "2001:db8:1$n::2"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.forwarding=1
    # Like IPv4: only the customer's own sources leave the customer link.
    for src in "${@:3}"; do
        nsx "$ns" ip6tables -w -A FORWARD -i cust -s "$src" -j ACCEPT
    done
    nsx "$ns" ip6tables -w -A FORWARD -i cust -j DROP
}

# isp1's router advertisements on cust (dnsmasq, RA only: no DNS, no DHCP):
# the on-link prefix 2001:db8:1::/64 with the autonomous flag (SLAAC), and a
# default route for 1800 s, which outlives any test. Unsolicited RAs come
# every 600 s at most; the router's solicitation gets one at once. dnsmasq
# runs in isp1's namespace, so `down` stops it; it keeps no pid or lease file.
isp1_ra() {
    nsx "$1-isp1" dnsmasq --conf-file=/dev/null --port=0 --no-resolv --no-hosts \
        --interface=cust --bind-interfaces --pid-file= --leasefile-ro \
        --enable-ra --dhcp-range=2001:db8:1::,ra-only,64,12h --ra-param=cust,600,1800
}

# Waits (at most 3 s) until the router has its SLAAC address on wan1 and the
# RA's default route: RAs arrive within milliseconds, but tests must not
# race them.
wait_slaac() {
    local rtr="$1-rtr"
    for _ in $(seq 30); do
        if nsx "$rtr" ip -6 addr show dev wan1 | grep -q 'inet6 2001:db8:1::2/64' &&
            nsx "$rtr" ip -6 route show default dev wan1 | grep -q '^default via fe80::1 '; then
            return 0
        fi
        sleep 0.1
    done
    die "the router got no SLAAC address or default route on wan1 from isp1's RA within 3 s"
}

# The IPv6 side of `up` (see the header).
up6() {
    local p=$1 hosts=$2 k
    nsx "$p-rtr" ip -6 addr add fd00:50::1/64 dev lan0
    for k in $(seq "$hosts"); do
        nsx "$p-h$k" ip -6 addr add "fd00:50::$(printf '%x' $((9 + k)))/64" dev eth0
        nsx "$p-h$k" ip -6 route add default via fd00:50::1
    done
    nsx "$p-rtr" ip -6 addr add 2001:db8:2::2/64 dev wan2

    isp6 "$p" 1 2001:db8:1::2 2001:db8:100::/56
    isp6 "$p" 2 2001:db8:2::2
    # Stands in for DHCPv6-PD: the delegated prefix, routed to the router's
    # SLAAC address (on-link: the route needs no address there yet).
    nsx "$p-isp1" ip -6 route add 2001:db8:100::/56 via 2001:db8:1::2 dev cust
    nsx "$p-inet" ip -6 addr add 2001:db8:11::2/64 dev isp1
    nsx "$p-inet" ip -6 addr add 2001:db8:12::2/64 dev isp2
    nsx "$p-inet" ip -6 addr add 2001:db8:ffff::10/128 dev lo
    nsx "$p-inet" ip -6 addr add 2001:db8:ffff::11/128 dev lo
    nsx "$p-inet" ip -6 route add 2001:db8:1::/64 via 2001:db8:11::1
    nsx "$p-inet" ip -6 route add 2001:db8:100::/56 via 2001:db8:11::1
    nsx "$p-inet" ip -6 route add 2001:db8:2::/64 via 2001:db8:12::1

    # RAs first, then the router listens: the token makes wan1 solicit one,
    # which dnsmasq (already up) answers at once. The kernel takes a token
    # only on an interface that accepts RAs.
    isp1_ra "$p"
    nsx "$p-rtr" sysctl -qw net.ipv6.conf.wan1.accept_ra=2
    nsx "$p-rtr" ip token set ::2 dev wan1
    wait_slaac "$p"
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
    IPV6=0
    while [[ $# -gt 0 ]]; do
        if [[ $1 == --ipv6 ]]; then
            IPV6=1
            shift
            continue
        fi
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

    if ((IPV6)); then
        up6 "$p" "$hosts"
    fi

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
