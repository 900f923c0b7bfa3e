//! `man 5 xwan.toml`, made from docs/configuration.md: the configuration
//! reference is written once, as Markdown, and this turns it into roff.
//!
//! Only the Markdown that page uses is understood: `#` headings (the first
//! is the title), paragraphs, `-` lists (continuation lines indented),
//! fenced code blocks, `|` tables (set as they are written), HTML comments
//! (dropped), and inline `code`, `**bold**`, `*italic*` and `[text](link)`
//! (the text kept). Anything else is set as text, so nothing is lost; the
//! tests check that no Markdown is left in the page.

/// The page for `markdown` (docs/configuration.md), as roff for `man`.
pub fn render(markdown: &str, version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH XWAN.TOML 5 \"\" \"xwan {}\" \"File formats\"\n.nh\n",
        escape(version)
    ));
    out.push_str(".SH NAME\nxwan.toml \\- the configuration file of xwan\n");
    let mut lines = markdown.lines().peekable();
    let mut in_comment = false;
    let mut titled = false;
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |out: &mut String, paragraph: &mut Vec<String>| {
        if !paragraph.is_empty() {
            out.push_str(".PP\n");
            out.push_str(&inline(&paragraph.join(" ")));
            out.push('\n');
            paragraph.clear();
        }
    };
    while let Some(line) = lines.next() {
        if in_comment {
            in_comment = !line.contains("-->");
            continue;
        }
        if line.trim_start().starts_with("<!--") {
            flush(&mut out, &mut paragraph);
            in_comment = !line.contains("-->");
            continue;
        }
        if line.trim_start().starts_with("```") {
            flush(&mut out, &mut paragraph);
            out.push_str(".PP\n.RS 4\n.nf\n");
            for code in lines.by_ref() {
                if code.trim_start().starts_with("```") {
                    break;
                }
                out.push_str(&verbatim(code));
                out.push('\n');
            }
            out.push_str(".fi\n.RE\n");
            continue;
        }
        if let Some(title) = line.strip_prefix("# ") {
            flush(&mut out, &mut paragraph);
            if !titled {
                // The title is the NAME section's; the text after it describes.
                titled = true;
                out.push_str(".SH DESCRIPTION\n");
            } else {
                out.push_str(&format!(".SH {}\n", heading_text(title, true)));
            }
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            flush(&mut out, &mut paragraph);
            out.push_str(&format!(".SH {}\n", heading_text(heading, true)));
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            flush(&mut out, &mut paragraph);
            out.push_str(&format!(".SS {}\n", plain(heading)));
            continue;
        }
        if line.starts_with('|') {
            flush(&mut out, &mut paragraph);
            out.push_str(".PP\n.nf\n");
            let mut row = Some(line);
            while let Some(r) = row {
                if !r.starts_with("| ---") {
                    out.push_str(&inline(r));
                    out.push('\n');
                }
                row = lines.next_if(|l| l.starts_with('|'));
            }
            out.push_str(".fi\n");
            continue;
        }
        if let Some(item) = line.strip_prefix("- ") {
            flush(&mut out, &mut paragraph);
            let mut text = item.to_string();
            while let Some(more) = lines.next_if(|l| l.starts_with("  ") && !l.trim().is_empty()) {
                text.push(' ');
                text.push_str(more.trim());
            }
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&inline(&text));
            out.push('\n');
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut out, &mut paragraph);
            continue;
        }
        paragraph.push(line.trim().to_string());
    }
    flush(&mut out, &mut paragraph);
    out
}

/// Text safe for roff: backslashes and hyphens escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// A line of a code block: escaped, and kept from being read as a request.
fn verbatim(line: &str) -> String {
    let escaped = escape(line);
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// A heading's text without its Markdown, escaped (upper case for `.SH`).
fn plain(heading: &str) -> String {
    heading_text(heading, false)
}

fn heading_text(heading: &str, upper: bool) -> String {
    let text = strip_links(heading).replace(['`', '*'], "");
    let text = if upper { text.to_uppercase() } else { text };
    escape(&text).replace('"', "\\(dq")
}

/// `[text](target)` as `text`.
fn strip_links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `text` in `font`, then back to roman.
fn span(out: &mut String, font: &str, text: impl Iterator<Item = char>) {
    out.push_str(font);
    out.extend(text);
    out.push_str("\\fR");
}

/// Inline Markdown as roff fonts: `code` and **bold** bold, *italic* italic.
fn inline(text: &str) -> String {
    let text = escape(&strip_links(text));
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => span(&mut out, "\\fB", chars.by_ref().take_while(|&c| c != '`')),
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut bold = String::new();
                while let Some(c) = chars.next() {
                    if c == '*' && chars.peek() == Some(&'*') {
                        chars.next();
                        break;
                    }
                    bold.push(c);
                }
                span(&mut out, "\\fB", bold.chars());
            }
            '*' => span(&mut out, "\\fI", chars.by_ref().take_while(|&c| c != '*')),
            c => out.push(c),
        }
    }
    // A line that begins with a dot or a quote would be a request.
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn reference() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_key_of_the_reference_is_a_subsection_of_the_page() {
        let markdown = reference();
        let page = render(&markdown, "0.1.0");
        assert!(page.starts_with(".TH XWAN.TOML 5 "), "{}", &page[..40]);
        let subsections: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".SS "))
            .collect();
        let keys: Vec<String> = markdown
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(plain)
            .collect();
        assert!(keys.len() > 50, "only {} keys in the reference", keys.len());
        assert_eq!(subsections, keys);
        for section in [
            "NAME",
            "DESCRIPTION",
            "[LAN]",
            "[[WAN]]",
            "[DATAPLANE]",
            "SEE ALSO",
        ] {
            assert!(
                page.lines().any(|l| l == format!(".SH {section}")),
                "no section {section}"
            );
        }
    }

    #[test]
    fn no_markdown_is_left_in_the_page() {
        let page = render(&reference(), "0.1.0");
        for (i, line) in page.lines().enumerate() {
            for markdown in ["```", "](", "**", "<!--", "-->"] {
                assert!(
                    !line.contains(markdown),
                    "line {}: {markdown:?} in {line:?}",
                    i + 1
                );
            }
            assert!(
                !line.starts_with('#'),
                "line {}: a heading left: {line:?}",
                i + 1
            );
            assert!(
                !line.contains('`'),
                "line {}: a backtick left: {line:?}",
                i + 1
            );
        }
    }

    #[test]
    fn inline_markdown_becomes_fonts_and_links_their_text() {
        assert_eq!(
            inline("a `key`, **bold**, *Default:* see [the guide](operating.md#x)."),
            "a \\fBkey\\fR, \\fBbold\\fR, \\fIDefault:\\fR see the guide."
        );
        assert_eq!(inline(".starts with a dot"), "\\&.starts with a dot");
        assert_eq!(verbatim("a-b \\ c"), "a\\-b \\e c");
    }

    /// groff, where it is installed (scripts/test installs it with man-db),
    /// sets the page without a warning and shows the keys.
    #[test]
    fn groff_sets_the_page_without_warnings() {
        let Ok(probe) = Command::new("groff").arg("--version").output() else {
            eprintln!("groff not installed: skipped");
            return;
        };
        assert!(probe.status.success());
        let dir = std::env::temp_dir().join(format!("xtask-man5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("xwan.toml.5");
        std::fs::write(&file, render(&reference(), "0.1.0")).unwrap();
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-K", "utf8"])
            .arg(&file)
            .output()
            .expect("run groff");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "groff: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for expected in ["sticky_timeout_s", "max_flows_per_host", "xwan.toml"] {
            assert!(
                text.replace(['\u{2010}', '\u{2212}'], "-")
                    .contains(expected)
                    || strip_overstrike(&text).contains(expected),
                "{expected} not in the page as set"
            );
        }
    }

    /// groff's tty output marks bold as `c\bc`; the plain text.
    fn strip_overstrike(text: &str) -> String {
        let mut out: Vec<char> = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if chars.peek() == Some(&'\u{8}') {
                chars.next();
                continue;
            }
            out.push(c);
        }
        out.into_iter().collect()
    }
}
