//! The seed's `.ecgzip` records: gzip-compressed JSON with one key per lead, each either
//! `{"value": [mV, ...]}` or (older form) a bare list. Reader and writer.
//!
//! The seed's files carry no sampling rate: they are PTB-XL `records500`, so a file without
//! metadata is read as 500 Hz (and says so in the record's notes). Files written here add one
//! extra key, `"eknet_meta"`, holding rate, id, age, sex and source labels; the seed's loader reads
//! leads by name and never sees it.

use crate::lead::Lead;
use crate::record::{Record, RecordError, RecordMeta, Sex, SourceLabel};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The sampling rate of a seed file that does not state one.
pub const SEED_RATE_HZ: f64 = 500.0;
/// The key under which this project stores metadata in an `.ecgzip`.
pub const META_KEY: &str = "eknet_meta";

/// What can go wrong reading or writing an `.ecgzip`. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum EcgzipError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not gzip, or the gzip stream is damaged.
    #[error("{path}: not a valid gzip stream: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The decompressed text is not JSON.
    #[error("{path}: gzip content is not JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// JSON of the wrong shape.
    #[error("{path}: {what}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        what: String,
    },
    /// The leads do not form a record.
    #[error("{path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: RecordError,
    },
}

/// Metadata this project stores beside the leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcgzipMeta {
    /// Sampling rate in hertz.
    pub sample_rate_hz: f64,
    /// Record id.
    #[serde(default)]
    pub id: String,
    /// Age in years.
    #[serde(default)]
    pub age_years: Option<f32>,
    /// Sex.
    #[serde(default)]
    pub sex: Option<Sex>,
    /// Source labels.
    #[serde(default)]
    pub source_labels: Vec<SourceLabel>,
}

/// Reads an `.ecgzip` file.
pub fn read(path: &Path) -> Result<Record, EcgzipError> {
    let bytes = std::fs::read(path).map_err(|source| EcgzipError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    from_bytes(&bytes, path, &id)
}

/// Parses `.ecgzip` bytes; `path` names the source in errors, `id` is used when the file does
/// not carry one.
pub fn from_bytes(bytes: &[u8], path: &Path, id: &str) -> Result<Record, EcgzipError> {
    let mut json = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut json)
        .map_err(|source| EcgzipError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    from_json(&json, path, id)
}

/// Why a request body (the daemon's `POST /v1/classify`) is not a record.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Declared or detected gzip that does not decompress.
    #[error("body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    /// Decompresses to more than the limit.
    #[error("decompressed body exceeds {0} bytes")]
    TooLarge(u64),
    /// Plain bytes that are not UTF-8.
    #[error("body is neither UTF-8 JSON nor gzip")]
    NotUtf8,
    /// JSON that is not a record (malformed, wrong shape, bad rate or leads).
    #[error(transparent)]
    Record(#[from] EcgzipError),
}

/// Reads a request body (plain JSON, or gzip when `gzip`) as a record named `upload`: at most
/// `max_decompressed` bytes are inflated, whatever the body claims. The daemon's upload path and
/// its fuzz target both call this.
pub fn from_body(body: &[u8], gzip: bool, max_decompressed: u64) -> Result<Record, BodyError> {
    let json = if gzip {
        let mut out = String::new();
        GzDecoder::new(body)
            .take(max_decompressed.saturating_add(1))
            .read_to_string(&mut out)
            .map_err(BodyError::Gzip)?;
        if out.len() as u64 > max_decompressed {
            return Err(BodyError::TooLarge(max_decompressed));
        }
        out
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| BodyError::NotUtf8)?
    };
    Ok(from_json(&json, Path::new("request body"), "upload")?)
}

/// Parses the decompressed JSON text of an `.ecgzip` (also the body of the daemon's classify
/// request).
pub fn from_json(json: &str, path: &Path, id: &str) -> Result<Record, EcgzipError> {
    let shape = |what: String| EcgzipError::Shape {
        path: path.to_path_buf(),
        what,
    };
    let value: Value = serde_json::from_str(json).map_err(|source| EcgzipError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Object(map) = value else {
        return Err(shape("top level is not a JSON object of leads".into()));
    };
    let mut meta = RecordMeta {
        id: id.to_string(),
        ..RecordMeta::default()
    };
    let mut rate = None;
    let mut leads = Vec::new();
    for (key, v) in map {
        if key == META_KEY {
            let m: EcgzipMeta =
                serde_json::from_value(v).map_err(|e| shape(format!("key '{META_KEY}': {e}")))?;
            rate = Some(m.sample_rate_hz);
            if !m.id.is_empty() {
                meta.id = m.id;
            }
            meta.age_years = m.age_years;
            meta.sex = m.sex;
            meta.source_labels = m.source_labels;
            continue;
        }
        let Some(lead) = Lead::parse(&key) else {
            meta.ignored_signals.push(key);
            continue;
        };
        let list = match v {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("value") {
                Some(Value::Array(a)) => a,
                _ => {
                    return Err(shape(format!(
                        "lead '{key}': expected {{\"value\": [numbers]}} or a list of numbers"
                    )));
                }
            },
            _ => {
                return Err(shape(format!(
                    "lead '{key}': expected {{\"value\": [numbers]}} or a list of numbers"
                )));
            }
        };
        let samples = list
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f as f32)
                    .ok_or_else(|| shape(format!("lead '{key}' sample {i}: {x} is not a number")))
            })
            .collect::<Result<Vec<f32>, _>>()?;
        leads.push((lead, samples));
    }
    let rate = match rate {
        Some(r) => r,
        None => {
            meta.notes.push(format!(
                "no sampling rate in file: {SEED_RATE_HZ} Hz assumed (the seed's PTB-XL records500)"
            ));
            SEED_RATE_HZ
        }
    };
    meta.notes
        .push("seed .ecgzip record (gzip JSON, mV)".into());
    Record::new(meta, rate, leads).map_err(|source| EcgzipError::Record {
        path: path.to_path_buf(),
        source,
    })
}

/// Serialises a record's leads (in conventional order) and metadata as `.ecgzip` JSON text.
pub fn to_json(record: &Record) -> String {
    let mut out = String::from("{");
    for (lead, samples) in record.leads() {
        // serde_json writes each f32 in its shortest form that reads back to the same f32.
        let list = serde_json::to_string(samples).unwrap_or_else(|_| "[]".into());
        out.push_str(&format!("\"{}\":{{\"value\":{list}}},", lead.name()));
    }
    let meta = EcgzipMeta {
        sample_rate_hz: record.sample_rate_hz(),
        id: record.meta.id.clone(),
        age_years: record.meta.age_years,
        sex: record.meta.sex,
        source_labels: record.meta.source_labels.clone(),
    };
    let meta = serde_json::to_string(&meta).unwrap_or_else(|_| "{}".into());
    out.push_str(&format!("\"{META_KEY}\":{meta}}}"));
    out
}

/// Gzip-compresses [`to_json`]'s text.
pub fn to_bytes(record: &Record) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(to_json(record).as_bytes());
    enc.finish().unwrap_or_default()
}

/// Writes a record as an `.ecgzip` file (written to a temporary name, then renamed, so a crash
/// never leaves half a file under the final name).
pub fn write(record: &Record, path: &Path) -> Result<(), EcgzipError> {
    let io = |source| EcgzipError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, to_bytes(record)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(text: &str) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_both_seed_forms() {
        let p = Path::new("x.ecgzip");
        let new = from_bytes(
            &gz(r#"{"I": {"value": [0.5, -1]}, "avr": {"value": [2, 3]}}"#),
            p,
            "x",
        )
        .unwrap();
        assert_eq!(new.lead(Lead::I).unwrap(), &[0.5, -1.0]);
        assert_eq!(new.lead(Lead::AVR).unwrap(), &[2.0, 3.0]);
        assert_eq!(new.sample_rate_hz(), SEED_RATE_HZ);
        assert!(new.meta.notes.iter().any(|n| n.contains("assumed")));
        let old = from_bytes(&gz(r#"{"I": [1, 2], "II": [3, 4]}"#), p, "x").unwrap();
        assert_eq!(old.lead(Lead::II).unwrap(), &[3.0, 4.0]);
    }

    #[test]
    fn bad_content_is_a_clear_error() {
        let p = Path::new("bad.ecgzip");
        let e = from_bytes(b"plain text", p, "b").unwrap_err();
        assert!(matches!(e, EcgzipError::Gzip { .. }), "{e}");
        let e = from_bytes(&gz("not json {"), p, "b").unwrap_err();
        assert!(matches!(e, EcgzipError::Json { .. }), "{e}");
        assert!(e.to_string().contains("bad.ecgzip"), "{e}");
        let e = from_bytes(&gz(r#"{"I": {"value": [1, "x"]}}"#), p, "b").unwrap_err();
        assert!(e.to_string().contains("lead 'I' sample 1"), "{e}");
        let e = from_bytes(&gz(r#"{"I": 3}"#), p, "b").unwrap_err();
        assert!(e.to_string().contains("lead 'I'"), "{e}");
        let e = from_bytes(&gz("[1, 2]"), p, "b").unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        let e = from_bytes(&gz(r#"{"I": [1, 2], "II": [1]}"#), p, "b").unwrap_err();
        assert!(matches!(e, EcgzipError::Record { .. }), "{e}");
        let e = from_bytes(&gz(r#"{"I": [1], "eknet_meta": {"rate": 3}}"#), p, "b").unwrap_err();
        assert!(e.to_string().contains("eknet_meta"), "{e}");
    }
}
