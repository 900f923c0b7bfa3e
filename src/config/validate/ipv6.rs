//! The IPv6 side of `[lan]` and `[[wan]]`: prefixes in `networks` and the
//! rules' `src`/`dst` beside IPv4 ones, `[lan] address6`, and each uplink's
//! `address6`, `gateway6`, `prefix6` and `nat6`, checked against the LAN.

use super::interfaces::is_auto;
use super::*;

/// The most bits an RFC 6296 prefix may have: the adjustment word must lie
/// in the interface identifier, outside the prefix.
const NPT_MAX_PREFIX: u8 = 64;

impl Validator<'_> {
    /// A list of prefixes of either family, split by family.
    pub(super) fn nets_both(
        &self,
        raw: &Spanned<OneOrList>,
        key: &str,
    ) -> Result<(Vec<Ipv4Net>, Vec<Ipv6Net>)> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for item in OneOrList::items(raw, key) {
            let Scalar::Str(s) = item.value else {
                return Err(self.err(
                    item.span.clone(),
                    &item.key,
                    format!(
                        "expected an address or CIDR prefix string like \"192.168.50.0/24\" \
                         or \"fd00:50::/64\", found {}",
                        item.value
                    ),
                ));
            };
            if s.contains(':') {
                v6.push(parse_net6(s).map_err(|m| self.err(item.span.clone(), &item.key, m))?);
            } else {
                v4.push(parse_net(s).map_err(|m| self.err(item.span.clone(), &item.key, m))?);
            }
        }
        Ok((v4, v6))
    }

    /// `[lan] address6`: a host inside one of the LAN's IPv6 prefixes.
    pub(super) fn lan_address6(
        &self,
        raw: Option<&Spanned<String>>,
        networks6: &[Ipv6Net],
    ) -> Result<Option<Ipv6Addr>> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let address = self.addr6(raw, "lan.address6")?;
        if !networks6.iter().any(|n| n.contains(&address)) || !unicast6(address) {
            return Err(self.err(
                raw.span(),
                "lan.address6",
                format!(
                    "{address} is not a host address inside a LAN IPv6 network ({})",
                    if networks6.is_empty() {
                        "there is none in lan.networks".to_string()
                    } else {
                        join_display(networks6)
                    }
                ),
            ));
        }
        Ok(Some(address))
    }

    /// An uplink's IPv6 keys: None when it has none of them.
    pub(super) fn wan6(
        &self,
        w: &RawWan,
        key: &dyn Fn(&str) -> String,
        lan: &Lan,
    ) -> Result<Option<Wan6>> {
        let Some(gateway_raw) = &w.gateway6 else {
            let given = [
                (&w.address6, "address6"),
                (&w.prefix6, "prefix6"),
                (&w.nat6, "nat6"),
            ];
            return match given
                .iter()
                .find_map(|(raw, k)| raw.as_ref().map(|r| (r, k)))
            {
                None => Ok(None),
                Some((raw, k)) => Err(self.err(
                    raw.span(),
                    key(k),
                    "gateway6 is missing: an uplink with IPv6 needs its next hop \
                     (\"auto\" follows the kernel's IPv6 default route through the interface)",
                )),
            };
        };
        let gateway = self.addr6_or_auto(gateway_raw, &key("gateway6"))?;
        if gateway.is_multicast() || gateway.is_loopback() {
            return Err(self.err(
                gateway_raw.span(),
                key("gateway6"),
                format!("{gateway} cannot be a next hop"),
            ));
        }
        let address = match &w.address6 {
            None => Ipv6Addr::UNSPECIFIED,
            Some(raw) => {
                let address = self.addr6_or_auto(raw, &key("address6"))?;
                if !is_auto(raw) && (!unicast6(address) || link_local6(address)) {
                    return Err(self.err(
                        raw.span(),
                        key("address6"),
                        format!("{address} cannot be an uplink's global address"),
                    ));
                }
                address
            }
        };
        let prefix = match &w.prefix6 {
            None => None,
            Some(raw) if is_auto(raw) => None,
            Some(raw) => Some(self.prefix6(raw, &key("prefix6"))?),
        };
        let prefix_auto = w.prefix6.as_ref().is_some_and(is_auto);
        let nat = self.nat6(w, key, prefix.is_some() || prefix_auto)?;
        let wan6 = Wan6 {
            address,
            address_auto: w.address6.as_ref().is_some_and(is_auto),
            gateway,
            gateway_auto: is_auto(gateway_raw),
            prefix,
            prefix_auto,
            nat,
        };
        self.wan6_against_lan(w, &wan6, key, lan)?;
        Ok(Some(wan6))
    }

    /// `nat6`, or its default: prefix mapping where there is a prefix,
    /// masquerade where there is not; and what the chosen one needs.
    fn nat6(&self, w: &RawWan, key: &dyn Fn(&str) -> String, has_prefix: bool) -> Result<Nat6> {
        let nat = match &w.nat6 {
            None if has_prefix => Nat6::Prefix,
            None => Nat6::Masquerade,
            Some(raw) => match raw.get_ref().as_str() {
                "prefix" => Nat6::Prefix,
                "npt" => Nat6::Npt,
                "masquerade" => Nat6::Masquerade,
                "off" => Nat6::Off,
                other => {
                    return Err(self.err(
                        raw.span(),
                        key("nat6"),
                        format!(
                            "unknown nat6 {other:?}; expected \"prefix\", \"npt\", \
                             \"masquerade\" or \"off\""
                        ),
                    ))
                }
            },
        };
        let span = w.nat6.as_ref().map_or_else(
            || w.gateway6.as_ref().map_or(0..0, Spanned::span),
            Spanned::span,
        );
        if nat == Nat6::Masquerade && w.address6.is_none() {
            return Err(self.err(
                span,
                key("address6"),
                "address6 is missing: nat6 = \"masquerade\" translates to the uplink's own \
                 address (\"auto\" follows the interface's global address)",
            ));
        }
        if nat != Nat6::Masquerade && !has_prefix {
            return Err(self.err(
                span,
                key("prefix6"),
                format!(
                    "prefix6 is missing: nat6 = {:?} needs the prefix the ISP routes to this \
                     uplink (\"auto\" follows the delegated prefix)",
                    nat.name()
                ),
            ));
        }
        Ok(nat)
    }

    /// The LAN's IPv6 prefixes fit the uplink's prefix the way `nat6` uses
    /// it, and none of the uplink's addresses lies inside the LAN.
    fn wan6_against_lan(
        &self,
        w: &RawWan,
        wan6: &Wan6,
        key: &dyn Fn(&str) -> String,
        lan: &Lan,
    ) -> Result<()> {
        if let Some(raw) = &w.address6 {
            if let Some(net) = lan.networks6.iter().find(|n| n.contains(&wan6.address)) {
                return Err(self.err(
                    raw.span(),
                    key("address6"),
                    format!("{} is inside the LAN network {net}", wan6.address),
                ));
            }
        }
        let (Some(prefix), Some(raw)) = (wan6.prefix, &w.prefix6) else {
            return Ok(());
        };
        for net in &lan.networks6 {
            let problem = match wan6.nat {
                Nat6::Off if !prefix.contains(net) => Some(format!(
                    "the LAN network {net} is not inside {prefix}: with nat6 = \"off\" the \
                     uplink must route the LAN's own prefixes"
                )),
                Nat6::Off | Nat6::Masquerade => None,
                _ if net.prefix_len() < prefix.prefix_len() => Some(format!(
                    "the LAN network {net} is bigger than {prefix}: a prefix mapping needs a \
                     LAN prefix at least as long as the uplink's"
                )),
                Nat6::Npt if net.prefix_len() > NPT_MAX_PREFIX => Some(format!(
                    "the LAN network {net} is longer than /{NPT_MAX_PREFIX}: RFC 6296 NPTv6 \
                     adjusts a word of the interface identifier (use nat6 = \"prefix\")"
                )),
                _ if prefix.contains(net) || net.contains(&prefix) => Some(format!(
                    "{prefix} overlaps the LAN network {net}: a mapped prefix must lie outside \
                     the LAN (or use nat6 = \"off\")"
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(self.err(raw.span(), key("prefix6"), problem));
            }
        }
        if matches!(wan6.nat, Nat6::Prefix | Nat6::Npt) {
            let nets = &lan.networks6;
            for (i, a) in nets.iter().enumerate() {
                if let Some(b) = nets[..i].iter().find(|b| mapped_onto_one(**b, *a, prefix)) {
                    return Err(self.err(
                        raw.span(),
                        key("prefix6"),
                        format!(
                            "the LAN networks {b} and {a} map onto one prefix inside {prefix}: \
                             a mapping keeps the LAN's bits below /{} only, where they are equal",
                            prefix.prefix_len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The uplinks' IPv6 sides against each other, and the LAN's IPv6
    /// prefixes against the uplinks that could carry them.
    pub(super) fn wans6(
        &self,
        raw: &[Spanned<RawWan>],
        wans: &[Wan],
        lan: &Lan,
        networks_span: Range<usize>,
    ) -> Result<()> {
        for (i, wan) in wans.iter().enumerate() {
            let Some(prefix) = wan.ipv6.as_ref().and_then(|v6| v6.prefix) else {
                continue;
            };
            let earlier = wans[..i]
                .iter()
                .position(|o| o.ipv6.as_ref().and_then(|v6| v6.prefix) == Some(prefix));
            if let (Some(other), Some(span)) = (
                earlier,
                raw[i].get_ref().prefix6.as_ref().map(Spanned::span),
            ) {
                return Err(self.err(
                    span,
                    format!("wan[{}].prefix6", i + 1),
                    format!("duplicate uplink prefix {prefix} (also wan[{}])", other + 1),
                ));
            }
        }
        let carried = wans.iter().any(|w| w.ipv6.is_some());
        if !lan.networks6.is_empty() && !carried {
            return Err(self.err(
                networks_span,
                "lan.networks",
                format!(
                    "IPv6 networks ({}) but no uplink carries IPv6: give at least one \
                     [[wan]] a gateway6",
                    join_display(&lan.networks6)
                ),
            ));
        }
        Ok(())
    }

    fn prefix6(&self, raw: &Spanned<String>, key: &str) -> Result<Ipv6Net> {
        let net = parse_net6(raw.get_ref()).map_err(|m| self.err(raw.span(), key, m))?;
        if !raw.get_ref().contains('/') || net.prefix_len() > NPT_MAX_PREFIX {
            return Err(self.err(
                raw.span(),
                key,
                format!(
                    "{:?} is not a routed prefix of /{NPT_MAX_PREFIX} or shorter \
                     (like \"2001:db8:100::/56\")",
                    raw.get_ref()
                ),
            ));
        }
        Ok(net)
    }

    fn addr6(&self, raw: &Spanned<String>, key: &str) -> Result<Ipv6Addr> {
        raw.get_ref().parse().map_err(|_| {
            self.err(
                raw.span(),
                key,
                format!("{:?} is not an IPv6 address", raw.get_ref()),
            )
        })
    }

    fn addr6_or_auto(&self, raw: &Spanned<String>, key: &str) -> Result<Ipv6Addr> {
        if is_auto(raw) {
            Ok(Ipv6Addr::UNSPECIFIED)
        } else {
            self.addr6(raw, key)
        }
    }
}

/// `"fd00:50::/64"`, or a bare address meaning /128. Host bits are cleared.
fn parse_net6(s: &str) -> std::result::Result<Ipv6Net, String> {
    let s = s.trim();
    let net = if s.contains('/') {
        s.parse::<Ipv6Net>().ok()
    } else {
        s.parse::<Ipv6Addr>().ok().map(Ipv6Net::from)
    };
    net.map(|n| n.trunc()).ok_or_else(|| {
        format!("{s:?} is not an IPv6 address or CIDR prefix (like \"fd00:50::/64\")")
    })
}

/// Whether LAN prefixes `a` and `b` overlap once mapped into `delegated`:
/// a mapping keeps their bits from the delegated length on, so they do when
/// those bits agree up to the shorter of the two.
fn mapped_onto_one(a: Ipv6Net, b: Ipv6Net, delegated: Ipv6Net) -> bool {
    let from = u32::from(delegated.prefix_len());
    let to = u32::from(a.prefix_len().min(b.prefix_len()));
    let kept = u128::MAX.checked_shr(from).unwrap_or(0) & !u128::MAX.checked_shr(to).unwrap_or(0);
    (a.network().to_bits() ^ b.network().to_bits()) & kept == 0
}

/// A unicast address a host may have (not unspecified, loopback or multicast).
fn unicast6(addr: Ipv6Addr) -> bool {
    !addr.is_unspecified() && !addr.is_loopback() && !addr.is_multicast()
}

/// fe80::/10.
fn link_local6(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}
