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

/// What the kernel says of XDP on interface `ifindex`: its programs and its
/// driver's XDP features (netdev netlink, `NETDEV_XDP_ACT_*`).
fn xdp_query(ifindex_: u32) -> io::Result<libbpf_sys::bpf_xdp_query_opts> {
    let mut query = libbpf_sys::bpf_xdp_query_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_query_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let ifindex = ifindex(ifindex_)?;
    // SAFETY: query is a valid, sized options struct the call fills in.
    check(unsafe { libbpf_sys::bpf_xdp_query(ifindex, 0, &mut query) })?;
    Ok(query)
}

/// `NETDEV_XDP_ACT_NDO_XMIT`: the driver transmits XDP frames redirected to it.
const XDP_ACT_NDO_XMIT: u64 = 1 << 2;
/// `NETDEV_XDP_ACT_XSK_ZEROCOPY`: AF_XDP sockets bind in zero-copy mode.
pub const XDP_ACT_XSK_ZEROCOPY: u64 = 1 << 3;

/// The XDP features interface `ifindex`'s driver reports (netdev netlink,
/// `NETDEV_XDP_ACT_*`; 0 where the kernel has no such query, before 6.3).
pub fn xdp_feature_flags(ifindex_: u32) -> io::Result<u64> {
    Ok(xdp_query(ifindex_)?.feature_flags)
}

/// Whether the kernel attaches TC programs through TCX links (Linux 6.6):
/// a `BPF_PROG_QUERY` of `BPF_TCX_INGRESS` on interface `ifindex` answers
/// (EINVAL before 6.6).
pub fn tcx_supported(ifindex_: u32) -> io::Result<bool> {
    let mut opts = libbpf_sys::bpf_prog_query_opts {
        sz: size_of::<libbpf_sys::bpf_prog_query_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let ifindex = ifindex(ifindex_)?;
    // SAFETY: opts is a valid, sized options struct the call fills in; its
    // id arrays are null with a count of 0 (all zero by default), so the
    // kernel writes only the count.
    let rc =
        unsafe { libbpf_sys::bpf_prog_query_opts(ifindex, libbpf_sys::BPF_TCX_INGRESS, &mut opts) };
    match check(rc) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether interface `ifindex` transmits XDP frames redirected to it (its
/// driver's `NETDEV_XDP_ACT_NDO_XMIT`: a veth has it while its peer runs an
/// XDP program or has GRO on).
pub fn accepts_xdp_frames(ifindex_: u32) -> io::Result<bool> {
    Ok(xdp_query(ifindex_)?.feature_flags & XDP_ACT_NDO_XMIT != 0)
}

/// Which XDP programs interface `ifindex` runs.
pub fn query_xdp(ifindex_: u32) -> io::Result<XdpPrograms> {
    let query = xdp_query(ifindex_)?;
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

/// Attaches the TC program `prog` (of type `BPF_PROG_TYPE_SCHED_CLS`, attach type
/// `BPF_TCX_INGRESS`) at the ingress of interface `ifindex` through a TCX BPF link,
/// after any program already there; it stays attached as long as the returned
/// descriptor is open, so a crashed xwan leaves nothing attached.
pub fn attach_tcx_ingress(prog: RawFd, ifindex_: u32) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let ifindex = ifindex(ifindex_)?;
    // SAFETY: opts is a valid, sized options struct that outlives the call; the
    // descriptor is only a number to the kernel, which checks it.
    let fd = check(unsafe {
        libbpf_sys::bpf_link_create(prog, ifindex, libbpf_sys::BPF_TCX_INGRESS, &opts)
    })?;
    // SAFETY: bpf_link_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// xwan's cls_bpf filter at a clsact ingress hook (kernels without TCX):
/// its handle and priority, fixed so a start replaces what a crashed xwan
/// left behind.
const CLSACT_HANDLE: u32 = 0x7877;
const CLSACT_PRIORITY: u32 = 0x7877;

fn clsact_hook(ifindex: libc::c_int) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: size_of::<libbpf_sys::bpf_tc_hook>() as libbpf_sys::size_t,
        ifindex,
        attach_point: libbpf_sys::BPF_TC_INGRESS,
        ..Default::default()
    }
}

/// Attaches the TC program `prog` at the clsact ingress hook of interface
/// `ifindex` as a direct-action cls_bpf filter over netlink (the way before
/// TCX, Linux 6.6), creating the clsact qdisc if the interface has none and
/// replacing xwan's own filter if one is there. Unlike a TCX link it stays
/// until [`detach_clsact_ingress`] removes it.
pub fn attach_clsact_ingress(prog: RawFd, ifindex_: u32) -> io::Result<()> {
    let mut hook = clsact_hook(ifindex(ifindex_)?);
    // SAFETY: hook is a valid, sized struct that outlives the call.
    match check(unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) }) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let mut opts = libbpf_sys::bpf_tc_opts {
        sz: size_of::<libbpf_sys::bpf_tc_opts>() as libbpf_sys::size_t,
        prog_fd: prog,
        flags: libbpf_sys::BPF_TC_F_REPLACE,
        handle: CLSACT_HANDLE,
        priority: CLSACT_PRIORITY,
        ..Default::default()
    };
    // SAFETY: hook and opts are valid, sized structs that outlive the call;
    // the descriptor is only a number to the kernel, which checks it.
    check(unsafe { libbpf_sys::bpf_tc_attach(&hook, &mut opts) }).map(drop)
}

/// The id of the program in xwan's clsact filter slot on interface
/// `ifindex` (handle and priority of [`attach_clsact_ingress`]), if any.
pub fn clsact_ingress_program(ifindex_: u32) -> io::Result<Option<u32>> {
    let hook = clsact_hook(ifindex(ifindex_)?);
    let mut opts = libbpf_sys::bpf_tc_opts {
        sz: size_of::<libbpf_sys::bpf_tc_opts>() as libbpf_sys::size_t,
        handle: CLSACT_HANDLE,
        priority: CLSACT_PRIORITY,
        ..Default::default()
    };
    // SAFETY: hook and opts are valid, sized structs that outlive the call;
    // the call fills in opts.
    match check(unsafe { libbpf_sys::bpf_tc_query(&hook, &mut opts) }) {
        Ok(_) => Ok(Some(opts.prog_id)),
        // No clsact qdisc, or no filter in the slot.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the filter [`attach_clsact_ingress`] put on interface `ifindex`
/// (the clsact qdisc stays: other filters may use it).
pub fn detach_clsact_ingress(ifindex_: u32) -> io::Result<()> {
    let hook = clsact_hook(ifindex(ifindex_)?);
    let opts = libbpf_sys::bpf_tc_opts {
        sz: size_of::<libbpf_sys::bpf_tc_opts>() as libbpf_sys::size_t,
        handle: CLSACT_HANDLE,
        priority: CLSACT_PRIORITY,
        ..Default::default()
    };
    // SAFETY: hook and opts are valid, sized structs that outlive the call.
    check(unsafe { libbpf_sys::bpf_tc_detach(&hook, &opts) }).map(drop)
}

/// Runs the XDP program `prog` once on `frame` (`BPF_PROG_TEST_RUN`) as if
/// it arrived on queue 0 of interface `ingress_ifindex`, which must exist in
/// this network namespace: its verdict and the frame as it left it.
#[cfg(test)]
pub fn test_run_xdp(prog: RawFd, frame: &[u8], ingress_ifindex: u32) -> io::Result<(u32, Vec<u8>)> {
    // struct xdp_md: data, data_end, data_meta (zero here), ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    test_run(prog, frame, &ctx, &mut [])
}

/// One `BPF_PROG_TEST_RUN` of `prog` on `frame` with the context `ctx_in`,
/// the context the kernel writes back in `ctx_out` (none when empty): the
/// program's return value and the frame as it left it.
#[cfg(test)]
fn test_run(
    prog: RawFd,
    frame: &[u8],
    ctx_in: &[u8],
    ctx_out: &mut [u8],
) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        data_out: out.as_mut_ptr().cast(),
        data_size_out: out.len() as u32,
        ctx_in: ctx_in.as_ptr().cast(),
        ctx_size_in: ctx_in.len() as u32,
        ctx_out: if ctx_out.is_empty() {
            std::ptr::null_mut()
        } else {
            ctx_out.as_mut_ptr().cast()
        },
        ctx_size_out: ctx_out.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: every pointer in opts points at a live buffer of the size given
    // beside it (ctx_out null when it has none), for the duration of the
    // call; the kernel writes at most data_size_out bytes to data_out and
    // ctx_size_out to ctx_out.
    check(unsafe { libbpf_sys::bpf_prog_test_run_opts(prog, &mut opts) })?;
    out.truncate(opts.data_size_out as usize);
    Ok((opts.retval, out))
}

/// What one `BPF_PROG_TEST_RUN` of a program on an skb gave.
#[cfg(test)]
#[derive(Debug)]
pub struct SkbRun {
    pub retval: u32,
    /// The frame as it left the program.
    pub frame: Vec<u8>,
    /// `cb[0]` of its `__sk_buff` afterwards.
    pub cb0: u32,
}

/// Runs the skb program `prog` (TC, or a socket filter) once on `frame`
/// (`BPF_PROG_TEST_RUN`) as if it arrived on interface `ingress_ifindex` with
/// `cb0` in `cb[0]` of its `__sk_buff`. The kernel pulls the Ethernet header
/// before it runs a socket filter, where AF_PACKET pushes it back: give such
/// a program its frame behind 14 more bytes.
#[cfg(test)]
pub fn test_run_skb(
    prog: RawFd,
    frame: &[u8],
    ingress_ifindex: u32,
    cb0: u32,
) -> io::Result<SkbRun> {
    // struct __sk_buff up to cb[]: every field zero but ingress_ifindex
    // (offset 36) and cb[0] (offset 48), among the few the kernel accepts.
    let mut ctx = [0u8; 68];
    ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx[48..52].copy_from_slice(&cb0.to_ne_bytes());
    // The kernel writes the whole struct __sk_buff (192 bytes since Linux
    // 5.16) back, or nothing (ENOSPC); room for a bigger one.
    let mut ctx_out = [0u8; 256];
    let (retval, frame) = test_run(prog, frame, &ctx, &mut ctx_out)?;
    let mut cb0 = [0u8; 4];
    cb0.copy_from_slice(&ctx_out[48..52]);
    Ok(SkbRun {
        retval,
        frame,
        cb0: u32::from_ne_bytes(cb0),
    })
}

/// Every entry of the BPF hash map `map` (a per-CPU one: `values_per_key`
/// values of `value_size` bytes each, one per possible CPU, each padded to 8
/// bytes as the kernel lays them out), read in batches
/// (`BPF_MAP_LOOKUP_BATCH`) of `batch` entries: their keys and values, in one
/// buffer each, `key_size` and `values_per_key * round_up(value_size, 8)`
/// bytes per entry. Entries added or removed meanwhile may be missed or seen.
pub fn lookup_batch(
    map: RawFd,
    key_size: usize,
    value_size: usize,
    values_per_key: usize,
    batch: u32,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let stride = value_size.div_ceil(8) * 8 * values_per_key;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_sys::bpf_map_batch_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    let mut keys = vec![0u8; key_size * batch as usize];
    let mut values = vec![0u8; stride * batch as usize];
    // The position token of a hash map (a bucket index) is 4 bytes; 8 leave room.
    let mut token = [0u8; 8];
    let mut first = true;
    loop {
        let mut count = batch;
        let mut next = [0u8; 8];
        let in_batch = if first {
            std::ptr::null_mut()
        } else {
            token.as_mut_ptr().cast()
        };
        // SAFETY: keys and values hold `batch` entries of key_size and stride
        // bytes, next and token 8 bytes, all live and writable for the call;
        // the kernel writes at most `count` (= batch) entries.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                map,
                in_batch,
                next.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let done = rc == -libc::ENOENT;
        if rc < 0 && !done {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        let count = (count as usize).min(batch as usize);
        all_keys.extend_from_slice(&keys[..count * key_size]);
        all_values.extend_from_slice(&values[..count * stride]);
        if done {
            return Ok((all_keys, all_values));
        }
        token = next;
        first = false;
    }
}
