//! xwan: a dual-WAN router whose forwarding path runs in userspace.
//!
//! The modules, in the order a frame passes through them. The I/O layer
//! receives it:
//! - [`io`]: the backends that move frames between the interfaces and the
//!   core, and `xwan run` around them. The only place with `unsafe` and libc.
//!
//! Then the core, which does no I/O, reads no clock (time is passed in) and
//! forbids `unsafe` (each of its modules says `#![forbid(unsafe_code)]`):
//! - [`packet`]: frame formats: parsing a frame into a plain view, typed
//!   views with named fields (`packet::wire`), rewriting it in place,
//!   checksums.
//! - [`router`]: one frame in, one verdict out: by direction (LAN ingress,
//!   WAN ingress, hairpin), the flow lifecycle, neighbours, egress.
//! - [`flow`]: the flow table, the CONNMARK equivalent.
//! - [`policy`]: steering rules and balancing for new connections.
//! - [`nat`]: the SNAT port allocator, and IPv6 prefix translation.
//! - [`verdict`]: what the core decides (the port a frame leaves by, or why
//!   the kernel gets it, or why it is dropped); the bottom of the core.
//!
//! Around the core, above the configuration they all read:
//! - [`health`]: uplink health from probes, with thresholds and overrides.
//! - [`control`]: the control plane around a running router.
//! - [`kernel_script`]: the same policy as a Linux kernel (iptables) recipe.
//! - [`cli`]: the `xwan` command.
//! - [`config`]: the TOML configuration, parsed and validated.
//! - `testing` (feature `testing`, on for tests, benchmarks and fuzzing):
//!   frame builders, checkers and the fuzz driver.
//!
//! A module imports only from modules below it: `verdict` and `config` at
//! the bottom, then `packet`, `nat`, `flow`, `policy`, `router`, `health`,
//! `control`, `kernel_script`, `io`, `cli` (`scripts/check-layers`).

#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod control;
pub mod flow;
pub mod health;
#[allow(unsafe_code)]
pub mod io;
pub mod kernel_script;
pub mod nat;
pub mod packet;
pub mod policy;
pub mod router;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verdict;

/// The version `xwan --version` and `xwan status` report.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("XWAN_GIT_REV"), ")");
