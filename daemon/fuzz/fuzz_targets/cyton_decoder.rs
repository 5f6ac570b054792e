//! Fuzzes the OpenBCI Cyton decoder (`daemon/src/protocol/cyton.rs`): any bytes, in chunks whose
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
use protocol::cyton::{self, CHANNELS, Counters, Decoder, Event, PACKET};

/// Every counter is at least what it was.
fn assert_monotonic(before: &Counters, after: &Counters) {
    let pairs = [
        ("packets", before.packets, after.packets),
        ("bytes_skipped", before.bytes_skipped, after.bytes_skipped),
        ("bad_footers", before.bad_footers, after.bad_footers),
        ("lost_samples", before.lost_samples, after.lost_samples),
    ];
    for (name, b, a) in pairs {
        assert!(a >= b, "counter {name} went down: {b} -> {a}");
    }
}

/// Follows the event stream across feeds, checking each event and the counter bookkeeping.
#[derive(Default)]
struct Checker {
    /// Counter the next packet should carry (after the first packet).
    next_counter: Option<u8>,
    /// A gap was just announced: the next event must be the packet it announced.
    pending_gap: Option<u8>,
}

impl Checker {
    fn events(&mut self, events: &[Event], before: &Counters, after: &Counters) {
        let (mut packets, mut lost) = (0u64, 0u64);
        for e in events {
            match e {
                Event::Packet(p) => {
                    packets += 1;
                    // One packet is one sample of CHANNELS values (the array's length).
                    assert_eq!(p.channels.len(), CHANNELS);
                    for &v in &p.channels {
                        assert!((I24_MIN..=I24_MAX).contains(&v), "value {v} outside i24");
                    }
                    assert_eq!(p.footer & 0xF0, 0xC0, "footer {:#04x}", p.footer);
                    if let Some(got) = self.pending_gap.take() {
                        assert_eq!(p.counter, got, "gap announced another counter");
                    } else if let Some(expected) = self.next_counter {
                        assert_eq!(p.counter, expected, "counter jumped without a gap event");
                    }
                    self.next_counter = Some(p.counter.wrapping_add(1));
                    // The encoder writes what the decoder read (aux bytes aside).
                    let bytes = cyton::encode(p.counter, &p.channels, p.footer);
                    let mut d = Decoder::new();
                    let mut again = Vec::new();
                    d.feed(&bytes, &mut again);
                    assert_eq!(again, vec![e.clone()], "encode/decode round trip differs");
                }
                Event::Gap {
                    expected,
                    got,
                    lost: l,
                } => {
                    assert!(self.pending_gap.is_none(), "two gap events in a row");
                    assert_ne!(expected, got, "gap between equal counters");
                    assert_eq!(
                        Some(*expected),
                        self.next_counter,
                        "gap from a counter that was not expected"
                    );
                    assert_eq!(
                        *l,
                        got.wrapping_sub(*expected) as u32,
                        "lost != got - expected"
                    );
                    assert!((1..=255).contains(l), "lost {l}");
                    lost += *l as u64;
                    self.pending_gap = Some(*got);
                }
            }
        }
        assert!(
            self.pending_gap.is_none(),
            "feed ended between a gap and its packet"
        );
        assert_eq!(
            after.packets - before.packets,
            packets,
            "packets counter vs events"
        );
        assert_eq!(
            after.lost_samples - before.lost_samples,
            lost,
            "lost_samples vs gap events"
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
        // "Bytes held (at most one packet)"; a whole packet is always decoded or skipped at
        // once, so strictly less is held between feeds.
        assert!(
            dec.buffered() < PACKET,
            "buffered {} >= PACKET",
            dec.buffered()
        );
        assert_monotonic(&before, &after);
        checker.events(&out, &before, &after);
        // Each bad footer skips exactly one byte.
        assert!(
            after.bytes_skipped - before.bytes_skipped >= after.bad_footers - before.bad_footers,
            "bad footers without skipped bytes"
        );
        // Every byte fed is skipped, in a packet or still buffered: exactly.
        assert_eq!(
            after.bytes_skipped + PACKET as u64 * after.packets + dec.buffered() as u64,
            fed,
            "bytes not accounted for"
        );
        all.extend(out);
    }

    // The same bytes in one piece: the same events, counters and leftover.
    let mut whole = Decoder::new();
    let mut out = Vec::new();
    whole.feed(stream, &mut out);
    assert!(
        whole.buffered() < PACKET,
        "buffered {} >= PACKET",
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
