//! Signal checks on one 10 s window at 500 Hz: heart rate from the R peaks of lead II (the shared
//! detector, `eknet_shared::rhythm`), and per-lead quality (flat line, clipping, mains
//! interference, baseline wander) that decides whether a window may be classified, with a reason a
//! person can read when it may not.

use eknet_shared::Lead;
use eknet_shared::rhythm::moving_average;
pub use eknet_shared::rhythm::{RATE_HZ, heart_rate_bpm, r_peaks};
use serde::Serialize;

/// A lead whose peak-to-peak range stays below this (mV) over the window is flat.
pub const FLAT_MV: f32 = 0.02;
/// Longest run (s) held at the lead's own extreme value before the lead counts as clipped.
pub const CLIP_RUN_S: f64 = 0.1;
/// Mains amplitude (mV, at 50 or 60 Hz) above which a lead is too noisy.
pub const MAINS_MV: f64 = 0.2;
/// Range (mV) of the < 0.7 Hz component above which baseline wander is too strong.
pub const WANDER_MV: f32 = 3.0;

/// One lead's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum LeadQuality {
    /// Usable.
    Ok,
    /// Unusable, with the reason.
    Bad {
        /// Why, e.g. "flat line (0.004 mV peak to peak)".
        reason: String,
    },
}

/// Amplitude of the `freq_hz` component of `x` (Goertzel).
fn tone_amplitude(x: &[f32], freq_hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq_hz / RATE_HZ;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64;
    for &v in x {
        let s0 = (v as f64 - mean) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len().max(1) as f64
}

/// The verdict on one lead's 10 s of samples (mV).
pub fn lead_quality(x: &[f32]) -> LeadQuality {
    let bad = |reason: String| LeadQuality::Bad { reason };
    if x.iter().any(|v| !v.is_finite()) {
        return bad("missing samples".into());
    }
    let (lo, hi) = x
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    if hi - lo < FLAT_MV {
        return bad(format!("flat line ({:.3} mV peak to peak)", hi - lo));
    }
    // Clipping: the signal held at its own extreme (a rail) for a while. A hold away from the
    // extremes is a quantisation or transmission artefact, not saturation.
    let mut run = 1usize;
    let mut longest_at_rail = 0usize;
    for w in x.windows(2) {
        run = if w[0] == w[1] { run + 1 } else { 1 };
        if w[1] == hi || w[1] == lo {
            longest_at_rail = longest_at_rail.max(run);
        }
    }
    if longest_at_rail as f64 >= CLIP_RUN_S * RATE_HZ {
        return bad(format!(
            "clipped ({:.2} s held at {:.2} mV)",
            longest_at_rail as f64 / RATE_HZ,
            if x.contains(&hi) && hi.abs() >= lo.abs() {
                hi
            } else {
                lo
            }
        ));
    }
    for mains in [50.0, 60.0] {
        let a = tone_amplitude(x, mains);
        if a > MAINS_MV {
            return bad(format!("mains interference ({a:.2} mV at {mains} Hz)"));
        }
    }
    // Baseline: a 1.4 s moving average passes only the slow (< ~0.7 Hz) component.
    let base = moving_average(x, (1.4 * RATE_HZ) as usize);
    let (blo, bhi) = base
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    if bhi - blo > WANDER_MV {
        return bad(format!("baseline wander ({:.1} mV)", bhi - blo));
    }
    LeadQuality::Ok
}

/// Quality of the twelve leads of a window (in [`Lead::ALL`] order), each with its verdict.
pub fn window_quality(leads: [&[f32]; 12]) -> Vec<(Lead, LeadQuality)> {
    Lead::ALL
        .iter()
        .map(|&l| (l, lead_quality(leads[l.row()])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_ecg(bpm: f64) -> Vec<f32> {
        let period = 60.0 / bpm * RATE_HZ;
        (0..5000)
            .map(|i| {
                let phase = (i as f64 % period) - period / 2.0;
                (1.2 * (-(phase / 8.0).powi(2)).exp()) as f32
                    + 0.05 * ((i as f64) * 0.01).sin() as f32
            })
            .collect()
    }

    #[test]
    fn quality_verdicts_name_the_problem() {
        let good = synthetic_ecg(70.0);
        assert_eq!(lead_quality(&good), LeadQuality::Ok);
        let flat = vec![0.001f32; 5000];
        assert!(
            matches!(lead_quality(&flat), LeadQuality::Bad { reason } if reason.starts_with("flat line"))
        );
        let mut clipped = good.clone();
        clipped[1000..1100].iter_mut().for_each(|v| *v = 5.0);
        assert!(
            matches!(lead_quality(&clipped), LeadQuality::Bad { reason } if reason.starts_with("clipped"))
        );
        let mains: Vec<f32> = good
            .iter()
            .enumerate()
            .map(|(i, v)| v + 0.5 * (2.0 * std::f32::consts::PI * 50.0 * i as f32 / 500.0).sin())
            .collect();
        assert!(
            matches!(lead_quality(&mains), LeadQuality::Bad { reason } if reason.contains("50 Hz"))
        );
        let wander: Vec<f32> = good
            .iter()
            .enumerate()
            .map(|(i, v)| v + 4.0 * (2.0 * std::f32::consts::PI * 0.15 * i as f32 / 500.0).sin())
            .collect();
        assert!(
            matches!(lead_quality(&wander), LeadQuality::Bad { reason } if reason.starts_with("baseline wander"))
        );
        let mut missing = good;
        missing[7] = f32::NAN;
        assert!(matches!(lead_quality(&missing), LeadQuality::Bad { .. }));
    }
}
