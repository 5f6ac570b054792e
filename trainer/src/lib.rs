//! `eknet-trainer`: offline tools around EKnet for ML engineers.
//!
//! - [`cli`]: the `eknet-train` commands.
//! - [`inspect`]: a record's summary (leads, rate, metadata, labels and their harmonisation).
//! - [`data`]: preparing training data (splits, labels) and the decoded-window cache.
//! - [`model`]: EKnet in burn; [`train`]: both training stages; [`evaluate`], [`metrics`]: scores.
//! - [`baseline`]: a plain 1-D CNN trained on the same split and recipe, for comparison.
//! - [`export`]: the hand-written ONNX graphs (f32, int8), calibration, the model bundle, `verify`.
//! - [`precision`]: mixed-precision training (f32 master, bf16 working copy).
//! - [`adamw`]: AdamW fused into one pass per parameter on the CPU backend.
//! - [`bench`], [`device`], [`checkpoint`], [`rng`]: throughput, backends, checkpoints, seeds.

pub mod adamw;
pub mod baseline;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod export;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod precision;
pub mod rng;
pub mod stage1_eval;
pub mod train;
