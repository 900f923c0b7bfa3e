//! `[health]`, `[timeouts]`, `[limits]` and `[control]`.

use super::*;

impl Validator<'_> {
    /// `[health]` (`key` "health", over the built-in defaults) or an
    /// uplink's `[wan.health]` (`key` "wan[i].health", over `[health]`).
    pub(super) fn health(
        &self,
        raw: Option<&RawHealth>,
        key: &str,
        base: &Health,
    ) -> Result<Health> {
        let k = |name: &str| format!("{key}.{name}");
        let int = |value: Option<&Spanned<i64>>, name: &str, default: u32| {
            self.int(value, &k(name), default, 1, u32::MAX)
        };
        Ok(Health {
            interval_ms: self.int(
                raw.and_then(|h| h.interval_ms.as_ref()),
                &k("interval_ms"),
                base.interval_ms,
                1,
                u64::MAX,
            )?,
            timeout_ms: self.int(
                raw.and_then(|h| h.timeout_ms.as_ref()),
                &k("timeout_ms"),
                base.timeout_ms,
                1,
                u64::MAX,
            )?,
            down_after: int(
                raw.and_then(|h| h.down_after.as_ref()),
                "down_after",
                base.down_after,
            )?,
            up_after: int(
                raw.and_then(|h| h.up_after.as_ref()),
                "up_after",
                base.up_after,
            )?,
            reliability: int(
                raw.and_then(|h| h.reliability.as_ref()),
                "reliability",
                base.reliability,
            )?,
            hook: match raw.and_then(|h| h.hook.as_ref()) {
                Some(hook) if hook.get_ref().trim().is_empty() => {
                    return Err(self.err(
                        hook.span(),
                        k("hook"),
                        "empty command; leave the key out for no hook",
                    ))
                }
                Some(hook) => Some(hook.get_ref().clone()),
                None => base.hook.clone(),
            },
            loss: self.trigger(
                raw.and_then(|h| h.failure_loss.as_ref()),
                raw.and_then(|h| h.recovery_loss.as_ref()),
                (&k("failure_loss"), &k("recovery_loss")),
                100,
                base.loss,
            )?,
            latency_ms: self.trigger(
                raw.and_then(|h| h.failure_latency_ms.as_ref()),
                raw.and_then(|h| h.recovery_latency_ms.as_ref()),
                (&k("failure_latency_ms"), &k("recovery_latency_ms")),
                u64::MAX,
                base.latency_ms,
            )?,
            initial_up: match raw.and_then(|h| h.initial_state.as_ref()) {
                None => base.initial_up,
                Some(s) => match s.get_ref().as_str() {
                    "up" => true,
                    "down" => false,
                    other => {
                        return Err(self.err(
                            s.span(),
                            k("initial_state"),
                            format!("{other:?} is not a state (up or down)"),
                        ))
                    }
                },
            },
        })
    }

    /// A failure threshold and its recovery threshold (by default half the
    /// failure one); a recovery threshold alone, or one above its failure
    /// threshold, is an error. Neither given: `base`.
    fn trigger<T>(
        &self,
        failure: Option<&Spanned<i64>>,
        recovery: Option<&Spanned<i64>>,
        keys: (&str, &str),
        max: T,
        base: Option<Trigger<T>>,
    ) -> Result<Option<Trigger<T>>>
    where
        T: TryFrom<i64>
            + Into<i128>
            + Copy
            + std::fmt::Display
            + From<u8>
            + std::ops::Div<Output = T>,
    {
        let one = T::from(1);
        let fail = match failure {
            Some(f) => self.int(Some(f), keys.0, one, one, max)?,
            None => match (recovery, base) {
                (None, base) => return Ok(base),
                (Some(_), Some(base)) => base.failure,
                (Some(r), None) => {
                    return Err(self.err(
                        r.span(),
                        keys.1,
                        format!("a recovery threshold needs {} as well", keys.0),
                    ))
                }
            },
        };
        let recovery = match recovery {
            None => fail / T::from(2),
            Some(r) => {
                let value = self.int(Some(r), keys.1, T::from(0), T::from(0), max)?;
                if value.into() > fail.into() {
                    return Err(self.err(
                        r.span(),
                        keys.1,
                        format!(
                            "{value} is above {} ({fail}): an uplink must be better to come back than to stay",
                            keys.0
                        ),
                    ));
                }
                value
            }
        };
        Ok(Some(Trigger {
            failure: fail,
            recovery,
        }))
    }

    pub(super) fn timeouts(&self, raw: Option<&RawTimeouts>) -> Result<Timeouts> {
        let get = |value: Option<&Spanned<i64>>, key: &str, default: u32| {
            self.int(value, key, default, 1, u32::MAX)
        };
        Ok(Timeouts {
            tcp_established_s: get(
                raw.and_then(|t| t.tcp_established_s.as_ref()),
                "timeouts.tcp_established_s",
                7440,
            )?,
            tcp_transitory_s: get(
                raw.and_then(|t| t.tcp_transitory_s.as_ref()),
                "timeouts.tcp_transitory_s",
                240,
            )?,
            udp_s: get(raw.and_then(|t| t.udp_s.as_ref()), "timeouts.udp_s", 300)?,
            icmp_s: get(raw.and_then(|t| t.icmp_s.as_ref()), "timeouts.icmp_s", 60)?,
        })
    }

    pub(super) fn limits(&self, raw: Option<&RawLimits>) -> Result<Limits> {
        Ok(Limits {
            max_flows: self.int(
                raw.and_then(|l| l.max_flows.as_ref()),
                "limits.max_flows",
                1 << 20,
                1,
                u32::MAX,
            )?,
            max_flows_per_host: self.int(
                raw.and_then(|l| l.max_flows_per_host.as_ref()),
                "limits.max_flows_per_host",
                DEFAULT_MAX_FLOWS_PER_HOST,
                0,
                u32::MAX,
            )?,
            max_flows_per_forward: self.int(
                raw.and_then(|l| l.max_flows_per_forward.as_ref()),
                "limits.max_flows_per_forward",
                DEFAULT_MAX_FLOWS_PER_FORWARD,
                0,
                u32::MAX,
            )?,
            max_flows_per_source: self.int(
                raw.and_then(|l| l.max_flows_per_source.as_ref()),
                "limits.max_flows_per_source",
                DEFAULT_MAX_FLOWS_PER_SOURCE,
                0,
                u32::MAX,
            )?,
        })
    }

    /// `[dataplane]`: offload "auto" unless the file says "tc" or "off".
    pub(super) fn dataplane(&self, raw: Option<&RawDataplane>) -> Result<Dataplane> {
        let offload = match raw.and_then(|d| d.offload.as_ref()) {
            None => Offload::Auto,
            Some(value) => match value.get_ref().as_str() {
                "auto" => Offload::Auto,
                "tc" => Offload::Tc,
                "off" => Offload::Off,
                other => {
                    return Err(self.err(
                        value.span(),
                        "dataplane.offload",
                        format!(
                            "{other:?} is not an offload setting (expected \"auto\", \"tc\" or \"off\")"
                        ),
                    ))
                }
            },
        };
        Ok(Dataplane { offload })
    }

    /// `[local]`: on by default, the router's own connections by the first uplink.
    pub(super) fn local(&self, raw: Option<&RawLocal>, uplinks: &[&str]) -> Result<Local> {
        let routes = raw
            .and_then(|l| l.routes.as_ref())
            .is_none_or(|r| *r.get_ref());
        let uplink = match raw.and_then(|l| l.uplink.as_ref()) {
            None => LocalUplink::Uplink(0),
            Some(u) => self.local_uplink(u, "local.uplink", uplinks)?,
        };
        let rules = match raw {
            None => Vec::new(),
            Some(l) => l
                .rule
                .iter()
                .enumerate()
                .map(|(i, r)| self.local_rule(i, r, uplinks))
                .collect::<Result<_>>()?,
        };
        if let Some(extra) = raw.and_then(|l| l.rule.get(MAX_LOCAL_RULES)) {
            return Err(self.err(
                extra.span(),
                "local.rule",
                format!("at most {MAX_LOCAL_RULES} [[local.rule]] sections"),
            ));
        }
        // Clear of the kernel's reserved tables (253-255) and of 0, with room
        // for every table xwan numbers from it.
        let top = u32::MAX - (MAX_UPLINKS + 1 + MAX_LOCAL_RULES) as u32;
        let table = self.int(
            raw.and_then(|l| l.table.as_ref()),
            "local.table",
            DEFAULT_LOCAL_TABLE,
            256,
            top,
        )?;
        Ok(Local {
            routes,
            uplink,
            table,
            rules,
        })
    }

    fn local_rule(
        &self,
        i: usize,
        raw: &Spanned<RawLocalRule>,
        uplinks: &[&str],
    ) -> Result<LocalRule> {
        let r = raw.get_ref();
        let key = |k: &str| format!("local.rule[{}].{k}", i + 1);
        let proto = self.rule_proto(r.proto.as_ref(), &key("proto"))?;
        let (dst, dst6) = self.rule_nets(r.dst.as_ref(), &key("dst"))?;
        if let (Some(raw), false) = (&r.dst, dst6.is_empty()) {
            return Err(self.err(
                raw.span(),
                key("dst"),
                "IPv6 destinations are not steered by [local] rules: the router's own IPv6 \
                 traffic follows the kernel's routes",
            ));
        }
        Ok(LocalRule {
            proto,
            dst,
            dst_port: self.rule_ports(r.dst_port.as_ref(), &key("dst_port"), proto)?,
            uplink: self.local_uplink(&r.uplink, &key("uplink"), uplinks)?,
        })
    }

    /// An uplink's name or "balance".
    fn local_uplink(
        &self,
        raw: &Spanned<String>,
        key: &str,
        uplinks: &[&str],
    ) -> Result<LocalUplink> {
        if raw.get_ref() == "balance" {
            return Ok(LocalUplink::Balance);
        }
        match uplinks.iter().position(|name| name == raw.get_ref()) {
            Some(id) => Ok(LocalUplink::Uplink(uplink_id(id))),
            None => Err(self.err(
                raw.span(),
                key,
                format!(
                    "{:?} names no uplink (uplinks: {}; or balance)",
                    raw.get_ref(),
                    uplinks.join(", ")
                ),
            )),
        }
    }

    pub(super) fn control(&self, raw: Option<&RawControl>) -> Result<Control> {
        let socket = match raw.and_then(|c| c.socket.as_ref()) {
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
            Some(s) if s.get_ref().is_empty() => {
                return Err(self.err(s.span(), "control.socket", "empty path"));
            }
            Some(s) => PathBuf::from(s.get_ref()),
        };
        let metrics = match raw.and_then(|c| c.metrics.as_ref()) {
            None => None,
            Some(m) => match m.get_ref().parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => Some(addr),
                Ok(_) => {
                    return Err(self.err(
                        m.span(),
                        "control.metrics",
                        "port 0 is not a port to listen on",
                    ));
                }
                Err(_) => {
                    return Err(self.err(
                        m.span(),
                        "control.metrics",
                        format!(
                            "{:?} is not an address and port (e.g. \"127.0.0.1:9847\")",
                            m.get_ref()
                        ),
                    ));
                }
            },
        };
        let state = match raw.and_then(|c| c.state.as_ref()) {
            None => Some(PathBuf::from(DEFAULT_STATE_FILE)),
            Some(s) if s.get_ref() == "off" => None,
            Some(s) if s.get_ref().is_empty() => {
                return Err(self.err(
                    s.span(),
                    "control.state",
                    "empty path (\"off\" turns it off)",
                ));
            }
            Some(s) => Some(PathBuf::from(s.get_ref())),
        };
        let checkpoint_s = self.int(
            raw.and_then(|c| c.checkpoint_s.as_ref()),
            "control.checkpoint_s",
            DEFAULT_CHECKPOINT_S,
            0,
            86_400,
        )?;
        let group = match raw.and_then(|c| c.group.as_ref()) {
            None => None,
            Some(g) => Some(
                control_group(g.get_ref())
                    .map_err(|msg| self.err(g.span(), "control.group", msg))?,
            ),
        };
        let token = match raw.and_then(|c| c.page_token.as_ref()) {
            None => None,
            Some(t) => {
                let text = t.get_ref();
                // Characters a URL carries as they are (RFC 3986 unreserved).
                let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
                if text.len() < 16 || !text.chars().all(url_safe) {
                    return Err(self.err(
                        t.span(),
                        "control.page_token",
                        "at least 16 characters, each a letter, a digit or one of - . _ ~",
                    ));
                }
                Some(text.clone())
            }
        };
        // Off the box only when asked for: default on a loopback listener.
        let loopback = metrics.is_some_and(|m| m.ip().is_loopback());
        let page = Page {
            on: raw
                .and_then(|c| c.page.as_ref())
                .map_or(loopback, |p| *p.get_ref()),
            token,
            flows: match raw.and_then(|c| c.page_flows.as_ref()) {
                Some(f) => *f.get_ref(),
                None => metrics.is_some_and(|m| m.ip().is_loopback()),
            },
        };
        Ok(Control {
            socket,
            metrics,
            state,
            checkpoint_s,
            group,
            page,
        })
    }
}

/// `[control] group`: a group name known to this system (its group database,
/// through NSS), or a numeric group id.
fn control_group(name: &str) -> std::result::Result<ControlGroup, String> {
    if name.is_empty() {
        return Err("empty group name".into());
    }
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(ControlGroup {
            name: name.to_string(),
            gid,
        });
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(ControlGroup {
            name: name.to_string(),
            gid: group.gid.as_raw(),
        }),
        Ok(None) => Err(format!(
            "no group {name:?} on this system (create it with `groupadd {name}`, or name another)"
        )),
        Err(err) => Err(format!("cannot look up group {name:?}: {err}")),
    }
}
