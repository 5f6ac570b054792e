//! Label vocabularies and harmonisation: PTB-XL's SCP statements are the common vocabulary;
//! CinC SNOMED CT codes, CPSC 2018 class names and LUDB text diagnoses are mapped onto them by
//! curated tables. A label without a mapping is reported with its reason, never silently dropped.

pub mod cpsc;
pub mod ludb;
pub mod scp;
pub mod snomed;

pub use scp::{ScpStatement, ScpTable};
pub use snomed::SnomedNames;

use crate::record::SourceLabel;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors reading label tables.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// A table file is missing or malformed.
    #[error("label table {path}: {what}")]
    Table {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A curated mapping names a statement the SCP table lacks.
    #[error(
        "curated mapping for {label} names SCP statement '{code}', which {path} does not define"
    )]
    UnknownTarget {
        /// The source label.
        label: String,
        /// The missing code.
        code: String,
        /// The SCP table.
        path: PathBuf,
    },
}

/// Why a source label has no SCP statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmappedReason {
    /// Understood, but PTB-XL has no such statement.
    NoScpStatement,
    /// Not recognised by any table.
    Unrecognised,
}

/// A source label that did not map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmappedLabel {
    /// The label as the source gave it.
    pub label: SourceLabel,
    /// Its name where known (SNOMED concepts).
    pub name: Option<String>,
    /// Why it did not map.
    pub reason: UnmappedReason,
}

/// One source label and what it became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappedLabel {
    /// The label as the source gave it.
    pub label: SourceLabel,
    /// Its name where known.
    pub name: Option<String>,
    /// The SCP statements it maps to.
    pub scp: Vec<String>,
}

/// The outcome of harmonising one record's labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HarmonisedLabels {
    /// SCP codes, sorted, without repeats.
    pub scp_codes: Vec<String>,
    /// Each label that mapped.
    pub mapped: Vec<MappedLabel>,
    /// Each label that did not.
    pub unmapped: Vec<UnmappedLabel>,
}

/// Maps source labels onto SCP statements.
#[derive(Debug, Clone)]
pub struct Harmoniser {
    scp: ScpTable,
    snomed: SnomedNames,
}

impl Harmoniser {
    /// Builds a harmoniser, checking that every curated target exists in the SCP table.
    pub fn new(
        scp: ScpTable,
        snomed: SnomedNames,
        scp_path: &Path,
    ) -> Result<Harmoniser, LabelError> {
        let targets = snomed::SNOMED_TO_SCP
            .iter()
            .map(|(c, codes)| (format!("SNOMED {c}"), *codes))
            .chain(
                ludb::LUDB_RULES
                    .iter()
                    .map(|(m, codes)| (format!("LUDB rule {m:?}"), *codes)),
            )
            .chain(
                cpsc::CPSC2018_CLASSES
                    .iter()
                    .map(|(c, _, codes)| (format!("CPSC 2018 {c}"), *codes)),
            );
        for (label, codes) in targets {
            for code in codes {
                if scp.get(code).is_none() {
                    return Err(LabelError::UnknownTarget {
                        label,
                        code: code.to_string(),
                        path: scp_path.to_path_buf(),
                    });
                }
            }
        }
        Ok(Harmoniser { scp, snomed })
    }

    /// Loads the tables from the shared data folder's layout: `ptbxl/scp_statements.csv` and the
    /// CinC mapping files in `cinc/`.
    pub fn from_data_dir(data_dir: &Path) -> Result<Harmoniser, LabelError> {
        let scp_path = data_dir.join("ptbxl").join("scp_statements.csv");
        let scp = ScpTable::from_csv(&scp_path)?;
        let snomed = SnomedNames::from_cinc_dir(&data_dir.join("cinc"))?;
        Harmoniser::new(scp, snomed, &scp_path)
    }

    /// The SCP table.
    pub fn scp(&self) -> &ScpTable {
        &self.scp
    }

    /// SNOMED names.
    pub fn snomed_names(&self) -> &SnomedNames {
        &self.snomed
    }

    /// Harmonises one record's labels.
    pub fn harmonise(&self, labels: &[SourceLabel]) -> HarmonisedLabels {
        let mut out = HarmonisedLabels::default();
        for label in labels {
            let (name, codes): (Option<String>, Option<Vec<String>>) = match label {
                SourceLabel::Snomed(c) => (
                    self.snomed.get(c).map(|(n, a)| format!("{n} ({a})")),
                    snomed::snomed_to_scp(c).map(|v| v.iter().map(|s| s.to_string()).collect()),
                ),
                SourceLabel::Scp(c) => (
                    self.scp.get(c).map(|s| s.description.clone()),
                    self.scp.get(c).map(|s| vec![s.code.clone()]),
                ),
                SourceLabel::Text(t) => (
                    None,
                    ludb::ludb_to_scp(t).map(|v| v.iter().map(|s| s.to_string()).collect()),
                ),
                SourceLabel::Cpsc2018(c) => (
                    cpsc::CPSC2018_CLASSES
                        .iter()
                        .find(|(name, _, _)| name.eq_ignore_ascii_case(c))
                        .map(|(_, desc, _)| desc.to_string()),
                    cpsc::cpsc2018_to_scp(c).map(|v| v.iter().map(|s| s.to_string()).collect()),
                ),
            };
            match codes {
                Some(codes) if !codes.is_empty() => {
                    out.scp_codes.extend(codes.iter().cloned());
                    out.mapped.push(MappedLabel {
                        label: label.clone(),
                        name,
                        scp: codes,
                    });
                }
                Some(_) => out.unmapped.push(UnmappedLabel {
                    label: label.clone(),
                    name,
                    reason: UnmappedReason::NoScpStatement,
                }),
                None => out.unmapped.push(UnmappedLabel {
                    label: label.clone(),
                    name,
                    reason: UnmappedReason::Unrecognised,
                }),
            }
        }
        out.scp_codes.sort();
        out.scp_codes.dedup();
        out
    }
}

/// Counts of unmapped labels across many records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnmappedReport {
    /// Records seen.
    pub records: usize,
    /// Labels seen.
    pub labels: usize,
    /// Labels that mapped.
    pub mapped: usize,
    /// For each unmapped label (as displayed): its reason and how many times it occurred.
    pub unmapped: BTreeMap<String, (UnmappedReason, usize)>,
}

impl UnmappedReport {
    /// Adds one record's outcome.
    pub fn add(&mut self, h: &HarmonisedLabels) {
        self.records += 1;
        self.labels += h.mapped.len() + h.unmapped.len();
        self.mapped += h.mapped.len();
        for u in &h.unmapped {
            let key = match &u.name {
                Some(n) => format!("{} [{n}]", u.label),
                None => u.label.to_string(),
            };
            self.unmapped.entry(key).or_insert((u.reason, 0)).1 += 1;
        }
    }

    /// Unmapped label occurrences in total.
    pub fn unmapped_count(&self) -> usize {
        self.unmapped.values().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ludb_text_rules() {
        assert_eq!(
            ludb::ludb_to_scp("Rhythm: Sinus bradycardia."),
            Some(&["SBRAD"][..])
        );
        assert_eq!(
            ludb::ludb_to_scp("  Left atrial  overload. "),
            Some(&["LAO/LAE"][..])
        );
        assert_eq!(
            ludb::ludb_to_scp("Ventricular extrasystole, type: couplet."),
            Some(&["PVC"][..])
        );
        assert_eq!(
            ludb::ludb_to_scp("Electric axis of the heart: left axis deviation."),
            Some(&[][..])
        );
        assert_eq!(
            ludb::ludb_to_scp("Undefined ischemia/scar/supp.NSTEMI: apical."),
            None
        );
    }

    #[test]
    fn snomed_table_has_no_duplicates() {
        let mut codes: Vec<&str> = snomed::SNOMED_TO_SCP.iter().map(|(c, _)| *c).collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }
}
