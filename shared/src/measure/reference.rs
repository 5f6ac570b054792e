//! Reference delineations (LUDB's per-lead cardiologist annotations) turned into global
//! boundaries, and the scoring of a delineation against them: sensitivity, positive predictive
//! value and timing error per boundary with a matching window, and per-record global intervals;
//! the fitting of the delineator's five constant boundary shifts on such evaluations
//! ([`fit_shifts`]) and their k-fold cross-validation on LUDB ([`cross_validate_ludb`]).
//!
//! Global reference: the waves of one kind annotated in different leads are merged when their
//! spans overlap; the merged wave's onset is the earliest annotated onset, its offset the latest
//! annotated offset (what a 12-lead cart's global measurement means). Only the annotated span of
//! a record (first to last annotation) is scored: a detection outside it is neither a hit nor a
//! false positive.

use super::{Beat, DelineationParams};
use crate::wfdb::annotation::{Wave, WaveKind};
use serde::{Deserialize, Serialize};

/// A wave merged over the leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalWave {
    /// Earliest annotated onset.
    pub onset: Option<usize>,
    /// Median of the leads' peaks.
    pub peak: usize,
    /// Latest annotated offset.
    pub offset: Option<usize>,
}

/// A record's global reference.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reference {
    /// P waves in time order.
    pub p: Vec<GlobalWave>,
    /// QRS complexes in time order.
    pub qrs: Vec<GlobalWave>,
    /// T waves in time order.
    pub t: Vec<GlobalWave>,
    /// First and last annotated sample, if any annotation.
    pub span: Option<(usize, usize)>,
}

/// Merges the per-lead waves (one `Vec` per lead) into a global reference.
pub fn global_reference(per_lead: &[Vec<Wave>]) -> Reference {
    global_reference_leaving_out(per_lead, 0)
}

/// [`global_reference`] with each merged wave's `leave_out` earliest onsets and latest offsets
/// left out (the next one counts; the last one left where fewer are annotated): a reference
/// that one lead's outlying mark does not set, for judging how much the earliest/latest
/// definition's scores owe to single marks. `0` is the cart's definition.
pub fn global_reference_leaving_out(per_lead: &[Vec<Wave>], leave_out: usize) -> Reference {
    let all: Vec<&Wave> = per_lead.iter().flatten().collect();
    let span = all
        .iter()
        .flat_map(|w| [w.onset.unwrap_or(w.peak), w.offset.unwrap_or(w.peak)])
        .fold(None, |acc: Option<(usize, usize)>, s| {
            Some(acc.map_or((s, s), |(a, b)| (a.min(s), b.max(s))))
        });
    let merge = |kind: WaveKind| {
        let mut waves: Vec<&Wave> = all.iter().copied().filter(|w| w.kind == kind).collect();
        waves.sort_by_key(|w| w.onset.unwrap_or(w.peak));
        let mut groups: Vec<Vec<&Wave>> = Vec::new();
        let mut group_end = 0usize;
        for w in waves {
            let (s, e) = (w.onset.unwrap_or(w.peak), w.offset.unwrap_or(w.peak));
            match groups.last_mut() {
                Some(g) if s <= group_end => {
                    g.push(w);
                    group_end = group_end.max(e);
                }
                _ => {
                    groups.push(vec![w]);
                    group_end = e;
                }
            }
        }
        groups
            .into_iter()
            .map(|g| {
                let mut peaks: Vec<usize> = g.iter().map(|w| w.peak).collect();
                peaks.sort_unstable();
                let mut onsets: Vec<usize> = g.iter().filter_map(|w| w.onset).collect();
                onsets.sort_unstable();
                let mut offsets: Vec<usize> = g.iter().filter_map(|w| w.offset).collect();
                offsets.sort_unstable_by(|a, b| b.cmp(a));
                let nth = |v: &[usize]| v.get(leave_out.min(v.len().saturating_sub(1))).copied();
                GlobalWave {
                    onset: nth(&onsets),
                    peak: peaks[peaks.len() / 2],
                    offset: nth(&offsets),
                }
            })
            .collect::<Vec<_>>()
    };
    Reference {
        p: merge(WaveKind::P),
        qrs: merge(WaveKind::Qrs),
        t: merge(WaveKind::T),
        span,
    }
}

/// The five scored boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Boundary {
    /// P onset.
    POn,
    /// P offset.
    POff,
    /// QRS onset.
    QrsOn,
    /// QRS offset.
    QrsOff,
    /// T offset.
    TOff,
}

impl Boundary {
    /// All five, in table order.
    pub const ALL: [Boundary; 5] = [
        Boundary::POn,
        Boundary::POff,
        Boundary::QrsOn,
        Boundary::QrsOff,
        Boundary::TOff,
    ];

    /// Table label.
    pub fn label(self) -> &'static str {
        match self {
            Boundary::POn => "P on",
            Boundary::POff => "P off",
            Boundary::QrsOn => "QRS on",
            Boundary::QrsOff => "QRS off",
            Boundary::TOff => "T off",
        }
    }

    /// This boundary of a detected beat.
    pub fn of_beat(self, b: &Beat) -> Option<usize> {
        match self {
            Boundary::POn => b.p_on,
            Boundary::POff => b.p_off,
            Boundary::QrsOn => b.qrs_on,
            Boundary::QrsOff => b.qrs_off,
            Boundary::TOff => b.t_off,
        }
    }

    /// This boundary's reference samples.
    pub fn of_reference(self, r: &Reference) -> Vec<usize> {
        let (waves, onset) = match self {
            Boundary::POn => (&r.p, true),
            Boundary::POff => (&r.p, false),
            Boundary::QrsOn => (&r.qrs, true),
            Boundary::QrsOff => (&r.qrs, false),
            Boundary::TOff => (&r.t, false),
        };
        waves
            .iter()
            .filter_map(|w| if onset { w.onset } else { w.offset })
            .collect()
    }
}

impl Boundary {
    /// The constant shift (ms) `params` adds to this boundary.
    pub fn shift_ms(self, params: &DelineationParams) -> f64 {
        match self {
            Boundary::POn => params.p_on_shift_ms,
            Boundary::POff => params.p_off_shift_ms,
            Boundary::QrsOn => params.qrs_on_shift_ms,
            Boundary::QrsOff => params.qrs_off_shift_ms,
            Boundary::TOff => params.t_off_shift_ms,
        }
    }

    /// Sets the constant shift (ms) `params` adds to this boundary.
    pub fn set_shift_ms(self, params: &mut DelineationParams, ms: f64) {
        let slot = match self {
            Boundary::POn => &mut params.p_on_shift_ms,
            Boundary::POff => &mut params.p_off_shift_ms,
            Boundary::QrsOn => &mut params.qrs_on_shift_ms,
            Boundary::QrsOff => &mut params.qrs_off_shift_ms,
            Boundary::TOff => &mut params.t_off_shift_ms,
        };
        *slot = ms;
    }
}

/// The five constant boundary shifts (ms), in [`Boundary::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shifts(pub [f64; 5]);

impl Shifts {
    /// The shifts `params` applies.
    pub fn of(params: &DelineationParams) -> Shifts {
        Shifts(Boundary::ALL.map(|b| b.shift_ms(params)))
    }

    /// `params` with these shifts.
    pub fn apply(&self, params: &DelineationParams) -> DelineationParams {
        let mut p = params.clone();
        for (b, &v) in Boundary::ALL.iter().zip(&self.0) {
            b.set_shift_ms(&mut p, v);
        }
        p
    }

    /// The shift of one boundary.
    pub fn get(&self, b: Boundary) -> f64 {
        Boundary::ALL
            .iter()
            .position(|x| *x == b)
            .map_or(0.0, |k| self.0[k])
    }
}

impl std::fmt::Display for Shifts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cells: Vec<String> = Boundary::ALL
            .iter()
            .zip(&self.0)
            .map(|(b, v)| format!("{} {:+.1}", b.label(), v + 0.0))
            .collect();
        write!(f, "{} ms", cells.join(", "))
    }
}

/// Why shifts could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// No matched pair of this boundary in the fitting records.
    #[error("no matched {0:?} boundary to fit its shift on")]
    NoMatches(Boundary),
    /// The evaluations were not made without shifts.
    #[error("fitting needs evaluations made with all five shifts zero, got {0}")]
    Shifted(Shifts),
}

/// Fits the five constant shifts on evaluations of the *unshifted* detector (all five shifts
/// zero): each shift is minus the median of that boundary's matched errors, pooled over the
/// beats of `evals` (the median, not the mean, so a few mismatched waves do not pull it).
pub fn fit_shifts(evals: &[RecordEvaluation]) -> Result<Shifts, FitError> {
    if let Some(e) = evals.iter().find(|e| e.shifts.0.iter().any(|&v| v != 0.0)) {
        return Err(FitError::Shifted(e.shifts));
    }
    let mut out = [0.0; 5];
    for (k, &b) in Boundary::ALL.iter().enumerate() {
        let errors: Vec<f64> = evals
            .iter()
            .flat_map(|e| e.boundaries[k].errors_ms.iter().copied())
            .collect();
        out[k] = -median(errors).ok_or(FitError::NoMatches(b))?;
    }
    Ok(Shifts(out))
}

/// Why a cross-validation could not run.
#[derive(Debug, thiserror::Error)]
pub enum CrossValidationError {
    /// A record could not be evaluated.
    #[error("record {record}: {source}")]
    Eval {
        /// The record's name.
        record: String,
        /// Why.
        #[source]
        source: EvalError,
    },
    /// A fold's shifts could not be fitted.
    #[error("fold {fold}: {source}")]
    Fit {
        /// The fold's index.
        fold: usize,
        /// Why.
        #[source]
        source: FitError,
    },
    /// Fewer than two folds.
    #[error("cross-validation needs at least two folds, got {0}")]
    TooFewFolds(usize),
}

/// A k-fold cross-validation of the five shifts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    /// For each fold, the shifts fitted on all the *other* folds.
    pub fold_shifts: Vec<Shifts>,
    /// Every record evaluated with the shifts fitted without its fold (in fold order).
    pub held_out: Vec<RecordEvaluation>,
    /// The shifts fitted on all folds together (what a detector shipped after this validation
    /// would carry).
    pub all_shifts: Shifts,
}

/// Cross-validates the constant shifts on LUDB records: every record is evaluated once without
/// shifts; for each fold, the shifts are fitted ([`fit_shifts`]) on the other folds' unshifted
/// evaluations and the fold's records are evaluated with `params` carrying those shifts. Only
/// the five shifts are fitted; every other parameter is `params`'.
pub fn cross_validate_ludb(
    dir: &std::path::Path,
    folds: &[Vec<String>],
    params: &DelineationParams,
    window_ms: f64,
) -> Result<CrossValidation, CrossValidationError> {
    if folds.len() < 2 {
        return Err(CrossValidationError::TooFewFolds(folds.len()));
    }
    let eval = |name: &String, p: &DelineationParams| {
        evaluate_ludb_record(&dir.join(name), p, window_ms).map_err(|source| {
            CrossValidationError::Eval {
                record: name.clone(),
                source,
            }
        })
    };
    let unshifted_params = Shifts([0.0; 5]).apply(params);
    let unshifted: Vec<Vec<RecordEvaluation>> = folds
        .iter()
        .map(|f| f.iter().map(|r| eval(r, &unshifted_params)).collect())
        .collect::<Result<_, _>>()?;
    let mut fold_shifts = Vec::with_capacity(folds.len());
    let mut held_out = Vec::new();
    for (k, fold) in folds.iter().enumerate() {
        let training: Vec<RecordEvaluation> = unshifted
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .flat_map(|(_, e)| e.iter().cloned())
            .collect();
        let shifts = fit_shifts(&training)
            .map_err(|source| CrossValidationError::Fit { fold: k, source })?;
        let p = shifts.apply(params);
        for r in fold {
            held_out.push(eval(r, &p)?);
        }
        fold_shifts.push(shifts);
    }
    let all: Vec<RecordEvaluation> = unshifted.into_iter().flatten().collect();
    let all_shifts = fit_shifts(&all).map_err(|source| CrossValidationError::Fit {
        fold: folds.len(),
        source,
    })?;
    Ok(CrossValidation {
        fold_shifts,
        held_out,
        all_shifts,
    })
}

/// Matching counts and errors of one boundary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BoundaryScore {
    /// Matched pairs.
    pub true_positives: usize,
    /// Reference boundaries without a detection.
    pub false_negatives: usize,
    /// Detections inside the span without a reference.
    pub false_positives: usize,
    /// Detected minus reference (ms) of each matched pair.
    pub errors_ms: Vec<f64>,
}

impl BoundaryScore {
    /// Adds another score's counts and errors.
    pub fn add(&mut self, other: &BoundaryScore) {
        self.true_positives += other.true_positives;
        self.false_negatives += other.false_negatives;
        self.false_positives += other.false_positives;
        self.errors_ms.extend_from_slice(&other.errors_ms);
    }

    /// Sensitivity (%), `None` without reference boundaries.
    pub fn sensitivity(&self) -> Option<f64> {
        let n = self.true_positives + self.false_negatives;
        (n > 0).then(|| 100.0 * self.true_positives as f64 / n as f64)
    }

    /// Positive predictive value (%), `None` without detections.
    pub fn ppv(&self) -> Option<f64> {
        let n = self.true_positives + self.false_positives;
        (n > 0).then(|| 100.0 * self.true_positives as f64 / n as f64)
    }

    /// Mean and standard deviation of the errors (ms).
    pub fn mean_sd(&self) -> Option<(f64, f64)> {
        mean_sd(&self.errors_ms)
    }
}

/// Mean and (population) standard deviation.
pub fn mean_sd(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    Some((mean, var.sqrt()))
}

/// Matches `detected` to `reference` one to one, closest pairs first, within `window` samples.
/// Detections outside `span` widened by `window` are ignored; unmatched detections count as
/// false positives only inside `span`.
pub fn score(
    detected: &[usize],
    reference: &[usize],
    span: (usize, usize),
    window: usize,
    ms_per_sample: f64,
) -> BoundaryScore {
    let lo = span.0.saturating_sub(window);
    let hi = span.1 + window;
    let det: Vec<usize> = detected
        .iter()
        .copied()
        .filter(|&d| (lo..=hi).contains(&d))
        .collect();
    let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &d) in det.iter().enumerate() {
        for (j, &r) in reference.iter().enumerate() {
            let dist = d.abs_diff(r);
            if dist <= window {
                pairs.push((dist, i, j));
            }
        }
    }
    pairs.sort_unstable();
    let mut det_used = vec![false; det.len()];
    let mut ref_used = vec![false; reference.len()];
    let mut s = BoundaryScore::default();
    for (_, i, j) in pairs {
        if !det_used[i] && !ref_used[j] {
            det_used[i] = true;
            ref_used[j] = true;
            s.true_positives += 1;
            s.errors_ms
                .push((det[i] as f64 - reference[j] as f64) * ms_per_sample);
        }
    }
    s.false_negatives = ref_used.iter().filter(|u| !**u).count();
    s.false_positives = det
        .iter()
        .zip(&det_used)
        .filter(|(d, u)| !**u && (span.0..=span.1).contains(*d))
        .count();
    s
}

/// Per-record global intervals (ms, medians over beats) from the reference: PR, QRS, QT and the
/// mean R-R of the annotated QRS peaks.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ReferenceIntervals {
    /// PR (P onset to QRS onset).
    pub pr_ms: Option<f64>,
    /// QRS duration.
    pub qrs_ms: Option<f64>,
    /// QT (QRS onset to T offset).
    pub qt_ms: Option<f64>,
    /// Mean R-R of the annotated QRS complexes.
    pub rr_mean_ms: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The reference's global intervals: each QRS takes the P wave peaking in the 400 ms before
/// its onset and the T wave peaking before the next QRS.
pub fn reference_intervals(r: &Reference, rate_hz: f64) -> ReferenceIntervals {
    let to_ms = 1000.0 / rate_hz;
    let window = (0.4 * rate_hz) as usize;
    let (mut pr, mut qrs, mut qt) = (Vec::new(), Vec::new(), Vec::new());
    for (k, q) in r.qrs.iter().enumerate() {
        let next = r.qrs.get(k + 1).map_or(usize::MAX, |n| n.peak);
        if let (Some(on), Some(off)) = (q.onset, q.offset) {
            qrs.push((off as f64 - on as f64) * to_ms);
        }
        if let Some(on) = q.onset {
            if let Some(p_on) =
                r.p.iter()
                    .filter(|p| p.peak < on && p.peak + window >= on)
                    .filter_map(|p| p.onset)
                    .next_back()
            {
                pr.push((on as f64 - p_on as f64) * to_ms);
            }
            if let Some(t_off) =
                r.t.iter()
                    .filter(|t| t.peak > q.peak && t.peak < next)
                    .filter_map(|t| t.offset)
                    .next()
            {
                qt.push((t_off as f64 - on as f64) * to_ms);
            }
        }
    }
    let rr: Vec<f64> = r
        .qrs
        .windows(2)
        .map(|w| (w[1].peak as f64 - w[0].peak as f64) * to_ms)
        .collect();
    ReferenceIntervals {
        pr_ms: median(pr),
        qrs_ms: median(qrs),
        qt_ms: median(qt),
        rr_mean_ms: (!rr.is_empty()).then(|| rr.iter().sum::<f64>() / rr.len() as f64),
    }
}

/// Why a LUDB record cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The record's header or signals.
    #[error(transparent)]
    Record(#[from] crate::wfdb::WfdbError),
    /// An annotation file.
    #[error(transparent)]
    Annotation(#[from] crate::wfdb::annotation::AnnotationError),
}

/// LUDB's annotation extensions, one per lead, in conventional order.
pub const LUDB_ANNOTATORS: [&str; 12] = [
    "i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6",
];

/// The frontal axis category a LUDB header states (`Electric axis of the heart: ...`), with
/// 'horizontal' and 'vertical' (positions within the normal range, -30..+90) as normal.
pub fn ludb_axis_category(meta: &crate::record::RecordMeta) -> Option<super::AxisCategory> {
    use super::AxisCategory;
    meta.source_labels.iter().find_map(|l| match l {
        crate::record::SourceLabel::Text(t) => {
            let t = crate::labels::ludb::normalise(t);
            let rest = t.strip_prefix("electric axis of the heart:")?.trim();
            match rest {
                "normal" | "horizontal" | "vertical" => Some(AxisCategory::Normal),
                "left axis deviation" => Some(AxisCategory::Left),
                "right axis deviation" => Some(AxisCategory::Right),
                _ => None,
            }
        }
        _ => None,
    })
}

/// LUDB's cardiologists call an axis below this "left axis deviation" (degrees): the lower
/// limit of the normal position (+30..+69 deg) of the Russian convention they follow, whose
/// 'horizontal' position (0..+29 deg) their statements mostly fold into left deviation; the
/// international limit (-30 deg, [`super::axis_category`]) and the Russian textbook one (0 deg)
/// are shown beside it in [`Summary::table`].
pub const LUDB_LEFT_AXIS_BELOW_DEG: f64 = 30.0;

/// The category a measured frontal QRS axis (degrees) has in LUDB's statements: right above
/// +90 deg (and below -90 deg, as LUDB states no extreme axis), left below
/// [`LUDB_LEFT_AXIS_BELOW_DEG`], normal (with horizontal and vertical) between.
pub fn ludb_axis_of(deg: f64) -> super::AxisCategory {
    ludb_axis_with(deg, LUDB_LEFT_AXIS_BELOW_DEG)
}

fn ludb_axis_with(deg: f64, left_below: f64) -> super::AxisCategory {
    use super::AxisCategory;
    if !(-90.0..=90.0).contains(&deg) {
        AxisCategory::Right
    } else if deg < left_below {
        AxisCategory::Left
    } else {
        AxisCategory::Normal
    }
}

/// One record's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvaluation {
    /// Record name.
    pub id: String,
    /// Per-boundary scores, in [`Boundary::ALL`] order.
    pub boundaries: Vec<BoundaryScore>,
    /// Whether the reference has P waves.
    pub has_p: bool,
    /// Reference intervals.
    pub reference: ReferenceIntervals,
    /// The measurements.
    pub measured: super::Measurements,
    /// The header's axis category.
    pub stated_axis: Option<super::AxisCategory>,
    /// Heart rate (bpm) from the detected beats inside the annotated span (first to last
    /// annotated QRS, +-75 ms), the same stretch the reference R-R covers.
    pub hr_in_span_bpm: Option<f64>,
    /// The boundary shifts the delineation applied.
    pub shifts: Shifts,
}

/// The global reference of one LUDB record (path without extension) from its twelve
/// per-lead annotation files.
pub fn ludb_reference(path: &std::path::Path) -> Result<Reference, EvalError> {
    ludb_reference_leaving_out(path, 0)
}

/// [`ludb_reference`] merged by [`global_reference_leaving_out`].
pub fn ludb_reference_leaving_out(
    path: &std::path::Path,
    leave_out: usize,
) -> Result<Reference, EvalError> {
    Ok(global_reference_leaving_out(
        &ludb_lead_waves(path)?,
        leave_out,
    ))
}

/// Each lead's own annotated waves of one LUDB record (path without extension), in
/// [`LUDB_ANNOTATORS`] order.
pub fn ludb_lead_waves(path: &std::path::Path) -> Result<Vec<Vec<Wave>>, EvalError> {
    let mut per_lead = Vec::with_capacity(LUDB_ANNOTATORS.len());
    for ext in LUDB_ANNOTATORS {
        let mut file = path.as_os_str().to_owned();
        file.push(".");
        file.push(ext);
        let annotations = crate::wfdb::annotation::read_annotations(std::path::Path::new(&file))?;
        per_lead.push(crate::wfdb::annotation::waves(&annotations));
    }
    Ok(per_lead)
}

/// Measures one LUDB record (path without extension) and scores it against its annotations
/// with a matching window of `window_ms`.
pub fn evaluate_ludb_record(
    path: &std::path::Path,
    params: &DelineationParams,
    window_ms: f64,
) -> Result<RecordEvaluation, EvalError> {
    let net = super::learned::Delineator::embedded().ok();
    evaluate_ludb_record_using(path, params, window_ms, net)
}

/// [`evaluate_ludb_record`] with a given learned delineator (or none).
pub fn evaluate_ludb_record_using(
    path: &std::path::Path,
    params: &DelineationParams,
    window_ms: f64,
    net: Option<&super::learned::Delineator>,
) -> Result<RecordEvaluation, EvalError> {
    evaluate_ludb_record_against(path, params, window_ms, net, 0)
}

/// [`evaluate_ludb_record_using`] against the reference merged with `leave_out` extreme marks
/// of each boundary left out ([`global_reference_leaving_out`]; 0: the cart's definition).
pub fn evaluate_ludb_record_against(
    path: &std::path::Path,
    params: &DelineationParams,
    window_ms: f64,
    net: Option<&super::learned::Delineator>,
    leave_out: usize,
) -> Result<RecordEvaluation, EvalError> {
    let record = crate::wfdb::read_record(path)?;
    let rate = record.sample_rate_hz();
    let reference = ludb_reference_leaving_out(path, leave_out)?;
    let measured = super::measure_using(&record, params, net);
    let window = (window_ms * rate / 1000.0).round() as usize;
    let boundaries = Boundary::ALL
        .iter()
        .map(|&b| {
            let det: Vec<usize> = measured.beats.iter().filter_map(|x| b.of_beat(x)).collect();
            match reference.span {
                Some(span) => score(
                    &det,
                    &b.of_reference(&reference),
                    span,
                    window,
                    1000.0 / rate,
                ),
                None => BoundaryScore::default(),
            }
        })
        .collect();
    let hr_in_span_bpm = match (reference.qrs.first(), reference.qrs.last()) {
        (Some(a), Some(b)) => {
            let margin = (0.075 * rate) as usize;
            let rs: Vec<usize> = measured
                .beats
                .iter()
                .map(|x| x.r)
                .filter(|&r| r + margin >= a.peak && r <= b.peak + margin)
                .collect();
            (rs.len() >= 2).then(|| {
                let mean_rr = (rs[rs.len() - 1] - rs[0]) as f64 / (rs.len() - 1) as f64;
                60.0 * rate / mean_rr
            })
        }
        _ => None,
    };
    Ok(RecordEvaluation {
        hr_in_span_bpm,
        shifts: Shifts::of(params),
        id: record.meta.id.clone(),
        boundaries,
        has_p: !reference.p.is_empty(),
        reference: reference_intervals(&reference, rate),
        stated_axis: ludb_axis_category(&record.meta),
        measured,
    })
}

/// Differences (measured minus reference, ms) of one global interval over records.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IntervalErrors {
    /// One difference per record where both exist.
    pub errors_ms: Vec<f64>,
    /// Records with a reference value but no measured one.
    pub unmeasured: usize,
}

/// The whole database's summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Records evaluated.
    pub records: usize,
    /// Boundary scores over all records (P over records whose reference has P waves).
    pub boundaries: Vec<(Boundary, BoundaryScore)>,
    /// P detections inside the span of records whose reference has no P wave.
    pub p_on_records_without_p: usize,
    /// PR errors.
    pub pr: IntervalErrors,
    /// QRS duration errors.
    pub qrs: IntervalErrors,
    /// QT errors.
    pub qt: IntervalErrors,
    /// Records whose heart rate over the annotated span is within 2 bpm of the reference's.
    pub hr_within_2: usize,
    /// Records whose whole-record heart rate (`hr_bpm`) is within 2 bpm of the reference's.
    pub hr_record_within_2: usize,
    /// Records with a reference heart rate.
    pub hr_records: usize,
    /// Records whose QRS axis category ([`ludb_axis_of`]) equals the stated one.
    pub axis_agree: usize,
    /// Records with a stated normal/left/right axis.
    pub axis_records: usize,
    /// Records with a stated axis but no measured one.
    pub axis_unmeasured: usize,
    /// (stated, measured) axis categories with their record counts.
    pub axis_confusion: Vec<(super::AxisCategory, super::AxisCategory, usize)>,
    /// (stated category, measured QRS axis in degrees) of every record with both.
    pub axis_values: Vec<(super::AxisCategory, f64)>,
}

impl Summary {
    /// Summarises record evaluations.
    pub fn of(evals: &[RecordEvaluation]) -> Summary {
        let mut s = Summary {
            records: evals.len(),
            boundaries: Boundary::ALL
                .iter()
                .map(|&b| (b, BoundaryScore::default()))
                .collect(),
            ..Summary::default()
        };
        for e in evals {
            for ((b, total), score) in s.boundaries.iter_mut().zip(&e.boundaries) {
                let is_p = matches!(b, Boundary::POn | Boundary::POff);
                if !is_p || e.has_p {
                    total.add(score);
                } else if *b == Boundary::POn {
                    s.p_on_records_without_p += score.false_positives;
                }
            }
            let m = &e.measured;
            let interval = |errs: &mut IntervalErrors, r: Option<f64>, d: Option<f64>| match (r, d)
            {
                (Some(r), Some(d)) => errs.errors_ms.push(d - r),
                (Some(_), None) => errs.unmeasured += 1,
                _ => {}
            };
            interval(&mut s.pr, e.reference.pr_ms, m.pr_ms);
            interval(&mut s.qrs, e.reference.qrs_ms, m.qrs_ms);
            interval(&mut s.qt, e.reference.qt_ms, m.qt_ms);
            if let Some(rr) = e.reference.rr_mean_ms {
                s.hr_records += 1;
                let close =
                    |hr: Option<f64>| hr.is_some_and(|hr| (hr - 60_000.0 / rr).abs() <= 2.0);
                s.hr_within_2 += usize::from(close(e.hr_in_span_bpm));
                s.hr_record_within_2 += usize::from(close(m.hr_bpm));
            }
            if let Some(stated) = e.stated_axis {
                s.axis_records += 1;
                match m.qrs_axis_deg {
                    Some(a) => {
                        let got = ludb_axis_of(a);
                        if got == stated {
                            s.axis_agree += 1;
                        }
                        s.axis_values.push((stated, a));
                        match s
                            .axis_confusion
                            .iter_mut()
                            .find(|(x, y, _)| *x == stated && *y == got)
                        {
                            Some(entry) => entry.2 += 1,
                            None => s.axis_confusion.push((stated, got, 1)),
                        }
                    }
                    None => s.axis_unmeasured += 1,
                }
            }
        }
        s
    }

    /// The score of one boundary.
    pub fn boundary(&self, b: Boundary) -> Option<&BoundaryScore> {
        self.boundaries
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, s)| s)
    }

    /// The tables as text, under a title line.
    pub fn table(&self, title: &str, window_ms: f64) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let mut out = format!(
            "{title}\nLUDB delineation, {} records, matching window {window_ms} ms \
             (P rows: records whose annotation has P waves)\n",
            self.records
        );
        out.push_str(&format!(
            "{:<8} {:>6} {:>5} {:>5} {:>8} {:>8} {:>9} {:>8}\n",
            "boundary", "TP", "FN", "FP", "Se %", "PPV %", "mean ms", "SD ms"
        ));
        for (b, sc) in &self.boundaries {
            let (m, sd) = sc
                .mean_sd()
                .map_or((None, None), |(m, s)| (Some(m), Some(s)));
            out.push_str(&format!(
                "{:<8} {:>6} {:>5} {:>5} {:>8} {:>8} {:>9} {:>8}\n",
                b.label(),
                sc.true_positives,
                sc.false_negatives,
                sc.false_positives,
                f(sc.sensitivity()),
                f(sc.ppv()),
                f(m),
                f(sd)
            ));
        }
        out.push_str(&format!(
            "P onsets detected inside the span of records without annotated P waves: {}\n",
            self.p_on_records_without_p
        ));
        out.push_str("\nglobal per record (measured - annotated, median over beats)\n");
        out.push_str(&format!(
            "{:<8} {:>8} {:>11} {:>9} {:>8}\n",
            "interval", "records", "unmeasured", "mean ms", "SD ms"
        ));
        for (name, e) in [("PR", &self.pr), ("QRS", &self.qrs), ("QT", &self.qt)] {
            let (m, sd) = mean_sd(&e.errors_ms).map_or((None, None), |(m, s)| (Some(m), Some(s)));
            out.push_str(&format!(
                "{:<8} {:>8} {:>11} {:>9} {:>8}\n",
                name,
                e.errors_ms.len(),
                e.unmeasured,
                f(m),
                f(sd)
            ));
        }
        let pct = |a: usize, b: usize| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        out.push_str(&format!(
            "\nHR (detected beats over the annotated span) within 2 bpm of the annotated R-R: \
             {}/{} records ({:.1} %); whole-record hr_bpm: {}/{} ({:.1} %)\n",
            self.hr_within_2,
            self.hr_records,
            pct(self.hr_within_2, self.hr_records),
            self.hr_record_within_2,
            self.hr_records,
            pct(self.hr_record_within_2, self.hr_records)
        ));
        out.push_str(&format!(
            "QRS axis category = header statement (normal incl. horizontal/vertical, left below \
             {LUDB_LEFT_AXIS_BELOW_DEG:+.0} deg, right above +90 deg): {}/{} records ({:.1} %), \
             {} unmeasured\n",
            self.axis_agree,
            self.axis_records,
            pct(self.axis_agree, self.axis_records),
            self.axis_unmeasured
        ));
        let mut confusion = self.axis_confusion.clone();
        confusion.sort_by_key(|(a, b, _)| (format!("{a:?}"), format!("{b:?}")));
        let cells: Vec<String> = confusion
            .iter()
            .map(|(a, b, n)| format!("{a:?}->{b:?} {n}"))
            .collect();
        out.push_str(&format!("  stated->measured: {}\n", cells.join(", ")));
        let agree_at = |left_below: f64| {
            self.axis_values
                .iter()
                .filter(|(stated, deg)| ludb_axis_with(*deg, left_below) == *stated)
                .count()
        };
        let alternatives: Vec<String> = [-30.0, 0.0, 15.0, 20.0, 25.0, 30.0]
            .iter()
            .map(|&t| {
                let a = agree_at(t);
                format!(
                    "left below {t:+.0} deg: {a} ({:.1} %)",
                    pct(a, self.axis_records)
                )
            })
            .collect();
        out.push_str(&format!(
            "  agreement if left axis deviation began elsewhere: {}\n",
            alternatives.join(", ")
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_reference_takes_earliest_onset_and_latest_offset() {
        let w = |kind, on, peak, off| Wave {
            kind,
            onset: Some(on),
            peak,
            offset: Some(off),
        };
        let lead_a = vec![
            w(WaveKind::Qrs, 100, 110, 140),
            w(WaveKind::Qrs, 600, 610, 640),
        ];
        let lead_b = vec![
            w(WaveKind::Qrs, 96, 112, 150),
            w(WaveKind::T, 250, 300, 380),
        ];
        let r = global_reference(&[lead_a, lead_b]);
        assert_eq!(r.qrs.len(), 2);
        assert_eq!((r.qrs[0].onset, r.qrs[0].offset), (Some(96), Some(150)));
        assert_eq!(r.t.len(), 1);
        assert_eq!(r.span, Some((96, 640)));
    }

    #[test]
    fn leaving_out_takes_the_next_mark_and_keeps_a_lone_one() {
        let w = |on, off| Wave {
            kind: WaveKind::P,
            onset: Some(on),
            peak: 100,
            offset: Some(off),
        };
        // Three leads mark one P wave; one lead's onset is far earlier than the others'.
        let leads = vec![vec![w(40, 130)], vec![w(78, 124)], vec![w(80, 140)]];
        let cart = global_reference_leaving_out(&leads, 0);
        assert_eq!(cart, global_reference(&leads));
        assert_eq!((cart.p[0].onset, cart.p[0].offset), (Some(40), Some(140)));
        let one = global_reference_leaving_out(&leads, 1);
        assert_eq!((one.p[0].onset, one.p[0].offset), (Some(78), Some(130)));
        assert_eq!(one.span, cart.span, "the annotated span is every mark's");
        // More left out than marked: the last mark stays, the wave is not lost.
        let all = global_reference_leaving_out(&leads, 5);
        assert_eq!((all.p[0].onset, all.p[0].offset), (Some(80), Some(124)));
        let lone = global_reference_leaving_out(&[vec![w(50, 150)]], 1);
        assert_eq!((lone.p[0].onset, lone.p[0].offset), (Some(50), Some(150)));
    }

    fn evaluation(errors: [&[f64]; 5], shifts: Shifts) -> RecordEvaluation {
        RecordEvaluation {
            id: "x".to_string(),
            boundaries: errors
                .iter()
                .map(|e| BoundaryScore {
                    true_positives: e.len(),
                    errors_ms: e.to_vec(),
                    ..BoundaryScore::default()
                })
                .collect(),
            has_p: true,
            reference: ReferenceIntervals::default(),
            measured: crate::measure::Measurements::default(),
            stated_axis: None,
            hr_in_span_bpm: None,
            shifts,
        }
    }

    #[test]
    fn shifts_are_minus_the_pooled_median_error() {
        let zero = Shifts([0.0; 5]);
        // P on errors pooled over two records: 2, 4, 10, 30 -> median 7; the outlier 30 does
        // not pull it as it would a mean.
        let a = evaluation([&[2.0, 30.0], &[-8.0], &[14.0], &[-12.0], &[0.0]], zero);
        let b = evaluation(
            [&[4.0, 10.0], &[-10.0], &[14.0, 16.0], &[-12.0], &[6.0]],
            zero,
        );
        let s = fit_shifts(&[a, b]).unwrap();
        assert_eq!(s, Shifts([-7.0, 9.0, -14.0, 12.0, -3.0]));
        assert_eq!(s.get(Boundary::QrsOff), 12.0);
        // Applied to parameters and read back.
        let p = s.apply(&DelineationParams::default());
        assert_eq!((p.p_on_shift_ms, p.t_off_shift_ms), (-7.0, -3.0));
        assert_eq!(Shifts::of(&p), s);
        // Evaluations of a shifted detector cannot be fitted on; nor a boundary never matched.
        let shifted = evaluation([&[1.0], &[1.0], &[1.0], &[1.0], &[1.0]], s);
        assert_eq!(fit_shifts(&[shifted]), Err(FitError::Shifted(s)));
        let no_t = evaluation([&[1.0], &[1.0], &[1.0], &[1.0], &[]], zero);
        assert_eq!(
            fit_shifts(&[no_t]),
            Err(FitError::NoMatches(Boundary::TOff))
        );
    }

    #[test]
    fn ludb_axis_categories_use_ludb_limits() {
        use crate::measure::AxisCategory;
        assert_eq!(ludb_axis_of(29.9), AxisCategory::Left);
        assert_eq!(ludb_axis_of(-45.0), AxisCategory::Left);
        assert_eq!(ludb_axis_of(30.0), AxisCategory::Normal);
        assert_eq!(ludb_axis_of(90.0), AxisCategory::Normal);
        assert_eq!(ludb_axis_of(90.5), AxisCategory::Right);
        // LUDB states no extreme axis: beyond -90 deg counts as right.
        assert_eq!(ludb_axis_of(-120.0), AxisCategory::Right);
    }

    #[test]
    fn shifts_move_the_output_and_nothing_else() {
        // A synthetic 12-lead PQRST train: delineated with and without shifts, every boundary
        // moves by exactly its shift (the windows are placed from unshifted boundaries), which
        // makes the shift fit on an unshifted delineation exact.
        let rate = 500.0;
        let n = 5000;
        let pulse = |t: f64, a: f64, b: f64, amp: f64| {
            if t <= a || t >= b {
                0.0
            } else {
                amp * (std::f64::consts::PI * (t - a) / (b - a)).sin().powi(2)
            }
        };
        let leads: Vec<Vec<f32>> = (0..12)
            .map(|l| {
                let g = 0.3 + 0.1 * l as f64;
                (0..n)
                    .map(|i| {
                        let t = i as f64 / rate;
                        let mut v = 0.0;
                        let mut r = 0.5;
                        while r < 9.8 {
                            v += pulse(t, r - 0.2, r - 0.1, 0.15 * g)
                                + pulse(t, r - 0.04, r + 0.045, 1.2 * g)
                                + pulse(t, r + 0.15, r + 0.33, 0.35 * g);
                            r += 0.8;
                        }
                        v as f32
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = leads.iter().map(Vec::as_slice).collect();
        let prepared = crate::measure::delineate::prepare(&refs, rate);
        let zero = Shifts([0.0; 5]).apply(&DelineationParams::default());
        let shifts = Shifts([6.0, -10.0, -14.0, 8.0, -4.0]);
        let a = crate::measure::delineate::delineate(&prepared, &zero);
        let b = crate::measure::delineate::delineate(&prepared, &shifts.apply(&zero));
        assert_eq!(a.len(), b.len());
        assert!(a.len() >= 10);
        let mut checked = 0;
        for (x, y) in a.iter().zip(&b) {
            for (k, bd) in Boundary::ALL.iter().enumerate() {
                if let (Some(u), Some(v)) = (bd.of_beat(x), bd.of_beat(y)) {
                    assert_eq!(v as f64 - u as f64, shifts.0[k] / 2.0, "{bd:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "{checked} boundaries compared");
    }

    #[test]
    fn cross_validation_needs_two_folds() {
        let r = cross_validate_ludb(
            std::path::Path::new("/nonexistent"),
            &[vec!["1".to_string()]],
            &DelineationParams::default(),
            150.0,
        );
        assert!(matches!(r, Err(CrossValidationError::TooFewFolds(1))));
    }

    #[test]
    fn scoring_matches_within_the_window_and_ignores_outside_the_span() {
        // Reference at 100, 500, 900; detections at 104 (hit), 530 (hit), 700 (FP),
        // 2000 (outside the span: ignored); 900 missed.
        let s = score(&[104, 530, 700, 2000], &[100, 500, 900], (90, 950), 75, 2.0);
        assert_eq!(
            (s.true_positives, s.false_negatives, s.false_positives),
            (2, 1, 1)
        );
        assert_eq!(s.errors_ms, vec![8.0, 60.0]);
        assert_eq!(s.sensitivity(), Some(200.0 / 3.0));
        assert_eq!(s.ppv(), Some(200.0 / 3.0));
        let (m, sd) = s.mean_sd().unwrap_or((0.0, 0.0));
        assert_eq!((m, sd), (34.0, 26.0));
    }
}
