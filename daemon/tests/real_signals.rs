//! Heart rate and lead quality on the shared LUDB records: the measured rate agrees with each
//! record's rhythm diagnosis, and clean clinical recordings pass the quality checks.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::quality::{LeadQuality, heart_rate_bpm, window_quality};
use eknet_shared::{Lead, SourceLabel, wfdb};
use std::path::PathBuf;

fn ludb() -> Vec<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = eknet_shared::data::require_data_dir(&here)
        .unwrap_or_else(|e| panic!("{e}"))
        .join("ludb/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hea"))
        .map(|p| p.with_extension(""))
        .collect();
    v.sort();
    v
}

#[test]
fn heart_rate_agrees_with_the_rhythm_diagnosis() {
    let (mut checked, mut agree) = (0, 0);
    let mut disagreements = Vec::new();
    let mut ok_leads = 0;
    let mut bad = Vec::new();
    for path in ludb() {
        let r = wfdb::read_record(&path).unwrap();
        let rhythm = r.meta.source_labels.iter().find_map(|l| match l {
            SourceLabel::Text(t) if t.starts_with("Rhythm:") => Some(t.clone()),
            _ => None,
        });
        let leads: [&[f32]; 12] = std::array::from_fn(|i| r.lead(Lead::ALL[i]).unwrap());
        for (lead, q) in window_quality(leads) {
            match q {
                LeadQuality::Ok => ok_leads += 1,
                LeadQuality::Bad { reason } => bad.push(format!("{} {lead}: {reason}", r.meta.id)),
            }
        }
        let Some(hr) = heart_rate_bpm(r.lead(Lead::II).unwrap()) else {
            continue;
        };
        let expected: Option<(f64, f64)> = match rhythm.as_deref() {
            Some("Rhythm: Sinus bradycardia.") => Some((20.0, 62.0)),
            Some("Rhythm: Sinus tachycardia.") => Some((95.0, 220.0)),
            Some("Rhythm: Sinus rhythm.") => Some((50.0, 105.0)),
            _ => None,
        };
        if let Some((lo, hi)) = expected {
            checked += 1;
            if (lo..=hi).contains(&hr) {
                agree += 1;
            } else {
                disagreements.push(format!("{} {:?}: {hr:.0} bpm", r.meta.id, rhythm));
            }
        }
    }
    println!(
        "heart rate agrees with the rhythm label on {agree}/{checked}; disagreements: {disagreements:?}"
    );
    println!(
        "{ok_leads} of {} leads pass the quality checks; failures: {bad:?}",
        200 * 12
    );
    assert!(checked >= 160);
    assert!(
        agree as f64 >= 0.95 * checked as f64,
        "{agree}/{checked}: {disagreements:?}"
    );
    assert!(ok_leads as f64 >= 0.97 * 2400.0, "{ok_leads}/2400: {bad:?}");
}
