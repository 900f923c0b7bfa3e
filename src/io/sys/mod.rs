//! Every call the I/O layer makes into C: libc system calls, libbpf's C API, and
//! libnftables (loaded at run time).
//!
//! Each function here is a thin, checked wrapper: it takes Rust types (slices,
//! borrowed descriptors), returns `io::Result` with the kernel's errno, and owns
//! any descriptor it creates. A wrapper is a safe `fn` when its arguments alone
//! make the call sound; where the caller must promise something the types cannot
//! express (raw pointers in `mmsghdr`s), it is an `unsafe fn` whose `# Safety`
//! section says what. Every `unsafe` block in this module carries a `// SAFETY:`
//! comment naming the contract it relies on.
//!
//! By topic:
//! - [`socket`]: creating, configuring, binding sockets; send and receive;
//! - [`mmsg`]: batched send and receive with the buffers and headers they need;
//! - [`link`]: interface ioctls (index, MAC, MTU, flags, ethtool channels) and addresses;
//! - [`poll`]: waiting for descriptors;
//! - [`sched`]: CPU affinity;
//! - [`netns`]: entering a network namespace;
//! - [`bpf`]: attaching, querying and detaching XDP programs;
//! - [`tap`]: TAP devices, through which frames are handed to the kernel;
//! - [`nftables`]: a libnftables context (its netlink socket owns xwan's table)
//!   running nft scripts.

pub mod bpf;
pub mod link;
pub mod mmsg;
#[cfg(test)]
pub mod netns;
pub mod nftables;
pub mod poll;
pub mod sched;
pub mod socket;
pub mod tap;

use std::io;

/// Plain C data: every bit pattern, all-zero included, is a valid value, and the
/// type holds no references (raw pointers are allowed: a null or garbage pointer
/// is a valid *value*, only dereferencing it is not).
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types (or primitives) made of integers, arrays
/// of them and raw pointers: the kernel fills such values byte by byte.
pub unsafe trait Plain: Copy {}

// SAFETY: integers: every bit pattern is valid.
unsafe impl Plain for libc::c_int {}
// SAFETY: integers: every bit pattern is valid.
unsafe impl Plain for u32 {}
// SAFETY: two C longs.
unsafe impl Plain for libc::timeval {}
// SAFETY: two u32 counters.
unsafe impl Plain for libc::tpacket_stats {}
// SAFETY: one u32 bit set.
unsafe impl Plain for libc::xdp_options {}
// SAFETY: integers and a byte array.
unsafe impl Plain for libc::sockaddr_ll {}
// SAFETY: integers and a byte array (the address).
unsafe impl Plain for libc::sockaddr_in6 {}
// SAFETY: an array of integers (`struct icmp6_filter`).
unsafe impl Plain for [u32; 8] {}
// SAFETY: integers and raw pointers (null when zero).
unsafe impl Plain for libc::msghdr {}
// SAFETY: an array of words.
unsafe impl Plain for libc::cpu_set_t {}
// SAFETY: a byte array and a union of integers, a sockaddr and a raw pointer.
unsafe impl Plain for libc::ifreq {}

/// The all-zero value of a plain C type.
pub fn zeroed<T: Plain>() -> T {
    // SAFETY: T: Plain, so all-zero bytes are a valid T.
    unsafe { std::mem::zeroed() }
}

/// A libc return value that is negative on error (errno set) as a `Result`.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A byte count returned by libc (negative on error, errno set) as a `Result`.
fn check_len(rc: isize) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}
