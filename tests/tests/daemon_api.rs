//! The daemon's HTTP API on a real socket, with a fixture bundle: uploads of real records are
//! classified; every kind of bad request gets its own 4xx with a JSON reason and the daemon keeps
//! serving; the bearer token guards all but `/healthz`; the event stream resumes from
//! `Last-Event-ID` out of the durable history, across a restart; a bad bundle refuses to start.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::app;
use eknet_daemon::config::{DaemonConfig, PrecisionChoice};
use eknet_daemon::result::{Outcome, Source, Span, WindowResult};
use eknet_daemon::store::Store;
use eknet_tests::{FIXTURE_CODES, fixture_bundle, http, ludb, sse};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn config(dir: &Path, bundle: &Path) -> DaemonConfig {
    let mut cfg = DaemonConfig::default();
    cfg.model.bundle = Some(bundle.to_path_buf());
    cfg.model.precision = PrecisionChoice::Int8;
    cfg.api.listen = "127.0.0.1:0".parse().unwrap();
    cfg.api.body_limit = 1 << 20;
    cfg.history.path = dir.join("history.jsonl");
    cfg
}

fn record_json(id: usize, drop_lead: Option<&str>, seconds: Option<usize>) -> String {
    let r = eknet_shared::io::read_any(&ludb(id)).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&eknet_shared::ecgzip::to_json(&r)).unwrap();
    let m = v.as_object_mut().unwrap();
    if let Some(l) = drop_lead {
        assert!(
            m.remove(l).is_some(),
            "{l} in {:?}",
            m.keys().collect::<Vec<_>>()
        );
    }
    if let Some(s) = seconds {
        for (k, lead) in m.iter_mut() {
            if k == "eknet_meta" {
                continue;
            }
            let arr = match lead {
                serde_json::Value::Object(o) => o.get_mut("value").unwrap(),
                other => other,
            };
            arr.as_array_mut().unwrap().truncate(s * 500);
        }
    }
    v.to_string()
}

/// Twelve leads of ten values each, stated at 10^12 Hz.
fn absurd_rate_json() -> String {
    let mut m = serde_json::Map::new();
    m.insert(
        "eknet_meta".into(),
        serde_json::json!({ "sample_rate_hz": 1e12 }),
    );
    for l in eknet_shared::Lead::ALL {
        m.insert(l.name().into(), serde_json::json!(vec![0.1; 10]));
    }
    serde_json::Value::Object(m).to_string()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_bad_requests_tokens_and_routes() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle(dir.path());
    let mut cfg = config(dir.path(), &bundle);
    cfg.api.token = Some("s3cret".into());
    let d = app::start(&cfg).await.unwrap();
    let a = d.addr;
    let auth = [
        ("Authorization", "Bearer s3cret"),
        ("Content-Type", "application/json"),
    ];

    // Health needs no token; everything else does.
    assert_eq!(http(a, "GET", "/healthz", &[], b"").await.status, 200);
    let r = http(a, "GET", "/v1/status", &[], b"").await;
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = http(
        a,
        "GET",
        "/v1/status",
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "wrong bearer token");

    // A real 10 s record, plain and gzip: the same classification.
    let body = record_json(7, None, None);
    let r = http(a, "POST", "/v1/classify", &auth, body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let plain = r.json();
    assert_eq!(plain["source"], "upload");
    assert_eq!(plain["quality"].as_array().unwrap().len(), 12);
    assert!(plain["heart_rate_bpm"].as_f64().unwrap() > 30.0);
    // The cart's measurements come with every result, apart from the model's findings.
    let m = &plain["measurements"];
    let hr = m["hr_bpm"].as_f64().unwrap();
    assert!(
        (hr - plain["heart_rate_bpm"].as_f64().unwrap()).abs() < 5.0,
        "{m}"
    );
    let qrs = m["qrs_ms"].as_f64().unwrap();
    assert!((50.0..200.0).contains(&qrs), "{m}");
    let (qt, rr) = (
        m["qt_ms"].as_f64().unwrap(),
        m["rr_mean_ms"].as_f64().unwrap(),
    );
    let bazett = qt / (rr / 1000.0).sqrt();
    assert!(
        (m["qtc_bazett_ms"].as_f64().unwrap() - bazett).abs() < 0.02 * bazett,
        "{m}"
    );
    assert!(
        m["statements"].is_array() && m["beats"].as_array().unwrap().len() >= 5,
        "{m}"
    );
    if plain["outcome"] == "classified" {
        let c = &plain["classification"];
        assert_eq!(c["scores"].as_array().unwrap().len(), FIXTURE_CODES.len());
        assert_eq!(c["precision"], "int8");
        assert!(
            c["model_id"]
                .as_str()
                .unwrap()
                .starts_with("untrained-fixture")
        );
    } else {
        assert!(!plain["reasons"].as_array().unwrap().is_empty());
    }
    let r = http(
        a,
        "POST",
        "/v1/classify",
        &[
            ("Authorization", "Bearer s3cret"),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["classification"]["scores"],
        plain["classification"]["scores"]
    );

    // Bad inputs, each with its own status and reason.
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "bad JSON",
            b"{\"I\": [1, 2,".to_vec(),
            auth.to_vec(),
            400,
            "not JSON",
        ),
        ("empty", Vec::new(), auth.to_vec(), 400, "empty body"),
        (
            "missing lead",
            record_json(7, Some("V2"), None).into_bytes(),
            auth.to_vec(),
            422,
            "lacks lead(s) V2",
        ),
        (
            "too short",
            record_json(7, None, Some(5)).into_bytes(),
            auth.to_vec(),
            422,
            "needs 10 s",
        ),
        (
            "not a lead map",
            b"[1, 2, 3]".to_vec(),
            auth.to_vec(),
            422,
            "not a JSON object",
        ),
        (
            "oversize",
            vec![b' '; 2 << 20],
            auth.to_vec(),
            413,
            "exceeds",
        ),
        (
            "wrong type",
            b"hello".to_vec(),
            vec![
                ("Authorization", "Bearer s3cret"),
                ("Content-Type", "text/plain"),
            ],
            415,
            "content type",
        ),
        (
            // Once aborted eknetd: the resampler sized its filter from the rate first.
            "rate 1e12 Hz",
            absurd_rate_json().into_bytes(),
            auth.to_vec(),
            422,
            "outside the accepted 50-20000 Hz",
        ),
        (
            "bad gzip",
            vec![0x1f, 0x8b, 0, 1, 2, 3],
            auth.to_vec(),
            400,
            "gzip",
        ),
    ];
    for (what, body, headers, status, needle) in cases {
        let r = http(a, "POST", "/v1/classify", &headers, &body).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let j = r.json();
        assert_eq!(j["status"], status, "{what}");
        assert!(j["error"].as_str().unwrap().contains(needle), "{what}: {j}");
    }
    let r = http(a, "GET", "/v1/nothing-here", &auth, b"").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no such route")
    );
    let r = http(a, "DELETE", "/v1/results", &auth, b"").await;
    assert_eq!(r.status, 405);
    let r = http(a, "GET", "/v1/results?since=abc", &auth, b"").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("'since'"));
    let r = http(a, "GET", "/v1/results?limit=0", &auth, b"").await;
    assert_eq!(r.status, 400);
    let r = http(a, "GET", "/v1/results/latest", &auth, b"").await;
    assert_eq!(r.status, 404, "uploads are not stored");

    // Still serving, and it counted what it refused.
    let r = http(a, "GET", "/v1/status", &auth, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["model"]["classes"], 4);
    let m = http(a, "GET", "/metrics", &auth, b"").await;
    let text = String::from_utf8(m.body).unwrap();
    let errors: f64 = text
        .lines()
        .find(|l| l.starts_with("eknet_http_client_errors_total "))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 14.0, "{text}");
    let r = http(a, "GET", "/v1/model", &auth, b"").await;
    let labels: Vec<String> = r.json()["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels, FIXTURE_CODES);
    let r = http(a, "GET", "/openapi.json", &auth, b"").await;
    assert!(r.json()["paths"]["/v1/classify"]["post"].is_object());
    d.stop().await;
}

fn stored(i: u64) -> WindowResult {
    WindowResult {
        id: 0,
        source: Source::Live,
        outcome: Outcome::Abstained,
        reasons: vec![format!("event {i}")],
        window: Span {
            start_index: Some(i * 1250),
            end_index: Some(i * 1250 + 5000),
            device_start_index: None,
            start_time: "2026-11-25T00:00:00.000Z".into(),
            end_time: "2026-11-25T00:00:10.000Z".into(),
        },
        heart_rate_bpm: None,
        quality: vec![],
        classification: None,
        pipeline_ms: None,
        measurements: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_from_last_event_id_out_of_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle(dir.path());
    let cfg = config(dir.path(), &bundle);
    {
        let mut s = Store::open(&cfg.history.path, 100).unwrap();
        for i in 1..=6 {
            s.append(stored(i)).unwrap();
        }
    }
    let d = app::start(&cfg).await.unwrap();
    let events = sse(
        d.addr,
        "/v1/stream",
        &[("Last-Event-ID", "3")],
        Duration::from_secs(10),
        |e| e.len() >= 3,
    )
    .await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, ["4", "5", "6"]);
    assert!(events.iter().all(|e| e.event.as_deref() == Some("result")));
    let r: WindowResult = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(r.reasons, vec!["event 4".to_string()]);
    let r = http(d.addr, "GET", "/v1/results?since=4&limit=1", &[], b"").await;
    let j = r.json();
    assert_eq!(j["results"].as_array().unwrap().len(), 1);
    assert_eq!(j["results"][0]["id"], 5);
    assert_eq!(j["next_since"], 5);
    let r = http(d.addr, "GET", "/v1/stream", &[("Last-Event-ID", "x")], b"").await;
    assert_eq!(r.status, 400);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_bundle_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle(dir.path());
    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    let bad = dir.path().join("bad.eknet");
    std::fs::write(&bad, bytes).unwrap();
    let e = app::start(&config(dir.path(), &bad)).await.err().unwrap();
    let msg = e.to_string();
    assert!(msg.starts_with("model bundle refused"), "{msg}");
    assert!(msg.contains("bad.eknet"), "{msg}");
    let e = app::start(&config(dir.path(), &dir.path().join("absent.eknet")))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("absent.eknet"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_precision_times_both_graphs_and_runs_the_one_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle(dir.path());
    let mut cfg = config(dir.path(), &bundle);
    cfg.model.precision = PrecisionChoice::Auto;
    let d = app::start(&cfg).await.unwrap();
    let m = http(d.addr, "GET", "/v1/model", &[], b"").await.json();
    let chosen = m["precision"].as_str().unwrap().to_string();
    assert!(chosen == "f32" || chosen == "int8", "{m}");
    let why = m["precision_selection"].as_str().unwrap();
    assert!(
        why.starts_with(&format!("{chosen}, chosen at start-up (auto): int8 "))
            && why.contains(" ms vs f32 ")
            && why.ends_with(" ms per window on this CPU"),
        "{why}"
    );
    // The timings it quotes agree with its choice.
    let ms = |tag: &str| -> f64 {
        let rest = &why[why.find(tag).unwrap() + tag.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let (int8_ms, f32_ms) = (ms("int8 "), ms("vs f32 "));
    if chosen == "int8" {
        assert!(int8_ms <= f32_ms, "{why}");
    } else {
        assert!(int8_ms >= f32_ms, "{why}");
    }
    // Uploads run the chosen graph.
    let r = http(
        d.addr,
        "POST",
        "/v1/classify",
        &[],
        record_json(7, None, None).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = r.json();
    if r["outcome"] == "classified" {
        assert_eq!(r["classification"]["precision"], chosen.as_str());
    }
    d.stop().await;
}
