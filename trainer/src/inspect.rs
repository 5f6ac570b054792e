//! `eknet-train inspect`: one record summarised (leads with amplitude ranges, rate, duration,
//! metadata, reading notes) and its labels harmonised onto PTB-XL SCP statements.

use anyhow::{Context, Result};
use eknet_shared::labels::{HarmonisedLabels, Harmoniser};
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
        s
    }
}
