//! IPv6 discovery end to end, in a network namespace of the test's own
//! (`xwan-d6-<pid>`, deleted on drop, a failed test included): three veth
//! pairs with IPv6 on and no duplicate address detection, an ISP router's
//! link-local address on one, addresses and an IPv6 default route set by
//! hand. Then, from a thread inside the namespace, `KernelState::read`
//! finds the uplink's global address and IPv6 gateway and the neighbour
//! prober gets the gateway's MAC into `neighbours()`; and `xwan check`,
//! run inside it, fills `address6` and `gateway6` "auto" from them.

use std::fs::File;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use xwan::io::system::{neighbours, KernelState, Neighbour, NeighbourProber};

const XWAN: &str = env!("CARGO_BIN_EXE_xwan");

/// The ISP router's MAC on the first uplink's link.
const ISP1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];

/// A network namespace of this test's, deleted (with its interfaces) on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("xwan-d6-{}", std::process::id());
        let out = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(
            out.status.success(),
            "ip netns add {name} (needs root): {}",
            err(&out)
        );
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let out = run(Command::new("ip").args(["-n", &self.0]).args(args));
        assert!(out.status.success(), "ip {}: {}", args.join(" "), err(&out));
    }

    /// A command inside the namespace.
    fn exec(&self, cmd: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd))
    }

    /// A veth pair, both ends here and up, IPv6 on without DAD.
    fn veth(&self, name: &str, peer: &str) {
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", peer]);
        for dev in [name, peer] {
            let out = self.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
                &format!("net.ipv6.conf.{dev}.accept_dad=0"),
            ]);
            assert!(out.status.success(), "sysctl for {dev}: {}", err(&out));
            self.ip(&["link", "set", dev, "up"]);
        }
    }

    /// Runs `body` on a thread that entered the namespace (`setns`).
    fn run_inside<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
                    body()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run a command")
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

/// A file under this test target's temporary directory, removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// isp1 follows both IPv6 values from the kernel; isp2 has a written
/// address and follows a gateway the kernel does not have.
const CONFIG: &str = r#"
[lan]
interface = "lan0"
networks = ["192.168.50.0/24", "fd00:50::/64"]

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"
address6 = "auto"
gateway6 = "auto"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"
address6 = "2001:db8:2::2"
gateway6 = "auto"
"#;

#[test]
fn discovers_ipv6_addresses_gateways_and_neighbours() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    ns.veth("wan2", "isp2");
    ns.veth("lan0", "host0");
    ns.ip(&["link", "set", "isp1", "address", "02:00:00:00:01:01"]);
    for (address, dev) in [
        ("198.18.1.2/24", "wan1"),
        ("198.18.2.2/24", "wan2"),
        ("192.168.50.1/24", "lan0"),
        ("2001:db8:1::2/64", "wan1"),
        ("2001:db8:2::2/64", "wan2"),
        ("fd00:50::1/64", "lan0"),
        ("fe80::1/64", "isp1"),
    ] {
        ns.ip(&["addr", "add", address, "dev", dev]);
    }
    // As router advertisements would install it.
    ns.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "wan1", "proto", "ra", "metric",
        "1024",
    ]);

    let (state, gateway) = ns.run_inside(|| {
        let state = KernelState::read().expect("rtnetlink dumps");
        let wan1 = state.link("wan1").expect("wan1").ifindex;
        let mut prober = NeighbourProber::open().expect("netlink socket");
        let wanted = |n: &Neighbour| {
            n.addr == IpAddr::V6(v6("fe80::1")) && n.ifindex == wan1 && n.mac.is_some()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            prober
                .probe(wan1, v6("fe80::1"))
                .expect("probe the IPv6 gateway");
            std::thread::sleep(Duration::from_millis(50));
            found = neighbours()
                .expect("neighbour dump")
                .into_iter()
                .find(|n| wanted(n));
        }
        (state, found)
    });
    let wan1 = state.link("wan1").expect("wan1").ifindex;
    let wan2 = state.link("wan2").expect("wan2").ifindex;
    let lan0 = state.link("lan0").expect("lan0").ifindex;
    assert_eq!(state.address6_of(wan1), Some(v6("2001:db8:1::2")));
    assert_eq!(state.gateway6_of(wan1), Some(v6("fe80::1")));
    assert_eq!(state.address6_of(wan2), Some(v6("2001:db8:2::2")));
    assert_eq!(state.gateway6_of(wan2), None);
    assert_eq!(state.address6_of(lan0), Some(v6("fd00:50::1")));
    // IPv4 reads as before beside it.
    assert_eq!(state.address_of(wan1), Some("198.18.1.2".parse().unwrap()));
    let gateway = gateway.expect("the IPv6 gateway resolved within 5 s");
    assert_eq!(gateway.mac, Some(ISP1_MAC));

    let file = TempFile(
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("discovery6-{}.toml", std::process::id())),
    );
    std::fs::write(&file.0, CONFIG).expect("write the config");
    let out = ns.exec(&[XWAN, "check", "-c", file.0.to_str().expect("utf-8 path")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "xwan check: {text}{}", err(&out));
    assert!(
        text.contains("ipv6 auto (now 2001:db8:1::2 on wan1) via auto (now fe80::1 on wan1)"),
        "{text}"
    );
    assert!(
        text.contains("ipv6 2001:db8:2::2 via auto (unresolved)"),
        "{text}"
    );
}
