//! `eknet-shared`: the bottom layer that trainer and daemon both stand on.
//!
//! The map:
//! - [`lead`]: the twelve leads, name normalisation, limb-lead derivation.
//! - [`record`]: an ECG [`Record`](record::Record): named leads in millivolts, rate, metadata.
//! - [`wfdb`]: WFDB headers and signal files (formats 16, 61, 80, 212, 24, 32, byte offsets, so
//!   the CinC `.mat` files too), with LUDB's gain quirk handled explicitly.
//! - [`ecgzip`]: the seed's gzip-compressed JSON records, reader and writer.
//! - [`io`]: read a record from a path of either kind.
//! - [`resample`]: an anti-aliased rational resampler (any rate to 500 Hz).
//! - [`layout`]: the clinical 3x4 format as the model's `[15][1250]` input, token rows and columns.
//! - [`preprocess`]: the one pipeline from any record to model windows, used by trainer and daemon.
//! - [`rhythm`]: R peaks, heart rate and R-R irregularity of one lead.
//! - [`measure`]: 12-lead delineation and global measurements (intervals, QTc, axes, statements).
//! - [`labels`]: PTB-XL SCP statements, SNOMED CT and LUDB text mapped onto them.
//! - [`config`]: the seed-compatible YAML configs of both training stages.
//! - [`data`]: where the shared real records live.
//! - [`time`]: UTC time as RFC 3339 text.
//! - [`bundle`]: the model bundle (`*.eknet`): manifest, checksums, both ONNX graphs.
//!
//! No async runtime, no tensor library: everything here is plain data and arithmetic, so a record
//! gives the same tensor in training and at the bedside.

pub mod bundle;
pub mod config;
pub mod data;
pub mod ecgzip;
pub mod io;
pub mod labels;
pub mod layout;
pub mod lead;
pub mod measure;
pub mod preprocess;
pub mod record;
pub mod resample;
pub mod rhythm;
pub mod rng;
pub mod time;
pub mod wfdb;

pub use layout::Window3x4;
pub use lead::Lead;
pub use record::{Record, RecordMeta, Sex, SourceLabel};
