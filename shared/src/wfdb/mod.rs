//! WFDB records: header parsing ([`header`]), signal decoding ([`signal`]) and conversion to a
//! [`Record`] in millivolts, including the CinC `.mat` files (format `16+24`) and LUDB's gain
//! quirk (see [`Scaling`]); annotation files in [`annotation`].

pub mod annotation;
pub mod header;
pub mod signal;

pub use header::{Header, SignalSpec, parse_header};

use crate::lead::Lead;
use crate::record::{Record, RecordError, RecordMeta, Sex, SourceLabel};
use std::path::{Path, PathBuf};

/// Everything that can go wrong reading a WFDB record. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WfdbError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A header field is malformed or inconsistent.
    #[error("{file} line {line}: bad {field} '{value}': {reason}")]
    Header {
        /// The header file.
        file: String,
        /// 1-based line number (0 when the file has no lines).
        line: usize,
        /// The field's name.
        field: &'static str,
        /// The offending text (first 80 characters).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The header asks for something this reader does not implement.
    #[error("{file}: signal {signal} ({description}): {what} is not supported")]
    Unsupported {
        /// The header file.
        file: String,
        /// 0-based signal number.
        signal: usize,
        /// The signal's description.
        description: String,
        /// What is unsupported.
        what: String,
    },
    /// A signal file holds fewer samples than the header declares.
    #[error(
        "{path}: header declares {expected} samples per signal but the file holds only {found} \
         (field: number of samples)"
    )]
    Truncated {
        /// The signal file.
        path: PathBuf,
        /// Samples per signal the header declares.
        expected: usize,
        /// Whole samples per signal the file holds.
        found: usize,
    },
    /// A signal's samples do not add up to the header's checksum.
    #[error(
        "{path}: signal {signal} ({description}): checksum mismatch, header says {expected}, \
         data sums to {found} (field: checksum)"
    )]
    Checksum {
        /// The signal file.
        path: PathBuf,
        /// 0-based signal number.
        signal: usize,
        /// The signal's description.
        description: String,
        /// Header checksum.
        expected: i64,
        /// Computed 16-bit sum.
        found: i64,
    },
    /// A signal cannot be converted to millivolts.
    #[error("{file}: signal {signal} ({description}): {reason}")]
    Calibration {
        /// The header file.
        file: String,
        /// 0-based signal number.
        signal: usize,
        /// The signal's description.
        description: String,
        /// Why.
        reason: String,
    },
    /// The signals do not form a valid record.
    #[error("{file}: {source}")]
    Record {
        /// The header file.
        file: String,
        /// The record-level problem.
        source: RecordError,
    },
}

/// How digital values become millivolts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    /// Use the header's gain and baseline, except for records in LUDB's layout (recognised by
    /// their `#<diagnoses>:` comment), which are read as [`Scaling::DigitalPerMillivolt`]`(1000.0)`.
    Auto,
    /// Always `(digital - baseline) / gain`, in the header's units, converted to mV.
    Header,
    /// `digital / units_per_mv`, ignoring the header's gain and baseline.
    DigitalPerMillivolt(f64),
}

/// Options for [`read_record_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadOptions {
    /// How to scale.
    pub scaling: Scaling,
    /// Check each signal's 16-bit checksum where the header gives one.
    pub verify_checksums: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            scaling: Scaling::Auto,
            verify_checksums: true,
        }
    }
}

/// LUDB's header gains equal each lead's own peak-to-peak value; its digital values share one
/// scale of 1000 units per millivolt (`../shared/data/README.md`, "Gain quirk").
pub const LUDB_UNITS_PER_MV: f64 = 1000.0;

/// The header path of a record given with or without the `.hea` extension.
pub fn header_path(record: &Path) -> PathBuf {
    if record.extension().is_some_and(|e| e == "hea") {
        record.to_path_buf()
    } else {
        let mut s = record.as_os_str().to_owned();
        s.push(".hea");
        PathBuf::from(s)
    }
}

/// Reads and parses a record's header.
pub fn read_header(record: &Path) -> Result<Header, WfdbError> {
    let path = header_path(record);
    let bytes = std::fs::read(&path).map_err(|source| WfdbError::Io {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse_header(&text, &path.display().to_string())
}

/// Reads a WFDB record (path without extension, or the `.hea` path) with default options.
pub fn read_record(record: &Path) -> Result<Record, WfdbError> {
    read_record_with(record, ReadOptions::default())
}

/// Reads a WFDB record into millivolts.
pub fn read_record_with(record: &Path, opts: ReadOptions) -> Result<Record, WfdbError> {
    let hea = header_path(record);
    let header = read_header(record)?;
    let dir = hea.parent().unwrap_or(Path::new("."));
    let file = hea.display().to_string();
    let digital = signal::read_signals(&header, dir, opts.verify_checksums, &file)?;
    let mut meta = parse_comments(&header.comments);
    meta.id = header.record_name.clone();
    let ludb = is_ludb(&header.comments);
    let scaling = match opts.scaling {
        Scaling::Auto if ludb => Scaling::DigitalPerMillivolt(LUDB_UNITS_PER_MV),
        Scaling::Auto => Scaling::Header,
        s => s,
    };
    meta.notes.push(format!(
        "WFDB record, {} signal(s), format(s) {}",
        header.signals.len(),
        formats(&header)
    ));
    if let Scaling::DigitalPerMillivolt(per_mv) = scaling {
        if ludb && opts.scaling == Scaling::Auto {
            meta.notes.push(format!(
                "LUDB layout: header gains (each lead's own peak-to-peak) and baselines ignored; \
                 millivolts = digital / {per_mv}"
            ));
        } else {
            meta.notes.push(format!(
                "header gains ignored; millivolts = digital / {per_mv}"
            ));
        }
    }

    let mut leads = Vec::new();
    let mut invalid = 0usize;
    for (idx, (spec, values)) in header.signals.iter().zip(digital).enumerate() {
        let Some(lead) = Lead::parse(&spec.description) else {
            let name = if spec.description.is_empty() {
                format!("signal {idx} (no description)")
            } else {
                spec.description.clone()
            };
            meta.ignored_signals.push(name);
            continue;
        };
        let calib = |reason: String| WfdbError::Calibration {
            file: file.clone(),
            signal: idx,
            description: spec.description.clone(),
            reason,
        };
        let to_mv = units_to_mv(&spec.units).ok_or_else(|| {
            calib(format!(
                "units '{}' are not a voltage (field: units)",
                spec.units
            ))
        })?;
        let (offset, per_mv) = match scaling {
            Scaling::DigitalPerMillivolt(per_mv) => (0.0, per_mv),
            _ if spec.adc_gain == 0.0 => {
                return Err(calib(
                    "ADC gain 0 means uncalibrated: its samples have no millivolt value".into(),
                ));
            }
            _ => (spec.baseline as f64, spec.adc_gain / to_mv),
        };
        let invalid_value = signal::invalid_sample(spec.format);
        let samples: Vec<f32> = values
            .iter()
            .map(|&d| {
                if Some(d) == invalid_value {
                    invalid += 1;
                    f32::NAN
                } else {
                    ((d as f64 - offset) / per_mv) as f32
                }
            })
            .collect();
        leads.push((lead, samples));
    }
    if invalid > 0 {
        meta.notes.push(format!(
            "{invalid} sample(s) marked invalid by the format's sentinel are NaN"
        ));
    }
    Record::new(meta, header.sample_rate_hz, leads)
        .map_err(|source| WfdbError::Record { file, source })
}

fn formats(h: &Header) -> String {
    let mut f: Vec<String> = h
        .signals
        .iter()
        .map(|s| {
            if s.byte_offset > 0 {
                format!("{}+{}", s.format, s.byte_offset)
            } else {
                s.format.to_string()
            }
        })
        .collect();
    f.dedup();
    f.join(", ")
}

/// Millivolts per one of `units`, for voltage units.
fn units_to_mv(units: &str) -> Option<f64> {
    match units.trim() {
        u if u.eq_ignore_ascii_case("mv") => Some(1.0),
        u if u.eq_ignore_ascii_case("uv") || u == "µV" || u == "μV" => Some(1e-3),
        "V" | "v" => Some(1e3),
        "nV" | "nv" => Some(1e-6),
        _ => None,
    }
}

fn is_ludb(comments: &[String]) -> bool {
    comments
        .iter()
        .any(|c| c.to_ascii_lowercase().starts_with("<diagnoses>"))
}

/// Extracts age, sex and diagnostic labels from header comments in the CinC form (`#Age: 74`,
/// `#Sex: Male`, `#Dx: 59118001,164884008`, and CPSC 2018's original class names on
/// `#Dx_CPSC2018: RBBB,AF`) or the LUDB form (`#<age>: 51`, `#<sex>: F`,
/// `#<diagnoses>:` followed by one diagnosis per comment line).
pub fn parse_comments(comments: &[String]) -> RecordMeta {
    let mut meta = RecordMeta::default();
    let mut in_diagnoses = false;
    for comment in comments {
        // LUDB occasionally puts two diagnoses on one line, separated by '#'.
        for part in comment.split('#').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once(':') {
                Some((k, v)) => (
                    k.trim().trim_matches(['<', '>']).to_ascii_lowercase(),
                    v.trim(),
                ),
                None => (String::new(), part),
            };
            match key.as_str() {
                "age" => {
                    meta.age_years = value.parse::<f32>().ok().filter(|a| a.is_finite());
                    if meta.age_years.is_none() && !value.eq_ignore_ascii_case("nan") {
                        meta.notes.push(format!("age given as '{value}'"));
                    }
                }
                "sex" => meta.sex = Sex::parse(value),
                "dx" => meta.source_labels.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|c| SourceLabel::Snomed(c.to_string())),
                ),
                "dx_cpsc2018" => meta.source_labels.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|c| SourceLabel::Cpsc2018(c.to_string())),
                ),
                "diagnoses" => in_diagnoses = true,
                _ if in_diagnoses => meta.source_labels.push(SourceLabel::Text(part.to_string())),
                _ => {}
            }
        }
    }
    meta
}

/// Writes a record as WFDB format 16 (`NAME.hea` + `NAME.dat` in `dir`), leads in conventional
/// order, `units_per_mv` ADC units per millivolt, baseline 0, with checksums. Values outside the
/// 16-bit range are an error (they would wrap); NaN samples are written as format 16's invalid
/// sentinel. Used to build fixtures in the layouts PhysioNet publishes.
pub fn write_record(
    record: &Record,
    dir: &Path,
    name: &str,
    units_per_mv: f64,
) -> Result<(), WfdbError> {
    let dat_name = format!("{name}.dat");
    let leads: Vec<(Lead, &[f32])> = record.leads().collect();
    let n = record.len_samples();
    let mut digital: Vec<Vec<i16>> = Vec::with_capacity(leads.len());
    for (idx, (lead, samples)) in leads.iter().enumerate() {
        let column = samples
            .iter()
            .map(|&v| {
                if v.is_nan() {
                    return Ok(i16::MIN);
                }
                let d = (v as f64 * units_per_mv).round();
                if d <= i16::MIN as f64 || d > i16::MAX as f64 {
                    return Err(WfdbError::Calibration {
                        file: dat_name.clone(),
                        signal: idx,
                        description: lead.name().to_string(),
                        reason: format!("{v} mV does not fit format 16 at {units_per_mv}/mV"),
                    });
                }
                Ok(d as i16)
            })
            .collect::<Result<Vec<i16>, _>>()?;
        digital.push(column);
    }
    let mut bytes = Vec::with_capacity(n * leads.len() * 2);
    for k in 0..n {
        for column in &digital {
            bytes.extend_from_slice(&column[k].to_le_bytes());
        }
    }
    let mut header = format!("{name} {} {} {n}\n", leads.len(), record.sample_rate_hz());
    for ((lead, _), column) in leads.iter().zip(&digital) {
        let checksum = column.iter().map(|&v| v as i64).sum::<i64>() as i16;
        let first = column.first().copied().unwrap_or(0);
        header.push_str(&format!(
            "{dat_name} 16 {units_per_mv}(0)/mV 16 0 {first} {checksum} 0 {}\n",
            lead.name()
        ));
    }
    if let Some(age) = record.meta.age_years {
        header.push_str(&format!("# Age: {age}\n"));
    }
    if let Some(sex) = record.meta.sex {
        header.push_str(&format!("# Sex: {sex:?}\n"));
    }
    let io = |path: PathBuf| move |source| WfdbError::Io { path, source };
    let dat = dir.join(&dat_name);
    std::fs::write(&dat, bytes).map_err(io(dat.clone()))?;
    let hea = dir.join(format!("{name}.hea"));
    std::fs::write(&hea, header).map_err(io(hea.clone()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_give_metadata_in_both_forms() {
        let cinc: Vec<String> = [
            "Age: 74",
            "Sex: Male",
            "Dx: 59118001, 164884008",
            "Rx: Unknown",
        ]
        .map(String::from)
        .to_vec();
        let m = parse_comments(&cinc);
        assert_eq!(m.age_years, Some(74.0));
        assert_eq!(m.sex, Some(Sex::Male));
        assert_eq!(
            m.source_labels,
            vec![
                SourceLabel::Snomed("59118001".into()),
                SourceLabel::Snomed("164884008".into())
            ]
        );
        let ludb: Vec<String> = [
            "<age>: >89",
            "<sex>: F",
            "<diagnoses>:",
            "Rhythm: Sinus rhythm.",
            "Non-specific repolarization abnormalities: posterior wall. #Rhythm: Sinus rhythm.",
        ]
        .map(String::from)
        .to_vec();
        let m = parse_comments(&ludb);
        assert_eq!(m.age_years, None);
        assert_eq!(m.notes, vec!["age given as '>89'"]);
        assert_eq!(m.sex, Some(Sex::Female));
        assert_eq!(m.source_labels.len(), 3);
        assert_eq!(
            m.source_labels[1],
            SourceLabel::Text("Non-specific repolarization abnormalities: posterior wall.".into())
        );
        assert!(is_ludb(&ludb) && !is_ludb(&cinc));
    }

    #[test]
    fn units_convert_to_millivolts() {
        assert_eq!(units_to_mv("mV"), Some(1.0));
        assert_eq!(units_to_mv("mv"), Some(1.0));
        assert_eq!(units_to_mv("uV"), Some(1e-3));
        assert_eq!(units_to_mv("mmHg"), None);
    }
}
