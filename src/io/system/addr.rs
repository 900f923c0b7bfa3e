//! IPv4 addresses configured on interfaces (`getifaddrs`, which asks the kernel over
//! netlink, so it answers for the calling thread's network namespace).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::SystemError;
use crate::io::sys;

/// One IPv4 address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    /// The address with its prefix length.
    pub net: Ipv4Net,
}

/// Every IPv4 address configured on every interface.
pub fn ipv4_addresses() -> Result<Vec<InterfaceAddress>, SystemError> {
    let entries = sys::link::ipv4_addresses().map_err(|err| SystemError::io("getifaddrs", err))?;
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let prefix = entry
                .netmask
                .map_or(32, |mask| u32::from(mask).leading_ones() as u8);
            let net = Ipv4Net::new(entry.address, prefix).ok()?;
            Some(InterfaceAddress {
                interface: entry.interface,
                net,
            })
        })
        .collect())
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
