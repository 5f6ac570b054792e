//! Fuzzes the model bundle reader: arbitrary bytes as a whole `.eknet` (zip) through
//! `Bundle::from_bytes`, and as a `manifest.json` through `parse_manifest` + `check_manifest`.
//! Never a panic; a bundle that opens has a manifest that passes its own check.
#![no_main]

use eknet_shared::bundle::{Bundle, check_manifest, parse_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bundle::from_bytes(data, "fuzz.eknet") {
        assert!(check_manifest(&b.manifest, "fuzz.eknet").is_ok());
    }
    if let Ok(m) = parse_manifest(data, "manifest.json") {
        let _ = check_manifest(&m, "manifest.json");
    }
});
