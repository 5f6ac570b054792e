//! The device simulator, the engine of `eknet-sim` (and a source for the daemon's demo mode):
//! streams real ECG records over a pseudo-terminal (with a symlink a daemon opens as if it were a
//! device) or over a real serial port, as eknet frame v1 or OpenBCI Cyton packets, paced to real
//! time times `speed`, with injectable faults: dropped, corrupted and garbage-prefixed frames,
//! electrode lead-off, stalls and hang-ups.
//!
//! # The stream
//! - **Records** are read with [`eknet_shared::io::read_any`] and brought to 500 Hz with all
//!   twelve leads ([`eknet_shared::preprocess::to_model_rate`]); they are streamed one after the
//!   other with nothing marking the boundary (a frame may hold the end of one record and the start
//!   of the next), looping over the list unless [`SimOptions::loop_forever`] is false.
//! - **eknet** ([`SimProtocol::Eknet`]): 500 Hz (500000 mHz), [`EKNET_UV_PER_LSB`] = 0.5 uV per
//!   LSB (so i24 spans +-4.19 V: no ECG saturates), 8 channels I, II, V1..V6 ([`EKNET_LEADS`]),
//!   [`EKNET_SAMPLES_PER_FRAME`] = 10 samples a frame. A hello frame goes out at the start, every
//!   stream second (before every 50th sample frame) and whenever a reader newly opens the pty (a
//!   USB-CDC device sees the host open its port; during a stall, before the first frame after
//!   it). The u32 sample index counts every sample since
//!   the start, across records and loops: it jumps forward by exactly the samples of frames not
//!   sent (dropped, stalled, hung up, unheard). Values are `round(mV * 1000 / 0.5)` clamped to i24.
//! - **Cyton** ([`SimProtocol::Cyton`]): the 500 Hz records resampled to 250 Hz with the shared
//!   resampler, one 33-byte packet a sample, footer `0xC0` with zero aux bytes, counter = the
//!   250 Hz stream index modulo 256 (so any gap is visible in it), channel `c` carrying
//!   [`SimOptions::cyton_channel_map`]`[c]` as `round(uV / microvolts_per_lsb(gain))` clamped to
//!   i24. The Cyton has no lead-off bits: while an electrode is off the channels whose lead it
//!   spoils ([`crate::windows::spoiled_leads`]: every channel for RA, LA or LL; its own lead for a
//!   V electrode) carry a flat 0. The board's host commands are honoured: `v` (soft reset: stops
//!   the stream, answers a banner ending `$$$`), `d` (answers `...$$$`), `b` (start), `s` (stop);
//!   unlike a real board the stream starts without `b`, so a host that sends nothing still gets
//!   data. Samples due while stopped are not sent (the counter jumps).
//!
//! # Pacing
//! Frame `k` is written when its last sample is due: `start + (samples up to its end) / rate /
//! speed` on an absolute schedule (`sleep_until`), so no drift accumulates; a late simulator
//! catches up at once.
//!
//! # Faults (all in stream time: a sample's time is its index / rate, seconds since the start)
//! Sample frames (eknet) or packets (Cyton) are numbered from 1, counting those not sent; the
//! N-th fault hits numbers divisible by N. A drop wins over corruption and garbage. Hello frames
//! are never dropped or corrupted.
//! - `drop_every`: the frame is not sent; its samples are lost (the index jumps by them).
//! - `corrupt_every`: one byte is flipped (XOR 0xFF) at a pseudo-random position: for eknet after
//!   the 6-byte header (payload or CRC, so the CRC always fails and the length is never the
//!   one hit); for Cyton among the channel, aux and footer bytes (no checksum: a wrong value or a
//!   bad footer, as on the real link).
//! - `garbage_every`: 1..64 pseudo-random bytes before the frame. The generator is seeded
//!   with the frame number: a frame gets the same garbage and the same flipped byte in any run.
//! - `lead_off`: a frame's eknet lead-off bits are set for every span holding any of its
//!   samples (sample values are left as recorded: the host must trust the bits).
//! - `stall` A:B: frames whose first sample falls in `[A, A+B)` are not sent; the port stays open.
//! - `hangup` A:B: at the first frame at or after A the port is closed (pty: the master is
//!   dropped: the reader's reads return `Ok(0)`, its writes EIO; the symlink is removed, as udev removes a
//!   `/dev/serial/by-id` link on unplug); frames up to A+B are not sent; then a NEW pty pair
//!   (allocated at the hang-up, so its pts number differs from the old one) is published by
//!   atomically creating the symlink (temporary symlink renamed over the path). On `--device` the
//!   port is closed and reopened.
//!
//! # Pseudo-terminal behaviour (Linux 6.x, measured)
//! - Writes to the master are buffered (about 16.5 KB) whether or not the slave is open, then
//!   fail with EAGAIN; what was buffered while nobody listened is delivered to the next opener,
//!   stale. So the simulator writes only while a reader holds the slave: before each frame it
//!   probes the master with a non-blocking read (EIO: no slave open; EAGAIN: open; bytes: the
//!   host's commands). Frames meanwhile are counted in [`SimReport::frames_unheard`], as a device
//!   streaming into an unplugged cable would lose them.
//! - Once the slave has been closed, epoll reports HUP on the master and tokio never clears a
//!   "closed" readiness, so write readiness on it never waits again (an awaited write would spin
//!   at 100 % CPU on a full buffer). The simulator never awaits writability: it writes non-blocking and, on a full
//!   buffer (a slow reader), retries every 2 ms until 1 s past the frame's due time, then counts
//!   the frame unheard.
//! - Closing the master discards what the reader has not read yet; after the last record of a
//!   run that does not loop the simulator lingers 0.3 s before closing.
//! - The slave keeps the raw mode `SerialStream::pair()` gave it across closes and re-opens.
//!
//! # Where to connect
//! [`run`] prints `eknet-sim: streaming <protocol> on /dev/pts/N (link PATH)` to stderr each time
//! a port is published (unless [`SimOptions::quiet`]) and sends the slave path on
//! [`SimOptions::slave_tx`] (`None` while hung up and after the run); the symlink at
//! [`SimOptions::link`] is removed when the run ends.

use crate::protocol::{cyton, eknet};
use crate::windows::{ELECTRODES, spoiled_leads};
use anyhow::{Context, anyhow, bail};
use eknet_shared::{Lead, Record};
use std::cmp::Ordering;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};

/// eknet stream rate in hertz.
pub const EKNET_RATE_HZ: u32 = 500;
/// eknet stream scale: microvolts per LSB, announced in every hello frame.
pub const EKNET_UV_PER_LSB: f32 = 0.5;
/// Samples in each eknet sample frame.
pub const EKNET_SAMPLES_PER_FRAME: usize = 10;
/// The eknet stream's channels, in order.
pub const EKNET_LEADS: [Lead; 8] = crate::windows::EIGHT_CHANNEL_LEADS;
/// Cyton stream rate in hertz.
pub const CYTON_RATE_HZ: u32 = 250;
/// Footer of every Cyton packet sent (aux bytes are zero).
pub const CYTON_FOOTER: u8 = 0xC0;
/// The Cyton channel map used unless another is given: I, II, V1..V6.
pub const DEFAULT_CYTON_MAP: [Lead; 8] = EKNET_LEADS;
/// The Cyton gain used unless another is given.
pub const DEFAULT_CYTON_GAIN: f64 = 24.0;
/// The device id announced unless another is given.
pub const DEFAULT_DEVICE_ID: &str = "eknet-sim";
/// The fastest speed accepted.
pub const MAX_SPEED: f64 = 1000.0;

/// eknet sample frames between hello frames (one stream second).
const HELLO_EVERY_FRAMES: u64 = (EKNET_RATE_HZ as u64) / (EKNET_SAMPLES_PER_FRAME as u64);
/// How long past its due time a frame may wait for room in a full port buffer.
const WRITE_PATIENCE: Duration = Duration::from_secs(1);
/// Retry step while the port buffer is full.
const RETRY_STEP: Duration = Duration::from_millis(2);
/// Wait after the last frame of a run that does not loop, so a reader can drain the pty.
const LINGER: Duration = Duration::from_millis(300);
/// Between attempts to reopen a serial device that went away.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// Host bytes kept for command parsing at most.
const MAX_INBOX: usize = 4096;
/// The Cyton's answer to `v` (firmware 3 style).
const CYTON_BANNER: &[u8] = b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n\
LIS3DH Device ID: 0x33\nFirmware: v3.1.2 (eknet-sim)\n$$$";
/// The Cyton's answer to `d`.
const CYTON_DEFAULTS: &[u8] = b"updating channel settings to default$$$";

/// The wire format streamed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SimProtocol {
    /// eknet frame v1 (`daemon/PROTOCOL.md`): 500 Hz, 8 channels, 10 samples a frame.
    #[default]
    Eknet,
    /// OpenBCI Cyton: 250 Hz, 33-byte packets.
    Cyton,
}

impl SimProtocol {
    /// The lowercase name (`eknet`, `cyton`).
    pub fn name(self) -> &'static str {
        match self {
            SimProtocol::Eknet => "eknet",
            SimProtocol::Cyton => "cyton",
        }
    }

    /// Samples per second on the wire.
    pub fn sample_rate_hz(self) -> u32 {
        match self {
            SimProtocol::Eknet => EKNET_RATE_HZ,
            SimProtocol::Cyton => CYTON_RATE_HZ,
        }
    }

    /// The usual baud rate: 230400 for eknet (12.8 KB/s), 115200 for the Cyton.
    pub fn default_baud(self) -> u32 {
        match self {
            SimProtocol::Eknet => 230_400,
            SimProtocol::Cyton => 115_200,
        }
    }

    fn samples_per_frame(self) -> usize {
        match self {
            SimProtocol::Eknet => EKNET_SAMPLES_PER_FRAME,
            SimProtocol::Cyton => 1,
        }
    }
}

impl fmt::Display for SimProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An electrode off during a span of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadOff {
    /// The electrode: RA, LA, LL, V1..V6 (any case).
    pub electrode: String,
    /// Start of the span, stream seconds since the start.
    pub from_s: f64,
    /// End of the span (exclusive), stream seconds since the start.
    pub to_s: f64,
}

impl LeadOff {
    /// The electrode's lead-off bit (bit 0 RA, 1 LA, 2 LL, 3..8 V1..V6).
    pub fn bit(&self) -> Result<u16, String> {
        ELECTRODES
            .iter()
            .position(|e| e.eq_ignore_ascii_case(self.electrode.trim()))
            .map(|i| 1u16 << i)
            .ok_or_else(|| {
                format!(
                    "unknown electrode '{}': expected one of {}",
                    self.electrode,
                    ELECTRODES.join(", ")
                )
            })
    }

    fn validate(&self) -> Result<u16, String> {
        let bit = self.bit()?;
        if !(self.from_s.is_finite() && self.to_s.is_finite() && self.from_s >= 0.0) {
            return Err(format!(
                "lead-off {self}: times must be finite seconds, the start at least 0"
            ));
        }
        if self.to_s <= self.from_s {
            return Err(format!("lead-off {self}: the span ends before it starts"));
        }
        Ok(bit)
    }
}

impl FromStr for LeadOff {
    type Err = String;

    /// Parses `ELECTRODE@FROM-TO`, e.g. `V2@5-20` (seconds; fractions allowed: `LA@0.5-2.25`).
    fn from_str(s: &str) -> Result<LeadOff, String> {
        let usage = "expected ELECTRODE@FROM-TO in stream seconds, e.g. V2@5-20";
        let (electrode, span) = s
            .split_once('@')
            .ok_or_else(|| format!("lead-off '{s}': {usage}"))?;
        let (from, to) = span
            .split_once('-')
            .ok_or_else(|| format!("lead-off '{s}': {usage}"))?;
        let secs = |t: &str| {
            t.trim()
                .parse::<f64>()
                .map_err(|_| format!("lead-off '{s}': '{t}' is not a number of seconds; {usage}"))
        };
        let off = LeadOff {
            electrode: electrode.trim().to_ascii_uppercase(),
            from_s: secs(from)?,
            to_s: secs(to)?,
        };
        off.validate().map_err(|e| format!("{e} ({usage})"))?;
        Ok(off)
    }
}

impl fmt::Display for LeadOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}-{}", self.electrode, self.from_s, self.to_s)
    }
}

/// Parses a stall or hang-up span `A:B` (at stream second A, for B seconds).
pub fn parse_span(s: &str) -> Result<(f64, f64), String> {
    let usage = "expected A:B (at stream second A, for B seconds), e.g. 30:5";
    let (a, b) = s.split_once(':').ok_or_else(|| format!("'{s}': {usage}"))?;
    let num = |t: &str| {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("'{s}': '{t}' is not a number of seconds >= 0; {usage}"))
    };
    Ok((num(a)?, num(b)?))
}

/// Parses a Cyton channel map: eight distinct lead names separated by commas, channel 1 first
/// (e.g. `I,II,V1,V2,V3,V4,V5,V6`).
pub fn parse_cyton_map(s: &str) -> Result<[Lead; 8], String> {
    let names: Vec<&str> = s.split(',').map(str::trim).collect();
    if names.len() != 8 {
        return Err(format!(
            "'{s}': {} leads listed, the Cyton has 8 channels (e.g. I,II,V1,V2,V3,V4,V5,V6)",
            names.len()
        ));
    }
    let mut map = DEFAULT_CYTON_MAP;
    for (slot, name) in map.iter_mut().zip(&names) {
        *slot = Lead::parse(name).ok_or_else(|| format!("'{s}': '{name}' is not a lead"))?;
    }
    check_distinct(&map).map_err(|e| format!("'{s}': {e}"))?;
    Ok(map)
}

fn check_distinct(map: &[Lead; 8]) -> Result<(), String> {
    for (i, a) in map.iter().enumerate() {
        if map[..i].contains(a) {
            return Err(format!("lead {a} is listed twice in the Cyton channel map"));
        }
    }
    Ok(())
}

/// Faults to inject; all off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Drop every Nth sample frame / packet (N >= 1).
    pub drop_every: Option<u64>,
    /// Flip one byte in every Nth sample frame / packet.
    pub corrupt_every: Option<u64>,
    /// Insert 1..64 pseudo-random bytes before every Nth sample frame / packet.
    pub garbage_every: Option<u64>,
    /// Electrodes off during spans of the stream.
    pub lead_off: Vec<LeadOff>,
    /// At stream second A stop sending for B seconds (the port stays open; the samples are lost
    /// and the index jumps by them).
    pub stall: Option<(f64, f64)>,
    /// At stream second A close the link for B seconds, then come back (on a pty: a new pty pair
    /// and the symlink created anew).
    pub hangup: Option<(f64, f64)>,
    /// Faults at random times, on top of the ones above (see [`RandomFaults`]).
    pub random: Option<RandomFaults>,
}

/// Faults at random: stream times between faults are exponential with mean
/// `mean_interval_s` (a Poisson process), and each fault is one of six kinds with equal chance:
/// a burst of 1..=5 dropped frames, one corrupted frame, 1..64 garbage bytes before a frame, an
/// electrode (any of the nine) off for 1..=30 s, a stall of 0.5..=60 s, a hang-up of 1..=30 s.
/// After a stall or a hang-up the next interval starts at its end. The same seed gives the
/// same faults at the same stream times in any run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFaults {
    /// Seeds the generator.
    pub seed: u64,
    /// Mean stream seconds between faults (> 0).
    pub mean_interval_s: f64,
}

impl Faults {
    /// Checks the values; returns the lead-off bits of each span, in order.
    fn validate(&self) -> anyhow::Result<Vec<u16>> {
        for (name, every) in [
            ("drop_every", self.drop_every),
            ("corrupt_every", self.corrupt_every),
            ("garbage_every", self.garbage_every),
        ] {
            if every == Some(0) {
                bail!("{name} must be at least 1 (every Nth frame)");
            }
        }
        if let Some(r) = self.random
            && !(r.mean_interval_s.is_finite() && r.mean_interval_s > 0.0)
        {
            bail!(
                "random faults: mean interval {} s must be a positive number of seconds",
                r.mean_interval_s
            );
        }
        for (name, span) in [("stall", self.stall), ("hangup", self.hangup)] {
            if let Some((a, b)) = span
                && !(a.is_finite() && b.is_finite() && a >= 0.0 && b >= 0.0)
            {
                bail!("{name} {a}:{b}: both times must be finite seconds >= 0");
            }
        }
        self.lead_off
            .iter()
            .map(|l| l.validate().map_err(|e| anyhow!(e)))
            .collect()
    }
}

/// What to stream, where, and how.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Record files or folders (a folder: every WFDB `.hea` record and `.ecgzip` file inside, in
    /// natural order: 1, 2, 10).
    pub records: Vec<PathBuf>,
    /// The wire format.
    pub protocol: SimProtocol,
    /// Stream seconds per wall second: 1.0 is real time; in (0, [`MAX_SPEED`]].
    pub speed: f64,
    /// Loop over the records; false stops after the last one.
    pub loop_forever: bool,
    /// Create a pty and a symlink at this path to its slave (an existing symlink is replaced;
    /// anything else there is refused).
    pub link: Option<PathBuf>,
    /// Or write to this existing serial device at `baud`.
    pub device: Option<PathBuf>,
    /// Baud rate for `device` (a pty ignores it).
    pub baud: u32,
    /// Faults to inject.
    pub faults: Faults,
    /// Write what the stream lost and why to this file, one JSON object a line (see
    /// [`FaultLog`]); it is created (or truncated) at the start.
    pub fault_log: Option<PathBuf>,
    /// The lead each Cyton channel carries (distinct leads).
    pub cyton_channel_map: [Lead; 8],
    /// The Cyton's programmable gain (scale = 4.5 V / gain / (2^23 - 1)).
    pub cyton_gain: f64,
    /// The id in eknet hello frames (at most 64 bytes of UTF-8).
    pub device_id: String,
    /// Print nothing on stderr.
    pub quiet: bool,
    /// Receives the port path whenever one is published (the pty slave or the device), `None`
    /// while hung up and when the run ends.
    pub slave_tx: Option<watch::Sender<Option<PathBuf>>>,
}

impl Default for SimOptions {
    /// No records yet, eknet at real time, looping, no port chosen, no faults, the default
    /// Cyton map and gain.
    fn default() -> Self {
        SimOptions {
            records: Vec::new(),
            protocol: SimProtocol::Eknet,
            speed: 1.0,
            loop_forever: true,
            link: None,
            device: None,
            baud: SimProtocol::Eknet.default_baud(),
            faults: Faults::default(),
            fault_log: None,
            cyton_channel_map: DEFAULT_CYTON_MAP,
            cyton_gain: DEFAULT_CYTON_GAIN,
            device_id: DEFAULT_DEVICE_ID.to_string(),
            quiet: false,
            slave_tx: None,
        }
    }
}

impl SimOptions {
    fn validate(&self) -> anyhow::Result<Vec<u16>> {
        if self.records.is_empty() {
            bail!("no records given: name WFDB records, .ecgzip files or folders of them");
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= MAX_SPEED) {
            bail!(
                "speed {} must be above 0 and at most {MAX_SPEED}",
                self.speed
            );
        }
        match (&self.link, &self.device) {
            (Some(_), Some(_)) => bail!("give either a link (pty) or a device, not both"),
            (None, None) => bail!("give a link path (a pty is created) or a serial device"),
            _ => {}
        }
        if self.baud == 0 {
            bail!("baud must be positive");
        }
        if !(self.cyton_gain.is_finite() && self.cyton_gain > 0.0) {
            bail!("cyton gain {} must be positive", self.cyton_gain);
        }
        if self.device_id.len() > eknet::MAX_DEVICE_ID {
            bail!(
                "device id '{}' is {} bytes; the hello frame carries at most {}",
                self.device_id,
                self.device_id.len(),
                eknet::MAX_DEVICE_ID
            );
        }
        check_distinct(&self.cyton_channel_map).map_err(|e| anyhow!(e))?;
        self.faults.validate()
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimReport {
    /// Sample frames (eknet) or packets (Cyton) written whole, corrupted ones included.
    pub frames_sent: u64,
    /// Frames dropped by the `drop_every` fault.
    pub frames_dropped: u64,
    /// Bytes written: frames, hellos, garbage and command answers.
    pub bytes_sent: u64,
    /// Samples in the frames written whole.
    pub samples_sent: u64,
    /// Records whose last sample was reached (sent or not).
    pub records_streamed: u64,
    /// Hang-ups performed.
    pub hangups: u64,
    /// Frames not (wholly) written because no reader held the pty, the reader did not keep up,
    /// the device was gone, or the Cyton host had stopped the stream.
    pub frames_unheard: u64,
    /// Frames not sent during a stall or hang-up.
    pub frames_silenced: u64,
    /// eknet hello frames written.
    pub hellos_sent: u64,
}

/// Reads every record named (files or folders, see [`SimOptions::records`]) and brings each to
/// the stream's form: 500 Hz, all twelve leads. Returns `(name, record)` pairs, the name being
/// the path read. Any record that cannot be read or streamed is an error naming it.
pub fn load_records(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Record)>> {
    let mut out = Vec::new();
    for path in paths {
        for record_path in record_paths(path)? {
            let name = record_path.display().to_string();
            let record = eknet_shared::io::read_any(&record_path)
                .with_context(|| format!("reading record {name}"))?;
            let record = eknet_shared::preprocess::to_model_rate(&record)
                .with_context(|| format!("record {name} cannot be streamed"))?;
            if record.len_samples() == 0 {
                bail!("record {name} has no samples");
            }
            out.push((name, record));
        }
    }
    if out.is_empty() {
        bail!("no records given");
    }
    Ok(out)
}

/// The records a path names: a folder's WFDB records and `.ecgzip` files (natural order), a
/// `.hea` file's record, or the path itself.
fn record_paths(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut found = Vec::new();
        let entries = std::fs::read_dir(path)
            .with_context(|| format!("listing record folder {}", path.display()))?;
        for entry in entries {
            let p = entry
                .with_context(|| format!("listing record folder {}", path.display()))?
                .path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext.eq_ignore_ascii_case("hea") {
                found.push(p.with_extension(""));
            } else if ext.eq_ignore_ascii_case("ecgzip") && p.is_file() {
                found.push(p);
            }
        }
        if found.is_empty() {
            bail!(
                "folder {} holds no WFDB (.hea) records or .ecgzip files",
                path.display()
            );
        }
        found.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        return Ok(found);
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("hea"))
    {
        return Ok(vec![path.with_extension("")]);
    }
    if path.is_file() || path.with_extension("hea").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    bail!(
        "record {}: no such file, folder or WFDB record (.hea)",
        path.display()
    )
}

/// Orders strings with digit runs compared as numbers ("2" before "10").
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|&&c| c == b'0').count();
    &d[z..]
}

/// A record in wire units: 8 channels, sample-major.
struct Prepared {
    values: Vec<i32>,
}

impl Prepared {
    fn len(&self) -> usize {
        self.values.len() / 8
    }
}

fn to_i24(x: f64) -> i32 {
    x.round().clamp(-(1 << 23) as f64, ((1 << 23) - 1) as f64) as i32
}

fn prepare(records: &[(String, Record)], opts: &SimOptions) -> anyhow::Result<Vec<Prepared>> {
    let (leads, scale, resample) = match opts.protocol {
        SimProtocol::Eknet => (EKNET_LEADS, 1000.0 / EKNET_UV_PER_LSB as f64, false),
        SimProtocol::Cyton => (
            opts.cyton_channel_map,
            1000.0 / cyton::microvolts_per_lsb(opts.cyton_gain),
            true,
        ),
    };
    let mut out = Vec::with_capacity(records.len());
    for (name, record) in records {
        let mut channels = Vec::with_capacity(8);
        for lead in leads {
            let mv = record
                .lead(lead)
                .ok_or_else(|| anyhow!("record {name} has no lead {lead}"))?;
            let mv = if resample {
                eknet_shared::resample::resample(mv, record.sample_rate_hz(), CYTON_RATE_HZ as f64)
                    .with_context(|| format!("resampling record {name} to {CYTON_RATE_HZ} Hz"))?
            } else {
                mv.to_vec()
            };
            channels.push(mv);
        }
        let n = channels.iter().map(Vec::len).min().unwrap_or(0);
        if n == 0 {
            bail!(
                "record {name} has no samples at {} Hz",
                opts.protocol.sample_rate_hz()
            );
        }
        let mut values = Vec::with_capacity(n * 8);
        for s in 0..n {
            values.extend(channels.iter().map(|c| to_i24(c[s] as f64 * scale)));
        }
        out.push(Prepared { values });
    }
    Ok(out)
}

/// Walks the prepared records sample by sample.
struct Cursor<'a> {
    records: &'a [Prepared],
    record: usize,
    pos: usize,
    loop_forever: bool,
    done: bool,
    records_done: u64,
}

impl Cursor<'_> {
    /// Appends up to `n` samples (8 values each) to `out`; returns how many.
    fn take(&mut self, n: usize, out: &mut Vec<i32>) -> usize {
        let mut taken = 0;
        while taken < n && !self.done {
            let Some(rec) = self.records.get(self.record) else {
                self.done = true;
                break;
            };
            let k = (n - taken).min(rec.len() - self.pos);
            out.extend_from_slice(&rec.values[self.pos * 8..(self.pos + k) * 8]);
            self.pos += k;
            taken += k;
            if self.pos == rec.len() {
                self.records_done += 1;
                self.pos = 0;
                self.record += 1;
                if self.record == self.records.len() {
                    if self.loop_forever {
                        self.record = 0;
                    } else {
                        self.done = true;
                    }
                }
            }
        }
        taken
    }
}

/// splitmix64: a small deterministic generator for fault positions and garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The symlink a pty is published at.
struct LinkFile {
    path: PathBuf,
    target: Option<PathBuf>,
}

impl LinkFile {
    /// Checks the path can be used: absent, or a symlink (replaced).
    fn claim(path: &Path) -> anyhow::Result<LinkFile> {
        refuse_non_link(path)?;
        Ok(LinkFile {
            path: path.to_path_buf(),
            target: None,
        })
    }

    /// Points the link at `target` atomically (a temporary symlink renamed over the path).
    fn point(&mut self, target: &Path) -> anyhow::Result<()> {
        let name = self
            .path
            .file_name()
            .ok_or_else(|| anyhow!("link path {} has no file name", self.path.display()))?;
        let tmp = self.path.with_file_name(format!(
            ".{}.eknet-sim-{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", tmp.display())),
        }
        std::os::unix::fs::symlink(target, &tmp)
            .with_context(|| format!("creating symlink {}", tmp.display()))?;
        let renamed = refuse_non_link(&self.path).and_then(|()| {
            std::fs::rename(&tmp, &self.path)
                .with_context(|| format!("creating link {}", self.path.display()))
        });
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed?;
        self.target = Some(target.to_path_buf());
        Ok(())
    }

    /// Removes the link if it still points where this run pointed it.
    fn remove(&mut self) {
        if let Some(target) = self.target.take()
            && std::fs::read_link(&self.path).is_ok_and(|t| t == target)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for LinkFile {
    fn drop(&mut self) {
        self.remove();
    }
}

fn refuse_non_link(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(()),
        Ok(_) => bail!(
            "refusing to replace {}: it exists and is not a symlink",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("checking link path {}", path.display())),
    }
}

/// What a probe of the port found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    /// Someone may read what is written (a pty slave is open, or a device is open).
    Present,
    /// Nobody holds the pty slave, or the port is closed.
    Absent,
}

/// The port written to.
struct Port {
    /// `Some` for a pty published at a symlink.
    link: Option<LinkFile>,
    /// `Some` for a serial device.
    device: Option<(PathBuf, u32)>,
    /// The open port and its path.
    conn: Option<(SerialStream, PathBuf)>,
    /// A pty allocated at a hang-up, published at the come-back.
    spare: Option<(SerialStream, PathBuf)>,
    /// When to try reopening a device that went away.
    reopen_at: Option<Instant>,
    protocol: SimProtocol,
    quiet: bool,
    slave_tx: Option<watch::Sender<Option<PathBuf>>>,
    /// Bytes the host wrote, not yet interpreted.
    inbox: Vec<u8>,
    /// Whether the last probe found a reader.
    present: bool,
}

impl Port {
    fn open(opts: &SimOptions) -> anyhow::Result<Port> {
        let mut port = Port {
            link: match &opts.link {
                Some(l) => Some(LinkFile::claim(l)?),
                None => None,
            },
            device: opts.device.clone().map(|d| (d, opts.baud)),
            conn: None,
            spare: None,
            reopen_at: None,
            protocol: opts.protocol,
            quiet: opts.quiet,
            slave_tx: opts.slave_tx.clone(),
            inbox: Vec::new(),
            present: false,
        };
        let conn = port.connect()?;
        port.publish(conn)?;
        Ok(port)
    }

    fn say(&self, msg: impl fmt::Display) {
        if !self.quiet {
            eprintln!("eknet-sim: {msg}");
        }
    }

    /// A new pty pair (slave handle dropped so a reader can open it), or the device opened.
    fn connect(&self) -> anyhow::Result<(SerialStream, PathBuf)> {
        if let Some((path, baud)) = &self.device {
            let name = path
                .to_str()
                .ok_or_else(|| anyhow!("device path {} is not UTF-8", path.display()))?;
            let stream = tokio_serial::new(name, *baud)
                .open_native_async()
                .with_context(|| format!("opening serial device {name} at {baud} baud"))?;
            return Ok((stream, path.clone()));
        }
        let (master, slave) = SerialStream::pair().context("creating a pseudo-terminal pair")?;
        let name = slave
            .name()
            .ok_or_else(|| anyhow!("the new pseudo-terminal has no slave path"))?;
        drop(slave);
        Ok((master, PathBuf::from(name)))
    }

    /// Makes `conn` the port in use: points the link at it and announces it.
    fn publish(&mut self, conn: (SerialStream, PathBuf)) -> anyhow::Result<()> {
        let path = conn.1.clone();
        let msg = match &mut self.link {
            Some(link) => {
                link.point(&path)?;
                format!(
                    "streaming {} on {} (link {})",
                    self.protocol,
                    path.display(),
                    link.path.display()
                )
            }
            None => format!("streaming {} on {}", self.protocol, path.display()),
        };
        self.say(msg);
        self.conn = Some(conn);
        self.present = false;
        self.inbox.clear();
        if let Some(tx) = &self.slave_tx {
            tx.send_replace(Some(path));
        }
        Ok(())
    }

    /// The device goes away.
    fn hang_up(&mut self) {
        if self.link.is_some() {
            // Allocate the replacement while the old pty still exists: a different pts number.
            match self.connect() {
                Ok(c) => self.spare = Some(c),
                Err(e) => self.say(format_args!("{e:#} (retrying at the come-back)")),
            }
        }
        self.conn = None;
        self.present = false;
        if let Some(link) = &mut self.link {
            link.remove();
        }
        if let Some(tx) = &self.slave_tx {
            tx.send_replace(None);
        }
        self.say("hang-up: port closed");
    }

    /// The device comes back after a hang-up.
    fn come_back(&mut self) -> anyhow::Result<()> {
        let conn = match self.spare.take() {
            Some(c) => c,
            None if self.device.is_some() => match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.say(format_args!("{e:#}; retrying"));
                    self.reopen_at = Some(Instant::now() + REOPEN_EVERY);
                    return Ok(());
                }
            },
            None => self.connect()?,
        };
        self.publish(conn)
    }

    /// A serial device that went away.
    fn lost_device(&mut self, why: impl fmt::Display) {
        self.say(format_args!("device gone ({why}); reopening every second"));
        self.conn = None;
        self.present = false;
        self.reopen_at = Some(Instant::now() + REOPEN_EVERY);
        if let Some(tx) = &self.slave_tx {
            tx.send_replace(None);
        }
    }

    /// Whether a reader may hear the next write; collects what the host wrote. Returns the state
    /// and whether the reader is new since the last probe.
    fn probe(&mut self) -> (Host, bool) {
        if self.conn.is_none()
            && let Some(at) = self.reopen_at
            && Instant::now() >= at
        {
            self.reopen_at = None;
            match self.connect() {
                Ok(c) => {
                    if let Err(e) = self.publish(c) {
                        self.say(format_args!("{e:#}"));
                    }
                }
                Err(e) => {
                    self.say(format_args!("{e:#}; retrying"));
                    self.reopen_at = Some(Instant::now() + REOPEN_EVERY);
                }
            }
        }
        let is_device = self.device.is_some();
        let Some((stream, _)) = &mut self.conn else {
            return (Host::Absent, false);
        };
        let mut buf = [0u8; 256];
        let mut gone: Option<String> = None;
        let host = loop {
            match stream.try_read(&mut buf) {
                Ok(0) => {
                    gone = Some("end of file".into());
                    break Host::Absent;
                }
                Ok(k) => {
                    if self.inbox.len() + k <= MAX_INBOX {
                        self.inbox.extend_from_slice(&buf[..k]);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Host::Present,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // On a pty master, EIO: no slave open.
                Err(e) => {
                    gone = Some(e.to_string());
                    break Host::Absent;
                }
            }
        };
        if is_device && let Some(why) = gone {
            self.lost_device(why);
            return (Host::Absent, false);
        }
        let new = host == Host::Present && !self.present;
        if self.link.is_some() {
            if host == Host::Present && !self.present {
                self.say("a reader opened the port");
            } else if host == Host::Absent && self.present {
                self.say("the reader closed the port");
            }
        }
        self.present = host == Host::Present;
        (host, new)
    }

    /// Writes `bytes` without ever awaiting writability (see the module docs); gives up at
    /// `deadline`. Returns the bytes written.
    async fn write(&mut self, bytes: &[u8], deadline: Instant) -> usize {
        let mut off = 0;
        while off < bytes.len() {
            let Some((stream, _)) = &mut self.conn else {
                break;
            };
            match stream.try_write(&bytes[off..]) {
                Ok(0) => break,
                Ok(k) => off += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    sleep(RETRY_STEP).await;
                    if self.probe().0 == Host::Absent {
                        break;
                    }
                }
                Err(e) => {
                    if self.device.is_some() {
                        self.lost_device(e);
                    } else {
                        self.present = false;
                    }
                    break;
                }
            }
        }
        off
    }

    /// Takes the host's bytes.
    fn take_inbox(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inbox)
    }

    /// Ends the run: the port closes, the link goes.
    fn close(&mut self) {
        self.conn = None;
        self.spare = None;
        if let Some(link) = &mut self.link {
            link.remove();
        }
        if let Some(tx) = &self.slave_tx {
            tx.send_replace(None);
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits until `due`; true when shutdown was asked for. A closed shutdown channel never stops
/// the run.
async fn wait_until(due: Instant, shutdown: &mut Option<watch::Receiver<bool>>) -> bool {
    loop {
        let Some(rx) = shutdown.as_mut() else {
            sleep_until(due).await;
            return false;
        };
        if *rx.borrow_and_update() {
            return true;
        }
        tokio::select! {
            () = sleep_until(due) => return false,
            changed = rx.changed() => {
                if changed.is_err() {
                    if *rx.borrow() {
                        return true;
                    }
                    *shutdown = None;
                }
            }
        }
    }
}

/// A span of the stream as sample indices `[lo, hi)`.
fn index_span(from_s: f64, to_s: f64, rate: f64) -> (u64, u64) {
    let idx = |t: f64| (t * rate).ceil().max(0.0) as u64;
    (idx(from_s), idx(to_s))
}

/// Streams the records until the last one (when not looping) or until `shutdown` becomes true;
/// see the module docs for the stream, the faults and the pty handling. A closed shutdown
/// channel is never a request to stop.
pub async fn run(opts: SimOptions, shutdown: watch::Receiver<bool>) -> anyhow::Result<SimReport> {
    let lead_off_bits = opts.validate()?;
    let records = load_records(&opts.records)?;
    let prepared = prepare(&records, &opts)?;
    drop(records);
    let mut port = Port::open(&opts)?;
    let result = stream(&opts, &prepared, &lead_off_bits, &mut port, shutdown).await;
    port.close();
    result
}

/// The fault log: one JSON object a line, every index a sample index of the stream (at the
/// protocol's rate: 500 Hz eknet, 250 Hz Cyton), spans `[from, to)`:
/// - `{"kind":"start","protocol":..,"rate_hz":..,"speed":..,"random_seed":..,"random_mean_s":..}`
///   first;
/// - samples the host cannot have received intact, adjacent frames of one kind merged:
///   `drop` (not sent), `corrupt` (sent with a byte flipped), `silenced` (not sent during a stall
///   or hang-up), `unheard` (not wholly written: no reader on the pty, a full port buffer, the
///   device gone, a Cyton host that stopped the stream);
/// - `{"kind":"garbage","at":i,"bytes":n}`: garbage written before the intact frame starting at
///   sample `i`;
/// - `{"kind":"lead_off","electrode":"V2","bit":16,"from":..,"to":..}`: the frames holding those
///   samples carry the electrode's lead-off bit (eknet) or flat channels (Cyton);
/// - `{"kind":"stall","from":..,"to":..}` and `{"kind":"hangup","from":..,"to":..}` when one
///   is scheduled;
/// - `{"kind":"end","next_index":n,"report":{..}}` last, when the run ends normally.
///
/// Every other sample from 0 to `next_index` was written whole, in its frame, once.
pub struct FaultLog {
    out: Option<std::io::BufWriter<std::fs::File>>,
    pending: Option<(&'static str, u64, u64)>,
}

impl FaultLog {
    fn open(path: Option<&Path>) -> anyhow::Result<FaultLog> {
        let out = match path {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("creating the fault log {}", p.display()))?,
            )),
            None => None,
        };
        Ok(FaultLog { out, pending: None })
    }

    fn line(&mut self, v: &serde_json::Value) -> anyhow::Result<()> {
        use std::io::Write;
        if let Some(out) = &mut self.out {
            writeln!(out, "{v}").context("writing the fault log")?;
        }
        Ok(())
    }

    /// Samples `[from, to)` lost to `kind`; merged with the previous span when adjacent.
    fn lost(&mut self, kind: &'static str, from: u64, to: u64) -> anyhow::Result<()> {
        if self.out.is_none() {
            return Ok(());
        }
        if let Some((k, _, end)) = &mut self.pending
            && *k == kind
            && *end == from
        {
            *end = to;
            return Ok(());
        }
        self.flush_pending()?;
        self.pending = Some((kind, from, to));
        Ok(())
    }

    fn event(&mut self, v: serde_json::Value) -> anyhow::Result<()> {
        if self.out.is_none() {
            return Ok(());
        }
        self.flush_pending()?;
        self.line(&v)
    }

    fn flush_pending(&mut self) -> anyhow::Result<()> {
        if let Some((kind, from, to)) = self.pending.take() {
            self.line(&serde_json::json!({"kind": kind, "from": from, "to": to}))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        use std::io::Write;
        self.flush_pending()?;
        if let Some(out) = &mut self.out {
            out.flush().context("writing the fault log")?;
            out.get_ref().sync_all().context("syncing the fault log")?;
        }
        Ok(())
    }
}

/// Random faults as they come due; see [`RandomFaults`].
struct Chaos {
    rng: Rng,
    mean_samples: f64,
    rate: f64,
    next_at: u64,
    drop_left: u32,
    corrupt_next: bool,
    garbage_next: bool,
}

/// What a random fault asks of the stream beyond the per-frame flags.
enum Scheduled {
    LeadOff(u16, u64, u64),
    Stall(u64, u64),
    Hangup(u64, u64),
    Frame,
}

impl Chaos {
    fn new(r: RandomFaults, rate: f64) -> Chaos {
        let mut c = Chaos {
            rng: Rng(r.seed ^ 0x5EED_C4A0_5000_0000),
            mean_samples: r.mean_interval_s * rate,
            rate,
            next_at: 0,
            drop_left: 0,
            corrupt_next: false,
            garbage_next: false,
        };
        c.next_at = c.interval();
        c
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn interval(&mut self) -> u64 {
        let u = self.unit().max(1e-12);
        (-u.ln() * self.mean_samples).round().max(1.0) as u64
    }

    fn seconds(&mut self, lo: f64, hi: f64) -> u64 {
        ((lo + (hi - lo) * self.unit()) * self.rate)
            .round()
            .max(1.0) as u64
    }

    /// The fault due at or before `first`, if any.
    fn due(&mut self, first: u64) -> Option<Scheduled> {
        if first < self.next_at {
            return None;
        }
        self.next_at = first + self.interval();
        Some(match self.rng.below(6) {
            0 => {
                self.drop_left += 1 + self.rng.below(5) as u32;
                Scheduled::Frame
            }
            1 => {
                self.corrupt_next = true;
                Scheduled::Frame
            }
            2 => {
                self.garbage_next = true;
                Scheduled::Frame
            }
            3 => {
                let bit = 1u16 << self.rng.below(ELECTRODES.len());
                let len = self.seconds(1.0, 30.0);
                Scheduled::LeadOff(bit, first, first + len)
            }
            4 => {
                let len = self.seconds(0.5, 60.0);
                self.next_at += len;
                Scheduled::Stall(first, first + len)
            }
            _ => {
                let len = self.seconds(1.0, 30.0);
                self.next_at += len;
                Scheduled::Hangup(first, first + len)
            }
        })
    }
}

fn electrode_name(bit: u16) -> &'static str {
    ELECTRODES
        .get(bit.trailing_zeros() as usize)
        .copied()
        .unwrap_or("?")
}

async fn stream(
    opts: &SimOptions,
    prepared: &[Prepared],
    lead_off_bits: &[u16],
    port: &mut Port,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SimReport> {
    let protocol = opts.protocol;
    let rate = protocol.sample_rate_hz() as f64;
    let spf = protocol.samples_per_frame();
    let mut log = FaultLog::open(opts.fault_log.as_deref())?;
    log.event(serde_json::json!({
        "kind": "start",
        "protocol": protocol.name(),
        "rate_hz": protocol.sample_rate_hz(),
        "speed": opts.speed,
        "random_seed": opts.faults.random.map(|r| r.seed),
        "random_mean_s": opts.faults.random.map(|r| r.mean_interval_s),
    }))?;
    let mut lead_off: Vec<(u16, u64, u64)> = Vec::new();
    for (l, &bit) in opts.faults.lead_off.iter().zip(lead_off_bits) {
        let (lo, hi) = index_span(l.from_s, l.to_s, rate);
        log.event(serde_json::json!({
            "kind": "lead_off", "electrode": electrode_name(bit), "bit": bit, "from": lo, "to": hi,
        }))?;
        lead_off.push((bit, lo, hi));
    }
    // Stalls and hang-ups still to come or under way, by start.
    let mut stalls: Vec<(u64, u64)> = Vec::new();
    let mut hangups: std::collections::VecDeque<(u64, u64)> = Default::default();
    if let Some((lo, hi)) = opts.faults.stall.map(|(a, b)| index_span(a, a + b, rate)) {
        log.event(serde_json::json!({"kind": "stall", "from": lo, "to": hi}))?;
        stalls.push((lo, hi));
    }
    if let Some((lo, hi)) = opts.faults.hangup.map(|(a, b)| index_span(a, a + b, rate)) {
        log.event(serde_json::json!({"kind": "hangup", "from": lo, "to": hi}))?;
        hangups.push_back((lo, hi));
    }
    let mut chaos = opts.faults.random.map(|r| Chaos::new(r, rate));
    let hello = eknet::encode_hello(&eknet::Hello {
        sample_rate_mhz: EKNET_RATE_HZ * 1000,
        microvolts_per_lsb: EKNET_UV_PER_LSB,
        channels: 8,
        device_id: opts.device_id.clone(),
    });
    let hit = |every: Option<u64>, number: u64| every.is_some_and(|k| number.is_multiple_of(k));

    let mut shutdown = Some(shutdown);
    let mut report = SimReport::default();
    let mut cursor = Cursor {
        records: prepared,
        record: 0,
        pos: 0,
        loop_forever: opts.loop_forever,
        done: false,
        records_done: 0,
    };
    let mut values: Vec<i32> = Vec::with_capacity(spf * 8);
    let mut out: Vec<u8> = Vec::with_capacity(2 * eknet::MAX_FRAME);
    let mut n: u64 = 0; // stream index of the next sample
    let mut number: u64 = 0; // sample frames so far
    let mut hung_until: Option<u64> = None;
    let mut hello_owed = false;
    let mut cyton_streaming = true;
    let mut stopped = false;
    let start = Instant::now();

    loop {
        values.clear();
        let count = cursor.take(spf, &mut values);
        report.records_streamed = cursor.records_done;
        if count == 0 {
            break;
        }
        let (first, end) = (n, n + count as u64);
        n = end;
        let due = Duration::try_from_secs_f64(end as f64 / rate / opts.speed)
            .ok()
            .and_then(|d| start.checked_add(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
        if wait_until(due, &mut shutdown).await {
            stopped = true;
            n = first;
            break;
        }
        let hello_due = protocol == SimProtocol::Eknet && number.is_multiple_of(HELLO_EVERY_FRAMES);
        number += 1;

        if let Some(c) = &mut chaos
            && let Some(fault) = c.due(first)
        {
            match fault {
                Scheduled::LeadOff(bit, lo, hi) => {
                    log.event(serde_json::json!({
                        "kind": "lead_off", "electrode": electrode_name(bit), "bit": bit,
                        "from": lo, "to": hi,
                    }))?;
                    lead_off.push((bit, lo, hi));
                }
                Scheduled::Stall(lo, hi) => {
                    log.event(serde_json::json!({"kind": "stall", "from": lo, "to": hi}))?;
                    stalls.push((lo, hi));
                }
                Scheduled::Hangup(lo, hi) => {
                    log.event(serde_json::json!({"kind": "hangup", "from": lo, "to": hi}))?;
                    let at = hangups.partition_point(|&(l, _)| l <= lo);
                    hangups.insert(at, (lo, hi));
                }
                Scheduled::Frame => {}
            }
        }
        lead_off.retain(|&(_, _, hi)| hi > first);
        stalls.retain(|&(_, hi)| hi > first);

        if let Some(until) = hung_until
            && first >= until
        {
            port.come_back()?;
            hung_until = None;
        }
        if hung_until.is_none() {
            while let Some(&(lo, hi)) = hangups.front() {
                if first < lo {
                    break;
                }
                hangups.pop_front();
                if first < hi {
                    port.hang_up();
                    report.hangups += 1;
                    hung_until = Some(hi);
                    break;
                }
            }
        }
        if hung_until.is_some() || stalls.iter().any(|&(lo, hi)| first >= lo && first < hi) {
            // A stalled device is still plugged in: it sees a host open the port (and greets it
            // with a hello once it sends again).
            if hung_until.is_none() && port.probe().1 {
                hello_owed = true;
            }
            report.frames_silenced += 1;
            log.lost("silenced", first, end)?;
            continue;
        }

        let (host, new_reader) = port.probe();
        out.clear();
        if protocol == SimProtocol::Cyton {
            for b in port.take_inbox() {
                match b {
                    b'v' => {
                        cyton_streaming = false;
                        out.extend_from_slice(CYTON_BANNER);
                    }
                    b'd' => out.extend_from_slice(CYTON_DEFAULTS),
                    b'b' => cyton_streaming = true,
                    b's' => cyton_streaming = false,
                    _ => {}
                }
            }
        } else {
            port.take_inbox();
        }
        if host == Host::Absent {
            report.frames_unheard += 1;
            log.lost("unheard", first, end)?;
            continue;
        }
        let mut hello_end = 0;
        if protocol == SimProtocol::Eknet && (hello_due || new_reader || hello_owed) {
            out.extend_from_slice(&hello);
            hello_end = out.len();
        }
        let mut frame_end = None;
        let mut garbage = 0;
        let mut corrupted = false;
        let chaos_drop = chaos.as_mut().is_some_and(|c| {
            let d = c.drop_left > 0;
            c.drop_left = c.drop_left.saturating_sub(1);
            d
        });
        if hit(opts.faults.drop_every, number) || chaos_drop {
            report.frames_dropped += 1;
            log.lost("drop", first, end)?;
        } else if protocol == SimProtocol::Cyton && !cyton_streaming {
            report.frames_unheard += 1;
            log.lost("unheard", first, end)?;
        } else {
            let bits = lead_off
                .iter()
                .filter(|(_, lo, hi)| first < *hi && end > *lo)
                .fold(0u16, |acc, (bit, _, _)| acc | bit);
            let mut rng = Rng(0x00EC_4B51 ^ number.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let chaos_garbage = chaos
                .as_mut()
                .is_some_and(|c| std::mem::take(&mut c.garbage_next));
            if hit(opts.faults.garbage_every, number) || chaos_garbage {
                garbage = 1 + rng.below(64);
                out.extend((0..garbage).map(|_| rng.next() as u8));
            }
            let frame_start = out.len();
            match protocol {
                SimProtocol::Eknet => {
                    out.extend_from_slice(&eknet::encode_samples(first as u32, bits, 8, &values));
                }
                SimProtocol::Cyton => {
                    let spoiled = spoiled_leads(bits);
                    let channels: [i32; 8] = std::array::from_fn(|c| {
                        if spoiled.contains(&opts.cyton_channel_map[c]) {
                            0
                        } else {
                            values[c]
                        }
                    });
                    out.extend_from_slice(&cyton::encode(first as u8, &channels, CYTON_FOOTER));
                }
            }
            let chaos_corrupt = chaos
                .as_mut()
                .is_some_and(|c| std::mem::take(&mut c.corrupt_next));
            if hit(opts.faults.corrupt_every, number) || chaos_corrupt {
                let (lo, hi) = match protocol {
                    SimProtocol::Eknet => (frame_start + eknet::HEADER, out.len()),
                    SimProtocol::Cyton => (frame_start + 2, out.len()),
                };
                let at = lo + rng.below(hi - lo);
                out[at] ^= 0xFF;
                corrupted = true;
            }
            frame_end = Some(out.len());
        }
        if out.is_empty() {
            continue;
        }
        let written = port.write(&out, due + WRITE_PATIENCE).await;
        report.bytes_sent += written as u64;
        if hello_end > 0 && written >= hello_end {
            report.hellos_sent += 1;
            hello_owed = false;
        }
        if let Some(fe) = frame_end {
            if written >= fe {
                report.frames_sent += 1;
                report.samples_sent += count as u64;
                if corrupted {
                    log.lost("corrupt", first, end)?;
                } else if garbage > 0 {
                    log.event(
                        serde_json::json!({"kind": "garbage", "at": first, "bytes": garbage}),
                    )?;
                }
            } else {
                report.frames_unheard += 1;
                log.lost("unheard", first, end)?;
            }
        }
    }
    if !stopped && port.present {
        wait_until(Instant::now() + LINGER, &mut shutdown).await;
    }
    log.event(serde_json::json!({"kind": "end", "next_index": n, "report": report}))?;
    log.finish()?;
    Ok(report)
}
