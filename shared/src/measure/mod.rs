//! Global ECG measurements of a 10 s, 12-lead, 500 Hz record: beats and their delineation
//! ([`delineate`]), heart rate and R-R variability, P, PR, QRS, QT and four QTc corrections,
//! frontal P/QRS/T axes, and the measurement statements that follow from them by fixed rules
//! (kept apart from model findings). Every value is `None` with a typed [`Unmeasurable`] reason
//! where it cannot be measured; nothing here panics or invents a number.
//!
//! - [`filter`]: zero-phase Butterworth sections.
//! - [`quality`]: which leads are usable.
//! - [`delineate`]: beats and wave boundaries on all good leads together.
//! - [`spikes`]: pacemaker spikes interpolated out before delineation.
//! - [`reference`](mod@reference): reference annotations (LUDB) as global boundaries, and scoring against them.

pub mod delineate;
pub mod filter;
pub mod learned;
pub mod quality;
pub mod reference;
pub mod spikes;

pub use delineate::{Beat, DelineationParams, LearnedWeights};
pub use quality::LeadProblem;

use crate::lead::Lead;
use crate::record::{Record, Sex};
use serde::{Deserialize, Serialize};

/// The only sampling rate measured (Hz).
pub const REQUIRED_RATE_HZ: f64 = 500.0;
/// The shortest record measured (s).
pub const REQUIRED_SECONDS: f64 = 10.0;
/// Fewest usable leads to delineate on.
pub const MIN_GOOD_LEADS: usize = 3;
/// Fewest beats for any measurement.
pub const MIN_BEATS: usize = 3;

/// A measured quantity, named as its JSON key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Heart rate (bpm).
    HrBpm,
    /// Mean R-R interval (ms).
    RrMeanMs,
    /// Standard deviation of the R-R intervals (ms).
    RrSdMs,
    /// P-wave duration (ms).
    PMs,
    /// PR interval, P onset to QRS onset (ms).
    PrMs,
    /// QRS duration (ms).
    QrsMs,
    /// QT interval, QRS onset to T offset (ms).
    QtMs,
    /// QTc by Bazett, `QT / sqrt(RR)` (ms).
    QtcBazettMs,
    /// QTc by Fridericia, `QT / cbrt(RR)` (ms).
    QtcFridericiaMs,
    /// QTc by Framingham, `QT + 154 (1 - RR)` (ms).
    QtcFraminghamMs,
    /// QTc by Hodges, `QT + 1.75 (HR - 60)` (ms).
    QtcHodgesMs,
    /// Frontal P axis (degrees).
    PAxisDeg,
    /// Frontal QRS axis (degrees).
    QrsAxisDeg,
    /// Frontal T axis (degrees).
    TAxisDeg,
    /// R-R irregularity: RMS of successive R-R differences over the mean R-R.
    RrIrregularity,
}

/// Why a quantity has no value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unmeasurable {
    /// The record is not sampled at [`REQUIRED_RATE_HZ`].
    WrongRate {
        /// The record's rate.
        rate_hz: f64,
        /// The rate required.
        required_hz: f64,
    },
    /// The record is shorter than [`REQUIRED_SECONDS`].
    TooShort {
        /// The record's length.
        seconds: f64,
        /// The length required.
        required_s: f64,
    },
    /// A lead the quantity needs is absent from the record.
    MissingLead {
        /// The lead.
        lead: Lead,
    },
    /// A lead the quantity needs failed quality.
    LeadFailed {
        /// The lead.
        lead: Lead,
        /// Why.
        problem: LeadProblem,
    },
    /// Too few usable leads to delineate.
    TooFewGoodLeads {
        /// Usable leads.
        good: usize,
        /// Required.
        required: usize,
    },
    /// Too few beats were found.
    TooFewBeats {
        /// Beats found.
        beats: usize,
        /// Required.
        required: usize,
    },
    /// No P waves were found (atrial fibrillation, flutter, junctional rhythm, noise).
    NoPWaves,
    /// The wave boundaries the quantity needs were not found on any beat.
    NoBoundaries,
    /// The quantity is computed from another that has no value.
    Needs {
        /// The missing input.
        quantity: Quantity,
    },
}

/// A quantity without a value and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmeasured {
    /// The quantity.
    pub quantity: Quantity,
    /// Why it has no value.
    #[serde(flatten)]
    pub reason: Unmeasurable,
}

/// A lead left out of the measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadQuality {
    /// The lead.
    pub lead: Lead,
    /// Why it was left out.
    #[serde(flatten)]
    pub problem: LeadProblem,
}

/// A measurement statement: a fixed rule on measured numbers, not a model finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementCode {
    /// Heart rate below 60 bpm with P waves present.
    SinusBradycardia,
    /// Heart rate above 100 bpm with P waves present.
    SinusTachycardia,
    /// PR above 200 ms.
    FirstDegreeAvBlock,
    /// QRS of 120 ms or more.
    WideQrs,
    /// QTc (Bazett) above 470 ms (women), 450 ms (men), 460 ms (sex unknown).
    LongQtc,
    /// QRS axis from -90 to below -30 degrees.
    LeftAxisDeviation,
    /// QRS axis above +90 up to 180 degrees.
    RightAxisDeviation,
    /// QRS axis between -90 and -180 degrees (northwest).
    ExtremeAxisDeviation,
    /// R-R irregularity above [`IRREGULAR_RR`].
    IrregularRr,
}

/// R-R irregularity (RMSSD over mean R-R) above which the rhythm is called irregular.
pub const IRREGULAR_RR: f64 = 0.1;

/// A number a statement rests on, with the rule's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    /// The quantity.
    pub quantity: Quantity,
    /// Its measured value.
    pub value: f64,
    /// The rule's threshold (or bound) it was compared with.
    pub threshold: f64,
}

/// A measurement statement and the numbers it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Which statement.
    pub code: StatementCode,
    /// A readable sentence with the numbers.
    pub text: String,
    /// The numbers and thresholds.
    pub basis: Vec<Basis>,
}

/// The JSON keys every serialised [`Measurements`] carries (what `eknet-train measure --json` and
/// the daemon's results promise their readers).
pub const JSON_KEYS: [&str; 14] = [
    "hr_bpm",
    "p_ms",
    "pr_ms",
    "qrs_ms",
    "qt_ms",
    "qtc_bazett_ms",
    "qtc_fridericia_ms",
    "qtc_framingham_ms",
    "qtc_hodges_ms",
    "p_axis_deg",
    "qrs_axis_deg",
    "t_axis_deg",
    "statements",
    "beats",
];

/// Everything measured on one record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Measurements {
    /// Heart rate from the mean R-R (bpm).
    pub hr_bpm: Option<f64>,
    /// Mean R-R (ms).
    pub rr_mean_ms: Option<f64>,
    /// R-R standard deviation (ms).
    pub rr_sd_ms: Option<f64>,
    /// RMS of successive R-R differences over the mean R-R.
    pub rr_irregularity: Option<f64>,
    /// P-wave duration, median over beats (ms).
    pub p_ms: Option<f64>,
    /// PR interval, median over beats (ms).
    pub pr_ms: Option<f64>,
    /// QRS duration, median over beats (ms).
    pub qrs_ms: Option<f64>,
    /// QT interval, median over beats (ms).
    pub qt_ms: Option<f64>,
    /// QTc Bazett (ms).
    pub qtc_bazett_ms: Option<f64>,
    /// QTc Fridericia (ms).
    pub qtc_fridericia_ms: Option<f64>,
    /// QTc Framingham (ms).
    pub qtc_framingham_ms: Option<f64>,
    /// QTc Hodges (ms).
    pub qtc_hodges_ms: Option<f64>,
    /// Frontal P axis (degrees, -180..180).
    pub p_axis_deg: Option<f64>,
    /// Frontal QRS axis (degrees, -180..180).
    pub qrs_axis_deg: Option<f64>,
    /// Frontal T axis (degrees, -180..180).
    pub t_axis_deg: Option<f64>,
    /// Measurement statements.
    pub statements: Vec<Statement>,
    /// Beats with their fiducial sample indices.
    pub beats: Vec<Beat>,
    /// Leads left out and why.
    pub lead_quality: Vec<LeadQuality>,
    /// Quantities without a value and why.
    pub unmeasured: Vec<Unmeasured>,
}

const ALL_QUANTITIES: [Quantity; 15] = [
    Quantity::HrBpm,
    Quantity::RrMeanMs,
    Quantity::RrSdMs,
    Quantity::RrIrregularity,
    Quantity::PMs,
    Quantity::PrMs,
    Quantity::QrsMs,
    Quantity::QtMs,
    Quantity::QtcBazettMs,
    Quantity::QtcFridericiaMs,
    Quantity::QtcFraminghamMs,
    Quantity::QtcHodgesMs,
    Quantity::PAxisDeg,
    Quantity::QrsAxisDeg,
    Quantity::TAxisDeg,
];

impl Measurements {
    /// The value of a quantity.
    pub fn get(&self, q: Quantity) -> Option<f64> {
        match q {
            Quantity::HrBpm => self.hr_bpm,
            Quantity::RrMeanMs => self.rr_mean_ms,
            Quantity::RrSdMs => self.rr_sd_ms,
            Quantity::RrIrregularity => self.rr_irregularity,
            Quantity::PMs => self.p_ms,
            Quantity::PrMs => self.pr_ms,
            Quantity::QrsMs => self.qrs_ms,
            Quantity::QtMs => self.qt_ms,
            Quantity::QtcBazettMs => self.qtc_bazett_ms,
            Quantity::QtcFridericiaMs => self.qtc_fridericia_ms,
            Quantity::QtcFraminghamMs => self.qtc_framingham_ms,
            Quantity::QtcHodgesMs => self.qtc_hodges_ms,
            Quantity::PAxisDeg => self.p_axis_deg,
            Quantity::QrsAxisDeg => self.qrs_axis_deg,
            Quantity::TAxisDeg => self.t_axis_deg,
        }
    }

    /// Why a quantity has no value (`None` when it has one).
    pub fn reason(&self, q: Quantity) -> Option<&Unmeasurable> {
        self.unmeasured
            .iter()
            .find(|u| u.quantity == q)
            .map(|u| &u.reason)
    }

    fn all_unmeasured(reason: Unmeasurable) -> Measurements {
        Measurements {
            unmeasured: ALL_QUANTITIES
                .iter()
                .map(|&quantity| Unmeasured {
                    quantity,
                    reason: reason.clone(),
                })
                .collect(),
            ..Measurements::default()
        }
    }

    fn set(&mut self, q: Quantity, v: Result<f64, Unmeasurable>) {
        let value = match v {
            Ok(v) if v.is_finite() => Some(v),
            Ok(_) => {
                self.unmeasured.push(Unmeasured {
                    quantity: q,
                    reason: Unmeasurable::NoBoundaries,
                });
                None
            }
            Err(reason) => {
                self.unmeasured.push(Unmeasured {
                    quantity: q,
                    reason,
                });
                None
            }
        };
        let slot = match q {
            Quantity::HrBpm => &mut self.hr_bpm,
            Quantity::RrMeanMs => &mut self.rr_mean_ms,
            Quantity::RrSdMs => &mut self.rr_sd_ms,
            Quantity::RrIrregularity => &mut self.rr_irregularity,
            Quantity::PMs => &mut self.p_ms,
            Quantity::PrMs => &mut self.pr_ms,
            Quantity::QrsMs => &mut self.qrs_ms,
            Quantity::QtMs => &mut self.qt_ms,
            Quantity::QtcBazettMs => &mut self.qtc_bazett_ms,
            Quantity::QtcFridericiaMs => &mut self.qtc_fridericia_ms,
            Quantity::QtcFraminghamMs => &mut self.qtc_framingham_ms,
            Quantity::QtcHodgesMs => &mut self.qtc_hodges_ms,
            Quantity::PAxisDeg => &mut self.p_axis_deg,
            Quantity::QrsAxisDeg => &mut self.qrs_axis_deg,
            Quantity::TAxisDeg => &mut self.t_axis_deg,
        };
        *slot = value;
    }
}

/// Picks, from a beat, the (isoelectric reference, start, end) samples of a wave.
type WaveSpan = dyn Fn(&Beat) -> Option<(usize, usize, usize)>;

/// How a wave's size in one lead is taken for an axis.
#[derive(Debug, Clone, Copy)]
enum Net {
    /// Sum of the deviations from the reference level (net area).
    Area,
    /// Largest positive plus largest negative deviation (net amplitude, R + S).
    Amplitude,
}

/// Measures a record with the validated default parameters.
pub fn measure(record: &Record) -> Measurements {
    measure_with(record, &DelineationParams::default())
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

/// Measures a record with explicit delineation parameters and the embedded learned delineator.
pub fn measure_with(record: &Record, params: &DelineationParams) -> Measurements {
    measure_using(record, params, learned::Delineator::embedded().ok())
}

/// Measures a record with explicit delineation parameters and learned delineator (`None`, or
/// `params.learned` false: the rule-based boundaries alone).
pub fn measure_using(
    record: &Record,
    params: &DelineationParams,
    net: Option<&learned::Delineator>,
) -> Measurements {
    let rate = record.sample_rate_hz();
    if (rate - REQUIRED_RATE_HZ).abs() > 1e-9 {
        return Measurements::all_unmeasured(Unmeasurable::WrongRate {
            rate_hz: rate,
            required_hz: REQUIRED_RATE_HZ,
        });
    }
    let seconds = record.duration_s();
    // Half a sample of slack: 5000 samples at 500 Hz are 10 s.
    if seconds + 0.5 / rate < REQUIRED_SECONDS {
        return Measurements::all_unmeasured(Unmeasurable::TooShort {
            seconds,
            required_s: REQUIRED_SECONDS,
        });
    }
    let mut lead_quality = Vec::new();
    let mut good: Vec<(Lead, &[f32])> = Vec::new();
    for (lead, x) in record.leads() {
        match quality::check_lead(x, rate) {
            Some(problem) => lead_quality.push(LeadQuality { lead, problem }),
            None => good.push((lead, x)),
        }
    }
    if good.len() < MIN_GOOD_LEADS {
        let mut m = Measurements::all_unmeasured(Unmeasurable::TooFewGoodLeads {
            good: good.len(),
            required: MIN_GOOD_LEADS,
        });
        m.lead_quality = lead_quality;
        return m;
    }
    let signals: Vec<&[f32]> = good.iter().map(|(_, x)| *x).collect();
    let prepared = delineate::prepare(&signals, rate);
    let mut beats = delineate::delineate(&prepared, params);
    if let Some(net) = net.filter(|_| params.learned) {
        // The network reads the twelve leads in their conventional order; a lead that failed
        // quality (or is absent) is zeros, as the training's lead dropout taught it.
        let zeros = vec![0.0f32; record.len_samples()];
        let mut input: [&[f32]; learned::INPUT_LEADS] = [&zeros; learned::INPUT_LEADS];
        for ((lead, _), base) in good.iter().zip(&prepared.base) {
            if let Some(pos) = Lead::ALL.iter().position(|l| l == lead) {
                input[pos] = base;
            }
        }
        // A one-lead network runs on the usable leads only, and only their delineations count.
        let usable: [bool; learned::INPUT_LEADS] =
            std::array::from_fn(|i| good.iter().any(|(g, _)| *g == Lead::ALL[i]));
        let mut rows = net.labels_of(&input, &usable);
        if net.per_lead {
            rows = rows
                .into_iter()
                .zip(usable)
                .filter_map(|(r, u)| u.then_some(r))
                .collect();
        }
        learned::refine(&mut beats, &rows, rate, &params.learned_weights);
    }
    let mut m = Measurements {
        lead_quality,
        beats,
        ..Measurements::default()
    };
    if m.beats.len() < MIN_BEATS {
        let mut all = Measurements::all_unmeasured(Unmeasurable::TooFewBeats {
            beats: m.beats.len(),
            required: MIN_BEATS,
        });
        all.lead_quality = m.lead_quality;
        all.beats = m.beats;
        return all;
    }
    let to_ms = 1000.0 / rate;

    // Rhythm.
    let rr: Vec<f64> = m
        .beats
        .windows(2)
        .map(|w| (w[1].r - w[0].r) as f64 * to_ms)
        .collect();
    let rr_mean = rr.iter().sum::<f64>() / rr.len() as f64;
    let rr_sd = (rr.iter().map(|v| (v - rr_mean).powi(2)).sum::<f64>() / rr.len() as f64).sqrt();
    let rmssd = if rr.len() >= 2 {
        Ok(
            (rr.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>() / (rr.len() - 1) as f64)
                .sqrt()
                / rr_mean,
        )
    } else {
        Err(Unmeasurable::TooFewBeats {
            beats: m.beats.len(),
            required: MIN_BEATS,
        })
    };
    m.set(Quantity::RrMeanMs, Ok(rr_mean));
    m.set(Quantity::RrSdMs, Ok(rr_sd));
    m.set(Quantity::HrBpm, Ok(60_000.0 / rr_mean));
    m.set(Quantity::RrIrregularity, rmssd);

    // Intervals: medians over beats.
    let interval = |f: &dyn Fn(&Beat) -> Option<(usize, usize)>| {
        median(
            m.beats
                .iter()
                .filter_map(f)
                .filter(|(a, b)| b > a)
                .map(|(a, b)| (b - a) as f64 * to_ms)
                .collect(),
        )
    };
    let has_p = m.beats.iter().any(|b| b.p_on.is_some());
    let p_reason = |v: Option<f64>| {
        v.ok_or(if has_p {
            Unmeasurable::NoBoundaries
        } else {
            Unmeasurable::NoPWaves
        })
    };
    let p_ms = interval(&|b| b.p_on.zip(b.p_off));
    let pr_ms = interval(&|b| b.p_on.zip(b.qrs_on));
    let qrs_ms = interval(&|b| b.qrs_on.zip(b.qrs_off));
    let qt_ms = interval(&|b| b.qrs_on.zip(b.t_off));
    m.set(Quantity::PMs, p_reason(p_ms));
    m.set(Quantity::PrMs, p_reason(pr_ms));
    m.set(Quantity::QrsMs, qrs_ms.ok_or(Unmeasurable::NoBoundaries));
    m.set(Quantity::QtMs, qt_ms.ok_or(Unmeasurable::NoBoundaries));
    let rr_s = rr_mean / 1000.0;
    let hr = 60_000.0 / rr_mean;
    let qtc = |f: &dyn Fn(f64) -> f64| {
        qt_ms.map(f).ok_or(Unmeasurable::Needs {
            quantity: Quantity::QtMs,
        })
    };
    m.set(Quantity::QtcBazettMs, qtc(&|qt| qt / rr_s.sqrt()));
    m.set(Quantity::QtcFridericiaMs, qtc(&|qt| qt / rr_s.cbrt()));
    m.set(
        Quantity::QtcFraminghamMs,
        qtc(&|qt| qt + 154.0 * (1.0 - rr_s)),
    );
    m.set(Quantity::QtcHodgesMs, qtc(&|qt| qt + 1.75 * (hr - 60.0)));

    // Axes from I and aVF: the QRS axis from the net amplitudes (largest positive plus largest
    // negative deflection from the level at the QRS onset, what a reader sums by eye), the P
    // and T axes from the net areas; each a median over beats. By Einthoven's and Goldberger's
    // laws (I = x, aVF = (II + III) / 2 = sqrt(3)/2 y for a frontal vector (x, y)), the angle
    // is atan2(2 aVF / sqrt(3), I) (Novosel et al., J Electrocardiol 32, 1999).
    let lead_signal = |lead: Lead| -> Result<&[f32], Unmeasurable> {
        if let Some(q) = m.lead_quality.iter().find(|q| q.lead == lead) {
            return Err(Unmeasurable::LeadFailed {
                lead,
                problem: q.problem,
            });
        }
        good.iter()
            .position(|(l, _)| *l == lead)
            .map(|k| prepared.base[k].as_slice())
            .ok_or(Unmeasurable::MissingLead { lead })
    };
    let axis = |span: &WaveSpan, net: Net, none: Unmeasurable| -> Result<f64, Unmeasurable> {
        let i = lead_signal(Lead::I)?;
        let f = lead_signal(Lead::AVF)?;
        let len = i.len().min(f.len());
        // Only well-formed spans: a start after the end (boundaries of a malformed beat) or
        // past the record would index out of range.
        let spans: Vec<(usize, usize, usize)> = m
            .beats
            .iter()
            .filter_map(span)
            .filter(|&(iso, a, b)| a <= b && b < len && iso < len)
            .collect();
        if spans.is_empty() {
            return Err(none);
        }
        let iso_span = (0.01 * rate).round() as usize;
        let size = |x: &[f32]| {
            median(
                spans
                    .iter()
                    .map(|&(iso, a, b)| {
                        // The level: the mean of the 10 ms up to the reference sample.
                        let lo = iso.saturating_sub(iso_span);
                        let level = x[lo..=iso].iter().map(|&v| v as f64).sum::<f64>()
                            / (iso - lo + 1) as f64;
                        let dev = x[a..=b].iter().map(|&v| v as f64 - level);
                        match net {
                            Net::Area => dev.sum::<f64>(),
                            Net::Amplitude => {
                                let (lo, hi) = dev
                                    .fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
                                lo + hi
                            }
                        }
                    })
                    .collect(),
            )
            .unwrap_or(0.0)
        };
        let (ai, af) = (size(i), size(f));
        if ai == 0.0 && af == 0.0 {
            return Err(Unmeasurable::NoBoundaries);
        }
        Ok((2.0 * af / 3f64.sqrt()).atan2(ai).to_degrees())
    };
    let p_none = if has_p {
        Unmeasurable::NoBoundaries
    } else {
        Unmeasurable::NoPWaves
    };
    let p_axis = axis(&|b| Some((b.p_on?, b.p_on?, b.p_off?)), Net::Area, p_none);
    let qrs_axis = axis(
        &|b| Some((b.qrs_on?, b.qrs_on?, b.qrs_off?)),
        Net::Amplitude,
        Unmeasurable::NoBoundaries,
    );
    let t_axis = axis(
        &|b| Some((b.qrs_on?, b.qrs_off?, b.t_off?)),
        Net::Area,
        Unmeasurable::NoBoundaries,
    );
    m.set(Quantity::PAxisDeg, p_axis);
    m.set(Quantity::QrsAxisDeg, qrs_axis);
    m.set(Quantity::TAxisDeg, t_axis);
    m.statements = statements(&m, record.meta.sex);
    m
}

/// The QTc (Bazett) above which QT is long, by sex.
pub fn long_qtc_threshold_ms(sex: Option<Sex>) -> f64 {
    match sex {
        Some(Sex::Female) => 470.0,
        Some(Sex::Male) => 450.0,
        None => 460.0,
    }
}

/// The measurement statements that follow from `m` (patient sex for the QTc threshold).
pub fn statements(m: &Measurements, sex: Option<Sex>) -> Vec<Statement> {
    let mut out = Vec::new();
    let basis = |quantity, value, threshold| Basis {
        quantity,
        value,
        threshold,
    };
    let has_p = m.p_ms.is_some() || m.pr_ms.is_some();
    if let (Some(hr), true) = (m.hr_bpm, has_p) {
        if hr < 60.0 {
            out.push(Statement {
                code: StatementCode::SinusBradycardia,
                text: format!("sinus bradycardia: heart rate {hr:.1} bpm < 60 with P waves"),
                basis: vec![basis(Quantity::HrBpm, hr, 60.0)],
            });
        } else if hr > 100.0 {
            out.push(Statement {
                code: StatementCode::SinusTachycardia,
                text: format!("sinus tachycardia: heart rate {hr:.1} bpm > 100 with P waves"),
                basis: vec![basis(Quantity::HrBpm, hr, 100.0)],
            });
        }
    }
    if let Some(pr) = m.pr_ms.filter(|&pr| pr > 200.0) {
        out.push(Statement {
            code: StatementCode::FirstDegreeAvBlock,
            text: format!("first-degree AV block: PR {pr:.0} ms > 200 ms"),
            basis: vec![basis(Quantity::PrMs, pr, 200.0)],
        });
    }
    if let Some(qrs) = m.qrs_ms.filter(|&q| q >= 120.0) {
        out.push(Statement {
            code: StatementCode::WideQrs,
            text: format!("wide QRS: {qrs:.0} ms >= 120 ms"),
            basis: vec![basis(Quantity::QrsMs, qrs, 120.0)],
        });
    }
    let limit = long_qtc_threshold_ms(sex);
    if let Some(qtc) = m.qtc_bazett_ms.filter(|&q| q > limit) {
        let who = match sex {
            Some(Sex::Female) => "women",
            Some(Sex::Male) => "men",
            None => "sex unknown",
        };
        out.push(Statement {
            code: StatementCode::LongQtc,
            text: format!("long QTc: Bazett {qtc:.0} ms > {limit:.0} ms ({who})"),
            basis: vec![basis(Quantity::QtcBazettMs, qtc, limit)],
        });
    }
    if let Some(axis) = m.qrs_axis_deg {
        match axis_category(axis) {
            AxisCategory::Left => out.push(Statement {
                code: StatementCode::LeftAxisDeviation,
                text: format!("left axis deviation: QRS axis {axis:.0} deg < -30 deg"),
                basis: vec![basis(Quantity::QrsAxisDeg, axis, -30.0)],
            }),
            AxisCategory::Right => out.push(Statement {
                code: StatementCode::RightAxisDeviation,
                text: format!("right axis deviation: QRS axis {axis:.0} deg > +90 deg"),
                basis: vec![basis(Quantity::QrsAxisDeg, axis, 90.0)],
            }),
            AxisCategory::Extreme => out.push(Statement {
                code: StatementCode::ExtremeAxisDeviation,
                text: format!("extreme axis deviation: QRS axis {axis:.0} deg < -90 deg"),
                basis: vec![basis(Quantity::QrsAxisDeg, axis, -90.0)],
            }),
            AxisCategory::Normal => {}
        }
    }
    if let Some(irr) = m.rr_irregularity.filter(|&v| v > IRREGULAR_RR) {
        out.push(Statement {
            code: StatementCode::IrregularRr,
            text: format!(
                "irregular R-R: RMSSD / mean R-R {irr:.2} > {IRREGULAR_RR} (R-R SD {} ms)",
                m.rr_sd_ms.map_or("?".to_string(), |v| format!("{v:.0}"))
            ),
            basis: vec![basis(Quantity::RrIrregularity, irr, IRREGULAR_RR)],
        });
    }
    out
}

/// The frontal QRS axis category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AxisCategory {
    /// -30 to +90 degrees.
    Normal,
    /// -90 to below -30 degrees.
    Left,
    /// Above +90 up to 180 degrees.
    Right,
    /// Below -90 degrees (northwest).
    Extreme,
}

/// The category of a frontal axis in degrees (-180..180).
pub fn axis_category(deg: f64) -> AxisCategory {
    if (-30.0..=90.0).contains(&deg) {
        AxisCategory::Normal
    } else if (-90.0..-30.0).contains(&deg) {
        AxisCategory::Left
    } else if deg > 90.0 {
        AxisCategory::Right
    } else {
        AxisCategory::Extreme
    }
}
