//! Where the shared real ECG records live: `$EKNET_DATA_DIR`, else a `shared/data` folder beside
//! the checkout (found by walking up from a starting folder).

use std::path::{Path, PathBuf};

/// The environment variable that points at the data folder.
pub const DATA_DIR_ENV: &str = "EKNET_DATA_DIR";

/// The shared data folder: `$EKNET_DATA_DIR` if set, else the first `shared/data` holding a
/// `README.md` in `start` or one of its ancestors.
pub fn find_data_dir(start: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    start
        .ancestors()
        .map(|a| a.join("shared").join("data"))
        .find(|d| d.join("README.md").is_file())
}

/// Like [`find_data_dir`], with an error message that says where it looked.
pub fn require_data_dir(start: &Path) -> Result<PathBuf, String> {
    find_data_dir(start).ok_or_else(|| {
        format!(
            "the shared ECG data was not found: set {DATA_DIR_ENV}, or place it at ../shared/data \
             beside the checkout (searched upward from {})",
            start.display()
        )
    })
}
