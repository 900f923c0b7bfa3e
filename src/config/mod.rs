//! Configuration: the TOML file, parsed, validated and summarised.
//!
//! Loading runs in two layers: `raw` deserializes the text with serde
//! (unknown keys, missing keys and wrong types are refused there), then
//! `validate` checks every value and cross-reference and builds the
//! [`Config`] model. The first problem found is reported as a
//! [`ConfigError`] naming the file, line, column and dotted key.
//! `Display` on a [`Config`] is the one-screen summary `xwan check` prints.

mod error;
mod model;
mod raw;
mod reload;
mod summary;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::ConfigError;
pub use model::*;
pub use reload::{NotLive, Refusal, Reload, RunningConfig};
pub use validate::{
    DEFAULT_CHECKPOINT_S, DEFAULT_CONTROL_SOCKET, DEFAULT_HEALTH, DEFAULT_MAX_FLOWS_PER_FORWARD,
    DEFAULT_MAX_FLOWS_PER_HOST, DEFAULT_MAX_FLOWS_PER_SOURCE, DEFAULT_MTU, DEFAULT_NAT_PORTS,
    DEFAULT_STATE_FILE, MIN_NAT_PORTS,
};

impl Config {
    /// Parse and validate configuration text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = error::Source { file: path, text };
        let raw = raw::parse(src)?;
        validate::validate(src, raw)
    }

    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }
}
