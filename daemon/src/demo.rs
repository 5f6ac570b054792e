//! `eknetd --demo`: the daemon with a simulated device. The simulator streams real records over a
//! pseudo-terminal it creates (eknet frame v1, real time), the daemon reads that pty exactly as it
//! would a USB-serial adapter, classifies with the bundle, and serves the API.

use crate::app;
use crate::config::{DaemonConfig, Protocol};
use crate::sim::{SimOptions, SimProtocol};
use anyhow::{Context, Result, bail};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the demo looks for its bundle when none is given: the checkout's `models/` folder.
pub const DEMO_BUNDLE: &str = "models/eknet-demo.eknet";

/// The demo bundle: the configured one, else `models/eknet-demo.eknet` under the current folder
/// or the checkout this binary was built from.
pub fn demo_bundle(cfg: &DaemonConfig) -> Result<PathBuf> {
    if let Some(b) = &cfg.model.bundle {
        return Ok(b.clone());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEMO_BUNDLE);
    for p in [PathBuf::from(DEMO_BUNDLE), built_from] {
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "no demo bundle: {DEMO_BUNDLE} is not in this checkout; give --bundle FILE (a bundle \
         written by `eknet-train export`)"
    )
}

/// The held-out record list shipped beside a bundle: `NAME.heldout.txt` for `NAME.eknet`, one
/// path per line relative to the shared data folder (the demo model's test split).
pub fn heldout_list(bundle: &Path) -> PathBuf {
    bundle.with_extension("heldout.txt")
}

/// Default demo records: the bundle's held-out records when its list is beside it (records the
/// model never trained on), else LUDB records 191-200; streamed one after another in a loop.
pub fn demo_records(bundle: &Path) -> Result<Vec<PathBuf>> {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let data = eknet_shared::data::require_data_dir(&here)
        .or_else(|_| eknet_shared::data::require_data_dir(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .map_err(|e| anyhow::anyhow!("demo records: {e}; or give --demo-record PATH"))?;
    let list = heldout_list(bundle);
    if list.exists() {
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("reading {}", list.display()))?;
        let mut recs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let rel = Path::new(line);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                bail!(
                    "{} line {}: '{line}' must be a path inside the shared data folder",
                    list.display(),
                    n + 1
                );
            }
            let p = data.join(rel);
            if !p.with_extension("hea").exists() {
                bail!(
                    "{} line {}: no WFDB record {} (is {} the shared data folder?)",
                    list.display(),
                    n + 1,
                    p.display(),
                    data.display()
                );
            }
            recs.push(p);
        }
        if recs.is_empty() {
            bail!("{} lists no record", list.display());
        }
        return Ok(recs);
    }
    let ludb = data.join("ludb").join("data");
    let recs: Vec<PathBuf> = (191..=200).map(|i| ludb.join(i.to_string())).collect();
    if !recs[0].with_extension("hea").exists() {
        bail!("demo records: {} has no LUDB records", ludb.display());
    }
    Ok(recs)
}

/// Runs the demo until `stop` completes.
pub async fn run(
    mut cfg: DaemonConfig,
    records: &[PathBuf],
    speed: f64,
    announce: fn(SocketAddr),
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let bundle = demo_bundle(&cfg)?;
    cfg.model.bundle = Some(bundle.clone());
    let records = if records.is_empty() {
        demo_records(&bundle)?
    } else {
        records.to_vec()
    };
    let dir = std::env::temp_dir().join(format!("eknet-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join("ecg-device");
    if cfg.history.path == DaemonConfig::default().history.path {
        cfg.history.path = dir.join("history.jsonl");
    }
    cfg.serial.path = Some(link.clone());
    cfg.serial.protocol = Protocol::Eknet;
    let (sim_stop, sim_rx) = tokio::sync::watch::channel(false);
    let opts = SimOptions {
        records: records.clone(),
        protocol: SimProtocol::Eknet,
        speed,
        loop_forever: true,
        link: Some(link.clone()),
        baud: cfg.serial.baud,
        quiet: true,
        ..SimOptions::default()
    };
    let sim = tokio::spawn(crate::sim::run(opts, sim_rx));
    let running = match app::start(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            let _ = sim_stop.send(true);
            let _ = sim.await;
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).context("eknetd could not start");
        }
    };
    eprintln!(
        "eknetd demo: a simulated device streams {} real record(s) ({}{}) at {speed}x over a \
         pseudo-terminal linked at {}",
        records.len(),
        records[0].display(),
        if records.len() > 1 { ", ..." } else { "" },
        link.display()
    );
    eprintln!(
        "eknetd demo: model {} ({}); the first result arrives about 10 s after the stream starts, \
         then one every {} s",
        running.model.model_id, running.model.precision, cfg.windows.hop_s
    );
    eprintln!("eknetd demo: demonstration model; not for clinical decisions");
    if running.model.model_id.starts_with("untrained") {
        eprintln!(
            "eknetd demo: this bundle is an UNTRAINED fixture (random weights): its scores and \
             findings mean nothing; it only shows the plumbing"
        );
    }
    announce(running.addr);
    tokio::select! {
        _ = stop => {}
        r = sim => {
            if let Ok(Err(e)) = r {
                eprintln!("eknetd demo: the simulator stopped: {e:#}");
            }
        }
    }
    let _ = sim_stop.send(true);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
