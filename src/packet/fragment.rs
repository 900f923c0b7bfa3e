//! Fragmenting an IPv4 packet for an egress MTU (RFC 791 section 3.2), as the
//! kernel's `ip_fragment` does: every fragment but the last carries a multiple
//! of 8 data bytes and MF; offsets add to the packet's own (a fragment is
//! fragmented again the same way); the first fragment keeps the whole header,
//! the later ones keep only the options whose copied flag is set, the others
//! overwritten with no-operation options so the header length stays (Linux's
//! `ip_options_fragment`); each header gets its own checksum.

use super::checksum;
use super::parse::L3_OFFSET;
use super::wire::field;

/// IP header flags and fragment offset: the more-fragments bit.
const MORE_FRAGMENTS: u16 = 0x2000;
/// The fragment offset, in 8-byte units.
const OFFSET_MASK: u16 = 0x1fff;
const FLAGS_OFFSET: core::ops::Range<usize> = 6..8;
const TOTAL_LENGTH: core::ops::Range<usize> = 2..4;
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
/// The copied flag of an option type: the option goes into every fragment.
const OPTION_COPIED: u8 = 0x80;

/// Splits the IPv4 packet in `buf[..end]` (after an untagged Ethernet header)
/// into fragments of at most `mtu` bytes of IP. The first stays in `buf`: its
/// frame length is returned. Each later one is written into `scratch` as a
/// whole frame (the same Ethernet header) and handed to `later`, in order.
/// None, with `buf` untouched, when the MTU cannot hold the header and 8
/// bytes of data, or the header is malformed.
pub fn fragment(
    buf: &mut [u8],
    end: usize,
    mtu: u16,
    scratch: &mut Vec<u8>,
    mut later: impl FnMut(&[u8]),
) -> Option<usize> {
    let ip = buf.get(L3_OFFSET..end)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < field::IP_MIN_LEN || ip.len() < ihl {
        return None;
    }
    let chunk = (usize::from(mtu).checked_sub(ihl)? / 8) * 8;
    if chunk == 0 {
        return None;
    }
    let data_len = ip.len() - ihl;
    let flags = u16::from_be_bytes([ip[FLAGS_OFFSET.start], ip[FLAGS_OFFSET.start + 1]]);
    let more_after = flags & MORE_FRAGMENTS != 0;
    let base = flags & OFFSET_MASK;

    let mut header = ip[..ihl].to_vec();
    copied_options_only(&mut header[field::IP_MIN_LEN..]);
    let mut start = chunk;
    while start < data_len {
        let len = chunk.min(data_len - start);
        let more = more_after || start + len < data_len;
        scratch.clear();
        scratch.extend_from_slice(&buf[..L3_OFFSET]);
        scratch.extend_from_slice(&header);
        let from = L3_OFFSET + ihl + start;
        scratch.extend_from_slice(&buf[from..from + len]);
        let offset = base + u16::try_from(start / 8).ok()?;
        set_header(&mut scratch[L3_OFFSET..], ihl, len, offset, more);
        later(scratch);
        start += len;
    }
    let first = chunk.min(data_len);
    set_header(
        &mut buf[L3_OFFSET..],
        ihl,
        first,
        base,
        more_after || first < data_len,
    );
    Some(L3_OFFSET + ihl + first)
}

/// Writes a fragment's total length, flags (DF clear) and offset, and its
/// header checksum.
fn set_header(ip: &mut [u8], ihl: usize, data: usize, offset: u16, more: bool) {
    let total = u16::try_from(ihl + data).unwrap_or(u16::MAX);
    ip[TOTAL_LENGTH].copy_from_slice(&total.to_be_bytes());
    let flags = offset | if more { MORE_FRAGMENTS } else { 0 };
    ip[FLAGS_OFFSET].copy_from_slice(&flags.to_be_bytes());
    ip[field::IP_CHECKSUM].fill(0);
    let sum = checksum::checksum(&ip[..ihl]);
    ip[field::IP_CHECKSUM].copy_from_slice(&sum.to_be_bytes());
}

/// Overwrites the options not to be copied into later fragments with
/// no-operation options; a malformed option list is overwritten from there on.
fn copied_options_only(options: &mut [u8]) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            OPTION_END => return,
            OPTION_NOP => i += 1,
            kind => {
                let len = options.get(i + 1).map_or(0, |l| usize::from(*l));
                if len < 2 || i + len > options.len() {
                    options[i..].fill(OPTION_NOP);
                    return;
                }
                if kind & OPTION_COPIED == 0 {
                    options[i..i + len].fill(OPTION_NOP);
                }
                i += len;
            }
        }
    }
}

#[cfg(test)]
mod tests;
