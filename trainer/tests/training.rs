//! Training on CPU: a tiny model learns a synthetic task with a known answer; stage 1 rebuilds
//! dropped tokens of held-out records (R^2 well above 0, and `evaluate` agrees); resuming after a
//! stop gives the same run as not stopping; stage 2 starts from stage 1's tensors bit for bit; a
//! CUDA request without CUDA is a clear error; data-parallel training on several (CPU) replicas
//! gives the one-device run of the same global batches; bf16 mixed precision gives f32's loss
//! and gradients within bf16 rounding, and trains like f32.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use eknet_trainer::checkpoint::{copy_matching, dump};
use eknet_trainer::device::CpuTrain;
use eknet_trainer::metrics::roc_auc;
use eknet_trainer::model::{Eknet, EknetConfig, Stage};
use eknet_trainer::train::{
    TrainOptions, load_pretrained_dump, open_splits, predict, train, train_on,
};
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

/// Trains `cfg` on `n` replicas (each its own folder) and returns the loss history and the last
/// checkpoint's tensors.
fn replicas_run(
    cfg: &eknet_shared::config::StageConfig,
    stage: Stage,
    n: usize,
) -> (
    Vec<(f64, Option<f64>)>,
    eknet_trainer::checkpoint::TensorDump,
) {
    let devices = vec![Default::default(); n];
    let out = train_on::<CpuTrain>(cfg, stage, &quiet(), &devices).unwrap();
    let h = out
        .state
        .history
        .iter()
        .map(|e| (e.train_loss, e.val_loss))
        .collect();
    (h, load_pretrained_dump(&out.run_dir.join("last")).unwrap())
}

/// The gradient of the global batch, summed over replicas that each saw a share of it, moves the
/// model as one device does: the same losses and parameters within float rounding, for both
/// stages and for shares of unequal size (16 split 3 ways, and the epoch's short last batch).
#[test]
fn data_parallel_replicas_match_one_device() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 40, 9);
    let cases = [
        (
            "self_learning",
            Stage::Pretrain,
            vec![(
                "loss_on: 'all' # all (release) or masked",
                "loss_on: 'masked'",
            )],
        ),
        ("self_learning", Stage::Pretrain, vec![]),
        (
            "classification",
            Stage::Classify,
            vec![("OPTIM:\n", "OPTIM:\n  class_weighting: balanced\n")],
        ),
    ];
    for (i, (stage_name, stage, extra)) in cases.iter().enumerate() {
        let mut runs = Vec::new();
        for n in [1, 2, 3] {
            let dir = tmp.path().join(format!("case{i}-x{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (cfg, _) = common::tiny_config(stage_name, &dir, &data, 2, 2, extra);
            runs.push((n, replicas_run(&cfg, *stage, n)));
        }
        let (_, (h1, d1)) = &runs[0];
        for (n, (h, d)) in &runs[1..] {
            for ((a, va), (b, vb)) in h1.iter().zip(h) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
                    "{stage_name} x{n}: train loss {a} vs {b}"
                );
                assert!(
                    (va.unwrap() - vb.unwrap()).abs() <= 1e-4 * va.unwrap().abs().max(1e-3),
                    "{stage_name} x{n}: val loss {va:?} vs {vb:?}"
                );
            }
            // Adam divides by the root of the squared gradients, so a parameter whose gradient
            // is all but zero moves by up to the learning rate on rounding alone: most parameters
            // agree to 1e-5, none by more than the two epochs' learning rates (5e-4 peak).
            let (mut worst, mut off, mut count) = (0.0f32, 0usize, 0usize);
            for (name, (_, shape, values)) in &d1.tensors {
                let (_, shape_n, values_n) = &d.tensors[name];
                assert_eq!(shape, shape_n, "{name}");
                for (a, b) in values.iter().zip(values_n) {
                    worst = worst.max((a - b).abs());
                    off += usize::from((a - b).abs() > 1e-5);
                    count += 1;
                }
            }
            eprintln!(
                "{stage_name} x{n}: {off} of {count} parameters off by > 1e-5, worst {worst}"
            );
            assert!(
                worst < 1e-3,
                "{stage_name} x{n}: parameters differ by {worst}"
            );
            assert!(
                off * 100 < count,
                "{stage_name} x{n}: {off} of {count} parameters differ"
            );
        }
    }
    // Batch norms normalise by each replica's share: refused, with the reason.
    let dir = tmp.path().join("bn");
    std::fs::create_dir_all(&dir).unwrap();
    let bn = "MODEL:\n  token_embedding: 'conv'\n  stem_batch_norm: True\n";
    let (cfg, _) = common::tiny_config("classification", &dir, &data, 2, 1, &[("MODEL:\n", bn)]);
    let two = [Default::default(), Default::default()];
    let err = train_on::<CpuTrain>(&cfg, Stage::Classify, &quiet(), &two).unwrap_err();
    assert!(err.to_string().contains("stem_batch_norm"), "{err}");
}

/// Every parameter's gradient after `loss.backward()`, in visiting order, with its dtype.
struct GradsOf<'a> {
    grads: &'a <CpuTrain as burn::tensor::backend::AutodiffBackend>::Gradients,
    out: Vec<(burn::tensor::DType, Vec<f32>)>,
}

impl burn::module::ModuleVisitor<CpuTrain> for GradsOf<'_> {
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<CpuTrain, D>>,
    ) {
        if let Some(g) = param.val().grad(self.grads) {
            let dtype = g.dtype();
            let g = g.cast(burn::tensor::FloatDType::F32);
            self.out
                .push((dtype, g.into_data().to_vec::<f32>().unwrap()));
        }
    }
}

/// A bf16 working copy of the same f32 weights, on the same batch and token drop, gives the f32
/// loss and gradients within bf16's rounding (8 mantissa bits: loss within 2 %, gradient direction
/// cosine > 0.99, norm within 5 %): for stage 2 with the linear and
/// the convolutional stem (with batch norms, kept f32), and for stage 1. The gradients reach the
/// f32 master weights as f32; the working copy really is bf16 (its loss differs from f32's).
#[test]
fn bf16_mixed_precision_matches_f32_within_bf16_rounding() {
    use burn::module::Module;
    use burn::tensor::{DType, Tensor, TensorData};
    use eknet_shared::layout::{SLOT_COUNT, SLOT_SAMPLES};
    use eknet_trainer::model::{DropPlan, token_groups};
    use eknet_trainer::precision::{Precision, working_copy};
    use eknet_trainer::train::{classify_loss, pretrain_loss};

    let tmp = tempfile::tempdir().unwrap();
    let conv = "MODEL:\n  token_embedding: 'conv'\n  conv_channels: 8\n  conv_blocks: 2\n  \
                stem_batch_norm: True\n";
    let cases = [
        ("classification", Stage::Classify, vec![]),
        ("classification", Stage::Classify, vec![("MODEL:\n", conv)]),
        (
            "self_learning",
            Stage::Pretrain,
            vec![(
                "loss_on: 'all' # all (release) or masked",
                "loss_on: 'masked'",
            )],
        ),
    ];
    let dev = Default::default();
    for (i, (stage_name, stage, extra)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (cfg, _) = common::tiny_config(stage_name, &dir, &dir, 3, 1, extra);
        let mcfg = EknetConfig::from_stage(&cfg);
        <CpuTrain as burn::tensor::backend::Backend>::seed(&dev, 300 + i as u64);
        let model = Eknet::<CpuTrain>::new(&mcfg, &dev);
        let b = 4;
        let mut rng = eknet_trainer::rng::Rng::new(7 + i as u64);
        let x: Vec<f32> = (0..b * SLOT_COUNT * SLOT_SAMPLES)
            .map(|j| (j as f32 * 0.013).sin() * 0.8 + rng.normal() as f32 * 0.1)
            .collect();
        let y: Vec<f32> = (0..b * 3).map(|j| (j % 2) as f32).collect();
        let known = vec![1.0; b * 3];
        let plan = DropPlan::draw(&token_groups(mcfg.lead_split), b, 0.5, &mut rng);
        let run = |precision: Precision| {
            let work = working_copy(&model, precision);
            assert_eq!(work.queries.val().dtype(), precision.dtype());
            let input = Tensor::<CpuTrain, 3>::from_data(
                TensorData::new(x.clone(), [b, SLOT_COUNT, SLOT_SAMPLES]),
                &dev,
            );
            let loss = match stage {
                Stage::Pretrain => pretrain_loss(&work, input, &plan, cfg.model.loss_on).0,
                Stage::Classify => {
                    classify_loss(&work, input, &y, &known, &[1.0, 2.0, 1.0], Some(&plan)).0
                }
            };
            assert_eq!(loss.dtype(), DType::F32, "losses are f32");
            let value: f32 = loss.clone().into_scalar();
            let grads = loss.backward();
            let mut visitor = GradsOf {
                grads: &grads,
                out: Vec::new(),
            };
            model.visit(&mut visitor);
            (value, visitor.out)
        };
        let (l32, g32) = run(Precision::F32);
        let (l16, g16) = run(Precision::Bf16);
        assert!(
            l16 != l32,
            "{stage_name}: the bf16 copy computed in f32 ({l32})"
        );
        assert!(
            (l16 - l32).abs() <= 0.02 * l32.abs(),
            "{stage_name} case {i}: loss bf16 {l16} vs f32 {l32}"
        );
        assert_eq!(g16.len(), g32.len(), "every parameter gets a gradient");
        let (mut dot, mut n32, mut n16) = (0.0f64, 0.0f64, 0.0f64);
        for ((d16, a), (_, c)) in g16.iter().zip(&g32) {
            assert_eq!(
                *d16,
                DType::F32,
                "gradients reach the master weights as f32"
            );
            for (p, q) in a.iter().zip(c) {
                dot += f64::from(*p) * f64::from(*q);
                n16 += f64::from(*p).powi(2);
                n32 += f64::from(*q).powi(2);
            }
        }
        let cosine = dot / (n16.sqrt() * n32.sqrt());
        let ratio = (n16 / n32).sqrt();
        eprintln!(
            "{stage_name} case {i}: loss {l32} / {l16}, gradient cosine {cosine:.5}, norm ratio {ratio:.4}"
        );
        assert!(
            cosine > 0.99,
            "{stage_name} case {i}: gradient cosine {cosine}"
        );
        assert!(
            (ratio - 1.0).abs() < 0.05,
            "{stage_name} case {i}: gradient norm ratio {ratio}"
        );
    }
}

/// A training run in bf16 mixed precision follows the f32 run's losses.
#[test]
fn bf16_training_follows_f32() {
    use eknet_trainer::precision::Precision;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic(&data, 40, 4);
    let mut histories = Vec::new();
    for precision in [Precision::F32, Precision::Bf16] {
        let dir = tmp.path().join(precision.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let (cfg, _) = common::tiny_config("classification", &dir, &data, 2, 3, &[]);
        let opts = TrainOptions {
            precision,
            ..quiet()
        };
        let out = train::<CpuTrain>(&cfg, Stage::Classify, &opts, &Default::default()).unwrap();
        histories.push(out.state.history);
    }
    for (a, b) in histories[0].iter().zip(&histories[1]) {
        assert!(
            (a.train_loss - b.train_loss).abs() <= 0.03 * a.train_loss,
            "epoch {}: f32 {} vs bf16 {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert!(a.train_loss != b.train_loss, "bf16 ran in f32");
    }
}

#[test]
fn a_device_list_of_two_kinds_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, path) = common::tiny_config("self_learning", tmp.path(), tmp.path(), 2, 1, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_eknet-train"))
        .args(["pretrain", "--device", "cpu,cuda:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixes CPU and CUDA"), "{err}");
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
