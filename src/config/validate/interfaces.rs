//! `[lan]` and `[[wan]]`: interfaces, addresses, MTUs, and the uplinks' clashes
//! with each other and with the LAN.

use super::*;

impl Validator<'_> {
    pub(super) fn lan(&self, raw: &Spanned<RawLan>) -> Result<Lan> {
        let lan = raw.get_ref();
        let interface = self.interface_name(&lan.interface, "lan.interface")?;
        let (networks, networks6) = self.nets_both(&lan.networks, "lan.networks")?;
        if networks.is_empty() && networks6.is_empty() {
            return Err(self.err(
                lan.networks.span(),
                "lan.networks",
                "no networks: list at least one inside prefix, like \"192.168.50.0/24\"",
            ));
        }
        let address6 = self.lan_address6(lan.address6.as_ref(), &networks6)?;
        let address = match &lan.address {
            None => None,
            Some(raw) => {
                let address = self.addr(raw, "lan.address")?;
                // A host of a LAN network: not its network or broadcast address
                // (a /31 or /32 has neither).
                let inside = networks.iter().any(|n| {
                    n.contains(&address)
                        && (n.prefix_len() >= 31
                            || (address != n.network() && address != n.broadcast()))
                });
                if !usable_host(address) || !inside {
                    return Err(self.err(
                        raw.span(),
                        "lan.address",
                        format!(
                            "{address} is not a host address inside a LAN network ({})",
                            join_display(&networks)
                        ),
                    ));
                }
                Some(address)
            }
        };
        let mtu = self.mtu(lan.mtu.as_ref(), "lan.mtu")?;
        Ok(Lan {
            interface,
            networks,
            networks6,
            address,
            address6,
            mtu,
        })
    }

    pub(super) fn mtu(&self, raw: Option<&Spanned<i64>>, key: &str) -> Result<Option<u16>> {
        raw.map(|_| self.int(raw, key, DEFAULT_MTU, MTU_RANGE.0, MTU_RANGE.1))
            .transpose()
    }

    pub(super) fn wans(
        &self,
        raw: &[Spanned<RawWan>],
        lan: &Lan,
        health: &Health,
    ) -> Result<Vec<Wan>> {
        self.wan_count(raw)?;
        let mut wans: Vec<Wan> = Vec::with_capacity(raw.len());
        for (i, table) in raw.iter().enumerate() {
            let key = |k: &str| format!("wan[{}].{k}", i + 1);
            let wan = self.wan(table.get_ref(), &key, health, lan)?;
            self.wan_clashes(table.get_ref(), &wan, &wans, lan, &key)?;
            wans.push(wan);
        }
        Ok(wans)
    }

    /// Two uplinks at least, and no more than the core supports.
    fn wan_count(&self, raw: &[Spanned<RawWan>]) -> Result<()> {
        if raw.len() < 2 {
            let (span, found) = match raw.first() {
                None => (0..0, "no [[wan]] section"),
                Some(first) => (first.span(), "only one [[wan]] section"),
            };
            return Err(self.err(
                span,
                "wan",
                format!("{found}; xwan needs at least two uplinks"),
            ));
        }
        if raw.len() > MAX_UPLINKS {
            return Err(self.err(
                raw[MAX_UPLINKS].span(),
                "wan",
                format!(
                    "{} uplinks configured; at most {MAX_UPLINKS} are supported",
                    raw.len()
                ),
            ));
        }
        Ok(())
    }

    /// One `[[wan]]` section's values, each checked on its own (in this order:
    /// the first problem is the one reported).
    fn wan(
        &self,
        w: &RawWan,
        key: &dyn Fn(&str) -> String,
        health: &Health,
        lan: &Lan,
    ) -> Result<Wan> {
        let wan = Wan {
            name: self.uplink_name(&w.name, &key("name"))?,
            interface: self.interface_name(&w.interface, &key("interface"))?,
            address: self.addr_or_auto(&w.address, &key("address"))?,
            gateway: self.addr_or_auto(&w.gateway, &key("gateway"))?,
            address_auto: is_auto(&w.address),
            gateway_auto: is_auto(&w.gateway),
            weight: self.int(w.weight.as_ref(), &key("weight"), 1, 1, 1000)?,
            priority: self.int(w.priority.as_ref(), &key("priority"), 1, 0, u32::MAX)?,
            mtu: self.mtu(w.mtu.as_ref(), &key("mtu"))?,
            probe: match &w.probe {
                None => Vec::new(),
                Some(p) => OneOrList::items(p, &key("probe"))
                    .into_iter()
                    .map(|item| self.probe_target(&item))
                    .collect::<Result<_>>()?,
            },
            health: self.health(w.health.as_ref(), &key("health"), health)?,
            ipv6: self.wan6(w, key, lan)?,
        };
        self.probes6_need_gateway6(w, &wan, key)?;
        Ok(wan)
    }

    /// An IPv6 probe target goes to the uplink's IPv6 gateway, which it
    /// must have.
    fn probes6_need_gateway6(
        &self,
        w: &RawWan,
        wan: &Wan,
        key: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let (Some(raw), None) = (&w.probe, &wan.ipv6) else {
            return Ok(());
        };
        let items = OneOrList::items(raw, &key("probe"));
        match items.iter().zip(&wan.probe).find(|(_, t)| t.is_ipv6()) {
            Some((item, target)) => Err(self.err(
                item.span.clone(),
                &item.key,
                format!(
                    "{target} is an IPv6 target, but this uplink has no gateway6 \
                     (IPv6 probes go out through its IPv6 gateway)"
                ),
            )),
            None => Ok(()),
        }
    }

    /// An uplink against the LAN and the uplinks before it: names,
    /// interfaces and addresses.
    fn wan_clashes(
        &self,
        w: &RawWan,
        wan: &Wan,
        earlier: &[Wan],
        lan: &Lan,
        key: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let name = format!("uplink name {:?}", wan.name);
        self.first_of(
            earlier,
            |o| o.name == wan.name,
            w.name.span(),
            key("name"),
            name,
        )?;
        let interface = &wan.interface;
        if *interface == lan.interface {
            return Err(self.err(
                w.interface.span(),
                key("interface"),
                format!("interface {interface:?} is already the LAN interface"),
            ));
        }
        let same = |o: &Wan| o.interface == *interface;
        let what = format!("interface {interface:?}");
        self.first_of(earlier, same, w.interface.span(), key("interface"), what)?;
        self.wan_addresses(w, wan, earlier, lan, key)
    }

    /// An error naming the earlier uplink that has `what` too, if one has.
    fn first_of(
        &self,
        earlier: &[Wan],
        same: impl Fn(&Wan) -> bool,
        span: Range<usize>,
        key: String,
        what: String,
    ) -> Result<()> {
        match earlier.iter().position(same) {
            Some(other) => Err(self.err(
                span,
                key,
                format!("duplicate {what} (also wan[{}])", other + 1),
            )),
            None => Ok(()),
        }
    }

    /// An uplink's address and gateway: usable, its own, outside the LAN.
    fn wan_addresses(
        &self,
        w: &RawWan,
        wan: &Wan,
        earlier: &[Wan],
        lan: &Lan,
        key: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let address = wan.address;
        if wan.address_auto {
            // Known only at run time: the kernel's, so usable and the interface's own.
            return self.gateway_usable(w, wan, key);
        }
        if !usable_host(address) {
            return Err(self.err(
                w.address.span(),
                key("address"),
                format!("{address} cannot be an uplink address"),
            ));
        }
        let what = format!("uplink address {address}");
        self.first_of(
            earlier,
            |o| o.address == address,
            w.address.span(),
            key("address"),
            what,
        )?;
        if let Some(net) = lan.networks.iter().find(|n| n.contains(&address)) {
            return Err(self.err(
                w.address.span(),
                key("address"),
                format!("{address} is inside the LAN network {net}"),
            ));
        }
        self.gateway_usable(w, wan, key)
    }

    /// A gateway written in the file: a host address, not the uplink's own.
    fn gateway_usable(&self, w: &RawWan, wan: &Wan, key: &dyn Fn(&str) -> String) -> Result<()> {
        let (address, gateway) = (wan.address, wan.gateway);
        if !wan.gateway_auto && (!usable_host(gateway) || gateway == address) {
            return Err(self.err(
                w.gateway.span(),
                key("gateway"),
                format!("{gateway} cannot be the gateway of an uplink with address {address}"),
            ));
        }
        Ok(())
    }

    /// An address, or "auto" (unspecified until the kernel says).
    fn addr_or_auto(&self, raw: &Spanned<String>, key: &str) -> Result<Ipv4Addr> {
        if is_auto(raw) {
            Ok(Ipv4Addr::UNSPECIFIED)
        } else {
            self.addr(raw, key)
        }
    }
}

pub(super) fn is_auto(raw: &Spanned<String>) -> bool {
    raw.get_ref() == "auto"
}
