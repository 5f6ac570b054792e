//! The measurement engine on synthetic 12-lead records with known answers (boundaries, intervals,
//! axes, statements) and on bad input (flat, clipped, noisy, non-finite leads, short records,
//! other rates): values where they can be measured, `None` with a typed reason where not.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::measure::{
    AxisCategory, LeadProblem, Measurements, Quantity, StatementCode, Unmeasurable, axis_category,
    measure, statements,
};
use eknet_shared::rng::Rng;
use eknet_shared::{Lead, Record, RecordMeta, Sex};

const RATE: f64 = 500.0;

/// Frontal angle (degrees) of each limb lead on the hexaxial reference system.
fn limb_angle(lead: Lead) -> Option<f64> {
    match lead {
        Lead::I => Some(0.0),
        Lead::II => Some(60.0),
        Lead::III => Some(120.0),
        Lead::AVR => Some(-150.0),
        Lead::AVL => Some(-30.0),
        Lead::AVF => Some(90.0),
        _ => None,
    }
}

/// A Hann pulse from `start` to `end` seconds, peak `amp`.
fn hann(t: f64, start: f64, end: f64, amp: f64) -> f64 {
    if t <= start || t >= end {
        0.0
    } else {
        amp * 0.5 * (1.0 - (2.0 * std::f64::consts::PI * (t - start) / (end - start)).cos())
    }
}

/// Wave geometry of the synthetic beats, relative to the R time (seconds).
struct Waves {
    p: Option<(f64, f64)>,
    qrs: (f64, f64),
    t: (f64, f64),
}

const WAVES: Waves = Waves {
    p: Some((-0.200, -0.100)), // P 100 ms, PR 160 ms
    qrs: (-0.040, 0.045),      // QRS 85 ms
    t: (0.150, 0.330),         // QT 370 ms
};

/// A 12-lead record of beats at `r_times` (s): frontal P axis 50 deg, QRS 60 deg, T 40 deg
/// (amplitudes 0.15, 1.2, 0.35 mV); precordial leads scaled copies; plus 10 uV RMS white noise
/// and a 0.3 Hz, 50 uV baseline wander, as a quiet real recording has.
fn synthetic(r_times: &[f64], waves: &Waves, seconds: f64, rate: f64) -> Vec<(Lead, Vec<f32>)> {
    synthetic_with_pr(r_times, &[], waves, seconds, rate)
}

/// [`synthetic`] with beat `k`'s P wave moved by `p_moves[k]` seconds (0 where absent).
fn synthetic_with_pr(
    r_times: &[f64],
    p_moves: &[f64],
    waves: &Waves,
    seconds: f64,
    rate: f64,
) -> Vec<(Lead, Vec<f32>)> {
    let n = (seconds * rate).round() as usize;
    let mut rng = Rng::new(42);
    let (p_axis, qrs_axis, t_axis) = (50f64, 60f64, 40f64);
    Lead::ALL
        .iter()
        .map(|&lead| {
            // Goldberger's augmented leads project the frontal vector at sqrt(3)/2 of the
            // limb leads' scale (aVF = (II + III) / 2), as in a real recording.
            let aug = if matches!(lead, Lead::AVR | Lead::AVL | Lead::AVF) {
                3f64.sqrt() / 2.0
            } else {
                1.0
            };
            let gain = |axis: f64| match limb_angle(lead) {
                Some(a) => aug * (axis - a).to_radians().cos(),
                None => 0.4 + 0.15 * lead.row() as f64 - 0.9, // V1 -0.5 .. V6 +0.25, never 0
            };
            let (gp, gq, gt) = (gain(p_axis), gain(qrs_axis), gain(t_axis));
            let x = (0..n)
                .map(|i| {
                    let t = i as f64 / rate;
                    let mut v =
                        0.01 * rng.normal() + 0.05 * (2.0 * std::f64::consts::PI * 0.3 * t).sin();
                    for (k, &r) in r_times.iter().enumerate() {
                        if let Some((a, b)) = waves.p {
                            let m = p_moves.get(k).copied().unwrap_or(0.0);
                            v += gp * hann(t, r + a + m, r + b + m, 0.15);
                        }
                        v += gq * hann(t, r + waves.qrs.0, r + waves.qrs.1, 1.2);
                        v += gt * hann(t, r + waves.t.0, r + waves.t.1, 0.35);
                    }
                    v as f32
                })
                .collect();
            (lead, x)
        })
        .collect()
}

fn regular(rr: f64) -> Vec<f64> {
    (0..)
        .map(|k| 0.5 + k as f64 * rr)
        .take_while(|&t| t < 9.6)
        .collect()
}

fn record(leads: Vec<(Lead, Vec<f32>)>, rate: f64, sex: Option<Sex>) -> Record {
    let meta = RecordMeta {
        sex,
        ..RecordMeta::default()
    };
    Record::new(meta, rate, leads).unwrap()
}

fn close(v: Option<f64>, want: f64, tol: f64, what: &str) {
    let v = v.unwrap_or_else(|| panic!("{what} not measured"));
    assert!((v - want).abs() <= tol, "{what}: {v} vs {want} +- {tol}");
}

#[test]
fn known_answers_on_a_regular_pqrst_train() {
    let r_times = regular(0.8);
    let m = measure(&record(
        synthetic(&r_times, &WAVES, 10.0, RATE),
        RATE,
        Some(Sex::Male),
    ));
    assert!(m.lead_quality.is_empty(), "{:?}", m.lead_quality);
    assert_eq!(m.beats.len(), r_times.len());
    close(m.hr_bpm, 75.0, 0.5, "HR");
    close(m.rr_mean_ms, 800.0, 4.0, "RR mean");
    close(m.rr_sd_ms, 0.0, 3.0, "RR SD");
    // Boundaries: each beat within 25 ms of the construction. The boundaries carry shifts
    // calibrated on LUDB (a reader marks a wave's start before a slope threshold is crossed), so
    // on these noiseless Hann-shaped waves they sit outside the mathematical edges, never inside.
    let tol = (0.025 * RATE) as usize;
    for (b, &r) in m.beats.iter().zip(&r_times) {
        let at = |s: f64| ((r + s) * RATE).round() as usize;
        let near = |got: Option<usize>, want: usize, what: &str| {
            let got = got.unwrap_or_else(|| panic!("beat at {r}: no {what}"));
            assert!(
                got.abs_diff(want) <= tol,
                "beat at {r}: {what} {got} vs {want}"
            );
        };
        let (p_on, p_off) = WAVES.p.unwrap();
        near(b.p_on, at(p_on), "P on");
        near(b.p_off, at(p_off), "P off");
        near(b.qrs_on, at(WAVES.qrs.0), "QRS on");
        near(b.qrs_off, at(WAVES.qrs.1), "QRS off");
        near(b.t_off, at(WAVES.t.1), "T off");
    }
    let within = |v: Option<f64>, lo: f64, hi: f64, what: &str| {
        let v = v.unwrap_or_else(|| panic!("{what} not measured"));
        assert!((lo..=hi).contains(&v), "{what}: {v} outside {lo}..{hi}");
    };
    // Durations: the construction, widened by at most the two calibrated boundary shifts.
    within(m.p_ms, 100.0, 145.0, "P duration");
    within(m.pr_ms, 150.0, 185.0, "PR");
    within(m.qrs_ms, 85.0, 119.0, "QRS");
    within(m.qt_ms, 365.0, 400.0, "QT");
    // QTc at RR 0.8 s from the measured QT.
    let qt = m.qt_ms.unwrap();
    close(m.qtc_bazett_ms, qt / 0.8f64.sqrt(), 1.0, "Bazett");
    close(m.qtc_fridericia_ms, qt / 0.8f64.cbrt(), 1.0, "Fridericia");
    close(m.qtc_framingham_ms, qt + 154.0 * 0.2, 1.0, "Framingham");
    close(m.qtc_hodges_ms, qt + 1.75 * 15.0, 1.0, "Hodges");
    // Axes from I and aVF: the construction's angles.
    close(m.p_axis_deg, 50.0, 6.0, "P axis");
    close(m.qrs_axis_deg, 60.0, 3.0, "QRS axis");
    close(m.t_axis_deg, 40.0, 6.0, "T axis");
    assert!(m.unmeasured.is_empty(), "{:?}", m.unmeasured);
    // Normal sinus rhythm at 75 bpm: no statement.
    assert!(m.statements.is_empty(), "{:?}", m.statements);
}

/// Each beat's P onset and offset against the construction (`p_moves` as in
/// [`synthetic_with_pr`]), within 25 ms.
fn assert_p_per_beat(m: &Measurements, r_times: &[f64], p_moves: &[f64], p: (f64, f64)) {
    assert_eq!(m.beats.len(), r_times.len());
    let tol = (0.025 * RATE) as usize;
    for (k, (b, &r)) in m.beats.iter().zip(r_times).enumerate() {
        let mv = p_moves.get(k).copied().unwrap_or(0.0);
        let at = |s: f64| ((r + s + mv) * RATE).round() as usize;
        for (got, want, what) in [(b.p_on, at(p.0), "P on"), (b.p_off, at(p.1), "P off")] {
            let got = got.unwrap_or_else(|| panic!("beat {k} at {r}: no {what}"));
            assert!(
                got.abs_diff(want) <= tol,
                "beat {k} at {r}: {what} {got} vs {want}"
            );
        }
    }
}

#[test]
fn p_waves_whose_pr_changes_from_beat_to_beat_are_kept() {
    // A wandering pacemaker: three of the twelve beats have their P 60 ms earlier (PR 220 ms
    // instead of 160 ms), beyond the PR tolerance around the median PR; the median beat's P,
    // slid onto each beat, finds them.
    let r_times = regular(0.8);
    let moves: Vec<f64> = (0..r_times.len())
        .map(|k| if k % 4 == 2 { -0.06 } else { 0.0 })
        .collect();
    let m = measure(&record(
        synthetic_with_pr(&r_times, &moves, &WAVES, 10.0, RATE),
        RATE,
        None,
    ));
    assert_p_per_beat(&m, &r_times, &moves, WAVES.p.unwrap());
    // The PR is the median over beats: the majority's.
    let pr = m.pr_ms.unwrap();
    assert!((150.0..=185.0).contains(&pr), "PR {pr}");
}

#[test]
fn pacemaker_spikes_do_not_move_the_qrs_onset() {
    // A ventricular pacing spike (2 samples, 2 mV, every lead; polarity by lead) 20 ms before
    // each QRS onset: it is interpolated out, so the QRS onset and duration stay those of the
    // clean record, and every paced beat is still found.
    let r_times = regular(0.8);
    let clean = measure(&record(synthetic(&r_times, &WAVES, 10.0, RATE), RATE, None));
    let mut leads = synthetic(&r_times, &WAVES, 10.0, RATE);
    for (k, (_, x)) in leads.iter_mut().enumerate() {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        for &r in &r_times {
            let at = ((r + WAVES.qrs.0 - 0.020) * RATE).round() as usize;
            x[at] += sign * 2.0;
            x[at + 1] += sign * 1.0;
        }
    }
    let paced = measure(&record(leads, RATE, None));
    assert_eq!(paced.beats.len(), r_times.len());
    for (p, c) in paced.beats.iter().zip(&clean.beats) {
        let (a, b) = (p.qrs_on.unwrap(), c.qrs_on.unwrap());
        assert!(a.abs_diff(b) <= 2, "QRS onset {a} paced vs {b} clean");
    }
    close(
        paced.qrs_ms,
        clean.qrs_ms.unwrap(),
        4.0,
        "QRS paced vs clean",
    );
}

#[test]
fn bradycardia_and_tachycardia_with_p_waves() {
    let slow = measure(&record(
        synthetic(&regular(1.25), &WAVES, 10.0, RATE),
        RATE,
        None,
    ));
    close(slow.hr_bpm, 48.0, 0.5, "HR");
    let codes: Vec<StatementCode> = slow.statements.iter().map(|s| s.code).collect();
    assert_eq!(codes, vec![StatementCode::SinusBradycardia]);
    assert_eq!(slow.statements[0].basis[0].quantity, Quantity::HrBpm);
    assert!((slow.statements[0].basis[0].value - 48.0).abs() < 0.5);
    assert_eq!(slow.statements[0].basis[0].threshold, 60.0);

    let fast_waves = Waves {
        p: Some((-0.170, -0.090)),
        qrs: (-0.040, 0.045),
        t: (0.130, 0.260),
    };
    let fast = measure(&record(
        synthetic(&regular(0.5), &fast_waves, 10.0, RATE),
        RATE,
        None,
    ));
    close(fast.hr_bpm, 120.0, 1.0, "HR");
    assert!(
        fast.statements
            .iter()
            .any(|s| s.code == StatementCode::SinusTachycardia),
        "{:?}",
        fast.statements
    );
}

#[test]
fn no_p_waves_and_irregular_rr_as_in_atrial_fibrillation() {
    let no_p = Waves { p: None, ..WAVES };
    let mut rng = Rng::new(7);
    let mut times = vec![0.4];
    while *times.last().unwrap() < 9.2 {
        let next = times.last().unwrap() + rng.uniform(0.45, 1.0);
        times.push(next);
    }
    times.pop();
    let m = measure(&record(synthetic(&times, &no_p, 10.0, RATE), RATE, None));
    assert_eq!(m.beats.len(), times.len());
    assert!(
        m.beats
            .iter()
            .all(|b| b.p_on.is_none() && b.p_off.is_none())
    );
    assert_eq!(m.p_ms, None);
    assert_eq!(m.pr_ms, None);
    assert_eq!(m.p_axis_deg, None);
    assert_eq!(m.reason(Quantity::PrMs), Some(&Unmeasurable::NoPWaves));
    assert_eq!(m.reason(Quantity::PMs), Some(&Unmeasurable::NoPWaves));
    assert_eq!(m.reason(Quantity::PAxisDeg), Some(&Unmeasurable::NoPWaves));
    let codes: Vec<StatementCode> = m.statements.iter().map(|s| s.code).collect();
    assert!(codes.contains(&StatementCode::IrregularRr), "{codes:?}");
    // No P waves: no sinus statement whatever the rate.
    assert!(!codes.contains(&StatementCode::SinusBradycardia));
    assert!(!codes.contains(&StatementCode::SinusTachycardia));
    assert!(m.qrs_ms.is_some() && m.qt_ms.is_some());
}

fn all_reasons(m: &Measurements) -> Vec<&Unmeasurable> {
    m.unmeasured.iter().map(|u| &u.reason).collect()
}

#[test]
fn short_records_and_other_rates_are_not_measured() {
    let short = measure(&record(
        synthetic(&regular(0.8), &WAVES, 8.0, RATE),
        RATE,
        None,
    ));
    assert_eq!(short.hr_bpm, None);
    assert_eq!(short.unmeasured.len(), 15);
    assert!(all_reasons(&short).iter().all(|r| matches!(
        r,
        Unmeasurable::TooShort { seconds, required_s } if (*seconds - 8.0).abs() < 1e-9 && *required_s == 10.0
    )));
    let other = measure(&record(
        synthetic(&regular(0.8), &WAVES, 10.0, 250.0),
        250.0,
        None,
    ));
    assert!(other.beats.is_empty());
    assert!(all_reasons(&other).iter().all(|r| matches!(
        r,
        Unmeasurable::WrongRate { rate_hz, .. } if *rate_hz == 250.0
    )));
    assert_eq!(other.qt_ms, None);
}

fn with_lead(leads: &mut [(Lead, Vec<f32>)], lead: Lead, mut f: impl FnMut(&mut Vec<f32>)) {
    let (_, x) = leads.iter_mut().find(|(l, _)| *l == lead).unwrap();
    f(x);
}

#[test]
fn failed_leads_are_left_out_and_named() {
    let mut leads = synthetic(&regular(0.8), &WAVES, 10.0, RATE);
    with_lead(&mut leads, Lead::V3, |x| {
        x.iter_mut().for_each(|v| *v = 0.0)
    });
    with_lead(&mut leads, Lead::II, |x| {
        x.iter_mut().for_each(|v| *v = v.clamp(-0.05, 0.3))
    });
    let mut rng = Rng::new(3);
    with_lead(&mut leads, Lead::V5, |x| {
        x.iter_mut().for_each(|v| *v = (0.5 * rng.normal()) as f32)
    });
    let m = measure(&record(leads.clone(), RATE, None));
    let problems: Vec<(Lead, &LeadProblem)> = m
        .lead_quality
        .iter()
        .map(|q| (q.lead, &q.problem))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        matches!(problems[0], (Lead::II, LeadProblem::Clipped { fraction }) if *fraction > 0.02)
    );
    assert!(matches!(problems[1], (Lead::V3, LeadProblem::Flat { .. })));
    assert!(matches!(problems[2], (Lead::V5, LeadProblem::Noise { ratio }) if *ratio > 0.5));
    // Nine good leads still measure the rhythm and the intervals; I and aVF give the axes.
    close(m.hr_bpm, 75.0, 0.5, "HR");
    close(m.qrs_ms, 100.0, 19.0, "QRS");
    close(m.qrs_axis_deg, 60.0, 3.0, "QRS axis");

    // A flat lead I: no axis, and the reason names the lead.
    with_lead(&mut leads, Lead::I, |x| {
        x.iter_mut().for_each(|v| *v = 0.001)
    });
    with_lead(&mut leads, Lead::AVF, |x| x[100] = f32::NAN);
    let m = measure(&record(leads.clone(), RATE, None));
    assert_eq!(m.qrs_axis_deg, None);
    assert!(matches!(
        m.reason(Quantity::QrsAxisDeg),
        Some(Unmeasurable::LeadFailed {
            lead: Lead::I,
            problem: LeadProblem::Flat { .. }
        })
    ));
    assert!(
        m.lead_quality
            .iter()
            .any(|q| q.lead == Lead::AVF && q.problem == LeadProblem::NotFinite { samples: 1 })
    );
    assert!(m.qrs_ms.is_some());

    // Every lead flat: nothing measured, and why.
    let flat: Vec<(Lead, Vec<f32>)> = Lead::ALL.iter().map(|&l| (l, vec![0.0; 5000])).collect();
    let m = measure(&record(flat, RATE, None));
    assert_eq!(m.lead_quality.len(), 12);
    assert!(all_reasons(&m).iter().all(|r| matches!(
        r,
        Unmeasurable::TooFewGoodLeads {
            good: 0,
            required: 3
        }
    )));
}

#[test]
fn pure_noise_gives_reasons_not_numbers() {
    // Low-frequency noise passes the per-lead checks but holds no beats worth measuring.
    let mut rng = Rng::new(11);
    let leads: Vec<(Lead, Vec<f32>)> = Lead::ALL
        .iter()
        .map(|&l| {
            let mut v = 0.0f64;
            let x = (0..5000)
                .map(|_| {
                    v = 0.98 * v + 0.02 * rng.normal();
                    v as f32
                })
                .collect();
            (l, x)
        })
        .collect();
    let m = measure(&record(leads, RATE, None));
    // Whatever it finds, every quantity is either a finite number or has a reason.
    for q in [
        Quantity::HrBpm,
        Quantity::PrMs,
        Quantity::QrsMs,
        Quantity::QtMs,
        Quantity::QrsAxisDeg,
    ] {
        assert!(
            m.get(q).is_some_and(f64::is_finite) ^ m.reason(q).is_some(),
            "{q:?}: {:?} / {:?}",
            m.get(q),
            m.reason(q)
        );
    }
}

#[test]
fn statements_follow_their_thresholds() {
    let base = Measurements {
        hr_bpm: Some(72.0),
        p_ms: Some(100.0),
        pr_ms: Some(220.0),
        qrs_ms: Some(120.0),
        qtc_bazett_ms: Some(465.0),
        qrs_axis_deg: Some(-45.0),
        rr_irregularity: Some(0.02),
        ..Measurements::default()
    };
    let codes = |m: &Measurements, sex| -> Vec<StatementCode> {
        statements(m, sex).iter().map(|s| s.code).collect()
    };
    // QTc 465: long for men (450) and sex unknown (460), not for women (470).
    assert_eq!(
        codes(&base, Some(Sex::Male)),
        vec![
            StatementCode::FirstDegreeAvBlock,
            StatementCode::WideQrs,
            StatementCode::LongQtc,
            StatementCode::LeftAxisDeviation
        ]
    );
    assert!(codes(&base, None).contains(&StatementCode::LongQtc));
    assert!(!codes(&base, Some(Sex::Female)).contains(&StatementCode::LongQtc));
    let s = statements(&base, None);
    let long = s.iter().find(|s| s.code == StatementCode::LongQtc).unwrap();
    assert_eq!(long.basis[0].value, 465.0);
    assert_eq!(long.basis[0].threshold, 460.0);
    assert!(long.text.contains("465"));
    // Limits: PR 200 and QRS 119 state nothing; axis +100 is right, -120 extreme, -30 normal.
    let edge = Measurements {
        pr_ms: Some(200.0),
        qrs_ms: Some(119.0),
        qrs_axis_deg: Some(100.0),
        ..base.clone()
    };
    assert_eq!(
        codes(&edge, Some(Sex::Female)),
        vec![StatementCode::RightAxisDeviation]
    );
    assert_eq!(axis_category(-30.0), AxisCategory::Normal);
    assert_eq!(axis_category(-30.5), AxisCategory::Left);
    assert_eq!(axis_category(90.0), AxisCategory::Normal);
    assert_eq!(axis_category(-120.0), AxisCategory::Extreme);
    // Heart rate alone, without P waves, is no sinus statement.
    let af = Measurements {
        hr_bpm: Some(130.0),
        rr_irregularity: Some(0.25),
        ..Measurements::default()
    };
    assert_eq!(codes(&af, None), vec![StatementCode::IrregularRr]);
}

#[test]
fn measurements_serialise_with_the_agreed_keys() {
    let m = measure(&record(
        synthetic(&regular(0.8), &WAVES, 10.0, RATE),
        RATE,
        None,
    ));
    let json = serde_json::to_value(&m).unwrap();
    for key in eknet_shared::measure::JSON_KEYS {
        assert!(json.get(key).is_some(), "missing key {key}");
    }
    let beat = &json["beats"][0];
    for key in ["r", "p_on", "p_off", "qrs_on", "qrs_off", "t_off"] {
        assert!(beat[key].is_u64(), "beat key {key}: {beat}");
    }
    let back: Measurements = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
    // A reason serialises with its quantity and a tag.
    let short = measure(&record(
        synthetic(&regular(0.8), &WAVES, 5.0, RATE),
        RATE,
        None,
    ));
    let j = serde_json::to_value(&short.unmeasured[0]).unwrap();
    assert_eq!(j["quantity"], "hr_bpm");
    assert_eq!(j["reason"], "too_short");
    assert!(serde_json::to_value(&short).unwrap()["hr_bpm"].is_null());
}
