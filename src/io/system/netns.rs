//! Test support: a network namespace of the test's own, deleted on drop, and a way
//! to run code inside it from a thread (`setns`), so the code under test sees only
//! the interfaces the test created. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).

use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted when dropped.
pub(crate) struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `xwt-<tag>-<pid>-<n>` with loopback up; panics if that fails
    /// (tests in the I/O layer need root).
    pub(crate) fn new(tag: &str) -> TestNetns {
        let name = format!(
            "xwt-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip (iproute2)");
        assert!(
            out.status.success(),
            "ip netns add {name} failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`; panics with ip's message on failure.
    pub(crate) fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip (iproute2)");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A veth pair: `name` here, `peer_name` in `peer`.
    pub(crate) fn veth(&self, name: &str, peer: &TestNetns, peer_name: &str) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ]);
    }

    /// IPv6 on `dev` (whatever the host's defaults), without duplicate
    /// address detection, so its addresses are usable at once rather than
    /// tentative for a second.
    pub(crate) fn ipv6_without_dad(&self, dev: &str) {
        let out = self.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
            &format!("net.ipv6.conf.{dev}.accept_dad=0"),
        ]);
        assert!(
            out.status.success(),
            "sysctl in {} for {dev}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a command inside the namespace (`ip netns exec`) and returns its output.
    pub(crate) fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("run ip netns exec")
    }

    /// The ifindex of a device in the namespace, as `ip` reports it.
    pub(crate) fn ifindex(&self, dev: &str) -> u32 {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", "dev", dev])
            .output()
            .expect("run ip (iproute2)");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex for {dev} in {}: {text}", self.name))
    }

    /// Moves the calling thread into the namespace. Threads it spawns afterwards,
    /// and processes it starts, are in the namespace too.
    pub(crate) fn enter(&self) {
        enter_named(&self.name);
    }

    /// Runs `body` on a new thread that has entered the namespace.
    pub(crate) fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                self.enter();
                body()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// Moves the calling thread into the namespace `/run/netns/NAME` (also for
/// threads that outlive a borrow of the [`TestNetns`]).
pub(crate) fn enter_named(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|err| panic!("open /run/netns/{name}: {err}"));
    if let Err(err) = crate::io::sys::netns::enter_net(file.as_fd()) {
        panic!("setns into {name}: {err}");
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
