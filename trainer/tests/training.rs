//! Training on CPU: a tiny model learns a synthetic task with a known answer; stage 1 rebuilds
//! dropped tokens of held-out records (R^2 well above 0, and `evaluate` agrees); resuming after a
//! stop gives the same run as not stopping; stage 2 starts from stage 1's tensors bit for bit; a
//! CUDA request without CUDA is a clear error.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use eknet_trainer::checkpoint::{copy_matching, dump};
use eknet_trainer::device::CpuTrain;
use eknet_trainer::metrics::roc_auc;
use eknet_trainer::model::{Eknet, EknetConfig, Stage};
use eknet_trainer::train::{TrainOptions, load_pretrained_dump, open_splits, predict, train};
use std::process::Command;

fn quiet() -> TrainOptions {
    TrainOptions {
        quiet: true,
        ..TrainOptions::default()
    }
}

#[test]
fn a_tiny_model_learns_a_known_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 150, 11);
    let (cfg, _) = common::tiny_config(
        "classification",
        tmp.path(),
        &data,
        2,
        16,
        &[
            ("LR_INITIAL: 0.0005", "LR_INITIAL: 0.003"),
            ("MASK_RATIO: 0.65", "MASK_RATIO: 0.3"),
        ],
    );
    let out = train::<CpuTrain>(&cfg, Stage::Classify, &quiet(), &Default::default()).unwrap();
    let h = &out.state.history;
    assert_eq!(h.len(), 16);
    assert!(
        h.last().unwrap().train_loss < 0.5 * h[0].train_loss,
        "loss falls: {h:?}"
    );
    // AUC of each class on the validation records, from the best checkpoint.
    let mcfg = EknetConfig::from_stage(&cfg);
    let dev = Default::default();
    let model = burn::module::Module::load_file(
        Eknet::<eknet_trainer::device::Cpu>::new(&mcfg, &dev),
        out.run_dir.join("best/model"),
        &eknet_trainer::checkpoint::recorder(),
        &dev,
    )
    .unwrap();
    let splits = open_splits(&cfg, None).unwrap();
    let scores = predict(&model, &splits.val, 16, &dev);
    for k in 0..2 {
        let s: Vec<f32> = scores.iter().map(|r| r[k]).collect();
        let l: Vec<bool> = splits.val.index.labels.iter().map(|r| r[k] > 0).collect();
        let auc = roc_auc(&s, &l).unwrap();
        assert!(auc > 0.95, "class {} AUC {auc}", splits.classes[k]);
    }
}

/// Stage 1 must infer what it did not see: on beat trains that every lead records at once (lead
/// amplitudes differ), a dropped token is what the other leads show at that moment, scaled. The
/// token decoder, with the loss on dropped samples only, has to rebuild them: held-out R^2 over
/// dropped samples well above 0 (0 is predicting zeros; the seed's lead-query head stays there).
#[test]
fn stage_one_rebuilds_dropped_tokens_from_the_other_leads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::rhythm(&data, 96, 5);
    let (cfg, _) = common::tiny_config(
        "self_learning",
        tmp.path(),
        &data,
        2,
        STAGE_ONE_EPOCHS,
        &[
            ("LR_INITIAL: 0.0005", "LR_INITIAL: 0.003"),
            ("BATCH_SIZE: 16", "BATCH_SIZE: 4"),
            ("MASK_RATIO: 0.85", "MASK_RATIO: 0.5"),
            ("normalize_before: False", "normalize_before: True"),
            (
                "loss_on: 'all' # all (release) or masked",
                "loss_on: 'masked'\n  stage1_head: 'tokens'",
            ),
        ],
    );
    let out = train::<CpuTrain>(&cfg, Stage::Pretrain, &quiet(), &Default::default()).unwrap();
    let r2: Vec<f64> = out.state.history.iter().filter_map(|h| h.val_r2).collect();
    assert_eq!(r2.len(), STAGE_ONE_EPOCHS);
    let best = r2.iter().copied().fold(f64::MIN, f64::max);
    eprintln!("stage-1 held-out R^2 by epoch: {r2:?}");
    assert!(
        best > 0.5,
        "held-out R^2 over dropped samples by epoch: {r2:?}"
    );
    // `evaluate` on the best checkpoint redraws validation's drops from the same seed: the same
    // R^2 as training saw.
    let report = eknet_trainer::stage1_eval::run::<eknet_trainer::device::Cpu>(
        &out.run_dir.join("best"),
        eknet_trainer::evaluate::EvalSplit::Val,
        &tmp.path().join("eval"),
        50,
        &Default::default(),
    )
    .unwrap();
    assert!(
        (report.r2_dropped.value - best).abs() < 1e-3,
        "evaluate {} vs training {best}",
        report.r2_dropped.value
    );
    assert!(report.r2_dropped.low <= report.r2_dropped.value);
    assert!(report.r2_dropped.value <= report.r2_dropped.high);
    assert_eq!(report.r2_dropped_by_lead.len(), 12);
    assert!(tmp.path().join("eval/metrics.json").exists());
}

const STAGE_ONE_EPOCHS: usize = 30;

#[test]
fn resuming_after_a_stop_gives_the_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 48, 3);
    let dir_a = tmp.path().join("a");
    let dir_b = tmp.path().join("b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (cfg_a, _) = common::tiny_config("self_learning", &dir_a, &data, 2, 3, &[]);
    let (cfg_b, _) = common::tiny_config("self_learning", &dir_b, &data, 2, 3, &[]);
    let straight =
        train::<CpuTrain>(&cfg_a, Stage::Pretrain, &quiet(), &Default::default()).unwrap();
    let first = train::<CpuTrain>(
        &cfg_b,
        Stage::Pretrain,
        &TrainOptions {
            stop_after: Some(1),
            ..quiet()
        },
        &Default::default(),
    )
    .unwrap();
    assert_eq!(first.state.epochs_done, 1);
    let resumed = train::<CpuTrain>(
        &cfg_b,
        Stage::Pretrain,
        &TrainOptions {
            resume: true,
            ..quiet()
        },
        &Default::default(),
    )
    .unwrap();
    assert_eq!(resumed.state.epochs_done, 3);
    let losses = |s: &eknet_trainer::checkpoint::TrainState| {
        s.history
            .iter()
            .map(|e| (e.train_loss, e.val_loss))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        losses(&straight.state),
        losses(&resumed.state),
        "same seed, same losses, stop or not"
    );
    let a = load_pretrained_dump(&straight.run_dir.join("last")).unwrap();
    let b = load_pretrained_dump(&resumed.run_dir.join("last")).unwrap();
    for (name, (_, shape, values)) in &a.tensors {
        assert_eq!(
            (shape, values),
            (&b.tensors[name].1, &b.tensors[name].2),
            "{name}"
        );
    }
}

#[test]
fn stage_two_starts_from_stage_one_tensors_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 30, 5);
    let (cfg1, _) = common::tiny_config("self_learning", tmp.path(), &data, 2, 1, &[]);
    let stage1 = train::<CpuTrain>(&cfg1, Stage::Pretrain, &quiet(), &Default::default()).unwrap();
    let source = load_pretrained_dump(&stage1.run_dir.join("last")).unwrap();
    let last = stage1.run_dir.join("last");
    let (cfg2, _) = common::tiny_config(
        "classification",
        tmp.path(),
        &data,
        2,
        1,
        &[
            ("Using_Pertrain: False", "Using_Pertrain: True"),
            (
                "\"model_outputs/EKnet_self_learning_small/last\"",
                &format!("\"{}\"", last.display()),
            ),
        ],
    );
    let dev = Default::default();
    let fresh = Eknet::<eknet_trainer::device::Cpu>::new(&EknetConfig::from_stage(&cfg2), &dev);
    let (copied, report) = copy_matching(fresh, &source);
    let after = dump(&copied, true);
    assert!(report.copied.len() > 20, "{report:?}");
    for name in &report.copied {
        assert_eq!(
            after.tensors[name].2, source.tensors[name].2,
            "{name} copied bit for bit"
        );
    }
    for must in [
        "embed.patch_embed.weight",
        "embed.k_lead",
        "embed.k_time",
        "encoder.0.attn.query.weight",
        "knowledge_cross.0.fc2.bias",
    ] {
        assert!(report.copied.iter().any(|c| c == must), "{must} copied");
    }
    let mut skipped: Vec<&str> = report.skipped.iter().map(|(n, _)| n.as_str()).collect();
    skipped.sort();
    // 15 slot queries vs 2 class queries differ in shape; the class heads do not exist in stage 1.
    assert_eq!(skipped, ["class_bias", "class_weight", "queries"]);
    assert!(report.unused.iter().any(|u| u.starts_with("recon_slot")));
    // And the training command does the same copy before its first step.
    let out = train::<CpuTrain>(
        &cfg2,
        Stage::Classify,
        &TrainOptions {
            stop_after: Some(1),
            ..quiet()
        },
        &Default::default(),
    )
    .unwrap();
    assert_eq!(out.copy.unwrap().copied, report.copied);
}

#[test]
fn cuda_without_cuda_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 6, 1);
    let (_, path) = common::tiny_config("self_learning", tmp.path(), &data, 2, 1, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_eknet-train"))
        .args(["pretrain", "--device", "cuda:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CUDA") && !err.contains("panicked"), "{err}");
}

#[test]
fn evaluate_and_export_refuse_a_checkpoint_whose_classes_are_in_another_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 24, 9);
    let (cfg, _) = common::tiny_config("classification", tmp.path(), &data, 2, 1, &[]);
    let out = train::<CpuTrain>(&cfg, Stage::Classify, &quiet(), &Default::default()).unwrap();
    let ckpt = out.run_dir.join("last");
    // The split's distribution file now lists the classes the other way round.
    let dist = data.join("k0_distribution.csv");
    let text = std::fs::read_to_string(&dist).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let (a, b) = (lines[1].clone(), lines[2].clone());
    lines[1] = format!("0,{}", b.split_once(',').unwrap().1);
    lines[2] = format!("1,{}", a.split_once(',').unwrap().1);
    std::fs::write(&dist, lines.join("\n") + "\n").unwrap();
    let e = eknet_trainer::evaluate::run::<eknet_trainer::device::Cpu>(
        &ckpt,
        eknet_trainer::evaluate::EvalSplit::Val,
        &tmp.path().join("eval"),
        10,
        &Default::default(),
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("[\"SINE\", \"SHIFT\"]") && msg.contains("[\"SHIFT\", \"SINE\"]"),
        "{msg}"
    );
    let e = eknet_trainer::export::export(&eknet_trainer::export::ExportOptions {
        checkpoint: ckpt.clone(),
        calibration: data.join("k0_train.csv"),
        calibration_windows: 4,
        out: tmp.path().join("m.eknet"),
        command: "test".into(),
        reproduce: None,
        tables: None,
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("not the split's"), "{e:#}");
    assert!(!tmp.path().join("m.eknet").exists());
}

#[test]
fn two_builders_of_one_cache_take_turns_and_a_damaged_cache_is_rebuilt() {
    use eknet_trainer::data::cache::{RecordCache, checksum};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 24, 5);
    let classes = vec!["SINE".to_string(), "SHIFT".to_string()];
    let cache_dir = tmp.path().join("cache");
    let open = || {
        RecordCache::open_or_build(
            &data.join("k0_train.csv"),
            &data,
            &classes,
            &cache_dir,
            "k0_train",
        )
        .unwrap()
    };
    // Two builders at once (threads open the lock file separately, as two processes would).
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(open);
        let b = s.spawn(open);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.index, b.index);
    assert_eq!(a.record_count(), 16);
    let data_file = cache_dir.join("k0_train.records.f32");
    let bytes = std::fs::read(&data_file).unwrap();
    assert_eq!(checksum(&bytes), a.index.data_checksum);
    assert_eq!(a.leads_10s(3, 0), b.leads_10s(3, 0));
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let want = a.leads_10s(5, 0);
    drop((a, b));
    // Damage the data file (same length): its checksum no longer matches, so it is rebuilt.
    let mut damaged = bytes.clone();
    damaged[4000] ^= 0x40;
    std::fs::write(&data_file, &damaged).unwrap();
    let c = open();
    assert_eq!(c.leads_10s(5, 0), want);
    assert_eq!(std::fs::read(&data_file).unwrap(), bytes);
}
