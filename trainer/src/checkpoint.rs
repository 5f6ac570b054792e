//! Checkpoints: a folder holding the model weights, both optimisers' state, the training state
//! (epoch, step, history) and the config, written to a temporary folder (`NAME.part`), synced, and
//! renamed into place, the old one moved aside (`NAME.old`) first and removed only after, so a kill
//! or a power cut at any moment leaves a whole checkpoint under the name or beside it. Also the
//! name-by-name tensor copy that starts stage 2 from stage 1.

use crate::model::Eknet;
use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Syncs every file in `dir` and the folder itself.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_file() {
            std::fs::File::open(&p)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

/// The folder beside `dir` a checkpoint is written into before it takes the name.
pub fn part_dir(dir: &Path) -> PathBuf {
    dir.with_extension("part")
}

/// The folder beside `dir` the previous checkpoint is moved to while the new one takes the name.
pub fn old_dir(dir: &Path) -> PathBuf {
    dir.with_extension("old")
}

/// Moves a finished checkpoint written in `part_dir(dir)` to `dir`: syncs its files, moves the
/// previous one aside, renames the new one in, syncs the folder, and only then removes the old.
pub fn swap_in(dir: &Path) -> Result<()> {
    let part = part_dir(dir);
    let old = old_dir(dir);
    sync_tree(&part).with_context(|| format!("syncing {}", part.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(&part, dir)
        .with_context(|| format!("moving checkpoint into {}", dir.display()))?;
    sync_parent(dir).with_context(|| format!("syncing the folder of {}", dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// What `--resume` finds at a checkpoint's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeFrom {
    /// A whole checkpoint at the name.
    Checkpoint,
    /// No checkpoint at all: training starts from the beginning.
    Nothing,
}

/// Checks what `--resume` can continue from at `dir` (the run's `last`). A kill between the two
/// renames of [`swap_in`] leaves the previous checkpoint whole at `NAME.old`: it is put back (the
/// epoch after it runs again). A checkpoint folder without its training state, or only a
/// `NAME.part` (killed while the first checkpoint was written), is refused with the reason.
pub fn prepare_resume(dir: &Path) -> Result<ResumeFrom> {
    let whole = |d: &Path| d.join("state.json").is_file() && d.join("model.mpk").is_file();
    if whole(dir) {
        return Ok(ResumeFrom::Checkpoint);
    }
    if dir.exists() {
        anyhow::bail!(
            "cannot resume: {} is not a whole checkpoint (no state.json or model.mpk); remove it to start over",
            dir.display()
        );
    }
    let old = old_dir(dir);
    if whole(&old) {
        std::fs::rename(&old, dir)
            .with_context(|| format!("restoring {} from {}", dir.display(), old.display()))?;
        eprintln!(
            "resume: the run was stopped while a checkpoint was being replaced; continuing from the previous one ({})",
            old.display()
        );
        return Ok(ResumeFrom::Checkpoint);
    }
    let part = part_dir(dir);
    if part.exists() {
        anyhow::bail!(
            "cannot resume: only a partial checkpoint exists ({}: the run was stopped while writing it); remove it to start over",
            part.display()
        );
    }
    Ok(ResumeFrom::Nothing)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_checkpoint(dir: &Path, tag: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("model.mpk"), tag).unwrap();
        std::fs::write(dir.join("state.json"), tag).unwrap();
    }

    fn tag(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("model.mpk")).unwrap()
    }

    #[test]
    fn a_new_checkpoint_replaces_the_old_without_leaving_either_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let last = tmp.path().join("last");
        write_checkpoint(&part_dir(&last), "epoch 1");
        swap_in(&last).unwrap();
        assert_eq!(tag(&last), "epoch 1");
        write_checkpoint(&part_dir(&last), "epoch 2");
        swap_in(&last).unwrap();
        assert_eq!(tag(&last), "epoch 2");
        assert!(!part_dir(&last).exists() && !old_dir(&last).exists());
        assert_eq!(prepare_resume(&last).unwrap(), ResumeFrom::Checkpoint);
    }

    #[test]
    fn resume_puts_back_the_previous_checkpoint_after_a_kill_between_the_renames() {
        let tmp = tempfile::tempdir().unwrap();
        let last = tmp.path().join("last");
        // Killed after `last` was moved aside, before the new one took the name.
        write_checkpoint(&old_dir(&last), "epoch 4");
        write_checkpoint(&part_dir(&last), "epoch 5");
        assert_eq!(prepare_resume(&last).unwrap(), ResumeFrom::Checkpoint);
        assert_eq!(tag(&last), "epoch 4");
        assert!(!old_dir(&last).exists());
    }

    #[test]
    fn resume_refuses_a_partial_checkpoint_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let last = tmp.path().join("last");
        assert_eq!(prepare_resume(&last).unwrap(), ResumeFrom::Nothing);
        // Killed while the first checkpoint was written.
        std::fs::create_dir_all(part_dir(&last)).unwrap();
        std::fs::write(part_dir(&last).join("model.mpk"), "half").unwrap();
        let e = prepare_resume(&last).unwrap_err().to_string();
        assert!(e.contains("only a partial checkpoint exists"), "{e}");
        assert!(e.contains("last.part"), "{e}");
        // A folder under the name without its training state.
        std::fs::create_dir_all(&last).unwrap();
        std::fs::write(last.join("model.mpk"), "x").unwrap();
        let e = prepare_resume(&last).unwrap_err().to_string();
        assert!(e.contains("not a whole checkpoint"), "{e}");
    }
}
