//! Result history: an append-only JSON-lines file, each result written and `fsync`ed before it is
//! reported anywhere, so a kill -9 loses nothing that was reported. On open, a torn last line (a
//! crash mid-write) is cut off and counted, and a damaged line elsewhere is skipped and reported
//! (a restart never refuses to start because of one). A failed or partial append is cut back to
//! the last whole line at once, so the next result never lands behind half a line. A new file's
//! folder is synced, so the file itself survives a power cut. Older results are dropped past the retention bound by
//! rewriting the kept tail to a new file and renaming it into place. An index of (id, offset) lets
//! queries read any retained result without holding them all in memory.

use crate::result::WindowResult;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the history failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File trouble.
    #[error("history {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A stored line is not a result (not a torn tail: a damaged file).
    #[error("history {path}, line {line}: not a result ({detail})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        detail: String,
    },
}

/// What the API shows of the history without touching the file or waiting for a write: the
/// engine publishes one after every append (`tokio::sync::watch`), so `/v1/status` and
/// `/v1/results/latest` answer at once even while a slow disk holds the store.
#[derive(Debug, Clone, Default)]
pub struct HistoryView {
    /// Results retained.
    pub stored: usize,
    /// Oldest retained id.
    pub oldest_id: Option<u64>,
    /// The newest result.
    pub latest: Option<Arc<WindowResult>>,
    /// Damaged lines skipped when the file was opened.
    pub skipped_lines: usize,
    /// Bytes of a torn last line cut off when the file was opened.
    pub recovered_torn_bytes: u64,
    /// Failed appends cut back to the last whole line.
    pub appends_cut_back: u64,
}

/// The history file.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// (id, byte offset, length without newline) of every retained result, ascending ids.
    index: Vec<(u64, u64, u32)>,
    end: u64,
    retention: usize,
    /// Bytes cut off a torn last line when the file was opened.
    pub recovered_torn_bytes: u64,
    /// Damaged lines found (and skipped) when the file was opened: 1-based line and why.
    pub skipped_lines: Vec<(usize, String)>,
    /// Appends that failed and were cut back to the last whole line since opening.
    pub appends_cut_back: u64,
    latest: Option<WindowResult>,
    /// Test hook: the next append writes this many bytes and then fails, as a full disk would.
    #[cfg(test)]
    fail_next_append_after: Option<usize>,
}

/// Syncs a file's folder, so a file created or renamed in it survives a power cut.
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

impl Store {
    /// Opens (creating) the history at `path`, keeping at most `retention` results.
    pub fn open(path: &Path, retention: usize) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        if created {
            sync_dir(path);
        }
        let mut index: Vec<(u64, u64, u32)> = Vec::new();
        let mut skipped = Vec::new();
        let mut latest_line = None;
        let mut offset = 0u64;
        let mut torn = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            reader.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut line = Vec::new();
            let mut n = 0usize;
            loop {
                line.clear();
                let got = reader.read_until(b'\n', &mut line).map_err(io)?;
                if got == 0 {
                    break;
                }
                n += 1;
                if line.last() != Some(&b'\n') {
                    // A crash mid-write: this result was never reported. Cut it off.
                    torn = got as u64;
                    break;
                }
                let body = &line[..line.len() - 1];
                match serde_json::from_slice::<WindowResult>(body) {
                    Ok(r) if index.last().is_some_and(|(last, _, _)| r.id <= *last) => {
                        skipped.push((n, format!("id {} does not follow the line before", r.id)));
                    }
                    Ok(r) => {
                        index.push((r.id, offset, body.len() as u32));
                        latest_line = Some(r);
                    }
                    // Damage in the middle (a disk error, an edit): the results around it
                    // are still good, so skip the line and say so rather than refuse to start.
                    Err(e) => skipped.push((n, e.to_string())),
                }
                offset += got as u64;
            }
        }
        if torn > 0 {
            file.set_len(offset).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mut store = Store {
            path: path.to_path_buf(),
            file,
            index,
            end: offset,
            retention: retention.max(1),
            recovered_torn_bytes: torn,
            skipped_lines: skipped,
            appends_cut_back: 0,
            latest: latest_line,
            #[cfg(test)]
            fail_next_append_after: None,
        };
        if store.index.len() > store.retention {
            store.compact()?;
        }
        Ok(store)
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The current view (see [`HistoryView`]); `with_latest` clones the newest result into it
    /// (the engine sets it from the result it just stored instead).
    pub fn view(&self, with_latest: bool) -> HistoryView {
        HistoryView {
            stored: self.len(),
            oldest_id: self.oldest_id(),
            latest: self.latest.clone().filter(|_| with_latest).map(Arc::new),
            skipped_lines: self.skipped_lines.len(),
            recovered_torn_bytes: self.recovered_torn_bytes,
            appends_cut_back: self.appends_cut_back,
        }
    }

    /// The id the next result gets.
    pub fn next_id(&self) -> u64 {
        self.index.last().map_or(1, |(id, _, _)| id + 1)
    }

    /// Results retained.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No result yet.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The newest result.
    pub fn latest(&self) -> Option<&WindowResult> {
        self.latest.as_ref()
    }

    /// Appends a result (its id set here) and syncs it to disk before returning it.
    pub fn append(&mut self, mut r: WindowResult) -> Result<WindowResult, StoreError> {
        r.id = self.next_id();
        let mut line = serde_json::to_vec(&r).map_err(|e| self.io(std::io::Error::other(e)))?;
        let len = line.len() as u32;
        line.push(b'\n');
        if let Err(e) = self.write_line(&line) {
            // Whatever part of the line reached the file is cut off again, so the next append
            // starts on a line boundary; the result was never reported.
            self.appends_cut_back += 1;
            let cut = self
                .file
                .set_len(self.end)
                .and_then(|()| self.file.sync_data());
            return Err(match cut {
                Ok(()) => self.io(e),
                Err(c) => self.io(std::io::Error::other(format!(
                    "{e}; cutting the partial line back also failed: {c}"
                ))),
            });
        }
        self.index.push((r.id, self.end, len));
        self.end += line.len() as u64;
        self.latest = Some(r.clone());
        // Compact in steps, not on every append past the bound.
        if self.index.len() > self.retention + self.retention / 4 {
            self.compact()?;
        }
        Ok(r)
    }

    /// Writes one whole line and syncs it.
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_next_append_after.take() {
            self.file.write_all(&line[..n.min(line.len())])?;
            return Err(std::io::Error::other("injected: no space left on device"));
        }
        self.file.write_all(line)?;
        self.file.sync_data()
    }

    /// Results with id > `since`, oldest first, at most `limit`.
    pub fn since(&mut self, since: u64, limit: usize) -> Result<Vec<WindowResult>, StoreError> {
        let start = self.index.partition_point(|(id, _, _)| *id <= since);
        let picks: Vec<(u64, u64, u32)> = self.index[start..].iter().take(limit).copied().collect();
        let mut out = Vec::with_capacity(picks.len());
        let mut f = File::open(&self.path).map_err(|e| self.io(e))?;
        for (_, off, len) in picks {
            f.seek(SeekFrom::Start(off)).map_err(|e| self.io(e))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).map_err(|e| self.io(e))?;
            out.push(
                serde_json::from_slice(&buf).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    line: 0,
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// Oldest retained id.
    pub fn oldest_id(&self) -> Option<u64> {
        self.index.first().map(|(id, _, _)| *id)
    }

    /// Keeps the newest `retention` results: writes them to a new file, syncs it, renames it over
    /// the old one and syncs the folder.
    fn compact(&mut self) -> Result<(), StoreError> {
        let keep_from = self.index.len().saturating_sub(self.retention);
        let Some(&(_, first_off, _)) = self.index.get(keep_from) else {
            return Ok(());
        };
        let tmp = self.path.with_extension("compact");
        {
            let mut src = File::open(&self.path).map_err(|e| self.io(e))?;
            src.seek(SeekFrom::Start(first_off))
                .map_err(|e| self.io(e))?;
            let mut dst = File::create(&tmp).map_err(|e| self.io(e))?;
            std::io::copy(&mut src.take(self.end - first_off), &mut dst).map_err(|e| self.io(e))?;
            dst.sync_all().map_err(|e| self.io(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        sync_dir(&self.path);
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.index.drain(..keep_from);
        for e in &mut self.index {
            e.1 -= first_off;
        }
        self.end -= first_off;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Outcome, Source, Span};

    fn result(tag: &str) -> WindowResult {
        WindowResult {
            id: 0,
            source: Source::Live,
            outcome: Outcome::Abstained,
            reasons: vec![tag.into()],
            window: Span {
                start_index: Some(1),
                end_index: Some(5001),
                device_start_index: None,
                start_time: "t0".into(),
                end_time: "t1".into(),
            },
            heart_rate_bpm: None,
            quality: vec![],
            classification: None,
            pipeline_ms: None,
            measurements: None,
        }
    }

    #[test]
    fn results_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        {
            let mut s = Store::open(&p, 100).unwrap();
            for i in 0..5 {
                let r = s.append(result(&format!("r{i}"))).unwrap();
                assert_eq!(r.id, i + 1);
            }
        }
        // A crash in the middle of writing a sixth result.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"id\":6,\"sour").unwrap();
        drop(f);
        let mut s = Store::open(&p, 100).unwrap();
        assert_eq!(s.recovered_torn_bytes, 13);
        assert_eq!(s.len(), 5);
        assert_eq!(s.latest().unwrap().reasons, vec!["r4".to_string()]);
        assert_eq!(s.next_id(), 6);
        let r = s.append(result("r5")).unwrap();
        assert_eq!(r.id, 6);
        let got = s.since(3, 10).unwrap();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(s.since(0, 2).unwrap().len(), 2);
    }

    #[test]
    fn retention_drops_the_oldest_and_keeps_ids_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        let mut s = Store::open(&p, 8).unwrap();
        for i in 0..30 {
            s.append(result(&format!("r{i}"))).unwrap();
        }
        assert!(s.len() <= 10 && s.len() >= 8, "{}", s.len());
        let all = s.since(0, 100).unwrap();
        assert_eq!(all.last().unwrap().id, 30);
        assert_eq!(all.last().unwrap().reasons, vec!["r29".to_string()]);
        assert!(all.windows(2).all(|w| w[1].id == w[0].id + 1));
        drop(s);
        let s = Store::open(&p, 8).unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s.oldest_id(), Some(23));
        assert_eq!(s.next_id(), 31);
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        {
            let mut s = Store::open(&p, 100).unwrap();
            s.append(result("a")).unwrap();
        }
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("garbage\n");
        std::fs::write(&p, text).unwrap();
        {
            let mut s = Store::open(&p, 100).unwrap();
            assert_eq!(s.skipped_lines.len(), 1);
            assert_eq!(s.skipped_lines[0].0, 2);
            assert_eq!(s.append(result("b")).unwrap().id, 2);
        }
        let mut s = Store::open(&p, 100).unwrap();
        assert_eq!(s.skipped_lines.len(), 1, "{:?}", s.skipped_lines);
        let all = s.since(0, 10).unwrap();
        assert_eq!(
            all.iter()
                .map(|r| (r.id, r.reasons[0].as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "a"), (2, "b")]
        );
    }

    #[test]
    fn a_partial_append_is_cut_back_and_the_next_one_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        let mut s = Store::open(&p, 100).unwrap();
        s.append(result("a")).unwrap();
        let len_before = std::fs::metadata(&p).unwrap().len();
        s.fail_next_append_after = Some(17);
        let e = s.append(result("lost")).unwrap_err();
        assert!(e.to_string().contains("no space left"), "{e}");
        assert_eq!(s.appends_cut_back, 1);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), len_before);
        assert_eq!(s.append(result("b")).unwrap().id, 2);
        drop(s);
        let mut s = Store::open(&p, 100).unwrap();
        assert!(s.skipped_lines.is_empty(), "{:?}", s.skipped_lines);
        assert_eq!(s.recovered_torn_bytes, 0);
        let all = s.since(0, 10).unwrap();
        assert_eq!(
            all.iter()
                .map(|r| r.reasons[0].as_str())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
    }
}
