//! `eknetd`: the bedside daemon's command line: run from `configs/daemon.yaml` and flags, run the
//! demo (a simulated device over a pseudo-terminal streaming real records), or time the bundle's
//! graphs (`eknetd bench`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use eknet_daemon::app;
use eknet_daemon::config::{DaemonConfig, PrecisionChoice, Protocol};
use eknet_runtime::Classifier;
use eknet_shared::bundle::{Bundle, Precision};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// EKnet bedside daemon: reads live 12-lead ECG from a serial device, classifies a 10 s window
/// every hop with the bundle's model, stores every result, and serves them over a local HTTP API.
/// Demonstration model; not for clinical decisions.
#[derive(Parser, Debug)]
#[command(name = "eknetd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML config (configs/daemon.yaml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serial device path (a tty, a pty, or a symlink to one).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Baud rate.
    #[arg(long)]
    baud: Option<u32>,
    /// Device framing.
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Milliseconds of silence before the device is reopened.
    #[arg(long)]
    watchdog_ms: Option<u64>,
    /// Model bundle (.eknet).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Graph: auto (default: the faster on this CPU, timed at start-up), int8 or f32.
    #[arg(long, value_enum)]
    precision: Option<PrecisionChoice>,
    /// Threads for the model's matrix products.
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds between window starts.
    #[arg(long)]
    hop: Option<f64>,
    /// HTTP address (default 127.0.0.1:8780).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Bearer token required by every route but /healthz.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the bearer token from this file.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve a non-loopback --listen address without a token (refused otherwise).
    #[arg(long)]
    allow_open_network: bool,
    /// Largest request body in bytes.
    #[arg(long)]
    body_limit: Option<usize>,
    /// History file (JSON lines).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Results the history keeps.
    #[arg(long)]
    retention: Option<usize>,
    /// FHIR server base URL: push every result there as a transaction Bundle.
    #[arg(long, value_name = "URL")]
    fhir_endpoint: Option<String>,
    /// This daemon's id in FHIR result identifiers (default: the host name).
    #[arg(long, value_name = "ID")]
    fhir_source_id: Option<String>,
    /// Demo: a simulated device over a pseudo-terminal streams real records into the daemon.
    #[arg(long)]
    demo: bool,
    /// Demo: records (files or folders) to stream (default: those listed in NAME.heldout.txt
    /// beside the bundle, the demo model's test split; for other bundles LUDB 191-200).
    #[arg(long = "demo-record")]
    demo_records: Vec<PathBuf>,
    /// Demo: stream speed (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    demo_speed: f64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Time one window's inference, f32 and int8, as the daemon loads the bundle.
    Bench {
        /// Model bundle (.eknet).
        #[arg(long)]
        bundle: PathBuf,
        /// Threads for tract's matrix products.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs per precision (after 5 warm-ups).
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// A record whose first 10 s is the input (default: a synthetic pulse train).
        #[arg(long)]
        record: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also time every node of each optimised plan and print where the time goes.
        #[arg(long)]
        profile: bool,
        /// Write the input window to this file (15 x 1250 little-endian f32, slot-major), so
        /// another runtime can be timed on the same input (tools/bench_compare.py).
        #[arg(long)]
        dump_input: Option<PathBuf>,
    },
}

fn merged(cli: &Cli) -> Result<DaemonConfig> {
    let mut cfg = match &cli.config {
        Some(p) => DaemonConfig::load(p)?,
        None => DaemonConfig::default(),
    };
    if let Some(v) = &cli.serial {
        cfg.serial.path = Some(v.clone());
    }
    if let Some(v) = cli.baud {
        cfg.serial.baud = v;
    }
    if let Some(v) = cli.protocol {
        cfg.serial.protocol = v;
    }
    if let Some(v) = cli.watchdog_ms {
        cfg.serial.watchdog_ms = v;
    }
    if let Some(v) = &cli.bundle {
        cfg.model.bundle = Some(v.clone());
    }
    if let Some(v) = cli.precision {
        cfg.model.precision = v;
    }
    if let Some(v) = cli.threads {
        cfg.model.threads = v;
    }
    if let Some(v) = cli.hop {
        cfg.windows.hop_s = v;
    }
    if let Some(v) = cli.listen {
        cfg.api.listen = v;
    }
    if let Some(v) = &cli.token {
        cfg.api.token = Some(v.clone());
    }
    if let Some(p) = &cli.token_file {
        let t = std::fs::read_to_string(p)
            .with_context(|| format!("reading the token file {}", p.display()))?;
        let t = t.trim();
        if t.is_empty() {
            bail!("the token file {} is empty", p.display());
        }
        cfg.api.token = Some(t.to_string());
    }
    if let Some(v) = cli.body_limit {
        cfg.api.body_limit = v;
    }
    if cli.allow_open_network {
        cfg.api.allow_open_network = true;
    }
    if let Some(v) = &cli.history {
        cfg.history.path = v.clone();
    }
    if let Some(v) = cli.retention {
        cfg.history.retention = v;
    }
    if let Some(v) = &cli.fhir_endpoint {
        cfg.fhir.endpoint = Some(v.clone());
    }
    if let Some(v) = &cli.fhir_source_id {
        cfg.fhir.source_id = Some(v.clone());
    }
    if let Err((key, detail)) = cfg.validate() {
        bail!("option for '{key}': {detail}");
    }
    Ok(cfg)
}

fn print_urls(addr: SocketAddr) {
    let base = format!("http://{addr}");
    eprintln!("eknetd: listening on {base}");
    eprintln!("  status:          {base}/v1/status");
    eprintln!("  latest result:   {base}/v1/results/latest");
    eprintln!("  live stream:     curl -N {base}/v1/stream");
    eprintln!("  model:           {base}/v1/model");
    eprintln!("  metrics:         {base}/metrics");
    eprintln!("  API description: {base}/openapi.json");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run_daemon(cfg: DaemonConfig) -> Result<()> {
    if cfg.serial.path.is_none() {
        eprintln!(
            "eknetd: no serial device configured (--serial PATH): serving the API and uploads only"
        );
    }
    let running = app::start(&cfg).await.context("eknetd could not start")?;
    if running.recovered_torn_bytes > 0 {
        eprintln!(
            "eknetd: the history's last line was torn by a crash ({} bytes, never reported): cut off",
            running.recovered_torn_bytes
        );
    }
    eprintln!(
        "eknetd: model {} ({}, {} classes, {} thread(s)); history {}",
        running.model.model_id,
        running.model.precision,
        running.model.classes,
        running.model.threads,
        cfg.history.path.display()
    );
    print_urls(running.addr);
    wait_for_signal().await;
    eprintln!("eknetd: stopping");
    running.stop().await;
    Ok(())
}

/// `eknetd bench` options.
struct BenchArgs<'a> {
    bundle: &'a std::path::Path,
    threads: usize,
    runs: usize,
    record: Option<&'a std::path::Path>,
    json: bool,
    profile: bool,
    dump_input: Option<&'a std::path::Path>,
}

fn bench(a: BenchArgs<'_>) -> Result<()> {
    let BenchArgs {
        bundle,
        threads,
        runs,
        record,
        json,
        profile,
        dump_input,
    } = a;
    let b = Bundle::open(bundle)?;
    let window: Vec<f32> = match record {
        Some(r) => {
            let rec = eknet_shared::io::read_any(r)?;
            let w = eknet_shared::preprocess::record_windows(
                &rec,
                eknet_shared::preprocess::WindowOptions::default(),
            )?;
            w.into_iter()
                .next()
                .map(|w| w.data)
                .context("the record gives no 10 s window")?
        }
        None => eknet_daemon::engine::synthetic_window(),
    };
    if let Some(path) = dump_input {
        let bytes: Vec<u8> = window.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let runs = runs.max(1);
    let mut out = serde_json::Map::new();
    out.insert("model_id".into(), b.manifest.model_id.clone().into());
    out.insert("threads".into(), threads.into());
    out.insert("runs".into(), runs.into());
    for p in [Precision::F32, Precision::Int8] {
        let c = Classifier::from_bundle(&b, p, threads)?;
        for _ in 0..5 {
            c.classify(&window)?;
        }
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            c.classify(&window)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let p90 = ms[((ms.len() as f64 * 0.9).ceil() as usize).clamp(1, ms.len()) - 1];
        out.insert(format!("{p}_ms"), median.into());
        out.insert(format!("{p}_p90_ms"), p90.into());
        out.insert(format!("{p}_bytes"), b.onnx(p).len().into());
        if let Some(k) = c.int8_kernel() {
            out.insert("int8_kernel".into(), k.into());
        }
        if profile {
            let prof = c.profile(&window, runs.min(10))?;
            let ops: Vec<serde_json::Value> = prof
                .ops
                .iter()
                .map(|o| serde_json::json!({"op": o.op, "nodes": o.nodes, "ms": o.ms}))
                .collect();
            let top: Vec<serde_json::Value> = prof
                .nodes
                .iter()
                .take(15)
                .map(
                    |n| serde_json::json!({"name": n.name, "op": n.op, "info": n.info, "ms": n.ms}),
                )
                .collect();
            if !json {
                println!(
                    "{p} plan profile (median of {} runs): {:.2} ms per window",
                    runs.min(10),
                    prof.total_ms
                );
                for o in &prof.ops {
                    if o.ms >= prof.total_ms * 0.005 {
                        println!(
                            "  {:>8.2} ms {:>5.1} %  {} x {}",
                            o.ms,
                            100.0 * o.ms / prof.total_ms,
                            o.nodes,
                            o.op
                        );
                    }
                }
                println!("  top nodes:");
                for n in prof.nodes.iter().take(8) {
                    println!("  {:>8.2} ms  {} ({}) {}", n.ms, n.name, n.op, n.info);
                }
            }
            out.insert(
                format!("{p}_profile"),
                serde_json::json!({"total_ms": prof.total_ms, "ops": ops, "top_nodes": top}),
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let g = |k: &str| out.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        println!(
            "{}: {threads} thread(s), {runs} runs: f32 median {:.2} ms (p90 {:.2}), int8 median {:.2} ms (p90 {:.2}); int8/f32 {:.2}; int8 products on {}",
            b.manifest.model_id,
            g("f32_ms"),
            g("f32_p90_ms"),
            g("int8_ms"),
            g("int8_p90_ms"),
            g("int8_ms") / g("f32_ms"),
            out.get("int8_kernel")
                .and_then(|v| v.as_str())
                .unwrap_or("tract's generic kernels")
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Bench {
        bundle,
        threads,
        runs,
        record,
        json,
        profile,
        dump_input,
    }) = &cli.command
    {
        return bench(BenchArgs {
            bundle,
            threads: *threads,
            runs: *runs,
            record: record.as_deref(),
            json: *json,
            profile: *profile,
            dump_input: dump_input.as_deref(),
        });
    }
    let cfg = merged(&cli)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if cli.demo {
        rt.block_on(demo::run(cfg, &cli.demo_records, cli.demo_speed))
    } else {
        rt.block_on(run_daemon(cfg))
    }
}

mod demo {
    //! `eknetd --demo`: see `eknet_daemon::demo`.
    use super::*;

    pub async fn run(cfg: DaemonConfig, records: &[PathBuf], speed: f64) -> Result<()> {
        eknet_daemon::demo::run(cfg, records, speed, print_urls, wait_for_signal()).await
    }
}
