//! An ECG record as every reader returns it: named leads in millivolts at one sampling rate, plus
//! the metadata the source carried (id, age, sex, source labels) and notes on how it was read.

use crate::lead::{Lead, derive_lead};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A diagnostic label as the source states it, before harmonisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "system", content = "value", rename_all = "snake_case")]
pub enum SourceLabel {
    /// A SNOMED CT concept id (CinC `# Dx:` lines).
    Snomed(String),
    /// A PTB-XL SCP-ECG statement code (e.g. `IRBBB`).
    Scp(String),
    /// Free text (LUDB diagnoses).
    Text(String),
    /// One of the CPSC 2018 challenge's nine class names (`#Dx_CPSC2018:` lines: `Normal`, `AF`,
    /// `I-AVB`, `LBBB`, `RBBB`, `PAC`, `PVC`, `STD`, `STE`).
    Cpsc2018(String),
}

impl std::fmt::Display for SourceLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceLabel::Snomed(c) => write!(f, "SNOMED {c}"),
            SourceLabel::Scp(c) => write!(f, "SCP {c}"),
            SourceLabel::Text(t) => write!(f, "text \"{t}\""),
            SourceLabel::Cpsc2018(c) => write!(f, "CPSC 2018 {c}"),
        }
    }
}

/// Patient sex as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
}

impl Sex {
    /// Parses `F`, `Female`, `M`, `Male` in any case; anything else (`Unknown`, `NaN`) is `None`.
    pub fn parse(s: &str) -> Option<Sex> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f" | "female" => Some(Sex::Female),
            "m" | "male" => Some(Sex::Male),
            _ => None,
        }
    }
}

/// What is known about a record besides its samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// Record identifier (WFDB record name, or the file stem).
    pub id: String,
    /// Age in years, where the source gives a number.
    pub age_years: Option<f32>,
    /// Sex, where the source gives it.
    pub sex: Option<Sex>,
    /// Diagnostic labels exactly as the source states them.
    pub source_labels: Vec<SourceLabel>,
    /// How the record was read (format, scaling decisions); shown by `inspect`.
    pub notes: Vec<String>,
    /// Signals present in the source that are not one of the twelve leads, so were not loaded.
    pub ignored_signals: Vec<String>,
}

/// The lowest sampling rate a record may state: below it a QRS complex (about 100 ms) is not
/// resolved at all, and a rate this low in a file is a unit error, not an ECG.
pub const MIN_RATE_HZ: f64 = 50.0;
/// The highest sampling rate a record may state (research-grade front-ends reach 16 kHz; pacemaker
/// spike detection is done at the device). Bounding it bounds every filter sized from the rate.
pub const MAX_RATE_HZ: f64 = 20_000.0;
/// The most samples one lead may hold: one hour at 1 kHz. Bounds the memory a record (from a file
/// or an upload) can make every later stage allocate.
pub const MAX_SAMPLES_PER_LEAD: usize = 3_600_000;

/// Why a set of leads cannot form a [`Record`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The sampling rate is not a positive finite number.
    #[error("sampling rate {0} Hz is not a positive finite number")]
    BadRate(f64),
    /// The sampling rate is outside [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`].
    #[error("sampling rate {0} Hz is outside the accepted {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz")]
    RateOutOfRange(f64),
    /// A lead holds more than [`MAX_SAMPLES_PER_LEAD`] samples.
    #[error(
        "lead {lead} holds {len} samples; at most {MAX_SAMPLES_PER_LEAD} are accepted (one hour at 1 kHz)"
    )]
    TooLong {
        /// The lead.
        lead: Lead,
        /// Its length.
        len: usize,
    },
    /// No lead at all.
    #[error("record has no leads")]
    NoLeads,
    /// The same lead twice.
    #[error("lead {0} appears twice")]
    DuplicateLead(Lead),
    /// Leads of different lengths.
    #[error("lead {lead} has {len} samples but lead {first} has {first_len}")]
    LengthMismatch {
        /// The lead whose length differs.
        lead: Lead,
        /// Its length.
        len: usize,
        /// The first lead.
        first: Lead,
        /// The first lead's length.
        first_len: usize,
    },
    /// Leads needed for an operation are absent and cannot be derived.
    #[error("record lacks lead(s) {}", list(.0))]
    MissingLeads(Vec<Lead>),
}

fn list(leads: &[Lead]) -> String {
    leads
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ECG: leads in millivolts, all of the same length, at one sampling rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Metadata.
    pub meta: RecordMeta,
    sample_rate_hz: f64,
    len_samples: usize,
    leads: BTreeMap<Lead, Vec<f32>>,
}

impl Record {
    /// Builds a record, checking the rate (finite, within [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`]), the
    /// length (at most [`MAX_SAMPLES_PER_LEAD`]), that leads are unique and that all have one
    /// length. Every reader and the upload path make records here, so all inherit the bounds.
    pub fn new(
        meta: RecordMeta,
        sample_rate_hz: f64,
        leads: Vec<(Lead, Vec<f32>)>,
    ) -> Result<Record, RecordError> {
        if !(sample_rate_hz.is_finite() && sample_rate_hz > 0.0) {
            return Err(RecordError::BadRate(sample_rate_hz));
        }
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&sample_rate_hz) {
            return Err(RecordError::RateOutOfRange(sample_rate_hz));
        }
        let (first, first_len) = match leads.first() {
            Some((lead, samples)) => (*lead, samples.len()),
            None => return Err(RecordError::NoLeads),
        };
        if first_len > MAX_SAMPLES_PER_LEAD {
            return Err(RecordError::TooLong {
                lead: first,
                len: first_len,
            });
        }
        let mut map = BTreeMap::new();
        for (lead, samples) in leads {
            if samples.len() != first_len {
                return Err(RecordError::LengthMismatch {
                    lead,
                    len: samples.len(),
                    first,
                    first_len,
                });
            }
            if map.insert(lead, samples).is_some() {
                return Err(RecordError::DuplicateLead(lead));
            }
        }
        Ok(Record {
            meta,
            sample_rate_hz,
            len_samples: first_len,
            leads: map,
        })
    }

    /// Sampling rate in hertz.
    pub fn sample_rate_hz(&self) -> f64 {
        self.sample_rate_hz
    }

    /// Samples per lead.
    pub fn len_samples(&self) -> usize {
        self.len_samples
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.len_samples as f64 / self.sample_rate_hz
    }

    /// One lead's samples in millivolts, if present.
    pub fn lead(&self, lead: Lead) -> Option<&[f32]> {
        self.leads.get(&lead).map(Vec::as_slice)
    }

    /// The leads present, in conventional order.
    pub fn leads(&self) -> impl Iterator<Item = (Lead, &[f32])> {
        self.leads.iter().map(|(l, s)| (*l, s.as_slice()))
    }

    /// The standard leads this record lacks.
    pub fn missing_leads(&self) -> Vec<Lead> {
        Lead::ALL
            .into_iter()
            .filter(|l| !self.leads.contains_key(l))
            .collect()
    }

    /// Consumes the record, returning metadata, rate and leads.
    pub fn into_parts(self) -> (RecordMeta, f64, BTreeMap<Lead, Vec<f32>>) {
        (self.meta, self.sample_rate_hz, self.leads)
    }

    /// Fills in any of III, aVR, aVL, aVF that is absent, from I and II. Leads that are present
    /// are kept as recorded. Each derived lead is noted in the metadata.
    pub fn with_derived_limb_leads(mut self) -> Result<Record, RecordError> {
        let absent: Vec<Lead> = Lead::DERIVABLE
            .into_iter()
            .filter(|l| !self.leads.contains_key(l))
            .collect();
        if absent.is_empty() {
            return Ok(self);
        }
        let (Some(i), Some(ii)) = (self.lead(Lead::I), self.lead(Lead::II)) else {
            let mut missing: Vec<Lead> = [Lead::I, Lead::II]
                .into_iter()
                .filter(|l| !self.leads.contains_key(l))
                .collect();
            missing.extend(absent);
            return Err(RecordError::MissingLeads(missing));
        };
        let derived: Vec<(Lead, Vec<f32>)> = absent
            .iter()
            .filter_map(|&lead| derive_lead(lead, i, ii).map(|s| (lead, s)))
            .collect();
        for (lead, samples) in derived {
            self.meta
                .notes
                .push(format!("lead {lead} derived from I and II"));
            self.leads.insert(lead, samples);
        }
        Ok(self)
    }

    /// Checks that all twelve leads are present.
    pub fn require_all_leads(&self) -> Result<(), RecordError> {
        let missing = self.missing_leads();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RecordError::MissingLeads(missing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RecordMeta {
        RecordMeta {
            id: "t".into(),
            ..RecordMeta::default()
        }
    }

    #[test]
    fn rejects_rates_and_lengths_outside_the_bounds() {
        for rate in [1e12, 20_000.5, 49.9, 1.0] {
            let e = Record::new(meta(), rate, vec![(Lead::I, vec![0.0; 10])]).unwrap_err();
            assert_eq!(e, RecordError::RateOutOfRange(rate));
            assert!(e.to_string().contains("50-20000 Hz"), "{e}");
        }
        for rate in [MIN_RATE_HZ, 257.0, MAX_RATE_HZ] {
            assert!(Record::new(meta(), rate, vec![(Lead::I, vec![0.0; 10])]).is_ok());
        }
        let e = Record::new(
            meta(),
            1000.0,
            vec![(Lead::II, vec![0.0; MAX_SAMPLES_PER_LEAD + 1])],
        )
        .unwrap_err();
        assert!(
            matches!(e, RecordError::TooLong { lead: Lead::II, len } if len == MAX_SAMPLES_PER_LEAD + 1),
            "{e}"
        );
    }

    #[test]
    fn rejects_inconsistent_leads() {
        assert_eq!(
            Record::new(meta(), 500.0, vec![]).unwrap_err(),
            RecordError::NoLeads
        );
        assert_eq!(
            Record::new(meta(), 0.0, vec![(Lead::I, vec![0.0])]).unwrap_err(),
            RecordError::BadRate(0.0)
        );
        let e = Record::new(
            meta(),
            500.0,
            vec![(Lead::I, vec![0.0; 3]), (Lead::V2, vec![0.0; 2])],
        )
        .unwrap_err();
        assert!(e.to_string().contains("lead V2 has 2 samples"), "{e}");
        let e = Record::new(
            meta(),
            500.0,
            vec![(Lead::I, vec![0.0]), (Lead::I, vec![1.0])],
        )
        .unwrap_err();
        assert_eq!(e, RecordError::DuplicateLead(Lead::I));
    }

    #[test]
    fn derives_only_absent_limb_leads() {
        let r = Record::new(
            meta(),
            500.0,
            vec![
                (Lead::I, vec![1.0, 2.0]),
                (Lead::II, vec![3.0, 1.0]),
                (Lead::AVR, vec![9.0, 9.0]),
            ],
        )
        .unwrap()
        .with_derived_limb_leads()
        .unwrap();
        assert_eq!(r.lead(Lead::III).unwrap(), &[2.0, -1.0]);
        assert_eq!(
            r.lead(Lead::AVR).unwrap(),
            &[9.0, 9.0],
            "recorded lead kept"
        );
        assert_eq!(r.lead(Lead::AVF).unwrap(), &[2.5, 0.0]);
        assert_eq!(r.meta.notes.len(), 3);
        let e = Record::new(meta(), 500.0, vec![(Lead::I, vec![1.0])])
            .unwrap()
            .with_derived_limb_leads()
            .unwrap_err();
        assert!(e.to_string().contains("II"), "{e}");
    }
}
