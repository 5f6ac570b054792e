//! WFDB annotation files (MIT format): decoding the 16-bit annotation words into timed symbols,
//! and grouping LUDB's per-lead wave annotations (`(` onset, peak symbol, `)` offset) into waves.
//!
//! Format (WFDB Programmer's Guide, `annot(5)`): a stream of 16-bit little-endian words, each with
//! a 6-bit code `A` (bits 15-10) and a 10-bit field `I` (bits 9-0). An ordinary annotation adds
//! `I` samples to the running time. Pseudo-annotations: `SKIP` (59) is followed by a 32-bit
//! interval (high 16-bit word first, each word little-endian) added to the time; `NUM` (60),
//! `SUB` (61) and `CHN` (62) carry their value in `I`; `AUX` (63) is followed by `I` bytes of
//! text, padded to an even count. The word `0` ends the file.

use std::path::{Path, PathBuf};

/// WFDB code of a normal beat, LUDB's QRS peak (`N`).
pub const NORMAL: u8 = 1;
/// WFDB code of a P-wave peak (`p`).
pub const PWAVE: u8 = 24;
/// WFDB code of a T-wave peak (`t`).
pub const TWAVE: u8 = 27;
/// WFDB code of a waveform onset (`(`).
pub const WFON: u8 = 39;
/// WFDB code of a waveform offset (`)`).
pub const WFOFF: u8 = 40;
const SKIP: u8 = 59;
const NUM: u8 = 60;
const SUB: u8 = 61;
const CHN: u8 = 62;
const AUX: u8 = 63;

/// Why an annotation file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The byte stream ends inside an annotation.
    #[error("{file}: annotation stream truncated at byte {offset} ({what})")]
    Truncated {
        /// The file (or a caller-given name).
        file: String,
        /// Byte offset where more bytes were needed.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A `SKIP` moves the time before sample 0.
    #[error("{file}: annotation time becomes negative ({time}) at byte {offset}")]
    NegativeTime {
        /// The file (or a caller-given name).
        file: String,
        /// Byte offset of the offending word.
        offset: usize,
        /// The running time it gave.
        time: i64,
    },
}

/// One annotation: a sample index and a WFDB code, with the subtype, channel, number and aux
/// text in force when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Sample index (0-based) from the start of the record.
    pub sample: usize,
    /// WFDB annotation code (1..=49); see the constants of this module.
    pub code: u8,
    /// `SUB` value in force.
    pub subtype: i16,
    /// `CHN` value in force.
    pub channel: i16,
    /// `NUM` value in force.
    pub num: i16,
    /// `AUX` text attached to this annotation, if any.
    pub aux: Option<String>,
}

impl Annotation {
    /// The conventional one-character symbol of the code (`N`, `p`, `t`, `(`, `)`, ...), `?` for
    /// codes this reader does not name.
    pub fn symbol(&self) -> char {
        match self.code {
            NORMAL => 'N',
            PWAVE => 'p',
            TWAVE => 't',
            WFON => '(',
            WFOFF => ')',
            _ => '?',
        }
    }
}

/// Decodes an annotation byte stream; `file` names it in errors.
pub fn decode_annotations(bytes: &[u8], file: &str) -> Result<Vec<Annotation>, AnnotationError> {
    let truncated = |offset: usize, what: &'static str| AnnotationError::Truncated {
        file: file.to_string(),
        offset,
        what,
    };
    let word_at = |at: usize, what: &'static str| -> Result<u16, AnnotationError> {
        match bytes.get(at..at + 2) {
            Some(&[lo, hi]) => Ok(u16::from_le_bytes([lo, hi])),
            _ => Err(truncated(at, what)),
        }
    };
    let mut out: Vec<Annotation> = Vec::new();
    let (mut time, mut sub, mut chan, mut num) = (0i64, 0i16, 0i16, 0i16);
    let mut at = 0usize;
    while at < bytes.len() {
        if at + 1 == bytes.len() {
            // A lone trailing byte is padding some writers leave; nothing can start there.
            break;
        }
        let word_offset = at;
        let word = word_at(at, "annotation word")?;
        at += 2;
        let code = (word >> 10) as u8;
        let field = word & 0x3ff;
        match code {
            0 if field == 0 => break,
            SKIP => {
                let high = word_at(at, "SKIP interval")?;
                let low = word_at(at + 2, "SKIP interval")?;
                at += 4;
                let interval = (((high as u32) << 16) | low as u32) as i32;
                time += interval as i64;
                if time < 0 {
                    return Err(AnnotationError::NegativeTime {
                        file: file.to_string(),
                        offset: word_offset,
                        time,
                    });
                }
            }
            NUM => num = sign_extend_10(field),
            SUB => sub = sign_extend_10(field),
            CHN => chan = sign_extend_10(field),
            AUX => {
                let len = field as usize;
                let text = bytes
                    .get(at..at + len)
                    .ok_or_else(|| truncated(at, "AUX text"))?;
                at += len + (len & 1);
                let text = String::from_utf8_lossy(text)
                    .trim_end_matches('\0')
                    .to_string();
                if let Some(last) = out.last_mut() {
                    last.aux = Some(text);
                }
            }
            _ => {
                time += field as i64;
                out.push(Annotation {
                    sample: time as usize,
                    code,
                    subtype: sub,
                    channel: chan,
                    num,
                    aux: None,
                });
            }
        }
    }
    Ok(out)
}

fn sign_extend_10(field: u16) -> i16 {
    ((field << 6) as i16) >> 6
}

/// Reads an annotation file (`record` path plus `.annotator` extension, e.g. `data/1.ii`).
pub fn read_annotations(path: &Path) -> Result<Vec<Annotation>, AnnotationError> {
    let bytes = std::fs::read(path).map_err(|source| AnnotationError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_annotations(&bytes, &path.display().to_string())
}

/// The kind of a LUDB wave, named by the peak symbol between its onset and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaveKind {
    /// P wave (`p`).
    P,
    /// QRS complex (`N`).
    Qrs,
    /// T wave (`t`).
    T,
}

/// One annotated wave in one lead: peak, and onset/offset where annotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    /// Which wave.
    pub kind: WaveKind,
    /// Onset sample (`(` before the peak), if annotated.
    pub onset: Option<usize>,
    /// Peak sample.
    pub peak: usize,
    /// Offset sample (`)` after the peak), if annotated.
    pub offset: Option<usize>,
}

/// Groups a lead's annotations into waves: each peak symbol (`p`, `N`, `t`) takes the `(`
/// immediately before it and the `)` immediately after it; other codes are ignored.
pub fn waves(annotations: &[Annotation]) -> Vec<Wave> {
    let mut out = Vec::new();
    for (k, a) in annotations.iter().enumerate() {
        let kind = match a.code {
            PWAVE => WaveKind::P,
            NORMAL => WaveKind::Qrs,
            TWAVE => WaveKind::T,
            _ => continue,
        };
        let onset = k
            .checked_sub(1)
            .and_then(|j| annotations.get(j))
            .filter(|b| b.code == WFON)
            .map(|b| b.sample);
        let offset = annotations
            .get(k + 1)
            .filter(|b| b.code == WFOFF)
            .map(|b| b.sample);
        out.push(Wave {
            kind,
            onset,
            peak: a.sample,
            offset,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(code: u8, field: u16) -> [u8; 2] {
        (((code as u16) << 10) | (field & 0x3ff)).to_le_bytes()
    }

    #[test]
    fn decodes_times_skip_and_pseudo_annotations() {
        let mut b = Vec::new();
        b.extend(word(WFON, 100));
        b.extend(word(NORMAL, 10));
        b.extend(word(CHN, 3)); // pseudo: no time
        b.extend(word(WFOFF, 20));
        b.extend(word(AUX, 3));
        b.extend(b"abc\0"); // odd length padded
        b.extend(word(SKIP, 0));
        b.extend(0u16.to_le_bytes()); // high word
        b.extend(2000u16.to_le_bytes()); // low word
        b.extend(word(PWAVE, 5));
        b.extend(word(0, 0));
        b.extend(word(TWAVE, 1)); // after the end marker: ignored
        let a = decode_annotations(&b, "t").unwrap();
        let got: Vec<(usize, char)> = a.iter().map(|x| (x.sample, x.symbol())).collect();
        assert_eq!(got, vec![(100, '('), (110, 'N'), (130, ')'), (2135, 'p')]);
        assert_eq!(a[2].aux.as_deref(), Some("abc"));
        assert_eq!(a[2].channel, 3);
        assert_eq!(a[0].channel, 0);
    }

    #[test]
    fn truncated_streams_are_typed_errors() {
        let mut b = Vec::new();
        b.extend(word(SKIP, 0));
        b.extend(0u16.to_le_bytes());
        assert!(matches!(
            decode_annotations(&b, "t"),
            Err(AnnotationError::Truncated { offset: 4, .. })
        ));
        let mut b = Vec::new();
        b.extend(word(AUX, 10));
        b.extend(b"ab");
        assert!(matches!(
            decode_annotations(&b, "t"),
            Err(AnnotationError::Truncated { offset: 2, .. })
        ));
        let mut b = Vec::new();
        b.extend(word(SKIP, 0));
        b.extend(0xffffu16.to_le_bytes());
        b.extend(0xfff0u16.to_le_bytes()); // -16
        assert!(matches!(
            decode_annotations(&b, "t"),
            Err(AnnotationError::NegativeTime { time: -16, .. })
        ));
    }

    #[test]
    fn waves_take_neighbouring_onset_and_offset() {
        let mk = |sample, code| Annotation {
            sample,
            code,
            subtype: 0,
            channel: 0,
            num: 0,
            aux: None,
        };
        let a = vec![
            mk(5, PWAVE), // no onset before it
            mk(6, WFOFF),
            mk(10, WFON),
            mk(20, NORMAL),
            mk(30, WFOFF),
            mk(40, WFON),
            mk(60, TWAVE), // no offset after it
        ];
        let w = waves(&a);
        assert_eq!(
            w,
            vec![
                Wave {
                    kind: WaveKind::P,
                    onset: None,
                    peak: 5,
                    offset: Some(6)
                },
                Wave {
                    kind: WaveKind::Qrs,
                    onset: Some(10),
                    peak: 20,
                    offset: Some(30)
                },
                Wave {
                    kind: WaveKind::T,
                    onset: Some(40),
                    peak: 60,
                    offset: None
                },
            ]
        );
    }
}
