//! Helpers for the end-to-end tests in `tests/tests/`: locating the shared real records.

use std::path::PathBuf;

/// The shared data folder, or a panic that says where it was looked for and how to point at it.
pub fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}
