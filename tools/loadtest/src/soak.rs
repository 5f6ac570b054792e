//! `eknet-soak`: the accelerated soak of eknetd. Starts `eknet-sim` on a pseudo-terminal at
//! `--speed` times real time with faults at random (drops, corruption, garbage, electrodes off,
//! stalls, hang-ups) and its fault log on, and `eknetd` reading that link; runs until
//! `--hours` of device time have streamed, sampling the daemon's RSS and open descriptors; then
//! stops both and checks the daemon against the simulator's own log of what it injected:
//!
//! - **accounted**: every window the reader assembled was classified, abstained with a reason, or
//!   counted as dropped (`/v1/status`), and the history holds exactly the classified and
//!   abstained ones;
//! - **no window spans a gap**: no window's device samples (`window.device_start_index`) include a
//!   sample the log calls lost (dropped, corrupted, silenced by a stall or hang-up, unheard);
//! - **lead-off honoured**: every window holding a sample sent with an electrode off abstains and
//!   names that electrode;
//! - **nothing missed**: per run of samples the log says arrived intact, the daemon made the
//!   windows that run allows (one per hop once 10 s are in); a shortfall is reported with where it
//!   happened;
//! - **history ids contiguous** from the first to the last;
//! - **RSS flat**: the median of the last five samples against the median of five after the
//!   first tenth of the run (growth < 10 %), descriptors likewise.
//!
//! Exit status 0 only when every check passes.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Samples in a window and a hop at 500 Hz (the daemon's defaults).
const WINDOW: u64 = 5000;
const HOP: u64 = 1250;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Accelerated soak of eknetd against the simulator's fault log"
)]
struct Cli {
    /// Hours of device time to stream.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Stream seconds per wall second.
    #[arg(long, default_value_t = 20.0)]
    speed: f64,
    /// Mean stream seconds between random faults.
    #[arg(long, default_value_t = 20.0)]
    fault_every: f64,
    /// Seed of the random faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Records the simulator streams (files or folders), looped.
    #[arg(long, required = true)]
    records: Vec<PathBuf>,
    /// The model bundle.
    #[arg(long)]
    bundle: PathBuf,
    /// The eknetd binary.
    #[arg(long, default_value = "target/release/eknetd")]
    eknetd: PathBuf,
    /// The eknet-sim binary.
    #[arg(long, default_value = "target/release/eknet-sim")]
    sim: PathBuf,
    /// HTTP port for the daemon (on 127.0.0.1).
    #[arg(long, default_value_t = 18790)]
    port: u16,
    /// Keep the work folder (fault log, history, logs) here instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// A child process killed when dropped (a panic or error must not leave it running).
struct Proc(Child, &'static str);

impl Proc {
    fn term(&mut self) -> Result<Option<i32>> {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.0.try_wait()? {
                return Ok(st.code());
            }
            if Instant::now() > deadline {
                let _ = self.0.kill();
                bail!("{} did not stop within 10 s of SIGTERM", self.1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One GET over a fresh connection; the status code and the body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    let mut body = raw[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((code, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol])?.trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).context("short chunk")?;
    }
}

fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let (code, body) = get(addr, path)?;
    if code != 200 {
        bail!("GET {path}: {code} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// RSS (kB) and open descriptors of a process.
fn usage(pid: u32) -> Option<(u64, usize)> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = st
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// What the simulator's log says.
#[derive(Default, Debug)]
struct SimLog {
    /// Lost sample spans by kind.
    lost: Vec<(String, u64, u64)>,
    lead_off: Vec<(String, u64, u64)>,
    stalls: usize,
    hangups: usize,
    garbage: usize,
    next_index: u64,
    report: serde_json::Value,
}

fn read_log(path: &Path) -> Result<SimLog> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut log = SimLog::default();
    let mut ended = false;
    for line in std::io::BufReader::new(f).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        let span = || {
            (
                v["from"].as_u64().unwrap_or(0),
                v["to"].as_u64().unwrap_or(0),
            )
        };
        match kind.as_str() {
            "drop" | "corrupt" | "silenced" | "unheard" => {
                let (a, b) = span();
                log.lost.push((kind, a, b));
            }
            "lead_off" => {
                let (a, b) = span();
                log.lead_off
                    .push((v["electrode"].as_str().unwrap_or("?").to_string(), a, b));
            }
            "stall" => log.stalls += 1,
            "hangup" => log.hangups += 1,
            "garbage" => log.garbage += 1,
            "end" => {
                ended = true;
                log.next_index = v["next_index"].as_u64().unwrap_or(0);
                log.report = v["report"].clone();
            }
            _ => {}
        }
    }
    if !ended {
        bail!("the fault log has no end line: the simulator did not stop cleanly");
    }
    log.lost.sort_by_key(|l| l.1);
    Ok(log)
}

/// Runs of samples `[from, to)` the log says arrived intact.
fn intact_runs(log: &SimLog) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut at = 0;
    for (_, a, b) in &log.lost {
        if *a > at {
            runs.push((at, *a));
        }
        at = at.max(*b);
    }
    if log.next_index > at {
        runs.push((at, log.next_index));
    }
    runs
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(cli.hours > 0.0 && cli.speed > 0.0 && cli.speed <= 1000.0) {
        bail!("--hours must be positive and --speed in (0, 1000]");
    }
    let work = match &cli.keep {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            p.clone()
        }
        None => {
            let p = std::env::temp_dir().join(format!("eknet-soak-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            p
        }
    };
    let link = work.join("ecg");
    let fault_log = work.join("faults.jsonl");
    let addr: SocketAddr = ([127, 0, 0, 1], cli.port).into();
    let wall = Duration::from_secs_f64(cli.hours * 3600.0 / cli.speed);

    let mut sim_cmd = Command::new(&cli.sim);
    sim_cmd
        .arg("--link")
        .arg(&link)
        .args(["--speed", &cli.speed.to_string()])
        .args(["--random-faults", &cli.fault_every.to_string()])
        .args(["--random-seed", &cli.seed.to_string()])
        .arg("--fault-log")
        .arg(&fault_log)
        .args(&cli.records)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("sim.log"))?);
    let mut sim = Proc(
        sim_cmd
            .spawn()
            .with_context(|| format!("starting {}", cli.sim.display()))?,
        "eknet-sim",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::symlink_metadata(&link).is_err() {
        if Instant::now() > deadline || sim.0.try_wait()?.is_some() {
            bail!(
                "the simulator did not create its link (see {})",
                work.join("sim.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut daemon = Proc(
        Command::new(&cli.eknetd)
            .arg("--serial")
            .arg(&link)
            .args(["--protocol", "eknet"])
            .arg("--bundle")
            .arg(&cli.bundle)
            .args(["--listen", &addr.to_string()])
            .arg("--history")
            .arg(work.join("history.jsonl"))
            .args(["--retention", "1000000"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("eknetd.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", cli.eknetd.display()))?,
        "eknetd",
    );
    let pid = daemon.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(addr, "/healthz").map(|r| r.0).ok() != Some(200) {
        if Instant::now() > deadline || daemon.0.try_wait()?.is_some() {
            bail!(
                "eknetd did not come up (see {})",
                work.join("eknetd.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stream, sampling memory every second of wall time.
    let t0 = Instant::now();
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    while t0.elapsed() < wall {
        std::thread::sleep(Duration::from_secs(1).min(wall.saturating_sub(t0.elapsed())));
        if let Some((rss, fds)) = usage(pid) {
            samples.push((t0.elapsed().as_secs_f64(), rss, fds));
        }
        if let Some(st) = daemon.0.try_wait()? {
            bail!("eknetd exited during the soak: {st}");
        }
        if let Some(st) = sim.0.try_wait()? {
            bail!("eknet-sim exited during the soak: {st}");
        }
    }
    let sim_exit = sim.term()?;
    // Let the last window through the model.
    std::thread::sleep(Duration::from_secs(3));
    let status = get_json(addr, "/v1/status")?;
    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut since = 0u64;
    loop {
        let page = get_json(addr, &format!("/v1/results?since={since}&limit=1000"))?;
        let items = page["results"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        since = items
            .last()
            .and_then(|r| r["id"].as_u64())
            .context("a result without an id")?;
        results.extend(items);
    }
    let daemon_exit = daemon.term()?;
    let log = read_log(&fault_log)?;

    // --- Checks ---
    let mut failures: Vec<String> = Vec::new();
    let n = |v: &serde_json::Value, p: &[&str]| -> u64 {
        p.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
    };
    let live: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r["source"] == "live" && r["quality"].as_array().is_some_and(|q| !q.is_empty()))
        .collect();
    let events = results.len() - live.len();
    let classified = live.iter().filter(|r| r["outcome"] == "classified").count() as u64;
    let abstained = live.len() as u64 - classified;
    let assembled = n(&status, &["device", "windows"]);
    let dropped = n(&status, &["windows", "dropped_busy"]);
    if assembled != classified + abstained + dropped {
        failures.push(format!(
            "accounting: {assembled} windows assembled, but {classified} classified + {abstained} \
             abstained + {dropped} dropped"
        ));
    }
    if n(&status, &["windows", "classified"]) != classified
        || n(&status, &["windows", "abstained"]) != abstained
    {
        failures.push(format!(
            "history holds {classified} classified / {abstained} abstained, status counts {} / {}",
            n(&status, &["windows", "classified"]),
            n(&status, &["windows", "abstained"])
        ));
    }
    let unexplained = live
        .iter()
        .filter(|r| {
            r["outcome"] == "abstained" && r["reasons"].as_array().is_none_or(Vec::is_empty)
        })
        .count();
    if unexplained > 0 {
        failures.push(format!("{unexplained} abstentions without a reason"));
    }
    // Ids contiguous.
    let ids: Vec<u64> = results.iter().filter_map(|r| r["id"].as_u64()).collect();
    let holes = ids.windows(2).filter(|w| w[1] != w[0] + 1).count();
    if holes > 0 || ids.first() != Some(&1) {
        failures.push(format!(
            "history ids not contiguous from 1: {holes} holes, first {:?}",
            ids.first()
        ));
    }
    // Windows against the log.
    let mut starts: Vec<u64> = Vec::new();
    let mut spanning = Vec::new();
    let mut lead_off_missed = Vec::new();
    let mut no_device_index = 0;
    for r in &live {
        let Some(d) = r["window"]["device_start_index"].as_u64() else {
            no_device_index += 1;
            continue;
        };
        starts.push(d);
        let (a, b) = (d, d + WINDOW);
        let first_lost = log.lost.partition_point(|l| l.2 <= a);
        if let Some((kind, lo, hi)) = log.lost.get(first_lost)
            && *lo < b
        {
            spanning.push(format!("window {a}..{b} holds {kind} samples {lo}..{hi}"));
        }
        for (electrode, lo, hi) in &log.lead_off {
            if *lo < b && a < *hi {
                let named = r["outcome"] == "abstained"
                    && r["reasons"].as_array().is_some_and(|rs| {
                        rs.iter().any(|x| {
                            x.as_str().is_some_and(|s| {
                                s.starts_with(&format!("electrode {electrode} off"))
                                    || s.starts_with(&format!("lead {electrode} off"))
                            })
                        })
                    });
                if !named {
                    lead_off_missed.push(format!(
                        "window {a}..{b} overlaps {electrode} off {lo}..{hi} but does not abstain naming it"
                    ));
                }
            }
        }
    }
    if no_device_index > 0 {
        failures.push(format!(
            "{no_device_index} live windows without a device index"
        ));
    }
    if !spanning.is_empty() {
        failures.push(format!(
            "{} windows span a gap, e.g. {}",
            spanning.len(),
            spanning[0]
        ));
    }
    if !lead_off_missed.is_empty() {
        failures.push(format!(
            "{} windows miss a lead-off, e.g. {}",
            lead_off_missed.len(),
            lead_off_missed[0]
        ));
    }
    // Per intact run: the windows it allows vs those the daemon made (assembled = stored or
    // dropped; dropped ones carry no index, so compare totals and list runs short of stored ones).
    starts.sort_unstable();
    let runs = intact_runs(&log);
    let mut expected = 0u64;
    let mut short_runs: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for &(a, b) in &runs {
        let allowed = if b - a >= WINDOW {
            1 + (b - a - WINDOW) / HOP
        } else {
            0
        };
        expected += allowed;
        let lo = starts.partition_point(|&s| s < a);
        let hi = starts.partition_point(|&s| s < b);
        let made = (hi - lo) as u64;
        let aligned = starts[lo..hi].iter().all(|&s| (s - a) % HOP == 0);
        if made != allowed || !aligned {
            short_runs.insert(a, (b, allowed, made));
        }
    }
    let missed = expected.saturating_sub(assembled);
    if assembled > expected {
        failures.push(format!(
            "the daemon assembled {assembled} windows but the log allows only {expected}"
        ));
    }
    if daemon_exit != Some(0) {
        failures.push(format!("eknetd exited with {daemon_exit:?} on SIGTERM"));
    }
    // Memory.
    let tenth = samples.len() / 10;
    let early: Vec<&(f64, u64, usize)> = samples.iter().skip(tenth).take(5).collect();
    let late: Vec<&(f64, u64, usize)> = samples.iter().rev().take(5).collect();
    let rss0 = median(early.iter().map(|s| s.1).collect());
    let rss1 = median(late.iter().map(|s| s.1).collect());
    let fd0 = median(early.iter().map(|s| s.2 as u64).collect());
    let fd1 = median(late.iter().map(|s| s.2 as u64).collect());
    let rss_growth = if rss0 > 0 {
        (rss1 as f64 / rss0 as f64 - 1.0) * 100.0
    } else {
        f64::NAN
    };
    if rss_growth.is_nan() || rss_growth >= 10.0 {
        failures.push(format!("RSS grew {rss_growth:.1} % ({rss0} -> {rss1} kB)"));
    }
    if fd1 > fd0 + fd0 / 10 {
        failures.push(format!("open descriptors grew {fd0} -> {fd1}"));
    }

    let mut kinds: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (k, a, b) in &log.lost {
        let e = kinds.entry(k.as_str()).or_default();
        e.0 += 1;
        e.1 += b - a;
    }
    // Samples written whole and not corrupted: what the daemon can decode.
    let intact_sent =
        log.report["samples_sent"].as_u64().unwrap_or(0) - kinds.get("corrupt").map_or(0, |k| k.1);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for r in live.iter().filter(|r| r["outcome"] == "abstained") {
        for x in r["reasons"].as_array().into_iter().flatten() {
            let s = x.as_str().unwrap_or("");
            let key = if s.starts_with("electrode") {
                "electrode off".to_string()
            } else {
                s.split([':', '(']).next().unwrap_or(s).trim().to_string()
            };
            *reasons.entry(key).or_default() += 1;
        }
    }
    let summary = serde_json::json!({
        "cpu": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines()
            .find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())),
        "device_hours": log.next_index as f64 / 500.0 / 3600.0,
        "speed": cli.speed,
        "wall_s": t0.elapsed().as_secs_f64(),
        "seed": cli.seed,
        "faults": {
            "lost_spans": kinds.iter().map(|(k, (c, s))| (k.to_string(), serde_json::json!({"spans": c, "samples": s}))).collect::<serde_json::Map<_, _>>(),
            "lead_off_spans": log.lead_off.len(), "stalls": log.stalls, "hangups": log.hangups,
            "garbage_bursts": log.garbage,
            "sim_report": log.report, "sim_exit": sim_exit,
        },
        "windows": {
            "allowed_by_log": expected, "assembled": assembled, "missed": missed,
            "classified": classified, "abstained": abstained, "dropped_busy": dropped,
            "spanning_a_gap": spanning.len(), "lead_off_not_named": lead_off_missed.len(),
            "runs_short_or_misaligned": short_runs.len(),
            "first_short_runs": short_runs.iter().take(5).map(|(a, (b, allowed, made))| serde_json::json!({"from": a, "to": b, "allowed": allowed, "stored": made})).collect::<Vec<_>>(),
            "abstention_reasons": reasons,
        },
        "history": { "results": results.len(), "events": events, "id_holes": holes },
        "wire": {
            "sim_bytes_sent": log.report["bytes_sent"], "daemon_bytes_read": status["device"]["bytes"],
            "sim_samples_sent_intact": intact_sent, "daemon_samples_decoded": status["device"]["samples"],
            "daemon_frames_before_hello": status["device"]["frames_before_hello"],
        },
        "device_status": status["device"],
        "rss_kb": { "early": rss0, "late": rss1, "growth_pct": rss_growth,
                    "every_tenth": (0..=10).filter_map(|k| samples.get((k * samples.len() / 10).min(samples.len().saturating_sub(1))).map(|s| s.1)).collect::<Vec<_>>() },
        "fds": { "early": fd0, "late": fd1 },
        "eknetd_exit": daemon_exit,
        "failures": failures,
        "work": work.display().to_string(),
    });
    if cli.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if cli.keep.is_none() && failures.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
    }
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    Ok(())
}
