//! The local HTTP API (axum): health, status, results (latest, since, server-sent events with ids,
//! `Last-Event-ID` resume, keep-alive, an explicit `lagged` event), classification of an uploaded
//! 10 s ECG, model facts, Prometheus metrics and the OpenAPI description. Every error is JSON
//! `{"error": ..., "status": ...}` with the right 4xx; an optional bearer token guards all but
//! `/healthz`.

use crate::acquire::SharedStatus;
use crate::engine::{EngineCounters, Job, ModelInfo};
use crate::fhir_push::PushCounters;
use crate::result::WindowResult;
use crate::signal::{MAX_EVENTS_PER_S, SignalFrame};
use crate::store::{HistoryView, Store};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eknet_shared::Lead;
use eknet_shared::bundle::Manifest;
use eknet_shared::layout::WINDOW_SAMPLES;
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Largest decompressed upload.
pub const MAX_DECOMPRESSED: u64 = 64 << 20;
/// Results replayed to a resuming stream client before it is told to page instead.
pub const MAX_REPLAY: usize = 1000;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    /// History (held by the engine while it writes: only ever locked off the async runtime).
    pub store: Arc<Mutex<Store>>,
    /// What the history holds, without waiting for the file.
    pub history: tokio::sync::watch::Receiver<HistoryView>,
    /// Stored results as they happen.
    pub events: broadcast::Sender<Arc<WindowResult>>,
    /// Device status.
    pub status: SharedStatus,
    /// Engine counters.
    pub counters: Arc<EngineCounters>,
    /// Model facts.
    pub model: Arc<ModelInfo>,
    /// The bundle's manifest.
    pub manifest: Arc<Manifest>,
    /// The inference thread's queue (uploads).
    pub jobs: SyncSender<Job>,
    /// Bearer token.
    pub token: Option<Arc<str>>,
    /// Request body limit.
    pub body_limit: usize,
    /// Process start.
    pub started: Instant,
    /// Keep-alive period of the event stream.
    pub keep_alive: Duration,
    /// Requests answered, and with a 4xx.
    pub http: Arc<HttpCounters>,
    /// Becomes true when the daemon stops (event streams end then).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The live signal (`/v1/stream/signal`).
    pub signal: broadcast::Sender<Arc<SignalFrame>>,
    /// FHIR: identity and push counters.
    pub fhir: Arc<FhirState>,
}

/// What the FHIR routes and the status need.
#[derive(Debug)]
pub struct FhirState {
    /// The daemon's id in result identifiers.
    pub source_id: Arc<str>,
    /// `Patient/...`, when configured.
    pub patient: Option<String>,
    /// The push endpoint, when configured.
    pub endpoint: Option<String>,
    /// Push counters (all zero without an endpoint).
    pub push: Arc<PushCounters>,
}

/// Request counters.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// All requests.
    pub requests: AtomicU64,
    /// 4xx answers.
    pub client_errors: AtomicU64,
    /// Event-stream clients told they lagged.
    pub stream_lags: AtomicU64,
}

/// A JSON error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message the client gets.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page_html))
        .route("/app.js", get(page_js))
        .route("/style.css", get(page_css))
        .route("/healthz", get(healthz))
        .route("/v1/results/{id}/fhir", get(result_fhir))
        .route("/v1/stream/signal", get(stream_signal))
        .route("/v1/status", get(status))
        .route("/v1/results/latest", get(latest))
        .route("/v1/results", get(results))
        .route("/v1/stream", get(stream_results))
        .route("/v1/classify", post(classify))
        .route("/v1/model", get(model))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Routes open without the token: health, and the bedside page's static files (they hold no
/// data; the page asks for the token and sends it with every data request).
const OPEN_ROUTES: [&str; 4] = ["/healthz", "/", "/app.js", "/style.css"];

/// Counts requests, checks the bearer token (all but [`OPEN_ROUTES`]).
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    s.http.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(token) = &s.token
        && !OPEN_ROUTES.contains(&req.uri().path())
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            s.http.client_errors.fetch_add(1, Ordering::Relaxed);
            let why = if given.is_some() {
                "wrong bearer token"
            } else {
                "missing bearer token (Authorization: Bearer <token>)"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
        }
    }
    let r = next.run(req).await;
    if r.status().is_client_error() {
        s.http.client_errors.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such route: {} {} (see /openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

fn lock_err() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal state unavailable",
    )
}

async fn status(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let device = s.status.lock().map_err(|_| lock_err())?.clone();
    let h = s.history.borrow().clone();
    let c = &s.counters;
    let classified = c.classified.load(Ordering::Relaxed);
    let total_us = c.inference_us_total.load(Ordering::Relaxed);
    Ok(Json(serde_json::json!({
        "device": device,
        "model": *s.model,
        "windows": {
            "classified": classified,
            "abstained": c.abstained.load(Ordering::Relaxed),
            "dropped_busy": c.dropped_windows.load(Ordering::Relaxed),
            "device_events_dropped": c.dropped_events.load(Ordering::Relaxed),
            "device_events": c.events.load(Ordering::Relaxed),
            "uploads": c.uploads.load(Ordering::Relaxed),
            "last_inference_ms": c.last_inference_us.load(Ordering::Relaxed) as f64 / 1000.0,
            "mean_inference_ms": if classified > 0 { total_us as f64 / classified as f64 / 1000.0 } else { 0.0 },
            "last_pipeline_ms": c.last_pipeline_us.load(Ordering::Relaxed) as f64 / 1000.0,
        },
        "history": { "stored": h.stored, "oldest_id": h.oldest_id,
                     "latest_id": h.latest.as_ref().map(|r| r.id),
                     "write_errors": c.store_errors.load(Ordering::Relaxed),
                     "appends_cut_back": h.appends_cut_back,
                     "damaged_lines_skipped_at_start": h.skipped_lines,
                     "torn_bytes_cut_at_start": h.recovered_torn_bytes },
        "fhir": fhir_status(&s.fhir),
        "uptime_s": s.started.elapsed().as_secs_f64(),
    })))
}

fn fhir_status(f: &FhirState) -> serde_json::Value {
    let p = &f.push;
    let last = p.last.lock().map(|l| l.clone()).unwrap_or_default();
    serde_json::json!({
        "source_id": &*f.source_id,
        "push_endpoint": f.endpoint,
        "sent": p.sent.load(Ordering::Relaxed),
        "failed_attempts": p.failed_attempts.load(Ordering::Relaxed),
        "skipped_events": p.skipped_events.load(Ordering::Relaxed),
        "expired_unsent": p.expired_unsent.load(Ordering::Relaxed),
        "cursor": p.cursor.load(Ordering::Relaxed),
        "last_error": last.error,
        "last_success": last.success_at,
    })
}

/// The bedside page (files embedded in the binary).
const PAGE_HTML: &str = include_str!("../web/index.html");
const PAGE_JS: &str = include_str!("../web/app.js");
const PAGE_CSS: &str = include_str!("../web/style.css");

fn page_file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn page_html() -> Response {
    page_file(PAGE_HTML, "text/html; charset=utf-8")
}

async fn page_js() -> Response {
    page_file(PAGE_JS, "text/javascript; charset=utf-8")
}

async fn page_css() -> Response {
    page_file(PAGE_CSS, "text/css; charset=utf-8")
}

/// One stored result as a FHIR R4 `collection` Bundle.
async fn result_fhir(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().ok().filter(|&i| i > 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("'{id}' is not a result id (a whole number from 1)"),
        )
    })?;
    let (items, _) = read_since(&s, id - 1, 1).await?;
    let r = items.into_iter().find(|r| r.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no result {id} in the history"),
        )
    })?;
    let ctx = crate::fhir::FhirContext {
        source_id: &s.fhir.source_id,
        patient: s.fhir.patient.as_deref(),
        model: &s.model,
        manifest: &s.manifest,
    };
    let bundle = crate::fhir::collection(&r, &ctx)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, "application/fhir+json")],
        bundle.to_string(),
    )
        .into_response())
}

/// The live signal: frames merged while contiguous, at most [`MAX_EVENTS_PER_S`] events a
/// second, each with id = its last frame's sequence number; `lagged` when this client fell
/// behind (the sequence numbers jump too).
async fn stream_signal(
    State(s): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.signal.subscribe();
    let period = Duration::from_secs(1) / MAX_EVENTS_PER_S;
    let http = s.http.clone();
    let live = stream::unfold((rx, Vec::<Event>::new()), move |(mut rx, mut queue)| {
        let http = http.clone();
        async move {
            loop {
                if !queue.is_empty() {
                    let e = queue.remove(0);
                    return Some((Ok(e), (rx, queue)));
                }
                tokio::time::sleep(period).await;
                let mut merged: Option<SignalFrame> = None;
                loop {
                    match rx.try_recv() {
                        Ok(f) => {
                            let joined = merged.as_mut().is_some_and(|m| m.merge(&f));
                            if !joined {
                                if let Some(m) = merged.take() {
                                    queue.push(signal_event(&m));
                                }
                                merged = Some((*f).clone());
                            }
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            http.stream_lags.fetch_add(1, Ordering::Relaxed);
                            if let Some(m) = merged.take() {
                                queue.push(signal_event(&m));
                            }
                            queue.push(
                                Event::default().event("lagged").data(
                                    serde_json::json!({
                                        "missed_frames": n,
                                        "reason": "this client fell behind the signal",
                                    })
                                    .to_string(),
                                ),
                            );
                        }
                        Err(broadcast::error::TryRecvError::Closed) => return None,
                    }
                }
                if let Some(m) = merged {
                    queue.push(signal_event(&m));
                }
            }
        }
    });
    let mut stop = s.shutdown.clone();
    let all = live.take_until(async move {
        let _ = stop.wait_for(|v| *v).await;
    });
    Sse::new(all).keep_alive(KeepAlive::new().interval(s.keep_alive).text("keep-alive"))
}

fn signal_event(f: &SignalFrame) -> Event {
    Event::default()
        .id(f.seq_last.to_string())
        .event("signal")
        .data(serde_json::to_string(f).unwrap_or_default())
}

async fn latest(State(s): State<AppState>) -> Result<Response, ApiError> {
    let latest = s.history.borrow().latest.clone();
    let r = latest.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no result yet"))?;
    // Serialised from the shared result, not a clone of it.
    Ok(Json(&*r).into_response())
}

/// Reads results after `since` from the history file on a blocking thread: the engine holds the
/// store while it syncs a write, and a slow disk must not stall the async runtime.
async fn read_since(
    s: &AppState,
    since: u64,
    limit: usize,
) -> Result<(Vec<WindowResult>, Option<u64>), ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut st = store.lock().map_err(|_| lock_err())?;
        let items = st.since(since, limit).map_err(|e| {
            eprintln!("eknetd: reading history: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the history failed (the daemon's log says why)",
            )
        })?;
        Ok((items, st.oldest_id()))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "history task failed"))?
}

/// Parses `since` and `limit` (and nothing else).
fn page_query(q: Option<&str>) -> Result<(u64, usize), ApiError> {
    let (mut since, mut limit) = (0u64, 100usize);
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter '{k}': '{v}' is not {what}"),
            )
        };
        match k {
            "since" => since = v.parse().map_err(|_| bad("a result id (a whole number)"))?,
            "limit" => {
                limit = v.parse().map_err(|_| bad("a whole number"))?;
                if !(1..=1000).contains(&limit) {
                    return Err(bad("between 1 and 1000"));
                }
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter '{k}' (use since and limit)"),
                ));
            }
        }
    }
    Ok((since, limit))
}

async fn results(
    State(s): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (since, limit) = page_query(q.as_deref())?;
    let (items, oldest) = read_since(&s, since, limit).await?;
    let next = items.last().map(|r| r.id);
    Ok(Json(serde_json::json!({
        "results": items,
        "oldest_id": oldest,
        "next_since": next,
    })))
}

fn sse_event(r: &WindowResult) -> Event {
    Event::default()
        .id(r.id.to_string())
        .event("result")
        .data(serde_json::to_string(r).unwrap_or_default())
}

async fn stream_results(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "Last-Event-ID is not a result id")
                })?,
        ),
    };
    // Subscribe before reading the history, so nothing falls between the two.
    let rx = s.events.subscribe();
    let (replay, truncated, last_sent) = match last {
        Some(id) => {
            let (items, _) = read_since(&s, id, MAX_REPLAY + 1).await?;
            let truncated = items.len() > MAX_REPLAY;
            let items: Vec<WindowResult> = items.into_iter().take(MAX_REPLAY).collect();
            let last_sent = items.last().map_or(id, |r| r.id);
            (items, truncated, last_sent)
        }
        None => (Vec::new(), false, 0),
    };
    let mut first: Vec<Event> = replay.iter().map(sse_event).collect();
    if truncated {
        first.push(
            Event::default().event("lagged").data(
                serde_json::json!({
                    "reason": "more results since Last-Event-ID than one replay holds",
                    "resume_with": format!("/v1/results?since={last_sent}"),
                })
                .to_string(),
            ),
        );
    }
    let http = s.http.clone();
    let live = stream::unfold((rx, last_sent), move |(mut rx, mut last_sent)| {
        let http = http.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(r) => {
                        if r.id <= last_sent {
                            continue;
                        }
                        last_sent = r.id;
                        return Some((Ok(sse_event(&r)), (rx, last_sent)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        http.stream_lags.fetch_add(1, Ordering::Relaxed);
                        let e = Event::default().event("lagged").data(
                            serde_json::json!({
                                "missed": n,
                                "reason": "this client fell behind the stream",
                                "resume_with": format!("/v1/results?since={last_sent}"),
                            })
                            .to_string(),
                        );
                        return Some((Ok(e), (rx, last_sent)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let mut stop = s.shutdown.clone();
    let all = stream::iter(first.into_iter().map(Ok))
        .chain(live)
        .take_until(async move {
            let _ = stop.wait_for(|v| *v).await;
        });
    Ok(Sse::new(all).keep_alive(KeepAlive::new().interval(s.keep_alive).text("keep-alive")))
}

fn is_gzip(headers: &HeaderMap, body: &[u8]) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        || body.starts_with(&[0x1f, 0x8b])
}

/// The twelve leads of an uploaded record's first 10 s at 500 Hz.
pub fn upload_leads(body: &[u8], gzip: bool) -> Result<Vec<Vec<f32>>, ApiError> {
    use eknet_shared::ecgzip::{BodyError, EcgzipError};
    let record = eknet_shared::ecgzip::from_body(body, gzip, MAX_DECOMPRESSED).map_err(|e| {
        let status = match &e {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Gzip(_) | BodyError::NotUtf8 => StatusCode::BAD_REQUEST,
            BodyError::Record(EcgzipError::Json { .. }) => StatusCode::BAD_REQUEST,
            BodyError::Record(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    })?;
    let r = eknet_shared::preprocess::to_model_rate(&record)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let n = r.len_samples();
    if n < WINDOW_SAMPLES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the ECG lasts {:.3} s ({n} samples at 500 Hz); classification needs 10 s",
                n as f64 / 500.0
            ),
        ));
    }
    Lead::ALL
        .iter()
        .map(|&l| {
            r.lead(l)
                .map(|x| x[..WINDOW_SAMPLES].to_vec())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("lead {} is missing", l.name()),
                    )
                })
        })
        .collect()
}

async fn classify(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WindowResult>, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            ct.as_str(),
            "application/json"
                | "application/gzip"
                | "application/octet-stream"
                | "application/x-gzip"
        ) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type '{ct}': send application/json (optionally gzip-encoded)"),
            ));
        }
    }
    let bytes = axum::body::to_bytes(body, s.body_limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {} bytes", s.body_limit),
            )
        })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty body: send a 10 s 12-lead ECG as JSON",
        ));
    }
    let gzip = is_gzip(&headers, &bytes);
    let leads = tokio::task::spawn_blocking(move || upload_leads(&bytes, gzip))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "parser task failed"))??;
    let (tx, rx) = oneshot::channel();
    s.jobs
        .try_send(Job::Upload { leads, reply: tx })
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is busy; retry shortly",
            )
        })?;
    match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(Ok(r))) => Ok(Json(r)),
        Ok(Ok(Err(e))) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e)),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model did not answer",
        )),
    }
}

async fn model(State(s): State<AppState>) -> Json<serde_json::Value> {
    let m = &s.manifest;
    Json(serde_json::json!({
        "model_id": m.model_id,
        "precision": s.model.precision,
        "precision_selection": s.model.precision_selection,
        "bundle_sha256": s.model.bundle_sha256,
        "threads": s.model.threads,
        "bundle": s.model.bundle,
        "labels": m.labels,
        "input": m.input,
        "metrics": m.metrics,
        "architecture": m.architecture,
        "quantization": m.quantization,
        "provenance": {
            "checkpoint": m.provenance.checkpoint,
            "data_dir": m.provenance.data_dir,
            "train_csv": m.provenance.train_csv,
            "val_csv": m.provenance.val_csv,
            "seed": m.provenance.seed,
            "epochs": m.provenance.epochs,
            "commit": m.provenance.commit,
            "created": m.provenance.created,
            "reproduce": m.provenance.reproduce,
            "exporter": m.provenance.exporter,
        },
        "intended_use": "demonstration; not for clinical decisions",
    }))
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let d = s.status.lock().map_err(|_| lock_err())?.clone();
    let c = &s.counters;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: f64| {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
    };
    put(
        "eknet_uptime_seconds",
        "gauge",
        "Seconds since start.",
        s.started.elapsed().as_secs_f64(),
    );
    put(
        "eknet_device_streaming",
        "gauge",
        "1 while the device streams.",
        f64::from(u8::from(d.state == "streaming")),
    );
    put(
        "eknet_device_bytes_total",
        "counter",
        "Bytes read from the device.",
        d.bytes as f64,
    );
    put(
        "eknet_device_frames_total",
        "counter",
        "Good frames or packets.",
        d.frames as f64,
    );
    put(
        "eknet_device_bytes_skipped_total",
        "counter",
        "Bytes skipped while resynchronising.",
        d.bytes_skipped as f64,
    );
    put(
        "eknet_device_crc_errors_total",
        "counter",
        "CRC errors or bad footers.",
        d.crc_errors as f64,
    );
    put(
        "eknet_device_lost_samples_total",
        "counter",
        "Device samples lost in transit.",
        d.lost_samples as f64,
    );
    put(
        "eknet_device_gaps_total",
        "counter",
        "Gaps in the signal.",
        d.gaps as f64,
    );
    put(
        "eknet_device_disconnects_total",
        "counter",
        "Device gone (EOF, error, watchdog).",
        d.disconnects as f64,
    );
    put(
        "eknet_device_watchdog_trips_total",
        "counter",
        "Silent-port watchdog expiries.",
        d.watchdog_trips as f64,
    );
    put(
        "eknet_device_measured_rate_hz",
        "gauge",
        "Device samples per second measured on arrival.",
        d.measured_rate_hz.unwrap_or(0.0),
    );
    put(
        "eknet_windows_classified_total",
        "counter",
        "Windows classified.",
        c.classified.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_windows_abstained_total",
        "counter",
        "Windows not classified.",
        c.abstained.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_windows_dropped_total",
        "counter",
        "Windows dropped because the model was busy.",
        c.dropped_windows.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_device_events_dropped_total",
        "counter",
        "Device events dropped because the inference queue stayed full.",
        c.dropped_events.load(Ordering::Relaxed) as f64,
    );
    let h = s.history.borrow().clone();
    put(
        "eknet_history_appends_cut_back_total",
        "counter",
        "History appends that failed and were cut back to the last whole line.",
        h.appends_cut_back as f64,
    );
    put(
        "eknet_history_damaged_lines_skipped",
        "gauge",
        "Damaged history lines skipped when the daemon started.",
        h.skipped_lines as f64,
    );
    put(
        "eknet_inference_last_seconds",
        "gauge",
        "Last window's time in the graph.",
        c.last_inference_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
    put(
        "eknet_pipeline_last_seconds",
        "gauge",
        "Last window: last sample to stored result.",
        c.last_pipeline_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
    put(
        "eknet_history_write_errors_total",
        "counter",
        "History write failures.",
        c.store_errors.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_http_requests_total",
        "counter",
        "HTTP requests.",
        s.http.requests.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_http_client_errors_total",
        "counter",
        "HTTP 4xx answers.",
        s.http.client_errors.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_stream_lags_total",
        "counter",
        "Event-stream clients told they lagged.",
        s.http.stream_lags.load(Ordering::Relaxed) as f64,
    );
    let p = &s.fhir.push;
    put(
        "eknet_fhir_sent_total",
        "counter",
        "Results the FHIR server accepted.",
        p.sent.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_fhir_failed_attempts_total",
        "counter",
        "FHIR push attempts that failed (each retried).",
        p.failed_attempts.load(Ordering::Relaxed) as f64,
    );
    put(
        "eknet_fhir_pending",
        "gauge",
        "Results stored but not yet accepted by the FHIR server (device events included).",
        if s.fhir.endpoint.is_some() {
            h.latest
                .as_ref()
                .map_or(0, |r| r.id.saturating_sub(p.cursor.load(Ordering::Relaxed)))
                as f64
        } else {
            0.0
        },
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::spec())
}
