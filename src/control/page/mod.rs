//! The read-only status page: one HTML file with a small script, embedded in
//! the binary (`page.html`: no build step, nothing fetched from anywhere),
//! served with its JSON document from the metrics listener (`http.rs`).
//!
//! The document is `xwan status --json`'s, plus what the page draws that a
//! status does not hold: each uplink's last [`HISTORY_SAMPLES`] seconds (RTT,
//! loss, bits per second each way, up or down), the latest uplink events, and
//! the top flows by bytes when `[control] page_flows` allows them. The
//! history is kept in memory, bounded, fed once a second by `xwan run`.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::protocol::{Event, FlowReport, StatusReport};

/// The page itself.
pub const HTML: &str = include_str!("page.html");

/// Seconds of history kept per uplink: ten minutes at one sample a second.
pub const HISTORY_SAMPLES: usize = 600;

/// Uplink events kept for the page.
pub const EVENTS_KEPT: usize = 20;

/// Flows the page lists, the busiest first.
pub const TOP_FLOWS: usize = 10;

/// One uplink's history, oldest first: one entry per sample, all of the
/// same length.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UplinkHistory {
    /// Seconds since xwan started.
    pub t_s: VecDeque<u64>,
    /// Mean probe round trip; None while nothing answered.
    pub rtt_ms: VecDeque<Option<f64>>,
    /// Probes lost, 0 to 1.
    pub loss: VecDeque<f64>,
    /// Bits per second out (towards the uplink) and in, over the second
    /// before the sample.
    pub bps_out: VecDeque<f64>,
    pub bps_in: VecDeque<f64>,
    pub up: VecDeque<bool>,
}

impl UplinkHistory {
    fn push(&mut self, t_s: u64, rtt_ms: Option<f64>, loss: f64, bps: (f64, f64), up: bool) {
        if self.t_s.len() == HISTORY_SAMPLES {
            self.t_s.pop_front();
            self.rtt_ms.pop_front();
            self.loss.pop_front();
            self.bps_out.pop_front();
            self.bps_in.pop_front();
            self.up.pop_front();
        }
        self.t_s.push_back(t_s);
        self.rtt_ms.push_back(rtt_ms);
        self.loss.push_back(loss);
        self.bps_out.push_back(bps.0);
        self.bps_in.push_back(bps.1);
        self.up.push_back(up);
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.t_s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_s.is_empty()
    }
}

/// What the page shows beyond a status: bounded in samples, events and flows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// By uplink name (an uplink a reload removed keeps its past until it
    /// ages out).
    pub uplinks: BTreeMap<String, UplinkHistory>,
    /// The latest uplink events, oldest first.
    pub events: VecDeque<Event>,
    /// The busiest flows by bytes both ways (empty unless allowed).
    pub top_flows: Vec<FlowReport>,
    /// Per uplink, its bytes out and in at the last sample, and when (ms of
    /// uptime), for the rates.
    #[serde(skip)]
    last: BTreeMap<String, (u64, u64, u64)>,
}

impl History {
    /// Records one sample of `status` taken at `uptime_ms`; an uplink's
    /// rates are over the time since its previous sample (0 for its first).
    pub fn record(&mut self, status: &StatusReport, uptime_ms: u64) {
        for uplink in &status.uplinks {
            let bps = match self.last.get(&uplink.name) {
                Some(&(out, inn, at)) if uptime_ms > at => {
                    let seconds = (uptime_ms - at) as f64 / 1000.0;
                    let rate =
                        |now: u64, then: u64| now.saturating_sub(then) as f64 * 8.0 / seconds;
                    (rate(uplink.bytes_out, out), rate(uplink.bytes_in, inn))
                }
                _ => (0.0, 0.0),
            };
            self.last.insert(
                uplink.name.clone(),
                (uplink.bytes_out, uplink.bytes_in, uptime_ms),
            );
            self.uplinks.entry(uplink.name.clone()).or_default().push(
                uptime_ms / 1000,
                uplink.probe_rtt_ms,
                uplink.probe_loss,
                bps,
                uplink.up,
            );
        }
        // An uplink gone from the status ages out with its last sample.
        let oldest = self
            .uplinks
            .values()
            .filter_map(|h| h.t_s.back().copied())
            .max()
            .unwrap_or(0)
            .saturating_sub(HISTORY_SAMPLES as u64);
        self.uplinks
            .retain(|_, h| h.t_s.back().is_some_and(|&t| t > oldest));
    }

    pub fn record_event(&mut self, event: Event) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Keeps the [`TOP_FLOWS`] busiest of `flows` (bytes both ways).
    pub fn set_top_flows(&mut self, mut flows: Vec<FlowReport>) {
        flows.sort_by_key(|f| std::cmp::Reverse(f.bytes_out + f.bytes_in));
        flows.truncate(TOP_FLOWS);
        self.top_flows = flows;
    }
}

/// The page's JSON: the status, flattened as `xwan status --json` prints it,
/// and the history beside it.
#[derive(Debug, Serialize)]
pub struct PageDocument<'a> {
    #[serde(flatten)]
    pub status: &'a StatusReport,
    pub history: &'a History,
}

#[cfg(test)]
mod tests;
