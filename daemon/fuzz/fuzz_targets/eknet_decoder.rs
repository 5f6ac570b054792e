//! Fuzzes the eknet frame v1 decoder (`daemon/src/protocol/eknet.rs`): any bytes, in chunks whose
//! sizes the input picks (see `common.rs`), must never panic and must keep the decoder's
//! documented invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The pure-std protocol sources, included directly: this crate must not depend on eknet-daemon.
#[path = "../../src/protocol/mod.rs"]
#[allow(dead_code)]
mod protocol;

mod common;

use common::{I24_MAX, I24_MIN};
use protocol::eknet::{self, Counters, Decoder, Event, MAX_FRAME};

/// Every counter is at least what it was.
fn assert_monotonic(before: &Counters, after: &Counters) {
    let pairs = [
        ("frames", before.frames, after.frames),
        ("bytes_skipped", before.bytes_skipped, after.bytes_skipped),
        ("crc_errors", before.crc_errors, after.crc_errors),
        ("bad_lengths", before.bad_lengths, after.bad_lengths),
        (
            "unknown_frames",
            before.unknown_frames,
            after.unknown_frames,
        ),
        ("lost_samples", before.lost_samples, after.lost_samples),
        ("index_resets", before.index_resets, after.index_resets),
    ];
    for (name, b, a) in pairs {
        assert!(a >= b, "counter {name} went down: {b} -> {a}");
    }
}

/// Follows the event stream across feeds, checking each event and the index bookkeeping.
#[derive(Default)]
struct Checker {
    /// Index the next sample frame should start at (after the first sample frame).
    next_index: Option<u32>,
    /// A gap was just announced: the next event must be the sample frame it announced.
    pending_gap: Option<u32>,
    /// Bytes of good frames seen (each is a whole frame the decoder consumed).
    good_bytes: u64,
}

impl Checker {
    /// Checks the events of one feed against what the counters moved by.
    fn events(&mut self, events: &[Event], before: &Counters, after: &Counters) {
        let (mut frames, mut lost, mut resets) = (0u64, 0u64, 0u64);
        for e in events {
            match e {
                Event::Samples(b) => {
                    frames += 1;
                    assert!(
                        b.channels == 8 || b.channels == 12,
                        "channels {}",
                        b.channels
                    );
                    let c = b.channels as usize;
                    assert_eq!(
                        b.values.len() % c,
                        0,
                        "values not a whole number of samples"
                    );
                    let s = b.samples();
                    assert!(
                        (1..=eknet::MAX_SAMPLES_PER_FRAME as usize).contains(&s),
                        "samples per frame {s}"
                    );
                    assert_eq!(b.values.len(), s * c, "values != samples x channels");
                    for &v in &b.values {
                        assert!((I24_MIN..=I24_MAX).contains(&v), "value {v} outside i24");
                    }
                    if let Some(got) = self.pending_gap.take() {
                        assert_eq!(b.first_index, got, "gap announced another index");
                    } else if let Some(expected) = self.next_index {
                        assert_eq!(b.first_index, expected, "index jumped without a gap event");
                    }
                    self.next_index = Some(b.first_index.wrapping_add(s as u32));
                    self.good_bytes += (eknet::HEADER + 8 + 3 * b.values.len() + 2) as u64;
                    // The encoder writes exactly what the decoder read: a fresh decoder gives
                    // back the same block.
                    let bytes =
                        eknet::encode_samples(b.first_index, b.lead_off, b.channels, &b.values);
                    let mut d = Decoder::new();
                    let mut again = Vec::new();
                    d.feed(&bytes, &mut again);
                    assert_eq!(again, vec![e.clone()], "encode/decode round trip differs");
                }
                Event::Hello(h) => {
                    frames += 1;
                    assert!(
                        self.pending_gap.is_none(),
                        "gap not followed by its sample frame"
                    );
                    assert!(
                        h.channels == 8 || h.channels == 12,
                        "hello channels {}",
                        h.channels
                    );
                    assert!(
                        h.microvolts_per_lsb.is_finite() && h.microvolts_per_lsb > 0.0,
                        "hello scale {}",
                        h.microvolts_per_lsb
                    );
                    assert!(
                        h.device_id.len() <= eknet::MAX_DEVICE_ID,
                        "device id too long"
                    );
                    self.good_bytes += (eknet::HEADER + 10 + h.device_id.len() + 2) as u64;
                    let bytes = eknet::encode_hello(h);
                    let mut d = Decoder::new();
                    let mut again = Vec::new();
                    d.feed(&bytes, &mut again);
                    assert_eq!(
                        again,
                        vec![e.clone()],
                        "hello encode/decode round trip differs"
                    );
                }
                Event::Gap {
                    expected,
                    got,
                    lost: l,
                    reset,
                } => {
                    assert!(self.pending_gap.is_none(), "two gap events in a row");
                    assert_ne!(expected, got, "gap between equal indices");
                    assert_eq!(
                        Some(*expected),
                        self.next_index,
                        "gap from an index that was not expected"
                    );
                    let ahead = got.wrapping_sub(*expected);
                    if *reset {
                        assert_eq!(*l, 0, "a reset loses no samples");
                        assert!(ahead > u32::MAX / 2, "reset on a forward jump");
                        resets += 1;
                    } else {
                        assert_eq!(*l, ahead as u64, "lost != got - expected");
                        assert!(*l >= 1 && ahead <= u32::MAX / 2, "lost {l}");
                        lost += l;
                    }
                    self.pending_gap = Some(*got);
                }
            }
        }
        // A gap event is pushed right before its sample frame, in the same feed.
        assert!(
            self.pending_gap.is_none(),
            "feed ended between a gap and its frame"
        );
        assert_eq!(
            after.frames - before.frames,
            frames,
            "frames counter vs events"
        );
        assert_eq!(
            after.lost_samples - before.lost_samples,
            lost,
            "lost_samples vs gap events"
        );
        assert_eq!(
            after.index_resets - before.index_resets,
            resets,
            "index_resets vs gap events"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((stream, chunks)) = common::split(data) else {
        return;
    };

    // Chunked.
    let mut dec = Decoder::new();
    let mut checker = Checker::default();
    let mut all = Vec::new();
    let mut fed = 0u64;
    for chunk in &chunks {
        let before = dec.counters;
        let mut out = Vec::new();
        dec.feed(chunk, &mut out);
        fed += chunk.len() as u64;
        let after = dec.counters;
        assert!(
            dec.buffered() <= MAX_FRAME,
            "buffered {} > MAX_FRAME {MAX_FRAME}",
            dec.buffered()
        );
        assert_monotonic(&before, &after);
        checker.events(&out, &before, &after);
        // Every byte fed is skipped, in a consumed frame or still buffered.
        assert!(
            after.bytes_skipped + checker.good_bytes + dec.buffered() as u64 <= fed,
            "more bytes accounted for than fed"
        );
        all.extend(out);
    }

    // The same bytes in one piece: the same events, counters and leftover.
    let mut whole = Decoder::new();
    let mut out = Vec::new();
    whole.feed(stream, &mut out);
    assert!(
        whole.buffered() <= MAX_FRAME,
        "buffered {} > MAX_FRAME",
        whole.buffered()
    );
    assert_eq!(out, all, "events depend on the chunking");
    assert_eq!(
        whole.counters, dec.counters,
        "counters depend on the chunking"
    );
    assert_eq!(
        whole.buffered(),
        dec.buffered(),
        "leftover depends on the chunking"
    );
});
