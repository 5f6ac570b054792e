//! The clinical 3x4 format as the model's input: 15 slots of 1250 samples (2.5 s at 500 Hz) in
//! millivolts, cut from a 10 s, 12-lead window exactly as `eknet-model.md` §1 specifies, plus the
//! token geometry (lead row and time column of each of the 750 patches) the model needs.

use crate::lead::Lead;
use serde::Serialize;

/// The model's sampling rate.
pub const SAMPLE_RATE_HZ: f64 = 500.0;
/// Samples in one 10 s window at 500 Hz.
pub const WINDOW_SAMPLES: usize = 5000;
/// Samples in one slot (2.5 s).
pub const SLOT_SAMPLES: usize = 1250;
/// Slots in the model input.
pub const SLOT_COUNT: usize = 15;
/// Samples per patch (50 ms).
pub const PATCH_SAMPLES: usize = 25;
/// Patches per slot.
pub const PATCHES_PER_SLOT: usize = SLOT_SAMPLES / PATCH_SAMPLES;
/// Tokens in the model input (15 x 50).
pub const TOKEN_COUNT: usize = SLOT_COUNT * PATCHES_PER_SLOT;
/// Time columns on the 10 s axis (50 ms each).
pub const TIME_COLUMNS: usize = WINDOW_SAMPLES / PATCH_SAMPLES;
/// Anatomical lead rows.
pub const LEAD_ROWS: usize = 12;
/// Version of this layout, carried in model bundles.
pub const LAYOUT_VERSION: u32 = 1;

/// The group a slot belongs to when the stage-2 encoder runs on lead groups separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadGroup {
    /// I, II_1, III, aVR, aVL, aVF (simultaneous with each other per column).
    Limb,
    /// V1..V6.
    Chest,
    /// II_2, II_3, II_4: the rest of the rhythm strip.
    Rhythm,
}

/// One of the 15 input slots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slot {
    /// The slot's name in the seed's `LEADS` list (`I`, `II_1`, ... `V6`).
    pub name: &'static str,
    /// The lead it is cut from.
    pub lead: Lead,
    /// First sample of the crop in the 10 s window.
    pub start_sample: usize,
    /// Its stage-2 group.
    pub group: LeadGroup,
}

const fn slot(name: &'static str, lead: Lead, column: usize, group: LeadGroup) -> Slot {
    Slot {
        name,
        lead,
        start_sample: column * SLOT_SAMPLES,
        group,
    }
}

/// The 15 slots in model order.
pub const SLOTS: [Slot; SLOT_COUNT] = [
    slot("I", Lead::I, 0, LeadGroup::Limb),
    slot("II_1", Lead::II, 0, LeadGroup::Limb),
    slot("II_2", Lead::II, 1, LeadGroup::Rhythm),
    slot("II_3", Lead::II, 2, LeadGroup::Rhythm),
    slot("II_4", Lead::II, 3, LeadGroup::Rhythm),
    slot("III", Lead::III, 0, LeadGroup::Limb),
    slot("aVR", Lead::AVR, 1, LeadGroup::Limb),
    slot("aVL", Lead::AVL, 1, LeadGroup::Limb),
    slot("aVF", Lead::AVF, 1, LeadGroup::Limb),
    slot("V1", Lead::V1, 2, LeadGroup::Chest),
    slot("V2", Lead::V2, 2, LeadGroup::Chest),
    slot("V3", Lead::V3, 2, LeadGroup::Chest),
    slot("V4", Lead::V4, 3, LeadGroup::Chest),
    slot("V5", Lead::V5, 3, LeadGroup::Chest),
    slot("V6", Lead::V6, 3, LeadGroup::Chest),
];

/// The seed's `DATASET_CUSTOME.LEADS` list: slot names in model order.
pub fn slot_names() -> Vec<&'static str> {
    SLOTS.iter().map(|s| s.name).collect()
}

/// Lead row of each token, slot-major (`token = slot * 50 + patch`).
pub fn token_rows() -> Vec<usize> {
    SLOTS
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.lead.row(), PATCHES_PER_SLOT))
        .collect()
}

/// Absolute time column (0..200 on the 10 s axis) of each token, slot-major.
pub fn token_cols() -> Vec<usize> {
    SLOTS
        .iter()
        .flat_map(|s| {
            let first = s.start_sample / PATCH_SAMPLES;
            first..first + PATCHES_PER_SLOT
        })
        .collect()
}

/// Token indices of each stage-2 group, in model order: limb (300), chest (300), rhythm (150).
pub fn group_tokens(group: LeadGroup) -> Vec<usize> {
    SLOTS
        .iter()
        .enumerate()
        .filter(|(_, s)| s.group == group)
        .flat_map(|(i, _)| i * PATCHES_PER_SLOT..(i + 1) * PATCHES_PER_SLOT)
        .collect()
}

/// Why a window cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    /// A lead has the wrong number of samples.
    #[error("lead {lead} has {len} samples; a 10 s window at 500 Hz needs {WINDOW_SAMPLES}")]
    WrongLength {
        /// The lead.
        lead: Lead,
        /// Its length.
        len: usize,
    },
    /// A lead holds a missing (NaN) or infinite value inside the crop the model sees.
    #[error("lead {lead} sample {sample} of the window is not a finite number")]
    NotFinite {
        /// The lead.
        lead: Lead,
        /// The sample within the window.
        sample: usize,
    },
}

/// One model input: `[15][1250]` f32 millivolts, row-major.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window3x4 {
    /// First sample of the window in the (500 Hz) record it was cut from.
    pub start_sample: usize,
    /// Zero samples appended at the end because the record was shorter than 10 s.
    pub padded_samples: usize,
    /// `15 * 1250` values, slot after slot.
    pub data: Vec<f32>,
}

impl Window3x4 {
    /// Builds the 15 slots from twelve 10 s leads at 500 Hz, given in [`Lead::ALL`] order.
    pub fn from_leads(leads: [&[f32]; LEAD_ROWS]) -> Result<Window3x4, LayoutError> {
        for lead in Lead::ALL {
            let len = leads[lead.row()].len();
            if len != WINDOW_SAMPLES {
                return Err(LayoutError::WrongLength { lead, len });
            }
        }
        let mut data = Vec::with_capacity(SLOT_COUNT * SLOT_SAMPLES);
        for s in &SLOTS {
            let crop = &leads[s.lead.row()][s.start_sample..s.start_sample + SLOT_SAMPLES];
            if let Some(i) = crop.iter().position(|v| !v.is_finite()) {
                return Err(LayoutError::NotFinite {
                    lead: s.lead,
                    sample: s.start_sample + i,
                });
            }
            data.extend_from_slice(crop);
        }
        Ok(Window3x4 {
            start_sample: 0,
            padded_samples: 0,
            data,
        })
    }

    /// One slot's 1250 samples.
    pub fn slot(&self, index: usize) -> &[f32] {
        &self.data[index * SLOT_SAMPLES..(index + 1) * SLOT_SAMPLES]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_table_matches_the_model_doc() {
        assert_eq!(
            slot_names(),
            [
                "I", "II_1", "II_2", "II_3", "II_4", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3",
                "V4", "V5", "V6"
            ]
        );
        let starts: Vec<usize> = SLOTS.iter().map(|s| s.start_sample).collect();
        assert_eq!(
            starts,
            [
                0, 0, 1250, 2500, 3750, 0, 1250, 1250, 1250, 2500, 2500, 2500, 3750, 3750, 3750
            ]
        );
    }

    #[test]
    fn token_geometry() {
        let rows = token_rows();
        let cols = token_cols();
        assert_eq!((rows.len(), cols.len()), (TOKEN_COUNT, TOKEN_COUNT));
        // II_1..II_4 (slots 1-4) are all row 1 and cover columns 0..200 in order.
        assert!(rows[50..250].iter().all(|&r| r == 1));
        assert_eq!(cols[50..250], (0..200).collect::<Vec<_>>()[..]);
        // aVF (slot 8) is row 5, columns 50..100; V6 (slot 14) row 11, columns 150..200.
        assert_eq!((rows[400], cols[400], cols[449]), (5, 50, 99));
        assert_eq!((rows[700], cols[700], cols[749]), (11, 150, 199));
        let limb = group_tokens(LeadGroup::Limb);
        let chest = group_tokens(LeadGroup::Chest);
        let rhythm = group_tokens(LeadGroup::Rhythm);
        assert_eq!((limb.len(), chest.len(), rhythm.len()), (300, 300, 150));
        assert_eq!(
            &limb[..100],
            &(0..100).collect::<Vec<_>>()[..],
            "I then II_1"
        );
        assert_eq!(limb[100], 250, "then III");
        assert_eq!(rhythm[0], 100);
    }

    #[test]
    fn crops_come_from_the_right_lead_and_time() {
        // Lead row r holds value r*10000 + sample index: every crop tells where it came from.
        let leads: Vec<Vec<f32>> = (0..12)
            .map(|r| {
                (0..WINDOW_SAMPLES)
                    .map(|i| (r * 10000 + i) as f32)
                    .collect()
            })
            .collect();
        let refs: [&[f32]; 12] = std::array::from_fn(|r| leads[r].as_slice());
        let w = Window3x4::from_leads(refs).unwrap();
        assert_eq!(w.data.len(), 15 * 1250);
        for (k, s) in SLOTS.iter().enumerate() {
            let slot = w.slot(k);
            assert_eq!(
                slot[0],
                (s.lead.row() * 10000 + s.start_sample) as f32,
                "{}",
                s.name
            );
            assert_eq!(
                slot[1249],
                (s.lead.row() * 10000 + s.start_sample + 1249) as f32
            );
        }
        let mut bad = leads.clone();
        bad[7][3000] = f32::NAN; // V2 sample 3000 lies in its crop (2500..3750)
        let refs: [&[f32]; 12] = std::array::from_fn(|r| bad[r].as_slice());
        assert_eq!(
            Window3x4::from_leads(refs).unwrap_err(),
            LayoutError::NotFinite {
                lead: Lead::V2,
                sample: 3000
            }
        );
        let short = vec![0.0; 10];
        let mut refs: [&[f32]; 12] = std::array::from_fn(|r| leads[r].as_slice());
        refs[3] = &short;
        assert_eq!(
            Window3x4::from_leads(refs).unwrap_err(),
            LayoutError::WrongLength {
                lead: Lead::AVR,
                len: 10
            }
        );
    }
}
