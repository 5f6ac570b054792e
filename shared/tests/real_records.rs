//! Every real record in `../shared/data` read end to end: values against an independent reading
//! of the raw bytes, LUDB's scaling rule, lead derivation against recorded leads, `.ecgzip`
//! round trips, and the 3x4 tensor against hand-computed slices.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{cinc_records, data_dir, ludb_records, raw16};
use eknet_shared::layout::{SLOT_SAMPLES, SLOTS};
use eknet_shared::lead::derive_lead;
use eknet_shared::preprocess::{WindowOptions, record_windows};
use eknet_shared::wfdb::{self, ReadOptions, Scaling};
use eknet_shared::{Lead, Sex, SourceLabel, ecgzip};
use std::path::Path;

#[test]
fn every_ludb_record_parses_as_digital_over_1000() {
    let records = ludb_records();
    assert_eq!(records.len(), 200, "LUDB has 200 records");
    for path in &records {
        let r = wfdb::read_record(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.sample_rate_hz(), r.len_samples()),
            (500.0, 5000),
            "{}",
            path.display()
        );
        assert!(r.missing_leads().is_empty(), "{}", path.display());
        assert!(r.meta.notes.iter().any(|n| n.contains("digital / 1000")));
        assert!(
            !r.meta.source_labels.is_empty(),
            "{} has diagnoses",
            path.display()
        );
        // Amplitudes in a physiological range: lead II peak-to-peak between 0.1 and 8 mV.
        let ii = r.lead(Lead::II).unwrap();
        let ptp = ii.iter().cloned().fold(f32::MIN, f32::max)
            - ii.iter().cloned().fold(f32::MAX, f32::min);
        assert!(
            (0.1..8.0).contains(&ptp),
            "{}: lead II spans {ptp} mV",
            path.display()
        );
    }
}

#[test]
fn ludb_header_gains_would_erase_amplitude() {
    // The quirk the reader works around: with header gains every lead spans ~1 mV.
    let path = data_dir().join("ludb/data/1");
    let by_header = wfdb::read_record_with(
        &path,
        ReadOptions {
            scaling: Scaling::Header,
            verify_checksums: true,
        },
    )
    .unwrap();
    let ii = by_header.lead(Lead::II).unwrap();
    let ptp =
        ii.iter().cloned().fold(f32::MIN, f32::max) - ii.iter().cloned().fold(f32::MAX, f32::min);
    assert!((ptp - 1.0).abs() < 0.01, "header gain gives {ptp} mV");
    let auto = wfdb::read_record(&path).unwrap();
    let ii = auto.lead(Lead::II).unwrap();
    let ptp =
        ii.iter().cloned().fold(f32::MIN, f32::max) - ii.iter().cloned().fold(f32::MAX, f32::min);
    assert!(
        (ptp - 1.206).abs() < 0.002,
        "digital/1000 gives {ptp} mV (data README: 1.21)"
    );
}

#[test]
fn ludb_values_equal_the_independent_reading() {
    let dir = data_dir().join("ludb/data");
    for (rec, signal, sample) in [
        ("1", 0, 0),
        ("1", 3, 1234),
        ("57", 11, 4999),
        ("200", 6, 2500),
    ] {
        let r = wfdb::read_record(&dir.join(rec)).unwrap();
        let d = raw16(&dir.join(format!("{rec}.dat")), 0, 12, signal, sample);
        let got = r.lead(Lead::ALL[signal]).unwrap()[sample];
        assert_eq!(
            got,
            (d as f64 / 1000.0) as f32,
            "LUDB {rec} signal {signal} sample {sample}"
        );
    }
}

#[test]
fn every_cinc_record_parses() {
    let records = cinc_records();
    assert_eq!(records.len(), 221, "the CinC sample has 221 records");
    let mut rates = std::collections::BTreeSet::new();
    for path in &records {
        let r = wfdb::read_record(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.missing_leads().is_empty(), "{}", path.display());
        assert!(r.duration_s() >= 6.0, "{}", path.display());
        assert!(
            r.meta
                .source_labels
                .iter()
                .all(|l| matches!(l, SourceLabel::Snomed(_))),
            "{}",
            path.display()
        );
        rates.insert(r.sample_rate_hz() as u32);
    }
    assert_eq!(rates.into_iter().collect::<Vec<_>>(), [500, 1000]);
}

#[test]
fn cinc_values_equal_the_independent_reading_across_sources() {
    let dir = data_dir().join("cinc/records");
    // (record, signal, sample): CPSC, Georgia, PTB-XL, Chapman, St Petersburg-ID'd, PTB (1000 Hz),
    // and the `16x1+24` / `1000.0(0)/mV` header variant.
    for (rec, signal, sample) in [
        ("A0001", 0, 0),
        ("A0001", 11, 7499),
        ("E00001", 5, 2500),
        ("HR20715", 3, 999),
        ("JS00001", 7, 4000),
        ("Q0001", 2, 17),
        ("S0001", 9, 38399),
        ("E07500", 1, 4321),
    ] {
        let header = wfdb::read_header(&dir.join(rec)).unwrap();
        let spec = &header.signals[signal];
        assert_eq!(
            spec.byte_offset, 24,
            "{rec}: CinC .mat files are format 16+24"
        );
        let d = raw16(&dir.join(format!("{rec}.mat")), 24, 12, signal, sample);
        let expect = ((d as f64 - spec.baseline as f64) / spec.adc_gain) as f32;
        let r = wfdb::read_record(&dir.join(rec)).unwrap();
        let lead = Lead::parse(&spec.description).unwrap();
        assert_eq!(
            r.lead(lead).unwrap()[sample],
            expect,
            "{rec} {lead} sample {sample}"
        );
    }
}

#[test]
fn cinc_metadata_is_read() {
    let r = wfdb::read_record(&data_dir().join("cinc/records/A0001")).unwrap();
    assert_eq!(r.meta.id, "A0001");
    assert_eq!(r.meta.age_years, Some(74.0));
    assert_eq!(r.meta.sex, Some(Sex::Male));
    assert_eq!(
        r.meta.source_labels,
        vec![SourceLabel::Snomed("59118001".into())]
    );
    let r = wfdb::read_record(&data_dir().join("cinc/records/E00001")).unwrap();
    assert_eq!(
        (r.meta.age_years, r.meta.sex),
        (None, Some(Sex::Female)),
        "Age: NaN"
    );
}

#[test]
fn derived_limb_leads_match_recorded_ones() {
    // Tolerances per source, in mV: LUDB's digital values obey the laws to half a unit (the
    // halving in aVR/aVL/aVF); the CinC sources stored each lead rounded at 1 uV after their own
    // computation, PTB-XL's (HR) with up to a few uV of difference.
    let tolerance = |path: &Path| {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.to_string_lossy().contains("ludb") {
            0.0006
        } else if name.starts_with("HR") {
            0.008
        } else {
            0.004
        }
    };
    for path in ludb_records().iter().chain(cinc_records().iter()) {
        let r = wfdb::read_record(path).unwrap();
        let (i, ii) = (r.lead(Lead::I).unwrap(), r.lead(Lead::II).unwrap());
        for lead in Lead::DERIVABLE {
            let derived = derive_lead(lead, i, ii).unwrap();
            let recorded = r.lead(lead).unwrap();
            let worst = derived
                .iter()
                .zip(recorded)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                worst <= tolerance(path),
                "{} {lead}: derived differs by {worst} mV",
                path.display()
            );
        }
    }
}

#[test]
fn ecgzip_round_trips_every_record_exactly() {
    for path in ludb_records().iter().chain(cinc_records().iter()) {
        let r = wfdb::read_record(path).unwrap();
        // Every record through the JSON text; the gzip layer on every 20th (it is lossless and
        // compressing all 421 records dominates the test's time).
        let back = if path.to_string_lossy().ends_with('0') {
            let bytes = ecgzip::to_bytes(&r);
            ecgzip::from_bytes(&bytes, Path::new("mem.ecgzip"), "x").unwrap()
        } else {
            ecgzip::from_json(&ecgzip::to_json(&r), Path::new("mem.json"), "x").unwrap()
        };
        assert_eq!(back.sample_rate_hz(), r.sample_rate_hz());
        assert_eq!(back.meta.id, r.meta.id);
        assert_eq!(back.meta.source_labels, r.meta.source_labels);
        assert_eq!(
            (back.meta.age_years, back.meta.sex),
            (r.meta.age_years, r.meta.sex)
        );
        for (lead, samples) in r.leads() {
            let b = back.lead(lead).unwrap();
            assert!(
                samples
                    .iter()
                    .zip(b)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} {lead} differs after the round trip",
                path.display()
            );
        }
    }
}

#[test]
fn three_by_four_tensor_of_ludb_1_matches_hand_computed_slices() {
    let dir = data_dir().join("ludb/data");
    let r = wfdb::read_record(&dir.join("1")).unwrap();
    let w = record_windows(&r, WindowOptions::default()).unwrap();
    assert_eq!(w.len(), 1);
    let dat = dir.join("1.dat");
    // (slot, position in slot) -> header signal index and record sample, worked out from
    // the slot table by hand: slot 2 = II_2 = lead II from 1250; slot 6 = aVR from 1250;
    // slot 11 = V3 from 2500; slot 14 = V6 from 3750; slot 4 = II_4 from 3750.
    for (slot, pos, signal, sample) in [
        (0, 0, 0, 0),
        (1, 1249, 1, 1249),
        (2, 0, 1, 1250),
        (4, 1249, 1, 4999),
        (5, 600, 2, 600),
        (6, 10, 3, 1260),
        (8, 1249, 5, 2499),
        (11, 0, 8, 2500),
        (14, 1249, 11, 4999),
    ] {
        let expect = (raw16(&dat, 0, 12, signal, sample) as f64 / 1000.0) as f32;
        assert_eq!(
            w[0].slot(slot)[pos],
            expect,
            "slot {} ({}) pos {pos}",
            slot,
            SLOTS[slot].name
        );
    }
    assert_eq!(w[0].data.len(), 15 * SLOT_SAMPLES);
}

#[test]
fn long_and_1000_hz_records_give_every_window() {
    let dir = data_dir().join("cinc/records");
    // S0001: 38.4 s at 1000 Hz -> 19200 samples at 500 Hz -> windows at 0, 5000, 10000.
    let r = wfdb::read_record(&dir.join("S0001")).unwrap();
    let w = record_windows(&r, WindowOptions::default()).unwrap();
    assert_eq!(
        w.iter().map(|w| w.start_sample).collect::<Vec<_>>(),
        [0, 5000, 10000]
    );
    // Resampling keeps the signal: the window's lead I slot tracks every other input sample.
    let i = r.lead(Lead::I).unwrap();
    let slot = w[1].slot(0);
    let err = (100..1150)
        .map(|k| (slot[k] - i[2 * (5000 + k)]).abs())
        .fold(0.0, f32::max);
    let ptp =
        i.iter().cloned().fold(f32::MIN, f32::max) - i.iter().cloned().fold(f32::MAX, f32::min);
    assert!(
        err < 0.1 * ptp,
        "resampled lead I strays {err} mV from the original (range {ptp})"
    );
    // A 2.5 s stride on a 15 s, 500 Hz record.
    let r = wfdb::read_record(&dir.join("A0001")).unwrap();
    let w = record_windows(
        &r,
        WindowOptions {
            stride_samples: 1250,
            pad_short: false,
        },
    )
    .unwrap();
    assert_eq!(
        w.iter().map(|w| w.start_sample).collect::<Vec<_>>(),
        [0, 1250, 2500]
    );
}
