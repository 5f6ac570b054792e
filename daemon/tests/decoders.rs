//! The serial decoders under the conditions a serial line produces: any chunking (1, 7, 13
//! bytes), garbage before, between and inside frames, corrupted lengths, CRC errors, dropped
//! frames measured exactly, restarts; and arbitrary bytes never panic or grow the buffer.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_daemon::protocol::{cyton, eknet};
use proptest::prelude::*;

const S: usize = 10;
const C: u8 = 8;

fn block_values(frame: usize) -> Vec<i32> {
    (0..S * C as usize)
        .map(|k| (frame as i32 * 1000 + k as i32) * if k % 2 == 0 { 1 } else { -1 } * 97)
        .collect()
}

fn hello() -> eknet::Hello {
    eknet::Hello {
        sample_rate_mhz: 500_000,
        microvolts_per_lsb: 0.047684,
        channels: C,
        device_id: "bench-01".into(),
    }
}

/// A hello, then `n` sample frames with consecutive indices from 1000.
fn stream(n: usize) -> Vec<Vec<u8>> {
    let mut frames = vec![eknet::encode_hello(&hello())];
    for f in 0..n {
        frames.push(eknet::encode_samples(
            1000 + (f * S) as u32,
            if f == 3 { 0b10000 } else { 0 },
            C,
            &block_values(f),
        ));
    }
    frames
}

fn decode_in_chunks(bytes: &[u8], chunk: usize) -> (Vec<eknet::Event>, eknet::Decoder) {
    let mut d = eknet::Decoder::new();
    let mut out = Vec::new();
    for c in bytes.chunks(chunk) {
        d.feed(c, &mut out);
        assert!(d.buffered() <= eknet::MAX_FRAME);
    }
    (out, d)
}

fn samples(events: &[eknet::Event]) -> Vec<&eknet::SampleBlock> {
    events
        .iter()
        .filter_map(|e| match e {
            eknet::Event::Samples(b) => Some(b),
            _ => None,
        })
        .collect()
}

#[test]
fn any_chunking_gives_the_same_frames() {
    let bytes: Vec<u8> = stream(12).concat();
    for chunk in [1, 7, 13, bytes.len()] {
        let (events, d) = decode_in_chunks(&bytes, chunk);
        assert_eq!(events[0], eknet::Event::Hello(hello()), "chunk {chunk}");
        let blocks = samples(&events);
        assert_eq!(blocks.len(), 12);
        for (f, b) in blocks.iter().enumerate() {
            assert_eq!(b.first_index, 1000 + (f * S) as u32);
            assert_eq!(b.values, block_values(f), "i24 values survive");
            assert_eq!(b.samples(), S);
        }
        assert_eq!(blocks[3].lead_off, 0b10000, "V2 off is bit 4");
        assert_eq!(d.counters.frames, 13);
        assert_eq!(
            (
                d.counters.bytes_skipped,
                d.counters.crc_errors,
                d.counters.lost_samples
            ),
            (0, 0, 0)
        );
    }
}

#[test]
fn garbage_before_between_and_inside_frames() {
    let frames = stream(8);
    let mut bytes = b"\x00\xff garbage \xec\xec\x4b\x01".to_vec(); // includes a false sync
    for (i, f) in frames.iter().enumerate() {
        if i == 4 {
            // Garbage inside frame 4 (the 4th sample frame): it fails its CRC and is lost.
            bytes.extend_from_slice(&f[..20]);
            bytes.extend_from_slice(b"\x13\x37");
            bytes.extend_from_slice(&f[20..]);
        } else {
            bytes.extend_from_slice(f);
        }
        bytes.extend_from_slice(b"\x55\xaa\xec"); // between frames
    }
    for chunk in [1, 7, 13] {
        let (events, d) = decode_in_chunks(&bytes, chunk);
        let blocks = samples(&events);
        assert_eq!(
            blocks.len(),
            7,
            "chunk {chunk}: every frame but the damaged one"
        );
        // At least the damaged frame fails its CRC (a false sync inside it may fail too).
        assert!(d.counters.crc_errors >= 1);
        // The gap left by the damaged frame is measured exactly: one frame of S samples.
        let gaps: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, eknet::Event::Gap { .. }))
            .collect();
        assert_eq!(
            gaps,
            [&eknet::Event::Gap {
                expected: 1030,
                got: 1040,
                lost: S as u64,
                reset: false
            }]
        );
        assert_eq!(d.counters.lost_samples, S as u64);
        assert!(d.counters.bytes_skipped > 0);
    }
}

#[test]
fn corrupted_length_does_not_stall_the_decoder() {
    let frames = stream(4);
    let mut bad = frames[2].clone();
    bad[4] = 0xFF;
    bad[5] = 0xFF; // 65535 > MAX_PAYLOAD
    let mut wrong = frames[3].clone();
    wrong[4] = 0x10; // 16 bytes: within the bound, wrong
    wrong[5] = 0x00;
    let bytes = [
        frames[0].clone(),
        frames[1].clone(),
        bad,
        wrong,
        frames[4].clone(),
    ]
    .concat();
    let (events, d) = decode_in_chunks(&bytes, 7);
    let blocks = samples(&events);
    assert_eq!(
        blocks.iter().map(|b| b.first_index).collect::<Vec<_>>(),
        [1000, 1030]
    );
    assert_eq!(
        d.counters.bad_lengths, 1,
        "the over-long length is skipped at once"
    );
    assert!(
        d.counters.crc_errors >= 1,
        "the plausible wrong length fails its CRC"
    );
    assert_eq!(d.counters.lost_samples, 2 * S as u64);
}

#[test]
fn dropped_frames_and_restarts_are_measured() {
    let frames = stream(10);
    let kept: Vec<u8> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| ![3, 4, 5].contains(i))
        .flat_map(|(_, f)| f.clone())
        .collect();
    let (events, d) = decode_in_chunks(&kept, 13);
    assert_eq!(d.counters.lost_samples, 3 * S as u64);
    assert!(events.contains(&eknet::Event::Gap {
        expected: 1020,
        got: 1050,
        lost: 30,
        reset: false
    }));
    // A restarted device counts from 0 again: a reset, not billions of lost samples.
    let mut d = eknet::Decoder::new();
    let mut out = Vec::new();
    d.feed(&frames[5], &mut out);
    d.feed(&eknet::encode_samples(0, 0, C, &block_values(0)), &mut out);
    assert_eq!((d.counters.index_resets, d.counters.lost_samples), (1, 0));
    // Index wrap-around at 2^32 is continuity.
    let mut d = eknet::Decoder::new();
    d.feed(
        &eknet::encode_samples(u32::MAX - 4, 0, C, &block_values(0)),
        &mut out,
    );
    d.feed(&eknet::encode_samples(5, 0, C, &block_values(1)), &mut out);
    assert_eq!((d.counters.index_resets, d.counters.lost_samples), (0, 0));
}

#[test]
fn twelve_channel_frames_and_i24_extremes() {
    let values: Vec<i32> = (0..2 * 12)
        .map(|k| {
            if k % 3 == 0 {
                -(1 << 23)
            } else if k % 3 == 1 {
                (1 << 23) - 1
            } else {
                -1
            }
        })
        .collect();
    let (events, _) = decode_in_chunks(&eknet::encode_samples(7, 0, 12, &values), 1);
    let b = samples(&events)[0];
    assert_eq!((b.channels, b.samples()), (12, 2));
    assert_eq!(b.values, values);
}

#[test]
fn cyton_packets_in_any_chunking_with_resync_and_drops() {
    let ch = |i: i32| -> [i32; 8] {
        std::array::from_fn(|c| (i * 10 + c as i32) * if c % 2 == 0 { 1 } else { -4099 })
    };
    let mut bytes = b"\x00\xc0junk".to_vec();
    for i in 0..20u8 {
        if i == 7 || i == 8 {
            continue; // dropped by the link
        }
        let mut p = cyton::encode(i.wrapping_add(250), &ch(i as i32), 0xC0);
        if i == 12 {
            p[32] = 0x00; // bad footer: this packet is lost, the next one found by resync
        }
        bytes.extend_from_slice(&p);
    }
    for chunk in [1, 7, 13] {
        let mut d = cyton::Decoder::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            d.feed(c, &mut out);
            assert!(d.buffered() <= cyton::PACKET);
        }
        let packets: Vec<&cyton::Packet> = out
            .iter()
            .filter_map(|e| match e {
                cyton::Event::Packet(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(packets.len(), 17, "chunk {chunk}");
        assert_eq!(packets[0].channels, ch(0));
        assert_eq!(d.counters.bad_footers, 1);
        // Counter wraps 255 -> 0 without a gap; 7 and 8 dropped, 12 lost: 3 samples.
        assert_eq!(d.counters.lost_samples, 3);
        assert!(out.contains(&cyton::Event::Gap {
            expected: 1,
            got: 3,
            lost: 2
        }));
    }
    assert!((cyton::microvolts_per_lsb(24.0) - 0.02235).abs() < 1e-5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in prop::collection::vec(any::<u8>(), 0..4000), chunk in 1usize..64) {
        let mut d = eknet::Decoder::new();
        let mut c = cyton::Decoder::new();
        let (mut o1, mut o2) = (Vec::new(), Vec::new());
        for part in bytes.chunks(chunk) {
            d.feed(part, &mut o1);
            c.feed(part, &mut o2);
            prop_assert!(d.buffered() <= eknet::MAX_FRAME);
            prop_assert!(c.buffered() <= cyton::PACKET);
        }
    }

    #[test]
    fn frames_survive_random_garbage_between_them(garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 6), chunk in 1usize..40) {
        let frames = stream(5);
        let mut bytes = Vec::new();
        for (f, g) in frames.iter().zip(&garbage) {
            bytes.extend_from_slice(g);
            bytes.extend_from_slice(f);
        }
        let (events, _) = decode_in_chunks(&bytes, chunk);
        let blocks = samples(&events);
        prop_assert_eq!(blocks.len(), 5);
        for (f, b) in blocks.iter().enumerate() {
            prop_assert_eq!(&b.values, &block_values(f));
        }
    }
}
