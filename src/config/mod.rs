//! Configuration: the TOML file, parsed, validated and summarised.

mod model;

pub use model::*;
