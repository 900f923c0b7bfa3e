# Shared by scripts/test, scripts/demo and scripts/bench: checks and installs
# what xwan needs on a fresh Debian machine. Source it; do not run it.

# Debian packages: the build (clang compiles the XDP program; libbpf/libxdp
# for AF_XDP), the testbed's tools (dnsmasq-base is isp1's DHCP server and,
# with `testbed.sh up --ipv6`, its IPv6 router advertisements; iptables
# brings ip6tables; nftables is the kernel recipe's NAT66), and what
# scripts/test-package uses
# (dpkg-shlibdeps for the package's dependencies, man, systemd-analyze), and
# chromium for the status page's headless-browser test (tests/page_e2e.rs).
XWAN_PACKAGES=(
  clang llvm libclang-dev libelf-dev zlib1g-dev libpcap-dev pkg-config m4 gcc-multilib
  libbpf-dev libxdp-dev
  iproute2 iptables nftables conntrack iperf3 netsniff-ng tcpdump ethtool
  iputils-ping traceroute netcat-openbsd procps kmod
  dnsmasq-base isc-dhcp-client
  dpkg-dev man-db systemd python3
  chromium
)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [[ $(id -u) -eq 0 ]] || die "$1 needs root (network namespaces, XDP, nftables): run it with sudo"
}

# install_packages [PACKAGE...]: those missing of the list (XWAN_PACKAGES
# without one).
install_packages() {
  local missing=() wanted=("$@")
  ((${#wanted[@]})) || wanted=("${XWAN_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi
}

need_cargo() {
  if ! command -v cargo >/dev/null; then
    [[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
}

# cargo-deb builds the Debian package (scripts/package); installed once.
need_cargo_deb() {
  if ! command -v cargo-deb >/dev/null; then
    say "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked --quiet || die "cargo install cargo-deb failed"
  fi
}

mount_bpffs() {
  if ! mountpoint -q /sys/fs/bpf; then
    say "mounting bpffs at /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs at /sys/fs/bpf"
  fi
}

check_kernel() {
  ip netns add "xwan-probe-$$" 2>/dev/null || die "this kernel cannot create network namespaces"
  ip netns del "xwan-probe-$$"
  [[ -e /proc/sys/net/netfilter/nf_conntrack_max || -e /proc/net/nf_conntrack ]] \
    || modprobe nf_conntrack 2>/dev/null || true
}

prepare() {
  need_root "$1"
  install_packages
  need_cargo
  mount_bpffs
  check_kernel
}
