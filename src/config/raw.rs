//! The file as written: a serde layer that checks structure (known keys,
//! required keys, basic types) and keeps the span of every value that the
//! validation in `validate` still has to check.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Source};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub lan: Spanned<RawLan>,
    #[serde(default)]
    pub wan: Vec<Spanned<RawWan>>,
    pub balance: Option<RawBalance>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub forward: Vec<Spanned<RawForward>>,
    pub nat: Option<RawNat>,
    pub health: Option<RawHealth>,
    pub timeouts: Option<RawTimeouts>,
    pub limits: Option<RawLimits>,
    pub control: Option<RawControl>,
    pub local: Option<RawLocal>,
    pub dataplane: Option<RawDataplane>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLan {
    pub interface: Spanned<String>,
    pub networks: Spanned<OneOrList>,
    pub address: Option<Spanned<String>>,
    pub address6: Option<Spanned<String>>,
    pub mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWan {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    pub address: Spanned<String>,
    pub gateway: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub priority: Option<Spanned<i64>>,
    pub probe: Option<Spanned<OneOrList>>,
    pub mtu: Option<Spanned<i64>>,
    /// `[wan.health]`: this uplink's overrides of `[health]`.
    pub health: Option<RawHealth>,
    pub address6: Option<Spanned<String>>,
    pub gateway6: Option<Spanned<String>>,
    pub prefix6: Option<Spanned<String>>,
    pub nat6: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBalance {
    pub mode: Option<Spanned<String>>,
    pub sticky: Option<Spanned<String>>,
    pub sticky_timeout_s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: Option<Spanned<String>>,
    pub proto: Option<Spanned<String>>,
    pub src: Option<Spanned<OneOrList>>,
    pub dst: Option<Spanned<OneOrList>>,
    pub src_port: Option<Spanned<OneOrList>>,
    pub dst_port: Option<Spanned<OneOrList>>,
    pub action: Spanned<String>,
    pub strict: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    pub proto: Spanned<String>,
    pub port: Spanned<i64>,
    pub to: Spanned<String>,
    pub wan: Option<Spanned<OneOrList>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNat {
    pub ports: Option<Spanned<String>>,
    pub mss_clamp: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub interval_ms: Option<Spanned<i64>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub down_after: Option<Spanned<i64>>,
    pub up_after: Option<Spanned<i64>>,
    pub reliability: Option<Spanned<i64>>,
    pub hook: Option<Spanned<String>>,
    pub failure_loss: Option<Spanned<i64>>,
    pub recovery_loss: Option<Spanned<i64>>,
    pub failure_latency_ms: Option<Spanned<i64>>,
    pub recovery_latency_ms: Option<Spanned<i64>>,
    pub initial_state: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub tcp_established_s: Option<Spanned<i64>>,
    pub tcp_transitory_s: Option<Spanned<i64>>,
    pub udp_s: Option<Spanned<i64>>,
    pub icmp_s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_flows: Option<Spanned<i64>>,
    pub max_flows_per_host: Option<Spanned<i64>>,
    pub max_flows_per_forward: Option<Spanned<i64>>,
    pub max_flows_per_source: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub socket: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
    pub state: Option<Spanned<String>>,
    pub checkpoint_s: Option<Spanned<i64>>,
    pub group: Option<Spanned<String>>,
    pub page: Option<Spanned<bool>>,
    pub page_token: Option<Spanned<String>>,
    pub page_flows: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    pub routes: Option<Spanned<bool>>,
    pub uplink: Option<Spanned<String>>,
    pub table: Option<Spanned<i64>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawLocalRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    pub offload: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocalRule {
    pub proto: Option<Spanned<String>>,
    pub dst: Option<Spanned<OneOrList>>,
    pub dst_port: Option<Spanned<OneOrList>>,
    pub uplink: Spanned<String>,
}

/// A string or an integer: what the flexible keys (addresses, ports, names)
/// hold; which of the two a key accepts is up to validation.
#[derive(Debug)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{s:?}"),
            Scalar::Int(i) => write!(f, "{i}"),
        }
    }
}

/// One value, or an array of them (`networks = "10.0.0.0/8"` or
/// `networks = ["10.0.0.0/8", "172.16.0.0/12"]`).
pub(super) enum OneOrList {
    One(Scalar),
    List(Vec<Spanned<Scalar>>),
}

/// One element of a [`OneOrList`], with its own span and key path.
pub(super) struct Item<'a> {
    pub value: &'a Scalar,
    pub span: Range<usize>,
    pub key: String,
}

impl OneOrList {
    /// The elements, each with the key path it is reported under:
    /// `key` for a single value, `key[i]` (from 1) for array elements.
    pub fn items<'a>(this: &'a Spanned<OneOrList>, key: &str) -> Vec<Item<'a>> {
        match this.get_ref() {
            OneOrList::One(value) => vec![Item {
                value,
                span: this.span(),
                key: key.to_string(),
            }],
            OneOrList::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, v)| Item {
                    value: v.get_ref(),
                    span: v.span(),
                    key: format!("{key}[{}]", i + 1),
                })
                .collect(),
        }
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an integer")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct OneOrListVisitor;

impl<'de> Visitor<'de> for OneOrListVisitor {
    type Value = OneOrList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer or an array of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrList, E> {
        ScalarVisitor.visit_str(v).map(OneOrList::One)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrList, E> {
        ScalarVisitor.visit_i64(v).map(OneOrList::One)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrList, E> {
        ScalarVisitor.visit_u64(v).map(OneOrList::One)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrList, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Scalar>>()? {
            list.push(item);
        }
        Ok(OneOrList::List(list))
    }
}

impl<'de> Deserialize<'de> for OneOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrListVisitor)
    }
}

/// Parse the TOML text into the raw layer, turning TOML and serde errors
/// into [`ConfigError`]s that name the key.
pub(super) fn parse(src: Source<'_>) -> Result<RawConfig, ConfigError> {
    let root = DeTable::parse(src.text).map_err(|e| src.syntax(e.span(), e.message()))?;
    let deserializer = toml::Deserializer::from(root.clone());
    RawConfig::deserialize(deserializer).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // An empty span is the document's own: a top-level key is missing.
        let (path, kind) = if span.is_empty() {
            (String::new(), "table")
        } else {
            key_path_at(root.get_ref(), span.start).unwrap_or_default()
        };
        let (key, message) = describe(&path, kind, e.message());
        src.invalid(span, key, message)
    })
}

/// Turn serde's wording into the config's: "field" becomes "key", Rust type
/// names become TOML ones; a missing key is added to the path. `kind` is the
/// TOML type of the value at the error.
fn describe(path: &str, kind: &str, message: &str) -> (String, String) {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return (join(path, field), "required key is missing".to_string());
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once(", ").map_or("", |(_, e)| e);
        let key = if path.is_empty() {
            rest.split('`').next().unwrap_or_default().to_string()
        } else {
            path.to_string()
        };
        let message = if expected.is_empty() {
            "unknown key".to_string()
        } else {
            format!("unknown key ({expected})")
        };
        return (key, message);
    }
    let message = match message.rsplit_once(", expected ") {
        Some((found, expected)) => {
            let found = if kind == "datetime" {
                "invalid type: date-time".to_string()
            } else {
                found
                    .replace("invalid type: map", "invalid type: table")
                    .replace("invalid type: sequence", "invalid type: array")
            };
            let expected = match expected {
                "i64" => "an integer",
                "a sequence" => "an array",
                e if e.starts_with("struct ") => "a table",
                e => e,
            };
            format!("{found}, expected {expected}")
        }
        None => message.to_string(),
    };
    let key = if path.is_empty() { "(top level)" } else { path };
    (key.to_string(), message)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Deepest match so far: depth, dotted path, TOML type of the value.
type Found = Option<(usize, String, &'static str)>;

/// The dotted key path (array elements as `[i]`, from 1) and the TOML type
/// of the deepest key or value whose span holds `offset`. Table headers are
/// not nested inside their parents' spans, so the whole tree is searched.
fn key_path_at(root: &DeTable<'_>, offset: usize) -> Option<(String, &'static str)> {
    let mut best: Found = None;
    search_table(root, "", 0, offset, &mut best);
    best.map(|(_, path, kind)| (path, kind))
}

fn search_table(table: &DeTable<'_>, path: &str, depth: usize, offset: usize, best: &mut Found) {
    for (key, value) in table {
        let path = join(path, key.get_ref());
        let here = holds(&key.span(), offset) || holds(&value.span(), offset);
        search_value(value, &path, depth + 1, offset, here, best);
    }
}

fn search_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    depth: usize,
    offset: usize,
    here: bool,
    best: &mut Found,
) {
    if here && best.as_ref().is_none_or(|(d, _, _)| depth > *d) {
        *best = Some((depth, path.to_string(), value.get_ref().type_str()));
    }
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, path, depth, offset, best),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let path = format!("{path}[{}]", i + 1);
                let here = holds(&element.span(), offset);
                search_value(element, &path, depth + 1, offset, here, best);
            }
        }
        _ => {}
    }
}

fn holds(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset)
}
