//! Wiring: from a config to a running daemon. The bundle is loaded and its plan built before
//! anything listens (a bad bundle refuses to start); the history is opened; the inference thread,
//! the serial reader and the HTTP server start; one watch channel stops them all.

use crate::acquire::{DeviceStatus, ReaderConfig, SharedStatus, run_reader};
use crate::api::{AppState, FhirState, HttpCounters, router};
use crate::config::DaemonConfig;
use crate::engine::{Engine, EngineCounters, ModelInfo};
use crate::fhir_push::{PushCounters, Pusher};
use crate::signal::SignalTap;
use crate::store::{Store, StoreError};
use eknet_runtime::{Classifier, RuntimeError};
use eknet_shared::bundle::{Bundle, Manifest, Precision};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No bundle configured.
    #[error("no model bundle: give --bundle FILE or model.bundle in the config")]
    NoBundle,
    /// The bundle was refused.
    #[error("model bundle refused: {0}")]
    Bundle(#[from] RuntimeError),
    /// The history could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A thread could not start.
    #[error("cannot start the inference thread: {0}")]
    Thread(std::io::Error),
    /// The blocking start-up task (bundle, plans, history) did not finish.
    #[error("start-up task failed: {0}")]
    StartupTask(String),
    /// The FHIR push cannot start.
    #[error(transparent)]
    FhirPush(#[from] crate::fhir_push::PushError),
}

/// A running daemon.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Set to true to stop.
    pub shutdown: watch::Sender<bool>,
    /// The HTTP server task.
    pub server: tokio::task::JoinHandle<()>,
    /// The reader task, when a device is configured.
    pub reader: Option<tokio::task::JoinHandle<()>>,
    /// The inference thread: it ends when every sender of its queue is gone.
    pub engine: Option<std::thread::JoinHandle<()>>,
    /// Model facts.
    pub model: Arc<ModelInfo>,
    /// Device status.
    pub status: SharedStatus,
    /// Results recovered from a torn history line at start.
    pub recovered_torn_bytes: u64,
    /// The FHIR push thread, when an endpoint is configured.
    pub fhir_push: Option<std::thread::JoinHandle<()>>,
}

/// How long [`Running::stop`] waits for the inference thread to finish the window in hand.
pub const ENGINE_STOP_WAIT: Duration = Duration::from_secs(3);

impl Running {
    /// Stops everything: the reader stops reading, event streams end, the server finishes the
    /// requests in flight; then, with every sender of its queue gone, the inference thread
    /// finishes (and stores) the windows already handed to it and ends. Waits for the thread at
    /// most [`ENGINE_STOP_WAIT`].
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(r) = self.reader {
            let _ = r.await;
        }
        if let Some(push) = self.fhir_push {
            // Bounded by the request timeout: the thread checks the flag between requests.
            let _ = tokio::task::spawn_blocking(move || push.join()).await;
        }
        if let Some(engine) = self.engine {
            let joined = tokio::task::spawn_blocking(move || engine.join());
            if tokio::time::timeout(ENGINE_STOP_WAIT, joined)
                .await
                .is_err()
            {
                eprintln!(
                    "eknetd: the inference thread did not finish within {} s; stopping anyway",
                    ENGINE_STOP_WAIT.as_secs()
                );
            }
        }
    }
}

/// `precision: auto`: times both graphs on a synthetic window (f32: two warm-up and three timed
/// runs; int8: one run, and two more only if that one is not already slower than f32's median)
/// and keeps the faster. Returns the classifier and a sentence saying what was measured.
fn pick_faster(bundle: &Bundle, threads: usize) -> Result<(Classifier, String), StartError> {
    let window = crate::engine::synthetic_window();
    let time = |c: &Classifier| -> Result<f64, StartError> {
        let t = std::time::Instant::now();
        c.classify(&window)?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let f32c = Classifier::from_bundle(bundle, Precision::F32, threads)?;
    time(&f32c)?;
    time(&f32c)?;
    let mut f = [time(&f32c)?, time(&f32c)?, time(&f32c)?];
    f.sort_by(f64::total_cmp);
    let f32_ms = f[1];
    let int8c = Classifier::from_bundle(bundle, Precision::Int8, threads)?;
    let mut i = vec![time(&int8c)?];
    if i[0] <= f32_ms {
        i.push(time(&int8c)?);
        i.push(time(&int8c)?);
    }
    i.sort_by(f64::total_cmp);
    let int8_ms = i[i.len() / 2];
    let (pick, other) = if int8_ms < f32_ms {
        (int8c, f32c)
    } else {
        (f32c, int8c)
    };
    drop(other);
    let why = format!(
        "{}, chosen at start-up (auto): int8 {int8_ms:.2} ms vs f32 {f32_ms:.2} ms per window on this CPU",
        pick.precision()
    );
    Ok((pick, why))
}

/// The slow, blocking part of starting: opening and checking the bundle, building (and, for
/// `precision: auto`, timing) both plans, opening the history. Runs on a blocking thread, off the
/// async runtime.
/// What the blocking start-up work yields: the classifier, how its precision was chosen, the
/// manifest, the bundle's path and sha256, the history.
type Opened = (Classifier, String, Arc<Manifest>, PathBuf, String, Store);

fn open_model_and_history(cfg: &DaemonConfig) -> Result<Opened, StartError> {
    let path: PathBuf = cfg.model.bundle.clone().ok_or(StartError::NoBundle)?;
    let bundle = Bundle::open(&path).map_err(RuntimeError::from)?;
    let sha256 = std::fs::read(&path)
        .map(|b| eknet_shared::bundle::sha256_hex(&b))
        .map_err(|e| StartError::StartupTask(format!("reading {}: {e}", path.display())))?;
    let (classifier, selection) = match cfg.model.precision.fixed() {
        Some(p) => (
            Classifier::from_bundle(&bundle, p, cfg.model.threads)?,
            format!("{p}, as configured"),
        ),
        None => pick_faster(&bundle, cfg.model.threads)?,
    };
    let manifest = Arc::new(bundle.manifest.clone());
    drop(bundle);
    let store = Store::open(&cfg.history.path, cfg.history.retention)?;
    Ok((classifier, selection, manifest, path, sha256, store))
}

/// Starts the daemon from a (validated) config.
pub async fn start(cfg: &DaemonConfig) -> Result<Running, StartError> {
    let owned = cfg.clone();
    let (classifier, selection, manifest, path, bundle_sha256, store) =
        tokio::task::spawn_blocking(move || open_model_and_history(&owned))
            .await
            .map_err(|e| StartError::StartupTask(e.to_string()))??;
    let model = Arc::new(ModelInfo {
        bundle: path.display().to_string(),
        model_id: manifest.model_id.clone(),
        bundle_sha256,
        precision: classifier.precision(),
        precision_selection: selection,
        threads: cfg.model.threads,
        classes: classifier.classes(),
    });
    let recovered_torn_bytes = store.recovered_torn_bytes;
    for (line, why) in &store.skipped_lines {
        eprintln!(
            "eknetd: history {}, line {line}: damaged, skipped ({why})",
            cfg.history.path.display()
        );
    }
    let (history_tx, history_rx) = watch::channel(store.view(true));
    let store = Arc::new(Mutex::new(store));
    let (events, _) = broadcast::channel(cfg.api.stream_buffer.max(1));
    let counters = Arc::new(EngineCounters::default());
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel(16);
    let engine = Engine {
        classifier,
        manifest: manifest.clone(),
        store: store.clone(),
        view: history_tx,
        events: events.clone(),
        counters: counters.clone(),
    };
    let engine = std::thread::Builder::new()
        .name("eknet-infer".into())
        .spawn(move || engine.run(jobs_rx))
        .map_err(StartError::Thread)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let status: SharedStatus = Arc::new(Mutex::new(DeviceStatus {
        state: if cfg.serial.path.is_some() {
            "connecting".into()
        } else {
            "no device configured".into()
        },
        ..DeviceStatus::default()
    }));
    let signal = SignalTap::channel();
    let source_id: Arc<str> = Arc::from(
        cfg.fhir
            .source_id
            .clone()
            .unwrap_or_else(crate::fhir_push::host_name),
    );
    let push_counters = Arc::new(PushCounters::default());
    let fhir_push = match &cfg.fhir.endpoint {
        Some(endpoint) => {
            let cursor_path = cfg.fhir.cursor_path.clone().unwrap_or_else(|| {
                PathBuf::from(format!("{}.fhir-cursor", cfg.history.path.display()))
            });
            let cursor = crate::fhir_push::read_cursor(&cursor_path)?;
            push_counters
                .cursor
                .store(cursor, std::sync::atomic::Ordering::Relaxed);
            let pusher = Pusher {
                endpoint: endpoint.clone(),
                token: cfg.fhir.token.clone(),
                source_id: source_id.to_string(),
                patient: cfg.fhir.patient.clone(),
                model: model.clone(),
                manifest: manifest.clone(),
                store: store.clone(),
                history: history_rx.clone(),
                cursor_path,
                timeout: Duration::from_secs_f64(cfg.fhir.timeout_s),
                backoff_start: Duration::from_secs_f64(cfg.fhir.retry_initial_s),
                backoff_max: Duration::from_secs_f64(cfg.fhir.retry_max_s),
                counters: push_counters.clone(),
                shutdown: shutdown_rx.clone(),
            };
            Some(
                std::thread::Builder::new()
                    .name("eknet-fhir".into())
                    .spawn(move || pusher.run())
                    .map_err(StartError::Thread)?,
            )
        }
        None => None,
    };
    let reader = match &cfg.serial.path {
        Some(p) => {
            let rc = ReaderConfig {
                path: p.clone(),
                baud: cfg.serial.baud,
                protocol: cfg.serial.protocol,
                watchdog: Duration::from_millis(cfg.serial.watchdog_ms),
                hop_samples: cfg.hop_samples(),
                cyton_map: cfg.cyton_map().unwrap_or([eknet_shared::Lead::I; 8]),
                cyton_gain: cfg.serial.cyton_gain,
            };
            Some(tokio::spawn(run_reader(
                rc,
                status.clone(),
                jobs_tx.clone(),
                counters.clone(),
                signal.clone(),
                shutdown_rx.clone(),
            )))
        }
        None => None,
    };
    let state = AppState {
        store,
        history: history_rx,
        events,
        status: status.clone(),
        counters,
        model: model.clone(),
        manifest,
        jobs: jobs_tx,
        token: cfg.api.token.as_deref().map(Arc::from),
        body_limit: cfg.api.body_limit,
        started: Instant::now(),
        keep_alive: Duration::from_secs(15),
        http: Arc::new(HttpCounters::default()),
        shutdown: shutdown_rx.clone(),
        signal,
        fhir: Arc::new(FhirState {
            source_id,
            patient: cfg.fhir.patient.clone(),
            endpoint: cfg.fhir.endpoint.clone(),
            push: push_counters,
        }),
    };
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.api.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.api.listen,
        source,
    })?;
    let app = router(state);
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let graceful = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
        {
            eprintln!("eknetd: HTTP server stopped: {e}");
        }
    });
    Ok(Running {
        addr,
        shutdown,
        server,
        reader,
        engine: Some(engine),
        model,
        status,
        recovered_torn_bytes,
        fhir_push,
    })
}
