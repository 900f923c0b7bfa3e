//! The second step of start-up: from the features probed
//! ([`crate::io::features`]), the command line and the configuration, how
//! xwan runs on this machine: which backend moves the frames, and whether
//! and how the in-kernel fast path runs.
//!
//! `--io auto` (the default) takes AF_XDP only where it is the faster path:
//! the XDP program loads, AF_XDP sockets open, and every interface binds them
//! in zero-copy mode (and zero-copy is not switched off). Everywhere else it
//! takes AF_PACKET with the in-kernel fast path: in copy mode (veth, virtio
//! without zero-copy, generic XDP) AF_XDP copies every frame once more than
//! AF_PACKET with its fast path, and measured in the testbed it is slower
//! (README, "Choosing the backend"). `--io xdp` and `--io packet` are taken as
//! asked, and refused, with the reason, where they cannot run.

use super::options::{IoMode, RunError};
use crate::config::Offload as OffloadSetting;
use crate::io::features::{Feature, Features};
use crate::io::offload::TcAttach;
use crate::io::ZeroCopy;

/// The backend chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Xdp,
    Packet,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Xdp => "xdp",
            Backend::Packet => "packet",
        }
    }
}

/// How xwan runs here, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub backend: Backend,
    /// Why this backend, in words.
    pub why: String,
    /// `--io auto`: a backend that fails to start may give way to packet.
    pub auto: bool,
    /// `--io packet`'s nftables table is made owned by xwan (`nft-owner`).
    pub nft_owner: bool,
    /// The fast path, or why it does not run ("off" as configured, or the
    /// feature it lacks).
    pub fast_path: Result<FastPathPlan, String>,
}

/// How the fast path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FastPathPlan {
    /// The XDP program forwards too, to interfaces whose driver accepts XDP
    /// frames (`--io xdp`, `offload = "auto"`, the kernel reports xdp-features).
    pub xdp_hook: bool,
    /// TCX where the kernel has it, clsact otherwise.
    pub attach: TcAttach,
}

/// Chooses the plan; an explicit `--io` that cannot run here is refused
/// with the feature it lacks.
pub(super) fn choose(
    features: &Features,
    io: IoMode,
    zero_copy: ZeroCopy,
    offload: OffloadSetting,
) -> Result<Plan, RunError> {
    let xdp_missing = [Feature::XdpProgram, Feature::AfXdp]
        .into_iter()
        .find(|f| !features.has(*f))
        .map(|f| features.line(f).to_string());
    let (backend, why) = match io {
        IoMode::Xdp => match xdp_missing {
            Some(line) => return Err(RunError::Unsupported(format!("--io xdp cannot run here: {line}"))),
            None => (Backend::Xdp, "as asked (--io xdp)".to_string()),
        },
        IoMode::Packet => (Backend::Packet, "as asked (--io packet)".to_string()),
        IoMode::Auto => match (xdp_missing, zero_copy) {
            (Some(line), _) => (Backend::Packet, format!("auto: AF_XDP cannot run ({line})")),
            (None, ZeroCopy::Off) => (
                Backend::Packet,
                "auto: AF_XDP in copy mode (zero-copy off) is slower than packet with the fast path"
                    .to_string(),
            ),
            (None, _) if !features.has(Feature::XskZeroCopy) => (
                Backend::Packet,
                format!(
                    "auto: no zero-copy AF_XDP ({}), where packet with the fast path is faster",
                    features.line(Feature::XskZeroCopy).detail
                ),
            ),
            (None, _) => (
                Backend::Xdp,
                "auto: zero-copy AF_XDP on every interface".to_string(),
            ),
        },
    };
    Ok(Plan {
        backend,
        why,
        auto: io == IoMode::Auto,
        nft_owner: features.has(Feature::NftOwner),
        fast_path: fast_path(features, backend, offload),
    })
}

/// The fast path for `backend`, or why not.
pub(super) fn fast_path(
    features: &Features,
    backend: Backend,
    offload: OffloadSetting,
) -> Result<FastPathPlan, String> {
    if offload == OffloadSetting::Off {
        return Err("off".to_string());
    }
    let mut needs = vec![Feature::TcProgram];
    if backend == Backend::Packet {
        needs.push(Feature::SocketFilter);
    }
    if let Some(missing) = needs.into_iter().find(|f| !features.has(*f)) {
        let line = features.line(missing);
        return Err(format!(
            "unavailable ({}: {})",
            line.name,
            line.state.name()
        ));
    }
    Ok(FastPathPlan {
        xdp_hook: backend == Backend::Xdp
            && offload == OffloadSetting::Auto
            && features.has(Feature::XdpFeatures),
        attach: if features.has(Feature::Tcx) {
            TcAttach::Tcx
        } else {
            TcAttach::Clsact
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::features::State;

    fn plan(absent: &[Feature], io: IoMode) -> Result<Plan, RunError> {
        let states: Vec<_> = absent.iter().map(|f| (*f, State::Unavailable)).collect();
        choose(
            &Features::with(&states),
            io,
            ZeroCopy::Auto,
            OffloadSetting::Auto,
        )
    }

    #[test]
    fn auto_takes_xdp_only_with_zero_copy() {
        let all = plan(&[], IoMode::Auto).unwrap();
        assert_eq!(all.backend, Backend::Xdp);
        assert_eq!(
            all.fast_path,
            Ok(FastPathPlan {
                xdp_hook: true,
                attach: TcAttach::Tcx
            })
        );
        let veth = plan(&[Feature::XskZeroCopy], IoMode::Auto).unwrap();
        assert_eq!(veth.backend, Backend::Packet);
        assert_eq!(
            veth.fast_path,
            Ok(FastPathPlan {
                xdp_hook: false,
                attach: TcAttach::Tcx
            })
        );
        let off = choose(
            &Features::with(&[]),
            IoMode::Auto,
            ZeroCopy::Off,
            OffloadSetting::Auto,
        )
        .unwrap();
        assert_eq!(off.backend, Backend::Packet);
        for missing in [Feature::XdpProgram, Feature::AfXdp] {
            let p = plan(&[missing], IoMode::Auto).unwrap();
            assert_eq!(p.backend, Backend::Packet, "{missing:?}");
            assert!(p.why.contains(missing.name()), "{}", p.why);
        }
    }

    #[test]
    fn an_explicit_xdp_that_cannot_run_is_refused_with_the_reason() {
        let err = plan(&[Feature::XdpProgram], IoMode::Xdp).unwrap_err();
        assert!(
            err.to_string().contains("xdp-program: unavailable"),
            "{err}"
        );
        let p = plan(&[Feature::XskZeroCopy], IoMode::Xdp).unwrap();
        assert_eq!(p.backend, Backend::Xdp, "copy mode, as asked");
        assert_eq!(
            plan(&[Feature::XdpProgram], IoMode::Packet)
                .unwrap()
                .backend,
            Backend::Packet
        );
    }

    #[test]
    fn the_fast_path_degrades_only_with_what_it_needs() {
        let p = plan(&[Feature::TcProgram], IoMode::Xdp).unwrap();
        assert_eq!(
            p.fast_path,
            Err("unavailable (tc-program: unavailable)".to_string())
        );
        let p = plan(&[Feature::SocketFilter], IoMode::Xdp).unwrap();
        assert_eq!(
            p.fast_path,
            Ok(FastPathPlan {
                xdp_hook: true,
                attach: TcAttach::Tcx
            }),
            "xdp needs no tap"
        );
        let p = plan(&[Feature::SocketFilter], IoMode::Packet).unwrap();
        assert!(p.fast_path.is_err());
        let p = plan(&[Feature::Tcx], IoMode::Packet).unwrap();
        assert_eq!(p.fast_path.unwrap().attach, TcAttach::Clsact);
        let p = plan(&[Feature::XdpFeatures, Feature::XdpMeta], IoMode::Xdp).unwrap();
        assert_eq!(
            p.fast_path,
            Ok(FastPathPlan {
                xdp_hook: false,
                attach: TcAttach::Tcx
            })
        );
        let tc = choose(
            &Features::with(&[]),
            IoMode::Xdp,
            ZeroCopy::Auto,
            OffloadSetting::Tc,
        );
        assert_eq!(
            tc.unwrap().fast_path,
            Ok(FastPathPlan {
                xdp_hook: false,
                attach: TcAttach::Tcx
            })
        );
        let off = choose(
            &Features::with(&[]),
            IoMode::Xdp,
            ZeroCopy::Auto,
            OffloadSetting::Off,
        );
        assert_eq!(off.unwrap().fast_path, Err("off".to_string()));
    }
}
