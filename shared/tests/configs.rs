//! The shipped stage configs parse with the seed's keys and values; unknown keys, mistyped and
//! out-of-range values are errors naming the key and the file.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::config::{ConfigError, ModeStage, PosMerging, StageConfig};
use std::path::{Path, PathBuf};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn shipped_configs_parse_with_the_seed_values() {
    let s1 = StageConfig::load(&configs_dir().join("EKnet_self_learning.yaml")).unwrap();
    assert_eq!(s1.model.mode_stage, ModeStage::SelfLearning);
    assert_eq!(
        (s1.model.embed_dim, s1.model.local_depth, s1.model.num_head),
        (256, 9, 8)
    );
    assert_eq!(
        (
            s1.optim.batch_size,
            s1.optim.num_epochs,
            s1.optim.warmup_epochs
        ),
        (1500, 300, 30)
    );
    assert_eq!(s1.input.mask_ratio, 0.85);
    assert!(!s1.model.lead_split);
    assert_eq!(s1.model.pos_merging_style, PosMerging::ConcatMlp);
    let s2 = StageConfig::load(&configs_dir().join("EKnet_classification.yaml")).unwrap();
    assert_eq!(s2.model.mode_stage, ModeStage::Classifier);
    assert_eq!(
        (
            s2.model.num_classes,
            s2.optim.batch_size,
            s2.optim.lr_initial
        ),
        (70, 200, 0.00025)
    );
    assert_eq!(s2.input.mask_ratio, 0.65);
    assert!(s2.model.lead_split && !s2.input.using_pretrain);
    // A saved config reads back identically.
    let back = StageConfig::parse(&s2.to_yaml(), Path::new("saved.yaml")).unwrap();
    assert_eq!(back, s2);
}

fn variant(find: &str, replace: &str) -> Result<StageConfig, ConfigError> {
    let path = configs_dir().join("EKnet_classification.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(find), "test fixture: {find}");
    StageConfig::parse(&text.replacen(find, replace, 1), Path::new("variant.yaml"))
}

#[test]
fn bad_keys_and_values_name_the_key_and_file() {
    let cases = [
        (
            "  embed_dim: 256",
            "  embed_dim: 256\n  embed_dims: 12",
            "embed_dims",
        ),
        ("  embed_dim: 256", "  embed_dim: large", "MODEL.embed_dim"),
        ("  BATCH_SIZE: 200", "  BATCH_SIZE: -3", "OPTIM.BATCH_SIZE"),
        (
            "  lead_split: True",
            "  lead_split: 'yes please'",
            "MODEL.lead_split",
        ),
        ("OPTIM:", "OPTIMISER:\n  X: 1\nOPTIM:", "OPTIMISER"),
        (
            "  MASK_RATIO: 0.65",
            "  MASK_RATIO: 1.5",
            "DATASET_CUSTOME.MASK_RATIO",
        ),
        ("  num_head: 8", "  num_head: 7", "MODEL.embed_dim"),
        (
            "  PATCH_SIZE: 25",
            "  PATCH_SIZE: 50",
            "DATASET_CUSTOME.PATCH_SIZE",
        ),
        (
            "  mode_stage: 'classfier'",
            "  mode_stage: 'pretrain'",
            "MODEL.mode_stage",
        ),
        (
            "  pufication_module: 'none'",
            "  pufication_module: 'token_purification'",
            "MODEL.pufication_module",
        ),
        (
            "  Pertrain_Path: \"model_outputs/EKnet_self_learning/last\"\n  Using_Pertrain: False",
            "  Using_Pertrain: True",
            "Pertrain_Path",
        ),
        ("  LR_MIN: 0.000001", "  LR_MIN: 0.1", "OPTIM.LR_MIN"),
        (
            "  NORMLIZE_SINGAL: False",
            "  NORMLIZE_SINGAL: True",
            "NORMLIZE_SINGAL",
        ),
        (
            "  pos_merging_style: 'concat_mlp'",
            "  pos_merging_style: 'concat'",
            "MODEL.pos_merging_style",
        ),
    ];
    for (find, replace, key) in cases {
        let e = variant(find, replace).expect_err(replace);
        let msg = e.to_string();
        assert!(
            msg.contains(key),
            "{replace:?}: message should name {key}: {msg}"
        );
        assert!(
            msg.contains("variant.yaml"),
            "{replace:?}: message should name the file: {msg}"
        );
    }
    let e = variant("  SEED: 42", "").unwrap_err();
    assert!(
        e.to_string().contains("SEED"),
        "a missing key is named: {e}"
    );
}
