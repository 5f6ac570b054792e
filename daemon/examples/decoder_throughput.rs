//! Decoder throughput bench: MB/s of the eknet frame v1 and Cyton decoders on a synthetic
//! stream (with 1 % garbage bytes) fed in 64-byte and 4096-byte chunks; medians of 15 runs.
//! Run with `cargo run --release -p eknet-daemon --example decoder_throughput`.

use eknet_daemon::protocol::{cyton, eknet};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    // 60 s of 500 Hz x 8 channels in frames of 10 samples, one garbage byte every ~100 bytes.
    let mut ek = Vec::new();
    for f in 0..3000u32 {
        let values: Vec<i32> = (0..80)
            .map(|k| ((f as i32 * 7919 + k * 104_729) % 800_000) - 400_000)
            .collect();
        ek.extend(eknet::encode_samples(f * 10, 0, 8, &values));
        if f % 3 == 0 {
            ek.push(0x5A);
        }
    }
    let mut cy = Vec::new();
    for i in 0..15_000u32 {
        let ch: [i32; 8] =
            std::array::from_fn(|c| ((i as i32 * 31 + c as i32 * 7) % 1_000_000) - 500_000);
        cy.extend(cyton::encode(i as u8, &ch, 0xC0));
        if i % 3 == 0 {
            cy.push(0x00);
        }
    }
    println!(
        "{:<10} {:>7} {:>12} {:>10}",
        "decoder", "chunk", "MB/s", "frames"
    );
    for chunk in [64usize, 4096] {
        let (mbps, frames) = measure(&ek, |bytes| {
            let (mut d, mut out) = (eknet::Decoder::new(), Vec::new());
            for c in bytes.chunks(chunk) {
                d.feed(c, &mut out);
                out.clear();
            }
            d.counters.frames
        });
        println!("{:<10} {:>7} {:>12.1} {:>10}", "eknet", chunk, mbps, frames);
        let (mbps, frames) = measure(&cy, |bytes| {
            let (mut d, mut out) = (cyton::Decoder::new(), Vec::new());
            for c in bytes.chunks(chunk) {
                d.feed(c, &mut out);
                out.clear();
            }
            d.counters.packets
        });
        println!("{:<10} {:>7} {:>12.1} {:>10}", "cyton", chunk, mbps, frames);
    }
}

/// Median MB/s of 15 runs of `decode` over `bytes`, and the frame count it reports.
fn measure(bytes: &[u8], mut decode: impl FnMut(&[u8]) -> u64) -> (f64, u64) {
    let mut frames = 0;
    let runs: Vec<f64> = (0..15).map(|_| time(|| frames = decode(bytes))).collect();
    (bytes.len() as f64 / median(runs) / 1e6, frames)
}
