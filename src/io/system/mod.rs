//! What the data path needs to know from the kernel, and the few things it asks of it:
//!
//! - [`link`]: an interface by name (ifindex, MAC, MTU, RX queues, up/down), through
//!   ioctls on a socket, so it answers for the network namespace of the calling thread.
//! - [`ipv4_addresses`] / [`check_address`]: the IPv4 addresses configured on interfaces
//!   (`getifaddrs`).
//! - [`neighbours`]: the kernel's IPv4 and IPv6 neighbour tables (a netlink
//!   `RTM_GETNEIGH` dump).
//! - [`NeighbourProber`]: asks the kernel to resolve (or re-confirm) a neighbour of either
//!   family with a netlink `RTM_NEWNEIGH` carrying `NTF_USE`, the same request as
//!   `ip neigh replace ADDR dev DEV use`: the kernel creates the entry if needed and runs
//!   its normal ARP or Neighbour Discovery state machine (a request when unknown, a
//!   unicast probe when stale). No datagram is sent to the neighbour.
//! - [`rtnetlink`]: links, addresses and default routes of both families read at once
//!   ([`KernelState`]; [`ipv6_addresses`] alone), their changes as events
//!   ([`RouteEvents`]), and the routes and rules xwan owns for the router's own traffic.
//! - [`read_sysctl`] / [`write_sysctl`] / [`local_port_range`]: sysctls under `/proc/sys`,
//!   which answer for the calling thread's network namespace.

mod addr;
mod link;
mod neigh;
#[cfg(test)]
pub(crate) mod netns;
pub mod rtnetlink;
mod sysctl;
#[cfg(test)]
pub(crate) mod test_bytes;

pub use addr::{check_address, ipv4_addresses, InterfaceAddress};
pub use link::{index_and_mtu, link, Link};
pub use neigh::{neighbours, Neighbour, NeighbourProber};
pub use rtnetlink::{
    ipv6_addresses, preferred_address6, root_qdiscs, Address6, Changes, KernelState, RouteEvents,
};
pub use sysctl::{local_port_range, read_sysctl, write_sysctl};

use std::io;
use std::net::Ipv4Addr;

/// Errors from the system layer; each names the interface, address or file involved.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("interface {0} not found")]
    InterfaceNotFound(String),
    #[error("interface name {0:?} is not valid (1 to 15 bytes, no NUL)")]
    InvalidInterfaceName(String),
    #[error("address {address} is not configured on interface {interface}")]
    AddressNotConfigured {
        interface: String,
        address: Ipv4Addr,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: unexpected content {content:?}")]
    Parse { what: String, content: String },
}

impl SystemError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> SystemError {
        SystemError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Formats a MAC address the usual way (`02:00:00:00:00:01`).
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Parses `02:00:00:00:00:01`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = [0x02, 0xab, 0x00, 0x10, 0xff, 0x01];
        assert_eq!(format_mac(&mac), "02:ab:00:10:ff:01");
        assert_eq!(parse_mac("02:ab:00:10:ff:01"), Some(mac));
    }

    #[test]
    fn mac_rejects_bad_text() {
        for bad in [
            "",
            "02:ab:00:10:ff",
            "02:ab:00:10:ff:01:02",
            "02:ab:00:10:ff:zz",
            "002:ab:00:10:ff:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
