//! Checkpoints: a folder holding the model weights, both optimisers' state, the training state
//! (epoch, step, history) and the config, written to a temporary folder and renamed into place
//! so a kill never leaves a half-written checkpoint under a checkpoint's name. Also the
//! name-by-name tensor copy that starts stage 2 from stage 1.

use crate::model::Eknet;
use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The recorder used for every file: full precision, named MessagePack.
pub fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

/// One epoch's row of the training history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss, when validated.
    pub val_loss: Option<f64>,
    /// Validation macro AUC (stage 2), when validated.
    pub val_macro_auc: Option<f64>,
    /// Validation R^2 = 1 - MSE / E[x^2] (stage 1), when validated.
    #[serde(default)]
    pub val_r2: Option<f64>,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Training state saved beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Best validation score so far, lower is better: stage 1 the validation loss, stage 2 the
    /// negated validation macro AUC.
    pub best_val_loss: Option<f64>,
    /// Class names in output order (stage 2).
    pub classes: Vec<String>,
    /// Every epoch so far.
    pub history: Vec<EpochLog>,
}

/// Reads a checkpoint's training state.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Full path (`encoder.0.attn.query.weight`) of every float parameter, with its id, shape and
/// values.
#[derive(Default)]
pub struct TensorDump {
    path: Vec<String>,
    /// Path to (id, shape, values).
    pub tensors: BTreeMap<String, (burn::module::ParamId, Vec<usize>, Vec<f32>)>,
    /// Read values too (else only ids and shapes).
    pub with_values: bool,
}

impl<B: Backend> ModuleVisitor<B> for TensorDump {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = if self.with_values {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.tensors
            .insert(self.path.join("."), (param.id, shape, values));
    }
}

/// Dumps a module's float parameters.
pub fn dump<B: Backend, M: Module<B>>(module: &M, with_values: bool) -> TensorDump {
    let mut d = TensorDump {
        with_values,
        ..TensorDump::default()
    };
    module.visit(&mut d);
    d
}

struct CopyByName<'a> {
    path: Vec<String>,
    source: &'a BTreeMap<String, (burn::module::ParamId, Vec<usize>, Vec<f32>)>,
    copied: Vec<String>,
    skipped: Vec<(String, String)>,
}

impl<B: Backend> ModuleMapper<B> for CopyByName<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.join(".");
        let shape = param.val().dims().to_vec();
        match self.source.get(&name) {
            Some((_, s, values)) if *s == shape => {
                self.copied.push(name);
                let values = values.clone();
                param.map(|t| {
                    let grad = t.is_require_grad();
                    let n = Tensor::<B, D>::from_data(TensorData::new(values, shape), &t.device());
                    if grad { n.require_grad() } else { n }
                })
            }
            Some((_, s, _)) => {
                self.skipped
                    .push((name, format!("shape {s:?} in stage 1, {shape:?} here")));
                param
            }
            None => {
                self.skipped.push((name, "absent from stage 1".into()));
                param
            }
        }
    }
}

/// What a stage-1 to stage-2 copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Tensors copied.
    pub copied: Vec<String>,
    /// Tensors kept at their fresh initialisation, with why.
    pub skipped: Vec<(String, String)>,
    /// Stage-1 tensors with no counterpart here.
    pub unused: Vec<String>,
}

/// Copies every tensor of `source` whose name and shape match into `target`.
pub fn copy_matching<B: Backend>(target: Eknet<B>, source: &TensorDump) -> (Eknet<B>, CopyReport) {
    let mut mapper = CopyByName {
        path: Vec::new(),
        source: &source.tensors,
        copied: Vec::new(),
        skipped: Vec::new(),
    };
    let target = target.map(&mut mapper);
    let unused = source
        .tensors
        .keys()
        .filter(|k| !mapper.copied.contains(k) && !mapper.skipped.iter().any(|(s, _)| s == *k))
        .cloned()
        .collect();
    (
        target,
        CopyReport {
            copied: mapper.copied,
            skipped: mapper.skipped,
            unused,
        },
    )
}
