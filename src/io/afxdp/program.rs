//! Loading xwan's XDP program (xwan.bpf.c, compiled by build.rs), filling its maps
//! from [`OwnedTraffic`], and attaching it to every interface.
//!
//! Ownership rules: the program is attached through a BPF link (`BPF_LINK_CREATE`),
//! which the kernel removes when the link's file descriptor closes, so a crashed xwan
//! leaves nothing behind and a stopped one detaches by dropping its links. Before
//! attaching, an interface's current program is looked at:
//! - none: attach;
//! - a program named `xwan_xdp` attached the old way (netlink, e.g. by hand with
//!   `ip link set ... xdp obj`): a stale copy of ours, detached and replaced;
//! - `xwan_xdp` held by a BPF link: a running xwan owns the interface: error;
//! - any other program: someone else's: error, nothing is touched.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use ipnet::{Ipv4Net, Ipv6Net};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::XdpError;
use crate::io::bpf_object::{self, BpfProgram};
use crate::io::offload::OffloadParts;
use crate::io::{sync, sys};
use crate::io::{Interface, OwnedTraffic};
use crate::router::Port;

/// Interfaces one program serves (the LAN and up to 64 uplinks); matches the C side.
pub const MAX_INTERFACES: usize = 65;
/// Queue indexes per interface; matches the C side.
pub const MAX_QUEUES: u32 = 64;

/// The program's name, as the kernel reports it (at most 15 characters).
const PROGRAM_NAME: &str = "xwan_xdp";

const ROLE_LAN: u32 = 0;
const ROLE_WAN: u32 = 1;

/// `IPPROTO_TCP` / `IPPROTO_UDP`.
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// How the program runs on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (veth supports it).
    Native,
    /// Generic (SKB) mode: slower, works on any device.
    Generic,
}

/// The program attached to one interface; dropping it detaches.
#[derive(Debug)]
struct Attachment {
    interface: String,
    mode: XdpMode,
    _link: OwnedFd,
}

/// The loaded object, with the programs asked for, and its maps;
/// attachments are removed on drop.
pub struct Program {
    object: Object,
    loaded: Vec<BpfProgram>,
    attachments: Vec<Attachment>,
}

impl Program {
    /// Loads the programs `wanted` of the object and fills every map but
    /// the XSKMAP.
    pub fn load(
        interfaces: &[Interface],
        owned: &OwnedTraffic,
        wanted: &[BpfProgram],
    ) -> Result<Program, XdpError> {
        if interfaces.len() > MAX_INTERFACES {
            return Err(XdpError::Setup(format!(
                "{} interfaces, the XDP program handles at most {MAX_INTERFACES}",
                interfaces.len()
            )));
        }
        let object = bpf_object::load(wanted).map_err(|refusal| {
            if refusal.not_permitted {
                XdpError::Permission(format!("loading the BPF programs ({refusal})"))
            } else {
                XdpError::Load(refusal.summary)
            }
        })?;
        let program = Program {
            object,
            loaded: wanted.to_vec(),
            attachments: Vec::new(),
        };
        program.fill_maps(interfaces, owned)?;
        Ok(program)
    }

    fn fill_maps(&self, interfaces: &[Interface], owned: &OwnedTraffic) -> Result<(), XdpError> {
        for (slot, interface) in interfaces.iter().enumerate() {
            let (role, wan_addr) = match interface.port {
                Port::Lan => (ROLE_LAN, Ipv4Addr::UNSPECIFIED),
                Port::Wan(uplink) => {
                    let addr = owned
                        .wan_addresses
                        .get(usize::from(uplink))
                        .ok_or_else(|| {
                            XdpError::Setup(format!(
                                "no WAN address for uplink {uplink} ({})",
                                interface.name
                            ))
                        })?;
                    (ROLE_WAN, *addr)
                }
            };
            let value = iface_value(slot, role, wan_addr);
            self.update("ifaces", &interface.ifindex.to_ne_bytes(), &value)?;
        }
        for net in &owned.lan_networks {
            self.update("lan_nets", &prefix_key(net), &[1])?;
        }
        for net in &owned.v6.lan_networks {
            self.update("lan_nets6", &prefix6_key(net), &[1])?;
        }
        let keys = Keys::of(owned, &wan_slots(interfaces));
        for (name, entries) in UPDATABLE.iter().zip(&keys.maps) {
            for (key, value) in entries {
                self.update(name, key, value)?;
            }
        }
        let mut settings = [0u8; 4];
        settings[0..2].copy_from_slice(&owned.nat_ports.lo.to_ne_bytes());
        settings[2..4].copy_from_slice(&owned.nat_ports.hi.to_ne_bytes());
        self.update("settings", &0u32.to_ne_bytes(), &settings)
    }

    fn update(&self, map_name: &str, key: &[u8], value: &[u8]) -> Result<(), XdpError> {
        self.map_handle(map_name)?
            .update(key, value, MapFlags::ANY)
            .map_err(|err| map_error(map_name, err))
    }

    fn map_handle(&self, map_name: &str) -> Result<MapHandle, XdpError> {
        let map = self
            .object
            .maps()
            .find(|map| map.name() == map_name)
            .ok_or_else(|| XdpError::Load(format!("the XDP program has no map {map_name}")))?;
        MapHandle::try_from(&map).map_err(|err| map_error(map_name, err))
    }

    /// The maps a reload rewrites, holding what [`Program::load`] put in them
    /// from `owned` for `interfaces`.
    pub fn owned_maps(
        &self,
        interfaces: &[Interface],
        owned: &OwnedTraffic,
    ) -> Result<OwnedMaps, XdpError> {
        let wans = wan_slots(interfaces);
        Ok(OwnedMaps {
            maps: UPDATABLE
                .iter()
                .map(|name| self.map_handle(name))
                .collect::<Result<_, _>>()?,
            ifaces: self.map_handle("ifaces")?,
            current: Mutex::new(Keys::of(owned, &wans)),
            wans,
        })
    }

    /// Makes the program redirect frames of (interface `slot`, `queue`) to the socket `fd`.
    pub fn register_socket(&self, slot: usize, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        let key = slot as u32 * MAX_QUEUES + queue;
        self.update("xsks", &key.to_ne_bytes(), &(fd as u32).to_ne_bytes())
    }

    /// Attaches the program to every interface: native mode, generic if native fails.
    pub fn attach(&mut self, interfaces: &[Interface]) -> Result<(), XdpError> {
        for interface in interfaces {
            self.clear_stale(interface)?;
            let attachment = self.attach_one(interface)?;
            self.attachments.push(attachment);
        }
        Ok(())
    }

    /// The mode the program runs in on each interface, in attachment order.
    pub fn modes(&self) -> Vec<(String, XdpMode)> {
        self.attachments
            .iter()
            .map(|a| (a.interface.clone(), a.mode))
            .collect()
    }

    pub(super) fn program_fd(&self) -> Result<RawFd, XdpError> {
        self.loaded_program(BpfProgram::Xdp)
            .map(|prog| prog.as_fd().as_raw_fd())
    }

    /// `which`, if it was loaded.
    fn loaded_program(&self, which: BpfProgram) -> Result<libbpf_rs::Program<'_>, XdpError> {
        let name = which.name();
        self.object
            .progs()
            .find(|prog| prog.name() == name && self.loaded.contains(&which))
            .ok_or_else(|| XdpError::Load(format!("the BPF program {name} was not loaded")))
    }

    /// The fast path's TC program and maps (`offload.bpf.h`), with their own
    /// descriptors: they outlive the object.
    pub fn offload_parts(&self) -> Result<OffloadParts, XdpError> {
        Ok(OffloadParts {
            program: self.program_of(BpfProgram::Offload)?,
            tap: self
                .loaded
                .contains(&BpfProgram::Tap)
                .then(|| self.program_of(BpfProgram::Tap))
                .transpose()?,
            entries: self.map_handle("offload")?,
            stats: self.map_handle("offload_stats")?,
            entries6: self.map_handle("offload6")?,
            stats6: self.map_handle("offload6_stats")?,
            lost: self.map_handle("offload_lost")?,
            by_xdp: self.map_handle("offload_by_xdp")?,
            xdp_egress: self.map_handle("xdp_egress")?,
        })
    }

    /// A descriptor of its own for the program `which`.
    pub(super) fn program_of(&self, which: BpfProgram) -> Result<OwnedFd, XdpError> {
        self.loaded_program(which)?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|err| XdpError::Load(format!("{}: {err}", which.name())))
    }

    fn attach_one(&self, interface: &Interface) -> Result<Attachment, XdpError> {
        let mut native_error = None;
        for (mode, flags) in [
            (XdpMode::Native, sys::bpf::XDP_FLAGS_DRV_MODE),
            (XdpMode::Generic, sys::bpf::XDP_FLAGS_SKB_MODE),
        ] {
            let prog = self.program_fd()?;
            let err = match sys::bpf::attach_xdp_link(prog, interface.ifindex, flags) {
                Ok(link) => {
                    return Ok(Attachment {
                        interface: interface.name.clone(),
                        mode,
                        _link: link,
                    })
                }
                Err(err) => err,
            };
            match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    return Err(XdpError::Permission(format!(
                        "attaching the XDP program to {}",
                        interface.name
                    )));
                }
                Some(libc::EBUSY) | Some(libc::EEXIST) => {
                    return Err(XdpError::Busy {
                        interface: interface.name.clone(),
                        detail: "another XDP program was attached meanwhile".to_string(),
                    });
                }
                _ => {}
            }
            if native_error.is_none() {
                native_error = Some(err);
            } else {
                return Err(XdpError::XdpUnsupported {
                    interface: interface.name.clone(),
                    detail: format!(
                        "native mode: {}; generic mode: {err}",
                        native_error
                            .take()
                            .map(|e| e.to_string())
                            .unwrap_or_default()
                    ),
                });
            }
        }
        Err(XdpError::XdpUnsupported {
            interface: interface.name.clone(),
            detail: "no XDP mode could be attached".to_string(),
        })
    }

    /// Applies the ownership rules (module docs) to the program already on `interface`.
    fn clear_stale(&self, interface: &Interface) -> Result<(), XdpError> {
        let programs =
            sys::bpf::query_xdp(interface.ifindex).map_err(|err| match err.raw_os_error() {
                Some(libc::ENODEV) => XdpError::NoInterface(interface.name.clone()),
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    XdpError::Permission(format!("querying XDP on {}", interface.name))
                }
                _ => XdpError::XdpUnsupported {
                    interface: interface.name.clone(),
                    detail: format!("querying its XDP program: {err}"),
                },
            })?;
        for (prog_id, flags) in [
            (programs.native, sys::bpf::XDP_FLAGS_DRV_MODE),
            (programs.generic, sys::bpf::XDP_FLAGS_SKB_MODE),
            (programs.offloaded, sys::bpf::XDP_FLAGS_HW_MODE),
        ] {
            if prog_id == 0 {
                continue;
            }
            let name = sys::bpf::program_name(prog_id).unwrap_or_else(|| format!("id {prog_id}"));
            if name != PROGRAM_NAME {
                return Err(XdpError::Busy {
                    interface: interface.name.clone(),
                    detail: format!(
                        "it already runs another XDP program ({name}, id {prog_id}); \
                         remove it (ip link set dev {} xdp off) or use --io packet",
                        interface.name
                    ),
                });
            }
            if sys::bpf::detach_xdp(interface.ifindex, flags).is_err() {
                return Err(XdpError::Busy {
                    interface: interface.name.clone(),
                    detail: format!(
                        "another running xwan holds it (XDP program id {prog_id}); stop that one first"
                    ),
                });
            }
            tracing::warn!(
                interface = %interface.name,
                prog_id,
                "replaced a stale xwan XDP program"
            );
        }
        Ok(())
    }
}

fn map_error(map_name: &str, err: libbpf_rs::Error) -> XdpError {
    XdpError::Map {
        map: map_name.to_string(),
        detail: err.to_string(),
    }
}

/// A map key or value, as the C side lays it out.
type Key = Vec<u8>;

/// A map's entries: key and value.
type Entries = BTreeMap<Key, Vec<u8>>;

/// `local_addrs` values: one of the router's addresses, and one that is also
/// a WAN address (the C side's LOCAL_ADDR and WAN_ADDR).
const LOCAL_ADDR: u8 = 1;
const WAN_ADDR: u8 = 2;

/// The maps a reload or a new address may change, in the order of
/// [`Keys::maps`].
const UPDATABLE: [&str; 8] = [
    "forwards",
    "bypass_nets",
    "local_addrs",
    "bypass_nets6",
    "local_addrs6",
    "forwards6",
    "wan_addrs6",
    "wan_prefixes6",
];

/// A WAN interface: its ifindex, its slot in the interface list and its
/// uplink id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WanSlot {
    ifindex: u32,
    slot: usize,
    uplink: usize,
}

fn wan_slots(interfaces: &[Interface]) -> Vec<WanSlot> {
    interfaces
        .iter()
        .enumerate()
        .filter_map(|(slot, i)| match i.port {
            Port::Wan(uplink) => Some(WanSlot {
                ifindex: i.ifindex,
                slot,
                uplink: usize::from(uplink),
            }),
            Port::Lan => None,
        })
        .collect()
}

/// The `forwards` keys of the TCP and UDP forwards.
fn forward_keys(owned: &OwnedTraffic) -> Entries {
    let forwards = owned
        .tcp_forwards
        .iter()
        .map(|fwd| (PROTO_TCP, fwd))
        .chain(owned.udp_forwards.iter().map(|fwd| (PROTO_UDP, fwd)));
    forwards
        .map(|(proto, (addr, port))| {
            let mut key = vec![0u8; 8];
            key[0..4].copy_from_slice(&addr.octets());
            key[4..6].copy_from_slice(&port.to_be_bytes());
            key[6] = proto;
            (key, vec![1])
        })
        .collect()
}

fn bypass_keys(owned: &OwnedTraffic) -> Entries {
    owned
        .bypass
        .iter()
        .map(|net| (prefix_key(net).to_vec(), vec![1]))
        .collect()
}

/// The router's addresses, each marked as a WAN address or not: fragments
/// from the LAN to a WAN address are the core's (hairpinning).
fn local_keys(owned: &OwnedTraffic) -> Entries {
    owned
        .local_addresses
        .iter()
        .map(|addr| {
            let value = if owned.wan_addresses.contains(addr) {
                WAN_ADDR
            } else {
                LOCAL_ADDR
            };
            (addr.octets().to_vec(), vec![value])
        })
        .collect()
}

fn bypass6_keys(owned: &OwnedTraffic) -> Entries {
    (owned.v6.bypass.iter())
        .map(|net| (prefix6_key(net).to_vec(), vec![1]))
        .collect()
}

/// The router's own IPv6 addresses: the kernel's from either side (the
/// core hairpins no IPv6), but a NAT66 address from its WAN (`wan_addrs6`).
fn local6_keys(owned: &OwnedTraffic) -> Entries {
    (owned.v6.local_addresses.iter())
        .map(|addr| (addr.octets().to_vec(), vec![LOCAL_ADDR]))
        .collect()
}

/// Each WAN interface's uplink's IPv6 side, with the interface's ifindex.
fn uplinks6<'a>(
    owned: &'a OwnedTraffic,
    wans: &'a [WanSlot],
) -> impl Iterator<Item = (u32, &'a crate::io::OwnedUplink6)> {
    wans.iter()
        .filter_map(|w| Some((w.ifindex, owned.v6.uplinks.get(w.uplink)?)))
}

/// The ports forwarded on each masquerading uplink's NAT66 address, keyed
/// by its interface.
fn forward6_keys(owned: &OwnedTraffic, wans: &[WanSlot]) -> Entries {
    uplinks6(owned, wans)
        .flat_map(|(ifindex, uplink)| {
            uplink.forwards.iter().map(move |(proto, port)| {
                let mut key = vec![0u8; 8];
                key[0..4].copy_from_slice(&ifindex.to_ne_bytes());
                key[4..6].copy_from_slice(&port.to_be_bytes());
                key[6] = if *proto == "udp" {
                    PROTO_UDP
                } else {
                    PROTO_TCP
                };
                (key, vec![1])
            })
        })
        .collect()
}

/// Each masquerading uplink's NAT66 address, by its interface.
fn wan6_keys(owned: &OwnedTraffic, wans: &[WanSlot]) -> Entries {
    uplinks6(owned, wans)
        .filter_map(|(ifindex, uplink)| {
            let address: Ipv6Addr = uplink.address?;
            Some((ifindex.to_ne_bytes().to_vec(), address.octets().to_vec()))
        })
        .collect()
}

/// Each uplink's outside prefixes (prefix, npt) or routed LAN prefixes
/// (off), by its interface: the ifindex leads the trie key, matched whole.
fn wan_prefix6_keys(owned: &OwnedTraffic, wans: &[WanSlot]) -> Entries {
    uplinks6(owned, wans)
        .flat_map(|(ifindex, uplink)| {
            uplink.prefixes.iter().map(move |net| {
                let mut key = vec![0u8; 24];
                key[0..4].copy_from_slice(&(32 + u32::from(net.prefix_len())).to_ne_bytes());
                key[4..8].copy_from_slice(&ifindex.to_ne_bytes());
                key[8..24].copy_from_slice(&net.network().octets());
                (key, vec![1])
            })
        })
        .collect()
}

/// What the updatable maps hold.
#[derive(Debug, Default)]
struct Keys {
    /// One per map of [`UPDATABLE`], in its order.
    maps: [Entries; 8],
    /// By uplink id.
    wan: Vec<Ipv4Addr>,
}

impl Keys {
    fn of(owned: &OwnedTraffic, wans: &[WanSlot]) -> Keys {
        Keys {
            maps: [
                forward_keys(owned),
                bypass_keys(owned),
                local_keys(owned),
                bypass6_keys(owned),
                local6_keys(owned),
                forward6_keys(owned, wans),
                wan6_keys(owned, wans),
                wan_prefix6_keys(owned, wans),
            ],
            wan: owned.wan_addresses.clone(),
        }
    }
}

/// The maps of the owned traffic a reload or a new address may change: the
/// port forwards, the bypass prefixes, the router's addresses, each WAN
/// interface's address, and for IPv6 each uplink's NAT66 address and
/// outside prefixes, usable from any thread while the program runs.
pub struct OwnedMaps {
    /// One per map of [`UPDATABLE`], in its order.
    maps: Vec<MapHandle>,
    ifaces: MapHandle,
    wans: Vec<WanSlot>,
    current: Mutex<Keys>,
}

impl OwnedMaps {
    /// Brings the maps to `owned`: new and changed entries go in first, then
    /// the old ones go. Each entry changes atomically, and entries that stay are not
    /// touched, so the traffic they describe is redirected throughout.
    pub fn update(&self, owned: &OwnedTraffic) -> Result<(), XdpError> {
        let mut guard = sync::lock(&self.current);
        let current = &mut *guard;
        let wanted = Keys::of(owned, &self.wans);
        for (((map, name), have), want) in (self.maps.iter())
            .zip(UPDATABLE)
            .zip(&mut current.maps)
            .zip(&wanted.maps)
        {
            let missing: Vec<(&Key, &Vec<u8>)> = want
                .iter()
                .filter(|(key, value)| have.get(*key) != Some(value))
                .collect();
            for (key, value) in missing {
                map.update(key, value, MapFlags::ANY)
                    .map_err(|err| map_error(name, err))?;
                have.insert(key.clone(), value.clone());
            }
            let stale: Vec<Key> = have
                .keys()
                .filter(|key| !want.contains_key(*key))
                .cloned()
                .collect();
            for key in stale {
                map.delete(&key).map_err(|err| map_error(name, err))?;
                have.remove(&key);
            }
        }
        for wan in &self.wans {
            let (Some(now), Some(was)) = (wanted.wan.get(wan.uplink), current.wan.get(wan.uplink))
            else {
                continue;
            };
            if now != was {
                let value = iface_value(wan.slot, ROLE_WAN, *now);
                self.ifaces
                    .update(&wan.ifindex.to_ne_bytes(), &value, MapFlags::ANY)
                    .map_err(|err| map_error("ifaces", err))?;
            }
        }
        current.wan = wanted.wan;
        Ok(())
    }
}

/// An `ifaces` map value: the interface's slot, role and (on a WAN) address.
fn iface_value(slot: usize, role: u32, wan_addr: Ipv4Addr) -> [u8; 12] {
    let mut value = [0u8; 12];
    value[0..4].copy_from_slice(&(slot as u32).to_ne_bytes());
    value[4..8].copy_from_slice(&role.to_ne_bytes());
    value[8..12].copy_from_slice(&wan_addr.octets());
    value
}

fn prefix_key(net: &Ipv4Net) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[0..4].copy_from_slice(&u32::from(net.prefix_len()).to_ne_bytes());
    key[4..8].copy_from_slice(&net.network().octets());
    key
}

fn prefix6_key(net: &Ipv6Net) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[0..4].copy_from_slice(&u32::from(net.prefix_len()).to_ne_bytes());
    key[4..20].copy_from_slice(&net.network().octets());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;
    use crate::io::{OwnedTraffic6, OwnedUplink6};

    fn owned() -> OwnedTraffic {
        OwnedTraffic {
            lan_networks: Vec::new(),
            bypass: Vec::new(),
            local_addresses: Vec::new(),
            wan_addresses: vec![Ipv4Addr::new(198, 18, 1, 2), Ipv4Addr::new(198, 18, 2, 2)],
            nat_ports: PortRange {
                lo: 20000,
                hi: 29999,
            },
            tcp_forwards: Vec::new(),
            udp_forwards: Vec::new(),
            v6: OwnedTraffic6 {
                lan_networks: vec!["fd00:50::/64".parse().unwrap()],
                bypass: vec!["2001:db8:ee::/48".parse().unwrap()],
                local_addresses: vec!["fd00:50::1".parse().unwrap()],
                uplinks: vec![
                    OwnedUplink6 {
                        prefixes: vec!["2001:db8:100::/64".parse().unwrap()],
                        ..OwnedUplink6::default()
                    },
                    OwnedUplink6 {
                        address: Some("2001:db8:2::2".parse().unwrap()),
                        forwards: vec![("tcp", 2022), ("udp", 5353)],
                        ..OwnedUplink6::default()
                    },
                ],
            },
        }
    }

    /// The LAN in slot 0 and the two uplinks on ifindexes 7 and 9.
    const WANS: [WanSlot; 2] = [
        WanSlot {
            ifindex: 7,
            slot: 1,
            uplink: 0,
        },
        WanSlot {
            ifindex: 9,
            slot: 2,
            uplink: 1,
        },
    ];

    fn entries(name: &str, keys: &Keys) -> Vec<(Vec<u8>, Vec<u8>)> {
        let at = UPDATABLE.iter().position(|n| *n == name).unwrap();
        keys.maps[at].clone().into_iter().collect()
    }

    fn addr6(text: &str) -> Vec<u8> {
        text.parse::<Ipv6Addr>().unwrap().octets().to_vec()
    }

    /// Each IPv6 map's entries as the C side lays out its keys and values.
    #[test]
    fn the_ipv6_maps_hold_the_owned_ipv6_traffic() {
        let keys = Keys::of(&owned(), &WANS);
        let prefix6 = |len: u32, addr: &str| [len.to_ne_bytes().to_vec(), addr6(addr)].concat();
        assert_eq!(
            entries("bypass_nets6", &keys),
            [(prefix6(48, "2001:db8:ee::"), vec![1])]
        );
        assert_eq!(
            entries("local_addrs6", &keys),
            [(addr6("fd00:50::1"), vec![LOCAL_ADDR])]
        );
        let wan_prefix = [
            96u32.to_ne_bytes().to_vec(),
            7u32.to_ne_bytes().to_vec(),
            addr6("2001:db8:100::"),
        ]
        .concat();
        assert_eq!(entries("wan_prefixes6", &keys), [(wan_prefix, vec![1])]);
        assert_eq!(
            entries("wan_addrs6", &keys),
            [(9u32.to_ne_bytes().to_vec(), addr6("2001:db8:2::2"))]
        );
        let forward = |port: u16, proto: u8| {
            let mut key = 9u32.to_ne_bytes().to_vec();
            key.extend_from_slice(&port.to_be_bytes());
            key.extend_from_slice(&[proto, 0]);
            (key, vec![1])
        };
        let mut forwards = vec![forward(2022, PROTO_TCP), forward(5353, PROTO_UDP)];
        forwards.sort();
        assert_eq!(entries("forwards6", &keys), forwards);
        assert_eq!(
            prefix6_key(&"fd00:50::/64".parse().unwrap()).to_vec(),
            prefix6(64, "fd00:50::")
        );
    }

    /// An uplink without IPv6, or none in the list for a WAN interface, has
    /// no IPv6 entries.
    #[test]
    fn an_uplink_without_ipv6_has_no_ipv6_entries() {
        let mut owned = owned();
        owned.v6.uplinks[1] = OwnedUplink6::default();
        let without = Keys::of(&owned, &WANS);
        owned.v6.uplinks.truncate(1);
        let missing = Keys::of(&owned, &WANS);
        for keys in [without, missing] {
            assert!(entries("wan_addrs6", &keys).is_empty());
            assert!(entries("forwards6", &keys).is_empty());
            assert_eq!(entries("wan_prefixes6", &keys).len(), 1);
        }
    }
}
