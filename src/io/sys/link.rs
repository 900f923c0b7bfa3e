//! Interfaces: the `SIOCGIF*` and `SIOCETHTOOL` ioctls on a datagram socket (so
//! the answers are for the calling thread's network namespace), and the IPv4
//! addresses `getifaddrs` lists.

use std::ffi::{c_char, CStr};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::socket::{ipv4_of, socket};
use super::{check, zeroed};

/// `ETHTOOL_GCHANNELS` from `linux/ethtool.h`.
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_channels` from `linux/ethtool.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EthtoolChannels {
    pub cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

/// A datagram socket to ask the kernel about interfaces by name.
///
/// Names must be non-empty, shorter than `IFNAMSIZ` and without NUL bytes;
/// others are refused with `InvalidInput` before any ioctl. An interface that
/// does not exist gives `ENODEV` (or `ENXIO`).
pub struct IfreqSocket(OwnedFd);

impl IfreqSocket {
    pub fn open() -> io::Result<IfreqSocket> {
        socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0).map(IfreqSocket)
    }

    pub(super) fn request(name: &str) -> io::Result<libc::ifreq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?}"),
            ));
        }
        let mut req: libc::ifreq = zeroed();
        for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = src as c_char;
        }
        Ok(req)
    }

    /// Runs a `SIOCGIF*` ioctl that reads the name and writes one union member.
    fn get(&self, name: &str, op: libc::Ioctl) -> io::Result<libc::ifreq> {
        let mut req = Self::request(name)?;
        // SAFETY: req is a valid, writable ifreq that outlives the call; the
        // SIOCGIF* ioctls used here write only inside it.
        check(unsafe { libc::ioctl(self.0.as_raw_fd(), op, &mut req as *mut libc::ifreq) })?;
        Ok(req)
    }

    /// Sets IFF_UP on an interface.
    pub fn set_up(&self, name: &str) -> io::Result<()> {
        let mut req = self.get(name, libc::SIOCGIFFLAGS)?;
        // SAFETY: SIOCGIFFLAGS succeeded, so it wrote ifru_flags (any bits are valid).
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        // SAFETY: req is a valid ifreq naming the interface with its new flags
        // that outlives the call; SIOCSIFFLAGS only reads it.
        check(unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCSIFFLAGS,
                &mut req as *mut libc::ifreq,
            )
        })?;
        Ok(())
    }

    pub fn index(&self, name: &str) -> io::Result<libc::c_int> {
        let req = self.get(name, libc::SIOCGIFINDEX)?;
        // SAFETY: SIOCGIFINDEX succeeded, so it wrote ifru_ifindex (and any bits are a valid int).
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// The hardware address: its type (`ARPHRD_*`) and its first six bytes.
    pub fn hardware_address(&self, name: &str) -> io::Result<(u16, [u8; 6])> {
        let req = self.get(name, libc::SIOCGIFHWADDR)?;
        // SAFETY: SIOCGIFHWADDR succeeded, so it wrote ifru_hwaddr (plain integers).
        let addr = unsafe { req.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (dst, &src) in mac.iter_mut().zip(&addr.sa_data) {
            *dst = src as u8;
        }
        Ok((addr.sa_family, mac))
    }

    pub fn mtu(&self, name: &str) -> io::Result<libc::c_int> {
        let req = self.get(name, libc::SIOCGIFMTU)?;
        // SAFETY: SIOCGIFMTU succeeded, so it wrote ifru_mtu.
        Ok(unsafe { req.ifr_ifru.ifru_mtu })
    }

    /// The interface flags (`IFF_*`) as a bit set.
    pub fn flags(&self, name: &str) -> io::Result<i32> {
        let req = self.get(name, libc::SIOCGIFFLAGS)?;
        // SAFETY: SIOCGIFFLAGS succeeded, so it wrote ifru_flags.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        // A bit set: reinterpret the C short's bits, don't sign-extend.
        Ok(i32::from(flags as u16))
    }

    /// ethtool's channel counts (`ETHTOOL_GCHANNELS`).
    pub fn channels(&self, name: &str) -> io::Result<EthtoolChannels> {
        let mut channels = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..EthtoolChannels::default()
        };
        let mut req = Self::request(name)?;
        req.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
        // SAFETY: req is a valid ifreq whose ifru_data points at a live, writable
        // ethtool_channels, the struct ETHTOOL_GCHANNELS reads and writes; both
        // outlive the call.
        check(unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCETHTOOL,
                &mut req as *mut libc::ifreq,
            )
        })?;
        Ok(channels)
    }
}

/// One IPv4 address `getifaddrs` listed: interface, address, netmask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Entry {
    pub interface: String,
    pub address: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
}

/// Every IPv4 address on every interface (`getifaddrs`, which asks the kernel
/// over netlink, so for the calling thread's network namespace).
pub fn ipv4_addresses() -> io::Result<Vec<Ipv4Entry>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: head is a valid out-pointer; on success the list is freed below.
    check(unsafe { libc::getifaddrs(&mut head) })?;
    let mut found = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: cursor is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is null or a sockaddr of the list, sized for its family.
        let Some(address) = (unsafe { ipv4_of(entry.ifa_addr) }) else {
            continue;
        };
        // SAFETY: the netmask of an entry is null or a sockaddr of the same family.
        let netmask = unsafe { ipv4_of(entry.ifa_netmask) };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let interface = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        found.push(Ipv4Entry {
            interface,
            address,
            netmask,
        });
    }
    // SAFETY: head came from a successful getifaddrs and is freed exactly once;
    // no reference into the list outlives this point (everything was copied).
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}
