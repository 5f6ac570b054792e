//! Per-lead signal quality before delineation: a lead that is not finite, flat, clipped or
//! mostly high-frequency noise is left out of the measurements (and named in their reasons).

use super::filter::{Biquad, filtfilt};
use serde::{Deserialize, Serialize};

/// Robust peak-to-peak (0.5th to 99.5th percentile) below which a lead is flat (mV).
pub const FLAT_MV: f64 = 0.03;
/// Share of samples sitting on the lead's extreme value above which it is clipped.
pub const CLIPPED_FRACTION: f64 = 0.01;
/// RMS above 40 Hz over RMS of the whole (baseline-removed) lead above which it is noise.
pub const NOISE_RATIO: f64 = 0.5;

/// Why a lead failed quality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum LeadProblem {
    /// Samples that are NaN or infinite.
    NotFinite {
        /// How many.
        samples: usize,
    },
    /// No signal: the robust peak-to-peak is below [`FLAT_MV`].
    Flat {
        /// Robust peak-to-peak (mV).
        peak_to_peak_mv: f64,
    },
    /// Many samples stuck at the lead's maximum or minimum (amplifier saturation).
    Clipped {
        /// Share of samples on an extreme value.
        fraction: f64,
    },
    /// Mostly high-frequency content (muscle noise, a loose electrode).
    Noise {
        /// RMS above 40 Hz over total RMS.
        ratio: f64,
    },
}

impl std::fmt::Display for LeadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeadProblem::NotFinite { samples } => write!(f, "{samples} samples not finite"),
            LeadProblem::Flat { peak_to_peak_mv } => {
                write!(f, "flat ({peak_to_peak_mv:.3} mV peak-to-peak)")
            }
            LeadProblem::Clipped { fraction } => {
                write!(
                    f,
                    "clipped ({:.1} % of samples at an extreme)",
                    fraction * 100.0
                )
            }
            LeadProblem::Noise { ratio } => {
                write!(f, "noise ({:.0} % of RMS above 40 Hz)", ratio * 100.0)
            }
        }
    }
}

/// The first problem of a lead sampled at `rate_hz`, or `None` when it is usable.
pub fn check_lead(x: &[f32], rate_hz: f64) -> Option<LeadProblem> {
    let bad = x.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Some(LeadProblem::NotFinite { samples: bad });
    }
    if x.is_empty() {
        return Some(LeadProblem::Flat {
            peak_to_peak_mv: 0.0,
        });
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64;
    let ptp = at(0.995) - at(0.005);
    if ptp < FLAT_MV {
        return Some(LeadProblem::Flat {
            peak_to_peak_mv: ptp,
        });
    }
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let median = sorted[sorted.len() / 2];
    let range = hi - lo;
    let eps = 1e-6 * range.max(1e-6);
    // An extreme counts only away from the lead's resting level: a flat baseline sitting at the
    // minimum (a synthetic or perfectly quiet lead) is not saturation.
    let stuck = |extreme: f32| {
        if (extreme - median).abs() < 0.25 * range {
            0
        } else {
            x.iter().filter(|&&v| (v - extreme).abs() <= eps).count()
        }
    };
    let fraction = stuck(lo).max(stuck(hi)) as f64 / x.len() as f64;
    if fraction > CLIPPED_FRACTION {
        return Some(LeadProblem::Clipped { fraction });
    }
    let pad = (rate_hz as usize).min(x.len());
    let base = filtfilt(x, &[Biquad::high_pass(0.5, rate_hz)], pad);
    let smooth = filtfilt(&base, &[Biquad::low_pass(40.0, rate_hz)], pad);
    let rms = |v: &mut dyn Iterator<Item = f64>, n: usize| {
        (v.map(|d| d * d).sum::<f64>() / n as f64).sqrt()
    };
    let total = rms(&mut base.iter().map(|&v| v as f64), base.len());
    let high = rms(
        &mut base.iter().zip(&smooth).map(|(&a, &b)| (a - b) as f64),
        base.len(),
    );
    let ratio = if total > 0.0 { high / total } else { 0.0 };
    if ratio > NOISE_RATIO {
        return Some(LeadProblem::Noise { ratio });
    }
    None
}
