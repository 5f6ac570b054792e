//! Helpers for the end-to-end tests in `tests/tests/`: locating the shared real records, LUDB
//! windows through the shared pipeline, a fixture bundle, and a minimal HTTP/1.1 client (plain
//! requests and server-sent events) over a real socket.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use eknet_shared::preprocess::{WindowOptions, record_windows};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The shared data folder, or a panic that says where it was looked for and how to point at it.
pub fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

/// A LUDB record's path (without extension).
pub fn ludb(id: usize) -> PathBuf {
    data_dir().join("ludb/data").join(id.to_string())
}

/// First 10 s windows of LUDB records.
pub fn ludb_windows(ids: impl IntoIterator<Item = usize>) -> Vec<Vec<f32>> {
    ids.into_iter()
        .map(|i| {
            let r = eknet_shared::io::read_any(&ludb(i)).unwrap();
            record_windows(&r, WindowOptions::default()).unwrap()[0]
                .data
                .clone()
        })
        .collect()
}

/// Class codes of the fixture bundle.
pub const FIXTURE_CODES: [&str; 4] = ["NORM", "AFIB", "STACH", "SBRAD"];

/// Writes an untrained fixture bundle (D 16, 4 classes, int8 calibrated on LUDB) to `dir`.
pub fn fixture_bundle(dir: &Path) -> PathBuf {
    use eknet_shared::config::PosMerging;
    use eknet_trainer::model::block::NormPlacement;
    use eknet_trainer::model::{EknetConfig, Stage};
    let cfg = EknetConfig {
        stage: Stage::Classify,
        d_model: 16,
        depth: 1,
        heads: 2,
        knowledge_depth: 1,
        num_classes: FIXTURE_CODES.len(),
        merging: PosMerging::ConcatMlp,
        norm: NormPlacement::ResPost,
        lead_split: true,
        full_ii_head: false,
        stem: None,
        dropout: 0.0,
        lead_std: 0.02,
        token_decoder: false,
    };
    let path = dir.join("fixture.eknet");
    let codes: Vec<String> = FIXTURE_CODES.iter().map(|s| s.to_string()).collect();
    eknet_trainer::export::untrained_bundle(&path, &cfg, &codes, &ludb_windows(1..=6), 11).unwrap();
    path
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (e.g. 413) before reading a large body: ignore a reset on write.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw)).await;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// `data:`.
    pub data: String,
}

/// Opens an event stream and collects events until `want` returns true for the list or the
/// timeout passes. Comments (keep-alives) are skipped.
pub async fn sse(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
    mut want: impl FnMut(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut r = BufReader::new(s);
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut line = String::new();
    let mut in_body = false;
    let mut cur = SseEvent {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut chunked = false;
    loop {
        line.clear();
        let n = match tokio::time::timeout_at(deadline, r.read_line(&mut line)).await {
            Ok(Ok(n)) => n,
            _ => return events,
        };
        if n == 0 {
            return events;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if !in_body {
            if l.to_ascii_lowercase().starts_with("transfer-encoding") && l.contains("chunked") {
                chunked = true;
            }
            if l.is_empty() {
                in_body = true;
            }
            continue;
        }
        // Chunk-size lines carry no ':' and are hex; skip them.
        if chunked && !l.is_empty() && !l.contains(':') && u64::from_str_radix(l, 16).is_ok() {
            continue;
        }
        if l.is_empty() {
            if !cur.data.is_empty() || cur.event.is_some() {
                events.push(std::mem::replace(
                    &mut cur,
                    SseEvent {
                        id: None,
                        event: None,
                        data: String::new(),
                    },
                ));
                if want(&events) {
                    return events;
                }
            }
            continue;
        }
        if l.starts_with(':') {
            continue;
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        let v = v.strip_prefix(' ').unwrap_or(v);
        match k {
            "id" => cur.id = Some(v.into()),
            "event" => cur.event = Some(v.into()),
            "data" => {
                if !cur.data.is_empty() {
                    cur.data.push('\n');
                }
                cur.data.push_str(v);
            }
            _ => {}
        }
    }
}
