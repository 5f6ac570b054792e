//! A plain 1-D CNN baseline on the same split, recipe and metrics as EKnet, so the model card can
//! say whether EKnet's knowledge design earns its keep: the twelve leads over the whole 10 s
//! (more than the 3x4 sheet shows: every lead for 10 s, not 2.5 s) through five convolution stages
//! (each a convolution, batch norm, ReLU; strides 5, 2, 2, 2, 1: 10 s to 125 positions), global
//! average and max pooling, and a two-way head per class. Its convolutions are written as one
//! matrix product over neighbouring positions (`model::embed::conv3`), the same arithmetic as a
//! convolution, because burn's CPU convolution backward is several times slower.

use crate::checkpoint::recorder;
use crate::data::cache::{LEADS, RecordCache};
use crate::evaluate::{EvalSplit, open_test_cache};
use crate::metrics::{ClassMetrics, Predictions, Summary, best_f1_threshold, evaluate};
use crate::model::embed::conv3;
use crate::rng::Rng;
use crate::train::{
    class_weights, lr_at, macro_auc_known, masked_cross_entropy, open_splits, seed_for,
    training_crop,
};
use anyhow::{Context, Result, bail};
use burn::module::{AutodiffModule, Module};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::AutodiffBackend;
use eknet_shared::config::StageConfig;
use eknet_shared::layout::WINDOW_SAMPLES;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Samples grouped by the first stage (10 ms).
const FIRST_STRIDE: usize = 5;
/// Channels after each stage.
const WIDTHS: [usize; 5] = [32, 64, 64, 128, 128];

/// The plain CNN.
#[derive(Module, Debug)]
pub struct PlainCnn<B: Backend> {
    /// Convolution of each stage (`Linear(3 * group * c_in -> c_out)`).
    pub convs: Vec<Linear<B>>,
    /// Batch norm of each stage.
    pub norms: Vec<BatchNorm<B>>,
    /// Head: `Linear(2 * 128 -> 2K)`.
    pub head: Linear<B>,
}

impl<B: Backend> PlainCnn<B> {
    /// A fresh model for `classes` classes.
    pub fn new(classes: usize, device: &B::Device) -> Self {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut c_in = LEADS * FIRST_STRIDE;
        for (i, &w) in WIDTHS.iter().enumerate() {
            let group = if (1..4).contains(&i) { 2 } else { 1 };
            convs.push(LinearConfig::new(3 * group * c_in, w).init(device));
            norms.push(BatchNormConfig::new(w).init(device));
            c_in = w;
        }
        PlainCnn {
            convs,
            norms,
            head: LinearConfig::new(2 * c_in, 2 * classes).init(device),
        }
    }

    /// `[b, 12, 5000]` millivolts to `[b, K, 2]` logits.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, leads, n] = x.dims();
        let mut h = x
            .swap_dims(1, 2)
            .reshape([b, n / FIRST_STRIDE, FIRST_STRIDE * leads]);
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            if (1..4).contains(&i) {
                let [_, t, c] = h.dims();
                h = h.reshape([b, t / 2, 2 * c]); // stride 2
            }
            let y = conv3(h, 1, conv); // [b, t, c]
            h = relu(norm.forward(y.swap_dims(1, 2)).swap_dims(1, 2));
        }
        let [_, t, c] = h.dims();
        let pooled = Tensor::cat(
            vec![
                h.clone().mean_dim(1).reshape([b, c]),
                h.max_dim(1).reshape([b, c]),
            ],
            1,
        );
        let _ = t;
        let k = self.head.weight.dims()[1] / 2;
        self.head.forward(pooled).reshape([b, k, 2])
    }
}

/// The twelve leads of a batch, `[b, 12, 5000]`, in host memory.
fn leads_batch(leads: &[[Vec<f32>; LEADS]]) -> Vec<f32> {
    leads
        .iter()
        .flat_map(|l| l.iter().flatten().copied())
        .collect()
}

fn predict<B: Backend>(
    model: &PlainCnn<B>,
    cache: &RecordCache,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let records: Vec<usize> = (0..cache.record_count()).collect();
    let mut out = Vec::new();
    for chunk in records.chunks(32) {
        let leads: Vec<[Vec<f32>; LEADS]> = chunk.iter().map(|&r| cache.leads_10s(r, 0)).collect();
        let x = Tensor::<B, 3>::from_data(
            TensorData::new(leads_batch(&leads), [chunk.len(), LEADS, WINDOW_SAMPLES]),
            device,
        );
        let logits = model.forward(x);
        let k = logits.dims()[1];
        let p = softmax(logits, 2)
            .slice([0..chunk.len(), 0..k, 1..2])
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        out.extend(p.chunks(k.max(1)).map(<[f32]>::to_vec));
    }
    out
}

/// What `eknet-train baseline` reports.
#[derive(Debug, Serialize)]
pub struct BaselineReport {
    /// What was trained.
    pub model: String,
    /// Parameters.
    pub parameters: usize,
    /// Epoch of the best validation macro AUC (the checkpoint scored).
    pub best_epoch: usize,
    /// Validation macro AUC per epoch.
    pub history: Vec<f64>,
    /// Training seconds.
    pub seconds: f64,
    /// The split reported.
    pub split: String,
    /// Records in it.
    pub records: usize,
    /// Aggregates with bootstrap intervals.
    pub summary: Summary,
    /// Per class (thresholds fitted on validation).
    pub classes: Vec<ClassMetrics>,
}

fn bools(rows: &[Vec<u8>]) -> Vec<Vec<bool>> {
    rows.iter()
        .map(|l| l.iter().map(|&v| v > 0).collect())
        .collect()
}

/// Trains the plain CNN with a stage-2 config's split, optimiser, schedule, augmentation and
/// class weighting (`epochs` overrides NUM_EPOCHS), keeps the epoch with the best validation
/// macro AUC, and scores it on `split` like `evaluate` does. Writes `out/metrics.json` and the
/// weights.
pub fn run<B: AutodiffBackend>(
    cfg: &StageConfig,
    epochs: Option<usize>,
    split: EvalSplit,
    out: &Path,
    resamples: usize,
    device: &B::Device,
) -> Result<BaselineReport> {
    let started = Instant::now();
    let splits = open_splits(cfg, None)?;
    let o = &cfg.optim;
    let k = splits.classes.len();
    B::seed(device, o.seed);
    let mut model = PlainCnn::<B>::new(k, device);
    let parameters = model.num_params();
    let mut opt = AdamWConfig::new()
        .with_weight_decay(o.weight_decay as f32)
        .init::<B, PlainCnn<B>>();
    let pos_weight = class_weights(&splits.train, o.class_weighting);
    let n = splits.train.record_count();
    let batch = o.batch_size.min(n).max(1);
    let epochs = epochs.unwrap_or(o.num_epochs);
    let per_epoch = n.div_ceil(batch);
    let total = epochs * per_epoch;
    let warmup = (o.warmup_epochs * per_epoch).min(total);
    let val_labels = bools(&splits.val.index.labels);
    let val_known = bools(&splits.val.index.known);
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, PlainCnn<B::InnerBackend>)> = None;
    let mut step = 0;
    for epoch in 1..=epochs {
        let mut rng = Rng::new(seed_for(o.seed, epoch, 7));
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        for chunk in order.chunks(batch) {
            let leads: Vec<[Vec<f32>; LEADS]> = chunk
                .iter()
                .map(|&r| {
                    training_crop(
                        &splits.train,
                        r,
                        cfg.input.random_window,
                        &cfg.augment,
                        &mut rng,
                    )
                })
                .collect();
            let (mut y, mut known) = (Vec::new(), Vec::new());
            for &r in chunk {
                y.extend(splits.train.labels(r));
                known.extend(splits.train.known(r));
            }
            let x = Tensor::<B, 3>::from_data(
                TensorData::new(leads_batch(&leads), [chunk.len(), LEADS, WINDOW_SAMPLES]),
                device,
            );
            let loss = masked_cross_entropy(model.forward(x), &y, &known, &pos_weight);
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            if !value.is_finite() {
                bail!("baseline epoch {epoch}: training loss became {value}");
            }
            let lr = lr_at(step, total, warmup, o.lr_initial, o.lr_min);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(lr, model, grads);
            step += 1;
        }
        let valid = model.valid();
        let scores = predict(&valid, &splits.val, device);
        let auc = macro_auc_known(&scores, &val_labels, &val_known);
        println!("baseline epoch {epoch}: val macro AUC {auc:.4}");
        history.push(auc);
        if best.as_ref().is_none_or(|(b, _, _)| auc > *b) {
            best = Some((auc, epoch, valid));
        }
    }
    let Some((_, best_epoch, model)) = best else {
        bail!("the baseline trained no epoch");
    };
    let val_scores = predict(&model, &splits.val, device);
    let val_preds = Predictions {
        scores: &val_scores,
        labels: &val_labels,
        known: Some(&val_known),
    };
    let rows: Vec<usize> = (0..val_scores.len()).collect();
    let thresholds: Vec<f32> = (0..k)
        .map(|c| {
            let (s, l) = val_preds.column(c, &rows);
            best_f1_threshold(&s, &l)
        })
        .collect();
    let test_cache;
    let cache = match split {
        EvalSplit::Val => &splits.val,
        EvalSplit::Test => {
            test_cache = open_test_cache(cfg, &splits.classes)?;
            &test_cache
        }
    };
    let scores = predict(&model, cache, device);
    let labels = bools(&cache.index.labels);
    let known = bools(&cache.index.known);
    let preds = Predictions {
        scores: &scores,
        labels: &labels,
        known: Some(&known),
    };
    let (classes, summary) = evaluate(&splits.classes, &preds, &thresholds, resamples, o.seed);
    let report = BaselineReport {
        model: "plain 1-D CNN, 12 leads x 10 s".into(),
        parameters,
        best_epoch,
        history,
        seconds: started.elapsed().as_secs_f64(),
        split: format!("{split:?}").to_lowercase(),
        records: cache.record_count(),
        summary,
        classes,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    model
        .save_file(out.join("model"), &recorder())
        .context("saving the baseline's weights")?;
    Ok(report)
}

/// Where `baseline` writes by default: `MODEL_SAVE_DIR/TRY_TIME_baseline_cnn`.
pub fn default_out(cfg: &StageConfig) -> PathBuf {
    cfg.dataset
        .model_save_dir
        .join(format!("{}_baseline_cnn", cfg.try_time))
}
