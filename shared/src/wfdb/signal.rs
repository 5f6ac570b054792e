//! WFDB signal files: decoding the storage formats (16, 61, 80, 160, 212, 24, 32) from bytes,
//! de-interleaving the signals that share a file, length and checksum checks.

use super::{Header, WfdbError};
use std::path::Path;

/// The formats this reader decodes.
pub const SUPPORTED_FORMATS: [u16; 7] = [16, 61, 80, 160, 212, 24, 32];

/// The digital value a format uses to mark an invalid (missing) sample, if any.
pub fn invalid_sample(format: u16) -> Option<i32> {
    match format {
        16 | 61 | 160 => Some(-32768),
        80 => Some(-128),
        212 => Some(-2048),
        24 => Some(-(1 << 23)),
        32 => Some(i32::MIN),
        _ => None,
    }
}

/// Decodes every whole value in `bytes` stored in `format`. Returns `None` for an unsupported
/// format.
pub fn decode(format: u16, bytes: &[u8]) -> Option<Vec<i32>> {
    Some(match format {
        16 => bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as i32)
            .collect(),
        61 => bytes
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]) as i32)
            .collect(),
        80 => bytes.iter().map(|&b| b as i32 - 128).collect(),
        160 => bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as i32 - 32768)
            .collect(),
        24 => bytes
            .chunks_exact(3)
            .map(|b| i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)
            .collect(),
        32 => bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        212 => decode_212(bytes),
        _ => return None,
    })
}

/// Format 212: pairs of 12-bit two's complement values in 3 bytes. The first value is byte 0
/// plus the low nibble of byte 1; the second is byte 2 plus the high nibble of byte 1.
fn decode_212(bytes: &[u8]) -> Vec<i32> {
    let sext12 = |v: i32| (v << 20) >> 20;
    let mut out = Vec::with_capacity(bytes.len() * 2 / 3 + 1);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        out.push(sext12(c[0] as i32 | ((c[1] as i32 & 0x0F) << 8)));
        out.push(sext12(c[2] as i32 | ((c[1] as i32 & 0xF0) << 4)));
    }
    if let [b0, b1] = chunks.remainder() {
        out.push(sext12(*b0 as i32 | ((*b1 as i32 & 0x0F) << 8)));
    }
    out
}

/// Encodes values in format 212 (the inverse of [`decode`]); values are taken modulo 12 bits.
pub fn encode_212(values: &[i32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 3 / 2 + 2);
    for pair in values.chunks(2) {
        let a = pair[0] & 0xFFF;
        out.push((a & 0xFF) as u8);
        match pair.get(1) {
            Some(&b) => {
                let b = b & 0xFFF;
                out.push(((a >> 8) | ((b >> 8) << 4)) as u8);
                out.push((b & 0xFF) as u8);
            }
            None => out.push((a >> 8) as u8),
        }
    }
    out
}

/// Reads every signal of a single-segment record as digital values, one vector per signal in
/// header order. `dir` is the header's folder; `file` names the header in errors.
pub fn read_signals(
    header: &Header,
    dir: &Path,
    verify_checksums: bool,
    file: &str,
) -> Result<Vec<Vec<i32>>, WfdbError> {
    let mut out: Vec<Vec<i32>> = vec![Vec::new(); header.signals.len()];
    // Signals sharing a file are interleaved frame by frame, in header order.
    let mut files: Vec<(&str, Vec<usize>)> = Vec::new();
    for (idx, s) in header.signals.iter().enumerate() {
        match files.iter_mut().find(|(name, _)| *name == s.file_name) {
            Some((_, members)) => members.push(idx),
            None => files.push((&s.file_name, vec![idx])),
        }
    }
    for (name, members) in files {
        let first = &header.signals[members[0]];
        for &idx in &members {
            let s = &header.signals[idx];
            let unsupported = |what: String| WfdbError::Unsupported {
                file: file.to_string(),
                signal: idx,
                description: s.description.clone(),
                what,
            };
            if !SUPPORTED_FORMATS.contains(&s.format) {
                return Err(unsupported(format!("format {}", s.format)));
            }
            if s.samples_per_frame != 1 {
                return Err(unsupported(format!(
                    "{} samples per frame",
                    s.samples_per_frame
                )));
            }
            if s.skew != 0 {
                return Err(unsupported(format!("skew {}", s.skew)));
            }
            if (s.format, s.byte_offset) != (first.format, first.byte_offset) {
                return Err(unsupported(format!(
                    "mixing format {}+{} with {}+{} in one file",
                    s.format, s.byte_offset, first.format, first.byte_offset
                )));
            }
        }
        if name == "~" {
            return Err(WfdbError::Unsupported {
                file: file.to_string(),
                signal: members[0],
                description: first.description.clone(),
                what: "null signal file '~'".into(),
            });
        }
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|source| WfdbError::Io {
            path: path.clone(),
            source,
        })?;
        let offset = usize::try_from(first.byte_offset).unwrap_or(usize::MAX);
        let body = bytes.get(offset..).unwrap_or(&[]);
        let values = decode(first.format, body).unwrap_or_default();
        let n_sig = members.len();
        let available = values.len() / n_sig;
        let n_frames = header.n_samples.unwrap_or(available);
        if available < n_frames {
            return Err(WfdbError::Truncated {
                path,
                expected: n_frames,
                found: available,
            });
        }
        for (k, &idx) in members.iter().enumerate() {
            let samples: Vec<i32> = values
                .iter()
                .skip(k)
                .step_by(n_sig)
                .take(n_frames)
                .copied()
                .collect();
            let spec = &header.signals[idx];
            if verify_checksums && let Some(expected) = spec.checksum {
                let sum: i64 = samples.iter().map(|&v| v as i64).sum();
                if sum as i16 != expected as i16 {
                    return Err(WfdbError::Checksum {
                        path: path.clone(),
                        signal: idx,
                        description: spec.description.clone(),
                        expected,
                        found: (sum as i16) as i64,
                    });
                }
            }
            out[idx] = samples;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_format() {
        assert_eq!(
            decode(16, &[0x01, 0x00, 0xFF, 0xFF, 0x00, 0x80]).unwrap(),
            [1, -1, -32768]
        );
        assert_eq!(decode(61, &[0x00, 0x01, 0xFF, 0xFE]).unwrap(), [1, -2]);
        assert_eq!(decode(80, &[128, 0, 255]).unwrap(), [0, -128, 127]);
        assert_eq!(decode(160, &[0x00, 0x80, 0x01, 0x80]).unwrap(), [0, 1]);
        assert_eq!(
            decode(24, &[0xFF, 0xFF, 0xFF, 0x02, 0x00, 0x00]).unwrap(),
            [-1, 2]
        );
        assert_eq!(decode(32, &(-5i32).to_le_bytes()).unwrap(), [-5]);
        // 212: 0x123 and -1 (0xFFF) packed as 23 F1 FF.
        assert_eq!(decode(212, &[0x23, 0xF1, 0xFF]).unwrap(), [0x123, -1]);
        assert!(decode(8, &[0]).is_none());
    }

    #[test]
    fn format_212_round_trips_odd_and_even_counts() {
        for values in [vec![0, 1, -1, 2047, -2048], vec![5, -7, 100, -100]] {
            let bytes = encode_212(&values);
            assert_eq!(decode(212, &bytes).unwrap(), values);
        }
    }
}
