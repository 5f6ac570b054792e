//! Writes, for any records (WFDB, CinC `.mat`, `.ecgzip`), the rule-based delineator's beats and
//! the embedded learned delineator's labels of each of the twelve leads as JSON (`DIR/NAME.json`,
//! the form of `ludb_delineation`'s `LUDB_DUMP`, with `path` and an empty reference), for trying
//! other uses of the network outside Rust (`tools/delineator/combine.py`).
//! `cargo run --release -p eknet-shared --example delineation_dump -- DIR RECORD...`.

use eknet_shared::measure::DelineationParams;
use eknet_shared::measure::learned::Delineator;
use std::process::ExitCode;

mod common;

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
    let mut fields = common::delineation_fields(&record, &DelineationParams::default(), Some(net))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or("no file name")?;
    fields.insert("record".into(), serde_json::json!(name));
    fields.insert("path".into(), serde_json::json!(a));
    fields.insert("reference".into(), serde_json::json!([[], [], [], [], []]));
    fields.insert("span".into(), serde_json::Value::Null);
    let json = serde_json::Value::Object(fields).to_string();
    std::fs::write(dir.join(format!("{name}.json")), json).map_err(|e| e.to_string())
}
