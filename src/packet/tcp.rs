//! TCP options: clamping the maximum segment size a SYN announces.

use super::checksum::update_words;
use super::parse::{Parsed, Transport};
use super::rewrite::{read16, write16};
use super::wire::{field, TcpSegment};

const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_MSS: u8 = 2;

/// Lowers the MSS option of the TCP segment in `buf` (which `frame` was parsed
/// from) to `mss` when it announces more, updating the TCP checksum
/// incrementally unless `checksum_partial` (then the caller computes it in
/// full afterwards). Returns the MSS the segment announced before, when it
/// was lowered. Malformed option lists are left alone.
pub fn clamp_mss(
    buf: &mut [u8],
    frame: &impl Parsed,
    mss: u16,
    checksum_partial: bool,
) -> Option<u16> {
    if !matches!(frame.transport(), Transport::Tcp { .. }) {
        return None;
    }
    let l4 = frame.l4();
    let tcp = TcpSegment::new_checked(buf.get(l4..frame.end())?)?;
    let value = l4 + field::TCP_OPTIONS + mss_option(tcp.options())?;
    let announced = read16(buf, value);
    if announced <= mss {
        return None;
    }
    // The checksum sums 16-bit words from the (even) start of the header: the
    // value may straddle two of them.
    let first = value - (value - l4) % 2;
    let last = value + 2 + (value - l4) % 2;
    let mut before = [0u8; 4];
    let span = last - first;
    before[..span].copy_from_slice(&buf[first..last]);
    write16(buf, value, mss);
    if !checksum_partial {
        let at = l4 + field::TCP_CHECKSUM.start;
        let check = update_words(read16(buf, at), &before[..span], &buf[first..last]);
        write16(buf, at, check);
    }
    Some(announced)
}

/// The TCP option walker: where the value of the MSS option (kind 2, length
/// 4) sits in a TCP header's option bytes (after its 20 fixed bytes, up to
/// its data offset), as an offset into `options`. None when there is none,
/// or the list is malformed before it (a length under 2 or past the end).
/// Serves MSS clamping and the test helpers.
pub fn mss_option(options: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            OPTION_END => return None,
            OPTION_NOP => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1)?);
                if len < 2 || at + len > options.len() {
                    return None;
                }
                if kind == OPTION_MSS && len == 4 {
                    return Some(at + 2);
                }
                at += len;
            }
        }
    }
    None
}
