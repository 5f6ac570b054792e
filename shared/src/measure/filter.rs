//! Zero-phase filters for delineation: second-order Butterworth sections (bilinear transform,
//! RBJ cookbook form) run forwards and backwards (`filtfilt`) over an odd-reflected padding, so
//! wave boundaries are not shifted in time.

/// A second-order IIR section, normalised so `a0 = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    /// Butterworth low-pass at `cutoff_hz` for sampling rate `rate_hz`.
    pub fn low_pass(cutoff_hz: f64, rate_hz: f64) -> Biquad {
        let (cos_w, alpha) = Self::prewarp(cutoff_hz, rate_hz);
        let b1 = 1.0 - cos_w;
        Self::normalised(
            [b1 / 2.0, b1, b1 / 2.0],
            1.0 + alpha,
            -2.0 * cos_w,
            1.0 - alpha,
        )
    }

    /// Butterworth high-pass at `cutoff_hz` for sampling rate `rate_hz`.
    pub fn high_pass(cutoff_hz: f64, rate_hz: f64) -> Biquad {
        let (cos_w, alpha) = Self::prewarp(cutoff_hz, rate_hz);
        let b1 = 1.0 + cos_w;
        Self::normalised(
            [b1 / 2.0, -b1, b1 / 2.0],
            1.0 + alpha,
            -2.0 * cos_w,
            1.0 - alpha,
        )
    }

    fn prewarp(cutoff_hz: f64, rate_hz: f64) -> (f64, f64) {
        let w = 2.0 * std::f64::consts::PI * cutoff_hz / rate_hz;
        (w.cos(), w.sin() / std::f64::consts::SQRT_2) // Q = 1/sqrt(2): Butterworth
    }

    fn normalised(b: [f64; 3], a0: f64, a1: f64, a2: f64) -> Biquad {
        Biquad {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [a1 / a0, a2 / a0],
        }
    }

    /// One causal pass (direct form II transposed), state started at the first value's steady
    /// state so a constant input gives no start-up transient.
    fn run(&self, x: &mut [f64]) {
        let Some(&first) = x.first() else { return };
        let [b0, b1, b2] = self.b;
        let [a1, a2] = self.a;
        // Steady state for a constant input `first`: y = gain * first.
        let gain = (b0 + b1 + b2) / (1.0 + a1 + a2);
        let y0 = gain * first;
        let mut z2 = b2 * first - a2 * y0;
        let mut z1 = b1 * first - a1 * y0 + z2;
        for v in x.iter_mut() {
            let input = *v;
            let y = b0 * input + z1;
            z1 = b1 * input - a1 * y + z2;
            z2 = b2 * input - a2 * y;
            *v = y;
        }
    }
}

/// Runs `sections` forwards then backwards over `x` (zero phase; magnitude squared), with
/// `pad` samples of odd reflection at each end.
pub fn filtfilt(x: &[f32], sections: &[Biquad], pad: usize) -> Vec<f32> {
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let pad = pad.min(n - 1);
    let first = x[0] as f64;
    let last = x[n - 1] as f64;
    let mut buf: Vec<f64> = Vec::with_capacity(n + 2 * pad);
    buf.extend((1..=pad).rev().map(|k| 2.0 * first - x[k] as f64));
    buf.extend(x.iter().map(|&v| v as f64));
    buf.extend((1..=pad).map(|k| 2.0 * last - x[n - 1 - k] as f64));
    for s in sections {
        s.run(&mut buf);
    }
    buf.reverse();
    for s in sections {
        s.run(&mut buf);
    }
    buf.reverse();
    buf[pad..pad + n].iter().map(|&v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / 500.0).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn low_pass_keeps_low_and_removes_high_frequencies_without_delay() {
        let lp = [Biquad::low_pass(40.0, 500.0)];
        let low = sine(5.0, 5000);
        let y = filtfilt(&low, &lp, 500);
        // Zero phase: the 5 Hz sine comes through in place, within 1 %.
        let err = y[500..4500]
            .iter()
            .zip(&low[500..4500])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "5 Hz distorted by {err}");
        let high = sine(150.0, 5000);
        let y = filtfilt(&high, &lp, 500);
        assert!(rms(&y[500..4500]) < 0.01, "150 Hz left {}", rms(&y));
    }

    #[test]
    fn high_pass_removes_offset_and_drift() {
        let hp = [Biquad::high_pass(0.5, 500.0)];
        let x: Vec<f32> = (0..5000).map(|i| 3.0 + 0.0002 * i as f32).collect();
        let y = filtfilt(&x, &hp, 1000);
        assert!(rms(&y[1000..4000]) < 0.02, "drift left {}", rms(&y));
        let ten = sine(10.0, 5000);
        let y = filtfilt(&ten, &hp, 1000);
        assert!((rms(&y[500..4500]) - rms(&ten[500..4500])).abs() < 0.01);
        assert!(filtfilt(&[], &hp, 10).is_empty());
        assert_eq!(filtfilt(&[2.0], &hp, 10).len(), 1);
    }
}
