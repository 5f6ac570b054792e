//! `eknetd` as a process, fed by the simulator over a pty. Killed with SIGKILL right after it
//! reported results: every result it had reported is in the history when it starts again, and
//! the restarted daemon serves them and continues the ids. Stopped with SIGTERM or SIGINT: it
//! exits 0 within 5 s, closes its event streams, and every result it streamed is stored.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::sim::SimOptions;
use eknet_daemon::store::Store;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn spawn(bundle: &Path, link: &Path, history: &Path, addr: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eknetd"))
        .args(["--serial", link.to_str().unwrap()])
        .args(["--bundle", bundle.to_str().unwrap()])
        .args(["--history", history.to_str().unwrap()])
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn data_dir() -> std::path::PathBuf {
    eknet_shared::data::require_data_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    use eknet_shared::config::PosMerging;
    use eknet_trainer::model::block::NormPlacement;
    use eknet_trainer::model::{EknetConfig, Stage};
    let cfg = EknetConfig {
        stage: Stage::Classify,
        d_model: 16,
        depth: 1,
        heads: 2,
        knowledge_depth: 1,
        num_classes: 2,
        merging: PosMerging::AddSincos,
        norm: NormPlacement::Pre,
        lead_split: false,
        full_ii_head: false,
        stem: None,
        dropout: 0.0,
        lead_std: 0.02,
        token_decoder: false,
    };
    let calib: Vec<Vec<f32>> = (1..=3)
        .map(|i| {
            let r = eknet_shared::io::read_any(&data_dir().join("ludb/data").join(i.to_string()))
                .unwrap();
            eknet_shared::preprocess::record_windows(&r, Default::default()).unwrap()[0]
                .data
                .clone()
        })
        .collect();
    let p = dir.join("f.eknet");
    eknet_trainer::export::untrained_bundle(&p, &cfg, &["NORM".into(), "AFIB".into()], &calib, 3)
        .unwrap();
    p
}

/// A fixture bundle, and the simulator streaming LUDB 1-3 at 10x onto a pty link in `dir`.
struct Setup {
    bundle: std::path::PathBuf,
    link: std::path::PathBuf,
    history: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    sim: tokio::task::JoinHandle<anyhow::Result<eknet_daemon::sim::SimReport>>,
}

fn setup(dir: &Path, loop_forever: bool) -> Setup {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let link = dir.join("ecg");
    let opts = SimOptions {
        records: (1..=3)
            .map(|i| data_dir().join("ludb/data").join(i.to_string()))
            .collect(),
        speed: 10.0,
        link: Some(link.clone()),
        quiet: true,
        loop_forever,
        ..SimOptions::default()
    };
    Setup {
        bundle: fixture(dir),
        link,
        history: dir.join("history.jsonl"),
        stop,
        sim: tokio::spawn(eknet_daemon::sim::run(opts, rx)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_that_was_reported() {
    let dir = tempfile::tempdir().unwrap();
    let Setup {
        bundle,
        link,
        history,
        stop,
        sim,
    } = setup(dir.path(), false);
    let addr = free_addr();
    let mut child = spawn(&bundle, &link, &history, addr);
    // Wait until it has reported a few results, then kill it without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reported = loop {
        assert!(Instant::now() < deadline, "no results reported");
        if let Some((200, body)) =
            tokio::task::spawn_blocking(move || get(addr, "/v1/results/latest"))
                .await
                .unwrap()
        {
            let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
                .as_u64()
                .unwrap();
            if id >= 4 {
                break id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let s = Store::open(&history, 1000).unwrap();
    assert!(
        s.latest().unwrap().id >= reported,
        "reported {reported}, stored {:?}",
        s.latest().map(|r| r.id)
    );
    drop(s);
    // Restarted, it serves what was stored and continues the ids.
    let addr2 = free_addr();
    let mut child = spawn(&bundle, &link, &history, addr2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        assert!(Instant::now() < deadline, "restarted daemon did not answer");
        if let Some((200, body)) =
            tokio::task::spawn_blocking(move || get(addr2, "/v1/results?since=0&limit=1000"))
                .await
                .unwrap()
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<u64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert!(ids.len() as u64 >= reported, "{ids:?}");
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = stop.send(true);
    let _ = sim.await;
}

/// Opens `/v1/stream` and returns the socket once the response headers are in.
fn open_stream(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    write!(s, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "stream closed before its headers"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_within_5_s_closing_streams_and_storing_what_was_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let Setup {
        bundle,
        link,
        history,
        stop,
        sim,
    } = setup(dir.path(), true);
    for signal in ["-TERM", "-INT"] {
        let addr = free_addr();
        let mut child = spawn(&bundle, &link, &history, addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            assert!(Instant::now() < deadline, "{signal}: daemon did not answer");
            if tokio::task::spawn_blocking(move || get(addr, "/healthz"))
                .await
                .unwrap()
                .is_some()
            {
                break tokio::task::spawn_blocking(move || open_stream(addr))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Read the stream on a thread: result ids as they come, until the daemon closes it.
        let reader = std::thread::spawn(move || {
            let mut stream = stream;
            let mut text = String::new();
            let mut buf = [0u8; 4096];
            let mut ids = Vec::new();
            let closed = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(_) => break false,
                }
                for line in text.split('\n') {
                    if let Some(id) = line.strip_prefix("id:")
                        && let Ok(id) = id.trim().parse::<u64>()
                        && !ids.contains(&id)
                    {
                        ids.push(id);
                    }
                }
            };
            (closed, ids)
        });
        // Let a few windows through, then ask it to stop.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let sent = Instant::now();
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "{signal}: still running 5 s after the signal"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(exit.success(), "{signal}: exit status {exit:?}");
        let (closed, streamed) = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert!(closed, "{signal}: the event stream was not closed");
        assert!(
            !streamed.is_empty(),
            "{signal}: nothing streamed before the signal"
        );
        let mut s = Store::open(&history, 1000).unwrap();
        assert!(s.skipped_lines.is_empty() && s.recovered_torn_bytes == 0);
        let stored: Vec<u64> = s.since(0, 1000).unwrap().iter().map(|r| r.id).collect();
        for id in &streamed {
            assert!(
                stored.contains(id),
                "{signal}: streamed {id}, not stored {stored:?}"
            );
        }
        assert_eq!(stored, (1..=stored.len() as u64).collect::<Vec<_>>());
    }
    let _ = stop.send(true);
    let _ = sim.await;
}
