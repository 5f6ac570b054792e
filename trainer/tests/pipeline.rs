//! End to end on the shared real records: `prepare --format wfdb` (LUDB + CinC), then the small
//! configs' stage 1 and stage 2 for one epoch each (stage 2 starting from stage 1), then
//! `evaluate`, `export` (calibrated on the training split) and `verify`, all through the
//! `eknet-train` binary as a user runs it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_eknet-train"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn prepare_pretrain_finetune_evaluate_export_on_the_shared_records() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    // The small configs read data/prepared and write model_outputs/ relative to the working folder.
    for name in [
        "EKnet_self_learning_small.yaml",
        "EKnet_classification_small.yaml",
    ] {
        let text = std::fs::read_to_string(configs.join(name)).unwrap();
        std::fs::write(
            work.join(name),
            text.replace("BATCH_SIZE: 32", "BATCH_SIZE: 64"),
        )
        .unwrap();
    }
    let data = data_dir();
    let ludb = data.join("ludb/data");
    let cinc = data.join("cinc/records");
    let out = run(
        work,
        &[
            "prepare",
            "--format",
            "wfdb",
            "--input",
            ludb.to_str().unwrap(),
            "--input",
            cinc.to_str().unwrap(),
            "--out",
            "data/prepared",
            "--min-count",
            "15",
            "--tables",
            data.to_str().unwrap(),
        ],
    );
    assert!(out.contains("prepared 421 records"), "{out}");
    assert!(
        out.contains("18 classes"),
        "the small config expects 18 classes: {out}"
    );
    for f in [
        "k0_train.csv",
        "k0_val.csv",
        "k0_test.csv",
        "k0_distribution.csv",
        "k0_prepare_report.json",
    ] {
        assert!(work.join("data/prepared").join(f).exists(), "{f}");
    }

    let out = run(
        work,
        &[
            "pretrain",
            "--config",
            "EKnet_self_learning_small.yaml",
            "--stop-after",
            "1",
            "--quiet",
        ],
    );
    assert!(
        out.contains("Epoch: 1 Time:")
            && out.contains("train Loss:")
            && out.contains("LearningRate"),
        "{out}"
    );
    assert!(
        work.join("model_outputs/EKnet_self_learning_small/last/model.mpk")
            .exists()
    );

    let out = run(
        work,
        &[
            "finetune",
            "--config",
            "EKnet_classification_small.yaml",
            "--stop-after",
            "1",
            "--quiet",
        ],
    );
    assert!(out.contains("val macro AUC:"), "{out}");
    let best = work.join("model_outputs/EKnet_classification_small/best");
    assert!(best.join("model.mpk").exists());

    let out = run(
        work,
        &[
            "evaluate",
            "--checkpoint",
            best.to_str().unwrap(),
            "--split",
            "test",
            "--bootstrap",
            "50",
        ],
    );
    assert!(out.contains("test split, 63 records"), "{out}");
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(best.join("eval_test/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["classes"].as_array().unwrap().len(), 18);
    let auc = metrics["summary"]["macro_auc"]["value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc));
    assert!(best.join("eval_test/per_class.csv").exists());

    let out = run(
        work,
        &[
            "export",
            "--checkpoint",
            best.to_str().unwrap(),
            "--calibration",
            "data/prepared/k0_train.csv",
            "--calibration-windows",
            "16",
            "--out",
            "bundle/small.eknet",
            "--tables",
            data.to_str().unwrap(),
        ],
    );
    assert!(out.contains("wrote bundle/small.eknet"), "{out}");
    let bundle = eknet_shared::bundle::Bundle::open(&work.join("bundle/small.eknet")).unwrap();
    let m = &bundle.manifest;
    assert_eq!(m.labels.len(), 18);
    // The f32 graph equals burn's forward on every validation record.
    assert!(
        m.metrics.f32_vs_trainer_max_abs <= 1e-4,
        "{}",
        m.metrics.f32_vs_trainer_max_abs
    );
    assert_eq!(m.metrics.records, metrics_val_records(work));
    assert!(m.metrics.int8_vs_f32_max_abs > 0.0);
    assert_eq!(m.quantization.calibration_windows, 16);
    // Labels carry their SCP description and, where the CinC mapping has one, SNOMED codes.
    let scp = eknet_shared::labels::scp::ScpTable::from_csv(&data.join("ptbxl/scp_statements.csv"))
        .unwrap();
    for l in &m.labels {
        assert_eq!(
            l.description.as_deref(),
            Some(scp.get(&l.code).unwrap().description.as_str())
        );
    }
    assert!(m.labels.iter().any(|l| !l.snomed.is_empty()));
    assert!(m.provenance.config_yaml.contains("num_classes: 18"));
    assert!(m.provenance.command.contains("export"));

    let out = run(work, &["verify", "bundle/small.eknet"]);
    assert!(out.contains(": OK (format 1"), "{out}");
    assert!(
        out.contains("model.int8.onnx") && out.contains("sha256 verified"),
        "{out}"
    );
    assert!(
        out.contains("int8 graph runs: attention rows sum to 1"),
        "{out}"
    );
}

/// Validation records of the prepared split (its CSV has a header line).
fn metrics_val_records(work: &Path) -> usize {
    std::fs::read_to_string(work.join("data/prepared/k0_val.csv"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
        - 1
}
