//! `eknet-loadtest`: drives a running `eknetd` the way a busy ward would, and reports what it saw.
//!
//! For `--seconds`: requests at a fixed total rate (`--rate`, spread evenly in time, not in
//! bursts) over `/v1/status`, `/v1/results/latest` and `/v1/results?since=` in turn, on keep-alive
//! connections; `--sse` clients on `/v1/stream` reading every event; `--uploads` per second of a
//! real 10 s record to `POST /v1/classify`. Latency is measured from the moment a request was due
//! (so a stalled server shows up as latency, not as fewer requests). With `--pid` it reads the
//! daemon's resident memory and open file descriptors from `/proc` before and after, and it
//! compares `/v1/status` before and after to count windows the pipeline dropped.
//!
//! `tools/loadtest.sh` starts `eknetd --demo` (the simulator streaming real records in real time)
//! and runs this against it.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for eknetd")]
struct Cli {
    /// The daemon's address.
    #[arg(long, default_value = "127.0.0.1:8780")]
    addr: SocketAddr,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Requests per second over the three read routes together.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Keep-alive connections the read requests share.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Event-stream clients held open the whole time.
    #[arg(long, default_value_t = 50)]
    sse: usize,
    /// Uploads per second.
    #[arg(long, default_value_t = 5.0)]
    uploads: f64,
    /// The record to upload: any record eknet reads (a WFDB path without extension, a CinC
    /// `.mat` record, an `.ecgzip`), sent as the seed's JSON.
    #[arg(long)]
    upload_record: Option<PathBuf>,
    /// Bearer token, when the daemon requires one.
    #[arg(long)]
    token: Option<String>,
    /// The daemon's process id: RSS and open file descriptors are read from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Milliseconds to wait after the load before reading RSS, descriptors and status (closed
    /// connections take a moment to leave the daemon).
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
}

/// One route's outcomes.
#[derive(Default)]
struct RouteStats {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

type Stats = Arc<Mutex<BTreeMap<&'static str, RouteStats>>>;

/// A minimal HTTP/1.1 keep-alive client: one request at a time on one connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    auth: String,
}

impl Conn {
    fn new(addr: SocketAddr, token: Option<&str>) -> Conn {
        Conn {
            addr,
            stream: None,
            auth: token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n")),
        }
    }

    /// Sends a request and reads the whole response; returns the status and the body.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.context("connect")?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let result = self.exchange(method, path, body).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        let s = self.stream.as_mut().context("no connection")?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: eknetd\r\n{}", self.auth);
        if let Some(b) = body {
            head += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            );
        }
        head += "\r\n";
        s.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            s.write_all(b).await?;
        }
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed mid-response");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .context("response without Content-Length")?;
        while buf.len() < header_end + length {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed mid-body");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok((status, buf[header_end..header_end + length].to_vec()))
    }
}

async fn record(stats: &Stats, route: &'static str, due: Instant, outcome: Result<u16>) {
    let us = due.elapsed().as_micros() as u64;
    let mut s = stats.lock().await;
    let r = s.entry(route).or_default();
    match outcome {
        Ok(code)
            if (200..300).contains(&code) || (route == "/v1/results/latest" && code == 404) =>
        {
            r.latencies_us.push(us)
        }
        Ok(code) => {
            r.errors += 1;
            r.first_error.get_or_insert(format!("status {code}"));
        }
        Err(e) => {
            r.errors += 1;
            r.first_error.get_or_insert(format!("{e:#}"));
        }
    }
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Resident memory (kB) and open file descriptors of a process.
fn proc_usage(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

async fn status(addr: SocketAddr, token: Option<&str>) -> Result<serde_json::Value> {
    let (code, body) = Conn::new(addr, token)
        .request("GET", "/v1/status", None)
        .await?;
    if code != 200 {
        bail!("/v1/status answered {code}");
    }
    Ok(serde_json::from_slice(&body)?)
}

fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let token = cli.token.clone();
    let before = status(cli.addr, token.as_deref())
        .await
        .context("the daemon does not answer /v1/status")?;
    let usage_before = cli.pid.and_then(proc_usage);
    let stats: Stats = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let end = started + Duration::from_secs(cli.seconds);

    // Event-stream clients.
    let events = Arc::new(AtomicU64::new(0));
    let sse_errors = Arc::new(AtomicU64::new(0));
    let mut sse_tasks = Vec::new();
    for _ in 0..cli.sse {
        let (addr, token, stop) = (cli.addr, token.clone(), stop.clone());
        let (events, sse_errors) = (events.clone(), sse_errors.clone());
        sse_tasks.push(tokio::spawn(async move {
            let run = async {
                let mut s = TcpStream::connect(addr).await?;
                let auth =
                    token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
                s.write_all(
                    format!("GET /v1/stream HTTP/1.1\r\nHost: eknetd\r\n{auth}\r\n").as_bytes(),
                )
                .await?;
                let mut buf = [0u8; 16384];
                let mut head = true;
                while !stop.load(Ordering::Relaxed) {
                    let n = match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
                        .await
                    {
                        Err(_) => continue,
                        Ok(r) => r?,
                    };
                    if n == 0 {
                        anyhow::bail!("stream closed by the daemon");
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if head {
                        anyhow::ensure!(text.starts_with("HTTP/1.1 200"), "stream refused");
                        head = false;
                    }
                    events.fetch_add(
                        text.matches("event: result").count() as u64,
                        Ordering::Relaxed,
                    );
                }
                Ok::<(), anyhow::Error>(())
            };
            if run.await.is_err() {
                sse_errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Read requests, evenly spaced, over keep-alive connections.
    let routes: [&'static str; 3] = ["/v1/status", "/v1/results/latest", "/v1/results?since="];
    let period = Duration::from_secs_f64(1.0 / cli.rate.max(1) as f64);
    let per_conn = period * cli.connections as u32;
    let mut workers = Vec::new();
    for c in 0..cli.connections {
        let (addr, token, stats) = (cli.addr, token.clone(), stats.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr, token.as_deref());
            let mut due = started + period * c as u32;
            let mut k = c;
            let mut since = 0u64;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let route = routes[k % 3];
                let path = if route.ends_with('=') {
                    format!("{route}{since}&limit=20")
                } else {
                    route.to_string()
                };
                let out = conn.request("GET", &path, None).await;
                if let (Ok((200, body)), true) = (&out, route.ends_with('='))
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
                {
                    // Page from a little before the newest result, as a client catching up would.
                    since = v["next_since"].as_u64().unwrap_or(since).saturating_sub(40);
                }
                record(&stats, route, due, out.map(|(s, _)| s)).await;
                due += per_conn;
                k += 1;
            }
        }));
    }

    // Uploads.
    if cli.uploads > 0.0 {
        let body = match &cli.upload_record {
            Some(p) => {
                let r = eknet_shared::io::read_any(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                Arc::new(eknet_shared::ecgzip::to_json(&r).into_bytes())
            }
            None => bail!("--upload-record is needed when --uploads > 0"),
        };
        let gap = Duration::from_secs_f64(1.0 / cli.uploads);
        // Uploads may take longer than the gap: a few connections in turn.
        for c in 0..4u32 {
            let (addr, token, stats, body) = (cli.addr, token.clone(), stats.clone(), body.clone());
            workers.push(tokio::spawn(async move {
                let mut conn = Conn::new(addr, token.as_deref());
                let mut due = started + gap * c;
                while due < end {
                    tokio::time::sleep_until(due.into()).await;
                    let out = conn.request("POST", "/v1/classify", Some(&body)).await;
                    record(&stats, "POST /v1/classify", due, out.map(|(s, _)| s)).await;
                    due += gap * 4;
                }
            }));
        }
    }
    for w in workers {
        w.await?;
    }
    stop.store(true, Ordering::Relaxed);
    for t in sse_tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(cli.settle_ms)).await;
    let after = status(cli.addr, token.as_deref()).await?;
    let usage_after = cli.pid.and_then(proc_usage);

    let windows = count(&after, &["device", "windows"]) - count(&before, &["device", "windows"]);
    let handled = ["classified", "abstained"]
        .iter()
        .map(|k| count(&after, &["windows", k]) - count(&before, &["windows", k]))
        .sum::<u64>();
    let dropped =
        count(&after, &["windows", "dropped_busy"]) - count(&before, &["windows", "dropped_busy"]);
    let mut routes_out = serde_json::Map::new();
    let mut s = stats.lock().await;
    for (route, r) in s.iter_mut() {
        r.latencies_us.sort_unstable();
        routes_out.insert(
            route.to_string(),
            serde_json::json!({
                "requests": r.latencies_us.len() as u64 + r.errors,
                "errors": r.errors,
                "first_error": r.first_error,
                "p50_ms": percentile(&r.latencies_us, 0.5),
                "p99_ms": percentile(&r.latencies_us, 0.99),
                "max_ms": percentile(&r.latencies_us, 1.0),
            }),
        );
    }
    let report = serde_json::json!({
        "seconds": elapsed,
        "rate_per_s": cli.rate,
        "connections": cli.connections,
        "sse_clients": cli.sse,
        "sse_client_errors": sse_errors.load(Ordering::Relaxed),
        "sse_events_received": events.load(Ordering::Relaxed),
        "uploads_per_s": cli.uploads,
        "routes": routes_out,
        "windows_from_device": windows,
        "windows_handled": handled,
        "windows_dropped_busy": dropped,
        "rss_kb": [usage_before.map(|u| u.0), usage_after.map(|u| u.0)],
        "open_fds": [usage_before.map(|u| u.1), usage_after.map(|u| u.1)],
    });
    if cli.json {
        println!("{report}");
        return Ok(());
    }
    println!("eknet-loadtest: {elapsed:.1} s against {}", cli.addr);
    println!(
        "{:<22} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "route", "requests", "errors", "p50 ms", "p99 ms", "max ms"
    );
    for (route, v) in &routes_out {
        println!(
            "{:<22} {:>9} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            route,
            v["requests"],
            v["errors"],
            v["p50_ms"].as_f64().unwrap_or(f64::NAN),
            v["p99_ms"].as_f64().unwrap_or(f64::NAN),
            v["max_ms"].as_f64().unwrap_or(f64::NAN)
        );
        if let Some(e) = v["first_error"].as_str() {
            println!("    first error: {e}");
        }
    }
    println!(
        "SSE: {} clients, {} errors, {} result events received",
        cli.sse,
        sse_errors.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed)
    );
    println!(
        "windows: {windows} from the device, {handled} handled, {dropped} dropped (model busy)"
    );
    if let (Some(b), Some(a)) = (usage_before, usage_after) {
        println!(
            "daemon RSS {} kB -> {} kB ({:+.1} %), open fds {} -> {} ({:+.1} %)",
            b.0,
            a.0,
            (a.0 as f64 / b.0 as f64 - 1.0) * 100.0,
            b.1,
            a.1,
            (a.1 as f64 / b.1 as f64 - 1.0) * 100.0
        );
    }
    Ok(())
}
