//! eknet frame v1 (see `daemon/PROTOCOL.md`): a pure, synchronous decoder fed bytes in any
//! chunking, that hunts for the sync word, bounds the length, checks the CRC, resynchronises one
//! byte on after any failure and measures sample gaps from the frame indices; and the encoder the
//! simulator and tests use.

use super::crc::crc16_ccitt_false;

/// Sync word.
pub const SYNC: [u8; 2] = [0xEC, 0x4B];
/// Protocol version.
pub const VERSION: u8 = 1;
/// Frame type of sample frames.
pub const TYPE_SAMPLES: u8 = 0x01;
/// Frame type of hello/status frames.
pub const TYPE_HELLO: u8 = 0x02;
/// Largest payload a frame may declare.
pub const MAX_PAYLOAD: usize = 1024;
/// Bytes before the payload.
pub const HEADER: usize = 6;
/// Largest samples-per-frame value.
pub const MAX_SAMPLES_PER_FRAME: u8 = 40;
/// Largest device id.
pub const MAX_DEVICE_ID: usize = 64;
/// Largest whole frame.
pub const MAX_FRAME: usize = HEADER + MAX_PAYLOAD + 2;

/// A block of samples from one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBlock {
    /// Index of the first sample.
    pub first_index: u32,
    /// Lead-off bits (bit 0 RA, 1 LA, 2 LL, 3..8 V1..V6).
    pub lead_off: u16,
    /// Channels per sample: 8 or 12.
    pub channels: u8,
    /// Sample-major raw values, `samples * channels`.
    pub values: Vec<i32>,
}

impl SampleBlock {
    /// Samples in the block.
    pub fn samples(&self) -> usize {
        self.values.len() / self.channels.max(1) as usize
    }
}

/// A hello/status frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Sampling rate in millihertz.
    pub sample_rate_mhz: u32,
    /// Microvolts per LSB.
    pub microvolts_per_lsb: f32,
    /// Channels.
    pub channels: u8,
    /// Device id.
    pub device_id: String,
}

/// What the decoder produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A good sample frame.
    Samples(SampleBlock),
    /// A good hello/status frame.
    Hello(Hello),
    /// Samples are missing before this frame: `lost` samples from index `expected` on (lost is
    /// 0 and `reset` true when the index went backwards, i.e. the device restarted).
    Gap {
        /// The index that was expected.
        expected: u32,
        /// The index that came.
        got: u32,
        /// Samples lost (0 on a reset).
        lost: u64,
        /// The index went backwards.
        reset: bool,
    },
}

/// Decoder counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Good frames.
    pub frames: u64,
    /// Bytes discarded while hunting for a frame.
    pub bytes_skipped: u64,
    /// Frames whose CRC failed.
    pub crc_errors: u64,
    /// Lengths over the bound or inconsistent with the payload.
    pub bad_lengths: u64,
    /// Frames of an unknown version or type (CRC good).
    pub unknown_frames: u64,
    /// Samples missing between consecutive sample frames.
    pub lost_samples: u64,
    /// Times the sample index went backwards.
    pub index_resets: u64,
}

/// The eknet frame v1 decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    next_index: Option<u32>,
    /// Counters since creation.
    pub counters: Counters,
}

fn i24_le(b: &[u8]) -> i32 {
    i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8
}

enum Check {
    /// Not enough bytes yet.
    Incomplete,
    /// Not a frame at the buffer's start: drop one byte.
    Skip,
    /// A whole frame of this many bytes.
    Frame(usize),
}

impl Decoder {
    /// A decoder with empty state.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Forgets any partial frame and the expected index (after a reconnect, which the caller
    /// marks as a gap itself).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.next_index = None;
    }

    /// Bytes held waiting for the rest of a frame: after [`Decoder::feed`] returns, never more
    /// than one maximal frame ([`MAX_FRAME`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes (any chunking); appends every complete event to `out`. Whatever cannot start
    /// a frame is dropped before returning, so only one partial frame is ever held.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        self.buf.extend_from_slice(bytes);
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        loop {
            // Hunt: keep the buffer starting at a sync candidate.
            let start = self
                .buf
                .windows(2)
                .position(|w| w == SYNC)
                .unwrap_or_else(|| {
                    // Keep a trailing first sync byte: the second may follow.
                    if self.buf.last() == Some(&SYNC[0]) {
                        self.buf.len() - 1
                    } else {
                        self.buf.len()
                    }
                });
            if start > 0 {
                self.counters.bytes_skipped += start as u64;
                self.buf.drain(..start);
            }
            match self.check() {
                Check::Incomplete => return,
                Check::Skip => {
                    self.counters.bytes_skipped += 1;
                    self.buf.drain(..1);
                }
                Check::Frame(len) => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    self.parse(&frame, out);
                }
            }
        }
    }

    fn check(&mut self) -> Check {
        if self.buf.len() < HEADER {
            return Check::Incomplete;
        }
        let n = u16::from_le_bytes([self.buf[4], self.buf[5]]) as usize;
        if n > MAX_PAYLOAD {
            self.counters.bad_lengths += 1;
            return Check::Skip;
        }
        let total = HEADER + n + 2;
        if self.buf.len() < total {
            return Check::Incomplete;
        }
        let crc = u16::from_le_bytes([self.buf[total - 2], self.buf[total - 1]]);
        if crc16_ccitt_false(&self.buf[2..HEADER + n]) != crc {
            self.counters.crc_errors += 1;
            return Check::Skip;
        }
        Check::Frame(total)
    }

    fn parse(&mut self, frame: &[u8], out: &mut Vec<Event>) {
        let (version, kind) = (frame[2], frame[3]);
        let payload = &frame[HEADER..frame.len() - 2];
        if version != VERSION {
            self.counters.unknown_frames += 1;
            return;
        }
        let event = match kind {
            TYPE_SAMPLES => self.parse_samples(payload, out),
            TYPE_HELLO => parse_hello(payload).map(Event::Hello),
            _ => {
                self.counters.unknown_frames += 1;
                return;
            }
        };
        match event {
            Some(e) => {
                self.counters.frames += 1;
                out.push(e);
            }
            None => self.counters.bad_lengths += 1,
        }
    }

    fn parse_samples(&mut self, p: &[u8], out: &mut Vec<Event>) -> Option<Event> {
        if p.len() < 8 {
            return None;
        }
        let first_index = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let lead_off = u16::from_le_bytes([p[4], p[5]]);
        let (s, c) = (p[6], p[7]);
        if s == 0
            || s > MAX_SAMPLES_PER_FRAME
            || !(c == 8 || c == 12)
            || p.len() != 8 + 3 * s as usize * c as usize
        {
            return None;
        }
        let values: Vec<i32> = p[8..].chunks_exact(3).map(i24_le).collect();
        if let Some(expected) = self.next_index
            && expected != first_index
        {
            // Forward distance modulo 2^32; more than half the range means the index went back.
            let ahead = first_index.wrapping_sub(expected);
            let reset = ahead > u32::MAX / 2;
            let lost = if reset { 0 } else { ahead as u64 };
            if reset {
                self.counters.index_resets += 1;
            } else {
                self.counters.lost_samples += lost;
            }
            out.push(Event::Gap {
                expected,
                got: first_index,
                lost,
                reset,
            });
        }
        self.next_index = Some(first_index.wrapping_add(s as u32));
        Some(Event::Samples(SampleBlock {
            first_index,
            lead_off,
            channels: c,
            values,
        }))
    }
}

fn parse_hello(p: &[u8]) -> Option<Hello> {
    if p.len() < 10 {
        return None;
    }
    let l = p[9] as usize;
    if l > MAX_DEVICE_ID || p.len() != 10 + l || !(p[8] == 8 || p[8] == 12) {
        return None;
    }
    let uv = f32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    if !(uv.is_finite() && uv > 0.0) {
        return None;
    }
    Some(Hello {
        sample_rate_mhz: u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
        microvolts_per_lsb: uv,
        channels: p[8],
        device_id: String::from_utf8(p[10..].to_vec()).ok()?,
    })
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len() + 2);
    f.extend_from_slice(&SYNC);
    f.push(VERSION);
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    f.extend_from_slice(payload);
    let crc = crc16_ccitt_false(&f[2..]);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// Encodes a sample frame; `values` is sample-major, `samples * channels` long, each value
/// clamped to the i24 range.
pub fn encode_samples(first_index: u32, lead_off: u16, channels: u8, values: &[i32]) -> Vec<u8> {
    let s = values.len() / channels.max(1) as usize;
    let mut p = Vec::with_capacity(8 + values.len() * 3);
    p.extend_from_slice(&first_index.to_le_bytes());
    p.extend_from_slice(&lead_off.to_le_bytes());
    p.push(s as u8);
    p.push(channels);
    for &v in values {
        let v = v.clamp(-(1 << 23), (1 << 23) - 1);
        p.extend_from_slice(&v.to_le_bytes()[..3]);
    }
    frame(TYPE_SAMPLES, &p)
}

/// Encodes a hello/status frame.
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let id = &h.device_id.as_bytes()[..h.device_id.len().min(MAX_DEVICE_ID)];
    let mut p = Vec::with_capacity(10 + id.len());
    p.extend_from_slice(&h.sample_rate_mhz.to_le_bytes());
    p.extend_from_slice(&h.microvolts_per_lsb.to_le_bytes());
    p.push(h.channels);
    p.push(id.len() as u8);
    p.extend_from_slice(id);
    frame(TYPE_HELLO, &p)
}
