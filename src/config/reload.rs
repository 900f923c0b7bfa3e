//! Reloading: which changes a running router can take, and the reloaded
//! configuration laid out the way the running router numbers its uplinks.
//!
//! A running router gives each uplink an id at start (its place in the file
//! then) and keeps it for its life: its sockets, counters and flows use it. A
//! reload matches uplinks by name, so the new file may list them in another
//! order or leave some out. An uplink left out is removed: it keeps its place,
//! out of service, until a later reload names it again. What cannot change
//! without a restart is refused, naming the key: the LAN interface and
//! networks, an uplink's interface and address, a new uplink, the NAT port
//! range, the table limits, the control socket and its group, and the metrics
//! address.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::{Action, Config, ControlGroup, Page, UplinkId};

/// The configuration a running router holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningConfig {
    /// Uplinks in the order of their ids; a removed one keeps its last settings.
    pub config: Config,
    /// Per uplink id: removed by a reload.
    pub removed: Vec<bool>,
}

/// One key whose change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Dotted key as in the new file (uplinks counted from 1 in file order).
    pub key: String,
    pub message: String,
}

/// Why a reload was refused: every key whose change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NotLive {
    pub file: PathBuf,
    pub refusals: Vec<Refusal>,
}

impl fmt::Display for NotLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        for (i, r) in self.refusals.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", r.key, r.message)?;
        }
        f.write_str(" (restart xwan to apply; the running configuration is kept)")
    }
}

/// A reload that can be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// The configuration to run from now on.
    pub next: RunningConfig,
    /// Uplinks this reload takes out of service.
    pub removed: Vec<UplinkId>,
    /// Removed uplinks this reload brings back.
    pub restored: Vec<UplinkId>,
    /// What changed, in words, for the log and the reply; empty: nothing.
    pub changes: Vec<String>,
}

impl RunningConfig {
    pub fn new(config: Config) -> RunningConfig {
        let removed = vec![false; config.wans.len()];
        RunningConfig { config, removed }
    }

    /// The id of the uplink called `name`, unless it was removed.
    pub fn uplink_id(&self, name: &str) -> Option<UplinkId> {
        self.config
            .wans
            .iter()
            .zip(&self.removed)
            .position(|(w, removed)| w.name == name && !removed)
            .map(|i| i as UplinkId)
    }

    /// The names of the uplinks in service.
    pub fn uplink_names(&self) -> Vec<&str> {
        self.config
            .wans
            .iter()
            .zip(&self.removed)
            .filter(|(_, removed)| !**removed)
            .map(|(w, _)| w.name.as_str())
            .collect()
    }

    /// Checks `new` (read from `file`) against the running configuration and
    /// lays it out by uplink id.
    pub fn reload(&self, new: &Config, file: &Path) -> Result<Reload, NotLive> {
        let old = &self.config;
        let mut refusals = Vec::new();
        let mut refuse = |key: String, message: String| refusals.push(Refusal { key, message });
        if new.lan.interface != old.lan.interface {
            refuse(
                "lan.interface".into(),
                changed(&old.lan.interface, &new.lan.interface),
            );
        }
        if new.lan.networks != old.lan.networks {
            refuse(
                "lan.networks".into(),
                changed(&list(&old.lan.networks), &list(&new.lan.networks)),
            );
        }
        if new.lan.networks6 != old.lan.networks6 {
            refuse(
                "lan.networks".into(),
                changed(&list(&old.lan.networks6), &list(&new.lan.networks6)),
            );
        }
        if new.lan.address6 != old.lan.address6 {
            let text = |a: Option<std::net::Ipv6Addr>| a.map_or("none".into(), |a| a.to_string());
            refuse(
                "lan.address6".into(),
                changed(&text(old.lan.address6), &text(new.lan.address6)),
            );
        }
        if new.dataplane != old.dataplane {
            refuse(
                "dataplane.offload".into(),
                changed(
                    &format!("{:?}", old.dataplane.offload).to_lowercase(),
                    &format!("{:?}", new.dataplane.offload).to_lowercase(),
                ),
            );
        }
        // Where each uplink of the new file goes: the id of the same name.
        let mut ids: Vec<UplinkId> = Vec::with_capacity(new.wans.len());
        for (i, wan) in new.wans.iter().enumerate() {
            let key = format!("wan[{}]", i + 1);
            let Some(id) = old.wans.iter().position(|w| w.name == wan.name) else {
                refuse(
                    format!("{key}.name"),
                    format!(
                        "{:?} is a new uplink (running: {}); adding an uplink",
                        wan.name,
                        old.wans
                            .iter()
                            .map(|w| w.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let running = &old.wans[id];
            if wan.interface != running.interface {
                refuse(
                    format!("{key}.interface"),
                    changed(&running.interface, &wan.interface),
                );
            }
            if wan.ipv6 != running.ipv6 {
                let text = |v6: &Option<super::Wan6>| match v6 {
                    None => "no IPv6".to_string(),
                    Some(v6) => format!(
                        "address6 {} gateway6 {} prefix6 {} nat6 {}",
                        v6.address,
                        v6.gateway,
                        v6.prefix.map_or("none".into(), |p| p.to_string()),
                        v6.nat.name()
                    ),
                };
                refuse(
                    format!("{key}.gateway6"),
                    changed(&text(&running.ipv6), &text(&wan.ipv6)),
                );
            }
            if wan.address != running.address {
                refuse(
                    format!("{key}.address"),
                    changed(&running.address, &wan.address),
                );
            }
            ids.push(id as UplinkId);
        }
        if new.nat.ports != old.nat.ports {
            let range = |r: &super::PortRange| format!("{}-{}", r.lo, r.hi);
            refuse(
                "nat.ports".into(),
                changed(&range(&old.nat.ports), &range(&new.nat.ports)),
            );
        }
        if new.limits.max_flows != old.limits.max_flows {
            refuse(
                "limits.max_flows".into(),
                changed(&old.limits.max_flows, &new.limits.max_flows),
            );
        }
        for (key, was, now) in [
            (
                "limits.max_flows_per_host",
                old.limits.max_flows_per_host,
                new.limits.max_flows_per_host,
            ),
            (
                "limits.max_flows_per_forward",
                old.limits.max_flows_per_forward,
                new.limits.max_flows_per_forward,
            ),
            (
                "limits.max_flows_per_source",
                old.limits.max_flows_per_source,
                new.limits.max_flows_per_source,
            ),
            (
                "control.checkpoint_s",
                old.control.checkpoint_s,
                new.control.checkpoint_s,
            ),
        ] {
            if was != now {
                refuse(key.into(), changed(&was, &now));
            }
        }
        // The router's own routes and rules are laid out at start (their
        // tables and kernel rules); where each rule and `uplink` sends its
        // traffic follows a reload, what they match does not.
        if new.local.routes != old.local.routes {
            refuse(
                "local.routes".into(),
                changed(&old.local.routes, &new.local.routes),
            );
        }
        if new.local.table != old.local.table {
            refuse(
                "local.table".into(),
                changed(&old.local.table, &new.local.table),
            );
        }
        let matches = |local: &super::model::Local| -> Vec<_> {
            local
                .rules
                .iter()
                .map(|r| (r.proto, r.dst.clone(), r.dst_port.clone()))
                .collect()
        };
        if matches(&new.local) != matches(&old.local) {
            refuse(
                "local.rule".into(),
                format!(
                    "what the rules match changed ({} rule(s) before, {} now; each rule's uplink \
                     alone may change live)",
                    old.local.rules.len(),
                    new.local.rules.len()
                ),
            );
        }
        if new.control.state != old.control.state {
            let show = |s: &Option<std::path::PathBuf>| {
                s.as_ref().map_or("off".into(), |p| p.display().to_string())
            };
            refuse(
                "control.state".into(),
                changed(&show(&old.control.state), &show(&new.control.state)),
            );
        }
        if new.control.socket != old.control.socket {
            refuse(
                "control.socket".into(),
                changed(&old.control.socket.display(), &new.control.socket.display()),
            );
        }
        if new.control.group != old.control.group {
            let show =
                |g: &Option<ControlGroup>| g.as_ref().map_or("none".into(), |g| g.name.clone());
            refuse(
                "control.group".into(),
                changed(&show(&old.control.group), &show(&new.control.group)),
            );
        }
        // A changed listener is refused below (and with it the default of
        // page_flows, which follows the listener's address).
        if new.control.page != old.control.page && new.control.metrics == old.control.metrics {
            let show = |p: &Page| {
                format!(
                    "page {}, token {}, flows {}",
                    if p.on { "on" } else { "off" },
                    if p.token.is_some() { "set" } else { "none" },
                    if p.flows { "shown" } else { "hidden" }
                )
            };
            refuse(
                "control.page".into(),
                changed(&show(&old.control.page), &show(&new.control.page)),
            );
        }
        if new.control.metrics != old.control.metrics {
            let show = |m: Option<std::net::SocketAddr>| m.map_or("off".into(), |a| a.to_string());
            refuse(
                "control.metrics".into(),
                changed(&show(old.control.metrics), &show(new.control.metrics)),
            );
        }
        if !refusals.is_empty() {
            return Err(NotLive {
                file: file.to_path_buf(),
                refusals,
            });
        }
        Ok(self.lay_out(new, &ids))
    }

    /// `new` by uplink id; `ids[i]` is the id of `new.wans[i]`.
    fn lay_out(&self, new: &Config, ids: &[UplinkId]) -> Reload {
        let old = &self.config;
        let id_of = |i: UplinkId| ids[usize::from(i)];
        let mut config = new.clone();
        config.wans = old.wans.clone();
        let mut removed = vec![true; old.wans.len()];
        for (wan, &id) in new.wans.iter().zip(ids) {
            config.wans[usize::from(id)] = wan.clone();
            removed[usize::from(id)] = false;
        }
        for rule in &mut config.rules {
            if let Action::Uplink(i) = rule.action {
                rule.action = Action::Uplink(id_of(i));
            }
        }
        for forward in &mut config.forwards {
            for uplink in &mut forward.wans {
                *uplink = id_of(*uplink);
            }
        }
        let ids_where = |f: &dyn Fn(usize) -> bool| -> Vec<UplinkId> {
            (0..removed.len())
                .filter(|&i| f(i))
                .map(|i| i as UplinkId)
                .collect()
        };
        let newly_removed = ids_where(&|i| removed[i] && !self.removed[i]);
        let restored = ids_where(&|i| !removed[i] && self.removed[i]);
        let next = RunningConfig { config, removed };
        let changes = describe_changes(self, &next);
        Reload {
            next,
            removed: newly_removed,
            restored,
            changes,
        }
    }
}

fn changed(old: &dyn fmt::Display, new: &dyn fmt::Display) -> String {
    format!("changed from {old} to {new}")
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The changes from `old` to `new`, one phrase each.
fn describe_changes(old: &RunningConfig, new: &RunningConfig) -> Vec<String> {
    let (a, b) = (&old.config, &new.config);
    let mut out = Vec::new();
    for (id, (was, now)) in a.wans.iter().zip(&b.wans).enumerate() {
        match (old.removed[id], new.removed[id]) {
            (false, true) => {
                out.push(format!("uplink {} removed", was.name));
                continue;
            }
            (true, false) => out.push(format!("uplink {} back", now.name)),
            (true, true) => continue,
            (false, false) => {}
        }
        let mut fields = Vec::new();
        if was.weight != now.weight {
            fields.push(format!("weight {} -> {}", was.weight, now.weight));
        }
        if was.priority != now.priority {
            fields.push(format!("priority {} -> {}", was.priority, now.priority));
        }
        if was.gateway != now.gateway {
            fields.push(format!("gateway {} -> {}", was.gateway, now.gateway));
        }
        if was.mtu != now.mtu {
            fields.push(format!(
                "mtu {} -> {}",
                super::summary::mtu_text(was.mtu),
                super::summary::mtu_text(now.mtu)
            ));
        }
        if was.probe != now.probe {
            fields.push(format!("probes {}", list(&now.probe)));
        }
        if was.health != now.health {
            fields.push("health".to_string());
        }
        if !fields.is_empty() {
            out.push(format!("uplink {}: {}", now.name, fields.join(", ")));
        }
    }
    let sections: [(&str, bool); 8] = [
        ("lan", a.lan != b.lan),
        ("balance", a.balance != b.balance),
        ("rules", a.rules != b.rules),
        ("forwards", a.forwards != b.forwards),
        ("nat.mss_clamp", a.nat.mss_clamp != b.nat.mss_clamp),
        ("health", a.health != b.health),
        ("timeouts", a.timeouts != b.timeouts),
        ("limits", a.limits != b.limits),
    ];
    for (name, differs) in sections {
        if differs {
            out.push(match name {
                "rules" => format!("rules ({} -> {})", a.rules.len(), b.rules.len()),
                "forwards" => format!("forwards ({} -> {})", a.forwards.len(), b.forwards.len()),
                _ => name.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[lan]
interface = "lan0"
networks = "192.168.50.0/24"

[[wan]]
name = "isp1"
interface = "wan1"
address = "198.18.1.2"
gateway = "198.18.1.1"

[[wan]]
name = "isp2"
interface = "wan2"
address = "198.18.2.2"
gateway = "198.18.2.1"

[[wan]]
name = "isp3"
interface = "wan3"
address = "198.18.3.2"
gateway = "198.18.3.1"
"#;

    fn config(text: &str) -> Config {
        Config::from_toml(text, Path::new("xwan.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn running() -> RunningConfig {
        RunningConfig::new(config(BASE))
    }

    fn reload(running: &RunningConfig, text: &str) -> Result<Reload, NotLive> {
        running.reload(&config(text), Path::new("xwan.toml"))
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let r = reload(&running(), BASE).unwrap();
        assert_eq!(r.next, running());
        assert!(r.changes.is_empty() && r.removed.is_empty() && r.restored.is_empty());
    }

    #[test]
    fn live_changes_are_laid_out_by_uplink_id() {
        // isp2 first now, weight 3; a rule and a forward naming isp2.
        let text = format!(
            "{}\n[[rule]]\ndst_port = \"443\"\nproto = \"tcp\"\naction = \"isp2\"\n\n\
             [[forward]]\nproto = \"tcp\"\nport = 8080\nto = \"192.168.50.10:80\"\nwan = \"isp2\"\n",
            BASE.replace("name = \"isp2\"", "name = \"isp2\"\nweight = 3")
                .replace(
                    "[[wan]]\nname = \"isp1\"\ninterface = \"wan1\"\naddress = \"198.18.1.2\"\ngateway = \"198.18.1.1\"\n",
                    ""
                )
                + "\n[[wan]]\nname = \"isp1\"\ninterface = \"wan1\"\naddress = \"198.18.1.2\"\ngateway = \"198.18.1.1\"\n"
        );
        let new = config(&text);
        assert_eq!(new.wans[0].name, "isp2", "the file lists isp2 first");
        let r = running().reload(&new, Path::new("xwan.toml")).unwrap();
        let names: Vec<&str> = r.next.config.wans.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["isp1", "isp2", "isp3"], "ids stay");
        assert_eq!(r.next.config.wans[1].weight, 3);
        assert_eq!(r.next.config.rules[0].action, Action::Uplink(1));
        assert_eq!(r.next.config.forwards[0].wans, [1]);
        assert_eq!(
            r.changes,
            [
                "uplink isp2: weight 1 -> 3",
                "rules (0 -> 1)",
                "forwards (0 -> 1)"
            ]
        );
    }

    #[test]
    fn a_removed_uplink_keeps_its_place_and_can_come_back() {
        let without_isp1 = BASE.replacen(
            "[[wan]]\nname = \"isp1\"\ninterface = \"wan1\"\naddress = \"198.18.1.2\"\ngateway = \"198.18.1.1\"\n",
            "",
            1,
        );
        let text = format!("{without_isp1}\n[[rule]]\naction = \"isp3\"\n");
        let r = reload(&running(), &text).unwrap();
        assert_eq!(r.removed, [0]);
        assert_eq!(r.next.removed, [true, false, false]);
        assert_eq!(r.next.config.wans[0].name, "isp1");
        assert_eq!(r.next.config.rules[0].action, Action::Uplink(2));
        assert_eq!(r.next.uplink_id("isp1"), None);
        assert_eq!(r.next.uplink_id("isp3"), Some(2));
        assert_eq!(r.next.uplink_names(), ["isp2", "isp3"]);
        assert_eq!(r.changes, ["uplink isp1 removed", "rules (0 -> 1)"]);

        let back = reload(&r.next, BASE).unwrap();
        assert_eq!(back.restored, [0]);
        assert!(back.removed.is_empty());
        assert_eq!(back.next, running());
    }

    #[test]
    fn offload_changes_need_a_restart() {
        let e = reload(
            &running(),
            &format!("{BASE}\n[dataplane]\noffload = \"off\"\n"),
        )
        .unwrap_err();
        assert_eq!(e.refusals.len(), 1);
        assert_eq!(e.refusals[0].key, "dataplane.offload");
        assert_eq!(e.refusals[0].message, "changed from auto to off");
    }

    #[test]
    fn the_router_own_rules_match_what_they_matched_at_start() {
        let rule = |port: &str, uplink: &str| {
            format!(
                "\n[[local.rule]]\nproto = \"tcp\"\ndst_port = \"{port}\"\nuplink = \"{uplink}\"\n"
            )
        };
        let before = format!("{BASE}{}", rule("22", "isp1"));
        let running = RunningConfig::new(config(&before));
        let moved = format!("{BASE}{}", rule("22", "isp2"));
        assert!(
            reload(&running, &moved).is_ok(),
            "a rule's uplink changes live"
        );
        for (text, key) in [
            (format!("{BASE}{}", rule("23", "isp1")), "local.rule"),
            (format!("{before}{}", rule("80", "isp2")), "local.rule"),
            (BASE.to_string(), "local.rule"),
            (format!("{before}\n[local]\ntable = 7900\n"), "local.table"),
            (
                format!("{before}\n[local]\nroutes = false\n"),
                "local.routes",
            ),
        ] {
            let e = reload(&running, &text).unwrap_err();
            let keys: Vec<&str> = e.refusals.iter().map(|r| r.key.as_str()).collect();
            assert_eq!(keys, [key], "{text}");
        }
    }

    #[test]
    fn changes_that_need_a_restart_are_refused_by_key() {
        let text = BASE
            .replace("address = \"198.18.2.2\"", "address = \"198.18.2.9\"")
            .replace("interface = \"wan3\"", "interface = \"wan9\"")
            + "\n[nat]\nports = \"30000-39999\"\n[control]\nmetrics = \"127.0.0.1:9847\"\ngroup = \"root\"\n";
        let e = reload(&running(), &text).unwrap_err();
        let keys: Vec<&str> = e.refusals.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "wan[2].address",
                "wan[3].interface",
                "nat.ports",
                "control.group",
                "control.metrics"
            ]
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with("xwan.toml: wan[2].address: changed from 198.18.2.2 to 198.18.2.9; "),
            "{shown}"
        );
        assert!(shown.contains("nat.ports: changed from 20000-59999 to 30000-39999"));
        assert!(
            shown.ends_with("the running configuration is kept)"),
            "{shown}"
        );

        let added = format!(
            "{BASE}\n[[wan]]\nname = \"isp4\"\ninterface = \"wan4\"\naddress = \"198.18.4.2\"\ngateway = \"198.18.4.1\"\n"
        );
        let e = reload(&running(), &added).unwrap_err();
        assert_eq!(e.refusals[0].key, "wan[4].name");
        assert!(e.refusals[0].message.contains("\"isp4\" is a new uplink"));

        let lan = BASE.replace(
            "networks = \"192.168.50.0/24\"",
            "networks = \"10.0.0.0/8\"",
        );
        let e = reload(&running(), &lan).unwrap_err();
        assert_eq!(e.refusals[0].key, "lan.networks");
    }
}
