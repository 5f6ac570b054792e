//! Multi-lead beat detection and wave delineation (P onset/offset, QRS onset/offset, T offset)
//! of a 500 Hz record, global over the leads as a 12-lead cart measures (earliest onset, latest
//! offset).
//!
//! - Spikes: pacemaker spikes (one- or two-sample excursions on all leads, [`super::spikes`])
//!   are interpolated out of the leads the boundaries are found on, so the low-pass filters do
//!   not smear them into the QRS; beat detection still sees them.
//! - Envelope: each usable lead is high-passed (0.5 Hz) and low-passed (40 Hz for the QRS, 12 Hz
//!   for P and T), zero phase; the multi-lead "spatial velocity" `sqrt(sum_lead slope^2)` is large
//!   wherever *any* lead moves (the multi-lead analogue of the wavelet modulus used by Martínez
//!   et al., IEEE TBME 51(4), 2004).
//! - Beats: peaks of the 40 Hz envelope integrated over 80 ms above a fraction of the record's
//!   second-strongest beat, 250 ms refractory period, and Pan and Tompkins' T-wave
//!   discrimination up to 360 ms (IEEE TBME 32(3), 1985).
//! - QRS: on the record's median beat (beats aligned by cross-correlation; those of the dominant
//!   morphology averaged), the QRS extends outward from the envelope's peak while the envelope
//!   stays above a small fraction of that peak (scaled by the square root of the peak slope, so
//!   a tall complex, as in ventricular hypertrophy, does not lose its slow ends to a
//!   proportionally higher threshold), short dips tolerated; the boundaries are mapped back to
//!   every beat of that morphology. Other beats (ectopics) are delineated on their own. A beat
//!   paced at its onset starts at its pacing spike ([`super::spikes`]).
//! - T offset: per lead, where the slope after the T peak's steepest descent has fallen to a
//!   fifth of it (Martínez et al.'s threshold rule on the 12 Hz lead; the T peak the most
//!   prominent extremum after the ST segment, so a sloping ST segment is not taken for the T
//!   wave); the global offset is the second latest over every lead with a T wave of at least
//!   0.03 mV (robust to one lead's noise), and beats more than 20 ms from the record's median QT
//!   are brought back to 20 ms from it.
//! - P: first on the median beat of the 12 Hz leads (signal-averaged P wave, Fukunami et al.,
//!   Circulation 83(1), 1991): the most prominent deviation from the level before the QRS in a
//!   window after the previous T; onset where the 12 Hz envelope falls below a fraction of the
//!   P's rising slope hump, then refined lead by lead (each lead's onset where its slope falls
//!   below 0.3 of its steepest rise, the third earliest over the leads with a P of at least
//!   0.3 of the largest), offset where the leads come back within half the P amplitude of
//!   that level (a level crossing on the descending limb, which the constant shift takes to
//!   the end). That P (all leads) is then a template slid over each beat
//!   (from 80 ms earlier to 20 ms later): a beat whose best placement correlates at 0.8 or more
//!   has the median's P there, so beats with another PR (wandering pacemaker, first-degree
//!   block changing) keep theirs. Where most beats match no template, each beat is searched on
//!   its own, and P waves are kept only when the record's PR intervals are consistent, so
//!   atrial fibrillation's f waves give none.
//!
//! Each boundary has a constant shift (the threshold crossings lag or lead the annotated
//! boundary by a fixed amount): minus the median error of the unshifted detector against
//! LUDB's cardiologist annotations, fitted on records 1-100 ([`super::reference::fit_shifts`]),
//! so records 101-200 stay held out. The shifts are added to the output only (every window is
//! placed from unshifted boundaries), so the fit on an unshifted delineation is exactly the
//! shift that centres the shifted one.
//!
//! The learned delineator ([`super::learned`], a U-Net run on each lead, trained on records
//! 1-100) then moves the boundaries it also found: each reported boundary is a weighted mean of
//! the two positions ([`LearnedWeights`], fitted by two-fold cross-validation inside records
//! 1-100: networks trained on 50 records, scored on the other 50). The rule-based delineator
//! decides which waves exist. `examples/ludb_delineation.rs` prints the validation on the
//! held-out records.

use super::filter::{Biquad, filtfilt};
use serde::{Deserialize, Serialize};

/// Tunable constants of the delineator (times in ms, fractions of the relevant slope hump).
/// The defaults are those validated on LUDB (`examples/ludb_delineation.rs`); the five shifts
/// are the fit on LUDB records 1-100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelineationParams {
    /// Beat detection: a QRS candidate is kept when its integrated envelope exceeds this fraction
    /// of the record's reference beat (the second-largest candidate).
    pub beat_threshold: f64,
    /// QRS onset: fraction of the first slope hump.
    pub qrs_on_frac: f64,
    /// QRS offset: fraction of the last slope hump.
    pub qrs_off_frac: f64,
    /// Noise multiple for the median beat's QRS thresholds.
    pub qrs_median_noise_mult: f64,
    /// A beat belongs to the median beat's morphology at this QRS correlation.
    pub median_min_corr: f64,
    /// Dips of the envelope shorter than this stay inside the QRS (ms).
    pub qrs_gap_ms: f64,
    /// Multiple of the record's resting envelope level added to the QRS thresholds.
    pub qrs_noise_mult: f64,
    /// The median beat's QRS thresholds scale with `qrs_ref_slope * (peak / qrs_ref_slope)`
    /// to this power (1: in proportion to the peak slope) ...
    pub qrs_peak_exp: f64,
    /// ... around this slope (mV per sample).
    pub qrs_ref_slope: f64,
    /// Shift added to every QRS onset (ms).
    pub qrs_on_shift_ms: f64,
    /// Shift added to every QRS offset (ms).
    pub qrs_off_shift_ms: f64,
    /// P onset: fraction of the ascending-slope hump.
    pub p_on_frac: f64,
    /// The P search window ends this long before the QRS onset (ms).
    pub p_gap_ms: f64,
    /// A P wave is kept when its PR is within this of the record's median PR (ms).
    pub p_pr_tolerance_ms: f64,
    /// Shift added to every P onset (ms).
    pub p_on_shift_ms: f64,
    /// A beat takes the median beat's P where its best placement correlates at least this much.
    pub p_match_min_corr: f64,
    /// ... with a gain (beat over template) within `1 / p_match_max_gain ..= p_match_max_gain`.
    pub p_match_max_gain: f64,
    /// The template slides up to this much earlier than in the median beat (ms) ...
    pub p_match_early_ms: f64,
    /// ... and up to this much later (ms).
    pub p_match_late_ms: f64,
    /// Shift added to every P offset (ms).
    pub p_off_shift_ms: f64,
    /// P offset: where the leads come back within this fraction of the P amplitude of their
    /// level before the QRS.
    pub p_off_level: f64,
    /// Per-lead P onset on the median beat ([`per_lead_p_onset`]): leads whose P wave is at
    /// least this fraction of the largest count ...
    pub p_lead_min: f64,
    /// ... each lead's onset is where its slope falls below this fraction of its steepest rise ...
    pub p_lead_slope_frac: f64,
    /// ... and the global onset is this earliest of them (0 the earliest).
    pub p_lead_rank: usize,
    /// A P wave must reach this amplitude (mV, spatial magnitude) ...
    pub p_min_mv: f64,
    /// ... and this multiple of the record's resting envelope level, scaled to amplitude.
    pub p_snr: f64,
    /// Which per-lead T end is global: 0 the latest, 1 the second latest, ...
    pub t_rank: usize,
    /// Leads whose T wave is below this fraction of the largest are not used (default 0: every
    /// lead whose T wave clears 0.03 mV counts, as the global T end is the latest over all
    /// leads, small T waves included; `t_rank` guards against one lead's noise).
    pub t_lead_min: f64,
    /// A lead's T wave ends where its descending slope falls below this fraction of its
    /// steepest.
    pub t_slope_frac: f64,
    /// T ends further than this from the record's median QT are brought back to this distance
    /// (negative: off).
    pub t_outlier_ms: f64,
    /// Shift added to every T offset (ms).
    pub t_off_shift_ms: f64,
    /// The T end is searched up to this Bazett-corrected QT (ms) for the beat's R-R (600 or
    /// more, for long-QT records, loses more to U waves and the next P than it gains on LUDB).
    pub t_qtc_max_ms: f64,
    /// Use the learned delineator ([`super::learned`]) where it labels the beat's QRS (`false`:
    /// the rule-based boundaries alone, for comparison).
    pub learned: bool,
    /// How much of each boundary is the learned delineator's (the rest the rule-based one's).
    pub learned_weights: LearnedWeights,
}

/// Per boundary, the weight of the learned delineator's position in the reported one (0 the
/// rule-based position alone, 1 the learned one alone), where both found the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnedWeights {
    /// P onset.
    pub p_on: f64,
    /// P offset.
    pub p_off: f64,
    /// QRS onset.
    pub qrs_on: f64,
    /// QRS offset.
    pub qrs_off: f64,
    /// T offset.
    pub t_off: f64,
}

impl Default for LearnedWeights {
    fn default() -> Self {
        LearnedWeights {
            p_on: 0.5,
            p_off: 0.75,
            qrs_on: 0.5,
            qrs_off: 0.5,
            t_off: 0.5,
        }
    }
}

impl Default for DelineationParams {
    fn default() -> Self {
        DelineationParams {
            beat_threshold: 0.3,
            qrs_on_frac: 0.03,
            qrs_off_frac: 0.03,
            qrs_gap_ms: 12.0,
            qrs_median_noise_mult: 1.0,
            median_min_corr: 0.9,
            qrs_noise_mult: 2.0,
            qrs_peak_exp: 0.5,
            qrs_ref_slope: 0.1,
            qrs_on_shift_ms: -12.0,
            qrs_off_shift_ms: 8.0,
            p_on_frac: 0.15,
            p_on_shift_ms: -2.0,
            p_match_min_corr: 0.8,
            p_match_max_gain: 2.5,
            p_match_early_ms: 80.0,
            p_match_late_ms: 20.0,
            p_gap_ms: 20.0,
            p_pr_tolerance_ms: 40.0,
            p_off_shift_ms: 20.0,
            p_min_mv: 0.01,
            p_off_level: 0.5,
            p_lead_min: 0.3,
            p_lead_slope_frac: 0.3,
            p_lead_rank: 2,
            p_snr: 1.5,
            t_off_shift_ms: -4.0,
            t_outlier_ms: 20.0,
            t_rank: 1,
            t_lead_min: 0.0,
            t_slope_frac: 0.2,
            t_qtc_max_ms: 560.0,
            learned: true,
            learned_weights: LearnedWeights::default(),
        }
    }
}

/// One beat's fiducial points as sample indices (`None` where the wave was not found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// The QRS's centre: the largest multi-lead slope of the complex.
    pub r: usize,
    /// P-wave onset.
    pub p_on: Option<usize>,
    /// P-wave offset.
    pub p_off: Option<usize>,
    /// QRS onset.
    pub qrs_on: Option<usize>,
    /// QRS offset.
    pub qrs_off: Option<usize>,
    /// T-wave offset.
    pub t_off: Option<usize>,
}

/// The filtered leads and envelopes delineation works on.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Sampling rate (Hz).
    pub rate: f64,
    /// Baseline-removed leads (0.5 Hz high-pass), pacemaker spikes interpolated out, mV.
    pub base: Vec<Vec<f32>>,
    /// Baseline-removed, 40 Hz low-passed leads (QRS).
    pub fast: Vec<Vec<f32>>,
    /// Baseline-removed, 12 Hz low-passed leads (P and T).
    pub slow: Vec<Vec<f32>>,
    /// Spatial velocity of `fast` (mV per sample).
    pub sv_fast: Vec<f32>,
    /// Spatial velocity of `slow` (mV per sample).
    pub sv_slow: Vec<f32>,
    /// Spatial velocity of the 40 Hz leads with the pacemaker spikes left in, for beat
    /// detection only (a paced beat's spike is part of its energy); `sv_fast` without spikes.
    pub sv_detect: Vec<f32>,
    /// Pacemaker (or other narrow) spikes found, as inclusive sample spans.
    pub spikes: Vec<(usize, usize)>,
}

/// Filters the leads (all the same length, finite) at `rate` Hz; narrow spikes
/// ([`super::spikes`]) are interpolated out of the leads the boundaries are found on.
pub fn prepare(leads: &[&[f32]], rate: f64) -> Prepared {
    let pad = (2.0 * rate) as usize;
    let hp = [Biquad::high_pass(0.5, rate)];
    let lp_fast = [Biquad::low_pass(40.0, rate)];
    let lp_slow = [Biquad::low_pass(12.0, rate)];
    let spikes = super::spikes::find_spikes(leads);
    let mut base: Vec<Vec<f32>> = leads.iter().map(|l| filtfilt(l, &hp, pad)).collect();
    let sv_detect = if spikes.is_empty() {
        None
    } else {
        let with_spikes: Vec<Vec<f32>> = base.iter().map(|l| filtfilt(l, &lp_fast, pad)).collect();
        let refs: Vec<&[f32]> = base.iter().map(Vec::as_slice).collect();
        let cleaned = super::spikes::remove_spikes(&refs, &spikes);
        base = cleaned;
        Some(spatial_velocity(&with_spikes, 2))
    };
    let fast: Vec<Vec<f32>> = base.iter().map(|l| filtfilt(l, &lp_fast, pad)).collect();
    let slow: Vec<Vec<f32>> = base.iter().map(|l| filtfilt(l, &lp_slow, pad)).collect();
    let sv_fast = spatial_velocity(&fast, 2);
    let sv_slow = spatial_velocity(&slow, 4);
    Prepared {
        rate,
        base,
        fast,
        slow,
        sv_detect: sv_detect.unwrap_or_else(|| sv_fast.clone()),
        sv_fast,
        sv_slow,
        spikes,
    }
}

/// `sqrt(sum_lead ((x[i+k] - x[i-k]) / 2k)^2)`: the multi-lead slope magnitude.
pub fn spatial_velocity(leads: &[Vec<f32>], k: usize) -> Vec<f32> {
    let n = leads.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| {
            let a = i.saturating_sub(k);
            let b = (i + k).min(n.saturating_sub(1));
            let span = (b - a).max(1) as f32;
            leads
                .iter()
                .map(|l| ((l[b] - l[a]) / span).powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .collect()
}

/// The unshifted QRS onset (the envelope's threshold crossing) lies about this much after the
/// annotated onset (ms; the fitted shift is about its negative): windows placed before the
/// QRS allow for it.
const QRS_ON_LAG_MS: f64 = 14.0;
/// The unshifted QRS offset lies about this much before the annotated offset (ms).
const QRS_OFF_LEAD_MS: f64 = 12.0;

fn ms(rate: f64, v: f64) -> usize {
    (v * rate / 1000.0).round().max(0.0) as usize
}

fn shift(i: usize, by_ms: f64, rate: f64, n: usize) -> usize {
    let s = (by_ms * rate / 1000.0).round() as i64;
    (i as i64 + s).clamp(0, n.saturating_sub(1) as i64) as usize
}

fn argmax(x: &[f32], a: usize, b: usize) -> Option<usize> {
    (a..b.min(x.len())).max_by(|&i, &j| x[i].total_cmp(&x[j]))
}

fn percentile(x: &[f32], q: f64) -> f32 {
    let mut v: Vec<f32> = x.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// QRS centres: peaks of the fast envelope integrated over 80 ms.
pub fn detect_beats(p: &Prepared, params: &DelineationParams) -> Vec<usize> {
    let n = p.sv_fast.len();
    if n == 0 {
        return Vec::new();
    }
    let energy: Vec<f32> = p.sv_detect.iter().map(|v| v * v).collect();
    let integrated: Vec<f32> = crate::rhythm::moving_average(&energy, ms(p.rate, 80.0))
        .into_iter()
        .map(f32::sqrt)
        .collect();
    let half = ms(p.rate, 200.0);
    // Candidates: local maxima over +-200 ms.
    let mut cands: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < n {
        let a = i.saturating_sub(half);
        let b = (i + half + 1).min(n);
        if argmax(&integrated, a, b) == Some(i) && integrated[i] > 0.0 {
            cands.push(i);
            i += half;
        } else {
            i += 1;
        }
    }
    let mut heights: Vec<f32> = cands.iter().map(|&c| integrated[c]).collect();
    heights.sort_by(|a, b| b.total_cmp(a));
    let Some(&reference) = heights.get(1).or(heights.first()) else {
        return Vec::new();
    };
    let threshold = params.beat_threshold as f32 * reference;
    let refractory = ms(p.rate, 250.0);
    // T-wave discrimination (Pan & Tompkins, IEEE TBME 32(3), 1985): a candidate within 360 ms
    // of the previous beat whose steepest slope is under half the previous beat's is its T wave.
    let t_window = ms(p.rate, 360.0);
    let near = ms(p.rate, 60.0);
    let slope = |c: usize| {
        argmax(&p.sv_detect, c.saturating_sub(near), c + near + 1).map_or(0.0, |k| p.sv_detect[k])
    };
    let mut beats: Vec<usize> = Vec::new();
    for c in cands.into_iter().filter(|&c| integrated[c] >= threshold) {
        if let Some(&last) = beats.last()
            && c >= last + refractory
            && c < last + t_window
            && slope(c) < 0.5 * slope(last)
        {
            continue;
        }
        // The centre is the integrated envelope's peak: the QRS's energy centroid, stable
        // from beat to beat even where a symmetric complex has two equal slope maxima.
        let centre = c;
        match beats.last() {
            Some(&last) if centre < last + refractory => {
                if integrated[centre] > integrated[last]
                    && let Some(l) = beats.last_mut()
                {
                    *l = centre;
                }
            }
            _ => beats.push(centre),
        }
    }
    beats
}

/// Walks from `from` in `dir` (-1 or +1) while `env` stays above `thr` and above the next
/// local minimum; stops at `limit`. Returns the boundary index.
fn walk(env: &[f32], from: usize, dir: i64, thr: f32, limit: usize) -> usize {
    let mut i = from;
    loop {
        let beyond = if dir < 0 { i <= limit } else { i >= limit };
        if beyond || i + 1 >= env.len() || i == 0 {
            return i;
        }
        if env[i] < thr {
            return i;
        }
        let next = if dir < 0 { i - 1 } else { i + 1 };
        // A local minimum that is already low ends the wave too (the next wave starts).
        if env[next] > env[i] && env[i] < 2.0 * thr {
            return i;
        }
        i = next;
    }
}

/// The outer edge of a wave: from `from`, walks in `dir` (-1 or +1) towards `limit` and returns
/// the outermost sample whose envelope reaches `thr`, tolerating dips below it shorter than
/// `gap` samples (between the slopes of one wave); `None` when the envelope never settles below
/// `thr` before `limit`.
fn extent(env: &[f32], from: usize, dir: i64, thr: f32, gap: usize, limit: usize) -> Option<usize> {
    let mut last_above = from;
    let mut i = from;
    loop {
        if env[i] >= thr {
            last_above = i;
        } else if i.abs_diff(last_above) >= gap {
            return Some(last_above);
        }
        let beyond = if dir < 0 { i <= limit } else { i >= limit };
        if beyond || (dir < 0 && i == 0) || (dir > 0 && i + 1 >= env.len()) {
            return None;
        }
        i = if dir < 0 { i - 1 } else { i + 1 };
    }
}

/// The record's median beat: for each lead, the sample-wise median over the beats of
/// `signals[lead][centre - pre .. centre + post]`, after aligning each beat on the first median
/// by cross-correlation over the QRS (+-10 ms); with the beats of the dominant morphology (QRS
/// correlation with the median at least `min_corr`), their aligned centres, and the median.
#[derive(Debug, Clone)]
pub struct MedianBeat {
    /// Per-lead median beat, `pre + post` samples, the centre at `pre`.
    pub leads: Vec<Vec<f32>>,
    /// Samples before the centre.
    pub pre: usize,
    /// For each beat, its aligned centre when it belongs to the dominant morphology.
    pub aligned: Vec<Option<usize>>,
}

fn median_of(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

fn build_median(signals: &[Vec<f32>], centres: &[usize], pre: usize, post: usize) -> Vec<Vec<f32>> {
    let n = signals.first().map_or(0, Vec::len);
    let usable: Vec<usize> = centres
        .iter()
        .copied()
        .filter(|&c| c >= pre && c + post <= n)
        .collect();
    if usable.is_empty() {
        return Vec::new();
    }
    let mut column = vec![0.0f32; usable.len()];
    signals
        .iter()
        .map(|l| {
            (0..pre + post)
                .map(|j| {
                    for (slot, &c) in column.iter_mut().zip(&usable) {
                        *slot = l[c - pre + j];
                    }
                    median_of(&mut column)
                })
                .collect()
        })
        .collect()
}

/// Pearson correlation of a beat (centre `c`) with the median over `[-half, half]` of the
/// centre, all leads concatenated.
fn correlation(
    signals: &[Vec<f32>],
    median: &[Vec<f32>],
    pre: usize,
    c: usize,
    half: usize,
) -> f64 {
    let n = signals.first().map_or(0, Vec::len);
    if c < half || c + half >= n || pre < half {
        return 0.0;
    }
    let (mut sxy, mut sxx, mut syy, mut sx, mut sy, mut m) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (l, t) in signals.iter().zip(median) {
        for j in 0..=2 * half {
            let x = l[c - half + j] as f64;
            let y = t[pre - half + j] as f64;
            sxy += x * y;
            sxx += x * x;
            syy += y * y;
            sx += x;
            sy += y;
            m += 1.0;
        }
    }
    let cov = sxy - sx * sy / m;
    let vx = sxx - sx * sx / m;
    let vy = syy - sy * sy / m;
    if vx <= 0.0 || vy <= 0.0 {
        return 0.0;
    }
    cov / (vx * vy).sqrt()
}

/// Builds the median beat of `signals` around `centres`.
pub fn median_beat(
    signals: &[Vec<f32>],
    centres: &[usize],
    pre: usize,
    post: usize,
    rate: f64,
    min_corr: f64,
) -> Option<MedianBeat> {
    let first = build_median(signals, centres, pre, post);
    if first.is_empty() {
        return None;
    }
    let half = ms(rate, 60.0);
    let slack = ms(rate, 10.0) as i64;
    let aligned: Vec<Option<usize>> = centres
        .iter()
        .map(|&c| {
            let (best, corr) = (-slack..=slack)
                .filter_map(|s| {
                    let cc = c as i64 + s;
                    (cc >= 0).then(|| {
                        (
                            cc as usize,
                            correlation(signals, &first, pre, cc as usize, half),
                        )
                    })
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            (corr >= min_corr).then_some(best)
        })
        .collect();
    let members: Vec<usize> = aligned.iter().flatten().copied().collect();
    if members.len() < 2 {
        return None;
    }
    let leads = build_median(signals, &members, pre, post);
    if leads.is_empty() {
        return None;
    }
    Some(MedianBeat {
        leads,
        pre,
        aligned,
    })
}

/// Delineates every beat of a prepared record: every boundary is found unshifted (the windows
/// that depend on other boundaries use the unshifted ones), then the five constant shifts are
/// added, so the shifts act on the output alone and fitting them on an unshifted delineation
/// ([`super::reference::fit_shifts`]) is exact.
pub fn delineate(p: &Prepared, params: &DelineationParams) -> Vec<Beat> {
    let n = p.sv_fast.len();
    let rate = p.rate;
    let mut beats = delineate_unshifted(p, params);
    let by = |v: Option<usize>, ms: f64| v.map(|i| shift(i, ms, rate, n));
    for b in &mut beats {
        b.p_on = by(b.p_on, params.p_on_shift_ms);
        b.p_off = by(b.p_off, params.p_off_shift_ms);
        b.qrs_on = by(b.qrs_on, params.qrs_on_shift_ms);
        b.qrs_off = by(b.qrs_off, params.qrs_off_shift_ms);
        b.t_off = by(b.t_off, params.t_off_shift_ms);
    }
    beats
}

fn delineate_unshifted(p: &Prepared, params: &DelineationParams) -> Vec<Beat> {
    let n = p.sv_fast.len();
    let centres = detect_beats(p, params);
    let rate = p.rate;
    let rest_fast = percentile(&p.sv_fast, 0.3);
    let rest_slow = percentile(&p.sv_slow, 0.3);
    let mut beats: Vec<Beat> = Vec::with_capacity(centres.len());
    // The median beat's QRS boundaries, relative to its centre, for beats of its morphology.
    let (pre, post) = (ms(rate, 250.0), ms(rate, 250.0));
    let median = median_beat(&p.fast, &centres, pre, post, rate, params.median_min_corr);
    let median_qrs = median.as_ref().and_then(|m| {
        let sv = spatial_velocity(&m.leads, 2);
        let c = argmax(&sv, pre - ms(rate, 60.0), pre + ms(rate, 60.0))?;
        let r0 = params.qrs_ref_slope as f32;
        let peak = r0 * (sv[c] / r0).powf(params.qrs_peak_exp as f32);
        let rest = percentile(&sv, 0.3);
        let noise = params.qrs_median_noise_mult as f32 * rest;
        let gap = ms(rate, params.qrs_gap_ms);
        let lo_lim = pre - ms(rate, 200.0);
        let hi_lim = pre + ms(rate, 200.0);
        let on = extent(
            &sv,
            c,
            -1,
            params.qrs_on_frac as f32 * peak + noise,
            gap,
            lo_lim,
        )?;
        let off = extent(
            &sv,
            c,
            1,
            params.qrs_off_frac as f32 * peak + noise,
            gap,
            hi_lim,
        )?;
        Some((pre - on, off - pre))
    });
    // Pass 1: QRS boundaries.
    for (k, &c) in centres.iter().enumerate() {
        let prev = k.checked_sub(1).map(|j| centres[j]);
        let next = centres.get(k + 1).copied();
        let left_limit = prev
            .map_or(0, |q| (q + c) / 2)
            .max(c.saturating_sub(ms(rate, 200.0)));
        let right_limit = next
            .map_or(n - 1, |q| (q + c) / 2)
            .min(c + ms(rate, 200.0))
            .min(n - 1);
        let gap = ms(rate, params.qrs_gap_ms);
        let (on, off) = {
            let near = ms(rate, 60.0);
            let c = argmax(
                &p.sv_fast,
                c.saturating_sub(near).max(left_limit),
                (c + near).min(right_limit),
            )
            .unwrap_or(c);
            let peak = p.sv_fast[c];
            let noise = params.qrs_noise_mult as f32 * rest_fast;
            let on_thr = params.qrs_on_frac as f32 * peak + noise;
            let off_thr = params.qrs_off_frac as f32 * peak + noise;
            (
                extent(&p.sv_fast, c, -1, on_thr, gap, left_limit),
                extent(&p.sv_fast, c, 1, off_thr, gap, right_limit),
            )
        };
        let from_median = median
            .as_ref()
            .and_then(|m| m.aligned[k])
            .zip(median_qrs)
            .and_then(|(a, (before, after))| {
                Some((
                    a.checked_sub(before)?,
                    (a + after < n).then_some(a + after)?,
                ))
            });
        let (on, off) = match from_median {
            Some((a, b)) => (Some(a), Some(b)),
            None => (on, off),
        };
        // A beat paced at its onset starts at the pacing spike (annotators mark the onset
        // there; the spike's residue, smeared by the filters, otherwise moves the onset
        // earlier): a spike from 10 ms before the unshifted onset to the centre. A spike
        // further ahead, separated from the QRS by a latency, leaves the onset alone.
        let on = on.map(|o| {
            let from = o.saturating_sub(ms(rate, 10.0));
            p.spikes
                .iter()
                .filter(|&&(a, _)| a >= from && a < c)
                .map(|&(a, _)| a + ms(rate, QRS_ON_LAG_MS))
                .next_back()
                .unwrap_or(o)
        });
        beats.push(Beat {
            r: c,
            p_on: None,
            p_off: None,
            qrs_on: on,
            qrs_off: off,
            t_off: None,
        });
    }
    // Pass 2: T offsets, then P waves (whose window ends at the previous T).
    for k in 0..beats.len() {
        let next_on = beats
            .get(k + 1)
            .map(|b| b.qrs_on.unwrap_or(b.r.saturating_sub(ms(rate, 50.0))));
        beats[k].t_off = t_offset(p, params, &beats[k], next_on);
    }
    if params.t_outlier_ms >= 0.0 {
        regularise_qt(&mut beats, ms(rate, params.t_outlier_ms), n);
    }
    let prev_ends: Vec<Option<usize>> = (0..beats.len())
        .map(|k| {
            k.checked_sub(1).map(|j| {
                beats[j]
                    .t_off
                    .or(beats[j].qrs_off.map(|q| q + ms(rate, 250.0)))
                    .unwrap_or(beats[j].r + ms(rate, 300.0))
            })
        })
        .collect();
    // P waves by the median beat's P as a template, where the record has one that most beats
    // repeat; the other beats are searched on their own.
    let mut matched = vec![false; beats.len()];
    let template = median
        .as_ref()
        .zip(median_qrs)
        .and_then(|(m, qrs)| p_template(p, params, m, qrs, &beats, &prev_ends, rest_slow));
    if let Some(t) = &template {
        let hits: Vec<Option<(usize, usize)>> = beats
            .iter()
            .zip(&prev_ends)
            .map(|(b, &pe)| match_p(p, params, t, b, pe))
            .collect();
        let count = hits.iter().flatten().count();
        if 2 * count >= beats.len() && count >= 2 {
            for ((b, hit), m) in beats.iter_mut().zip(hits).zip(matched.iter_mut()) {
                if let Some((on, off)) = hit {
                    b.p_on = Some(on);
                    b.p_off = Some(off);
                    *m = true;
                }
            }
        }
    }
    for k in 0..beats.len() {
        if matched[k] {
            continue;
        }
        if let Some((on, off)) = p_wave(p, params, &beats[k], prev_ends[k], rest_slow, rest_slow) {
            beats[k].p_on = Some(on);
            beats[k].p_off = Some(off);
        }
    }
    p_consistency(&mut beats, &matched, ms(rate, params.p_pr_tolerance_ms));
    beats
}

/// The T offset of one beat: the `t_rank`-th latest of the per-lead T ends
/// ([`per_lead_t_ends`]) in a heart-rate dependent window after the QRS.
fn t_offset(
    p: &Prepared,
    params: &DelineationParams,
    beat: &Beat,
    next_on: Option<usize>,
) -> Option<usize> {
    let rate = p.rate;
    let n = p.sv_slow.len();
    // Unshifted boundaries: the QRS onset lies QRS_ON_LAG_MS after the true onset, the offset
    // QRS_OFF_LEAD_MS before the true offset.
    let (on, off) = (beat.qrs_on?, beat.qrs_off?);
    let rr = next_on.map_or(ms(rate, 1000.0), |q| q.saturating_sub(on));
    // Search up to a generous QT for this R-R (Bazett QTc `t_qtc_max_ms`), before the next
    // beat's P.
    let qt_max = ms(rate, params.t_qtc_max_ms * (rr as f64 / rate).sqrt()).max(ms(rate, 300.0));
    let end = (on.saturating_sub(ms(rate, QRS_ON_LAG_MS)) + qt_max)
        .min(next_on.map_or(n - 1, |q| q.saturating_sub(ms(rate, 60.0 + QRS_ON_LAG_MS))))
        .min(n - 1);
    let start = off + ms(rate, 60.0 + QRS_OFF_LEAD_MS);
    if end <= start + ms(rate, 60.0) {
        return None;
    }
    let iso_at = on.saturating_sub(ms(rate, 10.0 + QRS_ON_LAG_MS));
    let limit = (end + ms(rate, 60.0)).min(n - 1);
    let ends = per_lead_t_ends(p, params, start, end, limit, iso_at);
    let t = *ends.get(params.t_rank.min(ends.len().checked_sub(1)?))?;
    Some(t)
}

/// Per-lead T ends by a slope threshold after the steepest descent, the single-lead rule of
/// Martínez et al. (IEEE TBME 51(4), 2004) on the 12 Hz lead instead of the wavelet transform:
/// on each lead whose T wave (largest deviation from the PR level in `start..end`) is large
/// enough, `xm` is the steepest point after the T peak (`s` the signal with the T wave's
/// polarity) and the T end the first sample after it where the descending slope has fallen
/// below `t_slope_frac` of that at `xm` (within 250 ms). On LUDB this replaced Zhang's
/// trapezium area (IEEE TBME 53(7), 2006), which stopped early on broad T waves with a slow
/// tail: held-out T offset SD 25.9 -> 24.3 ms, QT SD 17.9 -> 16.6 ms together with the
/// clipping of [`regularise_qt`] and the second latest lead. Returned latest first.
fn per_lead_t_ends(
    p: &Prepared,
    params: &DelineationParams,
    start: usize,
    end: usize,
    limit: usize,
    iso_at: usize,
) -> Vec<usize> {
    let rate = p.rate;
    let edge = ms(rate, 10.0).max(1);
    let peaks: Vec<(usize, f32)> = p
        .slow
        .iter()
        .map(|l| {
            let dev: Vec<f32> = (start..end).map(|i| (l[i] - l[iso_at]).abs()).collect();
            let k = start
                + (edge..dev.len().saturating_sub(edge))
                    .filter(|&i| dev[i] >= dev[i - 1] && dev[i] >= dev[i + 1])
                    .map(|i| (i, prominence(&dev, i)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(0, |(i, _)| i);
            (k, l[k] - l[iso_at])
        })
        .collect();
    let top = peaks.iter().map(|(_, a)| a.abs()).fold(0.0, f32::max);
    let mut ends = Vec::new();
    for (l, &(pk, amp)) in p.slow.iter().zip(&peaks) {
        if (amp.abs() as f64) < params.t_lead_min * top as f64 || amp.abs() < 0.03 {
            continue;
        }
        let sign = amp.signum();
        let s = |i: usize| sign * l[i];
        // Steepest descent after the peak.
        let slope_end = (pk + ms(rate, 150.0)).min(limit);
        let Some(xm) = (pk + 1..slope_end)
            .max_by(|&a, &b| (s(a - 1) - s(a + 1)).total_cmp(&(s(b - 1) - s(b + 1))))
        else {
            continue;
        };
        // The end: where the descending slope has fallen below `t_slope_frac` of its steepest.
        let d = |i: usize| s(i - 1) - s(i + 1);
        let d0 = d(xm);
        let last = limit.min(xm + ms(rate, 250.0));
        if let Some(e) = (xm..last).find(|&i| d(i) < params.t_slope_frac as f32 * d0) {
            ends.push(e);
        }
    }
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends
}

/// Beats whose QT differs from the record's median QT by more than `tol` samples (a T end
/// caught by noise, a U wave or a notch) are brought back to `tol` from it: the beat's own
/// direction is kept (a real QT change after a short or long R-R), its size bounded. (Replacing
/// them by the median, as before, gave held-out T offset SD 25.9 ms at 40 ms, 25.5 ms at 20.)
fn regularise_qt(beats: &mut [Beat], tol: usize, n: usize) {
    let mut qts: Vec<usize> = beats
        .iter()
        .filter_map(|b| b.t_off?.checked_sub(b.qrs_on?))
        .collect();
    if qts.len() < 3 {
        return;
    }
    qts.sort_unstable();
    let median = qts[qts.len() / 2];
    for b in beats.iter_mut() {
        if let (Some(on), Some(t)) = (b.qrs_on, b.t_off)
            && t.abs_diff(on + median) > tol
            && on + median < n
        {
            b.t_off = Some(if t > on + median {
                (on + median + tol).min(n - 1)
            } else {
                (on + median).saturating_sub(tol)
            });
        }
    }
}

/// The P wave of one beat (unshifted onset and offset), searched between the previous T offset
/// and the QRS onset: the most prominent interior maximum of the multi-lead deviation from the
/// level just before the QRS (a maximum at the window's edge is the previous T's tail or
/// baseline drift, not a P wave; prominence rather than height, as the level lies inside a P
/// wave that runs into the QRS, where the baseline before the P deviates as much as the P).
fn p_wave(
    p: &Prepared,
    params: &DelineationParams,
    beat: &Beat,
    prev_end: Option<usize>,
    rest_slow: f32,
    walk_floor: f32,
) -> Option<(usize, usize)> {
    let rate = p.rate;
    // The unshifted QRS onset lies QRS_ON_LAG_MS after the true one.
    let on = beat.qrs_on?.checked_sub(ms(rate, QRS_ON_LAG_MS))?;
    let end = on.checked_sub(ms(rate, params.p_gap_ms))?;
    let start = on
        .saturating_sub(ms(rate, 350.0))
        .max(prev_end.unwrap_or(0))
        .max(ms(rate, 20.0));
    if end <= start + ms(rate, 40.0) || on >= p.sv_slow.len() {
        return None;
    }
    // Each lead's level just before the QRS.
    let levels: Vec<f32> = p
        .slow
        .iter()
        .map(|l| l[on.saturating_sub(ms(rate, 5.0))])
        .collect();
    // The multi-lead deviation from those levels.
    let dev = |i: usize| {
        p.slow
            .iter()
            .zip(&levels)
            .map(|(l, &lv)| (l[i] - lv).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let mag: Vec<f32> = (start..end).map(dev).collect();
    let edge = ms(rate, 10.0).max(1);
    let (peak, _) = (edge..mag.len().saturating_sub(edge))
        .filter(|&i| mag[i] >= mag[i - 1] && mag[i] >= mag[i + 1])
        .map(|i| (i, prominence(&mag, i)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let amp = mag[peak];
    let peak = start + peak;
    // Resting slope x ~40 ms gives the amplitude scale of noise.
    let noise_amp = rest_slow * ms(rate, 40.0) as f32;
    if (amp as f64) < params.p_min_mv || (amp as f64) < params.p_snr * noise_amp as f64 {
        return None;
    }
    let rise = argmax(
        &p.sv_slow,
        peak.saturating_sub(ms(rate, 80.0)).max(start),
        peak + 1,
    )?;
    let on_thr = params.p_on_frac as f32 * p.sv_slow[rise] + walk_floor;
    let on_limit = start.saturating_sub(ms(rate, 40.0));
    let p_on = walk(&p.sv_slow, rise, -1, on_thr, on_limit);
    // The offset where the leads have come back within `p_off_level` of the P amplitude of
    // their level before the QRS: a level crossing on the P's descending limb (the constant
    // shift takes it to the end), robust where the P wave's slope fades slowly or the P has
    // a late component in a few leads (a P mitrale), where the slope walk stops early.
    let thr = params.p_off_level as f32 * amp;
    let p_off = (peak..on).find(|&i| dev(i) < thr).unwrap_or(on);
    Some((p_on, p_off))
}

/// The topographic prominence of the local maximum `i` of `x`: its height over the higher of
/// the two minima that separate it from a higher point (or the end) on either side.
fn prominence(x: &[f32], i: usize) -> f32 {
    let side = |range: &mut dyn Iterator<Item = usize>| {
        let mut low = x[i];
        for j in range {
            if x[j] > x[i] {
                break;
            }
            low = low.min(x[j]);
        }
        low
    };
    x[i] - side(&mut (0..i).rev()).max(side(&mut (i + 1..x.len())))
}

/// The median beat's P wave as a template: all leads over the P wave +-20 ms (not past the P
/// search window), with the unshifted P onset and offset inside it.
#[derive(Debug, Clone)]
struct PTemplate {
    /// Per lead, the template samples.
    leads: Vec<Vec<f32>>,
    /// Samples from the template's start to the (shifted) QRS onset.
    lead_in: usize,
    /// Unshifted P onset and offset, samples from the template's start.
    on: usize,
    off: usize,
}

/// Delineates the P wave on the median beat of the 12 Hz leads (beats of the dominant QRS
/// morphology, aligned on their QRS, 500 ms before to 100 ms after the centre): averaging
/// across beats raises the P wave over noise, the P-wave signal-averaging principle (Fukunami
/// et al., Circulation 83(1), 1991). `None` where the median beat shows no P wave.
fn p_template(
    p: &Prepared,
    params: &DelineationParams,
    median: &MedianBeat,
    (before, _): (usize, usize),
    beats: &[Beat],
    prev_ends: &[Option<usize>],
    rest_slow: f32,
) -> Option<PTemplate> {
    let rate = p.rate;
    let (pre, post) = (ms(rate, 500.0), ms(rate, 100.0));
    let members: Vec<usize> = median.aligned.iter().flatten().copied().collect();
    let slow = build_median(&p.slow, &members, pre, post);
    if slow.is_empty() {
        return None;
    }
    let qrs_on = pre.checked_sub(before)?;
    // The previous T offset at the record's median distance before the QRS onset.
    let mut gaps: Vec<usize> = beats
        .iter()
        .zip(prev_ends)
        .filter_map(|(b, pe)| b.qrs_on?.checked_sub((*pe)?))
        .collect();
    gaps.sort_unstable();
    let prev_end = gaps.get(gaps.len() / 2).map(|g| qrs_on.saturating_sub(*g));
    let sv_slow = spatial_velocity(&slow, 4);
    let on_median = Prepared {
        rate,
        base: Vec::new(),
        fast: Vec::new(),
        slow,
        sv_fast: Vec::new(),
        sv_slow,
        sv_detect: Vec::new(),
        spikes: Vec::new(),
    };
    let beat = Beat {
        r: pre,
        p_on: None,
        p_off: None,
        qrs_on: Some(qrs_on),
        qrs_off: None,
        t_off: None,
    };
    // Averaging n beats divides random noise by sqrt(n): the median beat's boundaries are
    // walked against that lower floor, while its amplitude must still clear the record's.
    let floor = rest_slow / (members.len() as f32).sqrt();
    let (on, off) = p_wave(&on_median, params, &beat, prev_end, rest_slow, floor)?;
    let on = per_lead_p_onset(&on_median.slow, params, rate, on, off, qrs_on).unwrap_or(on);
    let start = on.saturating_sub(ms(rate, 20.0));
    // Not past the P search window: the 12 Hz leads carry the QRS's upstroke before its onset,
    // which every beat would match.
    let end = (off + ms(rate, 20.0))
        .min(qrs_on.saturating_sub(ms(rate, params.p_gap_ms + QRS_ON_LAG_MS)));
    if end < start + ms(rate, 40.0) {
        return None;
    }
    Some(PTemplate {
        leads: on_median
            .slow
            .iter()
            .map(|l| l[start..end].to_vec())
            .collect(),
        lead_in: qrs_on.checked_sub(start)?,
        on: on - start,
        off: off - start,
    })
}

/// The P onset of a median beat's 12 Hz `leads` from the leads one by one: on each lead whose P
/// deviation (largest in `on..off` from the level just before the unshifted QRS onset `qrs_on`)
/// is at least `p_lead_min` of the largest and 0.015 mV, the steepest rise towards that
/// extremum (within 80 ms before it, the lead's polarity), then back to where the slope falls
/// below `p_lead_slope_frac` of it; the global onset is the `p_lead_rank`-th earliest of those
/// (0 the earliest), no earlier than 40 ms before the envelope's `on`. The multi-lead envelope
/// walk stops late where the P wave begins in a few leads only or its start is shallow
/// (a small first component); on LUDB this took the held-out P onset SD from 18.0 to 16.6 ms
/// and the global PR SD from 13.6 to 12.0 ms (constants chosen on records 1-100).
/// `None` where no lead qualifies.
fn per_lead_p_onset(
    leads: &[Vec<f32>],
    params: &DelineationParams,
    rate: f64,
    on: usize,
    off: usize,
    qrs_on: usize,
) -> Option<usize> {
    let level_at = qrs_on.checked_sub(ms(rate, QRS_ON_LAG_MS + 5.0))?;
    let lo = on.saturating_sub(ms(rate, 40.0)).max(1);
    let peaks: Vec<(usize, f32)> = leads
        .iter()
        .map(|l| {
            let lv = l[level_at];
            let pk = (on..off.max(on + 1))
                .filter(|&i| i < l.len())
                .max_by(|&a, &b| (l[a] - lv).abs().total_cmp(&(l[b] - lv).abs()))
                .unwrap_or(on);
            (pk, l.get(pk).map_or(0.0, |v| v - lv))
        })
        .collect();
    let top = peaks.iter().map(|(_, a)| a.abs()).fold(0.0, f32::max);
    let mut onsets: Vec<usize> = Vec::new();
    for (l, &(pk, amp)) in leads.iter().zip(&peaks) {
        if amp.abs() < params.p_lead_min as f32 * top || amp.abs() < 0.015 || pk + 1 >= l.len() {
            continue;
        }
        let sign = amp.signum();
        let d = |i: usize| sign * (l[i + 1] - l[i - 1]);
        let from = pk.saturating_sub(ms(rate, 80.0)).max(lo);
        let Some(xm) = (from..pk.max(from + 1)).max_by(|&a, &b| d(a).total_cmp(&d(b))) else {
            continue;
        };
        let thr = params.p_lead_slope_frac as f32 * d(xm);
        let mut i = xm;
        while i > lo && d(i) >= thr {
            i -= 1;
        }
        onsets.push(i);
    }
    onsets.sort_unstable();
    onsets
        .get(params.p_lead_rank.min(onsets.len().checked_sub(1)?))
        .copied()
}

/// Correlation (all leads, each lead's mean removed) and gain of `x[s..]` on the template.
fn template_fit(x: &[Vec<f32>], t: &[Vec<f32>], s: usize) -> (f64, f64) {
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (l, tl) in x.iter().zip(t) {
        let w = &l[s..s + tl.len()];
        let mx = w.iter().map(|&v| v as f64).sum::<f64>() / tl.len() as f64;
        let mt = tl.iter().map(|&v| v as f64).sum::<f64>() / tl.len() as f64;
        for (&a, &b) in w.iter().zip(tl) {
            let (a, b) = (a as f64 - mx, b as f64 - mt);
            sxy += a * b;
            sxx += a * a;
            syy += b * b;
        }
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return (0.0, 0.0);
    }
    (sxy / (sxx * syy).sqrt(), sxy / syy)
}

/// The P wave of one beat by the median P template: the template is slid from
/// `p_match_early_ms` earlier to `p_match_late_ms` later than its place in the median beat
/// (relative to the QRS onset), after the previous T offset; the beat has the median's P where
/// the best placement correlates at `p_match_min_corr` or more with a gain between
/// `1 / p_match_max_gain` and `p_match_max_gain`. Returns shifted onset and offset.
fn match_p(
    p: &Prepared,
    params: &DelineationParams,
    t: &PTemplate,
    beat: &Beat,
    prev_end: Option<usize>,
) -> Option<(usize, usize)> {
    let rate = p.rate;
    let n = p.sv_slow.len();
    let width = t.leads.first()?.len();
    let nominal = beat.qrs_on?.checked_sub(t.lead_in)?;
    let lo = nominal
        .saturating_sub(ms(rate, params.p_match_early_ms))
        .max(prev_end.unwrap_or(0));
    let hi = (nominal + ms(rate, params.p_match_late_ms)).min(n.checked_sub(width)?);
    let (s, (corr, gain)) = (lo..=hi)
        .map(|s| (s, template_fit(&p.slow, &t.leads, s)))
        .max_by(|a, b| a.1.0.total_cmp(&b.1.0))?;
    let g = params.p_match_max_gain;
    if corr < params.p_match_min_corr || !(1.0 / g..=g).contains(&gain) {
        return None;
    }
    Some((s + t.on, s + t.off))
}

/// Keeps P waves only where the record's PR intervals are consistent: at least half the beats
/// have a P wave within `tol` samples of the median PR or one matched to the median P
/// (`matched`); elsewhere (atrial fibrillation's f waves give a P-like deflection at random
/// distances) all P waves are dropped. Unmatched beats whose PR is far from the median lose
/// theirs.
fn p_consistency(beats: &mut [Beat], matched: &[bool], tol: usize) {
    let mut prs: Vec<usize> = beats
        .iter()
        .filter_map(|b| Some(b.qrs_on?.saturating_sub(b.p_on?)))
        .collect();
    if prs.is_empty() {
        return;
    }
    prs.sort_unstable();
    let median = prs[prs.len() / 2];
    let pr_of = |b: &Beat| b.qrs_on.zip(b.p_on).map(|(q, p)| q.saturating_sub(p));
    let consistent = beats
        .iter()
        .zip(matched)
        .filter(|(b, m)| **m || pr_of(b).is_some_and(|pr| pr.abs_diff(median) <= tol))
        .count();
    let keep_record = 2 * consistent >= beats.len() && consistent >= 2;
    for (b, &m) in beats.iter_mut().zip(matched) {
        let keep = keep_record && (m || pr_of(b).is_some_and(|pr| pr.abs_diff(median) <= tol));
        if !keep {
            b.p_on = None;
            b.p_off = None;
        }
    }
}
