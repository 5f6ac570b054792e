//! `eknet-trainer`: offline tools around EKnet. Today: record inspection and conversion to the
//! seed's `.ecgzip`; the model, data pipeline, both training stages, evaluation and export build
//! on these (see the trainer issue).
//!
//! - [`cli`]: the `eknet-train` commands.
//! - [`inspect`]: a record's summary (leads, rate, metadata, labels and their harmonisation).

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
pub mod rng;
pub mod train;
