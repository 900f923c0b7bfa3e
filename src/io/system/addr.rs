//! IPv4 addresses configured on interfaces (`getifaddrs`, which asks the kernel over
//! netlink, so it answers for the calling thread's network namespace).

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::SystemError;

/// One IPv4 address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    /// The address with its prefix length.
    pub net: Ipv4Net,
}

/// Every IPv4 address configured on every interface.
pub fn ipv4_addresses() -> Result<Vec<InterfaceAddress>, SystemError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: head is a valid out-pointer; on success the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(SystemError::io("getifaddrs", io::Error::last_os_error()));
    }
    let mut found = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: cursor is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr of the list.
        if i32::from(unsafe { (*entry.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family is AF_INET, so the sockaddr is a sockaddr_in.
        let addr = unsafe { *entry.ifa_addr.cast::<libc::sockaddr_in>() };
        let address = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        let prefix = if entry.ifa_netmask.is_null() {
            32
        } else {
            // SAFETY: the netmask of an AF_INET entry is a sockaddr_in.
            let mask = unsafe { *entry.ifa_netmask.cast::<libc::sockaddr_in>() };
            u32::from_be(mask.sin_addr.s_addr).leading_ones() as u8
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        if let Ok(net) = Ipv4Net::new(address, prefix) {
            found.push(InterfaceAddress {
                interface: name,
                net,
            });
        }
    }
    // SAFETY: head came from a successful getifaddrs and is freed exactly once;
    // no reference into the list outlives this point (everything was copied).
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// Checks that `address` is configured on `interface`.
pub fn check_address(
    addresses: &[InterfaceAddress],
    interface: &str,
    address: Ipv4Addr,
) -> Result<(), SystemError> {
    if addresses
        .iter()
        .any(|a| a.interface == interface && a.net.addr() == address)
    {
        Ok(())
    } else {
        Err(SystemError::AddressNotConfigured {
            interface: interface.to_owned(),
            address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::system::netns::TestNetns;

    #[test]
    fn lists_addresses_and_checks_them() {
        let ns = TestNetns::new("addr");
        ns.ip(&[
            "link", "add", "wan1", "type", "veth", "peer", "name", "isp1",
        ]);
        ns.ip(&["addr", "add", "198.18.1.2/24", "dev", "wan1"]);
        ns.ip(&["addr", "add", "198.18.9.2/30", "dev", "wan1"]);
        let addresses = ns.run(ipv4_addresses).expect("getifaddrs");
        let on_wan1: Vec<String> = addresses
            .iter()
            .filter(|a| a.interface == "wan1")
            .map(|a| a.net.to_string())
            .collect();
        assert_eq!(on_wan1, ["198.18.1.2/24", "198.18.9.2/30"]);
        assert!(addresses
            .iter()
            .any(|a| a.interface == "lo" && a.net.addr() == Ipv4Addr::LOCALHOST));

        check_address(&addresses, "wan1", "198.18.1.2".parse().unwrap()).expect("configured");
        let err = check_address(&addresses, "isp1", "198.18.1.2".parse().unwrap())
            .expect_err("not on isp1");
        assert_eq!(
            err.to_string(),
            "address 198.18.1.2 is not configured on interface isp1"
        );
        let err = check_address(&addresses, "wan1", "198.18.1.3".parse().unwrap())
            .expect_err("not configured");
        assert_eq!(
            err.to_string(),
            "address 198.18.1.3 is not configured on interface wan1"
        );
    }
}
