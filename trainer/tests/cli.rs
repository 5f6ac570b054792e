//! `eknet-train inspect` and `convert` run as a user runs them, on real records.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::{Lead, ecgzip, wfdb};
use std::path::PathBuf;
use std::process::Command;

fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

fn eknet_train(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eknet-train"))
        .args(args)
        .output()
        .expect("eknet-train runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_on_every_command() {
    for args in [
        &["--help"][..],
        &["inspect", "--help"],
        &["convert", "--help"],
    ] {
        let (ok, out, _) = eknet_train(args);
        assert!(ok && out.contains("Usage"), "{args:?}: {out}");
    }
}

#[test]
fn inspect_a_ludb_record_as_text_and_json() {
    let rec = data_dir().join("ludb/data/1");
    let (ok, out, err) = eknet_train(&["inspect", rec.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("500 Hz, 5000 samples, 10.000 s"), "{out}");
    assert!(
        out.contains("text \"Rhythm: Sinus bradycardia.\" -> SBRAD"),
        "{out}"
    );
    assert!(out.contains("scp codes   LVH, NST_, SBRAD"), "{out}");
    assert!(out.contains("unmapped    2"), "{out}");

    let (ok, out, err) = eknet_train(&["inspect", rec.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sample_rate_hz"], 500.0);
    assert_eq!(v["leads"].as_array().unwrap().len(), 12);
    assert_eq!(v["meta"]["age_years"], 51.0);
    assert_eq!(v["meta"]["sex"], "female");
    assert_eq!(
        v["harmonised"]["scp_codes"],
        serde_json::json!(["LVH", "NST_", "SBRAD"])
    );
    assert_eq!(v["harmonised"]["unmapped"][0]["reason"], "no_scp_statement");
}

#[test]
fn inspect_a_cinc_record_names_snomed_concepts() {
    let rec = data_dir().join("cinc/records/S0001");
    let (ok, out, err) = eknet_train(&["inspect", rec.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("1000 Hz, 38400 samples"), "{out}");
    assert!(
        out.contains("SNOMED 251146004 [low qrs voltages (LQRSV)] -> LVOLT"),
        "{out}"
    );
}

#[test]
fn convert_round_trips_exactly_and_inspect_reads_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    for rec in ["ludb/data/7", "cinc/records/S0001", "cinc/records/HR20715"] {
        let src = data_dir().join(rec);
        let out = tmp.path().join("out.ecgzip");
        let (ok, stdout, err) =
            eknet_train(&["convert", src.to_str().unwrap(), out.to_str().unwrap()]);
        assert!(ok, "{rec}: {err}");
        assert!(stdout.contains("12 leads"), "{stdout}");
        let original = wfdb::read_record(&src).unwrap();
        let converted = ecgzip::read(&out).unwrap();
        assert_eq!(
            converted.sample_rate_hz(),
            original.sample_rate_hz(),
            "{rec}: own rate kept"
        );
        assert_eq!(converted.meta.source_labels, original.meta.source_labels);
        for lead in Lead::ALL {
            assert_eq!(
                converted.lead(lead).unwrap(),
                original.lead(lead).unwrap(),
                "{rec} {lead}"
            );
        }
        let (ok, text, err) = eknet_train(&["inspect", out.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert!(
            text.contains(&format!("{} Hz", original.sample_rate_hz())),
            "{text}"
        );
    }
}

#[test]
fn bad_input_is_a_clear_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = eknet_train(&["inspect", tmp.path().join("absent").to_str().unwrap()]);
    assert!(!ok && err.contains("absent.hea"), "{err}");
    let junk = tmp.path().join("junk.ecgzip");
    std::fs::write(&junk, b"\x1f\x8b garbage").unwrap();
    let (ok, _, err) = eknet_train(&["inspect", junk.to_str().unwrap()]);
    assert!(
        !ok && err.contains("junk.ecgzip") && err.contains("gzip"),
        "{err}"
    );
    let (ok, _, err) = eknet_train(&[
        "convert",
        junk.to_str().unwrap(),
        "/nonexistent/dir/x.ecgzip",
    ]);
    assert!(!ok && err.contains("junk.ecgzip"), "{err}");
}
