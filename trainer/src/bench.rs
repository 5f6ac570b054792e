//! `eknet-train bench`: throughput in ECGs per second of stage-1 and stage-2 training steps and
//! of evaluation (stage-2 forward without drop), for any config's model size, on random inputs;
//! and of reading windows from the decoded-tensor cache, against which the step rates compare.

use crate::adamw::AdamWSettings;
use crate::data::cache::RecordCache;
use crate::model::{DropPlan, Eknet, EknetConfig, Stage, token_groups};
use crate::precision::{Precision, working_copy};
use crate::rng::Rng;
use crate::train::{classify_loss, open_splits, pretrain_loss, training_batch};
use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use eknet_shared::config::StageConfig;
use serde::Serialize;
use std::time::Instant;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// What was timed.
    pub what: String,
    /// Config it came from.
    pub config: String,
    /// Batch size.
    pub batch: usize,
    /// Median seconds per batch.
    pub median_s: f64,
    /// ECGs per second at the median.
    pub ecgs_per_s: f64,
    /// Model parameters.
    pub params: usize,
    /// Stage (1 or 2; 0 for the data path).
    pub stage: u8,
    /// The backend that ran it.
    pub backend: String,
    /// Worker threads of the CPU backend (rayon's pool).
    pub threads: usize,
    /// Arithmetic of the forward and backward (`f32`, or `bf16` mixed precision).
    pub precision: String,
    /// Training steps: median seconds of the forward pass and loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_s: Option<f64>,
    /// Training steps: median seconds of the backward pass (gradients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backward_s: Option<f64>,
    /// Training steps: median seconds of the optimiser step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer_s: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn random_batch<B: Backend>(batch: usize, device: &B::Device) -> Tensor<B, 3> {
    Tensor::random(
        [batch, 15, 1250],
        burn::tensor::Distribution::Normal(0.0, 0.5),
        device,
    )
}

/// Times `steps` training steps (after `warmup`) and, for stage 2, evaluation forwards, on
/// `backend` (its name, reported). Each step is timed whole and by phase (forward and loss,
/// backward, optimiser), the device synchronised between phases.
#[allow(clippy::too_many_arguments)]
pub fn model_throughput<B: AutodiffBackend>(
    cfg: &StageConfig,
    name: &str,
    backend: &str,
    precision: Precision,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &B::Device,
) -> Vec<Throughput> {
    let mcfg = EknetConfig::from_stage(cfg);
    let mut model = Eknet::<B>::new(&mcfg, device);
    let params = burn::module::Module::num_params(&model);
    // The optimiser training runs (stage 1's betas and decay; the cost does not depend on them).
    let mut opt = AdamWSettings {
        beta_1: 0.9,
        beta_2: 0.95,
        epsilon: 1e-8,
        weight_decay: 0.05,
    }
    .init::<B, Eknet<B>>();
    let groups = token_groups(mcfg.lead_split);
    let mut rng = Rng::new(1);
    let labels: Vec<f32> = (0..batch * mcfg.queries())
        .map(|i| (i % 2) as f32)
        .collect();
    let known = vec![1.0; labels.len()];
    let weights = vec![1.0; mcfg.queries()];
    let threads = rayon::current_num_threads();
    let (mut times, mut fwd, mut bwd, mut optim) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..warmup + steps {
        let x = random_batch::<B>(batch, device);
        let _ = B::sync(device);
        let t = Instant::now();
        let plan = DropPlan::draw(&groups, batch, cfg.input.mask_ratio, &mut rng);
        let work = working_copy(&model, precision);
        let loss = match mcfg.stage {
            Stage::Pretrain => pretrain_loss(&work, x, &plan, cfg.model.loss_on).0,
            Stage::Classify => classify_loss(&work, x, &labels, &known, &weights, Some(&plan)).0,
        };
        let _ = B::sync(device);
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let _ = B::sync(device);
        let t2 = Instant::now();
        model = opt.step(1e-4, model, grads);
        let _ = B::sync(device);
        let t3 = Instant::now();
        if i >= warmup {
            times.push((t3 - t).as_secs_f64());
            fwd.push((t1 - t).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            optim.push((t3 - t2).as_secs_f64());
        }
    }
    let (what, stage) = match mcfg.stage {
        Stage::Pretrain => ("stage 1 training step", 1),
        Stage::Classify => ("stage 2 training step", 2),
    };
    let m = median(times);
    let mut out = vec![Throughput {
        what: what.into(),
        config: name.into(),
        batch,
        median_s: m,
        ecgs_per_s: batch as f64 / m,
        params,
        stage,
        backend: backend.into(),
        threads,
        precision: precision.to_string(),
        forward_s: Some(median(fwd)),
        backward_s: Some(median(bwd)),
        optimizer_s: Some(median(optim)),
    }];
    if mcfg.stage == Stage::Classify {
        let inner = working_copy(&model.valid(), precision);
        let mut times = Vec::new();
        for i in 0..warmup + steps {
            let x = random_batch::<B::InnerBackend>(batch, device);
            let t = Instant::now();
            let logits = inner.forward(x, None).logits.expect("stage-2 model");
            let _ = logits.into_data();
            if i >= warmup {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let m = median(times);
        out.push(Throughput {
            what: "evaluation forward".into(),
            config: name.into(),
            batch,
            median_s: m,
            ecgs_per_s: batch as f64 / m,
            params,
            stage: 2,
            backend: backend.into(),
            threads,
            precision: precision.to_string(),
            forward_s: None,
            backward_s: None,
            optimizer_s: None,
        });
    }
    out
}

/// Times building random training batches (a random 10 s crop of each record, the config's
/// augmentation, the 3x4 layout) from a config's training cache (built if needed).
pub fn cache_throughput(
    cfg: &StageConfig,
    name: &str,
    batch: usize,
    steps: usize,
) -> Result<Throughput> {
    let splits = open_splits(cfg, None)?;
    let cache: &RecordCache = &splits.train;
    let mut rng = Rng::new(2);
    let mut times = Vec::new();
    for _ in 0..steps.max(1) {
        let records: Vec<usize> = (0..batch)
            .map(|_| rng.below(cache.record_count()))
            .collect();
        let t = Instant::now();
        let hb = training_batch(cache, &records, true, &cfg.augment, &mut rng);
        std::hint::black_box(&hb.x);
        times.push(t.elapsed().as_secs_f64());
    }
    let m = median(times);
    Ok(Throughput {
        what: "training batch (mmap, crop, augment, 3x4)".into(),
        config: name.into(),
        batch,
        median_s: m,
        ecgs_per_s: batch as f64 / m,
        params: 0,
        stage: 0,
        backend: "host".into(),
        threads: rayon::current_num_threads(),
        precision: "f32".into(),
        forward_s: None,
        backward_s: None,
        optimizer_s: None,
    })
}
