//! `eknet-sim`: the device simulator's command line: parses the options into
//! [`eknet_daemon::sim::SimOptions`], runs [`eknet_daemon::sim::run`] until the last record (with
//! `--once`) or Ctrl-C / SIGTERM, and prints what it did.

use clap::Parser;
use eknet_daemon::sim::{
    self, DEFAULT_CYTON_GAIN, DEFAULT_DEVICE_ID, Faults, LeadOff, RandomFaults, SimOptions,
    SimProtocol,
};
use eknet_shared::Lead;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Streams real ECG records like an acquisition device, over a pseudo-terminal (`--link`) or a
/// serial port (`--device`), paced to real time, with optional faults.
///
/// eknet frame v1: 500 Hz, 0.5 uV per LSB, 8 channels (I, II, V1..V6), 10 samples a frame, a
/// hello frame at the start, every stream second and when a reader opens the pty. Cyton: 250 Hz
/// 33-byte packets, counter = sample index mod 256, footer 0xC0; an electrode off sends a flat 0
/// on the channels it spoils. Fault times are stream seconds since the start (at --speed 10,
/// stream second 20 comes after 2 wall seconds). A pty writes nothing while no reader holds it
/// (those frames are lost, as from a device with nobody listening). Ctrl-C stops and removes the
/// link.
#[derive(Debug, Parser)]
#[command(name = "eknet-sim", version)]
struct Cli {
    /// Create a pseudo-terminal and a symlink at PATH to its slave (an existing symlink is
    /// replaced, anything else is refused); open PATH in the daemon like a device.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "device",
        conflicts_with = "device"
    )]
    link: Option<PathBuf>,

    /// Write to this existing serial device instead (e.g. a USB-serial adapter wired to the
    /// daemon's machine).
    #[arg(long, value_name = "PATH")]
    device: Option<PathBuf>,

    /// Baud rate for --device [default: 230400 for eknet, 115200 for cyton].
    #[arg(long, value_name = "N", requires = "device")]
    baud: Option<u32>,

    /// Wire format.
    #[arg(long, value_enum, default_value_t = SimProtocol::Eknet)]
    protocol: SimProtocol,

    /// Stream seconds per wall second (1 = real time; at most 1000).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    speed: f64,

    /// Stop after the last record instead of looping forever.
    #[arg(long)]
    once: bool,

    /// Drop every Nth sample frame / packet (its samples are lost; the index jumps).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    drop_every: Option<u64>,

    /// Flip one byte in every Nth sample frame / packet.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    corrupt_every: Option<u64>,

    /// Insert 1..64 pseudo-random bytes before every Nth sample frame / packet.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    garbage_every: Option<u64>,

    /// An electrode off from stream second FROM to TO, e.g. V2@5-20 (electrodes RA, LA, LL,
    /// V1..V6); repeat for more.
    #[arg(long = "lead-off", value_name = "ELECTRODE@FROM-TO")]
    lead_off: Vec<LeadOff>,

    /// At stream second A send nothing for B seconds, port kept open (e.g. 30:5).
    #[arg(long, value_name = "A:B", value_parser = sim::parse_span)]
    stall: Option<(f64, f64)>,

    /// At stream second A close the port for B seconds, then come back (a pty: a new one, the
    /// link removed meanwhile and then created pointing at it).
    #[arg(long, value_name = "A:B", value_parser = sim::parse_span)]
    hangup: Option<(f64, f64)>,

    /// Faults at random, on average one every MEAN_S stream seconds (a Poisson process): each
    /// a burst of 1-5 dropped frames, a corrupted frame, garbage bytes, an electrode off for
    /// 1-30 s, a stall of 0.5-60 s or a hang-up of 1-30 s, with equal chance.
    #[arg(long, value_name = "MEAN_S")]
    random_faults: Option<f64>,

    /// Seed of --random-faults (the same seed gives the same faults at the same stream times).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "random_faults"
    )]
    random_seed: u64,

    /// Log every sample span the stream lost and why (drop, corrupt, silenced, unheard), every
    /// lead-off span, stall, hang-up and garbage burst, as JSON lines in stream sample indices.
    #[arg(long, value_name = "PATH")]
    fault_log: Option<PathBuf>,

    /// The lead each Cyton channel carries, channel 1 first.
    #[arg(
        long,
        value_name = "LEADS",
        value_parser = sim::parse_cyton_map,
        default_value = "I,II,V1,V2,V3,V4,V5,V6"
    )]
    cyton_map: [Lead; 8],

    /// The Cyton's programmable gain (scale = 4.5 V / gain / (2^23 - 1)).
    #[arg(long, value_name = "GAIN", default_value_t = DEFAULT_CYTON_GAIN)]
    cyton_gain: f64,

    /// Device id announced in eknet hello frames (at most 64 bytes).
    #[arg(long, value_name = "ID", default_value = DEFAULT_DEVICE_ID)]
    device_id: String,

    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,

    /// Records to stream: WFDB records (path without extension, or the .hea), .ecgzip files, or
    /// folders of them (streamed in natural order).
    #[arg(value_name = "RECORD", required = true)]
    records: Vec<PathBuf>,
}

impl Cli {
    fn into_options(self) -> SimOptions {
        SimOptions {
            records: self.records,
            protocol: self.protocol,
            speed: self.speed,
            loop_forever: !self.once,
            link: self.link,
            device: self.device,
            baud: self.baud.unwrap_or(self.protocol.default_baud()),
            faults: Faults {
                drop_every: self.drop_every,
                corrupt_every: self.corrupt_every,
                garbage_every: self.garbage_every,
                lead_off: self.lead_off,
                stall: self.stall,
                hangup: self.hangup,
                random: self.random_faults.map(|mean| RandomFaults {
                    seed: self.random_seed,
                    mean_interval_s: mean,
                }),
            },
            fault_log: self.fault_log,
            cyton_channel_map: self.cyton_map,
            cyton_gain: self.cyton_gain,
            device_id: self.device_id,
            quiet: self.quiet,
            slave_tx: None,
        }
    }
}

/// Sets the shutdown flag on Ctrl-C or SIGTERM.
async fn stop_on_signal(tx: watch::Sender<bool>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    tx.send_replace(true);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = cli.quiet;
    let opts = cli.into_options();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if let Err(e) = stop_on_signal(tx).await {
            eprintln!("eknet-sim: cannot watch for Ctrl-C: {e:#}");
        }
    });
    match sim::run(opts, rx).await {
        Ok(r) => {
            if !quiet {
                eprintln!(
                    "eknet-sim: stopped: {} frames sent ({} samples, {} bytes, {} hellos), {} \
                     dropped, {} unheard, {} silenced, {} hang-ups, {} records streamed",
                    r.frames_sent,
                    r.samples_sent,
                    r.bytes_sent,
                    r.hellos_sent,
                    r.frames_dropped,
                    r.frames_unheard,
                    r.frames_silenced,
                    r.hangups,
                    r.records_streamed
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eknet-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
