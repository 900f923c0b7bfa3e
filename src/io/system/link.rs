//! Interface lookup by name, through ioctls on a datagram socket (so the answer is
//! for the network namespace of the calling thread, unlike `/sys/class/net`, which
//! shows the namespace that mounted sysfs).

use std::ffi::c_char;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::SystemError;

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

/// `ETHTOOL_GCHANNELS` from `linux/ethtool.h`.
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_channels` from `linux/ethtool.h`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
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

/// Whether an interface is up with a carrier (`IFF_UP` and `IFF_RUNNING`: operstate
/// up or unknown), in the calling thread's network namespace; false if it does not
/// exist. Cheap enough to call often: one ioctl on a socket kept per thread.
pub fn link_is_up(name: &str) -> bool {
    thread_local! {
        static SOCKET: Option<IoctlSocket> = IoctlSocket::open().ok();
    }
    SOCKET.with(|socket| {
        socket
            .as_ref()
            .and_then(|s| s.flags(name).ok())
            .is_some_and(|flags| flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
    })
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

struct IoctlSocket(OwnedFd);

impl IoctlSocket {
    fn open() -> Result<IoctlSocket, SystemError> {
        // SAFETY: socket() takes no pointers; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(SystemError::io(
                "socket for interface ioctls",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        Ok(IoctlSocket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn request(name: &str) -> Result<libc::ifreq, SystemError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(SystemError::InvalidInterfaceName(name.to_owned()));
        }
        // SAFETY: ifreq is a plain C struct (a name array and a union of plain
        // fields) for which all-zero bytes are a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = src as c_char;
        }
        Ok(req)
    }

    fn ioctl(&self, name: &str, op: libc::Ioctl, req: &mut libc::ifreq) -> Result<(), SystemError> {
        // SAFETY: req is a valid, writable ifreq that outlives the call; the
        // ioctls used here read the name and write one union member (or, for
        // SIOCETHTOOL, the buffer ifru_data points at, which the caller keeps alive).
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), op, req as *mut libc::ifreq) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    SystemError::InterfaceNotFound(name.to_owned())
                }
                _ => SystemError::io(format!("interface {name}"), err),
            });
        }
        Ok(())
    }

    fn ifindex(&self, name: &str) -> Result<u32, SystemError> {
        let mut req = Self::request(name)?;
        self.ioctl(name, libc::SIOCGIFINDEX, &mut req)?;
        // SAFETY: SIOCGIFINDEX succeeded, so it wrote ifru_ifindex.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        u32::try_from(index).map_err(|_| SystemError::Parse {
            what: format!("ifindex of {name}"),
            content: index.to_string(),
        })
    }

    fn mac(&self, name: &str) -> Result<[u8; 6], SystemError> {
        let mut req = Self::request(name)?;
        self.ioctl(name, libc::SIOCGIFHWADDR, &mut req)?;
        // SAFETY: SIOCGIFHWADDR succeeded, so it wrote ifru_hwaddr.
        let addr = unsafe { req.ifr_ifru.ifru_hwaddr };
        if addr.sa_family != libc::ARPHRD_ETHER {
            return Err(SystemError::Parse {
                what: format!("interface {name} is not Ethernet: hardware type"),
                content: addr.sa_family.to_string(),
            });
        }
        let mut mac = [0u8; 6];
        for (dst, &src) in mac.iter_mut().zip(&addr.sa_data) {
            *dst = src as u8;
        }
        Ok(mac)
    }

    fn mtu(&self, name: &str) -> Result<u32, SystemError> {
        let mut req = Self::request(name)?;
        self.ioctl(name, libc::SIOCGIFMTU, &mut req)?;
        // SAFETY: SIOCGIFMTU succeeded, so it wrote ifru_mtu.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        u32::try_from(mtu).map_err(|_| SystemError::Parse {
            what: format!("MTU of {name}"),
            content: mtu.to_string(),
        })
    }

    fn flags(&self, name: &str) -> Result<i32, SystemError> {
        let mut req = Self::request(name)?;
        self.ioctl(name, libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS succeeded, so it wrote ifru_flags.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        // The flags are a bit set: reinterpret the C short's bits, don't sign-extend.
        Ok(i32::from(flags as u16))
    }

    /// ethtool's channel counts; None where the driver does not report them.
    fn channels(&self, name: &str) -> Option<EthtoolChannels> {
        let mut channels = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..EthtoolChannels::default()
        };
        let mut req = Self::request(name).ok()?;
        req.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
        self.ioctl(name, libc::SIOCETHTOOL, &mut req).ok()?;
        Some(channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::system::netns::TestNetns;

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
        // xa0 is up but its peer is down: no carrier.
        assert!(!ns.run(|| link_is_up("xa0")));
        ns.ip(&["link", "set", "xa1", "up"]);
        assert!(ns.run(|| link_is_up("xa0")));
        assert!(!ns.run(|| link_is_up("wan3")));
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
