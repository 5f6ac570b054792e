//! `eknet-train evaluate`: a stage-2 checkpoint scored on validation and on the chosen split;
//! per-class thresholds fitted on validation (max F1) and applied to the split; macro and micro
//! AUC and F1 with bootstrap 95 % intervals; beside each class a trivial rule where one exists
//! (heart rate for sinus brady/tachycardia, R-R irregularity for atrial fibrillation) on the same
//! records and resamples, so a model that loses to a rule is visible; JSON, CSV and PNG plots
//! (loss curves, ROC curves). A checkpoint whose class order differs from the split's is refused.

use crate::checkpoint::{read_state, recorder};
use crate::data::cache::RecordCache;
use crate::metrics::{
    ClassMetrics, Interval, Predictions, Summary, best_f1_threshold, bootstrap_rows, evaluate,
    percentile_interval, roc_auc, roc_curve,
};
use crate::model::{Eknet, EknetConfig, Stage};
use crate::train::{default_cache_dir, open_splits, predict};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::prelude::*;
use eknet_shared::Lead;
use eknet_shared::config::StageConfig;
use eknet_shared::rhythm::{heart_rate_bpm, rr_irregularity};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Which split to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// The test split (`TEST_CSV`, or `k*_test.csv` beside `TRAIN_CSV`).
    Test,
    /// The validation split (thresholds are fitted on it too: optimistic).
    Val,
}

/// The whole evaluation, as written to `metrics.json`.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    /// Checkpoint evaluated.
    pub checkpoint: String,
    /// Split reported.
    pub split: String,
    /// Records in that split.
    pub records: usize,
    /// Records in validation (where thresholds were fitted).
    pub val_records: usize,
    /// Aggregates with intervals.
    pub summary: Summary,
    /// Per class.
    pub classes: Vec<ClassMetrics>,
    /// Bootstrap resamples.
    pub bootstrap_resamples: usize,
    /// Trivial rules beside the classes that have one.
    pub rules: Vec<RuleReport>,
}

/// A trivial rule scored on the same records as the model.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    /// The class.
    pub class: String,
    /// What the rule scores by.
    pub rule: String,
    /// The rule's AUC with its bootstrap interval.
    pub auc: Interval,
    /// The model's AUC minus the rule's, over the same resamples (paired).
    pub model_minus_rule: Interval,
    /// Records on which the rule could not measure (fewer than 3-4 beats found); they get the
    /// median of the measured scores.
    pub unmeasured: usize,
}

/// How a trivial rule scores a 10 s lead II (higher = more likely present; `None`: cannot tell).
pub type RuleFn = fn(&[f32]) -> Option<f64>;

/// The trivial rule of a class, where one exists: its name and how it scores a 10 s lead II.
pub fn rule_for(class: &str) -> Option<(&'static str, RuleFn)> {
    match class {
        "SBRAD" => Some(("heart rate, lower is more likely", |ii| {
            heart_rate_bpm(ii).map(|hr| -hr)
        })),
        "STACH" => Some(("heart rate, higher is more likely", heart_rate_bpm)),
        "AFIB" => Some(("R-R irregularity (RMSSD / mean R-R)", rr_irregularity)),
        _ => None,
    }
}

/// The rule's scores on each record's first 10 s window (the window the model scores) and how
/// many records it could not measure.
pub fn rule_scores(cache: &RecordCache, rule: fn(&[f32]) -> Option<f64>) -> (Vec<f32>, usize) {
    let raw: Vec<Option<f64>> = (0..cache.record_count())
        .map(|r| {
            let mut ii = Vec::with_capacity(5000);
            cache.copy_lead(r, Lead::II, 0, 5000, &mut ii);
            rule(&ii)
        })
        .collect();
    let mut measured: Vec<f64> = raw.iter().flatten().copied().collect();
    measured.sort_by(f64::total_cmp);
    let median = measured.get(measured.len() / 2).copied().unwrap_or(0.0);
    let unmeasured = raw.iter().filter(|v| v.is_none()).count();
    (
        raw.iter().map(|v| v.unwrap_or(median) as f32).collect(),
        unmeasured,
    )
}

/// Refuses a checkpoint whose classes (in output order) differ from the split's.
pub fn check_class_order(dir: &Path, checkpoint: &[String], split: &[String]) -> Result<()> {
    if checkpoint != split {
        bail!(
            "{}: the checkpoint's classes {:?} are not the split's {:?} (in output order): its \
             scores would be read against the wrong labels; use the split it was trained on",
            dir.display(),
            checkpoint,
            split
        );
    }
    Ok(())
}

/// The test split of a config: `TEST_CSV`, or `k*_test.csv` beside `TRAIN_CSV` (`k*_train.csv`)
/// or beside `VAL_CSV` (`k*_val.csv`).
pub fn test_csv(cfg: &StageConfig) -> Result<PathBuf> {
    if let Some(p) = &cfg.dataset.test_csv {
        return Ok(p.clone());
    }
    // Stage 1 trains on `k*_pretrain.csv`: the validation split's name says where the test is.
    let beside = |path: &Path, from: &str| {
        let name = path.file_name()?.to_string_lossy().into_owned();
        name.contains(from)
            .then(|| path.with_file_name(name.replace(from, "_test")))
    };
    let p = beside(&cfg.dataset.train_csv, "_train")
        .or_else(|| beside(&cfg.dataset.val_csv, "_val"))
        .context("no test split: set DATASET.TEST_CSV")?;
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "no test split: set DATASET.TEST_CSV (looked for {})",
            p.display()
        )
    }
}

/// The test split's record cache (built beside the training split's on first use).
pub fn open_test_cache(cfg: &StageConfig, classes: &[String]) -> Result<RecordCache> {
    let path = test_csv(cfg)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    RecordCache::open_or_build(
        &path,
        &cfg.dataset.data_dir,
        classes,
        &default_cache_dir(cfg),
        &stem,
    )
}

/// The test split's record cache, refused when no record gave a window.
pub fn open_test_windows(cfg: &StageConfig, classes: &[String]) -> Result<RecordCache> {
    let cache = open_test_cache(cfg, classes)?;
    if cache.is_empty() {
        bail!("test split {} gave no window", test_csv(cfg)?.display());
    }
    Ok(cache)
}

/// The config and model of the checkpoint folder `dir`, which must be of `stage`.
pub fn open_checkpoint<B: Backend>(
    dir: &Path,
    stage: Stage,
    device: &B::Device,
) -> Result<(StageConfig, Eknet<B>)> {
    let cfg = StageConfig::load(&dir.join("config.yaml"))
        .context("the checkpoint folder must hold config.yaml")?;
    let mcfg = EknetConfig::from_stage(&cfg);
    if mcfg.stage != stage {
        let (is, wanted) = match stage {
            Stage::Classify => ("stage-1", "a classification model"),
            Stage::Pretrain => ("classification", "a stage-1 model"),
        };
        bail!(
            "{} is a {is} checkpoint; this needs {wanted}",
            dir.display()
        );
    }
    let model = Eknet::<B>::new(&mcfg, device)
        .load_file(dir.join("model"), &recorder(), device)
        .with_context(|| format!("loading {}", dir.join("model.mpk").display()))?;
    Ok((cfg, model))
}

/// Evaluates the stage-2 checkpoint in `dir`, writing results to `out`.
pub fn run<B: Backend>(
    dir: &Path,
    split: EvalSplit,
    out: &Path,
    resamples: usize,
    device: &B::Device,
) -> Result<EvalReport> {
    let (cfg, model) = open_checkpoint::<B>(dir, Stage::Classify, device)?;
    let splits = open_splits(&cfg, None)?;
    let state = read_state(dir)?;
    check_class_order(dir, &state.classes, &splits.classes)?;
    let batch = cfg.optim.batch_size.clamp(1, 64);
    let to_bool = |rows: &[Vec<u8>]| -> Vec<Vec<bool>> {
        rows.iter()
            .map(|l| l.iter().map(|&v| v > 0).collect())
            .collect()
    };
    let val_scores = predict(&model, &splits.val, batch, device);
    let val_labels = to_bool(&splits.val.index.labels);
    let val_known = to_bool(&splits.val.index.known);
    let val_preds = Predictions {
        scores: &val_scores,
        labels: &val_labels,
        known: Some(&val_known),
    };
    let all_rows: Vec<usize> = (0..val_scores.len()).collect();
    let thresholds: Vec<f32> = (0..splits.classes.len())
        .map(|k| {
            let (s, l) = val_preds.column(k, &all_rows);
            best_f1_threshold(&s, &l)
        })
        .collect();
    let test_cache;
    let (scores, labels, known, records, cache) = match split {
        EvalSplit::Val => (
            val_scores.clone(),
            val_labels.clone(),
            val_known.clone(),
            splits.val.record_count(),
            &splits.val,
        ),
        EvalSplit::Test => {
            test_cache = open_test_windows(&cfg, &splits.classes)?;
            (
                predict(&model, &test_cache, batch, device),
                to_bool(&test_cache.index.labels),
                to_bool(&test_cache.index.known),
                test_cache.record_count(),
                &test_cache,
            )
        }
    };
    let preds = Predictions {
        scores: &scores,
        labels: &labels,
        known: Some(&known),
    };
    let (classes, summary) = evaluate(
        &splits.classes,
        &preds,
        &thresholds,
        resamples,
        cfg.optim.seed,
    );
    let rules = rules_beside_model(&splits.classes, cache, &preds, resamples, cfg.optim.seed);
    let report = EvalReport {
        checkpoint: dir.display().to_string(),
        split: format!("{split:?}").to_lowercase(),
        records,
        val_records: splits.val.record_count(),
        summary,
        classes,
        bootstrap_resamples: resamples,
        rules,
    };
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut w = csv::Writer::from_path(out.join("per_class.csv"))?;
    w.write_record([
        "class",
        "support",
        "auc",
        "threshold",
        "f1",
        "precision",
        "recall",
        "f1_at_0.5",
    ])?;
    for c in &report.classes {
        w.write_record([
            c.name.clone(),
            c.support.to_string(),
            c.auc.map_or(String::new(), |a| format!("{a:.4}")),
            format!("{:.4}", c.threshold),
            format!("{:.4}", c.f1),
            format!("{:.4}", c.precision),
            format!("{:.4}", c.recall),
            format!("{:.4}", c.f1_at_half),
        ])?;
    }
    w.flush()?;
    let history = dir.parent().map(|p| p.join("history.csv"));
    if let Err(e) = plots(out, &report, &preds, history.as_deref()) {
        eprintln!("note: plots not drawn ({e:#}); metrics.json and per_class.csv are complete");
    }
    Ok(report)
}

/// Each class's rule, where it has one, scored against the model on the same records and
/// bootstrap resamples (the evaluation's seed).
pub fn rules_beside_model(
    classes: &[String],
    cache: &RecordCache,
    preds: &Predictions<'_>,
    resamples: usize,
    seed: u64,
) -> Vec<RuleReport> {
    let resampled = bootstrap_rows(preds.scores.len(), resamples, seed);
    let all: Vec<usize> = (0..preds.scores.len()).collect();
    classes
        .iter()
        .enumerate()
        .filter_map(|(k, class)| {
            let (name, rule) = rule_for(class)?;
            let (rule_scores, unmeasured) = rule_scores(cache, rule);
            let rule_rows: Vec<Vec<f32>> = rule_scores.iter().map(|&v| vec![v; k + 1]).collect();
            let rule_preds = Predictions {
                scores: &rule_rows,
                labels: preds.labels,
                known: preds.known,
            };
            let auc = |p: &Predictions<'_>, rows: &[usize]| {
                let (s, l) = p.column(k, rows);
                roc_auc(&s, &l)
            };
            let rule_auc = auc(&rule_preds, &all)?;
            let model_auc = auc(preds, &all)?;
            let (mut r, mut d) = (Vec::new(), Vec::new());
            for pick in &resampled {
                if let (Some(a), Some(m)) = (auc(&rule_preds, pick), auc(preds, pick)) {
                    r.push(a);
                    d.push(m - a);
                }
            }
            Some(RuleReport {
                class: class.clone(),
                rule: name.into(),
                auc: percentile_interval(rule_auc, r),
                model_minus_rule: percentile_interval(model_auc - rule_auc, d),
                unmeasured,
            })
        })
        .collect()
}

/// Finds a TrueType font for plot labels: `$EKNET_PLOT_FONT`, else DejaVu Sans.
fn load_font() -> Result<&'static [u8]> {
    let candidates = [
        std::env::var("EKNET_PLOT_FONT").unwrap_or_default(),
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into(),
        "/usr/share/fonts/TTF/DejaVuSans.ttf".into(),
    ];
    for c in candidates.iter().filter(|c| !c.is_empty()) {
        if let Ok(bytes) = std::fs::read(c) {
            return Ok(Box::leak(bytes.into_boxed_slice()));
        }
    }
    bail!("no TrueType font found (set EKNET_PLOT_FONT to a .ttf file)")
}

fn plots(
    out: &Path,
    report: &EvalReport,
    preds: &Predictions<'_>,
    history: Option<&Path>,
) -> Result<()> {
    use plotters::prelude::*;
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = load_font().map_err(|e| e.to_string())?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "bad font".to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)?;
    // ROC curves of the (up to 8) classes with the most support.
    let mut order: Vec<usize> = (0..report.classes.len())
        .filter(|&k| report.classes[k].auc.is_some())
        .collect();
    order.sort_by_key(|&k| std::cmp::Reverse(report.classes[k].support));
    order.truncate(8);
    let path = out.join("roc.png");
    {
        let root = BitMapBackend::new(&path, (800, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("ROC ({} split)", report.split), ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .draw()?;
        chart.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.3),
        ))?;
        for (i, &k) in order.iter().enumerate() {
            let rows: Vec<usize> = (0..preds.scores.len()).collect();
            let (s, l) = preds.column(k, &rows);
            let color = Palette99::pick(i).to_rgba();
            let c = &report.classes[k];
            chart
                .draw_series(LineSeries::new(roc_curve(&s, &l), color.stroke_width(2)))?
                .label(format!(
                    "{} (AUC {:.3}, n={})",
                    c.name,
                    c.auc.unwrap_or(f64::NAN),
                    c.support
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
    }
    if let Some(h) = history.filter(|h| h.exists()) {
        let mut r = csv::Reader::from_path(h)?;
        let mut train = Vec::new();
        let mut val = Vec::new();
        for row in r.records() {
            let row = row?;
            let e: f64 = row.get(0).unwrap_or("0").parse().unwrap_or(0.0);
            if let Ok(t) = row.get(1).unwrap_or("").parse::<f64>() {
                train.push((e, t));
            }
            if let Ok(v) = row.get(2).unwrap_or("").parse::<f64>() {
                val.push((e, v));
            }
        }
        let max_e = train.iter().map(|p| p.0).fold(1.0, f64::max);
        let max_l = train.iter().chain(&val).map(|p| p.1).fold(1e-6, f64::max) * 1.1;
        let path = out.join("loss.png");
        let root = BitMapBackend::new(&path, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("training and validation loss", ("sans-serif", 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_e, 0f64..max_l)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .draw()?;
        chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(val, RED.stroke_width(2)))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(())
}
