//! `eknet-train export` and `verify`: a stage-2 checkpoint to a model bundle (`*.eknet`): the f32
//! graph checked against burn's forward on the validation records, activation ranges calibrated
//! on real records, the int8 graph, both graphs' validation metrics and per-class thresholds, the
//! manifest, and the zip. `verify` opens a bundle as the daemon does and runs both graphs.

pub mod graph;

use crate::checkpoint::{dump, read_state, recorder};
use crate::data::cache::{RecordCache, WINDOW_VALUES};
use crate::data::split::read_distribution;
use crate::device::Cpu;
use crate::metrics::{Counts, Predictions, best_f1_threshold, roc_auc};
use crate::model::{Eknet, EknetConfig, Stage};
use crate::train::{default_cache_dir, open_splits, predict};
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use eknet_runtime::Classifier;
use eknet_shared::bundle::{
    Architecture, Bundle, ClassFigures, FORMAT_VERSION, InputSpec, LabelInfo, Manifest, OutputSpec,
    Precision, PrecisionFigures, Preprocessing, Provenance, Quantization, ValidationMetrics,
    sha256_hex, write_bundle,
};
use eknet_shared::config::{PosMerging, StageConfig};
use eknet_shared::layout::{SLOT_COUNT, SLOT_SAMPLES, TOKEN_COUNT};
use eknet_shared::preprocess::{WindowOptions, record_windows};
use graph::{BuiltGraph, Lowering, Weights, build};
use prost::Message;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a graph could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A stage-1 model.
    #[error("only a stage-2 (classification) model exports to a bundle")]
    NotClassifier,
    /// No knowledge layer, so no attention output.
    #[error(
        "the model has no knowledge layer (cls_cross_depth 0): no per-class attention to export"
    )]
    NoKnowledgeLayer,
    /// Width not divisible by heads.
    #[error("width {d_model} does not split over {heads} heads")]
    Heads {
        /// Width.
        d_model: usize,
        /// Heads.
        heads: usize,
    },
    /// A parameter is absent.
    #[error("the checkpoint has no parameter '{0}'")]
    MissingWeight(String),
    /// A parameter has another shape than the config implies.
    #[error("parameter '{name}' is {found:?}, the config implies {expected:?}")]
    WeightShape {
        /// Parameter.
        name: String,
        /// Implied shape.
        expected: Vec<usize>,
        /// Stored shape.
        found: Vec<usize>,
    },
    /// A calibration range is missing for a tensor the int8 graph quantises.
    #[error("no calibration range for tensor '{0}'")]
    MissingCalibration(String),
}

/// What `export` needs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// A stage-2 checkpoint folder (`model.mpk`, `config.yaml`, `state.json`).
    pub checkpoint: PathBuf,
    /// Calibration records: a prepared split CSV, or a record file or folder (WFDB / `.ecgzip`).
    pub calibration: PathBuf,
    /// Windows to calibrate on.
    pub calibration_windows: usize,
    /// Output bundle.
    pub out: PathBuf,
    /// Command line recorded in the provenance.
    pub command: String,
    /// How to reproduce the model (recorded in the provenance).
    pub reproduce: Option<String>,
    /// Data folder with `ptbxl/scp_statements.csv` and `cinc/` (label descriptions, SNOMED codes).
    pub tables: Option<PathBuf>,
}

/// What `export` did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Output bundle.
    pub out: PathBuf,
    /// Bundle size in bytes.
    pub bundle_bytes: u64,
    /// `model.onnx` bytes.
    pub f32_bytes: usize,
    /// `model.int8.onnx` bytes.
    pub int8_bytes: usize,
    /// The manifest written.
    pub manifest: Manifest,
    /// Seconds spent.
    pub seconds: f64,
    /// The int8 graph against the f32 graph on the test split, when the config has one (the
    /// thresholds and the manifest's figures use validation only; this is the held-out check).
    pub test_agreement: Option<TestAgreement>,
}

/// Both graphs on the test split's first windows.
#[derive(Debug, Clone, Serialize)]
pub struct TestAgreement {
    /// Records scored.
    pub records: usize,
    /// Macro AUC of the f32 graph.
    pub macro_auc_f32: Option<f64>,
    /// Macro AUC of the int8 graph.
    pub macro_auc_int8: Option<f64>,
    /// Largest per-class |AUC int8 - AUC f32|.
    pub worst_class_auc: Option<f64>,
    /// Largest |score int8 - score f32|.
    pub max_abs: f64,
}

/// Host copies of a model's parameters.
pub fn weights_of<B: Backend>(model: &Eknet<B>) -> Weights {
    let mut w = Weights {
        tensors: dump(model, true)
            .tensors
            .into_iter()
            .map(|(k, (_, shape, values))| (k, (shape, values)))
            .collect(),
    };
    if let Some(stem) = &model.embed.stem {
        fold_stem_batch_norms(stem, &mut w);
    }
    w
}

/// Folds each batch norm of the stem (running statistics, as at inference) into the product
/// before it: `W'[:, j] = W[:, j] s_j`, `b'_j = (b_j - mean_j) s_j + beta_j`, with
/// `s_j = gamma_j / sqrt(var_j + eps)`. The graph then has no batch norm to run; the batch
/// norms' own tensors leave the weights.
fn fold_stem_batch_norms<B: Backend>(stem: &crate::model::embed::ConvStem<B>, w: &mut Weights) {
    let host = |t: Tensor<B, 1>| -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default()
    };
    let targets: Vec<String> = ["sub_embed", "sub_conv", "to_token"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..stem.blocks.len()).map(|i| format!("blocks.{i}")))
        .collect();
    for (i, (bn, target)) in stem.batch_norms.iter().zip(&targets).enumerate() {
        let (gamma, beta) = (host(bn.gamma.val()), host(bn.beta.val()));
        let (mean, var) = (host(bn.running_mean.value()), host(bn.running_var.value()));
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| (f64::from(*g) / (f64::from(*v) + bn.epsilon).sqrt()) as f32)
            .collect();
        let wname = format!("embed.stem.{target}.weight");
        let bname = format!("embed.stem.{target}.bias");
        if let Some((shape, values)) = w.tensors.get_mut(&wname) {
            let cols = shape.get(1).copied().unwrap_or(0);
            for (k, v) in values.iter_mut().enumerate() {
                *v *= scale[k % cols.max(1)];
            }
        }
        if let Some((_, b)) = w.tensors.get_mut(&bname) {
            for (j, v) in b.iter_mut().enumerate() {
                *v = (*v - mean[j]) * scale[j] + beta[j];
            }
        }
        w.tensors
            .retain(|k, _| !k.starts_with(&format!("embed.stem.batch_norms.{i}.")));
    }
}

/// Serialises a graph.
pub fn encode(g: &BuiltGraph) -> Vec<u8> {
    g.model.encode_to_vec()
}

/// The f32 graph, the probe graph's ranges on `windows`, and the int8 graph of a model.
pub struct Graphs {
    /// `model.onnx`.
    pub f32_onnx: Vec<u8>,
    /// `model.int8.onnx`.
    pub int8_onnx: Vec<u8>,
    /// Linear layers in int8.
    pub int8_layers: usize,
    /// max |x| per calibrated tensor.
    pub ranges: HashMap<String, f32>,
}

/// Builds both graphs, calibrating the int8 one on `calibration` (`[n][15 * 1250]` windows).
pub fn build_graphs(cfg: &EknetConfig, w: &Weights, calibration: &[Vec<f32>]) -> Result<Graphs> {
    if calibration.is_empty() {
        bail!("no calibration window: the int8 graph needs real records to measure ranges on");
    }
    let f32_graph = build(cfg, w, Lowering::F32)?;
    let probe = build(cfg, w, Lowering::Probe)?;
    let ranges = calibrate(&encode(&probe), &probe.probes, calibration)?;
    let int8_graph = build(cfg, w, Lowering::Int8(&ranges))?;
    Ok(Graphs {
        f32_onnx: encode(&f32_graph),
        int8_onnx: encode(&int8_graph),
        int8_layers: int8_graph.int8_layers,
        ranges,
    })
}

pub use probe::calibrate;

/// Scores each window with a classifier.
pub fn score_all(c: &Classifier, windows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    windows.iter().map(|w| Ok(c.classify(w)?.scores)).collect()
}

fn first_windows(cache: &RecordCache) -> Vec<Vec<f32>> {
    (0..cache.record_count())
        .map(|r| {
            let mut v = Vec::with_capacity(WINDOW_VALUES);
            cache.copy_window(r, 0, &mut v);
            v
        })
        .collect()
}

/// Up to `n` windows spread evenly over `all`.
fn spread<T: Clone>(all: &[T], n: usize) -> Vec<T> {
    if all.len() <= n {
        return all.to_vec();
    }
    (0..n).map(|i| all[i * all.len() / n].clone()).collect()
}

/// Calibration windows from a prepared split CSV or from record files.
pub fn calibration_windows(
    source: &Path,
    cfg: &StageConfig,
    classes: &[String],
    n: usize,
) -> Result<Vec<Vec<f32>>> {
    let is_csv = source.extension().is_some_and(|e| e == "csv");
    if is_csv {
        let stem = source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cache = RecordCache::open_or_build(
            source,
            &cfg.dataset.data_dir,
            classes,
            &default_cache_dir(cfg),
            &stem,
        )?;
        let idx: Vec<usize> = (0..cache.record_count()).collect();
        return Ok(spread(&idx, n)
            .into_iter()
            .map(|r| {
                let mut v = Vec::with_capacity(WINDOW_VALUES);
                cache.copy_window(r, 0, &mut v);
                v
            })
            .collect());
    }
    let mut files = Vec::new();
    collect_records(source, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for f in spread(&files, n) {
        match eknet_shared::io::read_any(&f)
            .map_err(|e| e.to_string())
            .and_then(|r| record_windows(&r, WindowOptions::default()).map_err(|e| e.to_string()))
        {
            Ok(ws) => {
                if let Some(w) = ws.first() {
                    out.push(w.data.clone());
                }
            }
            Err(e) => {
                skipped += 1;
                eprintln!("calibration: skipping {}: {e}", f.display());
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no calibration window from {} ({} record(s) found, {skipped} unreadable or too short)",
            source.display(),
            files.len()
        );
    }
    Ok(out)
}

fn collect_records(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_dir() {
        for e in std::fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
            collect_records(&e?.path(), out)?;
        }
    } else if p.extension().is_some_and(|e| e == "hea") {
        out.push(p.with_extension(""));
    } else if eknet_shared::io::is_ecgzip(p) || (!p.exists() && p.with_extension("hea").exists()) {
        out.push(p.to_path_buf());
    } else if !p.exists() {
        bail!("calibration source {} does not exist", p.display());
    }
    Ok(())
}

/// The largest per-class |AUC difference| between two graphs' figures (classes with an AUC).
fn worst_class_auc(a: &PrecisionFigures, b: &PrecisionFigures) -> Option<f64> {
    a.per_class
        .iter()
        .zip(&b.per_class)
        .filter_map(|(x, y)| Some((x.auc? - y.auc?).abs()))
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))))
}

fn figures(names: &[String], preds: &Predictions<'_>, thresholds: &[f32]) -> PrecisionFigures {
    let rows: Vec<usize> = (0..preds.scores.len()).collect();
    let per_class: Vec<ClassFigures> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (s, l) = preds.column(k, &rows);
            let c = Counts::at(&s, &l, thresholds[k]);
            ClassFigures {
                code: name.clone(),
                support: l.iter().filter(|&&x| x).count(),
                auc: roc_auc(&s, &l),
                f1: c.f1(),
                sensitivity: c.recall(),
                ppv: c.precision(),
            }
        })
        .collect();
    let aucs: Vec<f64> = per_class.iter().filter_map(|c| c.auc).collect();
    PrecisionFigures {
        macro_auc: (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64),
        per_class,
    }
}

fn thresholds_of(preds: &Predictions<'_>, k: usize) -> Vec<f32> {
    let rows: Vec<usize> = (0..preds.scores.len()).collect();
    (0..k)
        .map(|c| {
            let (s, l) = preds.column(c, &rows);
            best_f1_threshold(&s, &l).clamp(0.0, 1.0)
        })
        .collect()
}

/// The current commit, `-dirty` when the work tree has changes; `None` outside a git checkout.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let clean = std::process::Command::new("git")
        .args(["diff", "--quiet", "HEAD"])
        .status()
        .map(|s| s.success())
        .unwrap_or(true);
    if !clean {
        c.push_str("-dirty");
    }
    Some(c)
}

/// UTC now as RFC 3339 (seconds).
pub fn utc_now() -> String {
    eknet_shared::time::rfc3339(eknet_shared::time::now_ms(), false)
}

fn label_infos(
    classes: &[String],
    tables: Option<&Path>,
    train_support: &[usize],
    val_support: &[usize],
    thr_f32: &[f32],
    thr_int8: &[f32],
) -> Vec<LabelInfo> {
    let dir = tables.map(Path::to_path_buf).or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|d| eknet_shared::data::find_data_dir(&d))
    });
    let scp = dir
        .map(|d| d.join("ptbxl").join("scp_statements.csv"))
        .and_then(|p| eknet_shared::labels::scp::ScpTable::from_csv(&p).ok());
    classes
        .iter()
        .enumerate()
        .map(|(k, code)| LabelInfo {
            code: code.clone(),
            description: scp
                .as_ref()
                .and_then(|t| t.get(code))
                .map(|s| s.description.clone()),
            snomed: eknet_shared::labels::snomed::SNOMED_TO_SCP
                .iter()
                .filter(|(_, codes)| codes.contains(&code.as_str()))
                .map(|(s, _)| s.to_string())
                .collect(),
            threshold_f32: thr_f32[k],
            threshold_int8: thr_int8[k],
            support_train: train_support.get(k).copied().unwrap_or(0),
            support_val: val_support.get(k).copied().unwrap_or(0),
        })
        .collect()
}

/// Exports a stage-2 checkpoint to a bundle.
pub fn export(opts: &ExportOptions) -> Result<ExportReport> {
    let started = Instant::now();
    let dir = &opts.checkpoint;
    let cfg = StageConfig::load(&dir.join("config.yaml"))
        .context("the checkpoint folder must hold config.yaml")?;
    let mcfg = EknetConfig::from_stage(&cfg);
    if mcfg.stage != Stage::Classify {
        bail!(
            "{} is a stage-1 checkpoint; export needs a classification model",
            dir.display()
        );
    }
    let state = read_state(dir)?;
    let device = Default::default();
    let splits = open_splits(&cfg, None)?;
    crate::evaluate::check_class_order(dir, &state.classes, &splits.classes)?;
    let model = Eknet::<Cpu>::new(&mcfg, &device)
        .load_file(dir.join("model"), &recorder(), &device)
        .with_context(|| format!("loading {}", dir.join("model.mpk").display()))?;
    let weights = weights_of(&model);
    let parameters: usize = weights.tensors.values().map(|(_, v)| v.len()).sum();

    if splits.classes.len() != mcfg.num_classes {
        bail!(
            "the config scores {} classes but its distribution file lists {}",
            mcfg.num_classes,
            splits.classes.len()
        );
    }
    let val_windows = first_windows(&splits.val);
    let to_bool = |rows: &[Vec<u8>]| -> Vec<Vec<bool>> {
        rows.iter()
            .map(|l| l.iter().map(|&v| v > 0).collect())
            .collect()
    };
    let val_labels = to_bool(&splits.val.index.labels);
    let val_known = to_bool(&splits.val.index.known);
    eprintln!(
        "export: {} validation records, calibrating on {}",
        val_windows.len(),
        opts.calibration.display()
    );
    let calib = calibration_windows(
        &opts.calibration,
        &cfg,
        &splits.classes,
        opts.calibration_windows,
    )?;
    let graphs = build_graphs(&mcfg, &weights, &calib)?;
    let what = |p: Precision| format!("exported {}", p.member());
    let f32_c = Classifier::from_onnx(
        &graphs.f32_onnx,
        &what(Precision::F32),
        Precision::F32,
        Some(mcfg.num_classes),
        1,
    )?;
    let int8_c = Classifier::from_onnx(
        &graphs.int8_onnx,
        &what(Precision::Int8),
        Precision::Int8,
        Some(mcfg.num_classes),
        1,
    )?;

    let burn_scores = predict(&model, &splits.val, 16, &device);
    let f32_scores = score_all(&f32_c, &val_windows)?;
    let int8_scores = score_all(&int8_c, &val_windows)?;
    let max_diff = |a: &[Vec<f32>], b: &[Vec<f32>]| -> f64 {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| f64::from((x - y).abs()))
            .fold(0.0, f64::max)
    };
    let parity = max_diff(&f32_scores, &burn_scores);
    if parity > 1e-3 {
        bail!(
            "the f32 graph disagrees with burn's forward by {parity:.3e} on validation scores: not exporting"
        );
    }
    let k = mcfg.num_classes;
    let preds = |scores| Predictions {
        scores,
        labels: &val_labels,
        known: Some(&val_known),
    };
    let (p_f32, p_int8) = (preds(&f32_scores), preds(&int8_scores));
    let thr_f32 = thresholds_of(&p_f32, k);
    let thr_int8 = thresholds_of(&p_int8, k);
    let fig_f32 = figures(&splits.classes, &p_f32, &thr_f32);
    let fig_int8 = figures(&splits.classes, &p_int8, &thr_int8);
    let n_scores = (f32_scores.len() * k).max(1) as f64;
    let mean_diff = f32_scores
        .iter()
        .flatten()
        .zip(int8_scores.iter().flatten())
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / n_scores;
    let worst_class = worst_class_auc(&fig_f32, &fig_int8);
    let dist = read_distribution(&cfg.dataset.stats_csv)?;
    let train_support: Vec<usize> = dist.iter().map(|c| c.train).collect();
    let val_support: Vec<usize> = (0..k)
        .map(|c| val_labels.iter().filter(|r| r[c]).count())
        .collect();
    let labels = label_infos(
        &splits.classes,
        opts.tables.as_deref(),
        &train_support,
        &val_support,
        &thr_f32,
        &thr_int8,
    );
    let config_yaml = std::fs::read_to_string(dir.join("config.yaml"))
        .with_context(|| format!("reading {}", dir.join("config.yaml").display()))?;
    // The run folder's name (RUN/best -> RUN), which the config's MODEL_SAVE_DIR chose.
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    let name = canonical
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "eknet".into());
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_id: format!("{name}-{}", &sha256_hex(&graphs.f32_onnx)[..12]),
        input: InputSpec::current(),
        outputs: OutputSpec::current(),
        labels,
        metrics: ValidationMetrics {
            split: cfg.dataset.val_csv.display().to_string(),
            records: val_windows.len(),
            int8_vs_f32_macro_auc: fig_int8
                .macro_auc
                .zip(fig_f32.macro_auc)
                .map(|(a, b)| a - b),
            f32: fig_f32,
            int8: fig_int8,
            f32_vs_trainer_max_abs: parity,
            int8_vs_f32_max_abs: max_diff(&int8_scores, &f32_scores),
            int8_vs_f32_mean_abs: mean_diff,
            int8_vs_f32_worst_class_auc: worst_class,
        },
        preprocessing: Preprocessing::current(),
        architecture: Architecture {
            d_model: mcfg.d_model,
            depth: mcfg.depth,
            heads: mcfg.heads,
            knowledge_depth: mcfg.knowledge_depth,
            merging: match mcfg.merging {
                PosMerging::ConcatMlp => "concat_mlp".into(),
                PosMerging::AddSincos => "add_sincos".into(),
            },
            norm: match mcfg.norm {
                crate::model::block::NormPlacement::Pre => "pre".into(),
                crate::model::block::NormPlacement::ResPost => "res_post".into(),
            },
            lead_split: mcfg.lead_split,
            parameters,
        },
        quantization: Quantization {
            scheme: "static int8: weights symmetric per output channel; activations symmetric \
                     per tensor (zero point 0), ranges = max |x| over the calibration windows, \
                     each activation quantised once; MatMulInteger (exact i32) then a per-channel f32 \
                     rescale for every encoder, knowledge and merging linear layer; patch embedding, heads, softmax, LayerNorm, GELU \
                     and residual adds in f32"
                .into(),
            calibration_source: opts.calibration.display().to_string(),
            calibration_windows: calib.len(),
            int8_layers: graphs.int8_layers,
        },
        provenance: Provenance {
            config_yaml,
            checkpoint: dir.display().to_string(),
            data_dir: cfg.dataset.data_dir.display().to_string(),
            train_csv: cfg.dataset.train_csv.display().to_string(),
            val_csv: cfg.dataset.val_csv.display().to_string(),
            seed: cfg.optim.seed,
            epochs: state.epochs_done,
            commit: git_commit(),
            created: utc_now(),
            command: opts.command.clone(),
            reproduce: opts.reproduce.clone(),
            exporter: format!("eknet-train {}", env!("CARGO_PKG_VERSION")),
        },
        members: Default::default(),
    };
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_bundle(
        &opts.out,
        &mut manifest,
        &graphs.f32_onnx,
        &graphs.int8_onnx,
    )?;
    // Read it back as the daemon will, before calling it done.
    let back = Bundle::open(&opts.out)?;
    Classifier::from_bundle(&back, Precision::Int8, 1)?;
    let bundle_bytes = std::fs::metadata(&opts.out).map(|m| m.len()).unwrap_or(0);
    let test_agreement = match crate::evaluate::test_csv(&cfg) {
        Ok(_) => {
            let cache = crate::evaluate::open_test_cache(&cfg, &splits.classes)?;
            let windows = first_windows(&cache);
            let labels = to_bool(&cache.index.labels);
            let known = to_bool(&cache.index.known);
            let (s32, s8) = (score_all(&f32_c, &windows)?, score_all(&int8_c, &windows)?);
            let pred = |scores| Predictions {
                scores,
                labels: &labels,
                known: Some(&known),
            };
            let (a, b) = (
                figures(&splits.classes, &pred(&s32), &thr_f32),
                figures(&splits.classes, &pred(&s8), &thr_int8),
            );
            Some(TestAgreement {
                records: windows.len(),
                macro_auc_f32: a.macro_auc,
                macro_auc_int8: b.macro_auc,
                worst_class_auc: worst_class_auc(&a, &b),
                max_abs: max_diff(&s8, &s32),
            })
        }
        Err(_) => None,
    };
    Ok(ExportReport {
        out: opts.out.clone(),
        bundle_bytes,
        f32_bytes: graphs.f32_onnx.len(),
        int8_bytes: graphs.int8_onnx.len(),
        manifest,
        seconds: started.elapsed().as_secs_f64(),
        test_agreement,
    })
}

/// A manifest for a model that was never validated (an untrained fixture): every figure empty,
/// thresholds 0.5, the model id saying what it is.
pub fn unvalidated_manifest(
    model_id: &str,
    codes: &[String],
    arch: Architecture,
    note: &str,
) -> Manifest {
    let fig = PrecisionFigures {
        macro_auc: None,
        per_class: codes
            .iter()
            .map(|c| ClassFigures {
                code: c.clone(),
                support: 0,
                auc: None,
                f1: 0.0,
                sensitivity: 0.0,
                ppv: 0.0,
            })
            .collect(),
    };
    Manifest {
        format_version: FORMAT_VERSION,
        model_id: model_id.into(),
        input: InputSpec::current(),
        outputs: OutputSpec::current(),
        labels: codes
            .iter()
            .map(|c| LabelInfo {
                code: c.clone(),
                description: None,
                snomed: vec![],
                threshold_f32: 0.5,
                threshold_int8: 0.5,
                support_train: 0,
                support_val: 0,
            })
            .collect(),
        metrics: ValidationMetrics {
            split: "none (not validated)".into(),
            records: 0,
            f32: fig.clone(),
            int8: fig,
            f32_vs_trainer_max_abs: 0.0,
            int8_vs_f32_max_abs: 0.0,
            int8_vs_f32_mean_abs: 0.0,
            int8_vs_f32_macro_auc: None,
            int8_vs_f32_worst_class_auc: None,
        },
        preprocessing: Preprocessing::current(),
        architecture: arch,
        quantization: Quantization {
            scheme: "static int8 (see the exporter)".into(),
            calibration_source: String::new(),
            calibration_windows: 0,
            int8_layers: 0,
        },
        provenance: Provenance {
            config_yaml: String::new(),
            checkpoint: note.into(),
            data_dir: String::new(),
            train_csv: String::new(),
            val_csv: String::new(),
            seed: 0,
            epochs: 0,
            commit: git_commit(),
            created: utc_now(),
            command: String::new(),
            reproduce: None,
            exporter: format!("eknet-train {}", env!("CARGO_PKG_VERSION")),
        },
        members: Default::default(),
    }
}

/// Writes a bundle of an UNTRAINED model (seeded random weights) scoring `codes`: a fixture for
/// tests of the bundle, runtime and daemon. Its scores mean nothing, and its model id and
/// provenance say so. The int8 graph is calibrated on `calibration` (real records).
pub fn untrained_bundle(
    path: &Path,
    cfg: &EknetConfig,
    codes: &[String],
    calibration: &[Vec<f32>],
    seed: u64,
) -> Result<()> {
    if codes.len() != cfg.num_classes {
        bail!(
            "{} codes for a model of {} classes",
            codes.len(),
            cfg.num_classes
        );
    }
    let device = Default::default();
    <Cpu as Backend>::seed(&device, seed);
    let model = Eknet::<Cpu>::new(cfg, &device);
    let w = weights_of(&model);
    let graphs = build_graphs(cfg, &w, calibration)?;
    let arch = Architecture {
        d_model: cfg.d_model,
        depth: cfg.depth,
        heads: cfg.heads,
        knowledge_depth: cfg.knowledge_depth,
        merging: match cfg.merging {
            PosMerging::ConcatMlp => "concat_mlp".into(),
            PosMerging::AddSincos => "add_sincos".into(),
        },
        norm: match cfg.norm {
            crate::model::block::NormPlacement::Pre => "pre".into(),
            crate::model::block::NormPlacement::ResPost => "res_post".into(),
        },
        lead_split: cfg.lead_split,
        parameters: w.tensors.values().map(|(_, v)| v.len()).sum(),
    };
    let mut m = unvalidated_manifest(
        &format!("untrained-fixture-seed{seed}"),
        codes,
        arch,
        "none: untrained fixture (random weights) for tests",
    );
    m.quantization.calibration_windows = calibration.len();
    m.quantization.int8_layers = graphs.int8_layers;
    write_bundle(path, &mut m, &graphs.f32_onnx, &graphs.int8_onnx)?;
    Ok(())
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The bundle.
    pub bundle: String,
    /// Model id.
    pub model_id: String,
    /// Format version.
    pub format_version: u32,
    /// Bundle bytes.
    pub bytes: u64,
    /// Member sizes.
    pub members: Vec<(String, u64)>,
    /// Classes.
    pub classes: usize,
    /// Per precision: max |sum of attention - 1| over classes on a test window, and the scores'
    /// range.
    pub checks: Vec<PrecisionCheck>,
}

/// One precision's checks.
#[derive(Debug, Clone, Serialize)]
pub struct PrecisionCheck {
    /// Precision.
    pub precision: Precision,
    /// max |sum over tokens of attention - 1|.
    pub attention_sum_error: f64,
    /// Smallest score.
    pub min_score: f32,
    /// Largest score.
    pub max_score: f32,
}

/// A fixed, physiologically shaped test window (a 1 mV, 72 bpm pulse train on every slot), so that
/// `verify` runs the graphs on something that is not all zeros.
pub fn test_window() -> Vec<f32> {
    let mut w = vec![0f32; SLOT_COUNT * SLOT_SAMPLES];
    for (s, slot) in w.chunks_mut(SLOT_SAMPLES).enumerate() {
        for (i, v) in slot.iter_mut().enumerate() {
            let t = (i + s * 97) as f32 / 500.0;
            let phase = (t * 1.2).fract();
            *v = (-((phase - 0.3) / 0.01).powi(2)).exp() + 0.1 * (std::f32::consts::TAU * t).sin();
        }
    }
    w
}

/// Opens a bundle as the daemon does (checksums, version, shapes, label count) and runs both
/// graphs once.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    let bundle = Bundle::open(path)?;
    let k = bundle.manifest.labels.len();
    let mut checks = Vec::new();
    for p in [Precision::F32, Precision::Int8] {
        let c = Classifier::from_bundle(&bundle, p, 1)?;
        let out = c.classify(&test_window())?;
        let attention_sum_error = (0..k)
            .map(|i| {
                (out.attention_of(i)
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum::<f64>()
                    - 1.0)
                    .abs()
            })
            .fold(0.0, f64::max);
        if attention_sum_error > 1e-3 {
            bail!(
                "{}: {p} attention rows sum to 1 +- {attention_sum_error:.2e}",
                path.display()
            );
        }
        let (min_score, max_score) = out
            .scores
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &s| {
                (a.min(s), b.max(s))
            });
        if !(0.0..=1.0).contains(&min_score) || !(0.0..=1.0).contains(&max_score) {
            bail!(
                "{}: {p} scores leave [0, 1] ({min_score} .. {max_score})",
                path.display()
            );
        }
        checks.push(PrecisionCheck {
            precision: p,
            attention_sum_error,
            min_score,
            max_score,
        });
    }
    let _ = TOKEN_COUNT;
    Ok(VerifyReport {
        bundle: path.display().to_string(),
        model_id: bundle.manifest.model_id.clone(),
        format_version: bundle.manifest.format_version,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        members: bundle
            .manifest
            .members
            .iter()
            .map(|(k, v)| (k.clone(), v.bytes))
            .collect(),
        classes: k,
        checks,
    })
}

/// Writes what `tools/ort_check.py` compares with onnxruntime: `windows.f32` (the test window,
/// then the first window of each record, raw little-endian f32 `[n, 15, 1250]`) and `tract.json`
/// (both precisions' scores and attention on them, as tract computes them).
pub fn dump_for_check(path: &Path, records: &[PathBuf], dir: &Path) -> Result<usize> {
    let bundle = Bundle::open(path)?;
    let mut windows = vec![test_window()];
    for r in records {
        let rec =
            eknet_shared::io::read_any(r).with_context(|| format!("reading {}", r.display()))?;
        let w = record_windows(&rec, WindowOptions::default())
            .with_context(|| format!("windowing {}", r.display()))?;
        if let Some(w) = w.into_iter().next() {
            windows.push(w.data);
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let raw: Vec<u8> = windows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("windows.f32"), raw)?;
    let mut out = serde_json::Map::new();
    for p in [Precision::F32, Precision::Int8] {
        let c = Classifier::from_bundle(&bundle, p, 1)?;
        let (mut s, mut a) = (Vec::new(), Vec::new());
        for w in &windows {
            let o = c.classify(w)?;
            s.push(o.scores);
            a.push(o.attention);
        }
        out.insert(
            p.as_str().into(),
            serde_json::json!({ "scores": s, "attention": a }),
        );
    }
    std::fs::write(dir.join("tract.json"), serde_json::to_vec(&out)?)?;
    Ok(windows.len())
}

/// The human summary of a verified bundle.
pub fn verify_text(r: &VerifyReport, m: &Manifest) -> String {
    let mut s = format!(
        "{}: OK (format {}, model {}, {} bytes)\n",
        r.bundle, r.format_version, r.model_id, r.bytes
    );
    for (name, bytes) in &r.members {
        s += &format!("  {name}: {bytes} bytes, sha256 verified\n");
    }
    let a = &m.architecture;
    s += &format!(
        "  architecture: D {}, depth {}, heads {}, knowledge {}, {} merging, {} norm, lead split {}, {} parameters\n",
        a.d_model,
        a.depth,
        a.heads,
        a.knowledge_depth,
        a.merging,
        a.norm,
        a.lead_split,
        a.parameters
    );
    let fmt = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    s += &format!(
        "  validation ({} records): macro AUC f32 {}, int8 {}; int8 vs f32 max |score diff| {:.4}, mean {:.5}; f32 graph vs trainer {:.2e}\n",
        m.metrics.records,
        fmt(m.metrics.f32.macro_auc),
        fmt(m.metrics.int8.macro_auc),
        m.metrics.int8_vs_f32_max_abs,
        m.metrics.int8_vs_f32_mean_abs,
        m.metrics.f32_vs_trainer_max_abs
    );
    s += &format!(
        "  int8: {} linear layers, calibrated on {} windows from {}\n",
        m.quantization.int8_layers,
        m.quantization.calibration_windows,
        m.quantization.calibration_source
    );
    s += &format!(
        "  {} labels (code, thresholds f32/int8, val AUC f32/int8):\n",
        r.classes
    );
    for (i, l) in m.labels.iter().enumerate() {
        s += &format!(
            "    {:<8} {:.3}/{:.3}  {}/{}  {}\n",
            l.code,
            l.threshold_f32,
            l.threshold_int8,
            fmt(m.metrics.f32.per_class[i].auc),
            fmt(m.metrics.int8.per_class[i].auc),
            l.description.as_deref().unwrap_or("")
        );
    }
    for c in &r.checks {
        s += &format!(
            "  {} graph runs: attention rows sum to 1 within {:.1e}, scores in [{:.4}, {:.4}]\n",
            c.precision, c.attention_sum_error, c.min_score, c.max_score
        );
    }
    s += &format!(
        "  provenance: {} (commit {}), exported {} by {}\n",
        m.provenance.checkpoint,
        m.provenance.commit.as_deref().unwrap_or("unknown"),
        m.provenance.created,
        m.provenance.exporter
    );
    s
}

mod probe {
    //! Runs the calibration probe in tract (kept apart from burn's prelude, whose names clash).
    use anyhow::{Result, bail};
    use eknet_runtime::tract_onnx;
    use eknet_runtime::tract_onnx::prelude::*;
    use eknet_shared::layout::{SLOT_COUNT, SLOT_SAMPLES};
    use std::collections::HashMap;

    /// Runs the probe graph on each window and keeps max |x| of every probed tensor.
    pub fn calibrate(
        probe_onnx: &[u8],
        probes: &[String],
        windows: &[Vec<f32>],
    ) -> Result<HashMap<String, f32>> {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(probe_onnx))
            .and_then(|m| m.with_input_fact(0, f32::fact([1, SLOT_COUNT, SLOT_SAMPLES]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow::anyhow!("building the calibration graph: {e:#}"))?;
        let mut max = vec![0f32; probes.len()];
        for w in windows {
            let input = Tensor::from_shape(&[1, SLOT_COUNT, SLOT_SAMPLES], w)
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let out = plan
                .run(tvec!(input.into()))
                .map_err(|e| anyhow::anyhow!("running the calibration graph: {e:#}"))?;
            if out.len() != probes.len() + 2 {
                bail!(
                    "the calibration graph gave {} outputs for {} probes",
                    out.len(),
                    probes.len()
                );
            }
            for (m, t) in max.iter_mut().zip(&out[2..]) {
                let view = t.try_as_plain_ram().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                let v = view
                    .as_slice::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
                *m = v.iter().fold(*m, |a, x| a.max(x.abs()));
            }
        }
        Ok(probes.iter().cloned().zip(max).collect())
    }
}
