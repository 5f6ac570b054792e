//! Property tests of the upload path (`POST /v1/classify`'s body parser): whatever the body, the
//! parser answers twelve 10 s leads or a 4xx with a reason; it never panics, aborts or hangs, and no
//! stated rate or length makes it size work before the bounds are checked.

use eknet_daemon::api::upload_leads;
use eknet_shared::Lead;
use proptest::prelude::*;
use std::io::Write;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

/// Checks one answer: Ok is exactly 12 leads of 5000 finite samples, an error is a 4xx with text.
fn check(body: &[u8], gz: bool) -> Result<(), TestCaseError> {
    match upload_leads(body, gz) {
        Ok(leads) => {
            prop_assert_eq!(leads.len(), 12);
            for l in &leads {
                prop_assert_eq!(l.len(), 5000);
            }
        }
        Err(e) => {
            prop_assert!(
                e.status().is_client_error(),
                "{}: {}",
                e.status(),
                e.message()
            );
            prop_assert!(!e.message().is_empty());
        }
    }
    Ok(())
}

/// Rates a hostile or broken client might state.
fn rate() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(1e12)),
        Just(serde_json::json!(1e308)),
        Just(serde_json::json!(-500.0)),
        Just(serde_json::json!(0.0)),
        Just(serde_json::json!(5e-324)),
        Just(serde_json::json!("500")),
        Just(serde_json::Value::Null),
        (1u32..100_000).prop_map(|r| serde_json::json!(r)),
        (0.001f64..1e6).prop_map(|r| serde_json::json!(r)),
    ]
}

/// One lead's values: plausible millivolts, huge numbers, or the wrong type.
fn values(len: usize) -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        4 => prop::collection::vec(-5.0f64..5.0, len..=len).prop_map(|v| serde_json::json!(v)),
        1 => prop::collection::vec(prop::num::f64::NORMAL, len..=len).prop_map(|v| serde_json::json!(v)),
        1 => Just(serde_json::json!("not numbers")),
        1 => Just(serde_json::json!({ "value": [1.0, 2.0] })),
    ]
}

/// An `.ecgzip`-shaped object: metadata (sometimes absent or extended), some of the twelve leads
/// (sometimes an unknown one), all of one stated length.
fn ecgzip_body() -> impl Strategy<Value = String> {
    (
        rate(),
        0usize..6000,
        prop::collection::vec(any::<bool>(), 12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(rate, len, present, with_meta, odd_key)| {
            let n = present.iter().filter(|p| **p).count();
            (
                Just((rate, present, with_meta, odd_key)),
                prop::collection::vec(values(len), n..=n),
            )
        })
        .prop_map(|((rate, present, with_meta, odd_key), leads)| {
            let mut m = serde_json::Map::new();
            if with_meta {
                let mut meta = serde_json::json!({ "sample_rate_hz": rate });
                if odd_key {
                    meta["unexpected"] = serde_json::json!(1);
                }
                m.insert("eknet_meta".into(), meta);
            } else if odd_key {
                m.insert("XYZ".into(), serde_json::json!([0.0]));
            }
            let mut leads = leads.into_iter();
            for (lead, on) in Lead::ALL.iter().zip(present) {
                if on && let Some(v) = leads.next() {
                    m.insert(lead.name().into(), v);
                }
            }
            serde_json::Value::Object(m).to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_get_ok_or_a_4xx(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        check(&bytes, false)?;
        check(&bytes, true)?;
        check(&gzip(&bytes), true)?;
    }

    #[test]
    fn ecgzip_shaped_bodies_get_ok_or_a_4xx(body in ecgzip_body(), gz in any::<bool>()) {
        if gz {
            check(&gzip(body.as_bytes()), true)?;
        } else {
            check(body.as_bytes(), false)?;
        }
    }

    #[test]
    fn a_truncated_body_gets_a_4xx(body in ecgzip_body(), cut in 0.0f64..1.0) {
        let b = body.as_bytes();
        let n = ((b.len() as f64) * cut) as usize;
        check(&b[..n], false)?;
        let z = gzip(b);
        check(&z[..((z.len() as f64) * cut) as usize], true)?;
    }
}

#[test]
fn the_rate_that_once_aborted_the_daemon_gets_a_422() {
    let mut m = serde_json::Map::new();
    m.insert(
        "eknet_meta".into(),
        serde_json::json!({ "sample_rate_hz": 1e12 }),
    );
    for l in Lead::ALL {
        m.insert(l.name().into(), serde_json::json!(vec![0.1; 10]));
    }
    let body = serde_json::Value::Object(m).to_string();
    let e = upload_leads(body.as_bytes(), false).expect_err("a 1e12 Hz record is refused");
    assert_eq!(e.status().as_u16(), 422);
    assert!(
        e.message()
            .contains("1000000000000 Hz is outside the accepted 50-20000 Hz"),
        "{}",
        e.message()
    );
    assert!(
        !e.message().contains('/'),
        "no paths to clients: {}",
        e.message()
    );
}
