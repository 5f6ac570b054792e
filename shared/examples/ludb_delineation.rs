//! Validates the measurement engine's delineation against LUDB's cardiologist annotations:
//! per-boundary sensitivity, PPV and timing error, per-record global intervals, heart rate and
//! QRS axis category: (a) on the held-out records 101-200 with the shipped delineator (the
//! learned delineator trained on records 1-100, its weights and the boundary shifts fitted on
//! records 1-100), (b) the same records with the rule-based delineator alone, (c) all 200
//! records (1-100 in-sample); `LUDB_CV=1` adds (d), the rule-based delineator's shifts two-fold
//! cross-validated. The extra reports below are of (a).
//! `cargo run --release -p eknet-shared --example ludb_delineation`.
//!
//! Options (environment): `LUDB_PARAMS` a JSON object overriding [`DelineationParams`] fields;
//! `LUDB_WORST=boundary` lists the ten records with the largest mean absolute error of that
//! boundary (`qrs_on`, `qrs_off`, `p_on`, `p_off`, `t_off`) or global interval (`pr`, `qrs`,
//! `qt`), with the shipped shifts (`LUDB_TOP=n` lists n); `LUDB_PCT`, `LUDB_AXES`, `LUDB_HR`
//! print error percentiles, per-record axes and heart rates; `LUDB_VAR` splits each boundary's
//! error SD into within-record and between-record parts and gives it with errors over 30 and
//! 50 ms left out. `LUDB_ONLY_A=1` with `LUDB_RANGE=a-b` evaluates only records a to b with
//! the given settings (to compare settings inside the training records);
//! `LUDB_LEAVE_OUT=n` scores every table against a reference whose global onsets and offsets
//! leave out the n most extreme lead marks (the (n+1)-th earliest onset, latest offset);
//! `LUDB_SCATTER=1` prints the annotation's own beat-to-beat scatter of P onset and T offset in
//! regular rhythms; `LUDB_DUMP=dir` writes each record's rule-based beats, the learned
//! delineator's per-lead labels and the reference as JSON (`dir/k.json`, with `LUDB_RANGE`);
//! `LUDB_RECORD=k` prints one record's beats, the learned delineator's own waves and the
//! reference waves; `LUDB_WEIGHTS=file` uses that learned delineator's weights instead of the
//! embedded ones (and prints their difference from the trainer's probe output).

use eknet_shared::measure::DelineationParams;
use eknet_shared::measure::learned::Delineator;
use eknet_shared::measure::reference::{
    Boundary, RecordEvaluation, Shifts, Summary, cross_validate_ludb, evaluate_ludb_record_against,
    mean_sd,
};
use std::process::ExitCode;

mod common;

const WINDOW_MS: f64 = 150.0;

fn main() -> ExitCode {
    let here = std::env::current_dir().unwrap_or_default();
    let data = match eknet_shared::data::require_data_dir(&here) {
        Ok(d) => d.join("ludb").join("data"),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let params: DelineationParams = match std::env::var("LUDB_PARAMS") {
        Ok(json) => match serde_json::from_str(&json) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("LUDB_PARAMS: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => DelineationParams::default(),
    };
    if let Ok(k) = std::env::var("LUDB_RECORD") {
        dump_record(&data, &params, &k);
        return ExitCode::SUCCESS;
    }
    let (first, last) = std::env::var("LUDB_RANGE")
        .ok()
        .and_then(|r| {
            let (a, b) = r.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((1usize, 200usize));
    let weights = match std::env::var("LUDB_WEIGHTS") {
        Ok(file) => match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| Delineator::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(net) => {
                let d = eknet_shared::measure::learned::probe_difference(&net);
                eprintln!("{file}: largest difference from the trainer's probe output {d:.2e}");
                Some(net)
            }
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => None,
    };
    let net = match &weights {
        Some(n) => Some(n),
        None => Delineator::embedded().ok(),
    };
    if std::env::var("LUDB_SCATTER").is_ok() {
        for (name, range) in [
            ("1-100", 1..=100),
            ("101-200", 101..=200),
            ("1-200", 1..=200),
        ] {
            match annotation_scatter(&data, range) {
                Ok(lines) => lines.iter().for_each(|l| println!("records {name}: {l}")),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Ok(dir) = std::env::var("LUDB_DUMP") {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("{dir}: {e}");
            return ExitCode::FAILURE;
        }
        for k in first..=last {
            if let Err(e) = dump_json(&data, &params, net, k, std::path::Path::new(&dir)) {
                eprintln!("record {k}: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let leave_out: usize = match std::env::var("LUDB_LEAVE_OUT").map(|v| v.parse()) {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            eprintln!("LUDB_LEAVE_OUT: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => 0,
    };
    if leave_out > 0 {
        println!(
            "REFERENCE CHANGED: each global boundary leaves out the {leave_out} most extreme \
             lead mark(s) (not the cart's earliest onset / latest offset)\n"
        );
    }
    let run = |range: std::ops::RangeInclusive<usize>, params: &DelineationParams| {
        range
            .map(|k| {
                evaluate_ludb_record_against(
                    &data.join(k.to_string()),
                    params,
                    WINDOW_MS,
                    net,
                    leave_out,
                )
                .map_err(|e| format!("record {k}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let rule = DelineationParams {
        learned: false,
        ..params.clone()
    };
    if std::env::var("LUDB_ONLY_A").is_ok() {
        let evals = match run(first..=last, &params) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let summary = Summary::of(&evals);
        print!("{}", summary.table("(a) only", WINDOW_MS));
        extra_reports(&summary, &evals);
        return ExitCode::SUCCESS;
    }
    let (held, held_rule, all) = match (
        run(101..=200, &params),
        run(101..=200, &rule),
        run(1..=200, &params),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = Summary::of(&held);
    print!(
        "{}",
        summary.table(
            &format!(
                "(a) HELD OUT: records 101-200, shipped delineator (learned delineator trained on \
                 records 1-100; its weights and the shifts ({}) fitted on records 1-100)",
                Shifts::of(&params)
            ),
            WINDOW_MS
        )
    );
    println!();
    print!(
        "{}",
        Summary::of(&held_rule).table(
            "(b) HELD OUT, the rule-based delineator alone (same shifts)",
            WINDOW_MS
        )
    );
    println!();
    print!(
        "{}",
        Summary::of(&all).table(
            "(c) ALL 200 records, shipped delineator (records 1-100 in-sample)",
            WINDOW_MS
        )
    );
    if std::env::var("LUDB_CV").is_ok() {
        let names =
            |r: std::ops::RangeInclusive<usize>| r.map(|k| k.to_string()).collect::<Vec<_>>();
        let folds = vec![names(1..=100), names(101..=200)];
        let cv = match cross_validate_ludb(&data, &folds, &rule, WINDOW_MS) {
            Ok(cv) => cv,
            Err(e) => {
                eprintln!("cross-validation: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!();
        print!(
            "{}",
            Summary::of(&cv.held_out).table(
                &format!(
                    "(d) rule-based alone, shifts CROSS-VALIDATED in two folds: records 1-100 \
                     scored with shifts fitted on 101-200 ({}); records 101-200 with shifts \
                     fitted on 1-100 ({})",
                    cv.fold_shifts[0], cv.fold_shifts[1]
                ),
                WINDOW_MS
            )
        );
    }
    extra_reports(&summary, &held);
    ExitCode::SUCCESS
}

fn extra_reports(summary: &Summary, evals: &[RecordEvaluation]) {
    if std::env::var("LUDB_PCT").is_ok() {
        for (b, sc) in &summary.boundaries {
            let mut e = sc.errors_ms.clone();
            e.sort_by(f64::total_cmp);
            let q = |p: f64| {
                e.get(((e.len().max(1) - 1) as f64 * p) as usize)
                    .copied()
                    .unwrap_or(0.0)
            };
            println!(
                "{:<8} p2.5 {:>6.0} p10 {:>6.0} p25 {:>6.0} p50 {:>6.0} p75 {:>6.0} p90 {:>6.0} p97.5 {:>6.0}",
                b.label(),
                q(0.025),
                q(0.1),
                q(0.25),
                q(0.5),
                q(0.75),
                q(0.9),
                q(0.975)
            );
        }
    }
    if std::env::var("LUDB_VAR").is_ok() {
        for (k, b) in Boundary::ALL.iter().enumerate() {
            let (mut within, mut n, mut means) = (0.0, 0usize, Vec::new());
            for e in evals {
                let v = &e.boundaries[k].errors_ms;
                if let Some((m, sd)) = mean_sd(v) {
                    within += sd * sd * v.len() as f64;
                    n += v.len();
                    for _ in v {
                        means.push(m);
                    }
                }
            }
            let (_, between) = mean_sd(&means).unwrap_or((0.0, 0.0));
            let all: Vec<f64> = evals
                .iter()
                .filter(|e| e.has_p || k >= 2)
                .flat_map(|e| e.boundaries[k].errors_ms.iter().copied())
                .collect();
            for lim in [30.0, 50.0] {
                let kept: Vec<f64> = all.iter().copied().filter(|v| v.abs() <= lim).collect();
                let (m, sd) = mean_sd(&kept).unwrap_or((0.0, 0.0));
                println!(
                    "{:<8} |err| <= {lim}: {} of {} kept, mean {m:.2} SD {sd:.2}",
                    b.label(),
                    kept.len(),
                    all.len()
                );
            }
            println!(
                "{:<8} within-record SD {:>6.2} between-record SD {:>6.2}",
                b.label(),
                (within / n.max(1) as f64).sqrt(),
                between
            );
        }
    }
    if std::env::var("LUDB_AXES").is_ok() {
        for e in evals {
            println!(
                "axis {} {:?} {:?}",
                e.id, e.stated_axis, e.measured.qrs_axis_deg
            );
        }
    }
    if std::env::var("LUDB_HR").is_ok() {
        for e in evals {
            let r = e.reference.rr_mean_ms.map(|rr| 60_000.0 / rr);
            println!("hr {} ref {:?} measured {:?}", e.id, r, e.measured.hr_bpm);
        }
    }
    let Ok(which) = std::env::var("LUDB_WORST") else {
        return;
    };
    type Interval = fn(&RecordEvaluation) -> (Option<f64>, Option<f64>);
    let interval: Option<(&str, Interval)> = match which.as_str() {
        "pr" => Some(("PR", |e| (e.measured.pr_ms, e.reference.pr_ms))),
        "qrs" => Some(("QRS", |e| (e.measured.qrs_ms, e.reference.qrs_ms))),
        "qt" => Some(("QT", |e| (e.measured.qt_ms, e.reference.qt_ms))),
        _ => None,
    };
    let top: usize = std::env::var("LUDB_TOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if let Some((name, get)) = interval {
        let mut rows: Vec<(f64, String)> = evals
            .iter()
            .filter_map(|e| {
                let (m, r) = get(e);
                let r = r?;
                Some(match m {
                    Some(m) => (
                        (m - r).abs(),
                        format!(
                            "record {:>3}: measured {m:>6.0} annotated {r:>6.0} error {:>6.0}",
                            e.id,
                            m - r
                        ),
                    ),
                    None => (
                        f64::INFINITY,
                        format!("record {:>3}: unmeasured, annotated {r:>6.0}", e.id),
                    ),
                })
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!("\nworst records for global {name}:");
        for (_, r) in rows.iter().take(top) {
            println!("{r}");
        }
        return;
    }
    let b = match which.as_str() {
        "p_on" => Boundary::POn,
        "p_off" => Boundary::POff,
        "qrs_on" => Boundary::QrsOn,
        "qrs_off" => Boundary::QrsOff,
        _ => Boundary::TOff,
    };
    let idx = Boundary::ALL.iter().position(|x| *x == b).unwrap_or(0);
    let mut rows: Vec<(f64, String)> = evals
        .iter()
        .map(|e| {
            let s = &e.boundaries[idx];
            let mae =
                s.errors_ms.iter().map(|v| v.abs()).sum::<f64>() / s.errors_ms.len().max(1) as f64;
            let (m, sd) = mean_sd(&s.errors_ms).unwrap_or((0.0, 0.0));
            (
                mae + 50.0 * (s.false_negatives + s.false_positives) as f64,
                format!(
                    "record {:>3}: TP {:>2} FN {:>2} FP {:>2} mean {:>7.1} SD {:>6.1}",
                    e.id, s.true_positives, s.false_negatives, s.false_positives, m, sd
                ),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("\nworst records for {}:", b.label());
    for (_, r) in rows.iter().take(top) {
        println!("{r}");
    }
}

/// A record's rhythm counts as regular when the R-R intervals of its annotated QRS peaks vary
/// by less than this (SD over mean).
const REGULAR_RR_CV: f64 = 0.05;

/// `LUDB_SCATTER=1`: how much the annotation itself moves from beat to beat. In records with a
/// regular rhythm (at least five annotated QRS complexes, R-R SD under 5 % of the mean), the
/// annotated P onset is timed from the next QRS peak and the T offset from the previous one;
/// the SD of those times around each record's own mean (pooled over records) is the
/// annotation's within-record scatter, for the global reference (earliest onset, latest offset
/// over the leads) and for each lead's own annotation. Over every record's waves, also how far
/// the global boundary's mark (the earliest onset, latest offset) lies beyond the next lead's.
fn annotation_scatter(
    data: &std::path::Path,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Vec<String>, String> {
    use eknet_shared::measure::reference::{global_reference, ludb_lead_waves};
    use eknet_shared::wfdb::annotation::{Wave, WaveKind};
    // Deviations from the record's mean of each wave's time from its QRS peak (ms).
    fn deviations(all: &[Wave], kind: WaveKind, onset: bool) -> Option<Vec<f64>> {
        let peaks: Vec<usize> = all
            .iter()
            .filter(|w| w.kind == WaveKind::Qrs)
            .map(|w| w.peak)
            .collect();
        let rr: Vec<f64> = peaks.windows(2).map(|p| (p[1] - p[0]) as f64).collect();
        let (mean_rr, sd_rr) = mean_sd(&rr)?;
        if peaks.len() < 5 || sd_rr / mean_rr >= REGULAR_RR_CV {
            return None;
        }
        let reach = 350; // 700 ms at 500 Hz
        let times: Vec<f64> = all
            .iter()
            .filter(|w| w.kind == kind)
            .filter_map(|w| {
                let x = if onset { w.onset? } else { w.offset? };
                let peak = if onset {
                    peaks.iter().copied().find(|&p| p > x)?
                } else {
                    peaks.iter().copied().rev().find(|&p| p < x)?
                };
                (peak.abs_diff(x) <= reach).then_some(2.0 * (x as f64 - peak as f64))
            })
            .collect();
        let (m, _) = mean_sd(&times).filter(|_| times.len() >= 4)?;
        Some(times.iter().map(|t| t - m).collect())
    }
    let (mut global, mut per_lead) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut records = [0usize; 2];
    let mut excess = [Vec::new(), Vec::new()];
    for k in range {
        let leads =
            ludb_lead_waves(&data.join(k.to_string())).map_err(|e| format!("record {k}: {e}"))?;
        let r = global_reference(&leads);
        let merged: Vec<Wave> = [
            (&r.p, WaveKind::P),
            (&r.qrs, WaveKind::Qrs),
            (&r.t, WaveKind::T),
        ]
        .into_iter()
        .flat_map(|(ws, kind)| {
            ws.iter().map(move |w| Wave {
                kind,
                onset: w.onset,
                peak: w.peak,
                offset: w.offset,
            })
        })
        .collect();
        for (i, (kind, onset)) in [(WaveKind::P, true), (WaveKind::T, false)]
            .into_iter()
            .enumerate()
        {
            if let Some(d) = deviations(&merged, kind, onset) {
                records[i] += 1;
                global[i].extend(d);
            }
            for lead in &leads {
                per_lead[i].extend(deviations(lead, kind, onset).unwrap_or_default());
            }
        }
        // How far the most extreme mark lies beyond the next one, every wave of the record.
        for (i, (waves, kind, onset)) in [(&r.p, WaveKind::P, true), (&r.t, WaveKind::T, false)]
            .into_iter()
            .enumerate()
        {
            for g in waves {
                let (lo, hi) = (g.onset.unwrap_or(g.peak), g.offset.unwrap_or(g.peak));
                let mut marks: Vec<f64> = leads
                    .iter()
                    .flatten()
                    .filter(|w| w.kind == kind && (lo..=hi).contains(&w.peak))
                    .filter_map(|w| if onset { w.onset } else { w.offset })
                    .map(|v| if onset { v as f64 } else { -(v as f64) })
                    .collect();
                marks.sort_by(f64::total_cmp);
                if let [first, second, ..] = marks[..] {
                    excess[i].push(2.0 * (second - first));
                }
            }
        }
    }
    let sd = |v: &[f64]| mean_sd(v).map_or(f64::NAN, |(_, s)| s);
    Ok(["P on", "T off"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "{name}: annotation's within-record SD in regular rhythms {:.2} ms global \
                 ({} records, {} beats), {:.2} ms in one lead's own annotation ({} lead-beats); \
                 the most extreme lead mark beyond the next: mean {:.2} ms, SD {:.2} ms ({} waves)",
                sd(&global[i]),
                records[i],
                global[i].len(),
                sd(&per_lead[i]),
                per_lead[i].len(),
                mean_sd(&excess[i]).map_or(f64::NAN, |(m, _)| m),
                sd(&excess[i]),
                excess[i].len()
            )
        })
        .collect())
}

/// `LUDB_DUMP=dir`: one JSON file per record (`dir/k.json`) with the rule-based beats, the
/// learned delineator's labels of each of the twelve leads, the leads that failed quality and
/// the global reference boundaries, for exploring ways of combining them outside Rust.
fn dump_json(
    data: &std::path::Path,
    params: &DelineationParams,
    net: Option<&Delineator>,
    k: usize,
    dir: &std::path::Path,
) -> Result<(), String> {
    use eknet_shared::measure::reference::ludb_reference;
    let path = data.join(k.to_string());
    let record = eknet_shared::wfdb::read_record(&path).map_err(|e| e.to_string())?;
    let reference = ludb_reference(&path).map_err(|e| e.to_string())?;
    let mut fields = common::delineation_fields(&record, params, net)?;
    let refs: Vec<Vec<usize>> = Boundary::ALL
        .iter()
        .map(|b| b.of_reference(&reference))
        .collect();
    fields.insert("record".into(), serde_json::json!(k));
    fields.insert("reference".into(), serde_json::json!(refs));
    fields.insert("span".into(), serde_json::json!(reference.span));
    let json = serde_json::Value::Object(fields).to_string();
    std::fs::write(dir.join(format!("{k}.json")), json).map_err(|e| e.to_string())
}

/// `LUDB_RECORD=k`: one record's detected beats next to the reference waves (samples).
fn dump_record(data: &std::path::Path, params: &DelineationParams, k: &str) {
    use eknet_shared::measure::reference::ludb_reference;
    let path = data.join(k);
    let (Ok(record), Ok(reference)) = (
        eknet_shared::wfdb::read_record(&path),
        ludb_reference(&path),
    ) else {
        eprintln!("record {k} unreadable");
        return;
    };
    let m = eknet_shared::measure::measure_with(&record, params);
    for b in &m.beats {
        println!(
            "beat r {:>5} p {:?}-{:?} qrs {:?}-{:?} t_off {:?}",
            b.r, b.p_on, b.p_off, b.qrs_on, b.qrs_off, b.t_off
        );
    }
    // The learned delineator's own waves on the same leads (all twelve, as measured).
    if let Ok(net) = Delineator::embedded() {
        let leads: Option<Vec<&[f32]>> = eknet_shared::Lead::ALL
            .iter()
            .map(|&l| record.lead(l))
            .collect();
        if let Some(leads) = leads {
            let prepared = eknet_shared::measure::delineate::prepare(&leads, 500.0);
            let input: [&[f32]; 12] = std::array::from_fn(|i| prepared.base[i].as_slice());
            for (row, labels) in net.labels(&input).iter().enumerate() {
                for (name, class, min) in [("P", 1, 10), ("QRS", 2, 10), ("T", 3, 20)] {
                    for s in eknet_shared::measure::learned::segments(labels, class, min, 5) {
                        println!("net {row:>2} {name:<3} {}-{}", s.on, s.off);
                    }
                }
            }
        }
    }
    for (name, waves) in [
        ("P", &reference.p),
        ("QRS", &reference.qrs),
        ("T", &reference.t),
    ] {
        for w in waves {
            println!("ref {name:<3} {:?} {} {:?}", w.onset, w.peak, w.offset);
        }
    }
}
