//! `eknet-train inspect`, `convert` and `measure` run as a user runs them, on real records.

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
        &["measure", "--help"],
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

#[test]
fn measure_prints_one_json_line_per_record_and_names_the_one_it_cannot_read() {
    let d = data_dir().join("ludb/data");
    let (one, two) = (d.join("1"), d.join("2"));
    let missing = d.join("no-such-record");
    let (ok, out, err) = eknet_train(&[
        "measure",
        "--json",
        one.to_str().unwrap(),
        missing.to_str().unwrap(),
        two.to_str().unwrap(),
    ]);
    assert!(!ok, "a record that cannot be read fails the command");
    assert!(
        err.contains("no-such-record") && err.contains("1 of 3"),
        "{err}"
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    let m = &lines[0];
    assert_eq!(m["record"], one.to_str().unwrap());
    for key in eknet_shared::measure::JSON_KEYS {
        assert!(m.get(key).is_some(), "{key} missing: {m}");
    }
    // LUDB 1: the cardiologists wrote "Sinus bradycardia".
    let hr = m["hr_bpm"].as_f64().unwrap();
    assert!((40.0..60.0).contains(&hr), "{hr}");
    assert!(
        m["statements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "sinus_bradycardia"),
        "{m}"
    );
    for b in m["beats"].as_array().unwrap() {
        let r = b["r"].as_u64().unwrap();
        assert!(r < 5000);
        if let (Some(on), Some(off)) = (b["qrs_on"].as_u64(), b["qrs_off"].as_u64()) {
            assert!(on < r && r < off, "{b}");
        }
    }
    let (ok, text, err) = eknet_train(&["inspect", one.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        text.contains("measured    HR ") && text.contains("statement   "),
        "{text}"
    );
}
