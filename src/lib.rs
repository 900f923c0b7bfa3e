//! xwan: a dual-WAN router whose forwarding path runs in userspace.
//!
//! The layers, in the order a packet passes through them:
//! - [`config`]: the TOML configuration, parsed and validated.
//! - [`packet`]: parsing a frame into a borrowed view and rewriting it (checksums included).
//! - [`flow`]: the flow table, the CONNMARK equivalent.
//! - [`policy`]: steering rules and balancing for new connections.
//! - [`health`]: uplink health from probes, with thresholds and overrides.
//! - [`nat`]: the SNAT port allocator.
//! - [`router`]: the pure core: bytes in, verdict out, time passed in.
//! - [`io`]: backends that move frames between interfaces and the core.
//! - [`control`]: the control plane around a running router.
//! - [`kernel_script`]: the same policy as a Linux kernel (iptables) recipe.
//! - [`cli`]: the `xwan` command.
//! - [`testing`]: frame builders and checkers for tests, fuzzing and benchmarks.

pub mod cli;
pub mod config;
pub mod control;
pub mod flow;
pub mod health;
pub mod io;
pub mod kernel_script;
pub mod nat;
pub mod packet;
pub mod policy;
pub mod router;
pub mod testing;
