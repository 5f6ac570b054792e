//! WFDB features the shared records do not exercise, on files written here: format 212, a
//! record spread over several signal files, byte offsets, units other than mV, invalid samples.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::Lead;
use eknet_shared::wfdb::{self, signal::encode_212};

fn checksum(values: &[i32]) -> i16 {
    values.iter().map(|&v| v as i64).sum::<i64>() as i16
}

#[test]
fn multi_file_record_with_formats_212_and_16() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 7; // odd: the last 212 pair is half full
    // a.dat: I, II in format 212, interleaved; b.dat: V1 in format 16 after a 6-byte preamble, uV.
    let i: Vec<i32> = (0..n).map(|k| k * 100 - 300).collect();
    let ii: Vec<i32> = (0..n).map(|k| 2047 - k * 600).collect();
    let v1: Vec<i32> = (0..n).map(|k| -20000 + k * 5000).collect();
    let interleaved: Vec<i32> = (0..n as usize).flat_map(|k| [i[k], ii[k]]).collect();
    std::fs::write(tmp.path().join("a.dat"), encode_212(&interleaved)).unwrap();
    let mut b = vec![0xAA; 6];
    b.extend(v1.iter().flat_map(|&v| (v as i16).to_le_bytes()));
    std::fs::write(tmp.path().join("b.dat"), b).unwrap();
    let header = format!(
        "multi 3 250 {n}\n\
         a.dat 212 200(10)/mV 12 0 {} {} 0 I\n\
         a.dat 212 200(10)/mV 12 0 {} {} 0 II\n\
         b.dat 16+6 1000/uV 16 0 {} {} 0 V1\n\
         # Age: 60\n",
        i[0],
        checksum(&i),
        ii[0],
        checksum(&ii),
        v1[0],
        checksum(&v1),
    );
    std::fs::write(tmp.path().join("multi.hea"), header).unwrap();
    let r = wfdb::read_record(&tmp.path().join("multi")).unwrap();
    assert_eq!((r.sample_rate_hz(), r.len_samples()), (250.0, n as usize));
    for k in 0..n as usize {
        assert_eq!(
            r.lead(Lead::I).unwrap()[k],
            ((i[k] - 10) as f64 / 200.0) as f32
        );
        assert_eq!(
            r.lead(Lead::II).unwrap()[k],
            ((ii[k] - 10) as f64 / 200.0) as f32
        );
        // 1000 units per uV: mV = d / 1000 / 1000.
        assert_eq!(
            r.lead(Lead::V1).unwrap()[k],
            (v1[k] as f64 / 1000.0 / 1000.0) as f32
        );
    }
    assert_eq!(r.meta.age_years, Some(60.0));
}

#[test]
fn invalid_samples_become_nan_and_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let values: [i16; 4] = [10, -32768, 30, 40];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(tmp.path().join("g.dat"), bytes).unwrap();
    std::fs::write(
        tmp.path().join("g.hea"),
        "g 1 500 4\ng.dat 16 100/mV 16 0 10 -32688 0 II\n",
    )
    .unwrap();
    let r = wfdb::read_record(&tmp.path().join("g")).unwrap();
    let ii = r.lead(Lead::II).unwrap();
    assert_eq!(ii[0], 0.1);
    assert!(ii[1].is_nan());
    assert!(
        r.meta
            .notes
            .iter()
            .any(|n| n.contains("1 sample(s) marked invalid"))
    );
}

#[test]
fn unknown_signal_names_are_listed_not_dropped_silently() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("h.dat"), [0u8; 8]).unwrap();
    std::fs::write(
        tmp.path().join("h.hea"),
        "h 2 500 2\nh.dat 16 200 16 0 0 0 0 II\nh.dat 16 200 16 0 0 0 0 RESP\n",
    )
    .unwrap();
    let r = wfdb::read_record(&tmp.path().join("h")).unwrap();
    assert_eq!(r.meta.ignored_signals, vec!["RESP".to_string()]);
    assert!(r.lead(Lead::II).is_some());
}

#[test]
fn uncalibrated_signal_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("u.dat"), [0u8; 4]).unwrap();
    std::fs::write(
        tmp.path().join("u.hea"),
        "u 1 500 2\nu.dat 16 0/mV 16 0 0 0 0 V2\n",
    )
    .unwrap();
    let e = wfdb::read_record(&tmp.path().join("u")).unwrap_err();
    assert!(
        e.to_string().contains("uncalibrated") && e.to_string().contains("V2"),
        "{e}"
    );
}

#[test]
fn written_records_read_back_to_within_half_a_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = wfdb::read_record(&common_data().join("cinc/records/HR20715")).unwrap();
    wfdb::write_record(&src, tmp.path(), "copy", 1000.0).unwrap();
    let back = wfdb::read_record(&tmp.path().join("copy")).unwrap();
    assert_eq!(
        (back.sample_rate_hz(), back.len_samples()),
        (src.sample_rate_hz(), src.len_samples())
    );
    assert_eq!(
        (back.meta.age_years, back.meta.sex),
        (src.meta.age_years, src.meta.sex)
    );
    for (lead, samples) in src.leads() {
        let b = back.lead(lead).unwrap();
        assert!(
            samples
                .iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 0.0005 + 1e-6),
            "{lead}"
        );
    }
    let mut big = vec![(Lead::II, vec![0.0f32; 3])];
    big[0].1[1] = 40.0; // 40 mV at 1000/mV overflows 16 bits
    let r = eknet_shared::Record::new(Default::default(), 500.0, big).unwrap();
    assert!(wfdb::write_record(&r, tmp.path(), "big", 1000.0).is_err());
}

fn common_data() -> std::path::PathBuf {
    let here = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap()
}
