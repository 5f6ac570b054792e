//! `eknet-train evaluate`: a stage-2 checkpoint scored on validation and on the chosen split;
//! per-class thresholds fitted on validation (max F1) and applied to the split; macro and micro
//! AUC and F1 with bootstrap 95 % intervals; JSON, CSV and PNG plots (loss curves, ROC curves).

use crate::checkpoint::recorder;
use crate::data::cache::WindowCache;
use crate::metrics::{ClassMetrics, Predictions, Summary, best_f1_threshold, evaluate, roc_curve};
use crate::model::{Eknet, EknetConfig, Stage};
use crate::train::{default_cache_dir, open_splits, predict};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::prelude::*;
use eknet_shared::config::StageConfig;
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
}

fn test_csv(cfg: &StageConfig) -> Result<PathBuf> {
    if let Some(p) = &cfg.dataset.test_csv {
        return Ok(p.clone());
    }
    let train = &cfg.dataset.train_csv;
    let name = train
        .file_name()
        .map(|n| n.to_string_lossy().replace("_train", "_test"))
        .unwrap_or_default();
    let p = train.with_file_name(name);
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "no test split: set DATASET.TEST_CSV (looked for {})",
            p.display()
        )
    }
}

/// Evaluates the stage-2 checkpoint in `dir`, writing results to `out`.
pub fn run<B: Backend>(
    dir: &Path,
    split: EvalSplit,
    out: &Path,
    resamples: usize,
    device: &B::Device,
) -> Result<EvalReport> {
    let cfg = StageConfig::load(&dir.join("config.yaml"))
        .context("the checkpoint folder must hold config.yaml")?;
    let mcfg = EknetConfig::from_stage(&cfg);
    if mcfg.stage != Stage::Classify {
        bail!(
            "{} is a stage-1 checkpoint; evaluate needs a classification model",
            dir.display()
        );
    }
    let model = Eknet::<B>::new(&mcfg, device)
        .load_file(dir.join("model"), &recorder(), device)
        .with_context(|| format!("loading {}", dir.join("model.mpk").display()))?;
    let splits = open_splits(&cfg, None)?;
    let batch = cfg.optim.batch_size.clamp(1, 64);
    let to_bool = |c: &WindowCache| -> Vec<Vec<bool>> {
        c.index
            .labels
            .iter()
            .map(|l| l.iter().map(|&v| v > 0).collect())
            .collect()
    };
    let val_scores = predict(&model, &splits.val, batch, device);
    let val_labels = to_bool(&splits.val);
    let thresholds: Vec<f32> = (0..splits.classes.len())
        .map(|k| {
            let s: Vec<f32> = val_scores.iter().map(|r| r[k]).collect();
            let l: Vec<bool> = val_labels.iter().map(|r| r[k]).collect();
            best_f1_threshold(&s, &l)
        })
        .collect();
    let (scores, labels, records) = match split {
        EvalSplit::Val => (
            val_scores.clone(),
            val_labels.clone(),
            splits.val.record_count(),
        ),
        EvalSplit::Test => {
            let path = test_csv(&cfg)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let cache_dir = default_cache_dir(&cfg);
            let test = WindowCache::open_or_build(
                &path,
                &cfg.dataset.data_dir,
                &splits.classes,
                &cache_dir,
                &stem,
            )?;
            if test.is_empty() {
                bail!("test split {} gave no window", path.display());
            }
            (
                predict(&model, &test, batch, device),
                to_bool(&test),
                test.record_count(),
            )
        }
    };
    let preds = Predictions {
        scores: &scores,
        labels: &labels,
    };
    let (classes, summary) = evaluate(
        &splits.classes,
        &preds,
        &thresholds,
        resamples,
        cfg.optim.seed,
    );
    let report = EvalReport {
        checkpoint: dir.display().to_string(),
        split: format!("{split:?}").to_lowercase(),
        records,
        val_records: splits.val.record_count(),
        summary,
        classes,
        bootstrap_resamples: resamples,
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
    if let Err(e) = plots(out, &report, &scores, &labels, history.as_deref()) {
        eprintln!("note: plots not drawn ({e:#}); metrics.json and per_class.csv are complete");
    }
    Ok(report)
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
    scores: &[Vec<f32>],
    labels: &[Vec<bool>],
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
            let s: Vec<f32> = scores.iter().map(|r| r[k]).collect();
            let l: Vec<bool> = labels.iter().map(|r| r[k]).collect();
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
