//! The documentation against the product: README.md and docs/.
//!
//! - `config_reference_lists_every_key_of_the_parser`: docs/configuration.md
//!   (also `man 5 xwan.toml`) documents exactly the keys the parser accepts.
//!   The parser's keys are read from the parser itself: a key it does not know
//!   is refused with the list of the ones it does ("unknown key (expected one
//!   of ...)"), so the test puts an unknown key into every table and reads the
//!   list back.
//! - `every_config_in_the_docs_passes_xwan_check`: every ```toml block of
//!   README.md and docs/*.md, the shipped dist/xwan.toml and
//!   testbed/configs/example.toml pass `xwan check`. A block that is only a
//!   fragment (one `[[wan]]`, say) is marked by the line
//!   `<!-- check: fragment ... -->` right before its fence; it is merged into
//!   [`BASE`] (tables key by key; `[[wan]]` entries by `name`, replacing one of
//!   the same name, other arrays of tables appended) and the result is checked.
//! - `links_resolve`: every relative link of README.md, docs/*.md and
//!   bench/results/history.md names a file that exists, and every `#anchor` a
//!   heading of its target (GitHub's slugs); no page names a file outside the
//!   repository, and the README stays short.
//! - `troubleshooting_matches_the_source`: every heading of
//!   docs/troubleshooting.md is a message the source prints, and every
//!   warning and error message of the source (`warn!`, `error!`,
//!   `#[error(...)]`) is a heading there or is listed in [`NOT_ACTIONABLE`].
//! - `every_kernel_feature_has_its_row`: docs/kernel.md's feature table
//!   lists exactly the features src/io/features.rs probes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use xwan::config::Config;
// The base that fragments are merged into: the tests' two uplinks, named as
// in the docs' examples (LAN 192.168.50.0/24 on lan0, isp1 on wan1, isp2 on
// wan2).
use xwan::testing::TWO_UPLINKS as BASE;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// README.md and every docs/*.md, as (path from the root, text).
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_string(), read("README.md"))];
    let mut docs: Vec<_> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for path in docs {
        let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
        let text = read(&name);
        pages.push((name, text));
    }
    pages
}

// ---------------------------------------------------------------------------
// The configuration reference against the parser.

/// Every table of the file beyond [`BASE`]'s, each with a header line to put
/// an unknown key under (`[wan.health]` belongs to the last `[[wan]]`).
const MORE_TABLES: &str = r#"
[wan.health]
down_after = 2

[balance]
mode = "nth"

[[rule]]
action = "isp1"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.50.10:80"

[nat]
mss_clamp = "off"

[health]
interval_ms = 500

[timeouts]
udp_s = 300

[limits]
max_flows = 1000

[control]
checkpoint_s = 30

[local]
routes = true

[[local.rule]]
uplink = "isp2"

[dataplane]
offload = "auto"
"#;

/// The keys the parser accepts in `table` ("" for the top level, "wan",
/// "wan.health", "local.rule", ...), from its refusal of an unknown key.
fn parser_keys(table: &str) -> BTreeSet<String> {
    let unknown = "zz_not_a_key = 1\n";
    let every_table = format!("{BASE}{MORE_TABLES}");
    let text = if table.is_empty() {
        format!("{unknown}{every_table}")
    } else {
        let header = if ["wan", "rule", "forward", "local.rule"].contains(&table) {
            format!("\n[[{table}]]\n")
        } else {
            format!("\n[{table}]\n")
        };
        let at = every_table
            .find(&header)
            .unwrap_or_else(|| panic!("no {header:?} in the file"))
            + header.len();
        format!("{}{unknown}{}", &every_table[..at], &every_table[at..])
    };
    let error = match Config::from_toml(&text, Path::new("keys.toml")) {
        Ok(_) => panic!("the parser took an unknown key in [{table}]"),
        Err(e) => e.to_string(),
    };
    let expected = error
        .split_once("unknown key (")
        .unwrap_or_else(|| panic!("[{table}]: not an unknown-key error: {error}"))
        .1;
    let keys: BTreeSet<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "[{table}]: no keys listed in {error}");
    keys
}

/// The tables of docs/configuration.md (`## [lan]`, `## [[wan]]`, ...) and
/// the keys under each (`### key`), with each key's text.
fn documented_keys(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut table: Option<String> = None;
    let mut key: Option<String> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            key = None;
            table = heading
                .strip_prefix("`[")
                .and_then(|h| h.strip_suffix("]`"))
                .map(|h| h.trim_matches(['[', ']']).to_string());
            if let Some(t) = &table {
                tables.entry(t.clone()).or_default();
            }
        } else if let Some(heading) = line.strip_prefix("### ") {
            key = None;
            if let Some(t) = &table {
                let name = heading.trim_matches('`').to_string();
                assert!(
                    heading.starts_with('`') && !name.contains(' '),
                    "[{t}]: key heading {heading:?} is not a key in backticks"
                );
                tables
                    .get_mut(t)
                    .unwrap()
                    .insert(name.clone(), String::new());
                key = Some(name);
            }
        } else if let (Some(t), Some(k)) = (&table, &key) {
            let body = tables.get_mut(t).unwrap().get_mut(k).unwrap();
            body.push_str(line);
            body.push('\n');
        }
    }
    tables
}

#[test]
fn config_reference_lists_every_key_of_the_parser() {
    let doc = documented_keys(&read("docs/configuration.md"));
    // The top level: every table, and nested tables under their parent.
    let top: BTreeSet<String> = doc.keys().filter(|t| !t.contains('.')).cloned().collect();
    assert_eq!(
        parser_keys(""),
        top,
        "the parser's tables (left) against the `## [table]` sections of docs/configuration.md (right)"
    );
    for (table, keys) in &doc {
        let documented: BTreeSet<String> = keys
            .keys()
            .cloned()
            .chain(
                doc.keys()
                    .filter_map(|t| t.strip_prefix(&format!("{table}.")))
                    .map(str::to_string),
            )
            .collect();
        if table == "wan.health" {
            // "Any key of [health]": the same keys, documented once.
            assert!(keys.is_empty(), "[wan.health] should refer to [health]");
            assert_eq!(parser_keys("wan.health"), parser_keys("health"));
            continue;
        }
        assert_eq!(
            parser_keys(table),
            documented,
            "[{table}]: the parser's keys (left) against docs/configuration.md's (right)"
        );
        for (key, body) in keys {
            assert!(
                body.contains("*Reload:*"),
                "[{table}] {key}: says nothing about reload"
            );
            assert!(
                body.contains("*Default:*") || body.contains("Required."),
                "[{table}] {key}: gives no default (nor says it is required)"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Every configuration in the docs passes `xwan check`.

/// The ```toml blocks of a page: (first line, text, marked as a fragment).
fn toml_blocks(text: &str) -> Vec<(usize, String, bool)> {
    let mut blocks = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start() == "```toml" {
            let fragment = i > 0 && lines[i - 1].starts_with("<!-- check: fragment");
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_start() != "```" {
                end += 1;
            }
            blocks.push((start + 1, lines[start..end].join("\n") + "\n", fragment));
            i = end;
        }
        i += 1;
    }
    blocks
}

/// `fragment` merged into `base`: tables key by key, `wan` entries by name,
/// other arrays of tables appended.
fn merge(base: &mut toml::Table, fragment: toml::Table) {
    for (key, value) in fragment {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => merge(mine, theirs),
            (Some(toml::Value::Array(mine)), toml::Value::Array(theirs)) => {
                for entry in theirs {
                    let name = entry.get("name").cloned();
                    match mine
                        .iter_mut()
                        .find(|m| name.is_some() && m.get("name") == name.as_ref())
                    {
                        Some(same) => *same = entry,
                        None => mine.push(entry),
                    }
                }
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn xwan_check(text: &str, what: &str) {
    let dir = std::env::temp_dir().join(format!("xwan-docs-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("check.toml");
    fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xwan"))
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .expect("run xwan check");
    assert!(
        out.status.success(),
        "{what}: xwan check failed:\n{}{}\n--- the file checked:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{what}: xwan check did not say OK"
    );
}

#[test]
fn every_config_in_the_docs_passes_xwan_check() {
    let mut checked = BTreeMap::new();
    for (page, text) in pages() {
        for (line, block, fragment) in toml_blocks(&text) {
            let what = format!("{page}:{line}");
            let text = if fragment {
                let mut base: toml::Table = BASE.parse().unwrap();
                let part: toml::Table = block
                    .parse()
                    .unwrap_or_else(|e| panic!("{what}: not TOML: {e}"));
                merge(&mut base, part);
                toml::to_string(&base).unwrap()
            } else {
                block
            };
            xwan_check(&text, &what);
            *checked.entry(page.clone()).or_insert(0) += 1;
        }
    }
    for file in ["dist/xwan.toml", "testbed/configs/example.toml"] {
        xwan_check(&read(file), file);
    }
    // The pages that must carry a configuration do.
    for page in ["README.md", "docs/configuration.md"] {
        assert!(
            checked.get(page).is_some_and(|&n| n > 0),
            "{page}: no ```toml block"
        );
    }
}

// ---------------------------------------------------------------------------
// Links.

/// The text with fenced code blocks and inline code spans blanked out.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor for a heading: lowercase, letters, digits, spaces,
/// hyphens and underscores kept, spaces turned into hyphens.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let Some(heading) = line.trim_start_matches('#').strip_prefix(' ') else {
            continue;
        };
        if !line.starts_with('#') {
            continue;
        }
        let base = slug(heading);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of `[text](target)` and `![alt](target)` in prose.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    out
}

#[test]
fn links_resolve() {
    let mut pages = pages();
    pages.push((
        "bench/results/history.md".into(),
        read("bench/results/history.md"),
    ));
    let mut broken = Vec::new();
    let mut count = 0;
    for (page, text) in &pages {
        let dir = Path::new(page).parent().unwrap();
        for target in link_targets(text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            count += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                PathBuf::from(page)
            } else {
                dir.join(file)
            };
            let full = root().join(&path);
            if !full.exists() {
                broken.push(format!("{page}: {target}: no such file"));
                continue;
            }
            // Inside the repository: no `..` past its root.
            let canonical = full.canonicalize().unwrap();
            if !canonical.starts_with(root().canonicalize().unwrap()) {
                broken.push(format!("{page}: {target}: outside the repository"));
            }
            if let Some(anchor) = anchor {
                let text = fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{page}: {target}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        count > 30,
        "only {count} relative links found: the parser is broken"
    );
    for (page, text) in &pages {
        assert!(
            !text.contains("shared/reference"),
            "{page} names a file outside the product"
        );
    }
    let readme = read("README.md").lines().count();
    assert!(
        readme <= 260,
        "README.md has {readme} lines (about 250 at most)"
    );
}

// ---------------------------------------------------------------------------
// The error catalogue against the source.

/// Messages of the source that are not in docs/troubleshooting.md, and why.
/// A message whose text outside its `{}` placeholders has no word of three
/// letters or more (`"{0}"`, `"{what}: {source}"`, the configuration's
/// `FILE:LINE:COLUMN: KEY: MESSAGE`) only relays another one and is left out
/// by itself.
const NOT_ACTIONABLE: &[(&str, &str)] = &[
    (
        "{TEST_ABSENT_ENV}: no feature {name:?}",
        "a test switch, documented in docs/kernel.md",
    ),
    (
        "the data path setup has no LAN interface",
        "internal: validation guarantees a LAN",
    ),
    (
        "the packet data path needs at least one interface",
        "internal: validation guarantees interfaces",
    ),
    (
        "interfaces {first} and {second} are both {port:?}",
        "internal: validation refuses an interface used twice",
    ),
    (
        "invalid data path setup: {0}",
        "internal: a bug in the runtime's set-up",
    ),
    (
        "the LAN prefix {inside} and the uplink prefix {outside} differ in length; prefix translation needs prefixes of the same length",
        "internal: the core derives each outside prefix at the LAN prefix's length",
    ),
    (
        "the prefix {prefix} is /0; prefix translation needs a prefix of /1 or longer",
        "internal: validation refuses a /0 LAN prefix or delegated prefix",
    ),
    (
        "the prefix {prefix} is longer than /64; checksum-neutral NPTv6 (RFC 6296) changes a word of the interface ID, so it needs a prefix of /64 or shorter",
        "internal: validation refuses nat6 = \"npt\" with a LAN prefix longer than /64, naming prefix6",
    ),
    (
        "the LAN prefix {inside} is shorter than the delegated prefix {delegated}, so it does not fit inside it",
        "internal: validation refuses a LAN prefix bigger than its uplink's prefix6, naming the key",
    ),
];

/// Rust source with string continuations (`\` newline indentation) joined.
fn joined(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'\n') {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The production source files of src/ (no tests, no `testing`), joined,
/// with any `#[cfg(test)] mod tests { ... }` at their end cut off.
fn production_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("testing") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let mut text = joined(&fs::read_to_string(&path).unwrap());
            if let Some(at) = text.find("#[cfg(test)]\nmod tests {") {
                text.truncate(at);
            }
            let name = path.strip_prefix(root()).unwrap().display().to_string();
            (name, text)
        })
        .collect()
}

/// The message literal of each `warn!(`, `error!(` and `#[error(` in `text`.
fn messages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pattern in ["warn!(", "error!(", "#[error("] {
        let mut from = 0;
        while let Some(at) = text[from..].find(pattern) {
            let start = from + at + pattern.len();
            from = start;
            // `my_warn!(` or `#[error(transparent)]`: not a message.
            let before = text[..start - pattern.len()].chars().next_back();
            if pattern != "#[error(" && before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let Some(quote) = text[start..].find('"') else {
                continue;
            };
            let lead = &text[start..start + quote];
            if pattern == "#[error(" && !lead.trim().is_empty() {
                continue;
            }
            if lead.contains(';') {
                continue;
            }
            let body = &text[start + quote + 1..];
            let mut literal = String::new();
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => literal.push(chars.next().unwrap_or('\\')),
                    '"' => break,
                    c => literal.push(c),
                }
            }
            out.push(literal);
        }
    }
    out
}

/// `{...}` placeholders as `…`, as the troubleshooting page writes them.
fn placeholders_as_ellipsis(message: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push('…');
                }
                depth += 1;
            }
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn relays_only(message: &str) -> bool {
    let outside: String = placeholders_as_ellipsis(message);
    !outside
        .split(|c: char| !c.is_alphabetic())
        .any(|word| word.chars().count() >= 3)
}

/// The headings of docs/troubleshooting.md: the code span of each `### `.
fn catalogue() -> Vec<String> {
    read("docs/troubleshooting.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| {
            let h = h.trim();
            if let Some(inner) = h.strip_prefix("`` ").and_then(|h| h.strip_suffix(" ``")) {
                inner.to_string()
            } else {
                h.trim_matches('`').to_string()
            }
        })
        .collect()
}

#[test]
fn troubleshooting_matches_the_source() {
    let sources = production_sources();
    let all: String = sources.iter().map(|(_, t)| t.as_str()).collect();
    let catalogue = catalogue();
    assert!(
        catalogue.len() > 50,
        "the catalogue has {} entries",
        catalogue.len()
    );

    // Each heading is printed by xwan: every fixed part of it is in the source.
    for heading in &catalogue {
        for part in heading.split('…').map(str::trim).filter(|p| p.len() > 2) {
            assert!(
                all.contains(part),
                "docs/troubleshooting.md: {heading:?}: {part:?} is not in the source (renamed?)"
            );
        }
    }

    // Each message of the source is in the catalogue, or named as not actionable.
    let listed: BTreeSet<&str> = catalogue.iter().map(String::as_str).collect();
    let exempt: BTreeSet<&str> = NOT_ACTIONABLE.iter().map(|(m, _)| *m).collect();
    let mut missing = Vec::new();
    let mut found = 0;
    for (file, text) in &sources {
        for message in messages(text) {
            found += 1;
            if relays_only(&message) || exempt.contains(message.as_str()) {
                continue;
            }
            let shown = placeholders_as_ellipsis(&message);
            if !listed.contains(shown.as_str()) {
                missing.push(format!("{file}: {shown}"));
            }
        }
    }
    assert!(
        found > 60,
        "only {found} messages found in src/: the scan is broken"
    );
    assert!(
        missing.is_empty(),
        "messages of the source missing from docs/troubleshooting.md (add them with their fix, \
         or to NOT_ACTIONABLE with a reason):\n{}",
        missing.join("\n")
    );
    for (message, _) in NOT_ACTIONABLE {
        assert!(
            all.contains(message),
            "NOT_ACTIONABLE names {message:?}, which the source no longer prints"
        );
    }
}

// ---------------------------------------------------------------------------
// The kernel features.

/// Every feature `xwan check --kernel` reports (the names in
/// src/io/features.rs, `Feature::X => "name"`) has its row in docs/kernel.md,
/// and the table lists no other.
#[test]
fn every_kernel_feature_has_its_row() {
    let source = read("src/io/features.rs");
    let names: BTreeSet<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Feature::"))
        .filter_map(|l| l.split_once(" => \"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.strip_suffix("\","))
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(str::to_string)
        .collect();
    assert!(
        names.len() >= 10,
        "only {} features found: {names:?}",
        names.len()
    );
    let rows: BTreeSet<String> = read("docs/kernel.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(name, _)| name.to_string()))
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    assert_eq!(
        names, rows,
        "the features of src/io/features.rs (left) against the rows of docs/kernel.md's table (right)"
    );
}
