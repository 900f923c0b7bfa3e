//! The router core.

mod verdict;

pub use verdict::*;
