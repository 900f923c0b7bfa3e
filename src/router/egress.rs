//! Egress: where a translated packet goes (the uplink and gateway, or the LAN
//! host), the MTU check and the fragmentation-needed answer, MSS clamping,
//! the rewrite, later fragments, and the ICMP errors the core answers itself.

use std::sync::atomic::Ordering;

use super::fragments::Fate;
use super::neighbours::{unpack_mac, NO_MAC};
use super::{Egress, FrameContext, Gso, Router};
use crate::config::MssClamp;
use crate::flow::{FlowKind, FlowSpec};
use crate::packet::wire::{field, TcpSegment};
use crate::packet::{
    self, icmp as icmp_packet, ChecksumDeltas, Fragmentation, Frame, Rewrite, Transport, L3_OFFSET,
};
use crate::verdict::{DropReason, KernelReason, Port, Verdict};

impl Router {
    /// The egress of a flow's packets from the inside host to its remote
    /// end: out its uplink, or for a hairpinned flow back out the LAN to the
    /// forward's target; the verdict when the next hop's MAC is unknown.
    pub(super) fn egress_to_remote(&self, spec: &FlowSpec) -> Result<Egress, Verdict> {
        let (port, src_mac, dst_mac) = match spec.kind {
            FlowKind::Hairpin { .. } => (
                Port::Lan,
                self.lan_mac,
                self.lan_host_mac(spec.remote.addr)?,
            ),
            FlowKind::Snat | FlowKind::Dnat => {
                let uplink = &self.uplinks[usize::from(spec.uplink)];
                let gateway = unpack_mac(uplink.gateway_mac.load(Ordering::Relaxed))
                    .ok_or(Verdict::Drop(DropReason::NeighbourUnresolved))?;
                (Port::Wan(spec.uplink), uplink.mac, gateway)
            }
        };
        Ok(Egress {
            port,
            rewrite: Rewrite {
                src_mac,
                dst_mac,
                src: spec.outside,
                dst: spec.remote,
            },
        })
    }

    /// The egress of a flow's replies: to the inside host, its MAC through
    /// the lane's cache when there is a lane; the verdict when the MAC is
    /// unknown.
    pub(super) fn egress_to_inside(
        &self,
        spec: &FlowSpec,
        lane: Option<&FrameContext>,
    ) -> Result<Egress, Verdict> {
        let dst_mac = match lane {
            Some(ctx) => self.inside_mac_cached(spec, ctx.neighbours)?,
            None => self.inside_mac(spec)?,
        };
        Ok(self.to_inside(spec, dst_mac))
    }

    fn to_inside(&self, spec: &FlowSpec, dst_mac: [u8; 6]) -> Egress {
        Egress {
            port: Port::Lan,
            rewrite: Rewrite {
                src_mac: self.lan_mac,
                dst_mac,
                src: spec.lan_peer(),
                dst: spec.inside,
            },
        }
    }

    /// Sends a reply of `spec` on to its inside host; while the host's MAC
    /// is unknown, translates it and keeps it until the MAC is known
    /// (`waiting.rs`), or when it cannot wait, the verdict.
    pub(super) fn emit_to_inside(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        spec: &FlowSpec,
        ctx: &FrameContext,
    ) -> Verdict {
        let unresolved = match self.egress_to_inside(spec, Some(ctx)) {
            Ok(egress) => return self.emit(buf, frame, egress, ctx),
            Err(verdict) => verdict,
        };
        // Only what goes out as one frame with its checksums complete waits.
        let fits = frame.end - L3_OFFSET <= usize::from(self.lan_mtu.get());
        let partial = ctx.meta.checksum_partial || packet::carries_partial_checksum(buf, frame);
        if ctx.meta.gso.is_some() || frame.fragmentation != Fragmentation::Whole || !fits || partial
        {
            return unresolved;
        }
        let addr = spec.inside.addr;
        match self.emit(buf, frame, self.to_inside(spec, NO_MAC), ctx) {
            Verdict::Forward {
                port: Port::Lan,
                len,
            } if self
                .waiting
                .push(std::net::IpAddr::from(addr), &buf[..len], ctx.meta.now) =>
            {
                // The MAC may have come meanwhile, its frames released
                // before this one waited: send them from here.
                for waited in self.release_waiting(std::net::Ipv4Addr::from(addr), ctx.meta.now) {
                    ctx.send_also(Port::Lan, &waited);
                }
                Verdict::Taken
            }
            Verdict::Forward { .. } => unresolved,
            other => other,
        }
    }

    /// Sends a packet from the inside host on to the flow's remote end
    /// (with the flow's checksum deltas for that direction when the caller
    /// has them: see [`Router::emit_with`]).
    pub(super) fn forward_to_remote(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        spec: &FlowSpec,
        deltas: Option<ChecksumDeltas>,
        ctx: &FrameContext,
    ) -> Verdict {
        match self.egress_to_remote(spec) {
            Ok(egress) => self.emit_with(buf, frame, egress, deltas, ctx),
            Err(verdict) => verdict,
        }
    }

    pub(super) fn mtu(&self, port: Port) -> u16 {
        match port {
            Port::Lan => self.lan_mtu.get(),
            Port::Wan(uplink) => self.uplinks[usize::from(uplink)].mtu.get(),
        }
    }

    /// The MSS a SYN between `ctx`'s ingress and `egress` is clamped to, if any.
    pub(super) fn mss_limit(&self, egress: Port, ctx: &FrameContext) -> Option<u16> {
        let lan_mtu = self.lan_mtu.get();
        match self.mss_clamp.get() {
            MssClamp::Off => None,
            MssClamp::Fixed(mss) => Some(mss),
            MssClamp::Auto => {
                let uplink_mtu = match (ctx.meta.port, egress) {
                    (Port::Wan(uplink), _) | (_, Port::Wan(uplink)) => self
                        .uplinks
                        .get(usize::from(uplink))
                        .map_or(lan_mtu, |u| u.mtu.get()),
                    (Port::Lan, Port::Lan) => lan_mtu,
                };
                Some(uplink_mtu.min(lan_mtu) - 40)
            }
        }
    }

    /// Sends a translated packet on its way: the egress MTU check (DF set:
    /// fragmentation-needed; clear: fragmented), MSS clamping, the rewrite,
    /// and for a first fragment a note for the later ones, and the later ones
    /// held until it came sent after it.
    pub(super) fn emit(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        egress: Egress,
        ctx: &FrameContext,
    ) -> Verdict {
        self.emit_with(buf, frame, egress, None, ctx)
    }

    /// [`Router::emit`], rewriting a whole TCP or UDP packet whose checksums
    /// are complete with `deltas` (its flow's [`ChecksumDeltas`] for the
    /// direction it travels: what `packet::apply` would compute again).
    pub(super) fn emit_with(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        egress: Egress,
        deltas: Option<ChecksumDeltas>,
        ctx: &FrameContext,
    ) -> Verdict {
        let mtu = self.mtu(egress.port);
        if let Some(gso) = ctx.meta.gso {
            return self.emit_whole(buf, frame, egress, ctx, gso, mtu);
        }
        if frame.dont_fragment && frame.end - L3_OFFSET > usize::from(mtu) {
            let error = icmp_packet::Error::FragmentationNeeded { mtu };
            return self
                .answer(buf, frame, error, ctx)
                .unwrap_or(Verdict::Kernel(KernelReason::FragNeeded));
        }
        let whole = frame.fragmentation == Fragmentation::Whole;
        let partial =
            whole && (ctx.meta.checksum_partial || packet::carries_partial_checksum(buf, frame));
        if frame.is_syn() {
            if let Some(mss) = self.mss_limit(egress.port, ctx) {
                packet::clamp_mss(buf, frame, mss, partial);
            }
        }
        let l4 = matches!(
            frame.transport,
            Transport::Tcp { .. } | Transport::Udp { .. }
        );
        match deltas {
            Some(deltas) if whole && !partial && l4 => {
                packet::apply_established(buf, frame, &egress.rewrite, deltas);
            }
            _ => packet::apply(buf, frame, &egress.rewrite, partial),
        }
        let verdict = self.fit(buf, frame.end, egress.port, ctx);
        if frame.fragmentation == Fragmentation::First {
            let released =
                self.fragments
                    .first(ctx.meta.port, frame, Fate::Translate(egress), ctx.meta.now);
            ctx.counters
                .count_drops(DropReason::FragmentTimeout, released.timed_out);
            for mut held in released.frames {
                self.send_held(&mut held, egress, ctx);
            }
        }
        verdict
    }

    /// The verdict for the rewritten packet `buf[..end]` going out `port`:
    /// whole when it fits the MTU, else fragmented (RFC 791), the first
    /// fragment in `buf` and the later ones queued after it.
    fn fit(&self, buf: &mut [u8], end: usize, port: Port, ctx: &FrameContext) -> Verdict {
        let mtu = self.mtu(port);
        if end - L3_OFFSET <= usize::from(mtu) {
            return Verdict::Forward { port, len: end };
        }
        let mut outbox = ctx.outbox.borrow_mut();
        let mut scratch = std::mem::take(&mut outbox.scratch);
        drop(outbox);
        let first = packet::fragment(buf, end, mtu, &mut scratch, |later| {
            ctx.send_also(port, later)
        });
        ctx.outbox.borrow_mut().scratch = scratch;
        match first {
            Some(len) => Verdict::Forward { port, len },
            None => Verdict::Drop(DropReason::TooBig),
        }
    }

    /// Sends a GSO super-frame on whole, its checksum left partial, when it
    /// is a whole TCP segment whose checksum starts at its TCP header and its
    /// segments fit `mtu`; otherwise leaves it unchanged for the I/O layer to
    /// cut ([`DropReason::GsoNotWhole`]).
    fn emit_whole(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        egress: Egress,
        ctx: &FrameContext,
        gso: Gso,
        mtu: u16,
    ) -> Verdict {
        let tcp = matches!(frame.transport, Transport::Tcp { .. })
            && frame.fragmentation == Fragmentation::Whole
            && usize::from(gso.csum_start) == frame.l4
            && usize::from(gso.csum_offset) == field::TCP_CHECKSUM.start;
        let headers = buf
            .get(frame.l4..frame.end)
            .and_then(TcpSegment::new_checked)
            .map_or(usize::MAX, |segment| {
                frame.l4 - L3_OFFSET + segment.header_len()
            });
        if !tcp || gso.size == 0 || headers.saturating_add(usize::from(gso.size)) > usize::from(mtu)
        {
            return Verdict::Drop(DropReason::GsoNotWhole);
        }
        if frame.is_syn() {
            if let Some(mss) = self.mss_limit(egress.port, ctx) {
                packet::clamp_mss(buf, frame, mss, true);
            }
        }
        packet::apply_partial(buf, frame, &egress.rewrite);
        Verdict::Forward {
            port: egress.port,
            len: frame.end,
        }
    }

    /// A later fragment: translated as its first fragment was, left to the
    /// kernel as its first fragment was, or held until that comes.
    pub(super) fn later_fragment(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        ctx: &FrameContext,
    ) -> Verdict {
        let fate = self.fragments.later(ctx.meta.port, frame, ctx.meta.now);
        match fate {
            // The kernel takes it whatever its TTL, as it took the first.
            Some(Fate::Kernel(reason)) => Verdict::Kernel(reason),
            _ if frame.ttl <= 1 => Verdict::Drop(DropReason::FragmentTtlExpired),
            Some(Fate::Translate(egress)) => self.translate_later(buf, frame, egress, ctx),
            None => self.hold(buf, frame, ctx),
        }
    }

    /// Holds a later fragment until its first fragment comes.
    fn hold(&self, buf: &[u8], frame: &Frame, ctx: &FrameContext) -> Verdict {
        let held = self
            .fragments
            .hold(ctx.meta.port, frame, &buf[..frame.end], ctx.meta.now);
        let (verdict, timed_out) = match held {
            Ok(timed_out) => {
                ctx.counters.held();
                (Verdict::Taken, timed_out)
            }
            Err(full) => (Verdict::Drop(DropReason::FragmentHoldFull), full.timed_out),
        };
        ctx.counters
            .count_drops(DropReason::FragmentTimeout, timed_out);
        verdict
    }

    /// A first fragment the core left to the kernel: its later fragments go
    /// there too, those held so far at once.
    pub(super) fn first_to_kernel(&self, frame: &Frame, reason: KernelReason, ctx: &FrameContext) {
        let released =
            self.fragments
                .first(ctx.meta.port, frame, Fate::Kernel(reason), ctx.meta.now);
        ctx.counters
            .count_drops(DropReason::FragmentTimeout, released.timed_out);
        for held in released.frames {
            ctx.to_kernel_also(reason, &held);
        }
    }

    /// Rewrites a later fragment as its first fragment was and fits it to the MTU.
    fn translate_later(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        egress: Egress,
        ctx: &FrameContext,
    ) -> Verdict {
        if frame.dont_fragment && frame.end - L3_OFFSET > usize::from(self.mtu(egress.port)) {
            return Verdict::Drop(DropReason::TooBig);
        }
        packet::apply(buf, frame, &egress.rewrite, false);
        self.fit(buf, frame.end, egress.port, ctx)
    }

    /// Sends a later fragment that was held until its first fragment came
    /// (and translated as `egress` says), after that one.
    fn send_held(&self, held: &mut [u8], egress: Egress, ctx: &FrameContext) {
        let verdict = match packet::parse(held) {
            Ok(frame) if frame.ttl > 1 => self.translate_later(held, &frame, egress, ctx),
            Ok(_) => Verdict::Drop(DropReason::FragmentTtlExpired),
            Err(_) => Verdict::Drop(DropReason::Malformed),
        };
        match verdict {
            Verdict::Forward { port, len } => ctx.send_also(port, &held[..len]),
            other => ctx.counters.count(ctx.meta.port, &other),
        }
    }

    /// A packet whose TTL would expire here: answered with time-exceeded
    /// from the router's address on the side it came in by; to the kernel
    /// when the core cannot (no `[lan] address` for a LAN host, or the frame
    /// may not be answered).
    pub(super) fn ttl_expired(&self, buf: &mut [u8], frame: &Frame, ctx: &FrameContext) -> Verdict {
        self.answer(buf, frame, icmp_packet::Error::TimeExceeded, ctx)
            .unwrap_or(Verdict::Kernel(KernelReason::TtlExpired))
    }

    /// Turns the frame into `error` about itself, back to its sender from the
    /// router's address on the port it came in by (made in the outbox when
    /// the frame is too short to hold it); None when that may not be done (an
    /// error about an error, a later fragment, no LAN address).
    pub(super) fn answer(
        &self,
        buf: &mut [u8],
        frame: &Frame,
        error: icmp_packet::Error,
        ctx: &FrameContext,
    ) -> Option<Verdict> {
        if !icmp_packet::may_answer(frame) {
            return None;
        }
        let from = match ctx.meta.port {
            Port::Lan => (self.lan_address()?, self.lan_mac),
            Port::Wan(uplink) => {
                let uplink = self.uplinks.get(usize::from(uplink))?;
                (uplink.address(), uplink.mac)
            }
        };
        if let Some(len) = icmp_packet::make_error(buf, frame, error, from) {
            ctx.counters.icmp_sent(error);
            return Some(Verdict::Forward {
                port: ctx.meta.port,
                len,
            });
        }
        // Too short to hold the error (a bare TCP segment, a small UDP
        // datagram): made in a bigger buffer and sent from the outbox.
        let mut bigger = buf[..frame.end].to_vec();
        bigger.resize(frame.end + icmp_packet::ERROR_HEADERS, 0);
        let len = icmp_packet::make_error(&mut bigger, frame, error, from)?;
        ctx.counters.icmp_sent(error);
        ctx.send_also(ctx.meta.port, &bigger[..len]);
        Some(Verdict::Taken)
    }
}
