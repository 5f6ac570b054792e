//! `eknet-train inspect`: one record summarised (leads with amplitude ranges, rate, duration,
//! metadata, reading notes), its labels harmonised onto PTB-XL SCP statements, and its
//! measurements; `eknet-train measure`: the measurements and per-beat boundaries alone.

use anyhow::{Context, Result};
use eknet_shared::labels::{HarmonisedLabels, Harmoniser};
use eknet_shared::measure::{Measurements, measure};
use eknet_shared::preprocess::to_model_rate;
use eknet_shared::record::Record;
use eknet_shared::{Lead, RecordMeta, data, io};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One lead's summary.
#[derive(Debug, Serialize)]
pub struct LeadSummary {
    /// Canonical name.
    pub lead: Lead,
    /// Smallest sample, mV.
    pub min_mv: f32,
    /// Largest sample, mV.
    pub max_mv: f32,
    /// Missing (NaN) samples.
    pub missing_samples: usize,
}

/// What `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The path given.
    pub path: String,
    /// Sampling rate.
    pub sample_rate_hz: f64,
    /// Samples per lead.
    pub samples: usize,
    /// Duration.
    pub duration_s: f64,
    /// Leads present.
    pub leads: Vec<LeadSummary>,
    /// Standard leads absent.
    pub missing_leads: Vec<Lead>,
    /// Metadata and source labels.
    pub meta: RecordMeta,
    /// Harmonised labels, when the label tables were found.
    pub harmonised: Option<HarmonisedLabels>,
    /// Why labels were not harmonised.
    pub harmonisation_error: Option<String>,
    /// HR, intervals, QTc, axes and measurement statements (the shared measurement engine, on
    /// the record brought to 500 Hz and twelve leads), when the record could be measured.
    pub measurements: Option<Measurements>,
    /// Why the record could not be brought to the measurement engine's form.
    pub measurement_error: Option<String>,
}

/// Measures a record as the daemon does: brought to 500 Hz and twelve leads by the shared
/// pipeline, then delineated whole (at least 10 s; beat indices on the 500 Hz timeline).
pub fn measure_record(record: &Record) -> Result<Measurements> {
    let r = to_model_rate(record).context("bringing the record to 500 Hz and twelve leads")?;
    Ok(measure(&r))
}

/// One `eknet-train measure` line: the record's path, then its measurements.
pub fn measure_json(path: &Path, m: &Measurements) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(m)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("record".into(), path.display().to_string().into());
    }
    Ok(v)
}

/// Measurements in a few lines of text.
pub fn measurements_text(m: &Measurements) -> String {
    let f = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |x| format!("{x:.0} {unit}"));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "measured    HR {}, PR {}, QRS {}, QT {}, QTc {} (Bazett) {} (Fridericia)",
        f(m.hr_bpm, "bpm"),
        f(m.pr_ms, "ms"),
        f(m.qrs_ms, "ms"),
        f(m.qt_ms, "ms"),
        f(m.qtc_bazett_ms, "ms"),
        f(m.qtc_fridericia_ms, "ms")
    );
    let _ = writeln!(
        s,
        "axes        P {}, QRS {}, T {}; {} beats",
        f(m.p_axis_deg, "deg"),
        f(m.qrs_axis_deg, "deg"),
        f(m.t_axis_deg, "deg"),
        m.beats.len()
    );
    for st in &m.statements {
        let _ = writeln!(s, "statement   {}", st.text);
    }
    for u in &m.unmeasured {
        let why = serde_json::to_value(&u.reason)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
            .unwrap_or_default();
        let q = serde_json::to_value(u.quantity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(s, "unmeasured  {q}: {why}");
    }
    s
}

/// Reads and summarises a record; labels are harmonised with tables from `data_dir` (or the
/// shared data folder found from the current directory).
pub fn inspect(path: &Path, data_dir: Option<&Path>) -> Result<Inspection> {
    let record = io::read_any(path).with_context(|| format!("reading {}", path.display()))?;
    let harmoniser = match data_dir {
        Some(d) => Harmoniser::from_data_dir(d).map_err(|e| e.to_string()),
        None => std::env::current_dir()
            .map_err(|e| e.to_string())
            .and_then(|cwd| data::require_data_dir(&cwd))
            .and_then(|d| Harmoniser::from_data_dir(&d).map_err(|e| e.to_string())),
    };
    let (harmonised, harmonisation_error) = match harmoniser {
        Ok(h) => (Some(h.harmonise(&record.meta.source_labels)), None),
        Err(e) => (None, Some(e)),
    };
    let leads = record
        .leads()
        .map(|(lead, s)| {
            let finite = s.iter().copied().filter(|v| v.is_finite());
            LeadSummary {
                lead,
                min_mv: finite.clone().fold(f32::INFINITY, f32::min),
                max_mv: finite.fold(f32::NEG_INFINITY, f32::max),
                missing_samples: s.iter().filter(|v| !v.is_finite()).count(),
            }
        })
        .collect();
    let (measurements, measurement_error) = match measure_record(&record) {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Ok(Inspection {
        path: path.display().to_string(),
        sample_rate_hz: record.sample_rate_hz(),
        samples: record.len_samples(),
        duration_s: record.duration_s(),
        leads,
        missing_leads: record.missing_leads(),
        meta: record.meta.clone(),
        harmonised,
        harmonisation_error,
        measurements,
        measurement_error,
    })
}

impl Inspection {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let m = &self.meta;
        let _ = writeln!(s, "record      {} ({})", m.id, self.path);
        let _ = writeln!(
            s,
            "signal      {} Hz, {} samples, {:.3} s",
            self.sample_rate_hz, self.samples, self.duration_s
        );
        let age = m.age_years.map_or("unknown".into(), |a| format!("{a}"));
        let sex = m
            .sex
            .map_or("unknown".into(), |x| format!("{x:?}").to_lowercase());
        let _ = writeln!(s, "patient     age {age}, sex {sex}");
        let _ = writeln!(s, "leads       {}", self.leads.len());
        for l in &self.leads {
            let missing = if l.missing_samples > 0 {
                format!(", {} missing samples", l.missing_samples)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  {:<4} {:>8.3} .. {:>8.3} mV{missing}",
                l.lead.name(),
                l.min_mv,
                l.max_mv
            );
        }
        if !self.missing_leads.is_empty() {
            let names: Vec<&str> = self.missing_leads.iter().map(|l| l.name()).collect();
            let _ = writeln!(s, "missing     {}", names.join(", "));
        }
        if !m.ignored_signals.is_empty() {
            let _ = writeln!(s, "ignored     {}", m.ignored_signals.join(", "));
        }
        for n in &m.notes {
            let _ = writeln!(s, "note        {n}");
        }
        let _ = writeln!(s, "labels      {}", m.source_labels.len());
        match (&self.harmonised, &self.harmonisation_error) {
            (Some(h), _) => {
                for x in &h.mapped {
                    let name = x
                        .name
                        .as_deref()
                        .map(|n| format!(" [{n}]"))
                        .unwrap_or_default();
                    let _ = writeln!(s, "  {}{name} -> {}", x.label, x.scp.join(", "));
                }
                for u in &h.unmapped {
                    let name = u
                        .name
                        .as_deref()
                        .map(|n| format!(" [{n}]"))
                        .unwrap_or_default();
                    let _ = writeln!(s, "  {}{name} -> unmapped ({:?})", u.label, u.reason);
                }
                let _ = writeln!(s, "scp codes   {}", h.scp_codes.join(", "));
                let _ = writeln!(s, "unmapped    {}", h.unmapped.len());
            }
            (None, Some(e)) => {
                for l in &m.source_labels {
                    let _ = writeln!(s, "  {l}");
                }
                let _ = writeln!(s, "harmonisation unavailable: {e}");
            }
            (None, None) => {}
        }
        match (&self.measurements, &self.measurement_error) {
            (Some(m), _) => s.push_str(&measurements_text(m)),
            (None, Some(e)) => {
                let _ = writeln!(s, "measured    not measured: {e}");
            }
            (None, None) => {}
        }
        s
    }
}
