//! Live windows: per-lead ring buffers of 500 Hz samples that hand out a 10 s, 12-lead window
//! every hop, never across a gap (a gap empties the buffers: the next window needs 10 s of new,
//! continuous signal), with the electrodes that were off at any moment of the window.

use eknet_shared::Lead;
use eknet_shared::layout::{LEAD_ROWS, LayoutError, WINDOW_SAMPLES, Window3x4};
use std::collections::VecDeque;

/// Leads of an 8-channel eknet frame, in channel order (`daemon/PROTOCOL.md`); the host derives
/// III, aVR, aVL and aVF.
pub const EIGHT_CHANNEL_LEADS: [Lead; 8] = [
    Lead::I,
    Lead::II,
    Lead::V1,
    Lead::V2,
    Lead::V3,
    Lead::V4,
    Lead::V5,
    Lead::V6,
];

/// Electrode bits of the eknet frame (bit 0 RA, 1 LA, 2 LL, 3..8 V1..V6).
pub const ELECTRODES: [&str; 9] = ["RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6"];

/// The leads an off electrode spoils: a limb electrode spoils every lead (the chest leads are
/// referenced to the Wilson terminal built from RA, LA, LL); a chest electrode only its lead.
pub fn spoiled_leads(lead_off: u16) -> Vec<Lead> {
    if lead_off & 0b111 != 0 {
        return Lead::ALL.to_vec();
    }
    (0..6)
        .filter(|k| lead_off & (1 << (3 + k)) != 0)
        .map(|k| Lead::ALL[6 + k])
        .collect()
}

/// Names of the electrodes set in `lead_off`.
pub fn off_electrodes(lead_off: u16) -> Vec<&'static str> {
    ELECTRODES
        .iter()
        .enumerate()
        .filter(|(i, _)| lead_off & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// A 10 s window ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveWindow {
    /// Stream index of the first sample.
    pub start_index: u64,
    /// The twelve leads in [`Lead::ALL`] order, 5000 samples each (mV).
    pub leads: Vec<Vec<f32>>,
    /// Electrodes off at any sample of the window (bits as in the frame).
    pub lead_off: u16,
    /// The device's own index of the first sample, where the device numbers its samples (eknet
    /// frames do; a Cyton's counter wraps at 256, so `None` there). Set by the reader.
    pub device_start_index: Option<u64>,
}

impl LiveWindow {
    /// Stream index one past the last sample.
    pub fn end_index(&self) -> u64 {
        self.start_index + WINDOW_SAMPLES as u64
    }

    /// The model input (the shared 3x4 code).
    pub fn model_input(&self) -> Result<Window3x4, LayoutError> {
        let refs: [&[f32]; LEAD_ROWS] = std::array::from_fn(|i| self.leads[i].as_slice());
        Window3x4::from_leads(refs)
    }
}

/// Assembles windows from a stream of 12-lead samples.
#[derive(Debug)]
pub struct WindowAssembler {
    hop: usize,
    leads: Vec<VecDeque<f32>>,
    lead_off: VecDeque<u16>,
    /// Stream index of the oldest buffered sample.
    first_index: u64,
    /// Samples since the last window (or since the buffers filled).
    since_emit: usize,
    emitted_any: bool,
}

impl WindowAssembler {
    /// A window every `hop_samples` (2.5 s = 1250 by default) once 10 s are buffered.
    pub fn new(hop_samples: usize) -> WindowAssembler {
        WindowAssembler {
            hop: hop_samples.max(1),
            leads: vec![VecDeque::with_capacity(WINDOW_SAMPLES + 1); LEAD_ROWS],
            lead_off: VecDeque::with_capacity(WINDOW_SAMPLES + 1),
            first_index: 0,
            since_emit: 0,
            emitted_any: false,
        }
    }

    /// Samples buffered (at most one window).
    pub fn buffered(&self) -> usize {
        self.lead_off.len()
    }

    /// A gap (lost samples, reconnect, restart): drop everything, so no window spans it.
    pub fn gap(&mut self) {
        self.leads.iter_mut().for_each(VecDeque::clear);
        self.lead_off.clear();
        self.since_emit = 0;
        self.emitted_any = false;
    }

    /// Appends one sample of the twelve leads (mV, [`Lead::ALL`] order) at stream index `index`
    /// with the electrodes then off; returns a window when one is due.
    pub fn push(
        &mut self,
        index: u64,
        sample: [f32; LEAD_ROWS],
        lead_off: u16,
    ) -> Option<LiveWindow> {
        if self.lead_off.is_empty() {
            self.first_index = index;
        } else if index != self.first_index + self.lead_off.len() as u64 {
            // Not contiguous with what is buffered: treat as a gap and start again here.
            self.gap();
            self.first_index = index;
        }
        for (buf, v) in self.leads.iter_mut().zip(sample) {
            buf.push_back(v);
        }
        self.lead_off.push_back(lead_off);
        if self.lead_off.len() > WINDOW_SAMPLES {
            self.leads.iter_mut().for_each(|b| {
                b.pop_front();
            });
            self.lead_off.pop_front();
            self.first_index += 1;
        }
        if self.lead_off.len() < WINDOW_SAMPLES {
            return None;
        }
        self.since_emit += 1;
        if self.emitted_any && self.since_emit < self.hop {
            return None;
        }
        self.since_emit = 0;
        self.emitted_any = true;
        Some(LiveWindow {
            start_index: self.first_index,
            leads: self
                .leads
                .iter()
                .map(|b| b.iter().copied().collect())
                .collect(),
            lead_off: self.lead_off.iter().fold(0, |a, &b| a | b),
            device_start_index: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> [f32; LEAD_ROWS] {
        std::array::from_fn(|l| l as f32 * 100.0 + (i % 1000) as f32 * 0.001)
    }

    #[test]
    fn a_window_every_hop_after_ten_seconds() {
        let mut w = WindowAssembler::new(1250);
        let mut starts = Vec::new();
        for i in 0..10_000u64 {
            if let Some(win) = w.push(i, sample(i), 0) {
                assert_eq!(win.leads[3][0], sample(win.start_index)[3]);
                assert_eq!(win.leads[11][4999], sample(win.start_index + 4999)[11]);
                starts.push(win.start_index);
            }
            assert!(w.buffered() <= WINDOW_SAMPLES);
        }
        assert_eq!(starts, [0, 1250, 2500, 3750, 5000]);
    }

    #[test]
    fn no_window_spans_a_gap() {
        let mut w = WindowAssembler::new(1250);
        let mut windows = Vec::new();
        for i in (0..6000u64).chain(6100..14_000) {
            if let Some(win) = w.push(i, sample(i), 0) {
                windows.push((win.start_index, win.end_index()));
            }
        }
        for (a, b) in &windows {
            assert!(
                *b <= 6000 || *a >= 6100,
                "window {a}..{b} spans the gap 6000..6100"
            );
        }
        // After the gap the first window needs 10 s of new signal: 6100..11100.
        assert!(windows.contains(&(6100, 11_100)));
        // An explicit gap (reconnect) with contiguous indices also restarts.
        let mut w = WindowAssembler::new(1250);
        let mut n = 0;
        for i in 0..9000u64 {
            if i == 4000 {
                w.gap();
            }
            n += w.push(i, sample(i), 0).is_some() as usize;
        }
        assert_eq!(n, 1, "only 4000..9000 fills a window");
    }

    #[test]
    fn lead_off_is_carried_and_mapped() {
        let mut w = WindowAssembler::new(5000);
        let mut last = None;
        for i in 0..5000u64 {
            let off = if i == 2222 { 1 << 4 } else { 0 };
            last = w.push(i, sample(i), off).or(last);
        }
        let win = last.unwrap();
        assert_eq!(win.lead_off, 1 << 4);
        assert_eq!(off_electrodes(win.lead_off), ["V2"]);
        assert_eq!(spoiled_leads(win.lead_off), [Lead::V2]);
        assert_eq!(spoiled_leads(0b010).len(), 12, "LA off spoils every lead");
        assert_eq!(win.model_input().unwrap().data.len(), 15 * 1250);
    }
}
