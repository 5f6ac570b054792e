//! Ward integration end to end, with real parts only: eknetd fed by the simulator over a
//! pseudo-terminal (real LUDB records, the shipped demo bundle); its bedside page in Debian's
//! headless Chromium driven over WebDriver by Debian's chromedriver (the DOM must show 12 lead
//! panels and the rhythm strip with samples drawn, the heart rate `/v1/results/latest` gives, a
//! finding or abstention; a screenshot is written); FHIR R4 Bundles pulled from
//! `/v1/results/{id}/fhir` and pushed to a receiver on a real socket that refuses at first, is down
//! across a daemon restart, then accepts: every live window exactly once. Every resource in every
//! Bundle is read by the fhir-sdk project's FHIR model and must write back unchanged.
//!
//! The browser test needs `chromium` and `chromium-driver` (`.ci/run` installs them); without
//! them it fails saying so, unless `EKNET_SKIP_BROWSER=1`. `EKNET_SCREENSHOT=PATH` keeps the
//! screenshot.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::app;
use eknet_daemon::config::DaemonConfig;
use eknet_daemon::result::WindowResult;
use eknet_daemon::sim::SimOptions;
use eknet_tests::{http, ludb};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "ward-secret";

fn demo_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/eknet-demo.eknet")
}

fn config(dir: &Path, link: &Path) -> DaemonConfig {
    let mut cfg = DaemonConfig::default();
    cfg.model.bundle = Some(demo_bundle());
    cfg.model.precision = eknet_daemon::config::PrecisionChoice::F32;
    cfg.api.listen = "127.0.0.1:0".parse().unwrap();
    cfg.history.path = dir.join("history.jsonl");
    cfg.serial.path = Some(link.to_path_buf());
    cfg.fhir.source_id = Some("bed-7".into());
    cfg
}

fn start_sim(
    link: &Path,
    speed: f64,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<eknet_daemon::sim::SimReport>>,
) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let opts = SimOptions {
        records: (1..=6).map(ludb).collect(),
        speed,
        loop_forever: true,
        link: Some(link.to_path_buf()),
        quiet: true,
        ..SimOptions::default()
    };
    (stop, tokio::spawn(eknet_daemon::sim::run(opts, rx)))
}

fn auth() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

/// Every Bundle's resources must read as FHIR R4(B) with the fhir-sdk project's model and write
/// back to the same JSON: a misnamed element (which a lenient reader would drop), a wrong code
/// for a required binding, a missing required element or a wrong type all fail here. (Each
/// resource is read with its own type: the model's `Bundle` pulls in every resource type, which
/// takes minutes to compile.) The Bundle's own elements are checked by hand.
fn strict_r4_bundle(text: &str) -> Value {
    use fhir_model::r4b::resources::{Device, Observation};
    let orig: Value = serde_json::from_str(text).unwrap();
    let mut shell = orig.clone();
    let entries = shell["entry"].as_array_mut().expect("a Bundle has entries");
    assert!(!entries.is_empty());
    for e in entries.iter_mut() {
        let r = e["resource"].take();
        let back = match r["resourceType"].as_str() {
            Some("Observation") => serde_json::to_value(
                serde_json::from_value::<Observation>(r.clone())
                    .unwrap_or_else(|err| panic!("not an R4 Observation ({err}): {r}")),
            ),
            Some("Device") => serde_json::to_value(
                serde_json::from_value::<Device>(r.clone())
                    .unwrap_or_else(|err| panic!("not an R4 Device ({err}): {r}")),
            ),
            other => panic!("unexpected resource type {other:?}"),
        }
        .unwrap();
        if let Some(d) = first_difference(&r, &back, "") {
            panic!(
                "a {} does not survive the FHIR model unchanged at {d}",
                r["resourceType"]
            );
        }
        let obj = e.as_object().unwrap();
        for k in obj.keys() {
            assert!(
                ["fullUrl", "resource", "request"].contains(&k.as_str()),
                "entry.{k}"
            );
        }
        assert!(e["fullUrl"].as_str().unwrap().starts_with("urn:uuid:"));
        let uuid = &e["fullUrl"].as_str().unwrap()[9..];
        assert!(
            uuid.len() == 36 && uuid.chars().filter(|&c| c == '-').count() == 4,
            "{uuid}"
        );
    }
    assert_eq!(shell["resourceType"], "Bundle");
    assert!(["collection", "transaction"].contains(&shell["type"].as_str().unwrap()));
    for k in shell.as_object().unwrap().keys() {
        assert!(
            ["resourceType", "identifier", "type", "timestamp", "entry"].contains(&k.as_str()),
            "Bundle.{k}"
        );
    }
    orig
}

/// An instant without trailing zeros in its fraction (`...42.610Z` and `...42.61Z` are one time).
fn instant(s: &str) -> String {
    match s.strip_suffix('Z') {
        Some(t) if t.contains('.') && t.contains('T') => {
            format!("{}Z", t.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s.to_string(),
    }
}

fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    None => return Some(format!("{at}/{k}: dropped ({v})")),
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, &format!("{at}/{k}")) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}/{k}: added"))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{at}: {} items became {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| first_difference(v, w, &format!("{at}/{i}")))
        }
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64() != y.as_f64()).then(|| format!("{at}: {x} became {y}"))
        }
        (Value::String(x), Value::String(y)) => {
            (instant(x) != instant(y)).then(|| format!("{at}: {a} became {b}"))
        }
        _ => (a != b).then(|| format!("{at}: {a} became {b}")),
    }
}

fn resources<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

fn codes(concept: &Value) -> Vec<(String, String)> {
    concept["coding"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["system"].as_str().unwrap_or("").to_string(),
                        c["code"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The checks every result's Bundle must pass: the Device, the panel with its eight LOINC
/// components in UCUM units (a value or a reason), findings and statements derived from the
/// panel, an abstention as dataAbsentReason, the window's period everywhere.
fn check_result_bundle(b: &Value, r: &WindowResult, manifest: &eknet_shared::bundle::Manifest) {
    let devices = resources(b, "Device");
    assert_eq!(devices.len(), 1);
    let versions: Vec<&str> = devices[0]["version"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert!(versions.contains(&manifest.model_id.as_str()));
    assert!(
        versions.iter().any(|v| v.len() == 64),
        "bundle sha256: {versions:?}"
    );
    assert!(versions.contains(&"f32"));
    let obs = resources(b, "Observation");
    let panel = obs
        .iter()
        .find(|o| codes(&o["code"]).contains(&("http://loinc.org".into(), "34534-8".into())))
        .expect("a 12 lead EKG panel");
    assert_eq!(panel["effectivePeriod"]["start"], r.window.start_time);
    assert_eq!(panel["effectivePeriod"]["end"], r.window.end_time);
    assert!(panel.get("subject").is_none(), "no patient is configured");
    let comps = panel["component"].as_array().unwrap();
    let want = [
        ("8867-4", "/min"),
        ("8625-6", "ms"),
        ("8633-0", "ms"),
        ("8634-8", "ms"),
        ("8636-3", "ms"),
        ("8626-4", "deg"),
        ("8632-2", "deg"),
        ("8638-9", "deg"),
    ];
    assert_eq!(comps.len(), want.len());
    for (c, (code, unit)) in comps.iter().zip(want) {
        assert_eq!(
            codes(&c["code"]),
            vec![("http://loinc.org".to_string(), code.to_string())]
        );
        match c.get("valueQuantity") {
            Some(q) => {
                assert_eq!(q["system"], "http://unitsofmeasure.org");
                assert_eq!(q["code"], unit);
            }
            None => assert!(
                c["dataAbsentReason"]["text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty()),
                "{c}"
            ),
        }
    }
    let m = r.measurements.as_deref();
    if let Some(hr) = m.and_then(|m| m.hr_bpm) {
        let v = comps[0]["valueQuantity"]["value"].as_f64().unwrap();
        assert!((v - hr).abs() <= 0.005, "{v} vs {hr}");
    }
    let panel_url = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| std::ptr::eq(&e["resource"], *panel))
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .unwrap();
    let findings = r.classification.as_ref().map_or(0, |c| c.findings.len());
    let statements = m.map_or(0, |m| m.statements.len());
    let abstained = usize::from(r.outcome == eknet_daemon::result::Outcome::Abstained);
    assert_eq!(obs.len(), 1 + findings + statements + abstained, "{b}");
    for o in obs.iter().filter(|o| !std::ptr::eq(**o, *panel)) {
        assert_eq!(o["derivedFrom"][0]["reference"], panel_url.as_str());
        assert_eq!(o["effectivePeriod"]["end"], r.window.end_time);
    }
    if let Some(c) = &r.classification {
        for f in &c.findings {
            let o = obs
                .iter()
                .find(|o| {
                    codes(&o["code"]).contains(&("urn:eknet:ptbxl-scp".into(), f.code.clone()))
                })
                .unwrap_or_else(|| panic!("no Observation for finding {}", f.code));
            let label = manifest.labels.iter().find(|l| l.code == f.code).unwrap();
            for s in &label.snomed {
                assert!(codes(&o["code"]).contains(&("http://snomed.info/sct".into(), s.clone())));
            }
            assert_eq!(o["interpretation"][0]["coding"][0]["code"], "POS");
            let score = o["component"][0]["valueQuantity"]["value"]
                .as_f64()
                .unwrap();
            assert!((score - f64::from(f.score)).abs() < 0.006);
        }
    }
    if abstained == 1 {
        let o = obs
            .iter()
            .find(|o| codes(&o["code"]).contains(&("http://loinc.org".into(), "18844-1".into())))
            .expect("the abstention");
        let text = o["dataAbsentReason"]["text"].as_str().unwrap();
        for why in &r.reasons {
            assert!(text.contains(why.as_str()), "{text} lacks {why}");
        }
    }
}

// ---------------------------------------------------------------- FHIR pull

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_result_pulls_as_a_strict_r4_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ecg");
    let (stop, sim) = start_sim(&link, 10.0);
    let mut cfg = config(dir.path(), &link);
    cfg.api.token = Some(TOKEN.into());
    let d = app::start(&cfg).await.unwrap();
    let manifest = eknet_shared::bundle::Bundle::open(&demo_bundle())
        .unwrap()
        .manifest;
    let a = auth();
    // Wait for a few windows (one every 0.25 s at 10 x), then pull each.
    let deadline = Instant::now() + Duration::from_secs(60);
    let results: Vec<WindowResult> = loop {
        let page = http(
            d.addr,
            "GET",
            "/v1/results?since=0&limit=1000",
            &[(a.0, &a.1)],
            b"",
        )
        .await
        .json();
        let rs: Vec<WindowResult> = serde_json::from_value(page["results"].clone()).unwrap();
        if rs.iter().filter(|r| !r.quality.is_empty()).count() >= 6 {
            break rs;
        }
        assert!(Instant::now() < deadline, "too few windows: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop.send(true);
    let mut findings = 0;
    let mut statements = 0;
    for r in &results {
        let resp = http(
            d.addr,
            "GET",
            &format!("/v1/results/{}/fhir", r.id),
            &[(a.0, &a.1)],
            b"",
        )
        .await;
        if r.quality.is_empty() {
            assert_eq!(resp.status, 404, "a device event has no FHIR form");
            assert!(String::from_utf8_lossy(&resp.body).contains("device event"));
            continue;
        }
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("application/fhir+json"));
        let b = strict_r4_bundle(&String::from_utf8_lossy(&resp.body));
        assert_eq!(b["type"], "collection");
        assert_eq!(b["identifier"]["value"], format!("bed-7/{}", r.id));
        check_result_bundle(&b, r, &manifest);
        findings += r.classification.as_ref().map_or(0, |c| c.findings.len());
        statements += r.measurements.as_ref().map_or(0, |m| m.statements.len());
    }
    assert!(findings > 0, "the demo model finds something in LUDB 1-6");
    eprintln!(
        "pulled {} Bundles: {findings} findings, {statements} statements",
        results.len()
    );
    // Bad ids are refused clearly; the token guards the route.
    let r = http(d.addr, "GET", "/v1/results/abc/fhir", &[(a.0, &a.1)], b"").await;
    assert_eq!(r.status, 400);
    let r = http(
        d.addr,
        "GET",
        "/v1/results/999999/fhir",
        &[(a.0, &a.1)],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = http(
        d.addr,
        "GET",
        &format!("/v1/results/{}/fhir", results[0].id),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    d.stop().await;
    let _ = sim.await;
}

// ---------------------------------------------------------------- FHIR push

/// A FHIR server stand-in on a real socket: refuses the first `refuse` transactions with 503,
/// then accepts (200), recording each accepted Bundle's panel identifier.
#[derive(Default)]
struct Receiver {
    refuse: usize,
    seen: usize,
    refused: usize,
    accepted: Vec<String>,
    bodies: Vec<String>,
}

async fn serve(
    listener: tokio::net::TcpListener,
    rx: Arc<Mutex<Receiver>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut stop2 = stop.clone();
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop2.wait_for(|v| *v) => return,
        };
        let Ok((mut sock, _)) = accepted else {
            continue;
        };
        let rx = rx.clone();
        tokio::spawn(async move {
            let Some((_, body)) = read_message(&mut sock).await else {
                return;
            };
            let body = String::from_utf8_lossy(&body).to_string();
            let (status, reply) = {
                let mut r = rx.lock().unwrap();
                r.seen += 1;
                if r.seen <= r.refuse {
                    r.refused += 1;
                    (
                        "503 Service Unavailable",
                        r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}"#,
                    )
                } else {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let panel = v["entry"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|e| e["resource"]["resourceType"] == "Observation")
                        .find_map(|e| {
                            let id = e["resource"]["identifier"][0]["value"].as_str()?;
                            (id.matches('/').count() == 1).then(|| id.to_string())
                        })
                        .unwrap_or_default();
                    r.accepted.push(panel);
                    r.bodies.push(body);
                    (
                        "200 OK",
                        r#"{"resourceType":"Bundle","type":"transaction-response"}"#,
                    )
                }
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

async fn fhir_status(addr: SocketAddr) -> Value {
    http(addr, "GET", "/v1/status", &[], b"").await.json()["fhir"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_survives_refusals_an_outage_and_a_restart_with_every_result_once() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ecg");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let rec = Arc::new(Mutex::new(Receiver {
        refuse: 3,
        ..Receiver::default()
    }));
    let (server_stop, server_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, rec.clone(), server_rx));

    let (sim_stop, sim) = start_sim(&link, 8.0);
    let mut cfg = config(dir.path(), &link);
    cfg.fhir.endpoint = Some(format!("http://{server_addr}/fhir"));
    cfg.fhir.retry_initial_s = 0.1;
    cfg.fhir.retry_max_s = 0.4;
    cfg.fhir.timeout_s = 2.0;

    // Phase 1: the server refuses three times, then accepts some.
    let d = app::start(&cfg).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rec.lock().unwrap().accepted.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "nothing accepted: {}",
            fhir_status(d.addr).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Phase 2: the server goes down; the daemon keeps storing (and failing to push), then
    // restarts while the server is still down.
    let _ = server_stop.send(true);
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st1 = fhir_status(d.addr).await;
    assert!(st1["failed_attempts"].as_u64().unwrap() >= 4, "{st1}");
    assert!(st1["last_error"].as_str().is_some(), "{st1}");
    d.stop().await;
    let d = app::start(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let st2 = fhir_status(d.addr).await;
    assert!(
        st2["failed_attempts"].as_u64().unwrap() >= 1,
        "down across the restart: {st2}"
    );
    assert_eq!(
        st2["cursor"], st1["cursor"],
        "the cursor survived the restart"
    );
    // Phase 3: the server comes back on the same address and accepts everything.
    let listener = tokio::net::TcpListener::bind(server_addr).await.unwrap();
    let (server_stop, server_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, rec.clone(), server_rx));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _ = sim_stop.send(true);
    let _ = sim.await;
    // The device is gone: nothing new is stored. Everything stored reaches the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(d.addr, "GET", "/v1/status", &[], b"").await.json()["device"]["state"] == "streaming"
    {
        assert!(
            Instant::now() < deadline,
            "the daemon never saw the device go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The engine may still hold a window the device sent before it went (the simulator runs at
    // 8x real time): events are queued behind windows, so the device's departure stored last
    // (a result without per-lead quality) says the engine has drained.
    let deadline = Instant::now() + Duration::from_secs(60);
    let latest = loop {
        let s = http(d.addr, "GET", "/v1/status", &[], b"").await.json();
        let latest = s["history"]["latest_id"].as_u64().unwrap();
        let newest = http(d.addr, "GET", "/v1/results/latest", &[], b"")
            .await
            .json();
        let drained = newest["id"].as_u64() == Some(latest)
            && newest["quality"].as_array().is_some_and(|q| q.is_empty());
        if drained && s["fhir"]["cursor"].as_u64() == Some(latest) {
            break latest;
        }
        assert!(Instant::now() < deadline, "push never caught up: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let metrics = String::from_utf8(http(d.addr, "GET", "/metrics", &[], b"").await.body).unwrap();
    d.stop().await;
    let _ = server_stop.send(true);
    let _ = server.await;

    // Every live window exactly once, nothing else.
    let store = eknet_daemon::store::Store::open(&cfg.history.path, 1_000_000).unwrap();
    let mut store = store;
    let all = store.since(0, 100_000).unwrap();
    // What came after the push caught up can only be the device's disconnect at the end.
    assert!(
        all.iter()
            .filter(|r| r.id > latest)
            .all(|r| r.quality.is_empty()),
        "a window stored after the push caught up"
    );
    let windows: Vec<String> = all
        .iter()
        .filter(|r| !r.quality.is_empty())
        .map(|r| format!("bed-7/{}", r.id))
        .collect();
    let r = rec.lock().unwrap();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &r.accepted {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert_eq!(duplicates, 0, "sent twice: {counts:?}");
    let got: Vec<&str> = counts.keys().copied().collect();
    let mut want: Vec<&str> = windows.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want, "every stored window reaches the server");
    assert!(r.refused >= 3);
    for body in &r.bodies {
        let b = strict_r4_bundle(body);
        assert_eq!(b["type"], "transaction");
        for e in b["entry"].as_array().unwrap() {
            assert_eq!(e["request"]["method"], "POST");
            assert!(
                e["request"]["ifNoneExist"]
                    .as_str()
                    .unwrap()
                    .starts_with("identifier=")
            );
        }
    }
    assert!(metrics.contains("eknet_fhir_sent_total"), "{metrics}");
    eprintln!(
        "FHIR push: {} windows sent once each, {} refused, failed attempts {} before the restart \
         and {} after, duplicates {duplicates}",
        r.accepted.len(),
        r.refused,
        st1["failed_attempts"],
        st2["failed_attempts"]
    );
}

// ---------------------------------------------------------------- the page in a browser

fn chromedriver() -> Option<PathBuf> {
    let p = std::env::var_os("EKNET_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    p.exists().then_some(p)
}

/// A WebDriver command; the `value` of the answer. (chromedriver keeps the connection open after
/// its answer, so the body is read by its Content-Length.)
async fn wd(driver: SocketAddr, method: &str, path: &str, body: Value) -> Value {
    let (status, v) = wd_raw(driver, method, path, &body).await;
    assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
    v["value"].clone()
}

async fn wd_raw(driver: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut sock = tokio::net::TcpStream::connect(driver).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {driver}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let (head, body) = tokio::time::timeout(Duration::from_secs(60), read_message(&mut sock))
        .await
        .expect("chromedriver answers within 60 s")
        .expect("chromedriver closed the connection before its answer was whole");
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// One HTTP message off a connection: its head (lower-cased) and its body, read by the
/// Content-Length (0 without one); `None` if the peer closes first. (Both chromedriver and the
/// daemon's FHIR client keep the connection open after a message.)
async fn read_message(sock: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut head: Option<(String, usize, usize)> = None;
    loop {
        if head.is_none()
            && let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let h = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len = h
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            head = Some((h, p + 4, len));
        }
        if let Some((h, start, len)) = &head
            && buf.len() >= start + len
        {
            return Some((h.clone(), buf[*start..start + len].to_vec()));
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn script(driver: SocketAddr, session: &str, js: &str) -> Value {
    wd(
        driver,
        "POST",
        &format!("/session/{session}/execute/sync"),
        json!({ "script": js, "args": [] }),
    )
    .await
}

const PAGE_STATE: &str = r#"
const q = (s) => document.querySelector(s);
return {
  panels: [...document.querySelectorAll('canvas.panel')].map(c => ({
    lead: c.dataset.lead, rhythm: c.dataset.role === 'rhythm', samples: Number(c.dataset.samples) })),
  hr: q('#hr').textContent, hr_value: q('#hr').dataset.value || null,
  result_id: document.body.dataset.resultId || null,
  findings: document.querySelectorAll('#findings li[data-code]').length,
  abstentions: document.querySelectorAll('#abstention li.reason').length,
  token_form: !q('#token-form').hidden,
  link: q('#link').textContent,
  busy_ms: Number(document.body.dataset.busyMs || 0),
  elapsed_ms: Number(document.body.dataset.elapsedMs || 0),
  sheet_mode: q('#sheet-mode').textContent,
};"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedside_page_draws_the_sheet_in_a_real_browser() {
    let Some(driver_bin) = chromedriver() else {
        if std::env::var_os("EKNET_SKIP_BROWSER").is_some() {
            eprintln!("EKNET_SKIP_BROWSER set and no chromedriver: browser test skipped");
            return;
        }
        panic!(
            "chromedriver not found at /usr/bin/chromedriver (or EKNET_CHROMEDRIVER): install \
             Debian's chromium and chromium-driver (.ci/run does), or set EKNET_SKIP_BROWSER=1"
        );
    };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ecg");
    let (sim_stop, sim) = start_sim(&link, 4.0);
    let mut cfg = config(dir.path(), &link);
    cfg.api.token = Some(TOKEN.into());
    let d = app::start(&cfg).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver_proc = std::process::Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let driver: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(driver).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = dir.path().join("chromium-profile");
    let session = wd(
        driver,
        "POST",
        "/session",
        json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": std::env::var("EKNET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1500,1000",
                     format!("--user-data-dir={}", profile.display())],
        }}}}),
    )
    .await;
    let sid = session["sessionId"].as_str().unwrap().to_string();
    wd(
        driver,
        "POST",
        &format!("/session/{sid}/url"),
        json!({ "url": format!("http://{}/", d.addr) }),
    )
    .await;

    // The daemon wants a token: the page asks for it once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = script(driver, &sid, PAGE_STATE).await;
        if s["token_form"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never asked for the token: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    script(
        driver,
        &sid,
        &format!("document.getElementById('token').value = '{TOKEN}'; document.getElementById('token-form').requestSubmit(); return true;"),
    )
    .await;

    // Twelve panels and the rhythm strip drew samples; a result is shown with a finding or an
    // abstention; the heart rate is the one /v1/results/latest gives.
    let a = auth();
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let s = script(driver, &sid, PAGE_STATE).await;
        let panels = s["panels"].as_array().unwrap();
        let drawn = panels
            .iter()
            .all(|p| p["samples"].as_u64().unwrap_or(0) > 0);
        let listed = s["findings"].as_u64().unwrap() + s["abstentions"].as_u64().unwrap() > 0;
        if drawn && listed && !s["result_id"].is_null() && !s["hr_value"].is_null() {
            let latest = http(d.addr, "GET", "/v1/results/latest", &[(a.0, &a.1)], b"")
                .await
                .json();
            let shown_id: Option<u64> = s["result_id"].as_str().and_then(|t| t.parse().ok());
            if latest["id"].as_u64() == shown_id {
                let hr = latest["measurements"]["hr_bpm"]
                    .as_f64()
                    .or(latest["heart_rate_bpm"].as_f64())
                    .unwrap();
                let shown: f64 = s["hr_value"].as_str().unwrap().parse().unwrap();
                assert!((shown - hr).abs() < 1e-9, "page {shown} vs API {hr}");
                assert_eq!(s["hr"].as_str().unwrap(), format!("{}", hr.round()));
                break s;
            }
        }
        assert!(Instant::now() < deadline, "the page did not draw: {s}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    let panels = state["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 13);
    let leads: Vec<&str> = panels
        .iter()
        .filter(|p| p["rhythm"] == false)
        .map(|p| p["lead"].as_str().unwrap())
        .collect();
    let mut sorted = leads.clone();
    sorted.sort_unstable();
    let mut all = [
        "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
    ];
    all.sort_unstable();
    assert_eq!(sorted, all, "one panel per lead");
    let rhythm = panels.iter().find(|p| p["rhythm"] == true).unwrap();
    assert_eq!(rhythm["lead"], "II");
    assert_eq!(state["link"], "live");

    // Selecting a finding shows that result's window with the attention shaded. (Three more
    // seconds first, 12 s of signal at 4 x, so the newest result's whole window is in the page.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = script(driver, &sid, PAGE_STATE).await;
    if state["findings"].as_u64().unwrap() > 0 {
        script(
            driver,
            &sid,
            "document.querySelector('#findings li[data-code]').click(); return true;",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = script(driver, &sid, "return {mode: document.getElementById('sheet-mode').textContent, selected: document.querySelector('#findings li[aria-selected=\"true\"]') !== null, live: !document.getElementById('live-button').hidden};").await;
        assert_eq!(s["selected"], true, "{s}");
        assert_eq!(s["live"], true, "{s}");
        let mode = s["mode"].as_str().unwrap();
        assert!(
            mode.starts_with("result ") && !mode.contains("no longer"),
            "{s}"
        );
    }

    let shot = wd(
        driver,
        "GET",
        &format!("/session/{sid}/screenshot"),
        Value::Null,
    )
    .await;
    let png = base64_decode(shot.as_str().unwrap());
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    std::fs::write(dir.path().join("page.png"), &png).unwrap();
    if let Some(p) = std::env::var_os("EKNET_SCREENSHOT") {
        std::fs::write(p, &png).unwrap();
    }
    let busy = state["busy_ms"].as_f64().unwrap();
    let elapsed = state["elapsed_ms"].as_f64().unwrap();
    eprintln!(
        "bedside page: drawn and checked in {:.1} s; page script busy {busy:.0} ms of {elapsed:.0} ms ({:.1} %) at 4 x real time",
        t0.elapsed().as_secs_f64(),
        100.0 * busy / elapsed.max(1.0)
    );
    let _ = wd_raw(driver, "DELETE", &format!("/session/{sid}"), &Value::Null).await;
    let _ = driver_proc.kill();
    let _ = driver_proc.wait();
    let _ = sim_stop.send(true);
    let _ = sim.await;
    d.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
