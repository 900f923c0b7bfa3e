//! `[balance]` and `[[rule]]`: balancing mode and stickiness, steering rules
//! with their prefixes and ports.

use super::*;

impl Validator<'_> {
    pub(super) fn balance(&self, raw: Option<&RawBalance>) -> Result<Balance> {
        let mode = match raw.and_then(|b| b.mode.as_ref()) {
            None => BalanceMode::Nth,
            Some(mode) => match mode.get_ref().as_str() {
                "nth" => BalanceMode::Nth,
                "hash" => BalanceMode::Hash,
                "random" => BalanceMode::Random,
                other => {
                    return Err(self.err(
                        mode.span(),
                        "balance.mode",
                        format!("{other:?} is not a balance mode (expected nth, hash or random)"),
                    ))
                }
            },
        };
        let sticky = match raw.and_then(|b| b.sticky.as_ref()) {
            None => Sticky::None,
            Some(sticky) => match sticky.get_ref().as_str() {
                "none" => Sticky::None,
                "src" => Sticky::Src,
                "src-dst" => Sticky::SrcDst,
                other => {
                    return Err(self.err(
                        sticky.span(),
                        "balance.sticky",
                        format!("{other:?} is not a sticky mode (expected none, src or src-dst)"),
                    ))
                }
            },
        };
        let sticky_timeout_s = self.int(
            raw.and_then(|b| b.sticky_timeout_s.as_ref()),
            "balance.sticky_timeout_s",
            600,
            1,
            u32::MAX,
        )?;
        Ok(Balance {
            mode,
            sticky,
            sticky_timeout_s,
        })
    }

    pub(super) fn rule(&self, i: usize, raw: &Spanned<RawRule>, uplinks: &[&str]) -> Result<Rule> {
        let r = raw.get_ref();
        let key = |k: &str| format!("rule[{}].{k}", i + 1);
        let name = match &r.name {
            None => format!("rule-{}", i + 1),
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err(self.err(name.span(), key("name"), "empty name"));
            }
            Some(name) => name.get_ref().clone(),
        };
        let proto = self.rule_proto(r.proto.as_ref(), &key("proto"))?;
        let (src, src6) = self.rule_nets(r.src.as_ref(), &key("src"))?;
        let (dst, dst6) = self.rule_nets(r.dst.as_ref(), &key("dst"))?;
        let src_port = self.rule_ports(r.src_port.as_ref(), &key("src_port"), proto)?;
        let dst_port = self.rule_ports(r.dst_port.as_ref(), &key("dst_port"), proto)?;
        let action = self.rule_action(&r.action, &key("action"), uplinks)?;
        let strict = match &r.strict {
            None => false,
            Some(s) => {
                if *s.get_ref() && !matches!(action, Action::Uplink(_)) {
                    return Err(self.err(
                        s.span(),
                        key("strict"),
                        "strict only applies to a rule whose action is an uplink",
                    ));
                }
                *s.get_ref()
            }
        };
        Ok(Rule {
            name,
            proto,
            src,
            src6,
            dst,
            dst6,
            src_port,
            dst_port,
            action,
            strict,
        })
    }

    /// `proto`: tcp, udp, icmp or any (the default).
    pub(super) fn rule_proto(&self, raw: Option<&Spanned<String>>, key: &str) -> Result<Proto> {
        Ok(match raw {
            None => Proto::Any,
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "icmp" => Proto::Icmp,
                "any" => Proto::Any,
                other => {
                    return Err(self.err(
                        p.span(),
                        key,
                        format!("{other:?} is not a protocol (expected tcp, udp, icmp or any)"),
                    ))
                }
            },
        })
    }

    /// `action`: balance, bypass, drop or an uplink's name.
    fn rule_action(&self, raw: &Spanned<String>, key: &str, uplinks: &[&str]) -> Result<Action> {
        let action = match raw.get_ref().as_str() {
            "balance" => Action::Balance,
            "bypass" => Action::Bypass,
            "drop" => Action::Drop,
            name => match uplinks.iter().position(|u| *u == name) {
                Some(id) => Action::Uplink(uplink_id(id)),
                None => {
                    return Err(self.err(
                        raw.span(),
                        key,
                        format!(
                            "{name:?} names no uplink (uplinks: {}; or balance, bypass, drop)",
                            uplinks.join(", ")
                        ),
                    ))
                }
            },
        };
        Ok(action)
    }

    pub(super) fn unique_rule_names(&self, raw: &[Spanned<RawRule>], rules: &[Rule]) -> Result<()> {
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = rules[..i].iter().position(|r| r.name == rule.name) {
                let span = raw[i]
                    .get_ref()
                    .name
                    .as_ref()
                    .map_or(raw[i].span(), Spanned::span);
                return Err(self.err(
                    span,
                    format!("rule[{}].name", i + 1),
                    format!(
                        "duplicate rule name {:?} (also rule[{}])",
                        rule.name,
                        first + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn rule_nets(
        &self,
        raw: Option<&Spanned<OneOrList>>,
        key: &str,
    ) -> Result<(Vec<Ipv4Net>, Vec<Ipv6Net>)> {
        let Some(raw) = raw else {
            return Ok((Vec::new(), Vec::new()));
        };
        let nets = self.nets_both(raw, key)?;
        if nets.0.is_empty() && nets.1.is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "empty list; leave the key out to match any address",
            ));
        }
        Ok(nets)
    }

    pub(super) fn rule_ports(
        &self,
        raw: Option<&Spanned<OneOrList>>,
        key: &str,
        proto: Proto,
    ) -> Result<Vec<PortRange>> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        if !matches!(proto, Proto::Tcp | Proto::Udp) {
            return Err(self.err(
                raw.span(),
                key,
                "ports need proto = \"tcp\" or proto = \"udp\" in the same rule",
            ));
        }
        let mut ports = Vec::new();
        for item in OneOrList::items(raw, key) {
            match item.value {
                Scalar::Int(p) => ports.push(self.port_int(*p, item.span, &item.key, 0)?),
                Scalar::Str(s) => ports.extend(
                    parse_port_list(s, 0).map_err(|msg| self.err(item.span, &item.key, msg))?,
                ),
            }
        }
        if ports.is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "empty list; leave the key out to match any port",
            ));
        }
        Ok(ports)
    }
}
