//! The device simulator end to end: real pseudo-terminals opened through the simulator's symlink
//! as the daemon would open a device, real LUDB records, the project's own decoders; no mocks.
//! Covers the eknet stream (hello, contiguous indices, values within one LSB, pacing), each
//! fault (drops, lead-off, corruption, garbage, hang-up), random faults against the simulator's own
//! fault log, the Cyton stream, and option errors.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::protocol::{cyton, eknet};
use eknet_daemon::sim::{self, Faults, LeadOff, RandomFaults, SimOptions, SimProtocol, SimReport};
use eknet_shared::{Lead, Record};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

const LEADS8: [Lead; 8] = sim::EKNET_LEADS;

fn ludb(n: u32) -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here)
        .unwrap_or_else(|e| panic!("{e}"))
        .join(format!("ludb/data/{n}"))
}

/// LUDB record `n` at 500 Hz, as the simulator streams it.
fn record(n: u32) -> Record {
    let r = eknet_shared::io::read_any(&ludb(n)).unwrap();
    eknet_shared::preprocess::to_model_rate(&r).unwrap()
}

fn options(dir: &Path, protocol: SimProtocol, speed: f64) -> SimOptions {
    SimOptions {
        records: vec![ludb(1)],
        protocol,
        speed,
        link: Some(dir.join("ecg")),
        quiet: true,
        ..SimOptions::default()
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<SimReport>>,
    link: PathBuf,
}

impl Running {
    fn start(opts: SimOptions) -> Running {
        let link = opts.link.clone().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(sim::run(opts, rx));
        Running { stop, task, link }
    }

    /// Stops the simulator; its report. The link must be gone.
    async fn finish(self) -> SimReport {
        self.stop.send_replace(true);
        let report = timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the simulator stops within 5 s of the shutdown signal")
            .unwrap()
            .unwrap();
        assert!(
            std::fs::symlink_metadata(&self.link).is_err(),
            "the simulator removes its link when it stops"
        );
        report
    }
}

/// Waits for the link to point somewhere other than `old`; its target.
async fn wait_link(link: &Path, old: Option<&Path>) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(t) = std::fs::read_link(link)
            && Some(t.as_path()) != old
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "link {} never (re)appeared",
            link.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn open(link: &Path, baud: u32) -> SerialStream {
    tokio_serial::new(link.to_str().unwrap(), baud)
        .open_native_async()
        .unwrap()
}

/// Reads and decodes eknet until `enough` says so; every event with the wall time it came.
async fn read_eknet(
    port: &mut SerialStream,
    dec: &mut eknet::Decoder,
    enough: impl Fn(&[(Instant, eknet::Event)]) -> bool,
) -> Vec<(Instant, eknet::Event)> {
    let mut events = Vec::new();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while !enough(&events) {
        let n = timeout(Duration::from_secs(5), port.read(&mut buf))
            .await
            .expect("stream data within 5 s")
            .unwrap();
        assert!(n > 0, "the port closed unexpectedly");
        dec.feed(&buf[..n], &mut out);
        let now = Instant::now();
        events.extend(out.drain(..).map(|e| (now, e)));
    }
    events
}

fn blocks(events: &[(Instant, eknet::Event)]) -> Vec<&eknet::SampleBlock> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            eknet::Event::Samples(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn samples_seen(events: &[(Instant, eknet::Event)]) -> usize {
    blocks(events).iter().map(|b| b.samples()).sum()
}

fn last_index(events: &[(Instant, eknet::Event)]) -> u32 {
    blocks(events).last().map_or(0, |b| b.first_index)
}

/// Every channel of every block equals the record (looped) within one LSB (0.5 uV).
fn check_values(rec: &Record, blocks: &[&eknet::SampleBlock]) {
    let leads: Vec<&[f32]> = LEADS8.iter().map(|&l| rec.lead(l).unwrap()).collect();
    let len = rec.len_samples() as u64;
    let lsb_mv = sim::EKNET_UV_PER_LSB as f64 / 1000.0;
    for b in blocks {
        assert_eq!(b.channels, 8);
        for s in 0..b.samples() {
            let pos = ((b.first_index as u64 + s as u64) % len) as usize;
            for (c, lead) in leads.iter().enumerate() {
                let got = b.values[s * 8 + c] as f64 * lsb_mv;
                let want = lead[pos] as f64;
                assert!(
                    (got - want).abs() <= lsb_mv,
                    "index {} {}: sent {got} mV, record {want} mV",
                    b.first_index as u64 + s as u64,
                    LEADS8[c]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eknet_stream_matches_the_record_and_is_paced() {
    let dir = tempfile::tempdir().unwrap();
    let speed = 20.0;
    let run = Running::start(options(dir.path(), SimProtocol::Eknet, speed));
    let target = wait_link(&run.link, None).await;
    assert!(target.starts_with("/dev/pts"), "link points at {target:?}");
    let mut port = open(&run.link, 230_400);
    let mut dec = eknet::Decoder::new();
    // About 3 s of stream time (0.15 s of wall time at speed 20).
    let events = read_eknet(&mut port, &mut dec, |e| samples_seen(e) >= 1500).await;

    match &events[0].1 {
        eknet::Event::Hello(h) => {
            assert_eq!(h.sample_rate_mhz, 500_000);
            assert_eq!(h.microvolts_per_lsb, 0.5);
            assert_eq!(h.channels, 8);
            assert_eq!(h.device_id, sim::DEFAULT_DEVICE_ID);
        }
        other => panic!("the first event is {other:?}, not a hello"),
    }
    let bl = blocks(&events);
    for w in bl.windows(2) {
        assert_eq!(
            w[1].first_index,
            w[0].first_index + 10,
            "indices contiguous"
        );
        assert_eq!(w[0].lead_off, 0);
    }
    let c = dec.counters;
    assert_eq!(
        (c.crc_errors, c.bytes_skipped, c.lost_samples, c.bad_lengths),
        (0, 0, 0, 0)
    );
    // Hellos again once a stream second: at indices that are multiples of 500.
    let hellos = events
        .iter()
        .filter(|(_, e)| matches!(e, eknet::Event::Hello(_)))
        .count();
    assert!(hellos >= 2, "{hellos} hellos in 3 stream seconds");
    check_values(&record(1), &bl);

    // Paced: the stream does not arrive faster than speed x real time.
    let samples_with_time: Vec<(Instant, u32)> = events
        .iter()
        .filter_map(|(t, e)| match e {
            eknet::Event::Samples(b) => Some((*t, b.first_index)),
            _ => None,
        })
        .collect();
    let (t0, i0) = samples_with_time[0];
    let (t1, i1) = *samples_with_time.last().unwrap();
    let stream_s = (i1 - i0) as f64 / 500.0 / speed;
    let wall_s = (t1 - t0).as_secs_f64();
    assert!(
        wall_s >= 0.9 * stream_s - 0.02,
        "{} samples arrived in {wall_s:.3} s; at speed {speed} they take {stream_s:.3} s",
        i1 - i0
    );

    drop(port);
    let r = run.finish().await;
    assert!(r.frames_sent >= bl.len() as u64);
    assert_eq!(r.samples_sent, r.frames_sent * 10);
    assert_eq!((r.frames_dropped, r.hangups, r.frames_silenced), (0, 0, 0));
    assert!(r.hellos_sent >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_frames_are_measured_exactly_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), SimProtocol::Eknet, 20.0);
    opts.faults.drop_every = Some(5);
    let run = Running::start(opts);
    wait_link(&run.link, None).await;
    let mut port = open(&run.link, 230_400);
    let mut dec = eknet::Decoder::new();
    let events = read_eknet(&mut port, &mut dec, |e| samples_seen(e) >= 2000).await;

    // Frames are numbered from 1; every 5th (first index 40, 90, 140, ...) never comes.
    let bl = blocks(&events);
    let mut gaps = 0;
    for (_, e) in &events {
        if let eknet::Event::Gap {
            expected,
            got,
            lost,
            reset,
        } = e
        {
            assert!(!reset);
            assert_eq!(*lost, 10, "one dropped frame is 10 samples");
            assert_eq!(expected % 50, 40, "the dropped frame is every 5th");
            assert_eq!(*got, expected + 10);
            gaps += 1;
        }
    }
    assert!(bl.iter().all(|b| b.first_index % 50 != 40));
    let span = (bl.last().unwrap().first_index - bl[0].first_index) / 10 + 1;
    assert_eq!(bl.len() as u32 + gaps, span, "every other frame arrived");
    assert!(gaps >= 30, "{gaps} drops seen in 4 stream seconds");
    assert_eq!(dec.counters.lost_samples, 10 * gaps as u64);
    assert_eq!(
        (dec.counters.crc_errors, dec.counters.bytes_skipped),
        (0, 0)
    );
    check_values(&record(1), &bl);

    drop(port);
    let r = run.finish().await;
    assert!(r.frames_dropped >= gaps as u64);
    assert!(r.frames_sent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_off_corruption_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), SimProtocol::Eknet, 20.0);
    opts.faults = Faults {
        corrupt_every: Some(7),
        garbage_every: Some(3),
        lead_off: vec!["V2@10-14".parse().unwrap()],
        ..Faults::default()
    };
    let run = Running::start(opts);
    wait_link(&run.link, None).await;
    let mut port = open(&run.link, 230_400);
    let mut dec = eknet::Decoder::new();
    // Until stream second 16 (0.8 s of wall time).
    let events = read_eknet(&mut port, &mut dec, |e| last_index(e) >= 8000).await;
    let bl = blocks(&events);
    let first = bl[0].first_index;
    assert!(
        first < 5000,
        "joined at index {first}, after the lead-off began"
    );

    // V2 (bit 4) off in frames within 10..14 s (indices 5000..7000) and only there.
    let mut inside = 0;
    for b in &bl {
        let (lo, hi) = (b.first_index, b.first_index + 10);
        if lo >= 5000 && hi <= 7000 {
            assert_eq!(b.lead_off, 1 << 4, "frame at {lo} in the span");
            inside += 1;
        } else if hi <= 5000 || lo >= 7000 {
            assert_eq!(b.lead_off, 0, "frame at {lo} outside the span");
        }
    }
    assert!(inside >= 150, "{inside} frames inside the span");

    // Every 7th frame (first index 60, 130, ...) fails its CRC; all others decode, garbage or not.
    let received: std::collections::BTreeSet<u32> = bl.iter().map(|b| b.first_index).collect();
    let mut corrupted = 0u64;
    for idx in (first..=bl.last().unwrap().first_index).step_by(10) {
        if idx % 70 == 60 {
            assert!(!received.contains(&idx), "corrupted frame {idx} decoded");
            corrupted += 1;
        } else {
            assert!(received.contains(&idx), "good frame {idx} lost");
        }
    }
    let c = dec.counters;
    assert!(corrupted >= 50, "{corrupted} corrupted frames seen");
    assert!(c.crc_errors >= corrupted, "{c:?}");
    assert_eq!(c.lost_samples, 10 * corrupted, "{c:?}");
    assert!(c.bytes_skipped > 0, "{c:?}");
    check_values(&record(1), &bl);

    drop(port);
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyton_stream_matches_the_record_at_250_hz() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), SimProtocol::Cyton, 10.0);
    // V2 electrode off from stream second 4 to 5: channel 4 (V2) flat, the others untouched.
    opts.faults.lead_off = vec!["V2@4-5".parse().unwrap()];
    let run = Running::start(opts);
    wait_link(&run.link, None).await;
    let mut port = open(&run.link, 115_200);
    let mut dec = cyton::Decoder::new();
    let mut packets = Vec::new();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while packets.len() < 2000 {
        let n = timeout(Duration::from_secs(5), port.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        dec.feed(&buf[..n], &mut out);
        for e in out.drain(..) {
            match e {
                cyton::Event::Packet(p) => packets.push(p),
                cyton::Event::Gap { .. } => panic!("gap in the Cyton stream: {e:?}"),
            }
        }
    }
    assert_eq!(dec.counters.lost_samples, 0);
    assert_eq!(dec.counters.bad_footers, 0);
    for w in packets.windows(2) {
        assert_eq!(w[1].counter, w[0].counter.wrapping_add(1));
    }
    assert!(packets.iter().all(|p| p.footer == sim::CYTON_FOOTER));

    // The record resampled to 250 Hz with the shared resampler, in Cyton LSBs at gain 24.
    let rec = record(1);
    let leads: Vec<Vec<f32>> = LEADS8
        .iter()
        .map(|&l| eknet_shared::resample::resample(rec.lead(l).unwrap(), 500.0, 250.0).unwrap())
        .collect();
    let len = leads[0].len();
    assert_eq!(len, 2500);
    let lsb_mv = cyton::microvolts_per_lsb(24.0) / 1000.0;
    let matches = |pos: usize, p: &cyton::Packet, skip_v2: bool| {
        (0..8).all(|c| {
            (skip_v2 && c == 3)
                || (p.channels[c] as f64 * lsb_mv - leads[c][pos % len] as f64).abs() <= lsb_mv
        })
    };
    // Where in the (looped) record the reader joined: the only position where 8 packets match.
    let starts: Vec<usize> = (0..len)
        .filter(|&s| (0..8).all(|k| matches(s + k, &packets[k], true)))
        .collect();
    assert_eq!(starts.len(), 1, "join positions {starts:?}");
    // The counter is the stream index mod 256: the reader joined in the record's first pass, so
    // the stream index of packet k is start + k.
    assert_eq!(
        packets[0].counter as usize,
        starts[0] % 256,
        "joined in the first pass of the record"
    );
    // V2 flat exactly in stream second 4 (indices 1000..1250), every other channel as recorded.
    let mut flat = 0;
    for (k, p) in packets.iter().enumerate() {
        let index = starts[0] + k;
        assert!(matches(index, p, true), "packet at index {index}");
        if (1000..1250).contains(&index) {
            assert_eq!(p.channels[3], 0, "V2 off at index {index}");
            flat += 1;
        } else {
            assert!(matches(index, p, false), "V2 at index {index}");
        }
    }
    if starts[0] < 1000 {
        assert_eq!(flat, 250, "V2 flat for one stream second");
    }

    drop(port);
    let r = run.finish().await;
    assert!(r.frames_sent >= packets.len() as u64);
    assert_eq!(r.samples_sent, r.frames_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_closes_the_port_and_a_new_pty_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), SimProtocol::Eknet, 5.0);
    // At stream second 5 (1 wall second), gone for 2 stream seconds (0.4 wall seconds).
    opts.faults.hangup = Some((5.0, 2.0));
    let (tx, mut slave_rx) = watch::channel(None);
    opts.slave_tx = Some(tx);
    let run = Running::start(opts);
    let old_target = wait_link(&run.link, None).await;
    assert_eq!(
        slave_rx.borrow_and_update().as_deref(),
        Some(old_target.as_path())
    );
    let mut port = open(&run.link, 230_400);
    let mut dec = eknet::Decoder::new();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    let mut old_next = None;
    let ended = loop {
        match timeout(Duration::from_secs(5), port.read(&mut buf)).await {
            Err(_) => panic!("no hang-up within 5 s"),
            Ok(Ok(0)) => break "Ok(0)",
            Ok(Err(_)) => break "an error",
            Ok(Ok(n)) => {
                dec.feed(&buf[..n], &mut out);
                for e in out.drain(..) {
                    if let eknet::Event::Samples(b) = e {
                        old_next = Some(b.first_index + b.samples() as u32);
                    }
                }
            }
        }
    };
    let old_next = old_next.expect("samples before the hang-up");
    assert!(
        old_next <= 2500,
        "samples up to {old_next} before stream second 5"
    );
    assert_eq!(dec.counters.lost_samples, 0);
    drop(port);

    let new_target = wait_link(&run.link, Some(&old_target)).await;
    assert!(new_target.starts_with("/dev/pts"));
    assert_ne!(
        new_target, old_target,
        "a new pty after the hang-up ({ended})"
    );
    let mut port = open(&run.link, 230_400);
    let mut dec = eknet::Decoder::new();
    let events = read_eknet(&mut port, &mut dec, |e| blocks(e).len() >= 5).await;
    assert!(matches!(events[0].1, eknet::Event::Hello(_)));
    let new_first = blocks(&events)[0].first_index;
    assert!(
        new_first >= 3500 && new_first.is_multiple_of(10),
        "after 2 s gone the index resumes at 3500 or later, not {new_first}"
    );
    check_values(&record(1), &blocks(&events));

    drop(port);
    let r = run.finish().await;
    assert_eq!(r.hangups, 1);
    assert_eq!(
        r.frames_silenced, 100,
        "2 stream seconds = 100 frames not sent"
    );
    assert_eq!(*slave_rx.borrow_and_update(), None);
}

/// Random faults, read by a host that reopens the link after every hang-up: what the host
/// decoded agrees with the simulator's fault log sample for sample. No received sample lies in
/// a span the log calls lost; every sample the log does not call lost arrived, but for frames
/// still in the pty when a hang-up closed it (the host had not read them yet); every lead-off span
/// shows in the frames' bits; every kind of fault happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_agree_with_the_fault_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), SimProtocol::Eknet, 20.0);
    opts.faults.random = Some(RandomFaults {
        seed: 7,
        mean_interval_s: 2.0,
    });
    let log_path = dir.path().join("faults.jsonl");
    opts.fault_log = Some(log_path.clone());
    let (tx, mut slave_rx) = watch::channel(None);
    opts.slave_tx = Some(tx);
    let run = Running::start(opts);

    // Host: every intact block, until stream second 150 (7.5 wall seconds).
    let mut got: Vec<(u64, u64, u16)> = Vec::new();
    let mut hangups_seen = 0;
    'outer: loop {
        let path = timeout(Duration::from_secs(10), async {
            loop {
                if let Some(p) = slave_rx.borrow_and_update().clone() {
                    return p;
                }
                slave_rx.changed().await.unwrap();
            }
        })
        .await
        .expect("the port comes back within 10 s");
        let mut port = open(&path, 230_400);
        let mut dec = eknet::Decoder::new();
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        loop {
            let n = match timeout(Duration::from_secs(5), port.read(&mut buf)).await {
                Err(_) => panic!("no data and no hang-up for 5 s"),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    hangups_seen += 1;
                    break;
                }
                Ok(Ok(n)) => n,
            };
            dec.feed(&buf[..n], &mut out);
            for e in out.drain(..) {
                if let eknet::Event::Samples(b) = e {
                    let from = u64::from(b.first_index);
                    got.push((from, from + b.samples() as u64, b.lead_off));
                }
            }
            if got.last().is_some_and(|g| g.0 >= 75_000) {
                break 'outer;
            }
        }
        // Wait for the link to be replaced (or the port to be published again).
        let _ = timeout(Duration::from_secs(5), slave_rx.changed()).await;
    }
    let r = run.finish().await;

    let log: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log[0]["kind"], "start");
    assert_eq!(log[0]["random_seed"], 7);
    let end = log.last().unwrap();
    assert_eq!(end["kind"], "end", "the log ends with the run's report");
    assert_eq!(end["report"]["hangups"], r.hangups);
    let span = |v: &serde_json::Value| (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
    let of = |kind: &str| -> Vec<(u64, u64)> {
        log.iter().filter(|v| v["kind"] == kind).map(span).collect()
    };
    let lost: Vec<(&str, (u64, u64))> = ["drop", "corrupt", "silenced", "unheard"]
        .into_iter()
        .flat_map(|k| of(k).into_iter().map(move |s| (k, s)))
        .collect();
    for kind in ["drop", "corrupt", "silenced", "lead_off", "stall", "hangup"] {
        assert!(
            !of(kind).is_empty(),
            "no {kind} in 150 s at one fault every 2 s"
        );
    }
    assert!(
        log.iter().any(|v| v["kind"] == "garbage"),
        "no garbage burst"
    );
    assert_eq!(
        r.frames_dropped,
        of("drop").iter().map(|(a, b)| (b - a) / 10).sum::<u64>()
    );
    assert_eq!(
        r.frames_silenced,
        of("silenced")
            .iter()
            .map(|(a, b)| (b - a) / 10)
            .sum::<u64>()
    );
    assert!(hangups_seen >= 1 && r.hangups >= 1);

    // No received sample was logged lost.
    for &(a, b, _) in &got {
        for (kind, (lo, hi)) in &lost {
            assert!(
                b <= *lo || a >= *hi,
                "samples {a}..{b} arrived but the log says {kind} {lo}..{hi}"
            );
        }
    }
    // Every sample from the first received to the last not logged lost arrived, except frames
    // cut off by a hang-up (just before a silenced span).
    let mut expect = got[0].0;
    let stop = got.last().unwrap().1;
    let mut lost_sorted: Vec<(u64, u64)> = lost.iter().map(|(_, s)| *s).collect();
    lost_sorted.sort();
    let hangup_starts: Vec<u64> = of("hangup").iter().map(|s| s.0).collect();
    let mut received = got.iter().map(|g| (g.0, g.1)).peekable();
    let mut cut_at_hangup = 0;
    while expect < stop {
        if let Some(&(_, hi)) = lost_sorted
            .iter()
            .find(|(lo, hi)| *lo <= expect && expect < *hi)
        {
            expect = hi;
            continue;
        }
        let (a, b) = *received.peek().unwrap();
        if a == expect {
            expect = b;
            received.next();
            continue;
        }
        assert!(a > expect, "samples {a}..{b} arrived twice or out of order");
        // Samples expect..gap_end never arrived: they must end where a hang-up began.
        let next_lost = lost_sorted.iter().find(|(lo, _)| *lo > expect).map(|s| s.0);
        let gap_end = next_lost.map_or(a, |l| l.min(a));
        assert!(
            hangup_starts.contains(&gap_end) && gap_end - expect <= 500,
            "samples {expect}..{gap_end} never arrived and the log does not say why"
        );
        cut_at_hangup += gap_end - expect;
        expect = gap_end;
    }
    assert!(
        cut_at_hangup <= 500 * r.hangups,
        "{cut_at_hangup} samples cut at {} hang-ups",
        r.hangups
    );
    // Lead-off bits: set in every block inside a logged span (and a block outside every span has
    // none).
    let offs: Vec<(u16, u64, u64)> = log
        .iter()
        .filter(|v| v["kind"] == "lead_off")
        .map(|v| {
            let (a, b) = span(v);
            (v["bit"].as_u64().unwrap() as u16, a, b)
        })
        .collect();
    for &(a, b, bits) in &got {
        let want = offs
            .iter()
            .filter(|(_, lo, hi)| a < *hi && b > *lo)
            .fold(0u16, |acc, (bit, _, _)| acc | bit);
        assert_eq!(bits, want, "lead-off bits of samples {a}..{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_stops_after_the_last_record_and_a_folder_streams_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Two records (10 s each) at speed 200 take 0.1 s; nobody listens.
    let mut opts = options(dir.path(), SimProtocol::Eknet, 200.0);
    opts.records = vec![ludb(2), ludb(1).with_extension("hea")];
    opts.loop_forever = false;
    let (_stop, rx) = watch::channel(false);
    let r = timeout(Duration::from_secs(10), sim::run(opts, rx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.records_streamed, 2);
    assert_eq!(r.frames_unheard, 1000, "10000 samples, nobody listening");
    assert_eq!((r.frames_sent, r.bytes_sent), (0, 0));
    assert!(std::fs::symlink_metadata(dir.path().join("ecg")).is_err());

    let names = sim::load_records(&[ludb(1).parent().unwrap().to_path_buf()]).unwrap();
    assert_eq!(names.len(), 200);
    let first: Vec<String> = names[..3]
        .iter()
        .map(|(n, _)| {
            Path::new(n)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(first, ["1", "2", "3"], "natural order");
    assert!(names.iter().all(|(_, r)| r.sample_rate_hz() == 500.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file at the link path is never replaced.
    let file = dir.path().join("ecg");
    std::fs::write(&file, b"keep me").unwrap();
    let (_stop, rx) = watch::channel(false);
    let e = sim::run(options(dir.path(), SimProtocol::Eknet, 1.0), rx.clone())
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("not a symlink"), "{e:#}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    // A record that cannot be read is named.
    let bogus = dir.path().join("broken.ecgzip");
    std::fs::write(&bogus, b"not gzip").unwrap();
    let e = sim::load_records(&[ludb(1), bogus.clone()]).unwrap_err();
    assert!(format!("{e:#}").contains("broken.ecgzip"), "{e:#}");
    let e = sim::load_records(&[dir.path().join("nope")]).unwrap_err();
    assert!(format!("{e:#}").contains("nope"), "{e:#}");

    // Fault text.
    let off: LeadOff = "v2@5-20".parse().unwrap();
    assert_eq!(
        (off.electrode.as_str(), off.from_s, off.to_s),
        ("V2", 5.0, 20.0)
    );
    assert_eq!(off.bit().unwrap(), 1 << 4);
    for bad in ["V7@1-2", "V2@5", "V2@x-3", "V2@5-2", "V2"] {
        let e = bad.parse::<LeadOff>().unwrap_err();
        assert!(e.contains("ELECTRODE@FROM-TO"), "{bad}: {e}");
    }
    assert_eq!(sim::parse_span("30:5").unwrap(), (30.0, 5.0));
    assert!(sim::parse_span("30").is_err());
    assert!(sim::parse_span("-1:5").is_err());
    assert_eq!(
        sim::parse_cyton_map("V6,I,II,V2,V3,V4,V5,V1").unwrap()[0],
        Lead::V6
    );
    assert!(sim::parse_cyton_map("I,II,V1").is_err());
    assert!(sim::parse_cyton_map("I,I,V1,V2,V3,V4,V5,V6").is_err());

    // Options checked before anything opens.
    let mut opts = options(dir.path(), SimProtocol::Eknet, 0.0);
    opts.link = Some(dir.path().join("other"));
    assert!(sim::run(opts.clone(), rx.clone()).await.is_err());
    opts.speed = 1.0;
    opts.faults.drop_every = Some(0);
    assert!(sim::run(opts.clone(), rx.clone()).await.is_err());
    opts.faults.drop_every = None;
    opts.device = Some(PathBuf::from("/dev/null"));
    let e = sim::run(opts, rx).await.unwrap_err();
    assert!(format!("{e}").contains("not both"), "{e}");
}
