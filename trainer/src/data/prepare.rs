//! `eknet-train prepare`: turns PhysioNet layouts into the seed's training layout (`.ecgzip`
//! records plus `k{fold}_*.csv` split files and a class distribution), with labels harmonised
//! onto PTB-XL SCP statements and a report of everything skipped or unmapped. `--format combined`
//! builds one set from several sources at once (a PTB-XL folder and WFDB folders together, plus
//! unlabelled folders for stage 1): each ECG once, no patient on two sides of the split, and for
//! every record the classes its source's labels cannot speak to (`label_unknown`).

use super::split::{ClassRow, SplitRow, write_distribution, write_split};
use crate::rng::Rng;
use anyhow::{Context, Result, bail};
use eknet_shared::labels::cpsc::cpsc2018_vocabulary;
use eknet_shared::labels::{Harmoniser, ScpTable, UnmappedReport};
use eknet_shared::layout::WINDOW_SAMPLES;
use eknet_shared::preprocess::to_model_rate;
use eknet_shared::{Record, Sex, SourceLabel, ecgzip, wfdb};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What `prepare` wrote and skipped.
#[derive(Debug, Default, Serialize)]
pub struct PrepareReport {
    /// Records written.
    pub records: usize,
    /// Records per split.
    pub train: usize,
    /// Validation records.
    pub val: usize,
    /// Test records.
    pub test: usize,
    /// Unlabelled records written for stage 1 only (`k{fold}_unlabelled.csv`).
    pub unlabelled: usize,
    /// Classes kept, in output order, with their counts.
    pub classes: Vec<(String, usize)>,
    /// Records skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Records left out because the same ECG was already taken from another source.
    pub duplicates: Vec<(String, String)>,
    /// Records moved to another split so that no patient has records on two sides.
    pub moved_for_patient: usize,
    /// Labels that did not map onto SCP statements.
    pub unmapped: UnmappedReport,
    /// SCP codes present in the data but not kept as classes, with counts.
    pub dropped_classes: BTreeMap<String, usize>,
    /// What each source contributed (`--format combined`).
    pub sources: Vec<SourceReport>,
}

/// One source's contribution to a combined set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceReport {
    /// Short name (the folder's, or its parent's for `records`/`data` folders).
    pub name: String,
    /// The input folder.
    pub path: String,
    /// `ptbxl`, `wfdb` or `unlabelled`.
    pub layout: String,
    /// Records found.
    pub found: usize,
    /// Records written.
    pub written: usize,
    /// Skipped (unreadable, too short).
    pub skipped: usize,
    /// Left out as duplicates of another source's ECG.
    pub duplicates: usize,
    /// Training records.
    pub train: usize,
    /// Validation records.
    pub val: usize,
    /// Test records.
    pub test: usize,
    /// Stage-1-only records.
    pub unlabelled: usize,
    /// Positive records per kept class.
    pub class_counts: BTreeMap<String, usize>,
    /// Records per kept class whose label this source cannot state (`label_unknown`).
    pub class_unknown: BTreeMap<String, usize>,
}

/// Which statements a record's labels speak to: what a missing label means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelCoverage {
    /// PTB-XL: cardiologists coded every SCP statement; a missing code is an absent finding.
    All,
    /// CinC SNOMED codes and LUDB diagnoses: a missing finding is absent, but neither vocabulary
    /// states a normal ECG (`NORM`: SNOMED 426783006 is sinus rhythm, not a normal ECG).
    AllButNorm,
    /// CPSC 2018: only its nine classes are stated; every other statement is unknown.
    Cpsc2018,
    /// No labels (stage-1 data).
    None,
}

impl LabelCoverage {
    /// Whether a record with this coverage states class `code` (present or absent).
    pub fn states(self, code: &str) -> bool {
        match self {
            LabelCoverage::All => true,
            LabelCoverage::AllButNorm => code != "NORM",
            LabelCoverage::Cpsc2018 => cpsc2018_vocabulary().contains(&code),
            LabelCoverage::None => false,
        }
    }

    /// The coverage of a record's source labels.
    pub fn of(labels: &[SourceLabel]) -> LabelCoverage {
        if labels.iter().any(|l| matches!(l, SourceLabel::Scp(_))) {
            LabelCoverage::All
        } else if labels.iter().any(|l| matches!(l, SourceLabel::Cpsc2018(_))) {
            LabelCoverage::Cpsc2018
        } else if labels.is_empty() {
            LabelCoverage::None
        } else {
            LabelCoverage::AllButNorm
        }
    }
}

/// A record ready to be split: where its `.ecgzip` went and its SCP codes.
#[derive(Debug, Clone)]
struct Prepared {
    path: String,
    codes: Vec<String>,
    fold: Option<u32>,
    /// Index into the combined report's sources.
    source: usize,
    patient: Option<String>,
    coverage: LabelCoverage,
}

/// Options of `prepare --format wfdb`.
#[derive(Debug, Clone)]
pub struct WfdbPrepare {
    /// Fold number in the file names (`k{fold}_train.csv`).
    pub fold: u32,
    /// Seed of the record-level split.
    pub seed: u64,
    /// Fraction of records for validation.
    pub val_fraction: f64,
    /// Fraction of records for test.
    pub test_fraction: f64,
    /// Keep SCP codes with at least this many records (when `classes` is not given).
    pub min_count: usize,
    /// Explicit class list (SCP codes, output order).
    pub classes: Option<Vec<String>>,
    /// Stratify the split on the chosen classes (iterative stratification) instead of cutting
    /// one shuffled list, so each split holds its share of every class.
    pub stratify: bool,
}

fn find_headers(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for e in entries {
        let p = e?.path();
        if p.is_dir() {
            find_headers(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "hea") {
            out.push(p.with_extension(""));
        }
    }
    Ok(())
}

/// Records shorter than one window at 500 Hz cannot be trained on; they are reported.
fn usable(record: &Record) -> Result<(), String> {
    let r = to_model_rate(record).map_err(|e| e.to_string())?;
    if r.len_samples() < WINDOW_SAMPLES {
        return Err(format!(
            "{:.2} s is shorter than the 10 s window",
            r.duration_s()
        ));
    }
    Ok(())
}

/// Cuts leading and trailing samples at which every lead is exactly zero (CODE-15% pads short
/// exams with zeros at both ends: padding, not signal). Returns the record and how many samples
/// went.
pub fn trim_zero_padding(record: Record) -> Result<(Record, usize)> {
    let n = record.len_samples();
    let all_zero = |i: usize| record.leads().all(|(_, v)| v[i] == 0.0);
    let first = (0..n).find(|&i| !all_zero(i)).unwrap_or(n);
    let last = (first..n)
        .rev()
        .find(|&i| !all_zero(i))
        .map_or(first, |i| i + 1);
    if first == 0 && last == n {
        return Ok((record, 0));
    }
    let (mut meta, rate, leads) = record.into_parts();
    meta.notes.push(format!(
        "zero padding cut: samples [0, {first}) and [{last}, {n})"
    ));
    let leads = leads
        .into_iter()
        .map(|(l, v)| (l, v[first..last].to_vec()))
        .collect();
    Ok((Record::new(meta, rate, leads)?, n - (last - first)))
}

/// Removes each lead's baseline: its offset and drift below about 0.5 Hz (the 1 s moving average
/// of its 1 s moving average, subtracted). CODE-15% stores many exams without the front-end's
/// high-pass: leads sit up to 12 mV off zero and drift by more than the QRS is tall, which a
/// reconstruction loss would spend itself on (the other sources are within 0.03 mV of zero).
/// Returns the record and the largest offset removed, in mV.
pub fn remove_baseline(record: Record) -> Result<(Record, f32)> {
    use eknet_shared::rhythm::moving_average;
    let (mut meta, rate, leads) = record.into_parts();
    let w = (rate.round() as usize).max(1);
    let mut largest = 0.0f32;
    let leads = leads
        .into_iter()
        .map(|(l, v)| {
            let base = moving_average(&moving_average(&v, w), w);
            let mean = base.iter().map(|b| f64::from(*b)).sum::<f64>() / base.len().max(1) as f64;
            largest = largest.max(mean.abs() as f32);
            (l, v.iter().zip(&base).map(|(x, b)| x - b).collect())
        })
        .collect();
    meta.notes.push(format!(
        "baseline removed (1 s moving averages, largest lead offset {largest:.2} mV)"
    ));
    Ok((Record::new(meta, rate, leads)?, largest))
}

fn write_record(record: &Record, out: &Path, rel: &str) -> Result<()> {
    let path = out.join(format!("{rel}.ecgzip"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let full = record.clone().with_derived_limb_leads()?;
    ecgzip::write(&full, &path).with_context(|| format!("writing {}", path.display()))
}

/// Every WFDB record under one folder, harmonised, written under `records/{source}/`.
/// `keep` decides, from the record's id, whether it is taken (`Err(reason)` marks a duplicate).
#[allow(clippy::too_many_arguments)]
fn read_wfdb_folder(
    input: &Path,
    source: &str,
    source_index: usize,
    out: &Path,
    harmoniser: &Harmoniser,
    raw_exams: bool,
    keep: &dyn Fn(&str) -> Result<(), String>,
    report: &mut PrepareReport,
) -> Result<Vec<Prepared>> {
    let mut headers = Vec::new();
    find_headers(input, &mut headers)?;
    headers.sort();
    if headers.is_empty() {
        bail!("no WFDB header (.hea) under {}", input.display());
    }
    let mut prepared = Vec::new();
    for h in headers {
        if let Some(src) = report.sources.get_mut(source_index) {
            src.found += 1;
        }
        let record = match wfdb::read_record(&h) {
            Ok(r) => r,
            Err(e) => {
                report
                    .skipped
                    .push((h.display().to_string(), e.to_string()));
                count_source(report, source_index, |s| s.skipped += 1);
                continue;
            }
        };
        if let Err(why) = keep(&record.meta.id) {
            report.duplicates.push((h.display().to_string(), why));
            count_source(report, source_index, |s| s.duplicates += 1);
            continue;
        }
        let record = if raw_exams {
            remove_baseline(trim_zero_padding(record)?.0)?.0
        } else {
            record
        };
        if let Err(why) = usable(&record) {
            report.skipped.push((h.display().to_string(), why));
            count_source(report, source_index, |s| s.skipped += 1);
            continue;
        }
        let harmonised = harmoniser.harmonise(&record.meta.source_labels);
        report.unmapped.add(&harmonised);
        let rel = format!("records/{source}/{}", record.meta.id);
        write_record(&record, out, &rel)?;
        count_source(report, source_index, |s| s.written += 1);
        prepared.push(Prepared {
            path: rel,
            codes: harmonised.scp_codes,
            fold: None,
            source: source_index,
            patient: None,
            coverage: LabelCoverage::of(&record.meta.source_labels),
        });
    }
    Ok(prepared)
}

fn count_source(report: &mut PrepareReport, index: usize, f: impl FnOnce(&mut SourceReport)) {
    if let Some(s) = report.sources.get_mut(index) {
        f(s);
    }
}

/// `prepare --format wfdb`: every WFDB record under `inputs`, labels harmonised with `harmoniser`,
/// split by record with a fixed seed.
pub fn prepare_wfdb(
    inputs: &[PathBuf],
    out: &Path,
    harmoniser: &Harmoniser,
    opts: &WfdbPrepare,
) -> Result<PrepareReport> {
    if !(0.0..1.0).contains(&(opts.val_fraction + opts.test_fraction)) {
        bail!("--val-fraction plus --test-fraction must be below 1");
    }
    let mut report = PrepareReport::default();
    let mut prepared = Vec::new();
    for input in inputs {
        let source = input
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "records".into());
        prepared.extend(read_wfdb_folder(
            input,
            &source,
            usize::MAX,
            out,
            harmoniser,
            false,
            &|_| Ok(()),
            &mut report,
        )?);
    }
    let classes = choose_classes(
        &prepared,
        harmoniser.scp(),
        opts.classes.as_deref(),
        opts.min_count,
    )?;
    // Record-level split with a fixed seed.
    let split = if opts.stratify {
        stratified_split(&prepared, &classes, opts)
    } else {
        random_split(prepared.len(), opts)
    };
    write_outputs(
        out,
        opts.fold,
        &prepared,
        &split,
        &classes,
        false,
        &mut report,
    )?;
    Ok(report)
}
/// Split sizes (val, test) of `n` records.
fn split_sizes(n: usize, opts: &WfdbPrepare) -> (usize, usize) {
    let n_test = (n as f64 * opts.test_fraction).round() as usize;
    let n_val = (n as f64 * opts.val_fraction).round() as usize;
    (n_val, n_test)
}

/// Shuffle once with the seed, cut: test first, then validation, the rest train.
fn random_split(n: usize, opts: &WfdbPrepare) -> Vec<u8> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(opts.seed).shuffle(&mut order);
    let (n_val, n_test) = split_sizes(n, opts);
    let mut split = vec![0u8; n]; // 0 train, 1 val, 2 test
    for (rank, &i) in order.iter().enumerate() {
        split[i] = if rank < n_test {
            2
        } else if rank < n_test + n_val {
            1
        } else {
            0
        };
    }
    split
}

/// Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) on the chosen classes:
/// the rarest class still unplaced goes first; each of its records goes to the split that most
/// lacks that class (then the one that most lacks records, then the training split). Records with
/// none of the classes fill the remaining sizes. Records are taken in a seeded shuffled order,
/// so the split is a fixed function of the seed and the records.
fn stratified_split(prepared: &[Prepared], classes: &[String], opts: &WfdbPrepare) -> Vec<u8> {
    let n = prepared.len();
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(opts.seed).shuffle(&mut order);
    let (n_val, n_test) = split_sizes(n, opts);
    let fractions = [
        (n - n_val - n_test) as f64 / n.max(1) as f64,
        n_val as f64 / n.max(1) as f64,
        n_test as f64 / n.max(1) as f64,
    ];
    let has: Vec<Vec<usize>> = prepared
        .iter()
        .map(|p| {
            classes
                .iter()
                .enumerate()
                .filter(|(_, c)| p.codes.contains(c))
                .map(|(k, _)| k)
                .collect()
        })
        .collect();
    let mut want_records = [n - n_val - n_test, n_val, n_test].map(|x| x as f64);
    let mut want_class: Vec<[f64; 3]> = (0..classes.len())
        .map(|k| {
            let total = has.iter().filter(|h| h.contains(&k)).count() as f64;
            fractions.map(|f| f * total)
        })
        .collect();
    const UNSET: u8 = u8::MAX;
    let mut split = vec![UNSET; n];
    let mut left: Vec<usize> = order;
    loop {
        // The class with the fewest unplaced records (ties: output order).
        let mut rarest: Option<(usize, usize)> = None;
        for k in 0..classes.len() {
            let count = left.iter().filter(|&&i| has[i].contains(&k)).count();
            if count > 0 && rarest.is_none_or(|(_, c)| count < c) {
                rarest = Some((k, count));
            }
        }
        let Some((k, _)) = rarest else { break };
        let members: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&i| has[i].contains(&k))
            .collect();
        for i in members {
            let mut best = 0usize;
            for s in 1..3 {
                let key = |s: usize| (want_class[k][s], want_records[s]);
                let (a, b) = (key(s), key(best));
                if a.0 > b.0 || (a.0 == b.0 && a.1 > b.1) {
                    best = s;
                }
            }
            split[i] = best as u8;
            want_records[best] -= 1.0;
            for &c in &has[i] {
                want_class[c][best] -= 1.0;
            }
        }
        left.retain(|&i| split[i] == UNSET);
    }
    for i in left {
        let best = (0..3)
            .max_by(|&a, &b| want_records[a].total_cmp(&want_records[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        split[i] = best as u8;
        want_records[best] -= 1.0;
    }
    split
}

/// Classes in SCP table order: the explicit list, or every code (but SR) with `min_count` records.
fn choose_classes(
    prepared: &[Prepared],
    scp: &ScpTable,
    explicit: Option<&[String]>,
    min_count: usize,
) -> Result<Vec<String>> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in prepared {
        for c in &p.codes {
            *counts.entry(c.as_str()).or_default() += 1;
        }
    }
    let classes: Vec<String> = match explicit {
        Some(list) => {
            for c in list {
                if scp.get(c).is_none() {
                    bail!("class '{c}' is not a PTB-XL SCP statement");
                }
            }
            list.to_vec()
        }
        None => scp
            .eknet_classes()
            .into_iter()
            .filter(|s| counts.get(s.code.as_str()).copied().unwrap_or(0) >= min_count)
            .map(|s| s.code.clone())
            .collect(),
    };
    if classes.is_empty() {
        bail!("no class has at least {min_count} records; lower --min-count or name --classes");
    }
    Ok(classes)
}

fn write_outputs(
    out: &Path,
    fold: u32,
    prepared: &[Prepared],
    split: &[u8],
    classes: &[String],
    with_unknown: bool,
    report: &mut PrepareReport,
) -> Result<()> {
    let mut rows: [Vec<SplitRow>; 3] = Default::default();
    let mut dist: Vec<ClassRow> = classes
        .iter()
        .enumerate()
        .map(|(idx, name)| ClassRow {
            idx,
            name: name.clone(),
            all: 0,
            train: 0,
            val: 0,
        })
        .collect();
    for (p, &s) in prepared.iter().zip(split) {
        let labels: Vec<String> = classes
            .iter()
            .filter(|c| p.codes.contains(c))
            .cloned()
            .collect();
        let unknown: Vec<String> = if with_unknown {
            classes
                .iter()
                .filter(|c| !p.coverage.states(c) && !labels.contains(c))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for c in &p.codes {
            if !classes.contains(c) {
                *report.dropped_classes.entry(c.clone()).or_default() += 1;
            }
        }
        for row in dist.iter_mut().filter(|r| labels.contains(&r.name)) {
            row.all += 1;
            match s {
                0 => row.train += 1,
                1 => row.val += 1,
                _ => {}
            }
        }
        count_source(report, p.source, |src| {
            match s {
                0 => src.train += 1,
                1 => src.val += 1,
                _ => src.test += 1,
            }
            for l in &labels {
                *src.class_counts.entry(l.clone()).or_default() += 1;
            }
            for u in &unknown {
                *src.class_unknown.entry(u.clone()).or_default() += 1;
            }
        });
        rows[s as usize].push(SplitRow {
            path: p.path.clone(),
            labels,
            unknown,
        });
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, r) in ["train", "val", "test"].iter().zip(&rows) {
        write_split(&out.join(format!("k{fold}_{name}.csv")), r)?;
    }
    write_distribution(&out.join(format!("k{fold}_distribution.csv")), &dist)?;
    report.records = prepared.len();
    report.train = rows[0].len();
    report.val = rows[1].len();
    report.test = rows[2].len();
    report.classes = dist.iter().map(|r| (r.name.clone(), r.all)).collect();
    write_report(out, fold, report)
}

fn write_report(out: &Path, fold: u32, report: &PrepareReport) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out.join(format!("k{fold}_prepare_report.json")), json)?;
    Ok(())
}

/// How PTB-XL records are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtbxlSplit {
    /// `strat_fold` 1-8 train, 9 validation, 10 test (the field's standard).
    StratFold,
    /// The seed's random 70/30 train/validation split of all records (no test split).
    Random70_30 {
        /// Shuffle seed.
        seed: u64,
    },
}

/// Options of `prepare --format ptbxl`.
#[derive(Debug, Clone)]
pub struct PtbxlPrepare {
    /// Fold number in file names.
    pub fold: u32,
    /// Read `records500/` (500 Hz) or `records100/` (100 Hz, resampled later).
    pub use_500hz: bool,
    /// Split rule.
    pub split: PtbxlSplit,
    /// Class list (default: the 70 EKnet classes).
    pub classes: Option<Vec<String>>,
}

/// Parses PTB-XL's `scp_codes` column, a Python dict literal such as
/// `{'NORM': 100.0, 'SR': 0.0}`, into its codes (every listed statement counts as present).
pub fn parse_scp_codes(text: &str) -> Result<Vec<String>> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .with_context(|| format!("scp_codes '{text}' is not a {{..}} literal"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|kv| {
            let key = kv.split(':').next().unwrap_or("").trim();
            key.strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .map(str::to_string)
                .with_context(|| format!("scp_codes entry '{kv}' has no quoted code"))
        })
        .collect()
}

/// Reads a PTB-XL folder's rows (records at 500 Hz when asked, else 100 Hz), writing each record's
/// `.ecgzip` under `out` at the same relative path. Returns the SCP table and the records.
fn read_ptbxl(
    input: &Path,
    out: &Path,
    use_500hz: bool,
    source_index: usize,
    report: &mut PrepareReport,
) -> Result<(ScpTable, Vec<Prepared>)> {
    let scp_path = input.join("scp_statements.csv");
    let scp = ScpTable::from_csv(&scp_path)?;
    let db_path = input.join("ptbxl_database.csv");
    let mut reader = csv::Reader::from_path(&db_path).with_context(|| {
        format!(
            "opening {} (is --input a PTB-XL folder?)",
            db_path.display()
        )
    })?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: missing column '{name}'", db_path.display()))
    };
    let file_col = col(if use_500hz {
        "filename_hr"
    } else {
        "filename_lr"
    })?;
    let (c_id, c_codes, c_fold, c_age, c_sex, c_patient) = (
        col("ecg_id")?,
        col("scp_codes")?,
        col("strat_fold")?,
        col("age")?,
        col("sex")?,
        col("patient_id")?,
    );
    let mut prepared = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} row {}", db_path.display(), i + 2))?;
        let get = |c: usize| row.get(c).unwrap_or("").trim();
        count_source(report, source_index, |s| s.found += 1);
        let rel = get(file_col).to_string();
        let fold: u32 = get(c_fold)
            .parse::<f64>()
            .map(|f| f as u32)
            .with_context(|| {
                format!(
                    "{} row {}: strat_fold '{}'",
                    db_path.display(),
                    i + 2,
                    get(c_fold)
                )
            })?;
        let codes = parse_scp_codes(get(c_codes)).with_context(|| {
            format!("{} row {} (ecg_id {})", db_path.display(), i + 2, get(c_id))
        })?;
        let mut record = match wfdb::read_record(&input.join(&rel)) {
            Ok(r) => r,
            Err(e) => {
                report.skipped.push((rel, e.to_string()));
                count_source(report, source_index, |s| s.skipped += 1);
                continue;
            }
        };
        record.meta.id = get(c_id).to_string();
        record.meta.age_years = get(c_age).parse::<f32>().ok();
        // PTB-XL codes sex as 0 = male, 1 = female.
        record.meta.sex = match get(c_sex) {
            "0" | "0.0" => Some(Sex::Male),
            "1" | "1.0" => Some(Sex::Female),
            _ => None,
        };
        record.meta.source_labels = codes.iter().cloned().map(SourceLabel::Scp).collect();
        if let Err(why) = usable(&record) {
            report.skipped.push((rel, why));
            count_source(report, source_index, |s| s.skipped += 1);
            continue;
        }
        let unknown: Vec<SourceLabel> = codes
            .iter()
            .filter(|c| scp.get(c).is_none())
            .cloned()
            .map(SourceLabel::Scp)
            .collect();
        report
            .unmapped
            .add(&eknet_shared::labels::HarmonisedLabels {
                scp_codes: Vec::new(),
                mapped: Vec::new(),
                unmapped: unknown
                    .into_iter()
                    .map(|label| eknet_shared::labels::UnmappedLabel {
                        label,
                        name: None,
                        reason: eknet_shared::labels::UnmappedReason::Unrecognised,
                    })
                    .collect(),
            });
        write_record(&record, out, &rel)?;
        count_source(report, source_index, |s| s.written += 1);
        let patient = Some(get(c_patient))
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        prepared.push(Prepared {
            path: rel,
            codes,
            fold: Some(fold),
            source: source_index,
            patient,
            coverage: LabelCoverage::All,
        });
    }
    Ok((scp, prepared))
}

/// PTB-XL's benchmark split: `strat_fold` 10 test, 9 validation, the rest training.
fn fold_split(fold: Option<u32>) -> u8 {
    match fold {
        Some(10) => 2,
        Some(9) => 1,
        _ => 0,
    }
}

/// `prepare --format ptbxl`: PhysioNet's PTB-XL layout to the seed's.
pub fn prepare_ptbxl(input: &Path, out: &Path, opts: &PtbxlPrepare) -> Result<PrepareReport> {
    let mut report = PrepareReport::default();
    let (scp, prepared) = read_ptbxl(input, out, opts.use_500hz, usize::MAX, &mut report)?;
    let classes = match &opts.classes {
        Some(list) => choose_classes(&prepared, &scp, Some(list), 0)?,
        None => scp
            .eknet_classes()
            .into_iter()
            .map(|s| s.code.clone())
            .collect(),
    };
    let split: Vec<u8> = match opts.split {
        PtbxlSplit::StratFold => prepared.iter().map(|p| fold_split(p.fold)).collect(),
        PtbxlSplit::Random70_30 { seed } => {
            let mut order: Vec<usize> = (0..prepared.len()).collect();
            Rng::new(seed).shuffle(&mut order);
            let n_val = (prepared.len() as f64 * 0.3).round() as usize;
            let mut s = vec![0u8; prepared.len()];
            for &i in &order[..n_val] {
                s[i] = 1;
            }
            s
        }
    };
    write_outputs(
        out,
        opts.fold,
        &prepared,
        &split,
        &classes,
        false,
        &mut report,
    )?;
    Ok(report)
}

/// Options of `prepare --format combined`.
#[derive(Debug, Clone)]
pub struct CombinedPrepare {
    /// Split sizes, seed, class choice and fold for the non-PTB-XL records (always stratified).
    pub split: WfdbPrepare,
    /// Folders of unlabelled WFDB records for stage 1 only (e.g. CODE-15%).
    pub unlabelled: Vec<PathBuf>,
}

/// The name a source folder is reported and written under: the folder's own name, or its
/// parent's when the folder is a generic `records`/`data` one (`cinc/records` is `cinc`).
pub fn source_name(input: &Path) -> String {
    let own = input
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if matches!(own.as_str(), "records" | "data" | "")
        && let Some(parent) = input
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
    {
        return parent;
    }
    if own.is_empty() {
        "records".into()
    } else {
        own
    }
}

/// A CinC record re-publishing a PTB-XL ECG is named `HR` and the five-digit ecg_id.
fn cinc_ptbxl_id(record_id: &str) -> Option<u32> {
    let digits = record_id.strip_prefix("HR")?;
    (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Every record of a patient goes to the most held-out split any of them was given (test over
/// validation over training), so no patient is on two sides. Returns how many records moved.
fn keep_patients_together(prepared: &[Prepared], split: &mut [u8]) -> usize {
    let mut worst: BTreeMap<&str, u8> = BTreeMap::new();
    for (p, &s) in prepared.iter().zip(split.iter()) {
        if let Some(id) = &p.patient {
            let e = worst.entry(id.as_str()).or_insert(s);
            *e = (*e).max(s);
        }
    }
    let mut moved = 0;
    for (p, s) in prepared.iter().zip(split.iter_mut()) {
        if let Some(&w) = p.patient.as_deref().and_then(|id| worst.get(id))
            && w != *s
        {
            *s = w;
            moved += 1;
        }
    }
    moved
}

/// `prepare --format combined`: one training set from several sources. Each `inputs` folder is
/// a PTB-XL folder (it holds `ptbxl_database.csv`; `records500/` is read where present, else
/// `records100/`) or a folder of WFDB records (CinC, CPSC 2018, LUDB). Labels are harmonised onto
/// SCP statements; a CinC `HR#####` record that re-publishes a PTB-XL ECG present among the inputs
/// is left out (the PTB-XL copy carries the official labels, fold and patient); PTB-XL records
/// split by `strat_fold` (9 validation, 10 test), the others by record, stratified on the classes;
/// a patient's records stay on one side. `unlabelled` folders give stage-1-only records.
pub fn prepare_combined(
    inputs: &[PathBuf],
    out: &Path,
    harmoniser: &Harmoniser,
    opts: &CombinedPrepare,
) -> Result<PrepareReport> {
    let o = &opts.split;
    if !(0.0..1.0).contains(&(o.val_fraction + o.test_fraction)) {
        bail!("--val-fraction plus --test-fraction must be below 1");
    }
    let mut report = PrepareReport::default();
    let is_ptbxl = |p: &Path| p.join("ptbxl_database.csv").is_file();
    // PTB-XL folders first, so their ECGs are the ones kept when a WFDB folder repeats them.
    let mut ordered: Vec<&PathBuf> = inputs.iter().filter(|p| is_ptbxl(p)).collect();
    ordered.extend(inputs.iter().filter(|p| !is_ptbxl(p)));
    let mut prepared = Vec::new();
    let mut ptbxl_ids: BTreeSet<u32> = BTreeSet::new();
    for input in ordered {
        if !input.is_dir() {
            bail!("--input {} is not a folder", input.display());
        }
        let index = report.sources.len();
        let name = source_name(input);
        if report.sources.iter().any(|s| s.name == name) {
            bail!(
                "two inputs are named '{name}' ({}): records would overwrite each other",
                input.display()
            );
        }
        report.sources.push(SourceReport {
            name: name.clone(),
            path: input.display().to_string(),
            layout: if is_ptbxl(input) { "ptbxl" } else { "wfdb" }.into(),
            ..SourceReport::default()
        });
        if is_ptbxl(input) {
            let use_500hz = input.join("records500").is_dir();
            let (_, rows) = read_ptbxl(input, &out.join(&name), use_500hz, index, &mut report)?;
            for mut p in rows {
                // PTB-XL file names start with the five-digit ecg_id (`00002_lr`).
                let file = p.path.rsplit('/').next().unwrap_or("");
                if let Some(id) = file.split('_').next().and_then(|d| d.parse::<u32>().ok()) {
                    ptbxl_ids.insert(id);
                }
                p.path = format!("{name}/{}", p.path);
                prepared.push(p);
            }
        } else {
            let ids = ptbxl_ids.clone();
            let keep = move |id: &str| match cinc_ptbxl_id(id) {
                Some(n) if ids.contains(&n) => Err(format!(
                    "the same ECG as PTB-XL ecg_id {n}, taken from PTB-XL"
                )),
                _ => Ok(()),
            };
            prepared.extend(read_wfdb_folder(
                input,
                &name,
                index,
                out,
                harmoniser,
                false,
                &keep,
                &mut report,
            )?);
        }
    }
    if prepared.is_empty() {
        bail!("no usable labelled record in the inputs");
    }
    let classes = choose_classes(
        &prepared,
        harmoniser.scp(),
        o.classes.as_deref(),
        o.min_count,
    )?;
    // PTB-XL by its folds; the rest by record, stratified on the classes.
    let mut split: Vec<u8> = prepared.iter().map(|p| fold_split(p.fold)).collect();
    let others: Vec<usize> = (0..prepared.len())
        .filter(|&i| prepared[i].fold.is_none())
        .collect();
    if !others.is_empty() {
        let subset: Vec<Prepared> = others.iter().map(|&i| prepared[i].clone()).collect();
        for (&i, s) in others.iter().zip(stratified_split(&subset, &classes, o)) {
            split[i] = s;
        }
    }
    report.moved_for_patient = keep_patients_together(&prepared, &mut split);
    write_outputs(out, o.fold, &prepared, &split, &classes, true, &mut report)?;

    // Stage-1-only records: written, listed in k{fold}_unlabelled.csv, and with the training
    // split in k{fold}_pretrain.csv (stage 1 never trains on validation or test signals).
    let mut unlabelled_rows = Vec::new();
    for input in &opts.unlabelled {
        let index = report.sources.len();
        let name = source_name(input);
        report.sources.push(SourceReport {
            name: name.clone(),
            path: input.display().to_string(),
            layout: "unlabelled".into(),
            ..SourceReport::default()
        });
        let rows = read_wfdb_folder(
            input,
            &name,
            index,
            out,
            harmoniser,
            true,
            &|_| Ok(()),
            &mut report,
        )?;
        count_source(&mut report, index, |s| s.unlabelled = rows.len());
        unlabelled_rows.extend(rows.into_iter().map(|p| SplitRow {
            path: p.path,
            labels: Vec::new(),
            unknown: classes.clone(),
        }));
    }
    report.unlabelled = unlabelled_rows.len();
    write_split(
        &out.join(format!("k{}_unlabelled.csv", o.fold)),
        &unlabelled_rows,
    )?;
    let mut pretrain = super::split::read_split(&out.join(format!("k{}_train.csv", o.fold)))?;
    pretrain.extend(unlabelled_rows);
    write_split(&out.join(format!("k{}_pretrain.csv", o.fold)), &pretrain)?;
    write_report(out, o.fold, &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_code_dicts_parse() {
        assert_eq!(
            parse_scp_codes("{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}").unwrap(),
            vec!["NORM", "LVOLT", "SR"]
        );
        assert_eq!(parse_scp_codes("{}").unwrap(), Vec::<String>::new());
        assert!(parse_scp_codes("NORM").is_err());
    }

    fn fake(n: usize) -> Vec<Prepared> {
        // Class A on every 4th record, B on every 10th, C on 7 records only.
        (0..n)
            .map(|i| {
                let mut codes = vec![];
                if i % 4 == 0 {
                    codes.push("A".to_string());
                }
                if i % 10 == 3 {
                    codes.push("B".to_string());
                }
                if i < 7 {
                    codes.push("C".to_string());
                }
                Prepared {
                    path: format!("r{i}"),
                    codes,
                    fold: None,
                    source: usize::MAX,
                    patient: None,
                    coverage: LabelCoverage::AllButNorm,
                }
            })
            .collect()
    }

    #[test]
    fn stratified_split_gives_each_split_its_share_of_every_class() {
        let prepared = fake(200);
        let classes: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let opts = WfdbPrepare {
            fold: 0,
            seed: 42,
            val_fraction: 0.15,
            test_fraction: 0.15,
            min_count: 1,
            classes: None,
            stratify: true,
        };
        let split = stratified_split(&prepared, &classes, &opts);
        assert_eq!(split.len(), 200);
        let count = |s: u8| split.iter().filter(|&&x| x == s).count();
        // Sizes as the random split's: 30 test, 30 val, the rest train.
        assert_eq!((count(0), count(1), count(2)), (140, 30, 30));
        let per = |code: &str, s: u8| {
            (0..200)
                .filter(|&i| split[i] == s && prepared[i].codes.iter().any(|c| c == code))
                .count()
        };
        // A: 50 records -> 35 / 7.5 / 7.5; B: 20 -> 14 / 3 / 3; C: 7 -> 5 / 1 / 1.
        for s in 1..3 {
            assert!(
                (7..=8).contains(&per("A", s)),
                "A in split {s}: {}",
                per("A", s)
            );
            assert_eq!(per("B", s), 3, "B in split {s}");
            assert!(
                (1..=2).contains(&per("C", s)),
                "C in split {s}: {}",
                per("C", s)
            );
        }
        assert_eq!(per("B", 0), 14);
        // A fixed function of the seed.
        assert_eq!(split, stratified_split(&prepared, &classes, &opts));
        let other = WfdbPrepare {
            seed: 7,
            ..opts.clone()
        };
        assert_ne!(split, stratified_split(&prepared, &classes, &other));
        // The random split is unchanged by the option's existence.
        assert_eq!(random_split(200, &opts).len(), 200);
    }
}

#[cfg(test)]
mod combined_tests {
    use super::*;

    fn rec(patient: Option<&str>, fold: Option<u32>) -> Prepared {
        Prepared {
            path: String::new(),
            codes: Vec::new(),
            fold,
            source: usize::MAX,
            patient: patient.map(str::to_string),
            coverage: LabelCoverage::All,
        }
    }

    #[test]
    fn baseline_removal_takes_offset_and_drift_and_keeps_the_waves() {
        use eknet_shared::{Lead, RecordMeta};
        let rate = 400.0;
        let n = 4000;
        let wave = |i: usize| (2.0 * std::f64::consts::PI * 10.0 * i as f64 / rate).sin();
        let leads = [Lead::I, Lead::II]
            .into_iter()
            .enumerate()
            .map(|(k, l)| {
                let v = (0..n)
                    .map(|i| {
                        let t = i as f64 / rate;
                        (wave(i) + 5.0 * (k as f64 + 1.0) + 0.8 * t / 10.0) as f32
                    })
                    .collect();
                (l, v)
            })
            .collect();
        let r = Record::new(RecordMeta::default(), rate, leads).unwrap();
        let (r, largest) = remove_baseline(r).unwrap();
        assert!((largest - 10.4).abs() < 0.2, "largest offset {largest}");
        for (_, v) in r.leads() {
            // Away from the edges (where the averages are shortened): the 10 Hz wave, no offset.
            let mid = &v[800..n - 800];
            let mean = mid.iter().map(|x| f64::from(*x)).sum::<f64>() / mid.len() as f64;
            assert!(mean.abs() < 0.02, "offset left {mean}");
            for (i, x) in mid.iter().enumerate() {
                assert!(
                    (f64::from(*x) - wave(i + 800)).abs() < 0.1,
                    "sample {i}: {x}"
                );
            }
        }
        assert!(r.meta.notes.iter().any(|n| n.contains("baseline removed")));
    }

    #[test]
    fn a_patients_records_stay_on_one_side() {
        let prepared = vec![
            rec(Some("p1"), Some(1)),
            rec(Some("p1"), Some(10)),
            rec(Some("p2"), Some(9)),
            rec(Some("p2"), Some(3)),
            rec(None, None),
            rec(Some("p3"), Some(2)),
        ];
        let mut split: Vec<u8> = prepared.iter().map(|p| fold_split(p.fold)).collect();
        assert_eq!(split, [0, 2, 1, 0, 0, 0]);
        assert_eq!(keep_patients_together(&prepared, &mut split), 2);
        assert_eq!(split, [2, 2, 1, 1, 0, 0], "held-out sides win");
    }

    #[test]
    fn coverage_says_which_labels_a_source_states() {
        assert!(LabelCoverage::All.states("NORM"));
        assert!(!LabelCoverage::AllButNorm.states("NORM"));
        assert!(LabelCoverage::AllButNorm.states("AFIB"));
        assert!(LabelCoverage::Cpsc2018.states("AFIB"));
        assert!(LabelCoverage::Cpsc2018.states("NORM"));
        assert!(!LabelCoverage::Cpsc2018.states("SBRAD"));
        assert!(!LabelCoverage::None.states("AFIB"));
        let cpsc = [
            SourceLabel::Snomed("426783006".into()),
            SourceLabel::Cpsc2018("Normal".into()),
        ];
        assert_eq!(LabelCoverage::of(&cpsc), LabelCoverage::Cpsc2018);
        assert_eq!(
            LabelCoverage::of(&[SourceLabel::Text("Rhythm: Sinus rhythm.".into())]),
            LabelCoverage::AllButNorm
        );
        assert_eq!(LabelCoverage::of(&[]), LabelCoverage::None);
    }

    #[test]
    fn names_and_duplicate_ids() {
        assert_eq!(
            source_name(Path::new("../shared/data/cinc/records")),
            "cinc"
        );
        assert_eq!(source_name(Path::new("../shared/data/ludb/data")), "ludb");
        assert_eq!(source_name(Path::new("/x/ptbxl")), "ptbxl");
        assert_eq!(cinc_ptbxl_id("HR00599"), Some(599));
        assert_eq!(cinc_ptbxl_id("HR0059"), None);
        assert_eq!(cinc_ptbxl_id("A0001"), None);
    }
}
