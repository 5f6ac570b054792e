//! The measurement engine against LUDB's cardiologist annotations, all 200 records, scored
//! honestly: the five constant boundary shifts are two-fold cross-validated (fitted on records
//! 1-100, scored on 101-200, and the reverse) and the targets are asserted on the pooled
//! held-out figures where the delineator meets them; those it does not yet meet are asserted at
//! the level reached, as regression bounds (named as such), so neither can slip. The shipped
//! shifts must be the fit on all 200 records. `examples/ludb_delineation.rs` prints the tables.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::measure::DelineationParams;
use eknet_shared::measure::reference::{
    Boundary, BoundaryScore, CrossValidation, Shifts, Summary, cross_validate_ludb, mean_sd,
};
use std::path::PathBuf;

const WINDOW_MS: f64 = 150.0;

fn cross_validation() -> CrossValidation {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The shared records are part of the test setup (CI has them): absent, the test fails saying so.
    let data = eknet_shared::data::require_data_dir(&here).unwrap();
    let dir = data.join("ludb").join("data");
    let fold = |r: std::ops::RangeInclusive<usize>| r.map(|k| k.to_string()).collect::<Vec<_>>();
    let folds = vec![fold(1..=100), fold(101..=200)];
    cross_validate_ludb(&dir, &folds, &DelineationParams::default(), WINDOW_MS).unwrap()
}

fn check(s: &BoundaryScore, label: &str, se: f64, ppv: f64, abs_mean: f64, sd: f64) {
    let (m, d) = s.mean_sd().unwrap();
    let (got_se, got_ppv) = (s.sensitivity().unwrap(), s.ppv().unwrap());
    assert!(got_se >= se, "{label}: Se {got_se:.2} % < {se} %");
    assert!(got_ppv >= ppv, "{label}: PPV {got_ppv:.2} % < {ppv} %");
    assert!(
        m.abs() <= abs_mean,
        "{label}: |mean| {m:.2} ms > {abs_mean} ms"
    );
    assert!(d <= sd, "{label}: SD {d:.2} ms > {sd} ms");
}

#[test]
fn ludb_delineation_cross_validated_meets_its_thresholds() {
    let cv = cross_validation();
    assert_eq!(cv.held_out.len(), 200);
    // The shipped shifts are the fit on all 200 records (the same fitting as each fold's).
    let shipped = Shifts::of(&DelineationParams::default());
    assert_eq!(shipped, cv.all_shifts, "refit the shipped shifts");
    // Each fold's fit stays within 5 ms of the all-record fit: the constants are stable.
    for f in &cv.fold_shifts {
        for (a, b) in f.0.iter().zip(&shipped.0) {
            assert!((a - b).abs() <= 5.0, "fold shifts {f} vs all {shipped}");
        }
    }
    let s = Summary::of(&cv.held_out);
    println!("{}", s.table("cross-validated (held-out)", WINDOW_MS));
    let b = |x| s.boundary(x).unwrap();

    // Targets met: QRS onset/offset |mean| <= 5 ms, Se and PPV >= 99.5 %.
    // (SD target 9 ms not met: regression bounds 9.5 and 10.25 ms, at 9.23 and 10.01 ms.)
    check(b(Boundary::QrsOn), "QRS on", 99.5, 99.5, 5.0, 9.5);
    check(b(Boundary::QrsOff), "QRS off", 99.5, 99.5, 5.0, 10.25);
    // Targets met: T offset Se and PPV >= 98 %, |mean| <= 5 ms.
    // (SD target 16 ms not met: regression bound 24.75 ms, at 24.28 ms. The reference's own
    // QT varies from beat to beat within a record by 19 ms SD: its T end is the latest of 12
    // leads' annotations, often one lead's far from the others.)
    check(b(Boundary::TOff), "T off", 98.0, 98.0, 5.0, 24.75);
    // Targets met: P Se >= 97 %, PPV >= 96 %; P onset and offset |mean| <= 5 ms. Not met:
    // SD <= 12 ms (regression bounds 17.0 and 13.25 ms, at 16.57 and 12.84 ms; the
    // reference's own PR varies from beat to beat within a record by 15 ms SD).
    check(b(Boundary::POn), "P on", 97.0, 96.0, 5.0, 17.0);
    check(b(Boundary::POff), "P off", 97.0, 96.0, 5.0, 13.25);

    // Global per record. Targets met: QRS |mean| <= 10 ms; QT |mean| <= 25 ms, SD <= 30 ms;
    // PR |mean| <= 10 ms. Not met: QRS SD <= 10 ms (bound 12, at 11.52), PR SD <= 10 ms
    // (bound 12.5, at 11.96).
    let (qrs_m, qrs_sd) = mean_sd(&s.qrs.errors_ms).unwrap();
    assert!(
        qrs_m.abs() <= 10.0 && qrs_sd <= 12.0,
        "QRS {qrs_m:.2} +- {qrs_sd:.2}"
    );
    let (qt_m, qt_sd) = mean_sd(&s.qt.errors_ms).unwrap();
    assert!(
        qt_m.abs() <= 25.0 && qt_sd <= 30.0,
        "QT {qt_m:.2} +- {qt_sd:.2}"
    );
    let (pr_m, pr_sd) = mean_sd(&s.pr.errors_ms).unwrap();
    assert!(
        pr_m.abs() <= 10.0 && pr_sd <= 12.5,
        "PR {pr_m:.2} +- {pr_sd:.2}"
    );
    // Three records with annotated P waves get none (two of them, 116 and 130, had P waves
    // placed 60-70 ms off before): regression bound 3.
    assert!(s.pr.unmeasured <= 3, "PR unmeasured on {}", s.pr.unmeasured);
    assert_eq!(s.qrs.unmeasured, 0);
    assert_eq!(s.qt.unmeasured, 0);

    // Target met: HR within 2 bpm of the annotated R-R on >= 95 % of records (same span).
    assert_eq!(s.hr_records, 200);
    assert!(
        s.hr_within_2 as f64 >= 0.95 * s.hr_records as f64,
        "HR within 2 bpm on {}/{}",
        s.hr_within_2,
        s.hr_records
    );

    // Target met: QRS axis category vs the header (190 records state one) on >= 90 %. The axis
    // is measured from the net QRS amplitudes of I and aVF (Einthoven-consistent), and LUDB's
    // categories are compared by LUDB's convention (left axis deviation below +30 deg,
    // `ludb_axis_of`); with the international -30 deg limit agreement is 68 %.
    assert_eq!(s.axis_records, 190);
    assert!(
        s.axis_agree as f64 >= 0.9 * s.axis_records as f64,
        "axis agrees on {}/{}",
        s.axis_agree,
        s.axis_records
    );

    // Records without annotated P waves (atrial fibrillation, flutter, complete AV block) get
    // few: regression bound 50 P onsets over all such records' spans.
    assert!(
        s.p_on_records_without_p <= 50,
        "{} P waves in records without any annotated",
        s.p_on_records_without_p
    );
}

#[test]
fn ludb_annotations_decode_to_the_independent_reading() {
    use eknet_shared::wfdb::annotation::{WaveKind, read_annotations, waves};
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = eknet_shared::data::require_data_dir(&here).unwrap();
    // Record 1, lead II, decoded independently (a 20-line Python reading of the words).
    let a = read_annotations(&data.join("ludb/data/1.ii")).unwrap();
    let first: Vec<(usize, char)> = a.iter().take(7).map(|x| (x.sample, x.symbol())).collect();
    assert_eq!(
        first,
        vec![
            (644, '('),
            (662, 'N'),
            (682, ')'),
            (776, '('),
            (843, 't'),
            (878, ')'),
            (1250, '(')
        ]
    );
    assert_eq!(a.len(), 48);
    assert_eq!(a.last().map(|x| (x.sample, x.symbol())), Some((3996, ')')));
    let w = waves(&a);
    assert_eq!(w.iter().filter(|x| x.kind == WaveKind::Qrs).count(), 6);
    assert_eq!(w.iter().filter(|x| x.kind == WaveKind::P).count(), 5);
    assert!(w.iter().all(|x| x.onset.is_some() && x.offset.is_some()));
}
