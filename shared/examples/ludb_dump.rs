//! Writes LUDB's 200 records as the learned delineator's training data: per record the twelve
//! baseline-removed leads exactly as the measurement engine prepares them (`N.f32`, lead-major,
//! little-endian f32, mV), the global reference waves and each lead's own (`reference.json`).
//! `cargo run --release -p eknet-shared --example ludb_dump -- OUT_DIR`.

use eknet_shared::Lead;
use eknet_shared::measure::delineate::prepare;
use eknet_shared::measure::reference::{global_reference, ludb_lead_waves};
use eknet_shared::wfdb::annotation::WaveKind;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: ludb_dump OUT_DIR");
        return ExitCode::FAILURE;
    };
    let out = std::path::PathBuf::from(out);
    let here = std::env::current_dir().unwrap_or_default();
    let data = match eknet_shared::data::require_data_dir(&here) {
        Ok(d) => d.join("ludb").join("data"),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("{}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let mut refs = serde_json::Map::new();
    for k in 1..=200 {
        let path = data.join(k.to_string());
        let (record, lead_waves) = match (
            eknet_shared::wfdb::read_record(&path),
            ludb_lead_waves(&path),
        ) {
            (Ok(r), Ok(a)) => (r, a),
            (Err(e), _) => {
                eprintln!("record {k}: {e}");
                return ExitCode::FAILURE;
            }
            (_, Err(e)) => {
                eprintln!("record {k}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let leads: Vec<&[f32]> = match Lead::ALL
            .iter()
            .map(|&l| record.lead(l))
            .collect::<Option<Vec<_>>>()
        {
            Some(l) => l,
            None => {
                eprintln!("record {k}: missing leads");
                return ExitCode::FAILURE;
            }
        };
        let prepared = prepare(&leads, record.sample_rate_hz());
        let mut bytes = Vec::new();
        for lead in &prepared.base {
            for v in lead {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        let file = out.join(format!("{k}.f32"));
        if let Err(e) = std::fs::File::create(&file).and_then(|mut f| f.write_all(&bytes)) {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
        // Each lead's own waves, `[kind, onset, peak, offset]`, for per-lead targets.
        let reference = global_reference(&lead_waves);
        let mut per_lead = Vec::new();
        for waves in &lead_waves {
            let rows: Vec<serde_json::Value> = waves
                .iter()
                .map(|w| {
                    let kind = match w.kind {
                        WaveKind::P => "p",
                        WaveKind::Qrs => "qrs",
                        WaveKind::T => "t",
                    };
                    serde_json::json!([kind, w.onset, w.peak, w.offset])
                })
                .collect();
            per_lead.push(serde_json::Value::Array(rows));
        }
        match serde_json::to_value(&reference) {
            Ok(mut v) => {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("leads".into(), serde_json::Value::Array(per_lead));
                }
                refs.insert(k.to_string(), v);
            }
            Err(e) => {
                eprintln!("record {k}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let file = out.join("reference.json");
    match serde_json::to_string(&refs) {
        Ok(s) => {
            if let Err(e) = std::fs::write(&file, s) {
                eprintln!("{}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    println!("wrote 200 records to {}", out.display());
    ExitCode::SUCCESS
}
