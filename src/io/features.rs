//! The optional kernel features xwan uses, probed one at a time at start
//! (and by `xwan check --kernel`), each with what xwan does without it.
//! Nothing here changes the system for longer than a probe: programs are
//! loaded and dropped, never attached; sockets are opened and closed; the
//! `nft-owner` probe's table is owned by its socket, so the kernel deletes it
//! when the probe ends.
//!
//! | feature | probe | without it |
//! |---|---|---|
//! | `xdp-program` | load `xwan_xdp` alone | no `--io xdp` (`auto` takes packet) |
//! | `tc-program` | load `xwan_offload` alone | no in-kernel fast path |
//! | `socket-filter` | load `xwan_offload_tap` alone | `--io packet` without the fast path |
//! | `tcx` | `BPF_PROG_QUERY` of `BPF_TCX_INGRESS` on `lo` | the fast path attaches by clsact |
//! | `af-xdp` | `socket(AF_XDP)` | no `--io xdp` |
//! | `xsk-zerocopy` | every interface's `NETDEV_XDP_ACT_XSK_ZEROCOPY` | `auto` takes packet |
//! | `xdp-features` | any interface reports `NETDEV_XDP_ACT_*` | the fast path forwards by TC only |
//! | `xdp-meta` | libbpf's helper probe of `bpf_xdp_adjust_meta` for XDP | nothing: not used |
//! | `rt-sched` | `SCHED_FIFO` 1 on a throwaway thread | workers at normal priority |
//! | `nft-owner` | an nftables table with `flags owner` on a netlink socket of its own, gone when the socket closes | `--io packet`'s table is not owned: a killed xwan leaves it until the next start |
//! | `capabilities` | `CapEff` of /proc/self/status | loads read "not permitted" |
//!
//! A test switch, `XWAN_TEST_ABSENT=name,name...` in the environment, makes
//! the named features read absent without probing them, so the tests take
//! every fallback on any kernel (`rt-sched` keeps the workers at normal
//! priority too).

use libbpf_rs::libbpf_sys;
use libbpf_rs::ProgramType;

use super::bpf_object::{self, BpfProgram};
use super::sys;
pub use crate::control::protocol::{FeatureLine, FeatureState as State};

/// The environment variable of the test switch (module docs).
pub const TEST_ABSENT_ENV: &str = "XWAN_TEST_ABSENT";

/// An optional kernel feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    XdpProgram,
    TcProgram,
    SocketFilter,
    Tcx,
    AfXdp,
    XskZeroCopy,
    XdpFeatures,
    XdpMeta,
    RtSched,
    NftOwner,
    Capabilities,
}

impl Feature {
    pub const ALL: [Feature; 11] = [
        Feature::XdpProgram,
        Feature::TcProgram,
        Feature::SocketFilter,
        Feature::Tcx,
        Feature::AfXdp,
        Feature::XskZeroCopy,
        Feature::XdpFeatures,
        Feature::XdpMeta,
        Feature::RtSched,
        Feature::NftOwner,
        Feature::Capabilities,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::XdpProgram => "xdp-program",
            Feature::TcProgram => "tc-program",
            Feature::SocketFilter => "socket-filter",
            Feature::Tcx => "tcx",
            Feature::AfXdp => "af-xdp",
            Feature::XskZeroCopy => "xsk-zerocopy",
            Feature::XdpFeatures => "xdp-features",
            Feature::XdpMeta => "xdp-meta",
            Feature::RtSched => "rt-sched",
            Feature::NftOwner => "nft-owner",
            Feature::Capabilities => "capabilities",
        }
    }

    /// What xwan does without it.
    fn without(self) -> &'static str {
        match self {
            Feature::XdpProgram => "--io xdp cannot run; auto uses packet",
            Feature::TcProgram => "no in-kernel fast path: the workers forward every packet",
            Feature::SocketFilter => "--io packet runs without the in-kernel fast path",
            Feature::Tcx => {
                "the fast path attaches by a clsact filter (netlink) instead of a TCX link: \
                 one a crash leaves behind stays until the next start replaces it"
            }
            Feature::AfXdp => "--io xdp cannot run; auto uses packet",
            Feature::XskZeroCopy => "AF_XDP would copy every frame: auto uses packet",
            Feature::XdpFeatures => "the fast path forwards by TC only, never from XDP",
            Feature::XdpMeta => {
                "not needed: the XDP program marks the frames it hands to TC in their source MAC"
            }
            Feature::RtSched => "workers run at normal priority (a longer latency tail under load)",
            Feature::NftOwner => {
                "--io packet's nftables table is not owned by xwan: a killed xwan leaves it \
                 (dropping the LAN's forwarded traffic) until the next start replaces it"
            }
            Feature::Capabilities => "BPF loads and attaches are refused as not permitted",
        }
    }

    fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// An interface the per-interface probes look at.
#[derive(Debug, Clone)]
pub struct ProbedInterface {
    pub name: String,
    pub ifindex: u32,
}

/// Every feature's line, in [`Feature::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    lines: Vec<(Feature, FeatureLine)>,
}

/// A probe's outcome before the line is made: the state and the detail.
type Outcome = (State, String);

impl Features {
    /// Probes every feature, those the test switch names aside, on this
    /// kernel with this process's privileges; `interfaces` for the
    /// per-interface ones.
    pub fn probe(interfaces: &[ProbedInterface]) -> Features {
        let absent = forced_absent();
        let lines = Feature::ALL
            .into_iter()
            .map(|feature| {
                let (state, detail) = if absent.contains(&feature) {
                    (State::Forced, TEST_ABSENT_ENV.to_string())
                } else {
                    probe_one(feature, interfaces)
                };
                let effect = match state {
                    State::Available => String::new(),
                    _ => feature.without().to_string(),
                };
                let line = FeatureLine {
                    name: feature.name().to_string(),
                    state,
                    detail,
                    effect,
                };
                (feature, line)
            })
            .collect();
        Features { lines }
    }

    /// Features with the states given and no detail (tests of the choices).
    pub fn with(states: &[(Feature, State)]) -> Features {
        let lines = Feature::ALL
            .into_iter()
            .map(|feature| {
                let state = states
                    .iter()
                    .find(|(f, _)| *f == feature)
                    .map_or(State::Available, |(_, s)| *s);
                let line = FeatureLine {
                    name: feature.name().to_string(),
                    state,
                    detail: String::new(),
                    effect: String::new(),
                };
                (feature, line)
            })
            .collect();
        Features { lines }
    }

    /// Whether `feature` is there to use.
    pub fn has(&self, feature: Feature) -> bool {
        self.line(feature).state == State::Available
    }

    pub fn line(&self, feature: Feature) -> &FeatureLine {
        &self
            .lines
            .iter()
            .find(|(f, _)| *f == feature)
            .expect("every feature is probed")
            .1
    }

    pub fn lines(&self) -> Vec<FeatureLine> {
        self.lines.iter().map(|(_, line)| line.clone()).collect()
    }

    /// One log line per feature: a warning for each that is missing and
    /// costs something, information for one xwan does not need
    /// (`xdp-meta`), debug for the rest.
    pub fn log(&self) {
        for (feature, line) in &self.lines {
            match (line.state, feature) {
                (State::Available, _) => tracing::debug!("feature {line}"),
                (_, Feature::XdpMeta) => tracing::info!("feature {line}"),
                _ => tracing::warn!("feature {line}"),
            }
        }
    }
}

/// The features the test switch names; an unknown name is warned of.
pub fn forced_absent() -> Vec<Feature> {
    let Ok(names) = std::env::var(TEST_ABSENT_ENV) else {
        return Vec::new();
    };
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .filter_map(|name| {
            let feature = Feature::from_name(name);
            if feature.is_none() {
                tracing::warn!("{TEST_ABSENT_ENV}: no feature {name:?}");
            }
            feature
        })
        .collect()
}

fn probe_one(feature: Feature, interfaces: &[ProbedInterface]) -> Outcome {
    match feature {
        Feature::XdpProgram => program(BpfProgram::Xdp),
        Feature::TcProgram => program(BpfProgram::Offload),
        Feature::SocketFilter => program(BpfProgram::Tap),
        Feature::Tcx => match sys::bpf::tcx_supported(1) {
            Ok(true) => (State::Available, String::new()),
            Ok(false) => (
                State::Unavailable,
                "BPF_PROG_QUERY of BPF_TCX_INGRESS: EINVAL".to_string(),
            ),
            Err(e) => errno_outcome("BPF_PROG_QUERY of BPF_TCX_INGRESS", &e),
        },
        Feature::AfXdp => {
            match sys::socket::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) {
                Ok(_) => (State::Available, String::new()),
                Err(e) => errno_outcome("socket(AF_XDP)", &e),
            }
        }
        Feature::XskZeroCopy => {
            let (with, without) = per_interface(interfaces, |flags| {
                flags & sys::bpf::XDP_ACT_XSK_ZEROCOPY != 0
            });
            let state = if without.is_empty() && !with.is_empty() {
                State::Available
            } else {
                State::Unavailable
            };
            (state, with_and_without(&with, &without))
        }
        Feature::XdpFeatures => {
            // One interface that reports some is enough: the query works.
            let (with, without) = per_interface(interfaces, |flags| flags != 0);
            let state = if with.is_empty() {
                State::Unavailable
            } else {
                State::Available
            };
            (state, with_and_without(&with, &without))
        }
        Feature::XdpMeta => helper(
            ProgramType::Xdp,
            "XDP",
            libbpf_sys::BPF_FUNC_xdp_adjust_meta,
            "bpf_xdp_adjust_meta",
        ),
        Feature::RtSched => realtime(),
        Feature::NftOwner => nft_owner(),
        Feature::Capabilities => capabilities(),
    }
}

fn program(which: BpfProgram) -> Outcome {
    match bpf_object::try_load(which) {
        Ok(()) => (State::Available, String::new()),
        Err(refusal) if refusal.not_permitted => (State::NotPermitted, refusal.summary),
        Err(refusal) => (State::Unavailable, refusal.summary),
    }
}

fn errno_outcome(what: &str, e: &std::io::Error) -> Outcome {
    let state = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => State::NotPermitted,
        _ => State::Unavailable,
    };
    (state, format!("{what}: {e}"))
}

fn helper(
    program_type: ProgramType,
    type_name: &str,
    id: libbpf_sys::bpf_func_id,
    name: &str,
) -> Outcome {
    match program_type.is_helper_supported(id) {
        Ok(true) => (State::Available, String::new()),
        Ok(false) => (
            State::Unavailable,
            format!("the kernel refuses {name} in {type_name} programs"),
        ),
        Err(e) => {
            let not_permitted = matches!(e.kind(), libbpf_rs::ErrorKind::PermissionDenied);
            let state = if not_permitted {
                State::NotPermitted
            } else {
                State::Unavailable
            };
            (state, format!("probing {name}: {e}"))
        }
    }
}

/// The interfaces whose XDP feature flags pass `test`, and the others (or
/// those that cannot be asked, with why).
fn per_interface(
    interfaces: &[ProbedInterface],
    test: impl Fn(u64) -> bool,
) -> (Vec<String>, Vec<String>) {
    let mut with = Vec::new();
    let mut without = Vec::new();
    for interface in interfaces {
        match sys::bpf::xdp_feature_flags(interface.ifindex) {
            Ok(flags) if test(flags) => with.push(interface.name.clone()),
            Ok(_) => without.push(interface.name.clone()),
            Err(e) => without.push(format!("{} ({e})", interface.name)),
        }
    }
    (with, without)
}

fn with_and_without(with: &[String], without: &[String]) -> String {
    match (with.is_empty(), without.is_empty()) {
        (true, true) => "no interface to ask".to_string(),
        (false, true) => format!("on {}", with.join(", ")),
        (true, false) => format!("not on {}", without.join(", ")),
        (false, false) => format!("on {}; not on {}", with.join(", "), without.join(", ")),
    }
}

/// `SCHED_FIFO` 1, tried on a thread of its own that ends at once.
fn realtime() -> Outcome {
    let tried = std::thread::Builder::new()
        .name("xwan-probe-rt".to_string())
        .spawn(sys::sched::set_lowest_realtime)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            t.join()
                .map_err(|_| "the probe thread panicked".to_string())
        });
    match tried {
        Ok(Ok(())) => (State::Available, String::new()),
        Ok(Err(e)) => errno_outcome("sched_setscheduler(SCHED_FIFO)", &e),
        Err(e) => (State::Unavailable, e),
    }
}

/// A table with the `owner` flag, made on a netlink socket of its own: the
/// kernel deletes it when that socket closes, at the end of the probe.
fn nft_owner() -> Outcome {
    let mut nft = match sys::nftables::Nftables::open() {
        Ok(nft) => nft,
        Err(e) => return (State::Unavailable, e),
    };
    let probe = format!(
        "add table ip xwan_probe_{} {{ flags owner; }}",
        std::process::id()
    );
    match nft.run(&probe) {
        Ok(()) => (State::Available, String::new()),
        Err(e) if e.contains("Operation not permitted") => (State::NotPermitted, e),
        Err(e) => (State::Unavailable, e.trim().to_string()),
    }
}

/// The capabilities xwan uses, by bit: CAP_NET_ADMIN 12, CAP_NET_RAW 13,
/// CAP_SYS_ADMIN 21 (BPF before 5.8), CAP_SYS_NICE 23, CAP_PERFMON 38,
/// CAP_BPF 39.
const CAPABILITIES: [(u32, &str); 6] = [
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (21, "CAP_SYS_ADMIN"),
    (23, "CAP_SYS_NICE"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

fn capabilities() -> Outcome {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => return (State::Unavailable, format!("/proc/self/status: {e}")),
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let Some(effective) = field("CapEff:").and_then(|hex| u64::from_str_radix(hex, 16).ok()) else {
        return (
            State::Unavailable,
            "no CapEff in /proc/self/status".to_string(),
        );
    };
    capability_outcome(effective, field("Seccomp:") == Some("2"))
}

/// Available with CAP_NET_ADMIN and either CAP_BPF or CAP_SYS_ADMIN; the
/// detail names what is missing, and a seccomp filter.
fn capability_outcome(effective: u64, seccomp_filter: bool) -> Outcome {
    let has = |bit: u32| effective & (1 << bit) != 0;
    let missing: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|(bit, _)| !has(*bit))
        .map(|(_, name)| *name)
        .collect();
    let mut detail = if missing.is_empty() {
        String::new()
    } else {
        format!("missing {}", missing.join(" "))
    };
    if seccomp_filter {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str("a seccomp filter is active: a refused bpf() reads as not permitted");
    }
    let enough = has(12) && (has(39) || has(21));
    let state = if enough {
        State::Available
    } else {
        State::NotPermitted
    };
    (state, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_need_net_admin_and_bpf_or_sys_admin() {
        let all = (1u64 << 12) | (1 << 13) | (1 << 21) | (1 << 23) | (1 << 38) | (1 << 39);
        assert_eq!(
            capability_outcome(all, false),
            (State::Available, String::new())
        );
        let (state, detail) = capability_outcome((1 << 12) | (1 << 39), true);
        assert_eq!(state, State::Available);
        assert!(detail.starts_with("missing CAP_NET_RAW CAP_SYS_ADMIN CAP_SYS_NICE CAP_PERFMON;"));
        assert!(detail.contains("seccomp"));
        assert_eq!(capability_outcome(1 << 39, false).0, State::NotPermitted);
    }

    #[test]
    fn a_line_says_state_detail_and_effect() {
        let line = FeatureLine {
            name: "xdp-meta".to_string(),
            state: State::Unavailable,
            detail: "the kernel refuses bpf_xdp_adjust_meta in XDP programs".to_string(),
            effect: Feature::XdpMeta.without().to_string(),
        };
        assert_eq!(
            line.to_string(),
            "xdp-meta: unavailable (the kernel refuses bpf_xdp_adjust_meta in XDP programs); \
             not needed: the XDP program marks the frames it hands to TC in their source MAC"
        );
    }

    #[test]
    fn every_name_reads_back() {
        for feature in Feature::ALL {
            assert_eq!(Feature::from_name(feature.name()), Some(feature));
        }
    }

    /// Needs root: on this kernel the programs load (each alone) and the
    /// answers agree with the machine's (`xdp-meta` may go either way).
    #[test]
    fn probes_on_this_kernel() {
        let lo = ProbedInterface {
            name: "lo".to_string(),
            ifindex: 1,
        };
        let features = Features::probe(&[lo]);
        for feature in [
            Feature::XdpProgram,
            Feature::TcProgram,
            Feature::SocketFilter,
        ] {
            if !forced_absent().contains(&feature) {
                assert!(features.has(feature), "{}", features.line(feature));
            }
        }
        assert!(
            !features.has(Feature::XskZeroCopy),
            "lo has no zero-copy AF_XDP"
        );
        assert_eq!(features.lines().len(), Feature::ALL.len());
    }
}
