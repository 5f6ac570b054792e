//! The serial reader: opens the device (tokio-serial), decodes eknet frames or Cyton packets,
//! turns them into 500 Hz twelve-lead samples in mV (limb leads derived; Cyton resampled from
//! 250 Hz by the shared resampler), and feeds the window assembler. `Ok(0)`, a read error or a
//! silent port (watchdog) means the device is gone: the reader reopens it with backoff (250 ms
//! doubling to 5 s). Every disconnect, reconnect, lost sample and restart is a gap: the assembler
//! starts again, so no window spans it, and the gap is reported as an event.

use crate::config::Protocol;
use crate::engine::{EngineCounters, Job, offer};
use crate::protocol::{cyton, eknet};
use crate::result::now_ms;
use crate::signal::{SignalFrame, SignalTap};
use crate::windows::WindowAssembler;
use eknet_shared::Lead;
use eknet_shared::layout::LEAD_ROWS;
use eknet_shared::resample::StreamResampler;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};

/// First reconnect delay.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the reader needs.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Device path.
    pub path: PathBuf,
    /// Baud.
    pub baud: u32,
    /// Framing.
    pub protocol: Protocol,
    /// Silence before the port is reopened.
    pub watchdog: Duration,
    /// Window hop in samples.
    pub hop_samples: usize,
    /// Cyton channel map.
    pub cyton_map: [Lead; 8],
    /// Cyton gain.
    pub cyton_gain: f64,
}

/// The device as the API reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStatus {
    /// `connecting`, `streaming`, `waiting for hello`, `silent`, `disconnected`.
    pub state: String,
    /// Device path.
    pub path: String,
    /// Framing.
    pub protocol: String,
    /// When the state last changed (RFC 3339).
    pub since: String,
    /// Last error or disconnect reason.
    pub last_error: Option<String>,
    /// Device id from the hello frame.
    pub device_id: Option<String>,
    /// Rate the device announces (hello) or that its protocol fixes (Cyton: 250 Hz).
    pub announced_rate_hz: Option<f64>,
    /// Scale the device announces.
    pub microvolts_per_lsb: Option<f64>,
    /// Device samples per second measured on arrival since the last connect.
    pub measured_rate_hz: Option<f64>,
    /// Bytes read.
    pub bytes: u64,
    /// Good frames (eknet) or packets (Cyton), since start over every connection.
    pub frames: u64,
    /// Bytes skipped while hunting for a frame, since start over every connection.
    pub bytes_skipped: u64,
    /// CRC errors (eknet) or bad footers (Cyton), since start over every connection.
    pub crc_errors: u64,
    /// Samples the device sent that never arrived (measured from indices / counters), since start over every connection.
    pub lost_samples: u64,
    /// Gaps (losses, restarts, disconnects).
    pub gaps: u64,
    /// Successful opens.
    pub connects: u64,
    /// Device gone (EOF, error, watchdog).
    pub disconnects: u64,
    /// Watchdog expiries.
    pub watchdog_trips: u64,
    /// 500 Hz samples assembled.
    pub samples: u64,
    /// Windows handed to the model.
    pub windows: u64,
    /// Sample frames ignored because no hello had given the scale yet.
    pub frames_before_hello: u64,
}

/// Shared device status.
pub type SharedStatus = Arc<Mutex<DeviceStatus>>;

fn set_state(status: &SharedStatus, state: &str, error: Option<String>) {
    if let Ok(mut s) = status.lock() {
        if s.state != state {
            s.since = crate::result::rfc3339_ms(now_ms());
        }
        s.state = state.into();
        if error.is_some() {
            s.last_error = error;
        }
    }
}

/// Turns decoded device samples into windows.
struct Pipeline {
    assembler: WindowAssembler,
    /// Next 500 Hz stream index.
    index: u64,
    /// Cyton: one resampler per channel.
    resamplers: Vec<StreamResampler>,
    /// eknet: scale and announced rate.
    hello: Option<eknet::Hello>,
    started: Option<(Instant, u64)>,
    device_samples: u64,
    cyton_scale_mv: f64,
    cyton_map: [Lead; 8],
    /// The live signal for `/v1/stream/signal`.
    tap: SignalTap,
}

fn twelve_from_eight(map: &[Lead; 8], ch: &[f32]) -> [f32; LEAD_ROWS] {
    let mut out = [0f32; LEAD_ROWS];
    for (lead, &v) in map.iter().zip(ch) {
        out[lead.row()] = v;
    }
    let (i, ii) = (out[Lead::I.row()], out[Lead::II.row()]);
    for l in [Lead::III, Lead::AVR, Lead::AVL, Lead::AVF] {
        out[l.row()] = l.derive_from(i, ii).unwrap_or(0.0);
    }
    out
}

impl Pipeline {
    fn new(cfg: &ReaderConfig, signal: broadcast::Sender<Arc<SignalFrame>>) -> Pipeline {
        Pipeline {
            assembler: WindowAssembler::new(cfg.hop_samples),
            index: 0,
            resamplers: (0..8)
                .filter_map(|_| StreamResampler::new(250.0, 500.0).ok())
                .collect(),
            hello: None,
            started: None,
            device_samples: 0,
            cyton_scale_mv: cyton::microvolts_per_lsb(cfg.cyton_gain) / 1000.0,
            cyton_map: cfg.cyton_map,
            tap: SignalTap::new(signal),
        }
    }

    /// Starts a new signal: nothing buffered crosses this point.
    fn gap(&mut self) {
        self.assembler.gap();
        self.tap.gap();
        self.resamplers.iter_mut().for_each(StreamResampler::reset);
    }

    fn count_arrival(&mut self, n: u64, status: &mut DeviceStatus) {
        let now = Instant::now();
        let (t0, s0) = *self.started.get_or_insert((now, self.device_samples));
        self.device_samples += n;
        let dt = now.duration_since(t0).as_secs_f64();
        if dt >= 2.0 {
            status.measured_rate_hz = Some((self.device_samples - s0) as f64 / dt);
        }
    }

    /// One sample; `device_index` is the device's own index of it, when it numbers samples.
    fn push(
        &mut self,
        sample: [f32; LEAD_ROWS],
        lead_off: u16,
        device_index: Option<u64>,
        out: &mut Vec<Job>,
    ) {
        let idx = self.index;
        self.index += 1;
        self.tap.push(idx, device_index, &sample, lead_off);
        if let Some(mut window) = self.assembler.push(idx, sample, lead_off) {
            // No window spans a gap (every jump of the device index is one), so the device
            // indices of a window are as contiguous as the stream's.
            window.device_start_index =
                device_index.and_then(|d| d.checked_sub(idx - window.start_index));
            out.push(Job::Live {
                window,
                end_ms: now_ms(),
                arrived: Instant::now(),
            });
        }
    }
}

fn event(reasons: String, index: Option<u64>) -> Job {
    Job::Event {
        reasons: vec![reasons],
        at_ms: now_ms(),
        index,
    }
}

/// Device events a full inference queue can hold back before the oldest is dropped and counted.
pub const MAX_PENDING_EVENTS: usize = 256;

/// How the reader hands jobs to the inference thread without ever blocking the async runtime.
/// A live window is offered once: when the thread is behind it is dropped and counted (the next
/// comes 2.5 s later). A device event (disconnect, gap, restart) must not be lost, so it waits
/// here, in order, and is retried before every later job; only past [`MAX_PENDING_EVENTS`] is the
/// oldest dropped, and counted.
pub struct Outbox<'a> {
    jobs: &'a SyncSender<Job>,
    counters: &'a EngineCounters,
    pending: VecDeque<Job>,
}

impl<'a> Outbox<'a> {
    /// An empty outbox in front of `jobs`.
    pub fn new(jobs: &'a SyncSender<Job>, counters: &'a EngineCounters) -> Outbox<'a> {
        Outbox {
            jobs,
            counters,
            pending: VecDeque::new(),
        }
    }

    /// Events still waiting for room in the queue.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Hands over waiting events while the queue has room.
    pub fn flush(&mut self) {
        while let Some(job) = self.pending.pop_front() {
            match self.jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    self.pending.push_front(job);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// Sends one job (see the type's documentation); never blocks.
    pub fn send(&mut self, job: Job) {
        self.flush();
        if let Job::Live { .. } = job {
            if self.pending.is_empty() {
                offer(self.jobs, job, self.counters);
            } else {
                // Events wait for room: a window may not overtake them.
                self.counters
                    .dropped_windows
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.pending.push_back(job);
        if self.pending.len() > MAX_PENDING_EVENTS {
            self.pending.pop_front();
            self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
        self.flush();
    }
}

/// Reads the device until `shutdown` turns true, reconnecting as needed.
pub async fn run_reader(
    cfg: ReaderConfig,
    status: SharedStatus,
    jobs: SyncSender<Job>,
    counters: Arc<EngineCounters>,
    signal: broadcast::Sender<Arc<SignalFrame>>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(mut s) = status.lock() {
        s.path = cfg.path.display().to_string();
        s.protocol = format!("{:?}", cfg.protocol).to_lowercase();
    }
    let mut backoff = BACKOFF_START;
    let mut pipeline = Pipeline::new(&cfg, signal);
    let mut announced_failure = false;
    let mut out = Outbox::new(&jobs, &counters);
    let mut send = |job: Job| out.send(job);
    loop {
        if *shutdown.borrow() {
            return;
        }
        set_state(&status, "connecting", None);
        let port = tokio_serial::SerialPortBuilderExt::open_native_async(tokio_serial::new(
            cfg.path.to_string_lossy(),
            cfg.baud,
        ));
        let mut port = match port {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("cannot open {}: {e}", cfg.path.display());
                set_state(&status, "disconnected", Some(msg.clone()));
                if !announced_failure {
                    send(event(format!("device unavailable: {msg}"), None));
                    announced_failure = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if let Ok(mut s) = status.lock() {
            s.connects += 1;
        }
        set_state(
            &status,
            match cfg.protocol {
                Protocol::Eknet => "waiting for hello",
                Protocol::Cyton => "streaming",
            },
            None,
        );
        let mut ek = eknet::Decoder::new();
        let mut cy = cyton::Decoder::new();
        // The decoders count per connection; the status counts since start.
        let base = status
            .lock()
            .map(|s| (s.frames, s.bytes_skipped, s.crc_errors, s.lost_samples))
            .unwrap_or_default();
        let mut events_ek = Vec::new();
        let mut events_cy = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut got_data = false;
        pipeline.gap();
        pipeline.hello = None;
        pipeline.started = None;
        let reason = loop {
            let read = tokio::select! {
                r = tokio::time::timeout(cfg.watchdog, port.read(&mut buf)) => r,
                _ = shutdown.changed() => return,
            };
            let n = match read {
                Err(_) => {
                    if let Ok(mut s) = status.lock() {
                        s.watchdog_trips += 1;
                    }
                    set_state(&status, "silent", None);
                    break format!(
                        "device silent for {} ms (watchdog)",
                        cfg.watchdog.as_millis()
                    );
                }
                Ok(Ok(0)) => break "device gone (end of stream)".to_string(),
                Ok(Err(e)) => break format!("read error: {e}"),
                Ok(Ok(n)) => n,
            };
            if !got_data {
                got_data = true;
                backoff = BACKOFF_START;
                if announced_failure {
                    announced_failure = false;
                }
            }
            let mut jobs_out = Vec::new();
            {
                let Ok(mut st) = status.lock() else { return };
                st.bytes += n as u64;
                match cfg.protocol {
                    Protocol::Eknet => {
                        ek.feed(&buf[..n], &mut events_ek);
                        for ev in events_ek.drain(..) {
                            handle_eknet(ev, &mut pipeline, &mut st, &mut jobs_out);
                        }
                        st.frames = base.0 + ek.counters.frames;
                        st.bytes_skipped = base.1 + ek.counters.bytes_skipped;
                        st.crc_errors = base.2 + ek.counters.crc_errors;
                        st.lost_samples = base.3 + ek.counters.lost_samples;
                    }
                    Protocol::Cyton => {
                        cy.feed(&buf[..n], &mut events_cy);
                        for ev in events_cy.drain(..) {
                            handle_cyton(ev, &mut pipeline, &mut st, &mut jobs_out);
                        }
                        st.frames = base.0 + cy.counters.packets;
                        st.bytes_skipped = base.1 + cy.counters.bytes_skipped;
                        st.crc_errors = base.2 + cy.counters.bad_footers;
                        st.lost_samples = base.3 + cy.counters.lost_samples;
                        st.announced_rate_hz = Some(250.0);
                        st.microvolts_per_lsb = Some(pipeline.cyton_scale_mv * 1000.0);
                    }
                }
                st.windows += jobs_out
                    .iter()
                    .filter(|j| matches!(j, Job::Live { .. }))
                    .count() as u64;
            }
            for j in jobs_out {
                send(j);
            }
        };
        // The device is gone (or silent): whatever is buffered ends here.
        pipeline.gap();
        if let Ok(mut s) = status.lock() {
            s.disconnects += 1;
            s.gaps += 1;
        }
        set_state(&status, "disconnected", Some(reason.clone()));
        send(event(
            format!("{reason}: classification stops until 10 s of signal after it returns"),
            Some(pipeline.index),
        ));
        announced_failure = true;
        drop(port);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn handle_eknet(ev: eknet::Event, p: &mut Pipeline, st: &mut DeviceStatus, out: &mut Vec<Job>) {
    match ev {
        eknet::Event::Hello(h) => {
            let rate = f64::from(h.sample_rate_mhz) / 1000.0;
            st.device_id = Some(h.device_id.clone());
            st.announced_rate_hz = Some(rate);
            st.microvolts_per_lsb = Some(f64::from(h.microvolts_per_lsb));
            if h.sample_rate_mhz != 500_000 {
                let msg = format!(
                    "device announces {rate} Hz; eknet frame devices must sample at 500 Hz: \
                     samples ignored"
                );
                if st.last_error.as_deref() != Some(msg.as_str()) {
                    out.push(event(msg.clone(), Some(p.index)));
                }
                st.last_error = Some(msg);
                st.state = "unsupported rate".into();
                p.hello = None;
                return;
            }
            if !(h.microvolts_per_lsb.is_finite() && h.microvolts_per_lsb > 0.0) {
                st.last_error = Some(format!(
                    "device announces {} uV per LSB: samples ignored",
                    h.microvolts_per_lsb
                ));
                p.hello = None;
                return;
            }
            if p.hello.is_none() {
                st.state = "streaming".into();
            }
            p.hello = Some(h);
        }
        eknet::Event::Gap {
            expected,
            got,
            lost,
            reset,
        } => {
            p.gap();
            st.gaps += 1;
            let msg = if reset {
                format!("device restarted (sample index went from {expected} back to {got})")
            } else {
                format!("gap at device sample {expected}: {lost} samples lost")
            };
            // Skip the stream index ahead by what was lost so times stay honest.
            p.index += lost;
            out.push(event(msg, Some(p.index)));
        }
        eknet::Event::Samples(block) => {
            let Some(h) = &p.hello else {
                st.frames_before_hello += 1;
                return;
            };
            let scale = f64::from(h.microvolts_per_lsb) / 1000.0;
            let c = block.channels as usize;
            let n = block.samples();
            p.count_arrival(n as u64, st);
            for s in 0..n {
                let raw = &block.values[s * c..(s + 1) * c];
                let mv: Vec<f32> = raw.iter().map(|&v| (f64::from(v) * scale) as f32).collect();
                let sample = if c == 12 {
                    let mut a = [0f32; LEAD_ROWS];
                    a.copy_from_slice(&mv);
                    a
                } else {
                    twelve_from_eight(&crate::windows::EIGHT_CHANNEL_LEADS, &mv)
                };
                st.samples += 1;
                let device_index = u64::from(block.first_index) + s as u64;
                p.push(sample, block.lead_off, Some(device_index), out);
            }
        }
    }
}

fn handle_cyton(ev: cyton::Event, p: &mut Pipeline, st: &mut DeviceStatus, out: &mut Vec<Job>) {
    match ev {
        cyton::Event::Gap {
            expected,
            got,
            lost,
        } => {
            p.gap();
            st.gaps += 1;
            p.index += u64::from(lost) * 2;
            out.push(event(
                format!("gap: packet counter {expected} expected, {got} came ({lost} packets lost, modulo 256)"),
                Some(p.index),
            ));
        }
        cyton::Event::Packet(pk) => {
            p.count_arrival(1, st);
            let mut outs: Vec<Vec<f32>> = Vec::with_capacity(8);
            for (ch, r) in p.resamplers.iter_mut().enumerate() {
                let mv = (f64::from(pk.channels[ch]) * p.cyton_scale_mv) as f32;
                let mut o = Vec::with_capacity(2);
                r.push(&[mv], &mut o);
                outs.push(o);
            }
            let k = outs.iter().map(Vec::len).min().unwrap_or(0);
            for j in 0..k {
                let ch: Vec<f32> = outs.iter().map(|o| o[j]).collect();
                let sample = twelve_from_eight(&p.cyton_map, &ch);
                st.samples += 1;
                p.push(sample, 0, None, out);
            }
        }
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::*;
    use crate::windows::LiveWindow;

    fn live(start_index: u64) -> Job {
        Job::Live {
            window: LiveWindow {
                start_index,
                leads: Vec::new(),
                lead_off: 0,
                device_start_index: None,
            },
            end_ms: 0,
            arrived: Instant::now(),
        }
    }

    fn what(job: &Job) -> String {
        match job {
            Job::Live { window, .. } => format!("live {}", window.start_index),
            Job::Event { reasons, .. } => reasons.join(""),
            Job::Upload { .. } => "upload".into(),
        }
    }

    #[test]
    fn a_full_queue_holds_events_in_order_drops_windows_and_never_blocks() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let counters = EngineCounters::default();
        let mut out = Outbox::new(&tx, &counters);
        out.send(live(0)); // fills the queue
        out.send(live(2500)); // no room: dropped, counted
        out.send(event("gap".into(), None)); // waits here
        out.send(live(5000)); // may not overtake the waiting event: dropped
        out.send(event("reconnected".into(), None));
        assert_eq!(out.pending(), 2);
        assert_eq!(counters.dropped_windows.load(Ordering::Relaxed), 2);
        let mut got = vec![what(&rx.recv().unwrap())];
        out.flush();
        got.push(what(&rx.recv().unwrap()));
        out.send(live(7500)); // flushes the last event first, then finds no room
        got.push(what(&rx.recv().unwrap()));
        out.send(live(10000));
        got.push(what(&rx.recv().unwrap()));
        assert_eq!(got, ["live 0", "gap", "reconnected", "live 10000"]);
        assert_eq!(counters.dropped_windows.load(Ordering::Relaxed), 3);
        assert_eq!(counters.dropped_events.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn past_the_bound_the_oldest_event_is_dropped_and_counted() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let counters = EngineCounters::default();
        let mut out = Outbox::new(&tx, &counters);
        for i in 0..MAX_PENDING_EVENTS + 11 {
            out.send(event(format!("e{i}"), None));
        }
        assert_eq!(out.pending(), MAX_PENDING_EVENTS);
        assert_eq!(counters.dropped_events.load(Ordering::Relaxed), 10);
        assert_eq!(what(&rx.recv().unwrap()), "e0");
        out.flush();
        assert_eq!(what(&rx.recv().unwrap()), "e11");
    }
}
