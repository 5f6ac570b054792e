//! `eknet-train evaluate` on a stage-1 checkpoint: how well it rebuilds held-out records. Each
//! record drops the stage's share of tokens (the same seeded draws as training's validation), and
//! R^2 = 1 - squared error / energy is reported over the dropped samples (what the model had to
//! infer) and over every sample, overall with a bootstrap 95 % interval over records and per lead.
//! 0 is no better than predicting zeros.

use crate::data::cache::RecordCache;
use crate::evaluate::{EvalSplit, open_checkpoint, open_test_windows};
use crate::metrics::{Interval, bootstrap_rows, percentile_interval};
use crate::model::{DropPlan, Eknet, Stage, token_groups};
use crate::rng::Rng;
use crate::train::{gather_batch, open_splits, seed_for, to_tensor};
use anyhow::Result;
use burn::prelude::*;
use eknet_shared::Lead;
use eknet_shared::config::StageConfig;
use eknet_shared::layout::{
    LEAD_ROWS, PATCH_SAMPLES, SLOT_COUNT, SLOT_SAMPLES, SLOTS, TOKEN_COUNT,
};
use serde::Serialize;
use std::path::Path;

/// A stage-1 evaluation, as written to `metrics.json`.
#[derive(Debug, Serialize)]
pub struct Stage1Report {
    /// Checkpoint evaluated.
    pub checkpoint: String,
    /// Split reported.
    pub split: String,
    /// Records (one 10 s window each).
    pub records: usize,
    /// Share of tokens dropped per group.
    pub mask_ratio: f64,
    /// R^2 over the dropped samples, with its bootstrap interval over records.
    pub r2_dropped: Interval,
    /// R^2 over every sample (dropped and kept).
    pub r2_all: Interval,
    /// Per lead (I, II, ... V6): R^2 over its dropped samples.
    pub r2_dropped_by_lead: Vec<(String, f64)>,
    /// Bootstrap resamples.
    pub bootstrap_resamples: usize,
}

/// Squared error and energy of one record: over dropped samples and over all, per lead row.
#[derive(Debug, Clone, Default)]
struct Sums {
    err_dropped: [f64; LEAD_ROWS],
    energy_dropped: [f64; LEAD_ROWS],
    err_all: f64,
    energy_all: f64,
}

impl Sums {
    fn dropped(&self) -> (f64, f64) {
        (
            self.err_dropped.iter().sum(),
            self.energy_dropped.iter().sum(),
        )
    }
}

fn r2(err: f64, energy: f64) -> f64 {
    1.0 - err / energy.max(1e-12)
}

/// R^2 over the rows `rows` of `sums`, dropped samples (`dropped`) or all.
fn r2_over(sums: &[Sums], rows: &[usize], dropped: bool) -> f64 {
    let (mut e, mut n) = (0.0, 0.0);
    for &r in rows {
        let (a, b) = if dropped {
            sums[r].dropped()
        } else {
            (sums[r].err_all, sums[r].energy_all)
        };
        e += a;
        n += b;
    }
    r2(e, n)
}

/// Rebuilds every record of `cache` with the drops a seeded generator draws, batch by batch.
fn rebuild_sums<B: Backend>(
    model: &Eknet<B>,
    cache: &RecordCache,
    cfg: &StageConfig,
    device: &B::Device,
) -> Vec<Sums> {
    let groups = token_groups(cfg.model.lead_split);
    let batch = cfg.optim.batch_size.clamp(1, 64);
    let mut rng = Rng::new(seed_for(cfg.optim.seed, 0, 2));
    let records: Vec<usize> = (0..cache.record_count()).collect();
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(batch) {
        let b = chunk.len();
        let hb = gather_batch(cache, chunk);
        let plan = DropPlan::draw(&groups, b, cfg.input.mask_ratio, &mut rng);
        let dropped = plan.dropped_mask(b);
        let x = hb.x.clone();
        let rec = model
            .forward(to_tensor::<B>(hb.x, b, device), Some(&plan))
            .reconstruction
            .map(|r| r.into_data().to_vec::<f32>().unwrap_or_default())
            .unwrap_or_default();
        for s in 0..b {
            let mut sums = Sums::default();
            for (slot, spec) in SLOTS.iter().enumerate() {
                let row = spec.lead.row();
                for i in 0..SLOT_SAMPLES {
                    let at = (s * SLOT_COUNT + slot) * SLOT_SAMPLES + i;
                    let (v, p) = (
                        f64::from(x[at]),
                        f64::from(rec.get(at).copied().unwrap_or(0.0)),
                    );
                    let (err, energy) = ((p - v) * (p - v), v * v);
                    sums.err_all += err;
                    sums.energy_all += energy;
                    let token = slot * (SLOT_SAMPLES / PATCH_SAMPLES) + i / PATCH_SAMPLES;
                    if dropped[s * TOKEN_COUNT + token] > 0.5 {
                        sums.err_dropped[row] += err;
                        sums.energy_dropped[row] += energy;
                    }
                }
            }
            out.push(sums);
        }
    }
    out
}

/// Evaluates the stage-1 checkpoint in `dir` on `split`, writing `metrics.json` to `out`.
pub fn run<B: Backend>(
    dir: &Path,
    split: EvalSplit,
    out: &Path,
    resamples: usize,
    device: &B::Device,
) -> Result<Stage1Report> {
    let (cfg, model) = open_checkpoint::<B>(dir, Stage::Pretrain, device)?;
    let splits = open_splits(&cfg, None)?;
    let test_cache;
    let cache = match split {
        EvalSplit::Val => &splits.val,
        EvalSplit::Test => {
            test_cache = open_test_windows(&cfg, &splits.classes)?;
            &test_cache
        }
    };
    let sums = rebuild_sums(&model, cache, &cfg, device);
    let all: Vec<usize> = (0..sums.len()).collect();
    let boot = bootstrap_rows(sums.len(), resamples, cfg.optim.seed);
    let interval = |dropped: bool| {
        percentile_interval(
            r2_over(&sums, &all, dropped),
            boot.iter()
                .map(|rows| r2_over(&sums, rows, dropped))
                .collect(),
        )
    };
    let by_lead = Lead::ALL
        .iter()
        .map(|lead| {
            let row = lead.row();
            let (e, n) = sums.iter().fold((0.0, 0.0), |(e, n), s| {
                (e + s.err_dropped[row], n + s.energy_dropped[row])
            });
            (lead.name().to_string(), r2(e, n))
        })
        .collect();
    let report = Stage1Report {
        checkpoint: dir.display().to_string(),
        split: format!("{split:?}").to_lowercase(),
        records: sums.len(),
        mask_ratio: cfg.input.mask_ratio,
        r2_dropped: interval(true),
        r2_all: interval(false),
        r2_dropped_by_lead: by_lead,
        bootstrap_resamples: resamples,
    };
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r2_pools_error_and_energy_over_the_chosen_records() {
        let mut a = Sums::default();
        a.err_dropped[0] = 1.0;
        a.energy_dropped[0] = 4.0;
        a.err_all = 1.0;
        a.energy_all = 10.0;
        let mut b = Sums::default();
        b.err_dropped[6] = 3.0;
        b.energy_dropped[6] = 4.0;
        b.err_all = 3.0;
        b.energy_all = 10.0;
        let sums = vec![a, b];
        assert!((r2_over(&sums, &[0, 1], true) - 0.5).abs() < 1e-12);
        assert!((r2_over(&sums, &[0, 1], false) - 0.8).abs() < 1e-12);
        assert!((r2_over(&sums, &[0, 0], true) - 0.75).abs() < 1e-12);
        // Predicting zeros: error equals energy.
        assert_eq!(r2(2.5, 2.5), 0.0);
    }
}
