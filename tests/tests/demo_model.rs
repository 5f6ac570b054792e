//! The shipped demo model (`models/eknet-demo.eknet`): it opens and checks as the daemon loads it,
//! is a trained and validated model (not a fixture), names its reproduction script, agrees with its
//! model card's classes, and its held-out list resolves to real records that `eknetd --demo`
//! streams; both graphs score a held-out record.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_runtime::Classifier;
use eknet_shared::bundle::{Bundle, Precision};
use std::path::PathBuf;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[test]
fn the_shipped_demo_model_is_trained_validated_and_reproducible() {
    let path = models().join("eknet-demo.eknet");
    let bundle = Bundle::open(&path).unwrap();
    let m = &bundle.manifest;
    let codes: Vec<&str> = m.labels.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "NORM", "SBRAD", "STACH", "AFIB", "1AVB", "CRBBB", "CLBBB", "LAFB", "IRBBB", "LVH",
            "IMI", "ASMI"
        ]
    );
    assert!(!m.model_id.starts_with("untrained"), "{}", m.model_id);
    assert_eq!(
        m.provenance.reproduce.as_deref(),
        Some("tools/reproduce-demo-model.sh")
    );
    assert_eq!(m.metrics.records, 219, "validation records");
    assert!(m.metrics.f32_vs_trainer_max_abs <= 1e-4);
    for l in &m.labels {
        assert!(l.support_train >= 20 && l.support_val >= 4, "{l:?}");
        for t in [l.threshold_f32, l.threshold_int8] {
            assert!(t > 0.0 && t < 1.0, "{l:?}");
        }
    }
    // The card states the same classes and the same bundle.
    let card = std::fs::read_to_string(models().join("MODEL_CARD.md")).unwrap();
    assert!(
        card.contains(&m.model_id),
        "MODEL_CARD.md names another model"
    );
    for c in &codes {
        assert!(
            card.contains(&format!("| {c} |")),
            "MODEL_CARD.md has no row for {c}"
        );
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(card.contains(&fmt_thousands(size)), "card size != {size}");
    assert!(
        size < 5_000_000,
        "the demo bundle should stay a few MB: {size}"
    );

    // The held-out records exist in the shared data and are what the demo streams.
    let records = eknet_daemon::demo::demo_records(&path).unwrap();
    assert_eq!(records.len(), 211, "test records");
    let first = eknet_shared::io::read_any(&records[0]).unwrap();
    let w = eknet_shared::preprocess::record_windows(&first, Default::default()).unwrap();
    for p in [Precision::F32, Precision::Int8] {
        let c = Classifier::from_bundle(&bundle, p, 1).unwrap();
        let out = c.classify(&w[0].data).unwrap();
        assert_eq!(out.scores.len(), 12);
        assert!(out.scores.iter().all(|s| (0.0..=1.0).contains(s)));
    }
}

fn fmt_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
