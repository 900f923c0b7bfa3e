//! Real uplink daemons for the end-to-end tests: a DHCP server (dnsmasq) at
//! an ISP and a DHCP client (isc-dhcp-client's dhclient) on the router, with
//! a client script that only sets the address and the default route, as a
//! router's DHCP client does.

// Used by the uplink suite only; the other suites share the support module.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::Testbed;

/// The dhclient script: the address and the default route through the
/// interface, nothing else (no resolv.conf, no hostname).
const CLIENT_SCRIPT: &str = r#"#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
        ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    ip route replace default via "$new_routers" dev "$interface"
    ;;
EXPIRE|FAIL|RELEASE|STOP)
    if [ -n "$old_ip_address" ]; then
        ip route del default via "$old_routers" dev "$interface" 2>/dev/null
        ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi
    ;;
esac
exit 0
"#;

impl Testbed {
    /// Starts dnsmasq as the DHCP server of `isp` (on its `cust` interface),
    /// handing out `address` only, with the ISP as the router; a server
    /// started before is stopped first (its leases forgotten).
    pub fn dhcp_server(&self, isp: &str, address: Ipv4Addr, gateway: Ipv4Addr) {
        let pid = self.path(&format!("dnsmasq-{isp}.pid"));
        self.stop_pidfile(isp, &pid);
        let leases = self.path(&format!("dnsmasq-{isp}-{address}.leases"));
        let range = format!("--dhcp-range={address},{address},255.255.255.0,1h");
        let router = format!("--dhcp-option=option:router,{gateway}");
        let pid_arg = format!("--pid-file={}", pid.display());
        let lease_arg = format!("--dhcp-leasefile={}", leases.display());
        self.exec_ok(
            isp,
            &[
                "dnsmasq",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                "--interface=cust",
                "--bind-interfaces",
                "--dhcp-authoritative",
                &range,
                &router,
                &pid_arg,
                &lease_arg,
            ],
        );
    }

    /// Runs dhclient on the router's `interface` until it has a lease
    /// (it then stays in the background to renew it).
    pub fn dhcp_client(&self, interface: &str) {
        let script = self.client_script();
        let (pid, leases) = self.client_files(interface);
        self.exec_ok(
            "rtr",
            &[
                "dhclient", "-4", "-1", "-sf", &script, "-pf", &pid, "-lf", &leases, interface,
            ],
        );
    }

    /// Releases the lease on the router's `interface` (dhclient -r: the
    /// script removes the address and route) and stops that client.
    pub fn dhcp_release(&self, interface: &str) {
        let script = self.client_script();
        let (pid, leases) = self.client_files(interface);
        self.exec_ok(
            "rtr",
            &[
                "dhclient", "-4", "-r", "-sf", &script, "-pf", &pid, "-lf", &leases, interface,
            ],
        );
    }

    fn client_script(&self) -> String {
        let path = self.path("dhclient-script");
        if !path.exists() {
            std::fs::write(&path, CLIENT_SCRIPT).expect("write the dhclient script");
            self.exec_ok("rtr", &["chmod", "755", &path.to_string_lossy()]);
        }
        path.to_string_lossy().into_owned()
    }

    fn client_files(&self, interface: &str) -> (String, String) {
        let file = |ext: &str| -> String {
            let path: PathBuf = self.path(&format!("dhclient-{interface}.{ext}"));
            path.to_string_lossy().into_owned()
        };
        (file("pid"), file("leases"))
    }

    fn stop_pidfile(&self, node: &str, pid: &std::path::Path) {
        if let Ok(text) = std::fs::read_to_string(pid) {
            let pid = text.trim().to_string();
            self.exec(node, &["kill", "-TERM", &pid]);
            super::poll(std::time::Duration::from_secs(5), || {
                !self.exec(node, &["kill", "-0", &pid]).status.success()
            });
        }
    }
}

impl Testbed {
    /// Stops xwan (SIGTERM, as an operator would), keeping the testbed.
    pub fn stop_xwan(&mut self) {
        self.stop_router();
    }
}
