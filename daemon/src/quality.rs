//! Signal checks on one 10 s window at 500 Hz: heart rate from the R peaks of lead II, and
//! per-lead quality (flat line, clipping, mains interference, baseline wander) that decides
//! whether a window may be classified, with a reason a person can read when it may not.

use eknet_shared::Lead;
use serde::Serialize;

/// Sampling rate the checks assume.
pub const RATE_HZ: f64 = 500.0;
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

/// Moving average of width `w` samples (centred, edges shortened).
fn moving_average(x: &[f32], w: usize) -> Vec<f32> {
    let half = w / 2;
    let mut prefix = Vec::with_capacity(x.len() + 1);
    prefix.push(0.0f64);
    for &v in x {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + v as f64);
    }
    (0..x.len())
        .map(|i| {
            let a = i.saturating_sub(half);
            let b = (i + half + 1).min(x.len());
            ((prefix[b] - prefix[a]) / (b - a) as f64) as f32
        })
        .collect()
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

/// R-peak sample positions in lead II: band-pass by differencing two moving averages
/// (~5-15 Hz), squared slope, 150 ms integration, threshold at 30 % of the window's robust
/// maximum, 250 ms refractory period, each peak placed at the largest absolute deviation of the
/// band-passed signal near the detection.
pub fn r_peaks(lead_ii: &[f32]) -> Vec<usize> {
    let n = lead_ii.len();
    if n < 3 {
        return Vec::new();
    }
    let fast = moving_average(lead_ii, 7); // ~14 ms: keeps QRS, drops high-frequency noise
    let slow = moving_average(lead_ii, 50); // 100 ms: the slower P/T and baseline
    let band: Vec<f32> = fast.iter().zip(&slow).map(|(a, b)| a - b).collect();
    let slope: Vec<f32> = band
        .windows(2)
        .map(|w| (w[1] - w[0]).powi(2))
        .chain([0.0])
        .collect();
    let energy = moving_average(&slope, (0.15 * RATE_HZ) as usize);
    let mut sorted = energy.clone();
    sorted.sort_by(f32::total_cmp);
    let robust_max = sorted[(n as f64 * 0.99) as usize];
    if robust_max <= 0.0 {
        return Vec::new();
    }
    let threshold = 0.3 * robust_max;
    let refractory = (0.25 * RATE_HZ) as usize;
    let search = (0.08 * RATE_HZ) as usize;
    let mut peaks: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < n {
        if energy[i] > threshold {
            let a = i.saturating_sub(search);
            let b = (i + search).min(n);
            let p = (a..b)
                .max_by(|&x, &y| band[x].abs().total_cmp(&band[y].abs()))
                .unwrap_or(i);
            if peaks.last().is_none_or(|&last| p > last + refractory) {
                peaks.push(p);
            }
            i = p.max(i) + refractory;
        } else {
            i += 1;
        }
    }
    peaks
}

/// Heart rate (beats per minute) from the median R-R interval of lead II, or `None` with fewer
/// than three beats.
pub fn heart_rate_bpm(lead_ii: &[f32]) -> Option<f64> {
    let peaks = r_peaks(lead_ii);
    if peaks.len() < 3 {
        return None;
    }
    let mut rr: Vec<usize> = peaks.windows(2).map(|w| w[1] - w[0]).collect();
    rr.sort_unstable();
    Some(60.0 * RATE_HZ / rr[rr.len() / 2] as f64)
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
    fn heart_rate_of_synthetic_beats() {
        for bpm in [45.0, 72.0, 120.0, 170.0] {
            let hr = heart_rate_bpm(&synthetic_ecg(bpm)).unwrap();
            assert!((hr - bpm).abs() < 1.5, "{bpm} bpm measured as {hr}");
        }
        assert_eq!(heart_rate_bpm(&[0.0; 5000]), None);
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
