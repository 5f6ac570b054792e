//! Helpers for the trainer's tests: tiny configs written next to generated data, and a
//! synthetic data set whose labels are known functions of the signal.

#![allow(dead_code, clippy::unwrap_used)]

use eknet_shared::config::StageConfig;
use eknet_shared::{Lead, Record, RecordMeta, ecgzip};
use eknet_trainer::data::split::{ClassRow, SplitRow, write_distribution, write_split};
use eknet_trainer::rng::Rng;
use std::path::{Path, PathBuf};

/// The repository's configs folder.
pub fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// A tiny version of a shipped small config: D 16, one encoder block, 2 heads, one knowledge
/// layer, data and outputs under `dir`. `stage` is `self_learning` or `classification`.
pub fn tiny_config(
    stage: &str,
    dir: &Path,
    data: &Path,
    classes: usize,
    epochs: usize,
    extra: &[(&str, &str)],
) -> (StageConfig, PathBuf) {
    let src = std::fs::read_to_string(configs().join(format!("EKnet_{stage}_small.yaml"))).unwrap();
    let mut text = src
        .replace("data/prepared/", &format!("{}/", data.display()))
        .replace(
            "\"model_outputs/\"",
            &format!("\"{}/runs/\"", dir.display()),
        )
        .replace("embed_dim: 64", "embed_dim: 16")
        .replace("local_depth: 3", "local_depth: 1")
        .replace("num_head: 4", "num_head: 2")
        .replace("cls_cross_depth: 2", "cls_cross_depth: 1")
        .replace("pred_full_II_lead: True", "pred_full_II_lead: False")
        .replace("BATCH_SIZE: 32", "BATCH_SIZE: 16")
        .replace("NUM_EPOCHS: 40", &format!("NUM_EPOCHS: {epochs}"))
        .replace("VAL_EVERY: 5", "VAL_EVERY: 1")
        .replace("WARMUP_EPOCHS: 4", "WARMUP_EPOCHS: 1")
        .replace("num_classes: 18", &format!("num_classes: {classes}"))
        .replace("Using_Pertrain: True", "Using_Pertrain: False");
    for (from, to) in extra {
        assert!(text.contains(from), "fixture: {from}");
        text = text.replace(from, to);
    }
    let path = dir.join(format!("{stage}.yaml"));
    std::fs::write(&path, &text).unwrap();
    (StageConfig::load(&path).unwrap(), path)
}

/// Writes `n` synthetic 10 s records and split files under `data`. Class `SINE` is present when
/// the chest leads carry a 1 mV, 5 Hz sine; class `SHIFT` when lead II sits 1 mV above zero. Background:
/// 0.05 mV of noise on every lead. Two thirds go to training, the rest to validation.
pub fn synthetic(data: &Path, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(data.join("records")).unwrap();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let (mut counts, mut counts_train) = ([0usize; 2], [0usize; 2]);
    for i in 0..n {
        let sine = rng.below(2) == 1;
        let shift = rng.below(2) == 1;
        let leads = Lead::ALL
            .iter()
            .map(|&lead| {
                let samples = (0..5000)
                    .map(|t| {
                        let noise = (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.1;
                        let chest = matches!(
                            lead,
                            Lead::V1 | Lead::V2 | Lead::V3 | Lead::V4 | Lead::V5 | Lead::V6
                        );
                        let s = if chest && sine {
                            (2.0 * std::f32::consts::PI * 5.0 * t as f32 / 500.0).sin()
                        } else {
                            0.0
                        };
                        let d = if lead == Lead::II && shift { 1.0 } else { 0.0 };
                        noise + s + d
                    })
                    .collect();
                (lead, samples)
            })
            .collect();
        let meta = RecordMeta {
            id: format!("s{i}"),
            ..RecordMeta::default()
        };
        let r = Record::new(meta, 500.0, leads).unwrap();
        ecgzip::write(&r, &data.join(format!("records/s{i}.ecgzip"))).unwrap();
        let mut labels = Vec::new();
        if sine {
            labels.push("SINE".to_string());
        }
        if shift {
            labels.push("SHIFT".to_string());
        }
        let row = SplitRow {
            path: format!("records/s{i}"),
            labels,
            unknown: Vec::new(),
        };
        let is_train = i % 3 != 0;
        for (k, on) in [sine, shift].into_iter().enumerate() {
            if on {
                counts[k] += 1;
                if is_train {
                    counts_train[k] += 1;
                }
            }
        }
        if is_train {
            train.push(row)
        } else {
            val.push(row)
        }
    }
    write_two_class_set(data, ["SINE", "SHIFT"], &train, &val, counts, counts_train);
}

/// Writes `n` synthetic 10 s rhythm records and split files under `data` (two thirds training):
/// beats (a narrow R wave and a T wave, lead-specific amplitudes, 0.03 mV of noise) at 110 bpm for
/// class `FAST` or 50 bpm otherwise, with R-R intervals drawn from 0.6-1.4 times the mean for
/// class `IRREG` or exactly regular otherwise. Only rhythm tells the classes apart: the beats
/// look the same in every record.
pub fn rhythm(data: &Path, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(data.join("records")).unwrap();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let (mut counts, mut counts_train) = ([0usize; 2], [0usize; 2]);
    let amp: Vec<f32> = Lead::ALL
        .iter()
        .map(|l| {
            [
                0.9, 1.2, 0.3, -1.0, 0.4, 0.7, -0.8, -0.5, 0.6, 1.1, 1.3, 1.0,
            ][l.row()]
        })
        .collect();
    for i in 0..n {
        let fast = rng.below(2) == 1;
        let irregular = rng.below(2) == 1;
        let rr = if fast { 60.0 / 110.0 } else { 60.0 / 50.0 };
        let mut beats = vec![rng.unit() * rr];
        while *beats.last().unwrap() < 10.5 {
            let k = if irregular {
                rng.uniform(0.6, 1.4)
            } else {
                1.0
            };
            beats.push(beats.last().unwrap() + rr * k);
        }
        let leads = Lead::ALL
            .iter()
            .map(|&lead| {
                let a = amp[lead.row()];
                let samples = (0..5000)
                    .map(|s| {
                        let t = s as f64 / 500.0;
                        let mut v = 0.0;
                        for &b in &beats {
                            let d = t - b;
                            if d.abs() < 0.6 {
                                v += (-(d / 0.012).powi(2)).exp()
                                    + 0.25 * (-((d - 0.25) / 0.05).powi(2)).exp();
                            }
                        }
                        a * v as f32 + 0.03 * rng.normal() as f32
                    })
                    .collect();
                (lead, samples)
            })
            .collect();
        let meta = RecordMeta {
            id: format!("r{i}"),
            ..RecordMeta::default()
        };
        let r = Record::new(meta, 500.0, leads).unwrap();
        ecgzip::write(&r, &data.join(format!("records/r{i}.ecgzip"))).unwrap();
        let mut labels = Vec::new();
        if fast {
            labels.push("FAST".to_string());
        }
        if irregular {
            labels.push("IRREG".to_string());
        }
        let is_train = i % 3 != 0;
        for (k, on) in [fast, irregular].into_iter().enumerate() {
            if on {
                counts[k] += 1;
                if is_train {
                    counts_train[k] += 1;
                }
            }
        }
        let row = SplitRow {
            path: format!("records/r{i}"),
            labels,
            unknown: Vec::new(),
        };
        if is_train {
            train.push(row)
        } else {
            val.push(row)
        }
    }
    write_two_class_set(data, ["FAST", "IRREG"], &train, &val, counts, counts_train);
}

/// Writes a synthetic two-class set's training and validation splits and its class distribution.
fn write_two_class_set(
    data: &Path,
    names: [&str; 2],
    train: &[SplitRow],
    val: &[SplitRow],
    counts: [usize; 2],
    counts_train: [usize; 2],
) {
    write_split(&data.join("k0_train.csv"), train).unwrap();
    write_split(&data.join("k0_val.csv"), val).unwrap();
    let dist: Vec<ClassRow> = names
        .iter()
        .enumerate()
        .map(|(idx, name)| ClassRow {
            idx,
            name: name.to_string(),
            all: counts[idx],
            train: counts_train[idx],
            val: counts[idx] - counts_train[idx],
        })
        .collect();
    write_distribution(&data.join("k0_distribution.csv"), &dist).unwrap();
}
