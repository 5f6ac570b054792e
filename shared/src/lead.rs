//! The twelve standard ECG leads: canonical names, name normalisation, anatomical rows and the
//! derivation of III, aVR, aVL, aVF from I and II (Einthoven and Goldberger).

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the twelve standard leads, in the conventional (and model row) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lead {
    /// Lead I (LA - RA).
    I,
    /// Lead II (LL - RA).
    II,
    /// Lead III (LL - LA).
    III,
    /// Augmented vector right.
    #[serde(rename = "aVR")]
    AVR,
    /// Augmented vector left.
    #[serde(rename = "aVL")]
    AVL,
    /// Augmented vector foot.
    #[serde(rename = "aVF")]
    AVF,
    /// Precordial V1.
    V1,
    /// Precordial V2.
    V2,
    /// Precordial V3.
    V3,
    /// Precordial V4.
    V4,
    /// Precordial V5.
    V5,
    /// Precordial V6.
    V6,
}

impl Lead {
    /// All twelve leads in conventional order; a lead's position here is its anatomical row.
    pub const ALL: [Lead; 12] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// The four limb leads that follow from I and II.
    pub const DERIVABLE: [Lead; 4] = [Lead::III, Lead::AVR, Lead::AVL, Lead::AVF];

    /// The canonical spelling (`I`, `aVR`, `V1`, ...), as used in `.ecgzip` keys.
    pub fn name(self) -> &'static str {
        match self {
            Lead::I => "I",
            Lead::II => "II",
            Lead::III => "III",
            Lead::AVR => "aVR",
            Lead::AVL => "aVL",
            Lead::AVF => "aVF",
            Lead::V1 => "V1",
            Lead::V2 => "V2",
            Lead::V3 => "V3",
            Lead::V4 => "V4",
            Lead::V5 => "V5",
            Lead::V6 => "V6",
        }
    }

    /// The anatomical lead row used by the model's lead knowledge (I=0 ... V6=11).
    pub fn row(self) -> usize {
        self as usize
    }

    /// Parses a lead name in any case, ignoring surrounding blanks: `AVR`, `avr` and `aVR` are
    /// the same lead. Returns `None` for anything that is not one of the twelve leads.
    pub fn parse(name: &str) -> Option<Lead> {
        let n = name.trim().to_ascii_uppercase();
        Some(match n.as_str() {
            "I" => Lead::I,
            "II" => Lead::II,
            "III" => Lead::III,
            "AVR" => Lead::AVR,
            "AVL" => Lead::AVL,
            "AVF" => Lead::AVF,
            "V1" => Lead::V1,
            "V2" => Lead::V2,
            "V3" => Lead::V3,
            "V4" => Lead::V4,
            "V5" => Lead::V5,
            "V6" => Lead::V6,
            _ => return None,
        })
    }

    /// The value of a derivable limb lead at one instant from leads I and II; `None` for a lead
    /// that is not derivable (I, II and the chest leads are measured, never derived).
    pub fn derive_from(self, i: f32, ii: f32) -> Option<f32> {
        match self {
            Lead::III => Some(ii - i),
            Lead::AVR => Some(-(i + ii) / 2.0),
            Lead::AVL => Some(i - ii / 2.0),
            Lead::AVF => Some(ii - i / 2.0),
            _ => None,
        }
    }
}

impl fmt::Display for Lead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Derives a whole limb lead (III, aVR, aVL or aVF) from the samples of I and II.
///
/// Returns `None` when `lead` is not derivable or the two inputs differ in length.
pub fn derive_lead(lead: Lead, lead_i: &[f32], lead_ii: &[f32]) -> Option<Vec<f32>> {
    if lead_i.len() != lead_ii.len() || !Lead::DERIVABLE.contains(&lead) {
        return None;
    }
    lead_i
        .iter()
        .zip(lead_ii)
        .map(|(&i, &ii)| lead.derive_from(i, ii))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_in_any_case() {
        for (s, lead) in [
            ("AVR", Lead::AVR),
            ("avr", Lead::AVR),
            ("aVR", Lead::AVR),
            (" aVr ", Lead::AVR),
            ("i", Lead::I),
            ("III", Lead::III),
            ("v6", Lead::V6),
        ] {
            assert_eq!(Lead::parse(s), Some(lead), "{s}");
        }
        for bad in ["", "IV", "V7", "MLII", "aVX", "I I"] {
            assert_eq!(Lead::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_lead_round_trips_through_its_name_and_row() {
        for (row, lead) in Lead::ALL.iter().enumerate() {
            assert_eq!(Lead::parse(lead.name()), Some(*lead));
            assert_eq!(lead.row(), row);
        }
    }

    #[test]
    fn derivation_follows_einthoven_and_goldberger() {
        let i = [1.0_f32, 0.5, -0.2];
        let ii = [2.0_f32, -0.5, 0.4];
        assert_eq!(
            derive_lead(Lead::III, &i, &ii).unwrap(),
            vec![1.0, -1.0, 0.6]
        );
        assert_eq!(
            derive_lead(Lead::AVR, &i, &ii).unwrap(),
            vec![-1.5, 0.0, -0.1]
        );
        assert_eq!(
            derive_lead(Lead::AVL, &i, &ii).unwrap(),
            vec![0.0, 0.75, -0.4]
        );
        assert_eq!(
            derive_lead(Lead::AVF, &i, &ii).unwrap(),
            vec![1.5, -0.75, 0.5]
        );
        assert!(derive_lead(Lead::V1, &i, &ii).is_none());
        assert!(derive_lead(Lead::III, &i, &ii[..2]).is_none());
    }
}
