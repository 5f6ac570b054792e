//! What the daemon reports for each 10 s window: a classification (every class's score and
//! verdict, the positive findings with where their attention concentrates, heart rate, per-lead
//! quality, model and latency) or an abstention that says why (lead off, noise, gap, silence).

use crate::quality::LeadQuality;
use eknet_runtime::Inference;
use eknet_shared::Lead;
use eknet_shared::bundle::{Manifest, Precision};
use eknet_shared::layout::{PATCH_SAMPLES, PATCHES_PER_SLOT, SAMPLE_RATE_HZ, SLOTS, TOKEN_COUNT};
use serde::{Deserialize, Serialize};

/// Where a window came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The serial device.
    Live,
    /// `POST /v1/classify`.
    Upload,
}

/// Classified, or not and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The model ran.
    Classified,
    /// The model did not run on this window (see `reasons`).
    Abstained,
}

/// The span a result covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Stream index of the first sample (500 Hz; absent for uploads and device events).
    pub start_index: Option<u64>,
    /// Stream index one past the last sample.
    pub end_index: Option<u64>,
    /// The device's own index of the first sample (eknet frame devices number their samples;
    /// absent for Cyton boards, uploads and events). The device's timeline restarts when the
    /// device does, unlike `start_index`.
    #[serde(default)]
    pub device_start_index: Option<u64>,
    /// Wall-clock time of the first sample (RFC 3339, UTC, milliseconds).
    pub start_time: String,
    /// Wall-clock time of the last sample.
    pub end_time: String,
}

/// One lead's quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadVerdict {
    /// Lead name.
    pub lead: String,
    /// Usable.
    pub ok: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

/// One class's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// SCP code.
    pub code: String,
    /// p(present).
    pub score: f32,
    /// The bundle's threshold for this precision.
    pub threshold: f32,
    /// `score >= threshold`.
    pub positive: bool,
}

/// Where a finding's attention concentrates: the half-second segment of one slot holding the most
/// attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionFocus {
    /// The slot's lead (`II` for the rhythm strip slots).
    pub lead: String,
    /// The slot's name in the 3x4 layout (`II_3`, `V2`, ...).
    pub slot: String,
    /// Segment start, seconds from the window start.
    pub from_s: f64,
    /// Segment end.
    pub to_s: f64,
    /// Share of the class's attention inside the segment.
    pub share: f32,
}

/// A positive class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// SCP code.
    pub code: String,
    /// Its description.
    pub description: Option<String>,
    /// p(present).
    pub score: f32,
    /// Threshold passed.
    pub threshold: f32,
    /// Where the model looked.
    pub attention: AttentionFocus,
}

/// The model's part of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Bundle model id.
    pub model_id: String,
    /// Graph used.
    pub precision: Precision,
    /// Milliseconds spent in the graph.
    pub inference_ms: f64,
    /// Every class, in label order.
    pub scores: Vec<ClassScore>,
    /// Positive classes, highest score first.
    pub findings: Vec<Finding>,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// Sequence number (the event id on the stream; 0 for uploads, which are not stored).
    pub id: u64,
    /// Live or upload.
    pub source: Source,
    /// Classified or abstained.
    pub outcome: Outcome,
    /// Why the model did not run (empty when it did).
    pub reasons: Vec<String>,
    /// Time span.
    pub window: Span,
    /// Heart rate from lead II's R peaks, when they could be found.
    pub heart_rate_bpm: Option<f64>,
    /// Per-lead quality (empty for device events).
    pub quality: Vec<LeadVerdict>,
    /// The model's output, when it ran.
    pub classification: Option<Classification>,
    /// Milliseconds from the window's last sample arriving to this result being stored (live).
    pub pipeline_ms: Option<f64>,
    /// The window's measurements as a 12-lead cart reports them (HR, PR, QRS, QT, QTc, axes, each
    /// null with a reason where it cannot be measured, and the measurement statements, kept apart
    /// from the model's findings); absent for device events and in results stored before
    /// measurements existed.
    #[serde(default)]
    pub measurements: Option<Box<eknet_shared::measure::Measurements>>,
}

/// Per-lead verdicts in the result's form.
pub fn verdicts(q: &[(Lead, LeadQuality)]) -> Vec<LeadVerdict> {
    q.iter()
        .map(|(lead, v)| match v {
            LeadQuality::Ok => LeadVerdict {
                lead: lead.name().into(),
                ok: true,
                reason: None,
            },
            LeadQuality::Bad { reason } => LeadVerdict {
                lead: lead.name().into(),
                ok: false,
                reason: Some(reason.clone()),
            },
        })
        .collect()
}

/// The half-second segment (10 patches of one slot) holding most of an attention row.
pub fn attention_focus(row: &[f32]) -> AttentionFocus {
    const SEG: usize = 10;
    let mut best = (0usize, 0usize, f32::NEG_INFINITY);
    for slot in 0..row.len().min(TOKEN_COUNT) / PATCHES_PER_SLOT {
        let r = &row[slot * PATCHES_PER_SLOT..(slot + 1) * PATCHES_PER_SLOT];
        let mut sum: f32 = r[..SEG].iter().sum();
        if sum > best.2 {
            best = (slot, 0, sum);
        }
        for p in SEG..PATCHES_PER_SLOT {
            sum += r[p] - r[p - SEG];
            if sum > best.2 {
                best = (slot, p + 1 - SEG, sum);
            }
        }
    }
    let (slot, patch, share) = best;
    let s = SLOTS[slot];
    let start = (s.start_sample + patch * PATCH_SAMPLES) as f64 / SAMPLE_RATE_HZ;
    AttentionFocus {
        lead: s.lead.name().into(),
        slot: s.name.into(),
        from_s: start,
        to_s: start + (SEG * PATCH_SAMPLES) as f64 / SAMPLE_RATE_HZ,
        share,
    }
}

/// The model's part of a result from a graph's outputs.
pub fn classification(
    manifest: &Manifest,
    precision: Precision,
    out: &Inference,
    inference_ms: f64,
) -> Classification {
    let scores: Vec<ClassScore> = manifest
        .labels
        .iter()
        .zip(&out.scores)
        .map(|(l, &score)| {
            let threshold = l.threshold(precision);
            ClassScore {
                code: l.code.clone(),
                score,
                threshold,
                positive: score >= threshold,
            }
        })
        .collect();
    let mut findings: Vec<Finding> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.positive)
        .map(|(k, s)| Finding {
            code: s.code.clone(),
            description: manifest.labels[k].description.clone(),
            score: s.score,
            threshold: s.threshold,
            attention: attention_focus(out.attention_of(k)),
        })
        .collect();
    findings.sort_by(|a, b| b.score.total_cmp(&a.score));
    Classification {
        model_id: manifest.model_id.clone(),
        precision,
        inference_ms,
        scores,
        findings,
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    eknet_shared::time::rfc3339(ms, true)
}

pub use eknet_shared::time::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_650_000_123), "2026-11-25T23:40:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn focus_finds_the_heaviest_half_second() {
        let mut row = vec![0.0f32; TOKEN_COUNT];
        // Slot 10 is V2 (column 2: 5.0 s onward); patches 20..30 are 1.0..1.5 s into it.
        for p in 20..30 {
            row[10 * PATCHES_PER_SLOT + p] = 0.08;
        }
        row[3] = 0.1;
        let f = attention_focus(&row);
        assert_eq!((f.lead.as_str(), f.slot.as_str()), ("V2", "V2"));
        assert!(
            (f.from_s - 6.0).abs() < 1e-9 && (f.to_s - 6.5).abs() < 1e-9,
            "{f:?}"
        );
        assert!((f.share - 0.8).abs() < 1e-5);
    }
}
