//! Live path over a real pseudo-terminal: the simulator streams real LUDB records, the daemon
//! reads the pty, assembles windows, classifies and publishes them on the event stream. Unplugging
//! the device (the simulator hangs up and comes back on a new pty behind the same link) is
//! reported, no window spans the gap, and classification resumes; an electrode off gives an
//! abstention naming the lead; a stalled device trips the watchdog.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::app;
use eknet_daemon::config::DaemonConfig;
use eknet_daemon::result::{Outcome, WindowResult};
use eknet_daemon::sim::{Faults, LeadOff, SimOptions};
use eknet_tests::{fixture_bundle, http, ludb, sse};
use std::path::Path;
use std::time::Duration;

const SPEED: f64 = 5.0;

fn config(dir: &Path, bundle: &Path, link: &Path) -> DaemonConfig {
    let mut cfg = DaemonConfig::default();
    cfg.model.bundle = Some(bundle.to_path_buf());
    cfg.api.listen = "127.0.0.1:0".parse().unwrap();
    cfg.history.path = dir.join("history.jsonl");
    cfg.serial.path = Some(link.to_path_buf());
    cfg.serial.watchdog_ms = 300;
    cfg
}

fn sim_opts(link: &Path, faults: Faults) -> SimOptions {
    SimOptions {
        records: (1..=4).map(ludb).collect(),
        speed: SPEED,
        loop_forever: true,
        link: Some(link.to_path_buf()),
        faults,
        quiet: true,
        ..SimOptions::default()
    }
}

fn results(events: &[eknet_tests::SseEvent]) -> Vec<WindowResult> {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("result"))
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

/// Runs the simulator with `faults` against a daemon and collects results until `done`.
async fn session(
    faults: Faults,
    seconds: u64,
    done: impl FnMut(&[WindowResult]) -> bool,
) -> (Vec<WindowResult>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle(dir.path());
    let link = dir.path().join("ecg");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let sim = tokio::spawn(eknet_daemon::sim::run(sim_opts(&link, faults), rx));
    let d = app::start(&config(dir.path(), &bundle, &link))
        .await
        .unwrap();
    let mut done = done;
    let events = sse(
        d.addr,
        "/v1/stream",
        &[],
        Duration::from_secs(seconds),
        |e| done(&results(e)),
    )
    .await;
    let status = http(d.addr, "GET", "/v1/status", &[], b"").await.json();
    let _ = stop.send(true);
    let _ = sim.await;
    d.stop().await;
    (results(&events), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_every_hop_from_a_pty_and_a_hangup_is_never_spanned() {
    // Hang up 30 s into the stream for 4 s.
    let faults = Faults {
        hangup: Some((30.0, 4.0)),
        ..Faults::default()
    };
    let (rs, status) = session(faults, 40, |rs| {
        let gap = rs.iter().position(|r| {
            r.reasons
                .iter()
                .any(|x| x.contains("device gone") || x.contains("read error"))
        });
        gap.is_some_and(|g| {
            rs[g..]
                .iter()
                .filter(|r| r.outcome == Outcome::Classified)
                .count()
                >= 2
        })
    })
    .await;
    let live: Vec<&WindowResult> = rs.iter().filter(|r| !r.quality.is_empty()).collect();
    assert!(live.len() >= 5, "{} windows: {rs:#?}", live.len());
    // Every window is 10 s; consecutive windows before the gap start one hop (1250) apart.
    for r in &live {
        assert_eq!(
            r.window.end_index.unwrap() - r.window.start_index.unwrap(),
            5000
        );
        assert!(
            r.heart_rate_bpm.is_some_and(|h| (30.0..220.0).contains(&h)),
            "{r:?}"
        );
    }
    assert_eq!(
        live[1].window.start_index.unwrap() - live[0].window.start_index.unwrap(),
        1250
    );
    // The device's own sample numbers travel with each window: one hop apart, and no window
    // holds a device sample of the hang-up (stream seconds 30-34: device samples 15000..17000).
    let device: Vec<u64> = live
        .iter()
        .map(|r| {
            r.window
                .device_start_index
                .expect("an eknet window carries the device's sample index")
        })
        .collect();
    assert_eq!(device[1] - device[0], 1250, "{device:?}");
    for &d in &device {
        assert!(
            d + 5000 <= 15_000 || d >= 17_000,
            "window at device samples {d}..{} holds samples of the hang-up",
            d + 5000
        );
    }
    assert!(device.iter().any(|&d| d >= 17_000), "{device:?}");
    let ids: Vec<u64> = rs.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "{ids:?}");
    // The hangup is reported, and no window contains its index; classification resumes.
    let g = rs
        .iter()
        .position(|r| {
            r.reasons
                .iter()
                .any(|x| x.contains("device gone") || x.contains("read error"))
        })
        .unwrap_or_else(|| panic!("no disconnect event: {rs:#?}"));
    let gap_index = rs[g].window.start_index.unwrap();
    for r in &live {
        let (a, b) = (r.window.start_index.unwrap(), r.window.end_index.unwrap());
        assert!(
            !(a < gap_index && gap_index < b),
            "window {a}..{b} spans the gap at {gap_index}"
        );
    }
    let after: Vec<&WindowResult> = rs[g..]
        .iter()
        .filter(|r| r.outcome == Outcome::Classified)
        .collect();
    assert!(after.len() >= 2, "classification did not resume: {rs:#?}");
    assert!(after[0].window.start_index.unwrap() >= gap_index);
    assert!(
        status["device"]["disconnects"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        status["device"]["connects"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert_eq!(status["device"]["crc_errors"], 0);
    let rate = status["device"]["measured_rate_hz"].as_f64().unwrap();
    assert!(
        (rate - 500.0 * SPEED).abs() < 0.1 * 500.0 * SPEED,
        "measured {rate} Hz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_electrode_off_gives_an_abstention_naming_the_lead() {
    let faults = Faults {
        lead_off: vec![LeadOff {
            electrode: "V2".into(),
            from_s: 0.0,
            to_s: 1000.0,
        }],
        ..Faults::default()
    };
    let (rs, _) = session(faults, 30, |rs| {
        rs.iter().filter(|r| !r.quality.is_empty()).count() >= 2
    })
    .await;
    let live: Vec<&WindowResult> = rs.iter().filter(|r| !r.quality.is_empty()).collect();
    assert!(live.len() >= 2, "{rs:#?}");
    for r in live {
        assert_eq!(r.outcome, Outcome::Abstained);
        assert!(r.classification.is_none());
        assert!(
            r.reasons.iter().any(|x| x == "lead V2 off"),
            "{:?}",
            r.reasons
        );
        let v2 = r.quality.iter().find(|q| q.lead == "V2").unwrap();
        assert!(!v2.ok);
        // Only V2 is spoiled by a V2 electrode.
        assert!(
            r.quality.iter().filter(|q| q.lead != "V2").all(|q| q.ok),
            "{:?}",
            r.quality
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_device_trips_the_watchdog() {
    // 20 s into the stream the device stops sending for 5 s (1 s of wall time at 5x, against a
    // 300 ms watchdog).
    let faults = Faults {
        stall: Some((20.0, 5.0)),
        ..Faults::default()
    };
    let (rs, status) = session(faults, 30, |rs| {
        rs.iter()
            .any(|r| r.reasons.iter().any(|x| x.contains("watchdog")))
            && rs
                .iter()
                .filter(|r| r.outcome == Outcome::Classified)
                .count()
                >= 1
    })
    .await;
    assert!(
        rs.iter().any(|r| r
            .reasons
            .iter()
            .any(|x| x.contains("silent") && x.contains("watchdog"))),
        "{rs:#?}"
    );
    assert!(
        status["device"]["watchdog_trips"].as_u64().unwrap() >= 1,
        "{status}"
    );
}
