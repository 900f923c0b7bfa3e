//! Sockets: creating, configuring and binding them; sending and receiving, one
//! buffer at a time or batched (`recvmmsg` / `sendmmsg`).

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{check, check_len, zeroed, Plain};

/// Opens a socket (`socket(2)`); the descriptor is closed when dropped.
pub fn socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers.
    let fd = check(unsafe { libc::socket(domain, kind, protocol) })?;
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a socket option may be set to: a plain C value, or a byte string
/// (`SO_BINDTODEVICE`).
///
/// # Safety
///
/// Implement only for types whose `size_of_val` bytes are all there is to the value:
/// the kernel reads that many bytes from its address.
pub unsafe trait OptionValue {}

// SAFETY: a Plain value is size_of::<T>() bytes of integers and pointers.
unsafe impl<T: Plain> OptionValue for T {}
// SAFETY: a byte slice is exactly its bytes.
unsafe impl OptionValue for [u8] {}

/// Sets a socket option.
pub fn setsockopt<T: OptionValue + ?Sized>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: value points at a live T of the size passed (T: OptionValue); the
    // kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of_val(value) as libc::socklen_t,
        )
    };
    check(rc).map(drop)
}

/// Reads a socket option into a plain C value.
pub fn getsockopt<T: Plain>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut value: T = zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: value is a live, writable T and len holds its size, so the kernel
    // writes at most size_of::<T>() bytes; any bytes are a valid T (T: Plain).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    check(rc)?;
    Ok(value)
}

/// A link-layer address for an AF_PACKET socket: interface, EtherType (host
/// order) and, for sending, the destination MAC.
fn link_address(
    ifindex: u32,
    protocol: u16,
    mac: Option<[u8; 6]>,
) -> io::Result<libc::sockaddr_ll> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
    let mut addr: libc::sockaddr_ll = zeroed();
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex;
    if let Some(mac) = mac {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    Ok(addr)
}

/// Binds an AF_PACKET socket to the interface `ifindex`, for frames of
/// EtherType `protocol` (host order; `ETH_P_ALL` for every frame).
pub fn bind_link(fd: &impl AsRawFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    let addr = link_address(ifindex, protocol, None)?;
    // SAFETY: addr is a valid sockaddr_ll of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(rc).map(drop)
}

/// Sends one whole frame on an AF_PACKET socket, out of interface `ifindex` to `mac`.
pub fn send_to_link(
    fd: &impl AsRawFd,
    frame: &[u8],
    ifindex: u32,
    mac: [u8; 6],
) -> io::Result<usize> {
    let addr = link_address(ifindex, 0, Some(mac))?;
    // SAFETY: frame is valid for its length and addr for its size during the
    // call; the kernel only reads them.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check_len(sent)
}

/// Sends `buf` on a connected (or netlink) socket.
pub fn send(fd: &impl AsRawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of its length for the call.
    check_len(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })
}

/// Receives into `buf`; the number of bytes received.
pub fn recv(fd: &impl AsRawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length for the call.
    check_len(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// Receives into `buf` on an AF_INET6 socket: the number of bytes received
/// and the address they came from (a raw IPv6 socket's packets carry no
/// IPv6 header).
pub fn recv_from6(
    fd: &impl AsRawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, std::net::Ipv6Addr)> {
    let mut from: libc::sockaddr_in6 = zeroed();
    let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: buf is valid for writes of its length, and from for writes of
    // len bytes (its size), for the call.
    let n = check_len(unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&mut from as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    })?;
    Ok((n, std::net::Ipv6Addr::from(from.sin6_addr.s6_addr)))
}

/// Receives up to `hdrs.len()` messages (`recvmmsg`); how many arrived.
///
/// # Safety
///
/// Every header's `msg_name`, `msg_iov` (and each iovec's base), and
/// `msg_control` must point at memory that is valid for writes of the lengths
/// the header gives, and stays so for the duration of the call.
pub(super) unsafe fn recvmmsg(
    fd: &impl AsRawFd,
    hdrs: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> io::Result<usize> {
    let count = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: hdrs is a valid array of at least `count` headers; what they point
    // at is the caller's promise.
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            count,
            flags,
            std::ptr::null_mut(),
        )
    };
    check(rc).map(|n| n as usize)
}

/// Sends up to `hdrs.len()` messages (`sendmmsg`), stopping at the first the
/// kernel refuses; how many were sent.
///
/// # Safety
///
/// Every header's `msg_iov` (and each iovec's base) must point at memory that is
/// valid for reads of the lengths the header gives, for the duration of the call.
pub(super) unsafe fn sendmmsg(
    fd: &impl AsRawFd,
    hdrs: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> io::Result<usize> {
    let count = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: hdrs is a valid array of at least `count` headers; what they point
    // at is the caller's promise.
    let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), hdrs.as_mut_ptr(), count, flags) };
    check(rc).map(|n| n as usize)
}

/// The IPv4 address in a `sockaddr`, if it holds one.
///
/// # Safety
///
/// `addr` must be null or point at a live `sockaddr` whose size fits its family
/// (a `sockaddr_in` when the family is `AF_INET`).
pub(super) unsafe fn ipv4_of(addr: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: addr is non-null and points at a live sockaddr (caller's promise).
    if i32::from(unsafe { (*addr).sa_family }) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family is AF_INET, so it is a sockaddr_in (caller's promise).
    let sin = unsafe { *addr.cast::<libc::sockaddr_in>() };
    Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}
