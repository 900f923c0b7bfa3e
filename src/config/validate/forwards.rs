//! `[nat]` and `[[forward]]`: the SNAT port range, MSS clamping and port
//! forwards with the WANs they listen on.

use super::*;

impl Validator<'_> {
    pub(super) fn nat(&self, raw: Option<&RawNat>) -> Result<Nat> {
        let mss_clamp = self.mss_clamp(raw.and_then(|n| n.mss_clamp.as_ref()))?;
        let Some(ports) = raw.and_then(|n| n.ports.as_ref()) else {
            return Ok(Nat {
                ports: DEFAULT_NAT_PORTS,
                ports_set: false,
                mss_clamp,
            });
        };
        let range = parse_range(ports.get_ref(), 1)
            .map_err(|msg| self.err(ports.span(), "nat.ports", msg))?;
        if range.len() < MIN_NAT_PORTS {
            return Err(self.err(
                ports.span(),
                "nat.ports",
                format!(
                    "range {range} has {} ports; at least {MIN_NAT_PORTS} are needed",
                    range.len()
                ),
            ));
        }
        Ok(Nat {
            ports: range,
            ports_set: true,
            mss_clamp,
        })
    }

    pub(super) fn mss_clamp(&self, raw: Option<&Spanned<Scalar>>) -> Result<MssClamp> {
        let Some(raw) = raw else {
            return Ok(MssClamp::Off);
        };
        let (lo, hi) = MSS_RANGE;
        match raw.get_ref() {
            Scalar::Str(s) if s == "auto" => Ok(MssClamp::Auto),
            Scalar::Str(s) if s == "off" => Ok(MssClamp::Off),
            Scalar::Int(n) => match u16::try_from(*n) {
                Ok(mss) if (lo..=hi).contains(&mss) => Ok(MssClamp::Fixed(mss)),
                _ => Err(self.err(
                    raw.span(),
                    "nat.mss_clamp",
                    format!("{n} is out of range (must be from {lo} to {hi})"),
                )),
            },
            Scalar::Str(s) => Err(self.err(
                raw.span(),
                "nat.mss_clamp",
                format!("{s:?} is not an MSS (expected a number from {lo} to {hi}, \"auto\" or \"off\")"),
            )),
        }
    }

    pub(super) fn forwards(
        &self,
        raw: &[Spanned<RawForward>],
        lan: &Lan,
        wans: &[Wan],
        nat: &Nat,
    ) -> Result<(Vec<Forward>, Vec<Forward<Ipv6Addr>>)> {
        let uplinks: Vec<&str> = wans.iter().map(|w| w.name.as_str()).collect();
        let mut forwards: Vec<Forward> = Vec::with_capacity(raw.len());
        let mut forwards6: Vec<Forward<Ipv6Addr>> = Vec::new();
        for (i, table) in raw.iter().enumerate() {
            let key = |k: &str| format!("forward[{}].{k}", i + 1);
            let f = table.get_ref();
            let forward = self.forward(f, lan, wans, nat, &key)?;
            match forward.to_addr {
                IpAddr::V4(to_addr) => {
                    let forward = forward.with_target(to_addr);
                    self.forward_clash(f, &forward, &forwards, &uplinks, &key)?;
                    forwards.push(forward);
                }
                IpAddr::V6(to_addr) => {
                    let forward = forward.with_target(to_addr);
                    self.forward_clash(f, &forward, &forwards6, &uplinks, &key)?;
                    forwards6.push(forward);
                }
            }
        }
        Ok((forwards, forwards6))
    }

    /// One `[[forward]]` section: protocol, port outside the NAT range, a
    /// target inside the LAN (of either family), the WANs it listens on
    /// (for an IPv6 target: uplinks with `nat6 = "masquerade"`, whose one
    /// address it is on).
    fn forward(
        &self,
        f: &RawForward,
        lan: &Lan,
        wans: &[Wan],
        nat: &Nat,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Forward<IpAddr>> {
        let proto = match f.proto.get_ref().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => {
                return Err(self.err(
                    f.proto.span(),
                    key("proto"),
                    format!("{other:?} cannot be forwarded (expected tcp or udp)"),
                ))
            }
        };
        let port = self.port_int(*f.port.get_ref(), f.port.span(), &key("port"), 1)?;
        let (to_addr, to_port) = parse_target(f.to.get_ref(), port)
            .map_err(|msg| self.err(f.to.span(), key("to"), msg))?;
        let inside = match to_addr {
            IpAddr::V4(a) => lan.networks.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => lan.networks6.iter().any(|n| n.contains(&a)),
        };
        if !inside {
            let networks: Vec<String> = (lan.networks.iter().map(ToString::to_string))
                .chain(lan.networks6.iter().map(ToString::to_string))
                .collect();
            return Err(self.err(
                f.to.span(),
                key("to"),
                format!(
                    "{to_addr} is not inside a LAN network ({})",
                    networks.join(", ")
                ),
            ));
        }
        let uplinks: Vec<&str> = wans.iter().map(|w| w.name.as_str()).collect();
        let masquerade = |id: UplinkId| {
            let v6 = wans[usize::from(id)].ipv6.as_ref();
            v6.is_some_and(|v6| v6.nat == Nat6::Masquerade)
        };
        let ids = match &f.wan {
            None if to_addr.is_ipv6() => (0..uplinks.len())
                .map(uplink_id)
                .filter(|id| masquerade(*id))
                .collect(),
            None => (0..uplinks.len()).map(uplink_id).collect(),
            Some(list) => self.forward_wans(list, &key("wan"), &uplinks)?,
        };
        if to_addr.is_ipv6() {
            if let Some(id) = ids.iter().find(|id| !masquerade(**id)) {
                let span = f.wan.as_ref().map_or_else(|| f.to.span(), Spanned::span);
                return Err(self.err(
                    span,
                    key("wan"),
                    format!(
                        "{} has no nat6 = \"masquerade\": an IPv6 forward listens on an \
                         uplink's one NAT66 address (with a prefix mapping, LAN hosts are \
                         reached without forwards)",
                        uplinks[usize::from(*id)]
                    ),
                ));
            }
            if ids.is_empty() {
                return Err(self.err(
                    f.to.span(),
                    key("to"),
                    "no uplink has nat6 = \"masquerade\" to forward IPv6 on (with a prefix \
                     mapping, LAN hosts are reached without forwards)",
                ));
            }
        }
        if nat.ports.contains(port.lo) {
            return Err(self.err(
                f.port.span(),
                key("port"),
                format!(
                    "port {} is inside the NAT port range {} (nat.ports); \
                     pick a port outside it or move the range",
                    port.lo, nat.ports
                ),
            ));
        }
        Ok(Forward {
            proto,
            port: port.lo,
            to_addr,
            to_port,
            wans: ids,
        })
    }

    /// A forward against the ones before it: no protocol and port forwarded
    /// twice on one WAN.
    fn forward_clash<A>(
        &self,
        f: &RawForward,
        forward: &Forward<A>,
        earlier: &[Forward<A>],
        uplinks: &[&str],
        key: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let (proto, wans) = (forward.proto, &forward.wans);
        let clash = earlier.iter().position(|o| {
            o.proto == proto && o.port == forward.port && o.wans.iter().any(|w| wans.contains(w))
        });
        if let Some(other) = clash {
            let shared: Vec<&str> = earlier[other]
                .wans
                .iter()
                .filter(|w| wans.contains(w))
                .map(|w| uplinks[usize::from(*w)])
                .collect();
            return Err(self.err(
                f.port.span(),
                key("port"),
                format!(
                    "{} port {} on {} is already forwarded by forward[{}]",
                    proto,
                    forward.port,
                    shared.join(", "),
                    other + 1
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn forward_wans(
        &self,
        raw: &Spanned<OneOrList>,
        key: &str,
        uplinks: &[&str],
    ) -> Result<Vec<UplinkId>> {
        let mut ids = Vec::new();
        for item in OneOrList::items(raw, key) {
            let Scalar::Str(name) = item.value else {
                return Err(self.err(
                    item.span,
                    &item.key,
                    format!("expected an uplink name, found {}", item.value),
                ));
            };
            let Some(id) = uplinks.iter().position(|u| u == name) else {
                return Err(self.err(
                    item.span,
                    &item.key,
                    format!("{name:?} names no uplink (uplinks: {})", uplinks.join(", ")),
                ));
            };
            let id = uplink_id(id);
            if ids.contains(&id) {
                return Err(self.err(item.span, &item.key, format!("{name:?} is listed twice")));
            }
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "empty list; leave the key out to forward on every uplink",
            ));
        }
        Ok(ids)
    }
}
