//! Shared by the fuzz targets: how an input is cut into the chunks a decoder is fed.
//!
//! The first byte `k` picks the chunking, the rest of the input is the byte stream:
//! - `k & 0x80 == 0`: fixed chunks of `(k & 0x3F) + 1` bytes (1..=64; the last one shorter);
//! - `k & 0x80 != 0`: `(k & 0x0F) + 1` control bytes follow `k`; chunk sizes cycle through them,
//!   each `c % 65` (0..=64, an empty chunk is fed as an empty slice). All-zero control bytes mean
//!   chunks of 1 so that the stream always advances.

/// Splits `data` into (stream, chunks of stream); `None` for an empty input.
pub fn split(data: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    let (&k, rest) = data.split_first()?;
    let (sizes, stream): (Vec<usize>, &[u8]) = if k & 0x80 == 0 {
        (vec![(k & 0x3F) as usize + 1], rest)
    } else {
        let n = ((k & 0x0F) as usize + 1).min(rest.len());
        let (ctrl, stream) = rest.split_at(n);
        let mut sizes: Vec<usize> = ctrl.iter().map(|&c| c as usize % 65).collect();
        if sizes.iter().all(|&s| s == 0) {
            sizes = vec![1];
        }
        (sizes, stream)
    };
    let mut chunks = Vec::new();
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        if pos >= stream.len() {
            break;
        }
        let end = (pos + size).min(stream.len());
        chunks.push(&stream[pos..end]);
        pos = end;
    }
    Some((stream, chunks))
}

/// Range of a signed 24-bit value.
pub const I24_MIN: i32 = -(1 << 23);
/// Range of a signed 24-bit value.
pub const I24_MAX: i32 = (1 << 23) - 1;
