//! Both training stages: data from the decoded-record cache (a random 10 s crop of each record per
//! epoch, augmented on the host), token drop drawn on the host, AdamW with decay only on linear
//! weights, linear warm-up then cosine per step, validation and checkpoints every `VAL_EVERY`
//! epochs (stage 1: MSE and R^2 on held-out records; stage 2: loss and macro AUC over the labels
//! each record's source states), resume from the last checkpoint, the seed's epoch lines.

use crate::adamw::AdamWSettings;
use crate::checkpoint::{self, CopyReport, EpochLog, TrainState, recorder};
use crate::data::augment::augment;
use crate::data::cache::{RecordCache, WINDOW_VALUES, layout_3x4};
use crate::data::split::read_distribution;
use crate::metrics::roc_auc;
use crate::model::{DropPlan, Eknet, EknetConfig, Stage, scores, token_groups};
use crate::precision::{Precision, like, working_copy};
use crate::rng::Rng;
use anyhow::{Context, Result, bail};
use burn::module::{AutodiffModule, Module, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::Recorder;
use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;
use eknet_shared::config::{AugmentSection, ClassWeighting, LossOn, ModeStage, StageConfig};
use eknet_shared::layout::{SLOT_COUNT, SLOT_SAMPLES, TOKEN_COUNT, WINDOW_SAMPLES};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options beyond the config.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `RUN/last` if it exists.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Where decoded tensors are cached (default: `cache/` beside the training split file).
    pub cache_dir: Option<PathBuf>,
    /// Stop after this many epochs in this invocation (the schedule still spans NUM_EPOCHS).
    pub stop_after: Option<usize>,
    /// The arithmetic of each step's forward and backward (master weights stay f32).
    pub precision: Precision,
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run folder (`MODEL_SAVE_DIR/TRY_TIME`).
    pub run_dir: PathBuf,
    /// Final state.
    pub state: TrainState,
    /// Stage-1 tensors copied into stage 2, when the run started from a pre-trained model.
    pub copy: Option<CopyReport>,
}

/// The run folder of a config.
pub fn run_dir(cfg: &StageConfig) -> PathBuf {
    cfg.dataset.model_save_dir.join(&cfg.try_time)
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps to `peak`,
/// then cosine down to `floor` at the last step.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, floor: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((step - warmup) as f64 / span as f64).min(1.0);
    floor + 0.5 * (peak - floor) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The decoded-record caches of a config's splits.
pub struct Splits {
    /// Class names in output order.
    pub classes: Vec<String>,
    /// Training records.
    pub train: RecordCache,
    /// Validation records.
    pub val: RecordCache,
}

/// Where a config's decoded windows are cached by default: `cache/` beside the training split.
pub fn default_cache_dir(cfg: &StageConfig) -> PathBuf {
    cfg.dataset
        .train_csv
        .parent()
        .unwrap_or(Path::new("."))
        .join("cache")
}

/// Opens (building if needed) the train and validation caches of a config.
pub fn open_splits(cfg: &StageConfig, cache_dir: Option<&Path>) -> Result<Splits> {
    let classes: Vec<String> = read_distribution(&cfg.dataset.stats_csv)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let dir = cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_cache_dir(cfg));
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let train = RecordCache::open_or_build(
        &cfg.dataset.train_csv,
        &cfg.dataset.data_dir,
        &classes,
        &dir,
        &stem(&cfg.dataset.train_csv),
    )?;
    let val = RecordCache::open_or_build(
        &cfg.dataset.val_csv,
        &cfg.dataset.data_dir,
        &classes,
        &dir,
        &stem(&cfg.dataset.val_csv),
    )?;
    if train.is_empty() {
        bail!(
            "training split {} gave no 10 s window",
            cfg.dataset.train_csv.display()
        );
    }
    if val.is_empty() {
        bail!(
            "validation split {} gave no 10 s window",
            cfg.dataset.val_csv.display()
        );
    }
    Ok(Splits {
        classes,
        train,
        val,
    })
}

/// A batch in host memory: `[b, 15, 1250]` inputs, `[b, K]` 0/1 labels and `[b, K]` 1/0 marks
/// of which labels are known.
#[derive(Debug, Clone, Default)]
pub struct HostBatch {
    /// Inputs.
    pub x: Vec<f32>,
    /// Labels.
    pub y: Vec<f32>,
    /// Known labels.
    pub known: Vec<f32>,
}

/// Each record's first 10 s window, as evaluation and the bedside see it.
pub fn gather_batch(cache: &RecordCache, records: &[usize]) -> HostBatch {
    let mut b = HostBatch {
        x: Vec::with_capacity(records.len() * WINDOW_VALUES),
        ..HostBatch::default()
    };
    for &r in records {
        cache.copy_window(r, 0, &mut b.x);
        b.y.extend(cache.labels(r));
        b.known.extend(cache.known(r));
    }
    b
}

/// A training batch: per record a 10 s crop at a random offset (when `random_crop`; else the
/// first), augmented by `aug`, laid out in 3x4.
pub fn training_batch(
    cache: &RecordCache,
    records: &[usize],
    random_crop: bool,
    aug: &AugmentSection,
    rng: &mut Rng,
) -> HostBatch {
    let mut b = HostBatch {
        x: Vec::with_capacity(records.len() * WINDOW_VALUES),
        ..HostBatch::default()
    };
    for &r in records {
        let leads = training_crop(cache, r, random_crop, aug, rng);
        b.x.extend(layout_3x4(&leads));
        b.y.extend(cache.labels(r));
        b.known.extend(cache.known(r));
    }
    b
}

/// One training crop of record `r`: its twelve leads over 10 s from a random offset (when
/// `random_crop`; else the first), augmented by `aug`.
pub fn training_crop(
    cache: &RecordCache,
    r: usize,
    random_crop: bool,
    aug: &AugmentSection,
    rng: &mut Rng,
) -> [Vec<f32>; 12] {
    let spare = cache.len_samples(r) - WINDOW_SAMPLES;
    let start = if random_crop && spare > 0 {
        rng.below(spare + 1)
    } else {
        0
    };
    let mut leads = cache.leads_10s(r, start);
    augment(&mut leads, aug, rng);
    leads
}

/// Per-class weights of positive labels: 1 (`none`), or negatives / positives among the training
/// records whose source states the class, capped at 10 (`balanced`).
pub fn class_weights(cache: &RecordCache, weighting: ClassWeighting) -> Vec<f32> {
    let k = cache.index.classes.len();
    if weighting == ClassWeighting::None {
        return vec![1.0; k];
    }
    (0..k)
        .map(|c| {
            let (mut pos, mut neg) = (0usize, 0usize);
            for (l, kn) in cache.index.labels.iter().zip(&cache.index.known) {
                if kn[c] == 1 {
                    if l[c] == 1 {
                        pos += 1;
                    } else {
                        neg += 1;
                    }
                }
            }
            if pos == 0 {
                1.0
            } else {
                (neg as f32 / pos as f32).clamp(1.0, 10.0)
            }
        })
        .collect()
}

/// Host batch to a tensor.
pub fn to_tensor<B: Backend>(x: Vec<f32>, batch: usize, device: &B::Device) -> Tensor<B, 3> {
    Tensor::from_data(
        TensorData::new(x, [batch, SLOT_COUNT, SLOT_SAMPLES]),
        device,
    )
}

/// Stage-1 loss: mean squared error against the whole undropped input, or only over the samples of
/// dropped tokens (`loss_on: masked`). Also returns the mean of `x^2` over the same samples, so
/// `1 - loss / energy` is R^2 (0 = no better than predicting zeros).
pub fn pretrain_loss<B: Backend>(
    model: &Eknet<B>,
    x: Tensor<B, 3>,
    plan: &DropPlan,
    loss_on: LossOn,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let b = x.dims()[0];
    let rec = model
        .forward(x.clone(), Some(plan))
        .reconstruction
        .expect("stage-1 model has a reconstruction head");
    // Losses in f32 whatever the working precision; the target is the f32 input.
    let rec = like(rec, DType::F32);
    let x = like(x, DType::F32);
    let energy = x.clone().powi_scalar(2);
    let sq = (rec - x).powi_scalar(2);
    match loss_on {
        LossOn::All => (sq.mean(), energy.mean()),
        LossOn::Masked => {
            let m = Tensor::<B, 2>::from_data(
                TensorData::new(plan.dropped_mask(b), [b, TOKEN_COUNT]),
                &sq.device(),
            )
            .reshape([b, SLOT_COUNT, SLOT_SAMPLES / 25, 1])
            .repeat_dim(3, 25)
            .reshape([b, SLOT_COUNT, SLOT_SAMPLES]);
            let denom = m.clone().sum().clamp_min(1.0);
            (
                (sq * m.clone()).sum() / denom.clone(),
                (energy * m).sum() / denom,
            )
        }
    }
}

/// Stage-2 loss: 2-way cross-entropy per class and sample, over the labels that are known
/// (`known` 1), each positive weighted by its class's `pos_weight`, averaged over the weights.
/// With every label known and unit weights this is the seed's plain mean.
pub fn classify_loss<B: Backend>(
    model: &Eknet<B>,
    x: Tensor<B, 3>,
    y: &[f32],
    known: &[f32],
    pos_weight: &[f32],
    plan: Option<&DropPlan>,
) -> (Tensor<B, 1>, Tensor<B, 3>) {
    let logits = model
        .forward(x, plan)
        .logits
        .expect("stage-2 model has class heads");
    (
        masked_cross_entropy(logits.clone(), y, known, pos_weight),
        logits,
    )
}

/// The weighted, masked two-way cross-entropy of `[b, K, 2]` logits (see [`classify_loss`]).
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    y: &[f32],
    known: &[f32],
    pos_weight: &[f32],
) -> Tensor<B, 1> {
    let [b, k, _] = logits.dims();
    let device = logits.device();
    let logits = like(logits, DType::F32); // losses in f32 whatever the working precision
    let weights = label_weights(&y[..b * k], &known[..b * k], pos_weight);
    let total: f32 = weights.iter().sum();
    let onehot: Vec<f32> = y.iter().flat_map(|&v| [1.0 - v, v]).collect();
    let logp = burn::tensor::activation::log_softmax(logits, 2); // [b, k, 2]
    let target = Tensor::<B, 3>::from_data(TensorData::new(onehot, [b, k, 2]), &device);
    let w = Tensor::<B, 2>::from_data(TensorData::new(weights, [b, k]), &device);
    let nll = (logp * target).sum_dim(2).reshape([b, k]).neg(); // [b, k]
    (nll * w).sum() / f64::from(total.max(1e-6))
}

/// Each label's weight in the stage-2 loss: its class's `pos_weight` when positive, 1 when
/// negative, 0 when unknown (`y`, `known`: row-major `[b, K]`, `pos_weight`: `[K]`).
pub fn label_weights(y: &[f32], known: &[f32], pos_weight: &[f32]) -> Vec<f32> {
    let k = pos_weight.len().max(1);
    y.iter()
        .zip(known)
        .enumerate()
        .map(|(i, (&v, &kn))| {
            let w = if v > 0.5 { pos_weight[i % k] } else { 1.0 };
            w * kn
        })
        .collect()
}

/// Parameter ids that get weight decay (linear-layer and class-head weights) and those that do
/// not (biases, norms, lead/time knowledge, queries).
pub fn decay_split<B: Backend>(model: &Eknet<B>) -> (Vec<ParamId>, Vec<ParamId>) {
    let d = checkpoint::dump(model, false);
    let (mut decay, mut plain) = (Vec::new(), Vec::new());
    for (name, (id, _, _)) in d.tensors {
        if name.ends_with(".weight") || name == "class_weight" {
            decay.push(id);
        } else {
            plain.push(id);
        }
    }
    (decay, plain)
}

/// The seed of one epoch's (or validation's, `epoch` 0) random choices.
pub fn seed_for(seed: u64, epoch: usize, salt: u64) -> u64 {
    seed ^ ((epoch as u64) << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Builds the stage-1 model described by a checkpoint folder and dumps its tensors.
pub fn load_pretrained_dump(dir: &Path) -> Result<checkpoint::TensorDump> {
    let cfg_path = dir.join("config.yaml");
    let cfg = StageConfig::load(&cfg_path)?;
    let mcfg = EknetConfig::from_stage(&cfg);
    let device = Default::default();
    let model = Eknet::<burn::backend::Flex>::new(&mcfg, &device)
        .load_file(dir.join("model"), &recorder(), &device)
        .with_context(|| format!("loading pre-trained weights from {}", dir.display()))?;
    Ok(checkpoint::dump(&model, true))
}

fn save_checkpoint<B: AutodiffBackend, O1, O2>(
    dir: &Path,
    model: &Eknet<B>,
    opt_decay: &O1,
    opt_plain: &O2,
    state: &TrainState,
    cfg: &StageConfig,
) -> Result<()>
where
    O1: Optimizer<Eknet<B>, B>,
    O2: Optimizer<Eknet<B>, B>,
{
    let tmp = checkpoint::part_dir(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let rec = recorder();
    model
        .clone()
        .save_file(tmp.join("model"), &rec)
        .context("saving model")?;
    rec.record(opt_decay.to_record(), tmp.join("optim_decay"))
        .context("saving optimiser")?;
    rec.record(opt_plain.to_record(), tmp.join("optim_plain"))
        .context("saving optimiser")?;
    std::fs::write(tmp.join("config.yaml"), cfg.to_yaml())?;
    // Written last: a folder with state.json holds everything else too.
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    checkpoint::swap_in(dir)
}

/// Trains the stage the config names. `stage` is the stage the command expects.
pub fn train<B: AutodiffBackend>(
    cfg: &StageConfig,
    stage: Stage,
    opts: &TrainOptions,
    device: &B::Device,
) -> Result<TrainOutcome> {
    train_on::<B>(cfg, stage, opts, std::slice::from_ref(device))
}

/// [`train`] on several devices, data parallel: the model and the optimiser live on the first;
/// each step forks one replica per device, splits the global batch between them (the token-drop
/// plan is drawn for the whole batch, then split), runs forward and backward on every device at
/// once, sums the gradients on the first device and takes one optimiser step. Each share's loss
/// is normalised by the whole batch's denominator, so the summed gradient is the one-device
/// gradient of the same global batch (equal up to float rounding). One device is plain [`train`].
pub fn train_on<B: AutodiffBackend>(
    cfg: &StageConfig,
    stage: Stage,
    opts: &TrainOptions,
    devices: &[B::Device],
) -> Result<TrainOutcome> {
    let Some(device) = devices.first() else {
        bail!("training needs at least one device");
    };
    if devices.len() > 1 && cfg.model.stem_batch_norm {
        // Each replica would normalise by its own share's statistics (not the batch's), and
        // burn's running statistics are one tensor shared by all replicas, moved to whichever
        // device forked last.
        bail!(
            "data-parallel training ({} devices) does not support MODEL.stem_batch_norm: set it \
             to False or train on one device",
            devices.len()
        );
    }
    let expected = match stage {
        Stage::Pretrain => ModeStage::SelfLearning,
        Stage::Classify => ModeStage::Classifier,
    };
    if cfg.model.mode_stage != expected {
        bail!(
            "config MODEL.mode_stage is {:?}, but this command trains {:?}",
            cfg.model.mode_stage,
            expected
        );
    }
    let splits = open_splits(cfg, opts.cache_dir.as_deref())?;
    if stage == Stage::Classify && cfg.model.num_classes != splits.classes.len() {
        bail!(
            "MODEL.num_classes is {} but {} lists {} classes",
            cfg.model.num_classes,
            cfg.dataset.stats_csv.display(),
            splits.classes.len()
        );
    }
    let mcfg = EknetConfig::from_stage(cfg);
    let o = &cfg.optim;
    let run = run_dir(cfg);
    std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
    std::fs::write(run.join("config.yaml"), cfg.to_yaml())?;

    B::seed(device, o.seed);
    let mut model = Eknet::<B>::new(&mcfg, device);
    let (betas, wd) = match stage {
        Stage::Pretrain => ((0.9, 0.95), o.weight_decay as f32),
        Stage::Classify if o.weight_decay_stage2 => ((0.9, 0.999), o.weight_decay as f32),
        Stage::Classify => ((0.9, 0.999), 0.0),
    };
    let adam = |decay: f32| {
        AdamWSettings {
            beta_1: betas.0,
            beta_2: betas.1,
            epsilon: 1e-8,
            weight_decay: decay,
        }
        .init::<B, Eknet<B>>()
    };
    let mut opt_decay = adam(wd);
    let mut opt_plain = adam(0.0);
    let mut state = TrainState {
        classes: splits.classes.clone(),
        ..TrainState::default()
    };
    let mut copy = None;
    let last = run.join("last");
    let resume_from = if opts.resume {
        checkpoint::prepare_resume(&last)?
    } else {
        checkpoint::ResumeFrom::Nothing
    };
    if opts.resume && resume_from == checkpoint::ResumeFrom::Nothing {
        eprintln!(
            "resume: no checkpoint at {}; starting from the beginning",
            last.display()
        );
    }
    if resume_from == checkpoint::ResumeFrom::Checkpoint {
        let rec = recorder();
        model = model
            .load_file(last.join("model"), &rec, device)
            .context("loading last checkpoint")?;
        opt_decay = opt_decay.load_record(
            rec.load(last.join("optim_decay"), device)
                .context("loading optimiser state")?,
        );
        opt_plain = opt_plain.load_record(
            rec.load(last.join("optim_plain"), device)
                .context("loading optimiser state")?,
        );
        state = checkpoint::read_state(&last)?;
        eprintln!(
            "resuming {} after epoch {}",
            run.display(),
            state.epochs_done
        );
    } else if stage == Stage::Classify && cfg.input.using_pretrain {
        let path = cfg
            .input
            .pretrain_path
            .as_ref()
            .context("Using_Pertrain needs Pertrain_Path")?;
        let source = load_pretrained_dump(path)?;
        let (m, report) = checkpoint::copy_matching(model, &source);
        model = m;
        eprintln!(
            "stage 1 {}: copied {} tensors, kept {} fresh ({}), {} stage-1 tensors unused",
            path.display(),
            report.copied.len(),
            report.skipped.len(),
            report
                .skipped
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            report.unused.len()
        );
        copy = Some(report);
    }
    let (decay_ids, plain_ids) = decay_split(&model);

    let n_train = splits.train.record_count();
    let batch = o.batch_size.min(n_train).max(1);
    let steps_per_epoch = n_train.div_ceil(batch);
    let total = o.num_epochs * steps_per_epoch;
    let warmup = (o.warmup_epochs * steps_per_epoch).min(total);
    let groups = token_groups(mcfg.lead_split);
    let ratio = cfg.input.mask_ratio;
    let pos_weight = class_weights(&splits.train, o.class_weighting);
    let step = Step {
        stage,
        cfg,
        pos_weight: &pos_weight,
        precision: opts.precision,
        ids: (&decay_ids, &plain_ids),
    };
    let end = match opts.stop_after {
        Some(n) => (state.epochs_done + n).min(o.num_epochs),
        None => o.num_epochs,
    };
    for epoch in state.epochs_done + 1..=end {
        let started = Instant::now();
        let mut rng = Rng::new(seed_for(o.seed, epoch, 1));
        let mut order: Vec<usize> = (0..n_train).collect();
        rng.shuffle(&mut order);
        let bar = if opts.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(steps_per_epoch as u64)
        };
        let (mut loss_sum, mut lr) = (0.0, 0.0);
        for chunk in order.chunks(batch) {
            let mut hb = training_batch(
                &splits.train,
                chunk,
                cfg.input.random_window,
                &cfg.augment,
                &mut rng,
            );
            let b = chunk.len();
            let plan = DropPlan::draw(&groups, b, ratio, &mut rng);
            let (value, g_decay, g_plain) = if devices.len() == 1 {
                let x = to_tensor::<B>(std::mem::take(&mut hb.x), b, device);
                let loss = match opts.precision {
                    Precision::F32 => step.loss(&model, x, &hb, &plan),
                    p => step.loss(&working_copy(&model, p), x, &hb, &plan),
                };
                share_gradients(&model, loss, step.ids)
            } else {
                data_parallel_gradients(&model, devices, &step, &hb, &plan)?
            };
            if !value.is_finite() {
                bail!("epoch {epoch}: training loss became {value}; lower LR_INITIAL");
            }
            loss_sum += value * b as f64;
            lr = lr_at(state.steps, total, warmup, o.lr_initial, o.lr_min);
            model = opt_decay.step(lr, model, g_decay);
            model = opt_plain.step(lr, model, g_plain);
            state.steps += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_loss = loss_sum / n_train as f64;
        let validate = epoch % o.val_every == 0 || epoch == o.num_epochs;
        let val = if validate {
            Some(validate_epoch(
                &model.valid(),
                &splits,
                stage,
                cfg,
                &groups,
                &pos_weight,
            )?)
        } else {
            None
        };
        let seconds = started.elapsed().as_secs_f64();
        state.epochs_done = epoch;
        let val_loss = val.as_ref().map(|v| v.loss);
        state.history.push(EpochLog {
            epoch,
            train_loss,
            val_loss,
            val_macro_auc: val.as_ref().and_then(|v| v.macro_auc),
            val_r2: val.as_ref().and_then(|v| v.r2),
            lr,
            seconds,
        });
        let val_text = val_loss.map_or("-".to_string(), |v| format!("{v:.6}"));
        let extra = match &val {
            Some(Validation {
                macro_auc: Some(a), ..
            }) => format!(" val macro AUC: {a:.4}"),
            Some(Validation { r2: Some(r), .. }) => format!(" val R2: {r:.4}"),
            _ => String::new(),
        };
        println!(
            "Epoch: {epoch} Time: {seconds:.1}s train Loss: {train_loss:.6} val loss: {val_text}{extra} LearningRate {lr:.8}"
        );
        // Checkpoint at every validation, and when this invocation stops early, so no
        // finished epoch is lost. Stage 2's best checkpoint is the one with the best validation
        // macro AUC (its loss mixes classes of very different prevalence); stage 1's the lowest
        // validation loss.
        if validate || epoch == end {
            let score = match stage {
                Stage::Classify => val.as_ref().and_then(|v| v.macro_auc).map(|a| -a),
                Stage::Pretrain => val_loss,
            };
            let improved = score.is_some_and(|v| state.best_val_loss.is_none_or(|b| v < b));
            if improved {
                state.best_val_loss = score;
                save_checkpoint(
                    &run.join("best"),
                    &model,
                    &opt_decay,
                    &opt_plain,
                    &state,
                    cfg,
                )?;
            }
            save_checkpoint(&last, &model, &opt_decay, &opt_plain, &state, cfg)?;
            write_history(&run, &state)?;
        }
    }
    Ok(TrainOutcome {
        run_dir: run,
        state,
        copy,
    })
}

/// The loss's value and its gradients, split into the decayed and the plain parameters.
fn share_gradients<B: AutodiffBackend>(
    model: &Eknet<B>,
    loss: Tensor<B, 1>,
    (decay_ids, plain_ids): (&[ParamId], &[ParamId]),
) -> (f64, GradientsParams, GradientsParams) {
    let value: f64 = loss.clone().into_scalar().elem::<f64>();
    let mut grads = loss.backward();
    let g_decay = GradientsParams::from_params(&mut grads, model, decay_ids);
    let g_plain = GradientsParams::from_params(&mut grads, model, plain_ids);
    (value, g_decay, g_plain)
}

/// Batch rows `0..b` split into `n` contiguous shares, sizes differing by at most one; empty
/// shares (a batch smaller than `n`) are left out.
pub fn split_rows(b: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    let n = n.max(1);
    (0..n)
        .map(|i| (i * b / n)..((i + 1) * b / n))
        .filter(|r| !r.is_empty())
        .collect()
}

/// What each share's loss is multiplied by so the shares add up to the whole batch's loss: the
/// share's own normaliser over the batch's (rows for `loss_on: all`, dropped tokens for
/// `masked`, known-label weights for stage 2).
fn share_factors(
    stage: Stage,
    cfg: &StageConfig,
    hb: &HostBatch,
    pos_weight: &[f32],
    plan: &DropPlan,
    b: usize,
    shares: &[std::ops::Range<usize>],
) -> Vec<f64> {
    let per_row: Vec<f64> = match (stage, cfg.model.loss_on) {
        (Stage::Pretrain, LossOn::All) => vec![1.0; b],
        (Stage::Pretrain, LossOn::Masked) => plan
            .dropped_mask(b)
            .chunks(TOKEN_COUNT)
            .map(|r| r.iter().map(|&v| f64::from(v)).sum())
            .collect(),
        (Stage::Classify, _) => {
            let k = pos_weight.len();
            label_weights(&hb.y, &hb.known, pos_weight)
                .chunks(k.max(1))
                .map(|r| r.iter().map(|&v| f64::from(v)).sum())
                .collect()
        }
    };
    // The losses clamp their normalisers (masked: at one sample, stage 2: at 1e-6); a share whose
    // normaliser is clamped has a zero numerator, so its factor does not matter.
    let floor = if stage == Stage::Classify { 1e-6 } else { 1.0 };
    let total = per_row.iter().sum::<f64>().max(floor);
    shares
        .iter()
        .map(|r| per_row[r.clone()].iter().sum::<f64>().max(floor) / total)
        .collect()
}

/// What every step of a run shares.
struct Step<'a> {
    stage: Stage,
    cfg: &'a StageConfig,
    pos_weight: &'a [f32],
    precision: Precision,
    /// Decayed and plain parameters.
    ids: (&'a [ParamId], &'a [ParamId]),
}

impl Step<'_> {
    /// The loss of `model` on a batch `x` with labels `hb.y`/`hb.known` and token drop `plan`.
    fn loss<B: AutodiffBackend>(
        &self,
        model: &Eknet<B>,
        x: Tensor<B, 3>,
        hb: &HostBatch,
        plan: &DropPlan,
    ) -> Tensor<B, 1> {
        match self.stage {
            Stage::Pretrain => pretrain_loss(model, x, plan, self.cfg.model.loss_on).0,
            Stage::Classify => {
                classify_loss(model, x, &hb.y, &hb.known, self.pos_weight, Some(plan)).0
            }
        }
    }
}

/// One data-parallel step's loss value and summed gradients (on the first device): see
/// [`train_on`].
fn data_parallel_gradients<B: AutodiffBackend>(
    model: &Eknet<B>,
    devices: &[B::Device],
    step: &Step,
    hb: &HostBatch,
    plan: &DropPlan,
) -> Result<(f64, GradientsParams, GradientsParams)> {
    let b = hb.x.len() / WINDOW_VALUES;
    let k = step.pos_weight.len();
    let shares = split_rows(b, devices.len());
    let factors = share_factors(step.stage, step.cfg, hb, step.pos_weight, plan, b, &shares);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .iter()
            .zip(&factors)
            .zip(devices)
            .map(|((rows, &factor), dev)| {
                // A fork is a fresh autodiff leaf per parameter (same ids): each replica has its
                // own graph, so the devices do not share one.
                let replica = model.clone().fork(dev);
                let share = HostBatch {
                    x: hb.x[rows.start * WINDOW_VALUES..rows.end * WINDOW_VALUES].to_vec(),
                    y: slice_rows(&hb.y, k, rows),
                    known: slice_rows(&hb.known, k, rows),
                };
                let share_plan = plan.rows(rows.clone());
                scope.spawn(move || {
                    let mut share = share;
                    let x = to_tensor::<B>(std::mem::take(&mut share.x), rows.len(), dev);
                    let work = working_copy(&replica, step.precision);
                    let loss = step.loss(&work, x, &share, &share_plan).mul_scalar(factor);
                    share_gradients(&replica, loss, step.ids)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join())
            .collect::<std::result::Result<Vec<_>, _>>()
    })
    .map_err(|_| anyhow::anyhow!("a data-parallel training worker panicked"))?;
    let main = &devices[0];
    let mut decay = GradientsAccumulator::<Eknet<B>>::new();
    let mut plain = GradientsAccumulator::<Eknet<B>>::new();
    let mut value = 0.0;
    for (v, g_decay, g_plain) in results {
        value += v;
        decay.accumulate::<B>(model, g_decay.to_device::<B, _>(main, model));
        plain.accumulate::<B>(model, g_plain.to_device::<B, _>(main, model));
    }
    Ok((value, decay.grads(), plain.grads()))
}

/// Rows `rows` of a row-major `[b, k]` table (empty tables stay empty).
fn slice_rows(v: &[f32], k: usize, rows: &std::ops::Range<usize>) -> Vec<f32> {
    if v.is_empty() {
        return Vec::new();
    }
    v[rows.start * k..rows.end * k].to_vec()
}

fn write_history(run: &Path, state: &TrainState) -> Result<()> {
    let mut w = csv::Writer::from_path(run.join("history.csv"))?;
    w.write_record([
        "epoch",
        "train_loss",
        "val_loss",
        "val_macro_auc",
        "val_r2",
        "lr",
        "seconds",
    ])?;
    for h in &state.history {
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        w.write_record([
            h.epoch.to_string(),
            h.train_loss.to_string(),
            opt(h.val_loss),
            opt(h.val_macro_auc),
            opt(h.val_r2),
            h.lr.to_string(),
            h.seconds.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Each row of `p(present)` from logits `[b, K, 2]`, as host vectors.
fn score_rows<B: Backend>(logits: Tensor<B, 3>) -> Vec<Vec<f32>> {
    let k = logits.dims()[1];
    let s = scores(logits)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default();
    s.chunks(k.max(1)).map(<[f32]>::to_vec).collect()
}

/// Scores `[record][class]` of a stage-2 model on each record's first window, in batches.
pub fn predict<B: Backend>(
    model: &Eknet<B>,
    cache: &RecordCache,
    batch: usize,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let records: Vec<usize> = (0..cache.record_count()).collect();
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(batch.max(1)) {
        let hb = gather_batch(cache, chunk);
        let logits = model
            .forward(to_tensor::<B>(hb.x, chunk.len(), device), None)
            .logits
            .expect("stage-2 model");
        out.extend(score_rows(logits));
    }
    out
}

/// Macro AUC over the classes that have both outcomes among the records whose label is known.
pub fn macro_auc_known(scores: &[Vec<f32>], labels: &[Vec<bool>], known: &[Vec<bool>]) -> f64 {
    let k = scores.first().map_or(0, Vec::len);
    let aucs: Vec<f64> = (0..k)
        .filter_map(|c| {
            let rows: Vec<usize> = (0..scores.len()).filter(|&r| known[r][c]).collect();
            let s: Vec<f32> = rows.iter().map(|&r| scores[r][c]).collect();
            let l: Vec<bool> = rows.iter().map(|&r| labels[r][c]).collect();
            roc_auc(&s, &l)
        })
        .collect();
    if aucs.is_empty() {
        f64::NAN
    } else {
        aucs.iter().sum::<f64>() / aucs.len() as f64
    }
}

/// One validation pass.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Loss (stage 1: MSE; stage 2: the training loss without drop).
    pub loss: f64,
    /// Stage 1: `1 - MSE / E[x^2]`.
    pub r2: Option<f64>,
    /// Stage 2: macro AUC over known labels.
    pub macro_auc: Option<f64>,
}

fn validate_epoch<B: Backend>(
    model: &Eknet<B>,
    splits: &Splits,
    stage: Stage,
    cfg: &StageConfig,
    groups: &[Vec<usize>],
    pos_weight: &[f32],
) -> Result<Validation> {
    let device = model.queries.val().device();
    let batch = cfg.optim.batch_size.max(1);
    let records: Vec<usize> = (0..splits.val.record_count()).collect();
    // Stage 1 validates with the training drop ratio (as the release), from a fixed seed so
    // every validation sees the same drops.
    let mut rng = Rng::new(seed_for(cfg.optim.seed, 0, 2));
    let (mut loss_sum, mut energy_sum) = (0.0, 0.0);
    let mut all_scores: Vec<Vec<f32>> = Vec::new();
    let mut all_labels: Vec<Vec<bool>> = Vec::new();
    let mut all_known: Vec<Vec<bool>> = Vec::new();
    for chunk in records.chunks(batch) {
        let hb = gather_batch(&splits.val, chunk);
        let b = chunk.len();
        let x = to_tensor::<B>(hb.x, b, &device);
        let loss = match stage {
            Stage::Pretrain => {
                let plan = DropPlan::draw(groups, b, cfg.input.mask_ratio, &mut rng);
                let (loss, energy) = pretrain_loss(model, x, &plan, cfg.model.loss_on);
                energy_sum += energy.into_scalar().elem::<f64>() * b as f64;
                loss
            }
            Stage::Classify => {
                let (loss, logits) = classify_loss(model, x, &hb.y, &hb.known, pos_weight, None);
                let k = logits.dims()[1];
                all_scores.extend(score_rows(logits));
                all_labels.extend(hb.y.chunks(k).map(|c| c.iter().map(|&v| v > 0.5).collect()));
                all_known.extend(
                    hb.known
                        .chunks(k)
                        .map(|c| c.iter().map(|&v| v > 0.5).collect()),
                );
                loss
            }
        };
        loss_sum += loss.into_scalar().elem::<f64>() * b as f64;
    }
    let n = records.len().max(1) as f64;
    let loss = loss_sum / n;
    Ok(match stage {
        Stage::Pretrain => Validation {
            loss,
            r2: Some(1.0 - loss_sum / energy_sum.max(1e-12)),
            macro_auc: None,
        },
        Stage::Classify => Validation {
            loss,
            r2: None,
            macro_auc: Some(macro_auc_known(&all_scores, &all_labels, &all_known)),
        },
    })
}
