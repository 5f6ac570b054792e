//! The inference thread: owns the tract plan (built once) and the history. Live windows arrive in
//! order from the reader; each is checked (lead-off, per-lead quality), classified or not, stored
//! durably, then published to the stream. Uploads (`POST /v1/classify`) run on the same plan and
//! answer their caller without entering the history. It is a plain thread, so a slow graph never
//! blocks the async runtime that reads the serial port and serves HTTP.

use crate::quality::{LeadQuality, heart_rate_bpm, window_quality};
use crate::result::{
    Outcome, Source, Span, WindowResult, classification, now_ms, rfc3339_ms, verdicts,
};
use crate::store::{HistoryView, Store};
use crate::windows::{ELECTRODES, LiveWindow};
use eknet_runtime::Classifier;
use eknet_shared::Lead;
use eknet_shared::bundle::{Manifest, Precision};
use eknet_shared::layout::{LEAD_ROWS, Window3x4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, oneshot};

/// Work for the inference thread.
#[derive(Debug)]
pub enum Job {
    /// A live window (`arrived`: when its last sample came off the wire; `end_ms`: its wall time).
    Live {
        /// The window.
        window: LiveWindow,
        /// Wall time of its last sample, ms since the epoch.
        end_ms: i64,
        /// When its last sample arrived.
        arrived: Instant,
    },
    /// A device event that interrupts classification (gap, disconnect, silence).
    Event {
        /// What happened.
        reasons: Vec<String>,
        /// When, ms since the epoch.
        at_ms: i64,
        /// Stream index where it happened, when known.
        index: Option<u64>,
    },
    /// An uploaded 10 s ECG.
    Upload {
        /// The twelve leads, 5000 samples each at 500 Hz, [`Lead::ALL`] order (mV).
        leads: Vec<Vec<f32>>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<WindowResult, String>>,
    },
}

/// Counters the API reports.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Windows classified.
    pub classified: AtomicU64,
    /// Windows not classified.
    pub abstained: AtomicU64,
    /// Device events stored.
    pub events: AtomicU64,
    /// Uploads answered.
    pub uploads: AtomicU64,
    /// Live windows dropped because the inference queue was full.
    pub dropped_windows: AtomicU64,
    /// Device events dropped because the inference queue stayed full for
    /// [`MAX_PENDING_EVENTS`](crate::acquire::MAX_PENDING_EVENTS) of them.
    pub dropped_events: AtomicU64,
    /// History write failures.
    pub store_errors: AtomicU64,
    /// Sum of inference microseconds (for the mean).
    pub inference_us_total: AtomicU64,
    /// Last inference, microseconds.
    pub last_inference_us: AtomicU64,
    /// Last pipeline latency (last sample to stored), microseconds.
    pub last_pipeline_us: AtomicU64,
}

/// What the thread needs.
pub struct Engine {
    /// The plan.
    pub classifier: Classifier,
    /// The bundle's manifest.
    pub manifest: Arc<Manifest>,
    /// History (shared with the API's readers).
    pub store: Arc<Mutex<Store>>,
    /// What the API shows of the history, published after every append.
    pub view: tokio::sync::watch::Sender<HistoryView>,
    /// Where stored results are published.
    pub events: broadcast::Sender<Arc<WindowResult>>,
    /// Counters.
    pub counters: Arc<EngineCounters>,
}

/// Queues a live window; when the thread is behind, the window is dropped and counted (the next
/// one comes 2.5 s later), rather than blocking the serial reader.
pub fn offer(tx: &SyncSender<Job>, job: Job, counters: &EngineCounters) -> bool {
    match tx.try_send(job) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            counters.dropped_windows.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// Why a window is not classified: electrodes off and leads that fail their quality check.
pub fn abstention_reasons(lead_off: u16, quality: &[(Lead, LeadQuality)]) -> Vec<String> {
    let mut reasons = Vec::new();
    for (bit, name) in ELECTRODES.iter().enumerate() {
        if lead_off & (1 << bit) != 0 {
            if bit < 3 {
                reasons.push(format!(
                    "electrode {name} off: every limb and chest lead is unusable"
                ));
            } else {
                reasons.push(format!("lead {name} off"));
            }
        }
    }
    let off: Vec<Lead> = crate::windows::spoiled_leads(lead_off);
    for (lead, q) in quality {
        if let LeadQuality::Bad { reason } = q
            && !off.contains(lead)
        {
            reasons.push(format!("lead {}: {reason}", lead.name()));
        }
    }
    reasons
}

/// The shared measurement engine on one window's twelve leads ([`Lead::ALL`] order, 500 Hz).
/// Leads that fail its own quality checks are left out there, with the reason.
pub fn measure_window(leads: &[Vec<f32>]) -> Option<Box<eknet_shared::measure::Measurements>> {
    let named = Lead::ALL
        .iter()
        .zip(leads)
        .map(|(&l, v)| (l, v.clone()))
        .collect();
    let record = eknet_shared::record::Record::new(
        eknet_shared::record::RecordMeta::default(),
        eknet_shared::measure::REQUIRED_RATE_HZ,
        named,
    )
    .ok()?;
    Some(Box::new(eknet_shared::measure::measure(&record)))
}

impl Engine {
    fn publish(&self, r: WindowResult) -> Option<Arc<WindowResult>> {
        let (stored, mut view) = match self.store.lock() {
            Ok(mut s) => {
                let stored = s.append(r);
                // Counts and ids only: the newest result is set below, shared, not cloned.
                (stored, s.view(false))
            }
            Err(_) => return None,
        };
        match stored {
            Ok(r) => {
                let r = Arc::new(r);
                view.latest = Some(r.clone());
                self.view.send_replace(view);
                // No subscriber is fine.
                let _ = self.events.send(r.clone());
                Some(r)
            }
            Err(e) => {
                view.latest = self.view.borrow().latest.clone();
                self.view.send_replace(view);
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("eknetd: {e}");
                None
            }
        }
    }

    /// Quality, heart rate and (when every lead is usable) the model on one window.
    fn assess(
        &self,
        leads: &[Vec<f32>],
        lead_off: u16,
        source: Source,
        window: Span,
    ) -> WindowResult {
        let refs: [&[f32]; LEAD_ROWS] = std::array::from_fn(|i| leads[i].as_slice());
        let mut quality = window_quality(refs);
        // An electrode off spoils leads whatever their samples look like.
        for lead in crate::windows::spoiled_leads(lead_off) {
            if let Some(q) = quality.iter_mut().find(|(l, _)| *l == lead) {
                q.1 = LeadQuality::Bad {
                    reason: "electrode off".into(),
                };
            }
        }
        let heart_rate_bpm = heart_rate_bpm(&leads[1]);
        let measurements = measure_window(leads);
        let reasons = abstention_reasons(lead_off, &quality);
        let mut result = WindowResult {
            id: 0,
            source,
            outcome: Outcome::Abstained,
            reasons,
            window,
            heart_rate_bpm,
            quality: verdicts(&quality),
            classification: None,
            pipeline_ms: None,
            measurements,
        };
        if !result.reasons.is_empty() {
            return result;
        }
        let input = match Window3x4::from_leads(refs) {
            Ok(w) => w,
            Err(e) => {
                result
                    .reasons
                    .push(format!("could not build the 3x4 input: {e}"));
                return result;
            }
        };
        let t = Instant::now();
        match self.classifier.classify(&input.data) {
            Ok(out) => {
                let us = t.elapsed().as_micros() as u64;
                self.counters
                    .inference_us_total
                    .fetch_add(us, Ordering::Relaxed);
                self.counters.last_inference_us.store(us, Ordering::Relaxed);
                result.outcome = Outcome::Classified;
                result.classification = Some(classification(
                    &self.manifest,
                    self.classifier.precision(),
                    &out,
                    us as f64 / 1000.0,
                ));
            }
            Err(e) => result.reasons.push(format!("inference failed: {e}")),
        }
        result
    }

    /// Runs until every sender is gone.
    pub fn run(self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Live {
                    window,
                    end_ms,
                    arrived,
                } => {
                    let span = Span {
                        start_index: Some(window.start_index),
                        end_index: Some(window.end_index()),
                        device_start_index: window.device_start_index,
                        start_time: rfc3339_ms(end_ms - 10_000),
                        end_time: rfc3339_ms(end_ms),
                    };
                    let mut r = self.assess(&window.leads, window.lead_off, Source::Live, span);
                    let us = arrived.elapsed().as_micros() as u64;
                    r.pipeline_ms = Some(us as f64 / 1000.0);
                    self.counters.last_pipeline_us.store(us, Ordering::Relaxed);
                    let c = match r.outcome {
                        Outcome::Classified => &self.counters.classified,
                        Outcome::Abstained => &self.counters.abstained,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    self.publish(r);
                }
                Job::Event {
                    reasons,
                    at_ms,
                    index,
                } => {
                    self.counters.events.fetch_add(1, Ordering::Relaxed);
                    self.publish(WindowResult {
                        id: 0,
                        source: Source::Live,
                        outcome: Outcome::Abstained,
                        reasons,
                        window: Span {
                            start_index: index,
                            end_index: index,
                            device_start_index: None,
                            start_time: rfc3339_ms(at_ms),
                            end_time: rfc3339_ms(at_ms),
                        },
                        heart_rate_bpm: None,
                        quality: vec![],
                        classification: None,
                        pipeline_ms: None,
                        measurements: None,
                    });
                }
                Job::Upload { leads, reply } => {
                    self.counters.uploads.fetch_add(1, Ordering::Relaxed);
                    let now = now_ms();
                    let span = Span {
                        start_index: None,
                        end_index: None,
                        device_start_index: None,
                        start_time: rfc3339_ms(now),
                        end_time: rfc3339_ms(now),
                    };
                    let r = if leads.len() == LEAD_ROWS && leads.iter().all(|l| l.len() == 5000) {
                        Ok(self.assess(&leads, 0, Source::Upload, span))
                    } else {
                        Err("an upload needs twelve 10 s leads at 500 Hz".to_string())
                    };
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// Model facts the API reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// Bundle path.
    pub bundle: String,
    /// Model id.
    pub model_id: String,
    /// Lower-case hex sha256 of the bundle file.
    pub bundle_sha256: String,
    /// Graph in use.
    pub precision: Precision,
    /// How it was chosen (configured, or timed at start-up with `auto`).
    pub precision_selection: String,
    /// Threads for matrix products.
    pub threads: usize,
    /// Classes.
    pub classes: usize,
}

/// A 1 mV, 72 bpm pulse train on every slot: a deterministic input for timing the graphs.
pub fn synthetic_window() -> Vec<f32> {
    let mut w = vec![0f32; 15 * 1250];
    for (s, slot) in w.chunks_mut(1250).enumerate() {
        for (i, v) in slot.iter_mut().enumerate() {
            let t = (i + s * 97) as f32 / 500.0;
            let phase = (t * 1.2).fract();
            *v = (-((phase - 0.3) / 0.01).powi(2)).exp();
        }
    }
    w
}
