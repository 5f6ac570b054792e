//! The `eknet-train` command line: argument definitions (clap) and dispatch to each command.

use crate::bench;
use crate::data::prepare::{
    CombinedPrepare, PtbxlPrepare, PtbxlSplit, WfdbPrepare, prepare_combined, prepare_ptbxl,
    prepare_wfdb,
};
use crate::device::{self, DeviceChoice, TrainDevices};
use crate::evaluate::{self, EvalSplit};
use crate::export;
use crate::inspect::{Inspection, inspect};
use crate::model::Stage;
use crate::precision::Precision;
use crate::stage1_eval;
use crate::train::{self, TrainOptions};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use eknet_shared::config::{ModeStage, StageConfig};
use eknet_shared::labels::Harmoniser;
use eknet_shared::{data, ecgzip, io};
use std::path::PathBuf;

/// Runs `$body` with `$train` / `$infer` bound to the training and inference backend types of
/// the chosen device and `$dev` to the device: the one place a backend is picked.
macro_rules! with_backend {
    ($choice:expr, $train:ident, $infer:ident, $dev:ident => $body:expr) => {
        match $choice {
            DeviceChoice::Cpu => {
                #[allow(dead_code)]
                type $train = device::CpuTrain;
                #[allow(dead_code)]
                type $infer = device::Cpu;
                let $dev = Default::default();
                $body
            }
            DeviceChoice::Cuda(index) => {
                device::check_cuda(index)?;
                #[cfg(feature = "cuda")]
                {
                    #[allow(dead_code)]
                    type $train = device::GpuTrain;
                    #[allow(dead_code)]
                    type $infer = device::Gpu;
                    let $dev = burn::backend::cuda::CudaDevice::new(index);
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                bail!("built without CUDA (device {index})")
            }
        }
    };
}

/// Runs `$body` with `$train` bound to the training backend of the listed devices and `$devs`
/// to a `Vec` of them (one model replica per device; see [`device::TrainDevices`]).
macro_rules! with_train_devices {
    ($devices:expr, $train:ident, $devs:ident => $body:expr) => {
        match $devices.main() {
            DeviceChoice::Cpu => {
                type $train = device::CpuTrain;
                let $devs: Vec<burn::tensor::Device<$train>> =
                    vec![Default::default(); $devices.choices().len()];
                $body
            }
            DeviceChoice::Cuda(_) => {
                let indices = $devices.cuda_indices();
                for &index in &indices {
                    device::check_cuda(index)?;
                }
                #[cfg(feature = "cuda")]
                {
                    type $train = device::GpuTrain;
                    let $devs: Vec<burn::tensor::Device<$train>> = indices
                        .iter()
                        .map(|&i| burn::backend::cuda::CudaDevice::new(i))
                        .collect();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                bail!("built without CUDA (devices {indices:?})")
            }
        }
    };
}

/// Input layouts `prepare` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// PhysioNet's PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records500/).
    Ptbxl,
    /// Folders of WFDB records (LUDB, CinC) with labels harmonised onto SCP statements.
    Wfdb,
    /// Several sources into one set: PTB-XL folders (split by strat_fold, 9 validation, 10
    /// test) and WFDB folders (split by record, stratified), each ECG once, no patient on two
    /// sides, classes a source cannot state marked unknown; --unlabelled folders for stage 1.
    Combined,
}

/// Options shared by both training commands.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The stage config (seed layout; see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// cpu, or cuda:N (needs a build with --features cuda); a list such as cuda:0,cuda:1 trains
    /// data parallel, each batch split between the devices (cpu,cpu: replicas on the one CPU).
    #[arg(long, default_value = "cpu")]
    pub device: TrainDevices,
    /// Continue from the run's last checkpoint (RUN/last) if there is one.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs in this invocation (the LR schedule still spans NUM_EPOCHS).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// f32, or bf16: mixed precision (f32 master weights and optimiser state, bf16 forward and
    /// backward; batch norms and losses f32). A GPU option: burn's CPU backend computes bf16 in
    /// f32 and rounds, so it is slower there.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// EKnet trainer: inspect and convert ECG records (training, evaluation and export follow).
#[derive(Debug, Parser)]
#[command(name = "eknet-train", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `eknet-train` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a record: leads, rate, duration, metadata, source labels, their harmonised PTB-XL
    /// SCP codes and any label that did not map.
    Inspect {
        /// A WFDB record path without extension (e.g. ../shared/data/ludb/data/1) or an
        /// `.ecgzip` file.
        record: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Folder with `ptbxl/scp_statements.csv` and the CinC mapping files (default:
        /// $EKNET_DATA_DIR, else ../shared/data found upward from the current folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Measure records as a 12-lead cart does: HR, P, PR, QRS, QT, four QTc, frontal axes,
    /// measurement statements, and per beat the R peak and P/QRS/T boundaries (sample indices on
    /// the record's 500 Hz timeline), each null where it cannot be measured, with the reason.
    Measure {
        /// Records (WFDB paths without extension, CinC `.mat` records or `.ecgzip` files).
        #[arg(required = true)]
        records: Vec<PathBuf>,
        /// One JSON object per record per line (keys `record`, `hr_bpm`, `p_ms`, `pr_ms`,
        /// `qrs_ms`, `qt_ms`, `qtc_*_ms`, `*_axis_deg`, `statements`, `beats`, `unmeasured`, ...).
        #[arg(long)]
        json: bool,
    },
    /// Turn a PhysioNet layout into the seed's training layout: .ecgzip records, k{fold}_train /
    /// _val / _test.csv and k{fold}_distribution.csv, plus a report of skipped records and
    /// unmapped labels.
    Prepare {
        /// Input layout.
        #[arg(long, value_enum)]
        format: Format,
        /// Input folder (repeat --input for several WFDB folders).
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Fold number in the file names.
        #[arg(long, default_value_t = 0)]
        fold: u32,
        /// Seed of random splits.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// WFDB: fraction of records for validation.
        #[arg(long, default_value_t = 0.15)]
        val_fraction: f64,
        /// WFDB: fraction of records for test.
        #[arg(long, default_value_t = 0.15)]
        test_fraction: f64,
        /// WFDB: keep SCP codes with at least this many records as classes.
        #[arg(long, default_value_t = 10)]
        min_count: usize,
        /// Class list (SCP codes, comma separated, output order). Default: PTB-XL, the 70 EKnet
        /// classes; WFDB, every code with --min-count records.
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
        /// Combined: a folder of unlabelled WFDB records (e.g. CODE-15%) for stage 1 only: zero
        /// padding cut, written to k{fold}_unlabelled.csv and, with the training split, to
        /// k{fold}_pretrain.csv (repeat for several folders).
        #[arg(long)]
        unlabelled: Vec<PathBuf>,
        /// WFDB: stratify the split on the classes (each split gets its share of every class)
        /// instead of cutting one shuffled list.
        #[arg(long)]
        stratify: bool,
        /// PTB-XL: read records100/ instead of records500/.
        #[arg(long)]
        records100: bool,
        /// PTB-XL: the seed's random 70/30 train/validation split instead of strat_fold 1-8/9/10.
        #[arg(long)]
        random_split: bool,
        /// WFDB: folder with ptbxl/scp_statements.csv and the CinC mapping files (default: the
        /// shared data folder).
        #[arg(long)]
        tables: Option<PathBuf>,
    },
    /// Stage 1 (self-learning): masked lead reconstruction.
    Pretrain(TrainArgs),
    /// Stage 2 (classification), starting from stage 1 when the config's Using_Pertrain is true.
    Finetune(TrainArgs),
    /// Score a stage-2 checkpoint: thresholds fitted on validation, metrics with bootstrap
    /// intervals, JSON, CSV and PNG plots.
    Evaluate {
        /// Checkpoint folder (RUN/best or RUN/last).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Split to report.
        #[arg(long, value_enum, default_value = "test")]
        split: EvalSplit,
        /// Output folder (default: CHECKPOINT/eval_SPLIT).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Bootstrap resamples for the 95 % intervals.
        #[arg(long, default_value_t = 1000)]
        bootstrap: usize,
        /// cpu, or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
    },
    /// Train the plain 1-D CNN baseline (12 leads x 10 s) with a stage-2 config's split, recipe
    /// and class weighting, and score it like `evaluate` (thresholds fitted on validation).
    Baseline {
        /// The stage-2 config whose data and recipe to use.
        #[arg(long)]
        config: PathBuf,
        /// Epochs (default: the config's NUM_EPOCHS).
        #[arg(long)]
        epochs: Option<usize>,
        /// Split to report.
        #[arg(long, value_enum, default_value = "test")]
        split: EvalSplit,
        /// Output folder (default: MODEL_SAVE_DIR/TRY_TIME_baseline_cnn).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Bootstrap resamples for the 95 % intervals.
        #[arg(long, default_value_t = 1000)]
        bootstrap: usize,
        /// cpu, or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
    },
    /// Throughput in ECGs/s: training steps of each config's stage, evaluation forwards (stage
    /// 2), and reading windows from the decoded-tensor cache (when the config's data exists).
    Bench {
        /// Stage configs to measure (repeat).
        #[arg(long, required = true)]
        config: Vec<PathBuf>,
        /// Batch size.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed steps (after 2 warm-up steps).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// cpu, or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
        /// Worker threads of the CPU backend (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// f32, or bf16 mixed precision (as `train --precision`).
        #[arg(long, default_value = "f32")]
        precision: Precision,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a model bundle (`.eknet`) from a stage-2 checkpoint: the f32 ONNX graph (checked
    /// against burn on the validation records), an int8 graph calibrated on real records, both
    /// graphs' validation metrics and thresholds, and a manifest with provenance and checksums.
    Export {
        /// Checkpoint folder (RUN/best or RUN/last).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Calibration records: a prepared split CSV (e.g. the training split) or a record file
        /// or folder (WFDB, .ecgzip).
        #[arg(long)]
        calibration: PathBuf,
        /// Bundle to write.
        #[arg(long)]
        out: PathBuf,
        /// Calibration windows (spread evenly over the source).
        #[arg(long, default_value_t = 64)]
        calibration_windows: usize,
        /// How to reproduce this model, recorded in the manifest (e.g. a script path).
        #[arg(long)]
        reproduce: Option<String>,
        /// Folder with ptbxl/scp_statements.csv and cinc/ for label descriptions and SNOMED codes
        /// (default: the shared data folder).
        #[arg(long)]
        tables: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle as the daemon loads it (checksums, format version, graph shapes, label
    /// count), run both graphs once, and print a summary.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// Print JSON (the verification and the manifest).
        #[arg(long)]
        json: bool,
        /// Also write tract's outputs on a test window (and on --record files) to this folder,
        /// for `tools/ort_check.py` to compare with onnxruntime.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Records whose first 10 s window is added to --dump (repeat).
        #[arg(long)]
        record: Vec<PathBuf>,
    },
    /// Write a bundle of an UNTRAINED model (seeded random weights, int8 calibrated on real
    /// records): a fixture for trying the bundle tools, the daemon and its demo before a model is
    /// trained. Its scores mean nothing; its model id and manifest say so.
    UntrainedBundle {
        /// Stage-2 config giving the architecture and class count.
        #[arg(long)]
        config: PathBuf,
        /// Class codes in output order (comma separated; as many as the config's num_classes).
        #[arg(long, value_delimiter = ',')]
        classes: Vec<String>,
        /// Records (file or folder) to calibrate the int8 graph on.
        #[arg(long)]
        calibration: PathBuf,
        /// Bundle to write.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// (internal) Touch a CUDA device; used to turn burn's panic on a missing GPU into an error.
    #[command(hide = true)]
    ProbeCuda {
        /// Device index.
        index: usize,
    },
    /// Write a record's 12 leads, at its own rate, in millivolts, as a seed `.ecgzip`
    /// (III, aVR, aVL, aVF derived from I and II where the record lacks them).
    Convert {
        /// A WFDB record path without extension, or an `.ecgzip` file.
        record: PathBuf,
        /// The `.ecgzip` file to write.
        out: PathBuf,
    },
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Measure { records, json } => {
            let mut failed = 0usize;
            for path in &records {
                let m = eknet_shared::io::read_any(path)
                    .with_context(|| format!("reading {}", path.display()))
                    .and_then(|r| crate::inspect::measure_record(&r));
                match m {
                    Ok(m) if json => {
                        println!("{}", crate::inspect::measure_json(path, &m)?);
                    }
                    Ok(m) => {
                        println!("record      {}", path.display());
                        print!("{}", crate::inspect::measurements_text(&m));
                    }
                    Err(e) => {
                        // The others are still measured; the exit status says one failed.
                        failed += 1;
                        eprintln!("eknet-train measure: {e:#}");
                    }
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} records could not be measured",
                    records.len()
                );
            }
            Ok(())
        }
        Command::Inspect {
            record,
            json,
            data_dir,
        } => {
            let report = inspect(&record, data_dir.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", Inspection::to_text(&report));
            }
            Ok(())
        }
        Command::Prepare {
            format,
            input,
            out,
            fold,
            seed,
            val_fraction,
            test_fraction,
            min_count,
            classes,
            unlabelled,
            stratify,
            records100,
            random_split,
            tables,
        } => {
            if !unlabelled.is_empty() && format != Format::Combined {
                bail!("--unlabelled needs --format combined");
            }
            let harmoniser = || -> Result<Harmoniser> {
                let tables = match &tables {
                    Some(t) => t.clone(),
                    None => data::require_data_dir(&std::env::current_dir()?)
                        .map_err(anyhow::Error::msg)?,
                };
                Ok(Harmoniser::from_data_dir(&tables)?)
            };
            let wfdb_opts = WfdbPrepare {
                fold,
                seed,
                val_fraction,
                test_fraction,
                min_count,
                classes: classes.clone(),
                stratify,
            };
            let report = match format {
                Format::Wfdb => prepare_wfdb(&input, &out, &harmoniser()?, &wfdb_opts)?,
                Format::Combined => {
                    let opts = CombinedPrepare {
                        split: WfdbPrepare {
                            stratify: true,
                            ..wfdb_opts
                        },
                        unlabelled,
                    };
                    prepare_combined(&input, &out, &harmoniser()?, &opts)?
                }
                Format::Ptbxl => {
                    let [dir] = input.as_slice() else {
                        bail!("--format ptbxl takes one --input folder");
                    };
                    let split = if random_split {
                        PtbxlSplit::Random70_30 { seed }
                    } else {
                        PtbxlSplit::StratFold
                    };
                    let opts = PtbxlPrepare {
                        fold,
                        use_500hz: !records100,
                        split,
                        classes,
                    };
                    prepare_ptbxl(dir, &out, &opts)?
                }
            };
            println!(
                "prepared {} records into {}: train {}, val {}, test {}; {} classes; {} skipped; {} of {} labels unmapped",
                report.records,
                out.display(),
                report.train,
                report.val,
                report.test,
                report.classes.len(),
                report.skipped.len(),
                report.unmapped.unmapped_count(),
                report.unmapped.labels
            );
            for (name, n) in &report.classes {
                println!("  class {name:<8} {n} records");
            }
            for s in &report.sources {
                println!(
                    "  source {:<10} {:<10} found {:>4}, written {:>4}, skipped {:>3}, duplicates {:>2}: train {:>4}, val {:>3}, test {:>3}, stage 1 only {:>3}",
                    s.name,
                    s.layout,
                    s.found,
                    s.written,
                    s.skipped,
                    s.duplicates,
                    s.train,
                    s.val,
                    s.test,
                    s.unlabelled
                );
            }
            if !report.duplicates.is_empty() {
                println!(
                    "  {} duplicate ECGs left out; {} records moved to keep patients on one side",
                    report.duplicates.len(),
                    report.moved_for_patient
                );
            }
            for (path, why) in report.skipped.iter().take(20) {
                println!("  skipped {path}: {why}");
            }
            Ok(())
        }
        Command::Pretrain(args) => run_training(args, Stage::Pretrain),
        Command::Finetune(args) => run_training(args, Stage::Classify),
        Command::Evaluate {
            checkpoint,
            split,
            out,
            bootstrap,
            device,
        } => {
            let out = out.unwrap_or_else(|| {
                checkpoint.join(format!("eval_{}", format!("{split:?}").to_lowercase()))
            });
            let stage1 = StageConfig::load(&checkpoint.join("config.yaml"))
                .map(|c| c.model.mode_stage == ModeStage::SelfLearning)
                .unwrap_or(false);
            if stage1 {
                let r = with_backend!(device, _T, I, dev => stage1_eval::run::<I>(&checkpoint, split, &out, bootstrap, &dev)?);
                println!(
                    "{} split, {} records, {:.0} % of tokens dropped: R^2 over dropped samples {:.4} [{:.4}, {:.4}], over all samples {:.4} [{:.4}, {:.4}]",
                    r.split,
                    r.records,
                    100.0 * r.mask_ratio,
                    r.r2_dropped.value,
                    r.r2_dropped.low,
                    r.r2_dropped.high,
                    r.r2_all.value,
                    r.r2_all.low,
                    r.r2_all.high
                );
                let leads: Vec<String> = r
                    .r2_dropped_by_lead
                    .iter()
                    .map(|(l, v)| format!("{l} {v:.3}"))
                    .collect();
                println!("  dropped samples by lead: {}", leads.join(", "));
                println!("written to {}", out.display());
                return Ok(());
            }
            let report = with_backend!(device, _T, I, dev => evaluate::run::<I>(&checkpoint, split, &out, bootstrap, &dev)?);
            let s = &report.summary;
            println!(
                "{} split, {} records: macro AUC {:.4} [{:.4}, {:.4}], micro AUC {:.4}, macro F1 {:.4} [{:.4}, {:.4}] (at 0.5: {:.4}), micro F1 {:.4}",
                report.split,
                report.records,
                s.macro_auc.value,
                s.macro_auc.low,
                s.macro_auc.high,
                s.micro_auc.value,
                s.macro_f1.value,
                s.macro_f1.low,
                s.macro_f1.high,
                s.macro_f1_at_half.value,
                s.micro_f1.value
            );
            for c in &report.classes {
                println!(
                    "  {:<8} n={:<4} of {:<4} AUC {} F1 {:.3} P {:.3} R {:.3} (t={:.3})",
                    c.name,
                    c.support,
                    c.known,
                    c.auc.map_or("  -   ".to_string(), |a| format!("{a:.3}")),
                    c.f1,
                    c.precision,
                    c.recall,
                    c.threshold
                );
            }
            for r in &report.rules {
                println!(
                    "  rule {:<6} {}: AUC {:.3} [{:.3}, {:.3}]; model - rule {:+.3} [{:+.3}, {:+.3}]{}",
                    r.class,
                    r.rule,
                    r.auc.value,
                    r.auc.low,
                    r.auc.high,
                    r.model_minus_rule.value,
                    r.model_minus_rule.low,
                    r.model_minus_rule.high,
                    if r.unmeasured > 0 {
                        format!(" ({} records unmeasured)", r.unmeasured)
                    } else {
                        String::new()
                    }
                );
            }
            println!("written to {}", out.display());
            Ok(())
        }
        Command::Baseline {
            config,
            epochs,
            split,
            out,
            bootstrap,
            device,
        } => {
            let cfg = StageConfig::load(&config)?;
            let out = out.unwrap_or_else(|| crate::baseline::default_out(&cfg));
            let r = with_backend!(device, T, _I, dev => crate::baseline::run::<T>(&cfg, epochs, split, &out, bootstrap, &dev)?);
            let s = &r.summary;
            println!(
                "baseline ({}, {} parameters, best epoch {}), {} split, {} records: macro AUC {:.4} [{:.4}, {:.4}], macro F1 {:.4}",
                r.model,
                r.parameters,
                r.best_epoch,
                r.split,
                r.records,
                s.macro_auc.value,
                s.macro_auc.low,
                s.macro_auc.high,
                s.macro_f1.value
            );
            for c in &r.classes {
                println!(
                    "  {:<8} n={:<4} of {:<4} AUC {}",
                    c.name,
                    c.support,
                    c.known,
                    c.auc.map_or("  -   ".to_string(), |a| format!("{a:.3}"))
                );
            }
            println!("written to {}", out.display());
            Ok(())
        }
        Command::Export {
            checkpoint,
            calibration,
            out,
            calibration_windows,
            reproduce,
            tables,
            json,
        } => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let report = export::export(&export::ExportOptions {
                checkpoint,
                calibration,
                calibration_windows,
                out,
                command,
                reproduce,
                tables,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let m = &report.manifest;
                let fmt = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
                println!(
                    "wrote {} ({} bytes; model.onnx {} bytes, model.int8.onnx {} bytes) in {:.1} s",
                    report.out.display(),
                    report.bundle_bytes,
                    report.f32_bytes,
                    report.int8_bytes,
                    report.seconds
                );
                println!(
                    "validation ({} records): macro AUC f32 {}, int8 {}; max |int8 - f32| {:.4}; f32 graph vs burn {:.2e}",
                    m.metrics.records,
                    fmt(m.metrics.f32.macro_auc),
                    fmt(m.metrics.int8.macro_auc),
                    m.metrics.int8_vs_f32_max_abs,
                    m.metrics.f32_vs_trainer_max_abs
                );
                if let Some(t) = &report.test_agreement {
                    println!(
                        "test ({} records): macro AUC f32 {}, int8 {}; worst class |int8 - f32| AUC {}; max |int8 - f32| {:.4}",
                        t.records,
                        fmt(t.macro_auc_f32),
                        fmt(t.macro_auc_int8),
                        fmt(t.worst_class_auc),
                        t.max_abs
                    );
                }
            }
            Ok(())
        }
        Command::UntrainedBundle {
            config,
            classes,
            calibration,
            out,
            seed,
        } => {
            let cfg = StageConfig::load(&config)?;
            let mcfg = crate::model::EknetConfig::from_stage(&cfg);
            let windows = export::calibration_windows(&calibration, &cfg, &classes, 32)?;
            export::untrained_bundle(&out, &mcfg, &classes, &windows, seed)?;
            println!(
                "wrote {} (UNTRAINED: random weights, for trying the tools only)",
                out.display()
            );
            Ok(())
        }
        Command::Verify {
            bundle,
            json,
            dump,
            record,
        } => {
            let report = export::verify(&bundle)?;
            if let Some(dir) = &dump {
                let n = export::dump_for_check(&bundle, &record, dir)?;
                eprintln!(
                    "wrote tract's outputs on {n} window(s) to {}",
                    dir.display()
                );
            }
            let b = eknet_shared::bundle::Bundle::open(&bundle)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "verify": report,
                        "manifest": b.manifest,
                    }))?
                );
            } else {
                print!("{}", export::verify_text(&report, &b.manifest));
            }
            Ok(())
        }
        Command::Bench {
            config,
            batch,
            steps,
            device,
            threads,
            precision,
            json,
        } => {
            if let Some(n) = threads {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global()
                    .context("cannot set the CPU backend's thread count")?;
            }
            let backend = device::backend_name(device);
            let mut rows = Vec::new();
            for path in &config {
                let cfg = StageConfig::load(path)?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                rows.extend(with_backend!(device, T, _I, dev => bench::model_throughput::<T>(&cfg, &name, backend, precision, batch, 2, steps, &dev)));
                if cfg.dataset.train_csv.exists() {
                    rows.push(bench::cache_throughput(&cfg, &name, batch, steps.max(20))?);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<38} {:<34} {:>6} {:>12} {:>10} {:>12}  phases ms (forward / backward / optimiser)",
                    "what", "config", "batch", "median ms", "ECGs/s", "params"
                );
                for r in &rows {
                    let phases = match (r.forward_s, r.backward_s, r.optimizer_s) {
                        (Some(f), Some(b), Some(o)) => {
                            format!("  {:.1} / {:.1} / {:.1}", f * 1e3, b * 1e3, o * 1e3)
                        }
                        _ => String::new(),
                    };
                    println!(
                        "{:<38} {:<34} {:>6} {:>12.2} {:>10.1} {:>12}{phases}",
                        r.what,
                        r.config,
                        r.batch,
                        r.median_s * 1e3,
                        r.ecgs_per_s,
                        r.params
                    );
                }
                println!(
                    "backend {backend}, {} CPU threads",
                    rayon::current_num_threads()
                );
            }
            Ok(())
        }
        Command::ProbeCuda { index } => device::probe_cuda(index),
        Command::Convert { record, out } => {
            let r = io::read_any(&record)
                .with_context(|| format!("reading {}", record.display()))?
                .with_derived_limb_leads()
                .with_context(|| format!("completing the 12 leads of {}", record.display()))?;
            r.require_all_leads()
                .with_context(|| format!("{} cannot give 12 leads", record.display()))?;
            ecgzip::write(&r, &out).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {}: 12 leads, {} samples at {} Hz ({:.2} s)",
                out.display(),
                r.len_samples(),
                r.sample_rate_hz(),
                r.duration_s()
            );
            Ok(())
        }
    }
}

fn run_training(args: TrainArgs, stage: Stage) -> Result<()> {
    let cfg = StageConfig::load(&args.config)?;
    let opts = TrainOptions {
        resume: args.resume,
        quiet: args.quiet,
        cache_dir: None,
        stop_after: args.stop_after,
        precision: args.precision,
    };
    let outcome = with_train_devices!(args.device, T, devs =>
        train::train_on::<T>(&cfg, stage, &opts, &devs)?);
    println!(
        "done: {} epochs, checkpoints in {} (last/, best/)",
        outcome.state.epochs_done,
        outcome.run_dir.display()
    );
    Ok(())
}
