//! Fuzzes the daemon's upload parser (`POST /v1/classify`'s body): `eknet_shared::ecgzip::from_body`
//! then the shared pipeline to 500 Hz. Any bytes, plain or as gzip, must give a record or a typed
//! error: no panic, no abort, no allocation sized from a stated rate or length before it is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// What the daemon allows a body to inflate to (its `MAX_DECOMPRESSED` is 64 MiB; less here so a
/// run is not dominated by inflating bombs).
const MAX_DECOMPRESSED: u64 = 4 << 20;

fuzz_target!(|data: &[u8]| {
    // First byte: 0 = plain, 1 = gzip as sent, 2 = wrap the rest in gzip first.
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let wrapped;
    let (bytes, gzip) = match mode % 3 {
        0 => (body, false),
        1 => (body, true),
        _ => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if e.write_all(body).is_err() {
                return;
            }
            let Ok(z) = e.finish() else { return };
            wrapped = z;
            (wrapped.as_slice(), true)
        }
    };
    if let Ok(record) = eknet_shared::ecgzip::from_body(bytes, gzip, MAX_DECOMPRESSED) {
        let rate = record.sample_rate_hz();
        assert!((eknet_shared::record::MIN_RATE_HZ..=eknet_shared::record::MAX_RATE_HZ).contains(&rate));
        assert!(record.len_samples() <= eknet_shared::record::MAX_SAMPLES_PER_LEAD);
        if let Ok(r) = eknet_shared::preprocess::to_model_rate(&record) {
            assert_eq!(r.sample_rate_hz(), 500.0);
            for (_, lead) in r.leads() {
                assert_eq!(lead.len(), r.len_samples());
            }
        }
    }
});
