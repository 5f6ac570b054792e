//! Reading a record from a path of either kind this project accepts: a WFDB record (path
//! without extension, or its `.hea`) or a seed `.ecgzip` file.

use crate::ecgzip::{self, EcgzipError};
use crate::record::Record;
use crate::wfdb::{self, WfdbError};
use std::path::Path;

/// A record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// As WFDB.
    #[error(transparent)]
    Wfdb(#[from] WfdbError),
    /// As `.ecgzip`.
    #[error(transparent)]
    Ecgzip(#[from] EcgzipError),
}

/// Whether `path` names an `.ecgzip` file.
pub fn is_ecgzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ecgzip"))
}

/// Reads `path` as `.ecgzip` if it has that extension, else as a WFDB record.
pub fn read_any(path: &Path) -> Result<Record, ReadError> {
    if is_ecgzip(path) {
        Ok(ecgzip::read(path)?)
    } else {
        Ok(wfdb::read_record(path)?)
    }
}
