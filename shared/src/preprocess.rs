//! The one pipeline from any record to model windows, shared by trainer and daemon: resample to
//! 500 Hz, derive missing limb leads, require all twelve, cut 10 s windows, build the 3x4 input.

use crate::layout::{LayoutError, SAMPLE_RATE_HZ, WINDOW_SAMPLES, Window3x4};
use crate::lead::Lead;
use crate::record::{Record, RecordError};
use crate::resample::{ResampleError, Resampler};

/// How a record is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOptions {
    /// Samples (at 500 Hz) between the starts of consecutive windows.
    pub stride_samples: usize,
    /// Pad a record shorter than 10 s with zeros at the end instead of refusing it.
    pub pad_short: bool,
}

impl Default for WindowOptions {
    /// Non-overlapping 10 s windows; short records refused.
    fn default() -> Self {
        WindowOptions {
            stride_samples: WINDOW_SAMPLES,
            pad_short: false,
        }
    }
}

/// Why a record gives no model input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// Resampling failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// Leads are missing.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record is shorter than one window.
    #[error(
        "record '{id}' lasts {seconds:.3} s ({samples} samples at 500 Hz); a window needs 10 s \
         (ask for padding to accept it)"
    )]
    TooShort {
        /// The record id.
        id: String,
        /// Duration in seconds.
        seconds: f64,
        /// Samples at 500 Hz.
        samples: usize,
    },
    /// A window could not be built.
    #[error("record '{id}', window at sample {start}: {source}")]
    Layout {
        /// The record id.
        id: String,
        /// The window's first sample.
        start: usize,
        /// The cause.
        source: LayoutError,
    },
    /// The stride is zero.
    #[error("window stride must be at least one sample")]
    ZeroStride,
}

/// Brings a record to the model's form: 500 Hz, all twelve leads (III, aVR, aVL, aVF derived from
/// I and II where absent). Leads that were recorded are kept as recorded.
pub fn to_model_rate(record: &Record) -> Result<Record, PreprocessError> {
    let record = record.clone().with_derived_limb_leads()?;
    record.require_all_leads()?;
    let from = record.sample_rate_hz();
    if (from - SAMPLE_RATE_HZ).abs() < 1e-9 {
        return Ok(record);
    }
    let resampler = Resampler::new(from, SAMPLE_RATE_HZ)?;
    let (mut meta, _, leads) = record.into_parts();
    meta.notes
        .push(format!("resampled from {from} Hz to {SAMPLE_RATE_HZ} Hz"));
    let leads = leads
        .into_iter()
        .map(|(lead, samples)| (lead, resampler.process(&samples)))
        .collect();
    Ok(Record::new(meta, SAMPLE_RATE_HZ, leads)?)
}

/// Every 10 s window of a record (any rate, any lead set from which the twelve follow), as model
/// inputs. Windows start at 0, `stride`, `2*stride`, ... while a whole window fits; a record
/// shorter than 10 s is an error unless `pad_short`, when it gives one zero-padded window.
pub fn record_windows(
    record: &Record,
    opts: WindowOptions,
) -> Result<Vec<Window3x4>, PreprocessError> {
    if opts.stride_samples == 0 {
        return Err(PreprocessError::ZeroStride);
    }
    let r = to_model_rate(record)?;
    let n = r.len_samples();
    let id = r.meta.id.clone();
    let lead = |l: Lead| r.lead(l).unwrap_or(&[]);
    let layout = |start: usize, source| PreprocessError::Layout {
        id: id.clone(),
        start,
        source,
    };
    if n < WINDOW_SAMPLES {
        if !opts.pad_short {
            return Err(PreprocessError::TooShort {
                id: id.clone(),
                seconds: n as f64 / SAMPLE_RATE_HZ,
                samples: n,
            });
        }
        let padded: Vec<Vec<f32>> = Lead::ALL
            .iter()
            .map(|&l| {
                let mut v = lead(l).to_vec();
                v.resize(WINDOW_SAMPLES, 0.0);
                v
            })
            .collect();
        let refs: [&[f32]; 12] = std::array::from_fn(|i| padded[i].as_slice());
        let mut w = Window3x4::from_leads(refs).map_err(|e| layout(0, e))?;
        w.padded_samples = WINDOW_SAMPLES - n;
        return Ok(vec![w]);
    }
    (0..=n - WINDOW_SAMPLES)
        .step_by(opts.stride_samples)
        .map(|start| {
            let refs: [&[f32]; 12] =
                std::array::from_fn(|i| &lead(Lead::ALL[i])[start..start + WINDOW_SAMPLES]);
            let mut w = Window3x4::from_leads(refs).map_err(|e| layout(start, e))?;
            w.start_sample = start;
            Ok(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordMeta;

    fn ramp_record(rate: f64, n: usize, eight_leads: bool) -> Record {
        let leads: Vec<(Lead, Vec<f32>)> = Lead::ALL
            .iter()
            .filter(|l| !eight_leads || !Lead::DERIVABLE.contains(l))
            .map(|&l| {
                (
                    l,
                    (0..n).map(|i| (l.row() as f32) + i as f32 * 1e-4).collect(),
                )
            })
            .collect();
        let meta = RecordMeta {
            id: "ramp".into(),
            ..RecordMeta::default()
        };
        Record::new(meta, rate, leads).unwrap()
    }

    #[test]
    fn windows_follow_the_stride_and_refuse_short_records() {
        let r = ramp_record(500.0, 12_000, false);
        let w = record_windows(&r, WindowOptions::default()).unwrap();
        assert_eq!(
            w.iter().map(|w| w.start_sample).collect::<Vec<_>>(),
            [0, 5000]
        );
        let w = record_windows(
            &r,
            WindowOptions {
                stride_samples: 2500,
                pad_short: false,
            },
        )
        .unwrap();
        assert_eq!(
            w.iter().map(|w| w.start_sample).collect::<Vec<_>>(),
            [0, 2500, 5000]
        );
        // Second window's V4 slot starts at record sample 5000 + 3750.
        assert_eq!(w[2].slot(12)[0], 9.0 + (5000.0 + 3750.0) * 1e-4);

        let short = ramp_record(500.0, 4000, false);
        let e = record_windows(&short, WindowOptions::default()).unwrap_err();
        assert!(e.to_string().contains("8.000 s"), "{e}");
        let w = record_windows(
            &short,
            WindowOptions {
                stride_samples: 5000,
                pad_short: true,
            },
        )
        .unwrap();
        assert_eq!((w.len(), w[0].padded_samples), (1, 1000));
        assert_eq!(w[0].slot(14)[1249], 0.0, "padding is zeros");
        assert!(matches!(
            record_windows(
                &r,
                WindowOptions {
                    stride_samples: 0,
                    pad_short: false
                }
            ),
            Err(PreprocessError::ZeroStride)
        ));
    }

    #[test]
    fn eight_lead_records_and_other_rates_work() {
        let r = ramp_record(250.0, 2500, true);
        let w = record_windows(&r, WindowOptions::default()).unwrap();
        assert_eq!(w.len(), 1);
        // III = II - I = 1.0 for this ramp, whatever the rate.
        assert!(w[0].slot(5).iter().all(|v| (v - 1.0).abs() < 1e-4));
        let missing = Record::new(
            RecordMeta::default(),
            500.0,
            vec![(Lead::I, vec![0.0; 5000]), (Lead::II, vec![0.0; 5000])],
        )
        .unwrap();
        let e = record_windows(&missing, WindowOptions::default()).unwrap_err();
        assert!(e.to_string().contains("V1"), "{e}");
    }
}
