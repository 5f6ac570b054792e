//! Property tests of the WFDB header parser: arbitrary text never panics, and every header
//! built from valid fields parses back to those fields.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::wfdb::parse_header;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse_header(&text, "fuzz.hea");
    }

    #[test]
    fn header_shaped_noise_never_panics(
        lines in prop::collection::vec("[a-z0-9./+x:()# -]{0,60}", 0..15)
    ) {
        let _ = parse_header(&lines.join("\n"), "fuzz.hea");
    }

    #[test]
    fn valid_headers_round_trip(
        name in "[A-Za-z0-9_]{1,12}",
        rate in 1u32..5000,
        n_samples in 0usize..10_000_000,
        signals in prop::collection::vec(
            (
                prop::sample::select(vec![16u16, 61, 80, 160, 212, 24, 32]),
                0u64..1000,
                1u32..100_000,
                -5000i64..5000,
                prop::sample::select(vec!["mV", "uV", "mv"]),
                -32768i64..32767,
                prop::sample::select(vec!["I", "II", "aVR", "v6", "MLII lead"]),
            ),
            1..16,
        ),
    ) {
        let mut text = format!("{name} {} {rate} {n_samples}\n", signals.len());
        for (fmt, off, gain, base, units, sum, desc) in &signals {
            text.push_str(&format!("{name}.dat {fmt}+{off} {gain}({base})/{units} 16 0 0 {sum} 0 {desc}\n"));
        }
        text.push_str("# Dx: 426783006\n");
        let h = parse_header(&text, "p.hea").unwrap();
        prop_assert_eq!(&h.record_name, &name);
        prop_assert_eq!(h.sample_rate_hz, rate as f64);
        prop_assert_eq!(h.n_samples, Some(n_samples));
        prop_assert_eq!(h.signals.len(), signals.len());
        for (s, (fmt, off, gain, base, units, sum, desc)) in h.signals.iter().zip(&signals) {
            prop_assert_eq!(s.format, *fmt);
            prop_assert_eq!(s.byte_offset, *off);
            prop_assert_eq!(s.adc_gain, *gain as f64);
            prop_assert_eq!(s.baseline, *base);
            prop_assert_eq!(&s.units, units);
            prop_assert_eq!(s.checksum, Some(*sum));
            prop_assert_eq!(&s.description, desc);
        }
        prop_assert_eq!(h.comments, vec!["Dx: 426783006".to_string()]);
    }
}
