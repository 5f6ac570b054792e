//! The FHIR push: a thread that POSTs every stored ECG window, in id order, to the configured
//! FHIR server as a `transaction` Bundle ([`crate::fhir::transaction`]), with a durable outbox.
//!
//! The outbox is the history itself plus a cursor file holding the id of the last result the
//! server accepted (written to a temporary file, fsynced, renamed over the old one, the folder
//! fsynced). Nothing is lost: the history is fsynced before a result is reported, and the cursor
//! moves only after a 2xx. While the server refuses or is down the same result is retried with
//! backoff (`fhir.retry_initial_s`, 1 s by default, doubling to `fhir.retry_max_s`, 60 s); a
//! restart resumes at the cursor. Nothing is created twice: a
//! result is sent again only when the daemon stopped between the server's answer and the cursor
//! write, and then every entry's conditional create (`ifNoneExist` on its identifier) finds the
//! first copy. Device events (disconnects, gaps) are not ECG windows and are skipped. Results
//! dropped from the history by its retention before they could be sent are counted.

use crate::engine::ModelInfo;
use crate::fhir::{self, FhirContext};
use crate::store::{HistoryView, Store};
use eknet_shared::bundle::Manifest;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often an idle pusher looks for new results.
const POLL: Duration = Duration::from_millis(200);
/// Results read from the history at a time.
const BATCH: usize = 32;

/// What the push reports (`/v1/status` and `/metrics`).
#[derive(Debug, Default)]
pub struct PushCounters {
    /// Results the server accepted.
    pub sent: AtomicU64,
    /// Attempts that failed (refused, error status, unreachable, timed out); each is retried.
    pub failed_attempts: AtomicU64,
    /// Device events skipped (not ECG windows).
    pub skipped_events: AtomicU64,
    /// Results that left the history (retention) before they could be sent.
    pub expired_unsent: AtomicU64,
    /// The id of the last result accepted (the cursor).
    pub cursor: AtomicU64,
    /// Last error and when the last result was accepted.
    pub last: Mutex<PushLast>,
}

/// The last error and success.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PushLast {
    /// The last failure, with the result id.
    pub error: Option<String>,
    /// When the server last accepted a result (RFC 3339).
    pub success_at: Option<String>,
}

/// Why the push could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The cursor file is unreadable or holds something else.
    #[error("FHIR push cursor {path}: {detail}")]
    Cursor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Everything the pusher needs.
pub struct Pusher {
    /// The FHIR server's base URL.
    pub endpoint: String,
    /// Bearer token.
    pub token: Option<String>,
    /// The daemon's id in identifiers.
    pub source_id: String,
    /// `Patient/...`.
    pub patient: Option<String>,
    /// Model facts.
    pub model: Arc<ModelInfo>,
    /// Manifest.
    pub manifest: Arc<Manifest>,
    /// The history (the outbox).
    pub store: Arc<Mutex<Store>>,
    /// What the history holds.
    pub history: watch::Receiver<HistoryView>,
    /// The cursor file.
    pub cursor_path: PathBuf,
    /// Request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub backoff_start: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Counters.
    pub counters: Arc<PushCounters>,
    /// Becomes true when the daemon stops.
    pub shutdown: watch::Receiver<bool>,
}

/// Reads the cursor: 0 when the file does not exist.
pub fn read_cursor(path: &Path) -> Result<u64, PushError> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|_| PushError::Cursor {
            path: path.to_path_buf(),
            detail: format!("holds '{}', not a result id", s.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(PushError::Cursor {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Writes the cursor durably: temporary file, fsync, rename, folder fsync.
fn write_cursor(path: &Path, id: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    crate::store::sync_dir(path);
    Ok(())
}

enum Sent {
    Ok,
    Failed(String),
}

impl Pusher {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `d` in small steps; true if the daemon is stopping.
    fn pause(&self, d: Duration) -> bool {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() {
            if self.stopping() {
                return true;
            }
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
        self.stopping()
    }

    fn post(&self, agent: &ureq::Agent, body: &str) -> Sent {
        let mut req = agent
            .post(&self.endpoint)
            .set("Content-Type", "application/fhir+json")
            .set("Accept", "application/fhir+json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.send_string(body) {
            Ok(r) if (200..300).contains(&r.status()) => Sent::Ok,
            Ok(r) => Sent::Failed(format!("HTTP {}", r.status())),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                Sent::Failed(format!("HTTP {code}: {text}"))
            }
            Err(ureq::Error::Transport(t)) => Sent::Failed(t.to_string()),
        }
    }

    /// Runs until the daemon stops.
    pub fn run(self) {
        let agent = ureq::AgentBuilder::new()
            .timeout(self.timeout)
            .redirects(0)
            .build();
        let mut cursor = self.counters.cursor.load(Ordering::Relaxed);
        let mut backoff = self.backoff_start;
        loop {
            if self.stopping() {
                return;
            }
            let oldest = self.history.borrow().oldest_id;
            if let Some(oldest) = oldest
                && oldest > cursor + 1
            {
                let expired = oldest - 1 - cursor;
                self.counters
                    .expired_unsent
                    .fetch_add(expired, Ordering::Relaxed);
                eprintln!(
                    "eknetd: FHIR push: {expired} results left the history before they could be sent"
                );
                cursor = oldest - 1;
            }
            let batch = match self.store.lock() {
                Ok(mut st) => st.since(cursor, BATCH),
                Err(_) => return,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    self.note_error(format!("reading the history: {e}"));
                    if self.pause(self.backoff_start) {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                if self.pause(POLL) {
                    return;
                }
                continue;
            }
            for r in batch {
                let bundle = match fhir::transaction(
                    &r,
                    &FhirContext {
                        source_id: &self.source_id,
                        patient: self.patient.as_deref(),
                        model: &self.model,
                        manifest: &self.manifest,
                    },
                ) {
                    Ok(b) => Some(b.to_string()),
                    Err(fhir::FhirError::NotAWindow(_)) => None,
                };
                if let Some(body) = bundle {
                    loop {
                        match self.post(&agent, &body) {
                            Sent::Ok => {
                                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut l) = self.counters.last.lock() {
                                    l.success_at =
                                        Some(crate::result::rfc3339_ms(crate::result::now_ms()));
                                }
                                backoff = self.backoff_start;
                                break;
                            }
                            Sent::Failed(why) => {
                                self.counters
                                    .failed_attempts
                                    .fetch_add(1, Ordering::Relaxed);
                                self.note_error(format!(
                                    "result {}: {why} (retrying in {:.1} s)",
                                    r.id,
                                    backoff.as_secs_f64()
                                ));
                                if self.pause(backoff) {
                                    return;
                                }
                                backoff = (backoff * 2).min(self.backoff_max);
                            }
                        }
                    }
                } else {
                    self.counters.skipped_events.fetch_add(1, Ordering::Relaxed);
                }
                cursor = r.id;
                if let Err(e) = write_cursor(&self.cursor_path, cursor) {
                    // The next start resends from the old cursor; the server's conditional
                    // creates keep that from duplicating anything.
                    self.note_error(format!(
                        "cannot write the cursor {}: {e}",
                        self.cursor_path.display()
                    ));
                }
                self.counters.cursor.store(cursor, Ordering::Relaxed);
                if self.stopping() {
                    return;
                }
            }
        }
    }

    fn note_error(&self, msg: String) {
        eprintln!("eknetd: FHIR push: {msg}");
        if let Ok(mut l) = self.counters.last.lock() {
            l.error = Some(msg);
        }
    }
}

/// The host name (for the default source id), or `eknetd`.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "eknetd".into())
}
