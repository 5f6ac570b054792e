//! Fuzzes the WFDB header parser (`eknet_shared::wfdb::header::parse_header`) and the comment
//! reader: any text gives a header or a typed error naming the field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(h) = eknet_shared::wfdb::header::parse_header(text, "fuzz.hea") {
        let _ = eknet_shared::wfdb::parse_comments(&h.comments);
    }
});
