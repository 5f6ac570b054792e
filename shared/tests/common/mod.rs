//! Helpers shared by this crate's integration tests: where the real records are, and lists of them.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The shared data folder (panics with a clear message when it is absent).
pub fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

/// Record paths (without extension) of every `.hea` in `dir`, sorted.
pub fn records_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hea"))
        .map(|p| p.with_extension(""))
        .collect();
    v.sort();
    v
}

/// Every LUDB record.
pub fn ludb_records() -> Vec<PathBuf> {
    records_in(&data_dir().join("ludb").join("data"))
}

/// Every CinC record.
pub fn cinc_records() -> Vec<PathBuf> {
    records_in(&data_dir().join("cinc").join("records"))
}

/// Digital value of `signal` at `sample` read straight from a format-16 file with `offset`
/// header bytes and `n_sig` interleaved signals: the independent reading.
pub fn raw16(dat: &Path, offset: usize, n_sig: usize, signal: usize, sample: usize) -> i16 {
    let bytes = std::fs::read(dat).unwrap();
    let at = offset + (sample * n_sig + signal) * 2;
    i16::from_le_bytes([bytes[at], bytes[at + 1]])
}
