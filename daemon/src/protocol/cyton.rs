//! OpenBCI Cyton packets: 33 bytes, `0xA0`, a u8 sample counter, 8 channels of big-endian i24,
//! 6 aux bytes, a footer `0xC0..=0xCF`. A pure decoder fed bytes in any chunking; on a bad footer
//! it advances one byte and hunts for the next `0xA0` (dropping a whole 32 bytes would lose good
//! data); drops are measured from the counter (exact below 256 packets, about 1 s at 250 Hz).

/// Header byte.
pub const HEADER: u8 = 0xA0;
/// Packet length.
pub const PACKET: usize = 33;
/// Channels.
pub const CHANNELS: usize = 8;

/// Microvolts per LSB at a channel gain: `4.5 V / gain / (2^23 - 1)`.
pub fn microvolts_per_lsb(gain: f64) -> f64 {
    4.5 / gain / ((1u32 << 23) - 1) as f64 * 1e6
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The board's u8 sample counter.
    pub counter: u8,
    /// Raw channel values.
    pub channels: [i32; CHANNELS],
    /// Footer byte (0xC0..=0xCF: what the aux bytes hold).
    pub footer: u8,
}

/// What the decoder produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A good packet.
    Packet(Packet),
    /// Packets are missing before the next packet (counted modulo 256).
    Gap {
        /// Counter expected.
        expected: u8,
        /// Counter that came.
        got: u8,
        /// Packets lost, modulo 256.
        lost: u32,
    },
}

/// Decoder counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Good packets.
    pub packets: u64,
    /// Bytes discarded while hunting.
    pub bytes_skipped: u64,
    /// Candidate packets whose footer was wrong.
    pub bad_footers: u64,
    /// Samples lost, from the counter.
    pub lost_samples: u64,
}

/// The Cyton decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    next_counter: Option<u8>,
    /// Counters since creation.
    pub counters: Counters,
}

fn i24_be(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8
}

impl Decoder {
    /// A decoder with empty state.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Forgets any partial packet and the expected counter.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.next_counter = None;
    }

    /// Bytes held (at most one packet).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; appends every complete event to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for &b in bytes {
            if self.buf.is_empty() && b != HEADER {
                self.counters.bytes_skipped += 1;
                continue;
            }
            self.buf.push(b);
            if self.buf.len() < PACKET {
                continue;
            }
            let footer = self.buf[PACKET - 1];
            if footer & 0xF0 != 0xC0 {
                self.counters.bad_footers += 1;
                // Advance one byte, then re-hunt inside what is held.
                let rest: Vec<u8> = self.buf.drain(..).skip(1).collect();
                self.counters.bytes_skipped += 1;
                self.feed(&rest, out);
                continue;
            }
            let p = std::mem::take(&mut self.buf);
            let counter = p[1];
            let channels: [i32; CHANNELS] =
                std::array::from_fn(|c| i24_be(&p[2 + 3 * c..5 + 3 * c]));
            if let Some(expected) = self.next_counter
                && expected != counter
            {
                let lost = counter.wrapping_sub(expected) as u32;
                self.counters.lost_samples += lost as u64;
                out.push(Event::Gap {
                    expected,
                    got: counter,
                    lost,
                });
            }
            self.next_counter = Some(counter.wrapping_add(1));
            self.counters.packets += 1;
            out.push(Event::Packet(Packet {
                counter,
                channels,
                footer,
            }));
        }
    }
}

/// Encodes a packet (aux bytes zero).
pub fn encode(counter: u8, channels: &[i32; CHANNELS], footer: u8) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    p[0] = HEADER;
    p[1] = counter;
    for (c, &v) in channels.iter().enumerate() {
        let v = v.clamp(-(1 << 23), (1 << 23) - 1);
        p[2 + 3 * c..5 + 3 * c].copy_from_slice(&v.to_be_bytes()[1..]);
    }
    p[PACKET - 1] = footer;
    p
}
