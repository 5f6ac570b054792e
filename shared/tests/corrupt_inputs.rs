//! Damaged inputs give typed errors that name the file and field, never panics: truncated and
//! missing signal files, headers that lie, flipped bytes, garbage, gzip that is not JSON.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::data_dir;
use eknet_shared::ecgzip::{self, EcgzipError};
use eknet_shared::wfdb::{self, WfdbError};
use std::path::{Path, PathBuf};

/// Copies a LUDB record (header and data) into a temporary folder.
fn copy_ludb(record: &str, dir: &Path) -> PathBuf {
    let src = data_dir().join("ludb/data");
    for ext in ["hea", "dat"] {
        std::fs::copy(
            src.join(format!("{record}.{ext}")),
            dir.join(format!("{record}.{ext}")),
        )
        .unwrap();
    }
    dir.join(record)
}

#[test]
fn truncated_dat_names_the_file_and_the_sample_count() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = copy_ludb("1", tmp.path());
    let dat = tmp.path().join("1.dat");
    let bytes = std::fs::read(&dat).unwrap();
    std::fs::write(&dat, &bytes[..bytes.len() / 2 + 5]).unwrap();
    match wfdb::read_record(&rec) {
        Err(e @ WfdbError::Truncated { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("1.dat") && msg.contains("5000") && msg.contains("2500"),
                "{msg}"
            );
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn missing_dat_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = copy_ludb("2", tmp.path());
    std::fs::remove_file(tmp.path().join("2.dat")).unwrap();
    let e = wfdb::read_record(&rec).unwrap_err();
    assert!(matches!(e, WfdbError::Io { .. }), "{e}");
    assert!(e.to_string().contains("2.dat"), "{e}");
    let e = wfdb::read_record(&tmp.path().join("nope")).unwrap_err();
    assert!(e.to_string().contains("nope.hea"), "{e}");
}

#[test]
fn flipped_sample_fails_its_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = copy_ludb("3", tmp.path());
    let dat = tmp.path().join("3.dat");
    let mut bytes = std::fs::read(&dat).unwrap();
    bytes[2 * (100 * 12 + 4)] ^= 0x10; // sample 100 of signal 4 (avl)
    std::fs::write(&dat, bytes).unwrap();
    match wfdb::read_record(&rec) {
        Err(e @ WfdbError::Checksum { signal: 4, .. }) => {
            assert!(
                e.to_string().contains("avl") && e.to_string().contains("checksum"),
                "{e}"
            );
        }
        other => panic!("expected a checksum error on signal 4, got {other:?}"),
    }
}

#[test]
fn headers_that_lie_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = copy_ludb("4", tmp.path());
    let hea = tmp.path().join("4.hea");
    let original = std::fs::read_to_string(&hea).unwrap();
    let cases: [(&str, String, &str); 5] = [
        (
            "longer than the data",
            original.replacen("4 12 500 5000", "4 12 500 6000", 1),
            "6000",
        ),
        (
            "unknown format",
            original.replacen(" 16 ", " 311 ", 1),
            "format 311",
        ),
        (
            "fewer signal lines",
            original.replacen("4 12 500", "4 13 500", 1),
            "number of signals",
        ),
        (
            "garbage gain",
            original
                .replacen("/mV", "/mV(", 1)
                .replacen(" 16 ", " 16 x", 1),
            "ADC gain",
        ),
        ("not a voltage", original.replace("/mV", "/mmHg"), "mmHg"),
    ];
    for (what, text, needle) in cases {
        std::fs::write(&hea, text).unwrap();
        let e = wfdb::read_record(&rec).expect_err(what);
        assert!(e.to_string().contains(needle), "{what}: {e}");
        assert!(
            e.to_string().contains("4."),
            "{what}: error names the file: {e}"
        );
    }
}

#[test]
fn garbage_header_bytes_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let hea = tmp.path().join("junk.hea");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&hea, junk).unwrap();
    let e = wfdb::read_record(&tmp.path().join("junk")).unwrap_err();
    assert!(matches!(e, WfdbError::Header { .. }), "{e}");
}

#[test]
fn ecgzip_damage_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let good = wfdb::read_record(&data_dir().join("ludb/data/5")).unwrap();
    let path = tmp.path().join("5.ecgzip");
    ecgzip::write(&good, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // Truncated gzip stream.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(ecgzip::read(&path), Err(EcgzipError::Gzip { .. })));
    // Gzip of something that is not JSON.
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"<html>not json</html>").unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let e = ecgzip::read(&path).unwrap_err();
    assert!(
        matches!(e, EcgzipError::Json { .. }) && e.to_string().contains("5.ecgzip"),
        "{e}"
    );
    // Not gzip at all.
    std::fs::write(&path, b"I,II\n1,2\n").unwrap();
    assert!(matches!(ecgzip::read(&path), Err(EcgzipError::Gzip { .. })));
}
