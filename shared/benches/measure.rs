//! The measurement engine's cost on one 10 s, 12-lead, 500 Hz record: LUDB record 1 when the
//! shared data folder is present, else a synthetic P-QRS-T train (75 bpm, 10 uV noise).
//! The whole measurement (all leads, and with V4-V6 flat as when their electrodes are off), and
//! the learned delineator's networks alone.
//! `cargo bench -p eknet-shared --bench measure`.

#![allow(clippy::unwrap_used, missing_docs)] // a bench: a panic is the failure report

use criterion::{Criterion, criterion_group, criterion_main};
use eknet_shared::measure::delineate::prepare;
use eknet_shared::measure::learned::Delineator;
use eknet_shared::measure::measure;
use eknet_shared::rng::Rng;
use eknet_shared::{Lead, Record, RecordMeta};
use std::hint::black_box;
use std::path::PathBuf;

const RATE: f64 = 500.0;

/// A Hann pulse from `start` to `end` seconds, peak `amp`.
fn hann(t: f64, start: f64, end: f64, amp: f64) -> f64 {
    if t <= start || t >= end {
        0.0
    } else {
        amp * 0.5 * (1.0 - (2.0 * std::f64::consts::PI * (t - start) / (end - start)).cos())
    }
}

/// Twelve leads of a regular P-QRS-T train, each lead a differently scaled copy.
fn synthetic() -> Record {
    let n = (10.0 * RATE) as usize;
    let mut rng = Rng::new(7);
    let r_times: Vec<f64> = (0..12).map(|k| 0.5 + 0.8 * k as f64).collect();
    let leads = Lead::ALL
        .iter()
        .enumerate()
        .map(|(j, &lead)| {
            let g = 1.0 - 0.15 * j as f64;
            let x = (0..n)
                .map(|i| {
                    let t = i as f64 / RATE;
                    let mut v = 0.01 * rng.normal();
                    for &r in &r_times {
                        v += g * hann(t, r - 0.2, r - 0.1, 0.15);
                        v += g * hann(t, r - 0.04, r + 0.045, 1.2);
                        v += g * hann(t, r + 0.15, r + 0.33, 0.35);
                    }
                    v as f32
                })
                .collect();
            (lead, x)
        })
        .collect();
    Record::new(RecordMeta::default(), RATE, leads).unwrap()
}

fn record() -> (String, Record) {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(data) = eknet_shared::data::find_data_dir(&here) {
        let path = data.join("ludb").join("data").join("1");
        if let Ok(r) = eknet_shared::wfdb::read_record(&path) {
            return ("ludb_1".to_string(), r);
        }
    }
    ("synthetic".to_string(), synthetic())
}

fn bench(c: &mut Criterion) {
    let (name, r) = record();
    assert_eq!(r.sample_rate_hz(), RATE);
    assert!(measure(&r).qrs_ms.is_some());
    c.bench_function(&format!("measure_10s_12lead_500hz/{name}"), |b| {
        b.iter(|| measure(black_box(&r)))
    });
    // Three electrodes off (V4-V6 flat): those leads fail quality and the one-lead network
    // skips them.
    let off = [Lead::V4, Lead::V5, Lead::V6];
    let leads_off = r
        .leads()
        .map(|(l, x)| {
            let x = if off.contains(&l) {
                vec![0.0; x.len()]
            } else {
                x.to_vec()
            };
            (l, x)
        })
        .collect();
    let r_off = Record::new(RecordMeta::default(), RATE, leads_off).unwrap();
    let m = measure(&r_off);
    assert_eq!(m.lead_quality.len(), 3, "{:?}", m.lead_quality);
    assert!(m.qrs_ms.is_some());
    c.bench_function(&format!("measure_10s_12lead_500hz_v4_v6_off/{name}"), |b| {
        b.iter(|| measure(black_box(&r_off)))
    });
    // The learned delineator's share: its networks on the twelve prepared leads.
    let signals: Vec<&[f32]> = Lead::ALL.iter().map(|&l| r.lead(l).unwrap()).collect();
    let prepared = prepare(&signals, RATE);
    let leads: [&[f32]; 12] = std::array::from_fn(|i| prepared.base[i].as_slice());
    let net = Delineator::embedded().unwrap();
    c.bench_function(
        &format!("learned_delineator_10s_12lead_500hz/{name}"),
        |b| b.iter(|| net.labels(black_box(&leads))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
