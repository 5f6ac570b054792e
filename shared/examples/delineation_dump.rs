//! Writes, for any records (WFDB, CinC `.mat`, `.ecgzip`), the rule-based delineator's beats and
//! the embedded learned delineator's labels of each of the twelve leads as JSON (`DIR/NAME.json`,
//! the form of `ludb_delineation`'s `LUDB_DUMP`, with `path` and an empty reference), for trying
//! other uses of the network outside Rust (`tools/delineator/combine.py`).
//! `cargo run --release -p eknet-shared --example delineation_dump -- DIR RECORD...`.

use eknet_shared::measure::DelineationParams;
use eknet_shared::measure::learned::Delineator;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(std::path::PathBuf::from) else {
        eprintln!("usage: delineation_dump DIR RECORD...");
        return ExitCode::FAILURE;
    };
    let net = match Delineator::embedded() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("learned delineator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut failures = 0;
    for a in args {
        if let Err(e) = dump(&dir, net, &a) {
            eprintln!("{a}: {e}");
            failures += 1;
        }
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn dump(dir: &std::path::Path, net: &Delineator, a: &str) -> Result<(), String> {
    let path = std::path::Path::new(a);
    let record = eknet_shared::io::read_any(path).map_err(|e| e.to_string())?;
    let record = eknet_shared::preprocess::to_model_rate(&record).map_err(|e| e.to_string())?;
    let rule = DelineationParams {
        learned: false,
        ..DelineationParams::default()
    };
    let m = eknet_shared::measure::measure_using(&record, &rule, None);
    let beats: Vec<[Option<usize>; 6]> = m
        .beats
        .iter()
        .map(|b| [Some(b.r), b.p_on, b.p_off, b.qrs_on, b.qrs_off, b.t_off])
        .collect();
    let failed: Vec<String> = m.lead_quality.iter().map(|q| q.lead.to_string()).collect();
    let leads: Vec<&[f32]> = eknet_shared::Lead::ALL
        .iter()
        .map(|&l| record.lead(l))
        .collect::<Option<_>>()
        .ok_or("a lead is missing")?;
    let prepared = eknet_shared::measure::delineate::prepare(&leads, 500.0);
    let input: [&[f32]; 12] = std::array::from_fn(|i| prepared.base[i].as_slice());
    let labels: Vec<String> = net
        .labels(&input)
        .iter()
        .map(|row| row.iter().map(|c| char::from(b'0' + c)).collect())
        .collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or("no file name")?;
    let json = serde_json::json!({
        "record": name,
        "path": a,
        "beats": beats,
        "failed": failed,
        "labels": labels,
        "reference": [[], [], [], [], []],
        "span": null,
    });
    std::fs::write(dir.join(format!("{name}.json")), json.to_string()).map_err(|e| e.to_string())
}
