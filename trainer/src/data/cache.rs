//! The decoded-tensor cache: each split's 3x4 windows decoded once from `.ecgzip` into a flat
//! little-endian f32 file (`[n][15][1250]`), memory-mapped by the training loop, plus a JSON index
//! (record of each window, labels of each record, and a fingerprint of the inputs so a changed
//! split file rebuilds the cache).

use super::split::{SplitRow, read_split};
use anyhow::{Context, Result, bail};
use eknet_shared::ecgzip;
use eknet_shared::layout::{LAYOUT_VERSION, SLOT_COUNT, SLOT_SAMPLES};
use eknet_shared::preprocess::{WindowOptions, record_windows};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Values in one window.
pub const WINDOW_VALUES: usize = SLOT_COUNT * SLOT_SAMPLES;
const CACHE_FORMAT: u32 = 1;

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
    /// For each window: its record and first sample (at 500 Hz).
    pub windows: Vec<(u32, u32)>,
    /// Records that gave no window, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// A split's cached windows, memory-mapped.
#[derive(Debug)]
pub struct WindowCache {
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

fn paths(cache_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        cache_dir.join(format!("{name}.windows.f32")),
        cache_dir.join(format!("{name}.index.json")),
    )
}

impl WindowCache {
    /// Opens the cache of split file `split_csv` (records under `data_dir`), building it first if
    /// it is missing or stale. `name` names the cache files in `cache_dir`.
    pub fn open_or_build(
        split_csv: &Path,
        data_dir: &Path,
        classes: &[String],
        cache_dir: &Path,
        name: &str,
    ) -> Result<WindowCache> {
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
        if let Ok(text) = std::fs::read_to_string(&index_path)
            && let Ok(index) = serde_json::from_str::<CacheIndex>(&text)
            && index.fingerprint == fingerprint
            && index.format == CACHE_FORMAT
            && let Ok(cache) = WindowCache::map(index, &data_path)
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
        WindowCache::map(index, &data_path)
    }

    fn map(index: CacheIndex, data_path: &Path) -> Result<WindowCache> {
        let file = std::fs::File::open(data_path)
            .with_context(|| format!("opening {}", data_path.display()))?;
        // SAFETY: the file is this cache's own output, written completely before its index was
        // renamed into place, and never modified afterwards (a rebuild writes a new file and
        // renames it over this one, which leaves this mapping's inode intact).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("mapping {}", data_path.display()))?;
        let expect = index.windows.len() * WINDOW_VALUES * 4;
        if map.len() != expect {
            bail!(
                "{}: {} bytes, index expects {expect}",
                data_path.display(),
                map.len()
            );
        }
        Ok(WindowCache { index, map })
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.index.windows.len()
    }

    /// Whether there is no window.
    pub fn is_empty(&self) -> bool {
        self.index.windows.is_empty()
    }

    /// Number of records with at least one window.
    pub fn record_count(&self) -> usize {
        self.index.records.len()
    }

    /// Appends window `i`'s 15 x 1250 values to `out`.
    pub fn copy_window(&self, i: usize, out: &mut Vec<f32>) {
        let bytes = &self.map[i * WINDOW_VALUES * 4..(i + 1) * WINDOW_VALUES * 4];
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }

    /// Window indices of each record, in order.
    pub fn windows_by_record(&self) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.index.records.len()];
        for (i, &(r, _)) in self.index.windows.iter().enumerate() {
            by[r as usize].push(i);
        }
        by
    }

    /// Labels (0/1 as f32) of window `i`'s record.
    pub fn labels_of_window(&self, i: usize) -> Vec<f32> {
        let r = self.index.windows[i].0 as usize;
        self.index.labels[r].iter().map(|&v| v as f32).collect()
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
    let tmp = data_path.with_extension("f32.part");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let mut index = CacheIndex {
        format: CACHE_FORMAT,
        fingerprint,
        classes: classes.to_vec(),
        records: Vec::new(),
        labels: Vec::new(),
        windows: Vec::new(),
        skipped: Vec::new(),
    };
    for row in rows {
        let path = data_dir.join(format!("{}.ecgzip", row.path));
        let windows = ecgzip::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|r| record_windows(&r, WindowOptions::default()).map_err(|e| e.to_string()));
        let windows = match windows {
            Ok(w) if !w.is_empty() => w,
            Ok(_) => {
                index.skipped.push((row.path.clone(), "no window".into()));
                continue;
            }
            Err(e) => {
                index.skipped.push((row.path.clone(), e));
                continue;
            }
        };
        let record = index.records.len() as u32;
        for win in &windows {
            for v in &win.data {
                w.write_all(&v.to_le_bytes())?;
            }
            index.windows.push((record, win.start_sample as u32));
        }
        index.records.push(row.path.clone());
        index.labels.push(
            classes
                .iter()
                .map(|c| row.labels.contains(c) as u8)
                .collect(),
        );
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, data_path)?;
    let index_tmp = index_path.with_extension("json.part");
    std::fs::write(&index_tmp, serde_json::to_vec(&index)?)?;
    std::fs::rename(&index_tmp, index_path)?;
    Ok(index)
}
