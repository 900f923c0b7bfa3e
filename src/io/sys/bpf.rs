//! XDP programs through libbpf's C API: attaching by BPF link, querying and
//! detaching what an interface runs, naming a loaded program.
//!
//! libbpf returns a negative errno on failure; these wrappers turn it into an
//! `io::Error` with that errno.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libbpf_rs::libbpf_sys;

pub use libbpf_sys::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE, XDP_FLAGS_SKB_MODE};

/// A libbpf return value that is a negative errno on failure.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(rc)
    }
}

fn ifindex(ifindex: u32) -> io::Result<libc::c_int> {
    libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))
}

/// Attaches the XDP program `prog` to interface `ifindex` through a BPF link
/// (`BPF_LINK_CREATE`) in the mode `flags` gives; the program stays attached as
/// long as the returned descriptor is open. A `prog` that is no open BPF program
/// descriptor is refused by the kernel (`EBADF`, `EINVAL`).
pub fn attach_xdp_link(prog: RawFd, ifindex_: u32, flags: u32) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        flags,
        ..Default::default()
    };
    let ifindex = ifindex(ifindex_)?;
    // SAFETY: opts is a valid, sized options struct that outlives the call; the
    // descriptor is only a number to the kernel, which checks it.
    let fd =
        check(unsafe { libbpf_sys::bpf_link_create(prog, ifindex, libbpf_sys::BPF_XDP, &opts) })?;
    // SAFETY: bpf_link_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The ids of the XDP programs attached to an interface (0: none), by mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpPrograms {
    pub native: u32,
    pub generic: u32,
    pub offloaded: u32,
}

/// Which XDP programs interface `ifindex` runs.
pub fn query_xdp(ifindex_: u32) -> io::Result<XdpPrograms> {
    let mut query = libbpf_sys::bpf_xdp_query_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_query_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let ifindex = ifindex(ifindex_)?;
    // SAFETY: query is a valid, sized options struct the call fills in.
    check(unsafe { libbpf_sys::bpf_xdp_query(ifindex, 0, &mut query) })?;
    Ok(XdpPrograms {
        native: query.drv_prog_id,
        generic: query.skb_prog_id,
        offloaded: query.hw_prog_id,
    })
}

/// Detaches the XDP program attached (over netlink) to interface `ifindex` in
/// the mode `flags` gives.
pub fn detach_xdp(ifindex_: u32, flags: u32) -> io::Result<()> {
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_attach_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let ifindex = ifindex(ifindex_)?;
    // SAFETY: opts is a valid, sized options struct that outlives the call.
    check(unsafe { libbpf_sys::bpf_xdp_detach(ifindex, flags, &opts) }).map(drop)
}

/// The name of the loaded BPF program with this id, if it can be read.
pub fn program_name(prog_id: u32) -> Option<String> {
    // SAFETY: a syscall wrapper without pointers; a negative result is an error.
    let fd = check(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(prog_id) }).ok()?;
    // SAFETY: fd is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a writable bpf_prog_info of `len` bytes, for the call.
    check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })
        .ok()?;
    let bytes: Vec<u8> = info.name.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
}
