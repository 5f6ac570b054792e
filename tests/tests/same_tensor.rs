//! Across crates: a record gives the same model tensor whether read from its WFDB source or from
//! the `.ecgzip` the trainer's `convert` wrote, at 500 Hz and through the resampler.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::preprocess::{WindowOptions, record_windows};
use eknet_shared::{ecgzip, wfdb};
use eknet_tests::data_dir;
use eknet_trainer::cli::{Cli, run};

#[test]
fn wfdb_and_converted_ecgzip_give_identical_windows() {
    let tmp = tempfile::tempdir().unwrap();
    for rec in ["ludb/data/42", "cinc/records/JS00001", "cinc/records/S0002"] {
        let src = data_dir().join(rec);
        let out = tmp.path().join("r.ecgzip");
        let args = [
            "eknet-train",
            "convert",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
        ];
        run(<Cli as clap::Parser>::parse_from(args)).unwrap();
        let opts = WindowOptions {
            stride_samples: 2500,
            pad_short: false,
        };
        let a = record_windows(&wfdb::read_record(&src).unwrap(), opts).unwrap();
        let b = record_windows(&ecgzip::read(&out).unwrap(), opts).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{rec}: the model sees the same numbers either way");
    }
}
