//! Label vocabularies on the real tables and records: PTB-XL's 71 statements and the 70 EKnet
//! classes, every CinC SNOMED code and LUDB diagnosis accounted for (mapped, or reported unmapped
//! with its reason), and the bridges the data README names.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{cinc_records, data_dir, ludb_records};
use eknet_shared::labels::{Harmoniser, UnmappedReason, UnmappedReport};
use eknet_shared::{SourceLabel, wfdb};

fn harmoniser() -> Harmoniser {
    Harmoniser::from_data_dir(&data_dir()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ptbxl_statements_and_the_eknet_class_set() {
    let h = harmoniser();
    let scp = h.scp();
    assert_eq!(scp.statements().len(), 71);
    let classes = scp.eknet_classes();
    assert_eq!(classes.len(), 70);
    assert!(classes.iter().all(|s| s.code != "SR"));
    assert_eq!(classes[0].code, "NDT", "file order is output order");
    let diag = scp.statements().iter().filter(|s| s.diagnostic).count();
    let form = scp.statements().iter().filter(|s| s.form).count();
    let rhythm = scp.statements().iter().filter(|s| s.rhythm).count();
    assert_eq!((diag, form, rhythm), (44, 19, 12));
    assert_eq!(
        scp.get("IRBBB").unwrap().diagnostic_class.as_deref(),
        Some("CD")
    );
}

#[test]
fn data_readme_bridges_hold() {
    let h = harmoniser();
    for (snomed, scp) in [
        ("426783006", "SR"),
        ("164889003", "AFIB"),
        ("59118001", "CRBBB"),
        ("426177001", "SBRAD"),
        ("427084000", "STACH"),
    ] {
        let out = h.harmonise(&[SourceLabel::Snomed(snomed.into())]);
        assert_eq!(out.scp_codes, vec![scp.to_string()], "{snomed}");
    }
    let out = h.harmonise(&[
        SourceLabel::Scp("IRBBB".into()),
        SourceLabel::Scp("BOGUS".into()),
    ]);
    assert_eq!(out.scp_codes, vec!["IRBBB".to_string()]);
    assert_eq!(out.unmapped[0].reason, UnmappedReason::Unrecognised);
}

#[test]
fn every_cinc_label_is_mapped_or_reported_with_a_reason() {
    let h = harmoniser();
    let mut report = UnmappedReport::default();
    for path in cinc_records() {
        let r = wfdb::read_record(&path).unwrap();
        let out = h.harmonise(&r.meta.source_labels);
        assert_eq!(
            out.mapped.len() + out.unmapped.len(),
            r.meta.source_labels.len()
        );
        report.add(&out);
    }
    assert_eq!(report.records, 221);
    // Every SNOMED code in the sample is in the curated table: none is unrecognised.
    let unrecognised: Vec<&String> = report
        .unmapped
        .iter()
        .filter(|(_, (reason, _))| *reason == UnmappedReason::Unrecognised)
        .map(|(k, _)| k)
        .collect();
    assert!(unrecognised.is_empty(), "{unrecognised:?}");
    // Unmapped ones are named (e.g. 'myocardial infarction (MI)') and counted.
    let mi = report
        .unmapped
        .keys()
        .find(|k| k.contains("164865005"))
        .unwrap();
    assert!(mi.contains("myocardial infarction"), "{mi}");
    assert_eq!(report.unmapped[mi].1, 18);
    assert!(report.mapped > report.unmapped_count());
}

#[test]
fn every_ludb_diagnosis_is_mapped_or_reported_with_a_reason() {
    let h = harmoniser();
    let mut report = UnmappedReport::default();
    for path in ludb_records() {
        let r = wfdb::read_record(&path).unwrap();
        report.add(&h.harmonise(&r.meta.source_labels));
    }
    assert_eq!(report.records, 200);
    // The only unrecognised LUDB diagnoses are the deliberately ambiguous
    // "Undefined ischemia/scar/supp.NSTEMI" family.
    for (label, (reason, _)) in &report.unmapped {
        if *reason == UnmappedReason::Unrecognised {
            assert!(
                label.contains("Undefined ischemia/scar/supp.NSTEMI"),
                "{label}"
            );
        }
    }
    let axis_normal = &report.unmapped["text \"Electric axis of the heart: normal.\""];
    assert_eq!(*axis_normal, (UnmappedReason::NoScpStatement, 75));
}
