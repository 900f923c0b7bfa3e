//! The router's own IPv6 addresses as each lane sees them: the LAN address
//! and every uplink's addressing, which classifying each IPv6 packet reads
//! (is it for the router, which LAN host does a WAN address stand for).
//! The shared copies sit behind a lock and `ArcSwap`s, whose reads are
//! locked operations; a lane keeps its own copy ([`AddressCache6`]) and
//! takes a new one only when the epoch moved (an address or a prefix
//! changed), as it does for the settings (`reconfigure.rs`).

use std::cell::{Cell, Ref, RefCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::{FrameContext, Router};
use super::Addressing6;
use crate::config::{Nat6, UplinkId};
use crate::packet::Addr6;

/// A lane's copy of the router's own IPv6 addresses.
pub(in crate::router) struct AddressCache6 {
    epoch: Cell<u64>,
    own: RefCell<Own6>,
}

/// The router's own IPv6 addresses at one epoch.
struct Own6 {
    /// Its LAN address and the uplinks' addresses it has.
    addresses: Vec<Addr6>,
    /// Per uplink, in config order.
    uplinks: Vec<Arc<Addressing6>>,
}

impl Own6 {
    fn of(router: &Router) -> Own6 {
        let uplinks: Vec<Arc<Addressing6>> = (router.v6.uplinks.iter())
            .map(|u| u.addressing.load_full())
            .collect();
        let addresses = (router.lan_address6().into_iter())
            .chain(uplinks.iter().filter_map(|u| u.address))
            .collect();
        Own6 { addresses, uplinks }
    }

    fn is_router(&self, addr: Addr6) -> bool {
        self.addresses.contains(&addr)
    }
}

impl AddressCache6 {
    /// The addresses now: the epoch read first, so a change in between
    /// leaves a newer copy under an older epoch (taken again at the next
    /// read), never the reverse.
    pub fn new(router: &Router) -> AddressCache6 {
        let epoch = router.v6.epoch.load(Ordering::Acquire);
        AddressCache6 {
            epoch: Cell::new(epoch),
            own: RefCell::new(Own6::of(router)),
        }
    }
}

impl Router {
    /// The router's own IPv6 addresses through a lane's cache (refreshed
    /// when the epoch moved; a read nested in another keeps the outer copy).
    fn own6<'a>(&self, cache: &'a AddressCache6) -> Ref<'a, Own6> {
        let epoch = self.v6.epoch.load(Ordering::Acquire);
        if cache.epoch.get() != epoch {
            if let Ok(mut own) = cache.own.try_borrow_mut() {
                *own = Own6::of(self);
                cache.epoch.set(epoch);
            }
        }
        cache.own.borrow()
    }

    /// Whether `addr` is one of the router's own IPv6 addresses (its LAN
    /// address, an uplink's address).
    pub(super) fn is_router_address6(&self, addr: Addr6, ctx: &FrameContext) -> bool {
        self.own6(ctx.addresses6).is_router(addr)
    }

    /// Where the destination `dst` of a frame from `uplink` leads: the LAN
    /// host it stands for (`Some(Some(host))`: a mapped address with prefix
    /// or npt, a LAN address the uplink routes with off), the router itself
    /// (`Some(None)`), or neither (None).
    pub(super) fn wan_destination6(
        &self,
        nat: Nat6,
        uplink: UplinkId,
        dst: Addr6,
        ctx: &FrameContext,
    ) -> Option<Option<Addr6>> {
        let own = self.own6(ctx.addresses6);
        let inbound = own
            .uplinks
            .get(usize::from(uplink))
            .and_then(|addressing| self.inbound_address6(addressing, nat, dst));
        // The router's own addresses are looked at only for what maps to
        // no LAN host (a mapped address is never one of them).
        match inbound {
            Some(host) => Some(Some(host)),
            None => own.is_router(dst).then_some(None),
        }
    }

    /// The LAN host an address of an uplink with `addressing` stands for:
    /// a mapped address (prefix, npt), or a LAN address the uplink routes
    /// (off); None for the router's own addresses and anything else.
    fn inbound_address6(&self, addressing: &Addressing6, nat: Nat6, dst: Addr6) -> Option<Addr6> {
        match nat {
            Nat6::Prefix | Nat6::Npt => addressing.maps.iter().find_map(|m| m.inbound(dst)),
            Nat6::Off => {
                let inside = addressing
                    .prefix
                    .is_some_and(|p| p.contains(&std::net::Ipv6Addr::from(dst)));
                (inside && self.v6.is_lan(dst)).then_some(dst)
            }
            Nat6::Masquerade => None,
        }
    }
}
