//! The live signal for the bedside page and other clients: the serial reader's 500 Hz
//! twelve-lead samples cut into frames of [`FRAME_SAMPLES`] (50 ms), in microvolts as integers,
//! on a broadcast channel; `GET /v1/stream/signal` serves them as server-sent events at most
//! [`MAX_EVENTS_PER_S`] a second (frames that came faster, as from a simulator above real time,
//! are merged while contiguous). Every frame has a sequence number, so a client sees frames it
//! missed; `gap_before` marks a break in the signal itself (a lost sample, a disconnect).

use eknet_shared::Lead;
use eknet_shared::layout::LEAD_ROWS;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Samples in a frame: 50 ms at 500 Hz (20 frames a second at real time).
pub const FRAME_SAMPLES: usize = 25;
/// Events a second a signal client gets at most.
pub const MAX_EVENTS_PER_S: u32 = 20;
/// Frames the channel holds for a slow client before it lags.
pub const CHANNEL_FRAMES: usize = 512;

/// One frame of signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalFrame {
    /// Sequence number of the first frame merged into this one (consecutive frames differ by 1).
    pub seq: u64,
    /// Sequence number of the last frame merged into this one.
    pub seq_last: u64,
    /// The daemon's stream index of the first sample (as in results' `window.start_index`).
    pub start_index: u64,
    /// The device's own index of the first sample (eknet frame devices), as in results.
    pub device_start_index: Option<u64>,
    /// Samples per second.
    pub rate_hz: u32,
    /// Microvolts per unit of `leads` (1: the values are microvolts).
    pub uv_per_unit: u32,
    /// Electrodes off at any sample of the frame (bit 0 RA, 1 LA, 2 LL, 3..8 V1..V6).
    pub lead_off: u16,
    /// The signal broke before this frame (lost samples, a disconnect, a restart).
    pub gap_before: bool,
    /// Lead names, the order of `leads`.
    pub lead_names: [&'static str; LEAD_ROWS],
    /// One array of integers per lead, all the same length.
    pub leads: Vec<Vec<i32>>,
}

impl SignalFrame {
    /// Samples in the frame.
    pub fn samples(&self) -> usize {
        self.leads.first().map_or(0, Vec::len)
    }

    /// Appends `next` when it continues this frame without a break; false otherwise.
    pub fn merge(&mut self, next: &SignalFrame) -> bool {
        if next.gap_before
            || next.seq != self.seq_last + 1
            || next.start_index != self.start_index + self.samples() as u64
        {
            return false;
        }
        for (a, b) in self.leads.iter_mut().zip(&next.leads) {
            a.extend_from_slice(b);
        }
        self.seq_last = next.seq_last;
        self.lead_off |= next.lead_off;
        true
    }
}

/// Cuts the reader's samples into frames and publishes them (only while someone listens).
#[derive(Debug)]
pub struct SignalTap {
    tx: broadcast::Sender<Arc<SignalFrame>>,
    pending: Option<SignalFrame>,
    seq: u64,
    gap: bool,
}

/// Lead names in [`Lead::ALL`] order.
fn names() -> [&'static str; LEAD_ROWS] {
    std::array::from_fn(|i| Lead::ALL[i].name())
}

impl SignalTap {
    /// A tap publishing on `tx`.
    pub fn new(tx: broadcast::Sender<Arc<SignalFrame>>) -> SignalTap {
        SignalTap {
            tx,
            pending: None,
            seq: 0,
            gap: true,
        }
    }

    /// A new channel for a tap.
    pub fn channel() -> broadcast::Sender<Arc<SignalFrame>> {
        broadcast::channel(CHANNEL_FRAMES).0
    }

    /// One 500 Hz sample (mV) at stream `index`.
    pub fn push(
        &mut self,
        index: u64,
        device_index: Option<u64>,
        sample: &[f32; LEAD_ROWS],
        lead_off: u16,
    ) {
        if self.tx.receiver_count() == 0 {
            self.pending = None;
            self.gap = true;
            return;
        }
        let f = self.pending.get_or_insert_with(|| SignalFrame {
            seq: 0,
            seq_last: 0,
            start_index: index,
            device_start_index: device_index,
            rate_hz: 500,
            uv_per_unit: 1,
            lead_off: 0,
            gap_before: false,
            lead_names: names(),
            leads: (0..LEAD_ROWS)
                .map(|_| Vec::with_capacity(FRAME_SAMPLES))
                .collect(),
        });
        for (l, v) in f.leads.iter_mut().zip(sample) {
            l.push((v * 1000.0).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32);
        }
        f.lead_off |= lead_off;
        if f.samples() >= FRAME_SAMPLES {
            self.flush();
        }
    }

    /// The signal broke: what is pending goes out, and the next frame says so.
    pub fn gap(&mut self) {
        self.flush();
        self.gap = true;
    }

    fn flush(&mut self) {
        if let Some(mut f) = self.pending.take() {
            self.seq += 1;
            f.seq = self.seq;
            f.seq_last = self.seq;
            f.gap_before = std::mem::take(&mut self.gap);
            let _ = self.tx.send(Arc::new(f));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_are_cut_numbered_and_marked_at_gaps() {
        let tx = SignalTap::channel();
        let mut rx = tx.subscribe();
        let mut tap = SignalTap::new(tx);
        let s =
            |k: usize| std::array::from_fn::<f32, LEAD_ROWS, _>(|l| (k * 100 + l) as f32 / 1000.0);
        for k in 0..60 {
            tap.push(
                k as u64,
                Some(1000 + k as u64),
                &s(k),
                if k == 30 { 8 } else { 0 },
            );
        }
        tap.gap();
        for k in 100..125 {
            tap.push(k as u64, None, &s(k), 0);
        }
        let a = rx.try_recv().unwrap();
        let b = rx.try_recv().unwrap();
        let c = rx.try_recv().unwrap(); // the 10 samples before the gap
        let d = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        assert_eq!((a.seq, b.seq, c.seq, d.seq), (1, 2, 3, 4));
        assert_eq!(
            (a.samples(), b.samples(), c.samples(), d.samples()),
            (25, 25, 10, 25)
        );
        assert!(a.gap_before && !b.gap_before && !c.gap_before && d.gap_before);
        assert_eq!(b.start_index, 25);
        assert_eq!(b.device_start_index, Some(1025));
        assert_eq!(b.lead_off, 8, "V1 off at sample 30");
        assert_eq!(a.lead_off, 0);
        // Microvolts: sample 26, lead V6 (row 11) = 2.611 mV.
        assert_eq!(b.leads[11][1], 2611);
        assert_eq!(b.lead_names[1], "II");
        // Contiguous frames merge; a frame after a gap does not.
        let mut m = (*a).clone();
        assert!(m.merge(&b));
        assert_eq!((m.seq, m.seq_last, m.samples()), (1, 2, 50));
        assert_eq!(m.lead_off, 8);
        assert!(m.merge(&c));
        assert!(!m.merge(&d));
    }

    #[test]
    fn nothing_is_built_while_nobody_listens() {
        let tx = SignalTap::channel();
        let mut tap = SignalTap::new(tx.clone());
        for k in 0..100 {
            tap.push(k, None, &[0.0; LEAD_ROWS], 0);
        }
        assert!(tap.pending.is_none());
        let mut rx = tx.subscribe();
        for k in 100..125 {
            tap.push(k, None, &[0.0; LEAD_ROWS], 0);
        }
        let f = rx.try_recv().unwrap();
        assert!(
            f.gap_before,
            "a listener's first frame is marked as a break"
        );
        assert_eq!((f.seq, f.start_index), (1, 100));
    }
}
