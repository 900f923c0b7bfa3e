//! Interface lookup by name, through ioctls on a datagram socket (so the answer is
//! for the network namespace of the calling thread, unlike `/sys/class/net`, which
//! shows the namespace that mounted sysfs).

use std::io;

use super::SystemError;
use crate::io::sys::link::{EthtoolChannels, IfreqSocket};

/// An interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// RX queues: ethtool's channel count (rx + combined), else sysfs, else 1.
    pub rx_queues: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_RUNNING`).
    pub running: bool,
}

/// Looks an interface up by name in the calling thread's network namespace.
pub fn link(name: &str) -> Result<Link, SystemError> {
    let sock = IoctlSocket::open()?;
    let ifindex = sock.ifindex(name)?;
    let mac = sock.mac(name)?;
    let mtu = sock.mtu(name)?;
    let flags = sock.flags(name)?;
    let rx_queues = match sock.channels(name) {
        Some(channels) => (channels.rx_count + channels.combined_count).max(1),
        None => sysfs_rx_queues(name, ifindex).unwrap_or(1),
    };
    Ok(Link {
        name: name.to_owned(),
        ifindex,
        mac,
        mtu,
        rx_queues,
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
    })
}

/// An interface's index and MTU, without the rest of [`link`] (so it works for
/// any kind of interface).
pub fn index_and_mtu(name: &str) -> Result<(u32, u32), SystemError> {
    let sock = IoctlSocket::open()?;
    Ok((sock.ifindex(name)?, sock.mtu(name)?))
}

/// Counts `rx-*` under `/sys/class/net/NAME/queues`, only when sysfs shows the same
/// interface (same ifindex) as the calling thread's namespace.
fn sysfs_rx_queues(name: &str, ifindex: u32) -> Option<u32> {
    let base = format!("/sys/class/net/{name}");
    let shown: u32 = std::fs::read_to_string(format!("{base}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if shown != ifindex {
        return None;
    }
    let count = std::fs::read_dir(format!("{base}/queues"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(count).ok().filter(|&n| n > 0)
}

/// The ioctl socket of [`sys::link`], with errors that name the interface.
struct IoctlSocket(IfreqSocket);

impl IoctlSocket {
    fn open() -> Result<IoctlSocket, SystemError> {
        IfreqSocket::open()
            .map(IoctlSocket)
            .map_err(|err| SystemError::io("socket for interface ioctls", err))
    }

    /// Runs one query, with the name checked first and a missing interface reported as such.
    fn ask<T>(
        &self,
        name: &str,
        query: impl FnOnce(&IfreqSocket) -> io::Result<T>,
    ) -> Result<T, SystemError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(SystemError::InvalidInterfaceName(name.to_owned()));
        }
        query(&self.0).map_err(|err| match err.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => {
                SystemError::InterfaceNotFound(name.to_owned())
            }
            _ => SystemError::io(format!("interface {name}"), err),
        })
    }

    fn ifindex(&self, name: &str) -> Result<u32, SystemError> {
        let index = self.ask(name, |s| s.index(name))?;
        u32::try_from(index).map_err(|_| SystemError::Parse {
            what: format!("ifindex of {name}"),
            content: index.to_string(),
        })
    }

    fn mac(&self, name: &str) -> Result<[u8; 6], SystemError> {
        let (kind, mac) = self.ask(name, |s| s.hardware_address(name))?;
        if kind != libc::ARPHRD_ETHER {
            return Err(SystemError::Parse {
                what: format!("interface {name} is not Ethernet: hardware type"),
                content: kind.to_string(),
            });
        }
        Ok(mac)
    }

    fn mtu(&self, name: &str) -> Result<u32, SystemError> {
        let mtu = self.ask(name, |s| s.mtu(name))?;
        u32::try_from(mtu).map_err(|_| SystemError::Parse {
            what: format!("MTU of {name}"),
            content: mtu.to_string(),
        })
    }

    fn flags(&self, name: &str) -> Result<i32, SystemError> {
        self.ask(name, |s| s.flags(name))
    }

    /// ethtool's channel counts; None where the driver does not report them.
    fn channels(&self, name: &str) -> Option<EthtoolChannels> {
        self.ask(name, |s| s.channels(name)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::system::netns::TestNetns;
    use crate::io::system::KernelState;

    #[test]
    fn finds_a_veth_in_its_own_namespace() {
        let ns = TestNetns::new("link");
        ns.ip(&[
            "link",
            "add",
            "xa0",
            "numrxqueues",
            "3",
            "numtxqueues",
            "3",
            "type",
            "veth",
            "peer",
            "name",
            "xa1",
            "numrxqueues",
            "1",
            "numtxqueues",
            "1",
        ]);
        ns.ip(&[
            "link",
            "set",
            "xa0",
            "address",
            "02:00:00:00:aa:01",
            "mtu",
            "1400",
            "up",
        ]);
        let found = ns
            .run(|| link("xa0"))
            .expect("xa0 exists in the test namespace");
        assert_eq!(found.name, "xa0");
        assert_eq!(found.mac, [0x02, 0, 0, 0, 0xaa, 0x01]);
        assert_eq!(found.mtu, 1400);
        assert_eq!(found.rx_queues, 3);
        assert!(found.up);
        assert_eq!(found.ifindex, ns.ifindex("xa0"));
        let peer = ns.run(|| link("xa1")).expect("xa1 exists");
        assert!(!peer.up);
        assert_eq!(peer.rx_queues, 1);
        // xa0 is up but its peer is down: no carrier (as rtnetlink reports it).
        let carrier = |name: &str| {
            let state = ns.run(KernelState::read).expect("rtnetlink dump");
            state.link(name).map(|l| (l.up, l.carrier))
        };
        assert_eq!(carrier("xa0"), Some((true, false)));
        ns.ip(&["link", "set", "xa1", "up"]);
        assert_eq!(carrier("xa0"), Some((true, true)));
        assert_eq!(carrier("wan3"), None);
    }

    #[test]
    fn missing_interface_is_named() {
        let ns = TestNetns::new("nolink");
        let err = ns
            .run(|| link("wan3"))
            .expect_err("no wan3 in a fresh namespace");
        assert_eq!(err.to_string(), "interface wan3 not found");
    }

    #[test]
    fn invalid_names_are_rejected() {
        for name in ["", "a-very-long-interface-name", "nul\0x"] {
            let err = link(name).expect_err("invalid name");
            assert!(
                matches!(err, SystemError::InvalidInterfaceName(_)),
                "{name:?}: {err}"
            );
        }
    }
}
