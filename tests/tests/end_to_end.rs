//! The whole path on real records: `eknet-train prepare` (LUDB, stratified split), a tiny stage 1
//! and stage 2, `export` (f32 + int8), then the daemon reading a simulated device over a real
//! pseudo-terminal (the simulator streams a held-out test-split record), results read over HTTP
//! and the event stream, and `POST /v1/classify` of the same 10 s giving the live path's scores.
//!
//! The trainer's commands run through its own CLI parser and `run` (what the `eknet-train` binary
//! calls); the daemon and the simulator run as `eknetd` and `eknet-sim` do (`app::start`,
//! `sim::run`), in this process, joined by a pty.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use clap::Parser;
use eknet_daemon::app;
use eknet_daemon::config::{DaemonConfig, PrecisionChoice};
use eknet_daemon::result::{Outcome, Source, WindowResult};
use eknet_daemon::sim::{EKNET_SAMPLES_PER_FRAME, SimOptions};
use eknet_daemon::windows::EIGHT_CHANNEL_LEADS;
use eknet_shared::bundle::{Bundle, Precision};
use eknet_shared::{Lead, Record};
use eknet_tests::{data_dir, http, sse};
use std::path::Path;
use std::time::Duration;

const CLASSES: &str = "SBRAD,LVH,LAO/LAE";
const SPEED: f64 = 4.0;
/// Largest score difference allowed between the live path and an upload of the same 10 s: both
/// run the same int8 graph on the same preprocessing, and LUDB's samples are whole microvolts, so
/// the device's 0.5 uV quantisation loses nothing (measured here: 0, bit for bit). A window 2.5 s
/// off must differ by more (checked, so this can fail; the tiny model trained here scores shifted
/// windows 8e-4 to 3e-3 apart).
const INT8_TOLERANCE: f32 = 1e-6;

fn train(args: &[&str]) {
    let mut argv = vec!["eknet-train"];
    argv.extend_from_slice(args);
    let cli = eknet_trainer::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{e}"));
    eknet_trainer::cli::run(cli).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
}

/// The repository's small stage config, made tiny (D 16, one block, two heads, one knowledge
/// layer, one epoch) and pointed at `work` with absolute paths.
fn tiny_config(work: &Path, name: &str, extra: &[(&str, &str)]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut text = std::fs::read_to_string(repo.join("configs").join(name)).unwrap();
    let w = work.display().to_string();
    let mut subs: Vec<(String, String)> = vec![
        ("data/prepared/".into(), format!("{w}/data/")),
        ("\"model_outputs/".into(), format!("\"{w}/model_outputs/")),
        ("embed_dim: 64".into(), "embed_dim: 16".into()),
        ("local_depth: 3".into(), "local_depth: 1".into()),
        ("num_head: 4".into(), "num_head: 2".into()),
        ("cls_cross_depth: 2".into(), "cls_cross_depth: 1".into()),
        ("NUM_EPOCHS: 40".into(), "NUM_EPOCHS: 1".into()),
        ("BATCH_SIZE: 32".into(), "BATCH_SIZE: 64".into()),
    ];
    // Stage 1's warm-up and validation period, which stage 2 does not share.
    for (from, to) in [
        ("WARMUP_EPOCHS: 4", "WARMUP_EPOCHS: 1"),
        ("VAL_EVERY: 5", "VAL_EVERY: 1"),
    ] {
        text = text.replace(from, to);
    }
    subs.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    for (from, to) in subs {
        assert!(text.contains(&from), "{name} has no '{from}'");
        text = text.replace(&from, &to);
    }
    let path = work.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `n` samples of the record looped forever, from sample `from` on.
fn looped(signal: &[f32], from: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| signal[(from + i) % signal.len()]).collect()
}

fn scores(r: &WindowResult) -> Vec<(String, f32)> {
    r.classification
        .as_ref()
        .unwrap()
        .scores
        .iter()
        .map(|s| (s.code.clone(), s.score))
        .collect()
}

#[test]
fn records_to_training_to_bundle_to_daemon_over_a_pty_to_http() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let data = data_dir();
    let w = |p: &str| work.join(p).display().to_string();

    // 1. Data: real LUDB records, three classes, stratified record-level split.
    train(&[
        "prepare",
        "--format",
        "wfdb",
        "--input",
        data.join("ludb/data").to_str().unwrap(),
        "--out",
        &w("data"),
        "--classes",
        CLASSES,
        "--stratify",
        "--tables",
        data.to_str().unwrap(),
    ]);
    let test_csv = std::fs::read_to_string(work.join("data/k0_test.csv")).unwrap();
    let held_out: Vec<&str> = test_csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(held_out.len(), 30, "15 % of LUDB's 200 records");

    // 2. A tiny stage 1, then stage 2 from it.
    let s1 = tiny_config(work, "EKnet_self_learning_small.yaml", &[]);
    train(&["pretrain", "--config", &s1, "--quiet"]);
    // (Its Pertrain_Path, model_outputs/EKnet_self_learning_small/last, now points into `work`.)
    let s2 = tiny_config(
        work,
        "EKnet_classification_small.yaml",
        &[("num_classes: 18", "num_classes: 3")],
    );
    train(&["finetune", "--config", &s2, "--quiet"]);
    let best = format!(
        "{}/model_outputs/EKnet_classification_small/best",
        work.display()
    );

    // 3. Export, calibrated on training records; read back as the daemon will.
    let bundle_path = work.join("tiny.eknet");
    train(&[
        "export",
        "--checkpoint",
        &best,
        "--calibration",
        &w("data/k0_train.csv"),
        "--calibration-windows",
        "16",
        "--tables",
        data.to_str().unwrap(),
        "--out",
        bundle_path.to_str().unwrap(),
    ]);
    let bundle = Bundle::open(&bundle_path).unwrap();
    let codes: Vec<&str> = bundle
        .manifest
        .labels
        .iter()
        .map(|l| l.code.as_str())
        .collect();
    assert_eq!(codes, CLASSES.split(',').collect::<Vec<_>>());
    assert!(bundle.manifest.metrics.f32_vs_trainer_max_abs <= 1e-4);

    // 4. The daemon reads a held-out record from the simulated device over a pty.
    let rel = held_out[0].strip_prefix("records/data/").unwrap();
    let record_path = data.join("ludb/data").join(rel);
    let record = eknet_shared::io::read_any(&record_path).unwrap();
    let record = eknet_shared::preprocess::to_model_rate(&record).unwrap();
    let period = record.len_samples();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let link = work.join("ecg-device");
        let mut cfg = DaemonConfig::default();
        cfg.model.bundle = Some(bundle_path.clone());
        cfg.model.precision = PrecisionChoice::Int8;
        cfg.api.listen = "127.0.0.1:0".parse().unwrap();
        cfg.history.path = work.join("history.jsonl");
        cfg.serial.path = Some(link.clone());
        let (stop, rx) = tokio::sync::watch::channel(false);
        let opts = SimOptions {
            records: vec![record_path.clone()],
            speed: SPEED,
            loop_forever: true,
            link: Some(link.clone()),
            quiet: true,
            ..SimOptions::default()
        };
        let sim = tokio::spawn(eknet_daemon::sim::run(opts, rx));
        let d = app::start(&cfg).await.unwrap();

        // Results on the event stream: three classified windows.
        let classified = |evs: &[eknet_tests::SseEvent]| -> Vec<WindowResult> {
            evs.iter()
                .filter(|e| e.event.as_deref() == Some("result"))
                .map(|e| serde_json::from_str::<WindowResult>(&e.data).unwrap())
                .filter(|r| r.outcome == Outcome::Classified)
                .collect()
        };
        let events = sse(d.addr, "/v1/stream", &[], Duration::from_secs(90), |e| {
            classified(e).len() >= 3
        })
        .await;
        let live = classified(&events);
        assert!(live.len() >= 3, "live results: {events:?}");
        for r in &live {
            assert_eq!(r.source, Source::Live);
            assert!(r.reasons.is_empty());
            let c = r.classification.as_ref().unwrap();
            assert_eq!(c.precision, Precision::Int8);
            assert_eq!(c.model_id, bundle.manifest.model_id);
            let got: Vec<&str> = c.scores.iter().map(|s| s.code.as_str()).collect();
            assert_eq!(got, codes);
            assert!(c.scores.iter().all(|s| (0.0..=1.0).contains(&s.score)));
        }
        // The same results over plain HTTP.
        let latest = http(d.addr, "GET", "/v1/results/latest", &[], b"").await;
        assert_eq!(latest.status, 200);
        let latest: WindowResult = serde_json::from_value(latest.json()).unwrap();
        assert!(latest.id >= live[2].id, "{} < {}", latest.id, live[2].id);
        let listed = http(d.addr, "GET", "/v1/results?limit=100", &[], b"").await;
        assert_eq!(listed.status, 200);
        let listed = listed.json();
        for r in &live[..3] {
            let found = listed["results"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == r.id)
                .unwrap_or_else(|| panic!("result {} not listed: {listed}", r.id));
            let stored: WindowResult = serde_json::from_value(found.clone()).unwrap();
            assert_eq!(scores(&stored), scores(r));
        }

        // Stop the device first, so every frame it did not deliver was before the daemon
        // opened the pty: the daemon's stream index 0 is the simulator's sample `unheard * 10`.
        let _ = stop.send(true);
        let report = sim.await.unwrap().unwrap();
        let status = http(d.addr, "GET", "/v1/status", &[], b"").await.json();
        assert_eq!(status["device"]["lost_samples"], 0, "{status}");
        assert_eq!(status["device"]["crc_errors"], 0, "{status}");
        let first = report.frames_unheard * EKNET_SAMPLES_PER_FRAME as u64;

        // 5. POST /v1/classify the same 10 s the live path classified: same scores.
        let classify = |from: usize| {
            let leads: Vec<(Lead, Vec<f32>)> = EIGHT_CHANNEL_LEADS
                .iter()
                .map(|&l| (l, looped(record.lead(l).unwrap(), from, 5000)))
                .collect();
            let upload = Record::new(record.meta.clone(), 500.0, leads)
                .unwrap()
                .with_derived_limb_leads()
                .unwrap();
            let body = eknet_shared::ecgzip::to_json(&upload);
            let addr = d.addr;
            async move {
                let resp = http(
                    addr,
                    "POST",
                    "/v1/classify",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .await;
                assert_eq!(resp.status, 200, "{:?}", resp.json());
                let up: WindowResult = serde_json::from_value(resp.json()).unwrap();
                assert_eq!(up.source, Source::Upload);
                assert_eq!(up.outcome, Outcome::Classified);
                up
            }
        };
        let diff = |a: &WindowResult, b: &WindowResult| -> f32 {
            let (a, b) = (scores(a), scores(b));
            assert_eq!(
                a.iter().map(|x| &x.0).collect::<Vec<_>>(),
                b.iter().map(|x| &x.0).collect::<Vec<_>>()
            );
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x.1 - y.1).abs())
                .fold(0.0, f32::max)
        };
        // `shifted` shows the comparison can fail: another 10 s (2.5 s or 5 s off) scores
        // differently. The tiny one-epoch model's int8 scores change little with the input, so
        // a single shifted window may quantise to the same scores: the largest difference over
        // the windows and shifts is what must exceed the tolerance.
        let (mut same, mut shifted) = (0.0f32, 0.0f32);
        for r in &live[..3] {
            let start = first + r.window.start_index.unwrap();
            let from = (start % period as u64) as usize;
            same = same.max(diff(&classify(from).await, r));
            for off in [1250, 2500] {
                shifted = shifted.max(diff(&classify((from + off) % period).await, r));
            }
        }
        eprintln!(
            "upload vs live, int8: same 10 s max |score difference| {same:.2e}; 2.5 s or 5 s off, up to {shifted:.2e}"
        );
        assert!(same <= INT8_TOLERANCE, "same 10 s: {same}");
        assert!(shifted > INT8_TOLERANCE, "2.5 s or 5 s off: {shifted}");
        d.stop().await;
    });
}
