//! The decoded-record cache: each split's records decoded once from `.ecgzip` and brought to the
//! model's form by the shared pipeline (`eknet_shared::preprocess::to_model_rate`: 500 Hz, twelve
//! leads), stored whole in one flat little-endian f32 file (record by record, lead by lead in
//! [`Lead::ALL`] order) and memory-mapped, plus a JSON index (record paths, lengths, labels, which
//! labels are unknown, and a fingerprint of the inputs so a changed split file rebuilds the
//! cache) and a checksum of the data file. Training cuts a 10 s window at any offset from it
//! (random crops of longer records); evaluation takes each record's first window, exactly as
//! `record_windows` would.
//!
//! Two processes may open the same cache at once (a training run and an `evaluate`): an advisory
//! lock on `NAME.lock` makes the second wait while the first builds, each build writes to its own
//! temporary files (named with the process id and time), and the index (renamed in last) carries
//! the data file's checksum, so a cache whose data does not match its index is rebuilt, never
//! used.

use super::split::{SplitRow, read_split};
use anyhow::{Context, Result, bail};
use eknet_shared::layout::{LAYOUT_VERSION, SLOT_COUNT, SLOT_SAMPLES, WINDOW_SAMPLES, Window3x4};
use eknet_shared::preprocess::to_model_rate;
use eknet_shared::{Lead, ecgzip};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Values in one model input window (`[15][1250]`).
pub const WINDOW_VALUES: usize = SLOT_COUNT * SLOT_SAMPLES;
/// Leads stored per record.
pub const LEADS: usize = 12;
const CACHE_FORMAT: u32 = 3;

/// The cache's index file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheIndex {
    /// Cache format version.
    pub format: u32,
    /// Fingerprint of the split file, class list and layout version.
    pub fingerprint: u64,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// Record paths (relative to the data folder).
    pub records: Vec<String>,
    /// Multi-hot labels per record, in class order.
    pub labels: Vec<Vec<u8>>,
    /// Per record and class: 1 where the record's source states the class (present or absent),
    /// 0 where it cannot (`label_unknown`).
    pub known: Vec<Vec<u8>>,
    /// Samples per lead (at 500 Hz) of each record.
    pub lengths: Vec<u32>,
    /// First value of each record in the data file.
    pub offsets: Vec<u64>,
    /// Records that gave no window, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Checksum of the data file ([`checksum`]).
    pub data_checksum: u64,
}

/// A split's cached records, memory-mapped.
#[derive(Debug)]
pub struct RecordCache {
    /// The index.
    pub index: CacheIndex,
    map: Mmap,
}

/// FNV-1a, 64 bits: a stable fingerprint without another dependency.
fn fnv1a(chunks: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in chunks {
        for &b in *c {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a over the data's 64-bit little-endian words (and its trailing bytes): checks a whole
/// cache file in a fraction of a second.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut c = Checksum::default();
    c.update(bytes);
    c.finish()
}

/// [`checksum`], fed piece by piece as the data file is written.
#[derive(Debug, Clone)]
pub struct Checksum {
    h: u64,
    carry: Vec<u8>,
}

impl Default for Checksum {
    fn default() -> Checksum {
        Checksum {
            h: 0xcbf2_9ce4_8422_2325,
            carry: Vec::with_capacity(8),
        }
    }
}

impl Checksum {
    fn word(&mut self, w: &[u8]) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        self.h ^= u64::from_le_bytes(a);
        self.h = self.h.wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// Adds bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        if !self.carry.is_empty() {
            let take = (8 - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < 8 {
                return;
            }
            let w = std::mem::take(&mut self.carry);
            self.word(&w);
            self.carry = w;
            self.carry.clear();
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(w);
        }
        self.carry.extend_from_slice(words.remainder());
    }

    /// The checksum of everything added.
    pub fn finish(mut self) -> u64 {
        for b in std::mem::take(&mut self.carry) {
            self.h ^= b as u64;
            self.h = self.h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.h
    }
}

/// A name no other process (or call) uses for its temporary file.
fn unique_tmp(path: &Path, ext: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    path.with_extension(format!("{ext}.{}.{nanos}.part", std::process::id()))
}

fn paths(cache_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        cache_dir.join(format!("{name}.records.f32")),
        cache_dir.join(format!("{name}.index.json")),
    )
}

impl RecordCache {
    /// Opens the cache of split file `split_csv` (records under `data_dir`), building it first if
    /// it is missing or stale. `name` names the cache files in `cache_dir`.
    pub fn open_or_build(
        split_csv: &Path,
        data_dir: &Path,
        classes: &[String],
        cache_dir: &Path,
        name: &str,
    ) -> Result<RecordCache> {
        let csv_bytes =
            std::fs::read(split_csv).with_context(|| format!("reading {}", split_csv.display()))?;
        let fingerprint = fnv1a(&[
            &csv_bytes,
            classes.join("\n").as_bytes(),
            &LAYOUT_VERSION.to_le_bytes(),
            &CACHE_FORMAT.to_le_bytes(),
            data_dir.to_string_lossy().as_bytes(),
        ]);
        let (data_path, index_path) = paths(cache_dir, name);
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        // Held until this function returns: a second process waits here while the first builds.
        let lock_path = cache_dir.join(format!("{name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        if let Ok(text) = std::fs::read_to_string(&index_path)
            && let Ok(index) = serde_json::from_str::<CacheIndex>(&text)
            && index.fingerprint == fingerprint
            && index.format == CACHE_FORMAT
            && let Ok(cache) = RecordCache::map(index, &data_path)
            && checksum(&cache.map) == cache.index.data_checksum
        {
            return Ok(cache);
        }
        let rows = read_split(split_csv)?;
        let index = build(
            &rows,
            data_dir,
            classes,
            fingerprint,
            &data_path,
            &index_path,
        )?;
        RecordCache::map(index, &data_path)
    }

    fn map(index: CacheIndex, data_path: &Path) -> Result<RecordCache> {
        let file = std::fs::File::open(data_path)
            .with_context(|| format!("opening {}", data_path.display()))?;
        // SAFETY: the file is this cache's own output, written completely before its index was
        // renamed into place, and never modified afterwards (a rebuild writes a new file and
        // renames it over this one, which leaves this mapping's inode intact).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("mapping {}", data_path.display()))?;
        let expect: u64 = index
            .lengths
            .iter()
            .map(|&n| n as u64 * LEADS as u64 * 4)
            .sum();
        if map.len() as u64 != expect {
            bail!(
                "{}: {} bytes, index expects {expect}",
                data_path.display(),
                map.len()
            );
        }
        Ok(RecordCache { index, map })
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.index.records.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.index.records.is_empty()
    }

    /// Samples per lead of record `r` at 500 Hz.
    pub fn len_samples(&self, r: usize) -> usize {
        self.index.lengths[r] as usize
    }

    /// Appends `count` samples of lead `lead` of record `r` from `start` to `out`.
    pub fn copy_lead(&self, r: usize, lead: Lead, start: usize, count: usize, out: &mut Vec<f32>) {
        let n = self.len_samples(r);
        let first = self.index.offsets[r] as usize + lead.row() * n + start;
        let bytes = &self.map[first * 4..(first + count) * 4];
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }

    /// The twelve leads of record `r` over `[start, start + 5000)`, in [`Lead::ALL`] order.
    pub fn leads_10s(&self, r: usize, start: usize) -> [Vec<f32>; LEADS] {
        std::array::from_fn(|i| {
            let mut v = Vec::with_capacity(WINDOW_SAMPLES);
            self.copy_lead(r, Lead::ALL[i], start, WINDOW_SAMPLES, &mut v);
            v
        })
    }

    /// Appends the model input (`[15][1250]`) of record `r`'s 10 s window from `start`.
    pub fn copy_window(&self, r: usize, start: usize, out: &mut Vec<f32>) {
        let leads = self.leads_10s(r, start);
        out.extend(layout_3x4(&leads));
    }

    /// Labels (0/1 as f32) of record `r`.
    pub fn labels(&self, r: usize) -> Vec<f32> {
        self.index.labels[r].iter().map(|&v| v as f32).collect()
    }

    /// 1 where record `r`'s label of each class is known, 0 where its source cannot state it.
    pub fn known(&self, r: usize) -> Vec<f32> {
        self.index.known[r].iter().map(|&v| v as f32).collect()
    }
}

/// The shared 3x4 layout of twelve 10 s leads (`Window3x4::from_leads`, the bedside's code).
pub fn layout_3x4(leads: &[Vec<f32>; LEADS]) -> Vec<f32> {
    let refs: [&[f32]; LEADS] = std::array::from_fn(|i| leads[i].as_slice());
    match Window3x4::from_leads(refs) {
        Ok(w) => w.data,
        // Only reachable with leads shorter than 10 s, which the cache never stores.
        Err(_) => vec![0.0; WINDOW_VALUES],
    }
}

fn build(
    rows: &[SplitRow],
    data_dir: &Path,
    classes: &[String],
    fingerprint: u64,
    data_path: &Path,
    index_path: &Path,
) -> Result<CacheIndex> {
    if let Some(parent) = data_path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = unique_tmp(data_path, "f32");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let mut index = CacheIndex {
        format: CACHE_FORMAT,
        fingerprint,
        classes: classes.to_vec(),
        records: Vec::new(),
        labels: Vec::new(),
        known: Vec::new(),
        lengths: Vec::new(),
        offsets: Vec::new(),
        skipped: Vec::new(),
        data_checksum: 0,
    };
    let mut offset = 0u64;
    let mut sum = Checksum::default();
    let mut bytes = Vec::new();
    for row in rows {
        let path = data_dir.join(format!("{}.ecgzip", row.path));
        let record = ecgzip::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|r| to_model_rate(&r).map_err(|e| e.to_string()));
        let record = match record {
            Ok(r) if r.len_samples() >= WINDOW_SAMPLES => r,
            Ok(r) => {
                index.skipped.push((
                    row.path.clone(),
                    format!("{:.2} s is shorter than the 10 s window", r.duration_s()),
                ));
                continue;
            }
            Err(e) => {
                index.skipped.push((row.path.clone(), e));
                continue;
            }
        };
        let n = record.len_samples();
        for lead in Lead::ALL {
            let v = record.lead(lead).unwrap_or(&[]);
            bytes.clear();
            bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            sum.update(&bytes);
            w.write_all(&bytes)?;
        }
        index.offsets.push(offset);
        offset += (n * LEADS) as u64;
        index.lengths.push(n as u32);
        index.records.push(row.path.clone());
        index.labels.push(
            classes
                .iter()
                .map(|c| row.labels.contains(c) as u8)
                .collect(),
        );
        index.known.push(
            classes
                .iter()
                .map(|c| !row.unknown.contains(c) as u8)
                .collect(),
        );
    }
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    index.data_checksum = sum.finish();
    std::fs::rename(&tmp, data_path)?;
    let index_tmp = unique_tmp(index_path, "json");
    std::fs::write(&index_tmp, serde_json::to_vec(&index)?)?;
    std::fs::File::open(&index_tmp)?.sync_all()?;
    std::fs::rename(&index_tmp, index_path)?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_fed_in_pieces_is_the_checksum_of_the_whole() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 37 % 251) as u8).collect();
        let whole = checksum(&data);
        for cuts in [
            vec![3usize, 5, 900],
            vec![1, 1, 1, 8, 16],
            vec![500],
            vec![],
        ] {
            let mut c = Checksum::default();
            let mut at = 0;
            for n in cuts {
                c.update(&data[at..at + n]);
                at += n;
            }
            c.update(&data[at..]);
            assert_eq!(c.finish(), whole);
        }
        let mut flipped = data.clone();
        flipped[600] ^= 1;
        assert_ne!(checksum(&flipped), whole);
    }
}
