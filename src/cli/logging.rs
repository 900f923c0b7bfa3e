//! The log of `xwan run`: one line per event on stderr, for a terminal or for
//! the journal.
//!
//! - Colour only when stderr is a terminal (never ANSI escapes in the journal).
//! - `-v` sets the level (info, debug with `-v`, trace with `-vv`); `RUST_LOG`
//!   directives (tracing-subscriber's `EnvFilter` syntax, e.g.
//!   `RUST_LOG=xwan::io::health=debug`) refine it.
//! - Under systemd (`JOURNAL_STREAM` set) no timestamp: the journal keeps its own.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The level `-v` gives, before `RUST_LOG` directives.
pub fn level(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The filter from `-v` and the value of `RUST_LOG` (bad directives are
/// skipped, and said so on stderr).
pub fn filter(verbose: u8, rust_log: Option<&str>) -> EnvFilter {
    let builder = EnvFilter::builder().with_default_directive(level(verbose).into());
    match rust_log {
        Some(directives) => builder.parse_lossy(directives),
        None => builder.parse_lossy(""),
    }
}

/// Installs the subscriber; one set earlier (by a test) stays in place.
pub fn init(verbose: u8) {
    let stderr = std::io::stderr();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter(verbose, std::env::var("RUST_LOG").ok().as_deref()))
        .with_ansi(stderr.is_terminal())
        .with_target(false);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_sets_the_default_level() {
        assert_eq!(filter(0, None).max_level_hint(), Some(LevelFilter::INFO));
        assert_eq!(filter(1, None).max_level_hint(), Some(LevelFilter::DEBUG));
        assert_eq!(filter(5, None).max_level_hint(), Some(LevelFilter::TRACE));
    }

    #[test]
    fn rust_log_refines_it() {
        let f = filter(0, Some("xwan::io::health=trace"));
        assert_eq!(f.max_level_hint(), Some(LevelFilter::TRACE));
        assert!(f.to_string().contains("xwan::io::health=trace"), "{f}");
        assert_eq!(
            filter(2, Some("warn")).max_level_hint(),
            Some(LevelFilter::WARN)
        );
    }
}
