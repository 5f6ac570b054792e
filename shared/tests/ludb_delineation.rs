//! The measurement engine against LUDB's cardiologist annotations, scored on records it never
//! learned from: the learned delineator was trained on records 1-100, its per-boundary weights
//! and the five constant boundary shifts were fitted on records 1-100, so records 101-200 are
//! held out. The targets are asserted on them where the engine meets them; those it does
//! not yet meet are asserted at the level reached, as regression bounds (named as such), so
//! neither can slip. `examples/ludb_delineation.rs` prints the tables.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::measure::DelineationParams;
use eknet_shared::measure::reference::{
    Boundary, BoundaryScore, RecordEvaluation, Shifts, Summary, evaluate_ludb_record,
    evaluate_ludb_record_using, fit_shifts, mean_sd,
};
use std::path::PathBuf;

const WINDOW_MS: f64 = 150.0;

fn ludb() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The shared records are part of the test setup (CI has them): absent, the test fails saying so.
    let data = eknet_shared::data::require_data_dir(&here).unwrap();
    data.join("ludb").join("data")
}

fn evaluate(
    records: std::ops::RangeInclusive<usize>,
    params: &DelineationParams,
) -> Vec<RecordEvaluation> {
    let dir = ludb();
    records
        .map(|k| evaluate_ludb_record(&dir.join(k.to_string()), params, WINDOW_MS).unwrap())
        .collect()
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

fn sd(s: &Summary, b: Boundary) -> f64 {
    s.boundary(b).unwrap().mean_sd().unwrap().1
}

#[test]
fn shipped_shifts_are_the_fit_on_the_training_records() {
    // The rule-based delineator alone, unshifted, on records 1-100: minus its median errors
    // are the shipped shifts.
    let rule = DelineationParams {
        learned: false,
        ..DelineationParams::default()
    };
    let dir = ludb();
    let unshifted = Shifts([0.0; 5]).apply(&rule);
    let training: Vec<RecordEvaluation> = (1..=100)
        .map(|k| {
            evaluate_ludb_record_using(&dir.join(k.to_string()), &unshifted, WINDOW_MS, None)
                .unwrap()
        })
        .collect();
    assert_eq!(
        fit_shifts(&training).unwrap(),
        Shifts::of(&DelineationParams::default()),
        "refit the shipped shifts on records 1-100"
    );
}

#[test]
fn ludb_held_out_records_meet_their_thresholds() {
    let shipped = DelineationParams::default();
    let held_out = evaluate(101..=200, &shipped);
    let s = Summary::of(&held_out);
    println!("{}", s.table("held out (records 101-200)", WINDOW_MS));
    let b = |x| s.boundary(x).unwrap();

    // The learned delineator earns its place: where it has weight, the held-out timing SD is
    // below the rule-based delineator's alone.
    let rule = evaluate(
        101..=200,
        &DelineationParams {
            learned: false,
            ..shipped.clone()
        },
    );
    let r = Summary::of(&rule);
    for x in Boundary::ALL {
        assert!(
            sd(&s, x) < sd(&r, x),
            "{}: SD {:.2} ms with the learned delineator, {:.2} ms without",
            x.label(),
            sd(&s, x),
            sd(&r, x)
        );
    }

    // Targets met (held out: 7.95 / 7.87 ms SD): QRS onset/offset |mean| <= 5 ms, SD <= 9 ms,
    // Se and PPV >= 99.5 %.
    check(b(Boundary::QrsOn), "QRS on", 99.5, 99.5, 5.0, 9.0);
    check(b(Boundary::QrsOff), "QRS off", 99.5, 99.5, 5.0, 9.0);
    // Targets met: T offset Se and PPV >= 98 %. (SD target 16 ms not met: regression bound
    // 21 ms, at 20.47 ms; the mean, -6.24 ms, has no target: regression bound 7 ms. The
    // reference's T end is the latest of 12 leads' annotations and moves from beat to beat
    // within a record: a delineator that knew each record's median annotated T end (from the R
    // peak) exactly and placed every beat's there would score 21.7 ms SD on all 200 records.)
    check(b(Boundary::TOff), "T off", 98.0, 98.0, 7.0, 21.0);
    // Targets met: P offset SD <= 12 ms (8.49), P PPV >= 96 %, P onset and offset |mean| <= 5
    // ms. Not met on these records: P sensitivity >= 97 % (95.80 %: 31 of 738 annotated P waves
    // missed; 97.09 % over all 200 records) and P onset SD <= 12 ms (14.57 ms): regression
    // bounds 95.5 % and 15 ms.
    check(b(Boundary::POn), "P on", 95.5, 96.0, 5.0, 15.0);
    check(b(Boundary::POff), "P off", 95.5, 96.0, 5.0, 12.0);

    // Global per record. Targets met: QRS |mean| <= 10 ms, SD <= 10 ms (8.72); PR |mean| <= 10
    // ms; QT |mean| <= 25 ms, SD <= 30 ms. Not met: PR SD <= 10 ms (regression bound 12, at
    // 11.75).
    let (qrs_m, qrs_sd) = mean_sd(&s.qrs.errors_ms).unwrap();
    assert!(
        qrs_m.abs() <= 10.0 && qrs_sd <= 10.0,
        "QRS {qrs_m:.2} +- {qrs_sd:.2}"
    );
    let (qt_m, qt_sd) = mean_sd(&s.qt.errors_ms).unwrap();
    assert!(
        qt_m.abs() <= 25.0 && qt_sd <= 30.0,
        "QT {qt_m:.2} +- {qt_sd:.2}"
    );
    let (pr_m, pr_sd) = mean_sd(&s.pr.errors_ms).unwrap();
    assert!(
        pr_m.abs() <= 10.0 && pr_sd <= 12.0,
        "PR {pr_m:.2} +- {pr_sd:.2}"
    );
    // Three records with annotated P waves get none: regression bound 3.
    assert!(s.pr.unmeasured <= 3, "PR unmeasured on {}", s.pr.unmeasured);
    assert_eq!(s.qrs.unmeasured, 0);
    assert_eq!(s.qt.unmeasured, 0);

    // Target met: HR within 2 bpm of the annotated R-R on >= 95 % of records (same span).
    assert_eq!(s.hr_records, 100);
    assert!(
        s.hr_within_2 as f64 >= 0.95 * s.hr_records as f64,
        "HR within 2 bpm on {}/{}",
        s.hr_within_2,
        s.hr_records
    );

    // Target met: QRS axis category vs the header (98 of these records state one) on >= 90 %.
    // The axis is measured from the net QRS amplitudes of I and aVF (Einthoven-consistent), and
    // LUDB's categories are compared by LUDB's convention (left axis deviation below +30 deg,
    // `ludb_axis_of`).
    assert_eq!(s.axis_records, 98);
    assert!(
        s.axis_agree as f64 >= 0.9 * s.axis_records as f64,
        "axis agrees on {}/{}",
        s.axis_agree,
        s.axis_records
    );

    // Records without annotated P waves (atrial fibrillation, flutter, complete AV block) get
    // few: regression bound 30 P onsets over all such records' spans (at 26).
    assert!(
        s.p_on_records_without_p <= 30,
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
