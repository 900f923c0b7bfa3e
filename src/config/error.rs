//! The one error type of configuration loading, with the file, line, column
//! and key of the problem in its message.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration file was refused.
///
/// The `Display` form is one line, compiler style:
/// `xwan.toml:14:10: rule[2].action: "isp3" names no uplink (uplinks: isp1, isp2)`.
/// Key paths are dotted; indices count from 1, the way a reader counts the
/// `[[wan]]` or `[[rule]]` sections (and list elements) in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid TOML, but not a valid xwan configuration.
    #[error("{}:{line}:{column}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// Dotted key path, e.g. `wan[1].address`.
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line of the problem, where it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The 1-based column (in characters) of the problem, where it has one.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { column, .. } | ConfigError::Invalid { column, .. } => {
                Some(*column)
            }
        }
    }

    /// The dotted key path of the problem, where it has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { source, .. } => format!("cannot read: {source}"),
            ConfigError::Syntax { message, .. } | ConfigError::Invalid { message, .. } => {
                message.clone()
            }
        }
    }
}

/// Where in the text a problem is: builds [`ConfigError`]s from byte spans.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line and character column of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    pub fn syntax(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_column(span.map_or(0, |s| s.start));
        ConfigError::Syntax {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    pub fn invalid(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }
}
