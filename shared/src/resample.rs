//! Anti-aliased rational resampling (any rate to 500 Hz and back): a polyphase windowed-sinc
//! filter, Kaiser window, cut-off below the lower Nyquist frequency so nothing aliases.
//!
//! Design: for rates `from` and `to` reduced to `to/from = L/M`, output sample `n` sits at input
//! time `n*M/L`. Its value is the input convolved with a low-pass sinc evaluated at that time,
//! `h(t) = 2fc sinc(2fc t) w(t)`, with cut-off `fc = ROLLOFF * min(from, to) / 2` and a Kaiser
//! window `w` of [`ZERO_CROSSINGS`] zero crossings a side. The `L` distinct fractional delays are
//! tabulated once (the polyphase bank); each phase is normalised to unit DC gain. Beyond the ends
//! the signal is held at its first and last value, so a record's edges do not ring.
//!
//! Measured response (see the tests): passband flat to within 0.1 % up to 0.8 x the lower
//! Nyquist frequency (200 Hz for 1000 to 500 Hz), stopband below -60 dB from the lower Nyquist
//! frequency on.

use std::f64::consts::PI;

/// Fraction of the lower Nyquist frequency at which the filter's response is half (-6 dB).
pub const ROLLOFF: f64 = 0.9;
/// Zero crossings of the sinc kept on each side (filter half-length, in cut-off periods).
pub const ZERO_CROSSINGS: f64 = 24.0;
/// Kaiser window shape, for about 80 dB of stopband attenuation.
pub const KAISER_BETA: f64 = 7.857;
/// The largest number of filter phases accepted (bounds memory for odd rate pairs).
pub const MAX_PHASES: u64 = 20_000;

/// The most filter coefficients a resampler may tabulate (phases x taps, 16 MiB of `f32`): the
/// bound on what a stated rate can make it allocate, whatever the caller checked before.
pub const MAX_BANK_COEFFICIENTS: usize = 4 << 20;

/// Why two rates cannot be resampled between.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResampleError {
    /// A rate is zero, negative or not finite.
    #[error("sampling rate {0} Hz is not a positive finite number")]
    BadRate(f64),
    /// The rates' ratio needs more filter phases than [`MAX_PHASES`].
    #[error(
        "cannot resample {from} Hz to {to} Hz: the ratio needs {phases} filter phases (max {MAX_PHASES})"
    )]
    Ratio {
        /// Input rate.
        from: f64,
        /// Output rate.
        to: f64,
        /// Phases needed.
        phases: u64,
    },
    /// The rates are so far apart that the anti-aliasing filter would be too long.
    #[error(
        "cannot resample {from} Hz to {to} Hz: the filter would need {coefficients} coefficients (max {MAX_BANK_COEFFICIENTS})"
    )]
    FilterTooLong {
        /// Input rate.
        from: f64,
        /// Output rate.
        to: f64,
        /// Coefficients needed (phases x taps).
        coefficients: u128,
    },
}

/// A resampler between two fixed rates; build once, apply to every lead.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: u64,
    down: u64,
    half_taps: usize,
    /// `up` phases, each `2 * half_taps` taps, for input offsets `-half_taps+1 ..= half_taps`.
    bank: Vec<f32>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Reduces `to/from` to `L/M`, with rates taken to a thousandth of a hertz.
fn ratio(from_hz: f64, to_hz: f64) -> Result<(u64, u64), ResampleError> {
    for r in [from_hz, to_hz] {
        if !(r.is_finite() && r > 0.0) {
            return Err(ResampleError::BadRate(r));
        }
    }
    let scale = |r: f64| (r * 1000.0).round().max(1.0) as u64;
    let (f, t) = (scale(from_hz), scale(to_hz));
    let g = gcd(f, t);
    let (up, down) = (t / g, f / g);
    if up > MAX_PHASES {
        return Err(ResampleError::Ratio {
            from: from_hz,
            to: to_hz,
            phases: up,
        });
    }
    Ok((up, down))
}

/// Zeroth-order modified Bessel function of the first kind, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum
}

impl Resampler {
    /// Builds the filter bank for `from_hz` to `to_hz`.
    pub fn new(from_hz: f64, to_hz: f64) -> Result<Resampler, ResampleError> {
        let (up, down) = ratio(from_hz, to_hz)?;
        // Cut-off in cycles per input sample.
        let fc = 0.5 * ROLLOFF * (up as f64 / down as f64).min(1.0);
        let half_width = ZERO_CROSSINGS / (2.0 * fc);
        // Sized in floating point and checked before anything is allocated: a stated rate of
        // 1e12 Hz would otherwise ask for 10^11 taps.
        let coefficients = (up as f64) * 2.0 * half_width.ceil();
        if !(coefficients.is_finite() && coefficients <= MAX_BANK_COEFFICIENTS as f64) {
            return Err(ResampleError::FilterTooLong {
                from: from_hz,
                to: to_hz,
                coefficients: coefficients.min(u128::MAX as f64) as u128,
            });
        }
        let half_taps = half_width.ceil() as usize;
        let taps = 2 * half_taps;
        let norm = bessel_i0(KAISER_BETA);
        let mut bank = Vec::with_capacity(up as usize * taps);
        for p in 0..up {
            let frac = p as f64 / up as f64;
            let start = bank.len();
            for j in 0..taps {
                // Input offset k = j - half_taps + 1; distance from the output instant.
                let t = frac - (j as f64 - half_taps as f64 + 1.0);
                let x = 2.0 * fc * t;
                let sinc = if x.abs() < 1e-12 {
                    1.0
                } else {
                    (PI * x).sin() / (PI * x)
                };
                let r = t / half_width;
                let w = if r.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm
                };
                bank.push(2.0 * fc * sinc * w);
            }
            let sum: f64 = bank[start..].iter().sum();
            bank[start..].iter_mut().for_each(|v| *v /= sum);
        }
        Ok(Resampler {
            up,
            down,
            half_taps,
            bank: bank.into_iter().map(|v| v as f32).collect(),
        })
    }

    /// Whether this resampler leaves the signal unchanged (equal rates).
    pub fn is_identity(&self) -> bool {
        self.up == self.down
    }

    /// Output length for `n` input samples: `ceil(n * to / from)`.
    pub fn output_len(&self, n: usize) -> usize {
        ((n as u64 * self.up).div_ceil(self.down)) as usize
    }

    /// Resamples one signal.
    pub fn process(&self, input: &[f32]) -> Vec<f32> {
        if self.is_identity() || input.is_empty() {
            return input.to_vec();
        }
        let taps = 2 * self.half_taps;
        let last = input.len() as i64 - 1;
        (0..self.output_len(input.len()))
            .map(|n| {
                let pos = n as u64 * self.down;
                let base = (pos / self.up) as i64;
                let phase = (pos % self.up) as usize;
                let h = &self.bank[phase * taps..(phase + 1) * taps];
                let first = base - self.half_taps as i64 + 1;
                let acc: f64 = if first >= 0 && first + taps as i64 - 1 <= last {
                    let x = &input[first as usize..first as usize + taps];
                    x.iter().zip(h).map(|(&a, &b)| a as f64 * b as f64).sum()
                } else {
                    h.iter()
                        .enumerate()
                        .map(|(j, &b)| {
                            input[(first + j as i64).clamp(0, last) as usize] as f64 * b as f64
                        })
                        .sum()
                };
                acc as f32
            })
            .collect()
    }
}

/// The same filter applied to a signal that arrives in pieces (a live stream): every output
/// sample equals what [`Resampler::process`] gives for it on the whole signal, emitted as soon as
/// the input it depends on has arrived (a delay of about half the filter length).
#[derive(Debug, Clone)]
pub struct StreamResampler {
    r: Resampler,
    /// Input not yet consumed, starting at absolute input index `offset`.
    buf: std::collections::VecDeque<f32>,
    offset: u64,
    /// The first input sample (the batch form replicates it before the signal starts).
    first: Option<f32>,
    /// Next output index.
    next_out: u64,
}

impl StreamResampler {
    /// A stream from `from_hz` to `to_hz`.
    pub fn new(from_hz: f64, to_hz: f64) -> Result<StreamResampler, ResampleError> {
        Ok(StreamResampler {
            r: Resampler::new(from_hz, to_hz)?,
            buf: std::collections::VecDeque::new(),
            offset: 0,
            first: None,
            next_out: 0,
        })
    }

    /// Starts a new signal (after a gap).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.offset = 0;
        self.first = None;
        self.next_out = 0;
    }

    /// Input samples an output waits for beyond its own instant.
    pub fn delay_input_samples(&self) -> usize {
        self.r.half_taps
    }

    /// Appends `input` and pushes every output sample now computable onto `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if input.is_empty() {
            return;
        }
        if self.r.is_identity() {
            out.extend_from_slice(input);
            return;
        }
        if self.first.is_none() {
            self.first = Some(input[0]);
        }
        self.buf.extend(input.iter().copied());
        let taps = 2 * self.r.half_taps;
        let half = self.r.half_taps as i64;
        loop {
            let pos = self.next_out * self.r.down;
            let base = (pos / self.r.up) as i64;
            let phase = (pos % self.r.up) as usize;
            let first = base - half + 1;
            let last = first + taps as i64 - 1;
            if last >= self.offset as i64 + self.buf.len() as i64 {
                break;
            }
            let h = &self.r.bank[phase * taps..(phase + 1) * taps];
            let acc: f64 = h
                .iter()
                .enumerate()
                .map(|(j, &b)| {
                    let idx = first + j as i64;
                    let v = if idx < 0 {
                        self.first.unwrap_or(0.0)
                    } else {
                        self.buf[(idx - self.offset as i64) as usize]
                    };
                    v as f64 * b as f64
                })
                .sum();
            out.push(acc as f32);
            self.next_out += 1;
            // Drop input no later output needs.
            let next_first = ((self.next_out * self.r.down) / self.r.up) as i64 - half + 1;
            while (self.offset as i64) < next_first && !self.buf.is_empty() {
                self.buf.pop_front();
                self.offset += 1;
            }
        }
    }
}

/// Resamples one signal from `from_hz` to `to_hz`.
pub fn resample(input: &[f32], from_hz: f64, to_hz: f64) -> Result<Vec<f32>, ResampleError> {
    Ok(Resampler::new(from_hz, to_hz)?.process(input))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_stream_form_equals_the_batch_form_in_any_chunking() {
        for (from, to) in [
            (250.0, 500.0),
            (257.0, 500.0),
            (1000.0, 500.0),
            (500.0, 500.0),
        ] {
            let x: Vec<f32> = (0..3000)
                .map(|i| ((i as f64 * 0.37).sin() + (i as f64 * 0.011).cos()) as f32)
                .collect();
            let batch = Resampler::new(from, to).unwrap().process(&x);
            for chunk in [1usize, 7, 33, 250] {
                let mut s = StreamResampler::new(from, to).unwrap();
                let mut out = Vec::new();
                for c in x.chunks(chunk) {
                    s.push(c, &mut out);
                }
                // Everything but the tail (which waits for input that never comes) is emitted,
                // and equals the batch output sample for sample.
                assert!(
                    out.len() + 2 * s.delay_input_samples() + 2 >= batch.len(),
                    "{from}->{to}"
                );
                let worst = out
                    .iter()
                    .zip(&batch)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "{from}->{to} chunk {chunk}: {worst}");
            }
        }
    }
    use super::*;

    fn sine(freq_hz: f64, rate_hz: f64, seconds: f64) -> Vec<f32> {
        let n = (seconds * rate_hz) as usize;
        (0..n)
            .map(|i| (2.0 * PI * freq_hz * i as f64 / rate_hz).sin() as f32)
            .collect()
    }

    /// Amplitude at `freq_hz` in the middle of `x` (edges excluded), by projection onto a sine and a
    /// cosine over a whole number of cycles.
    fn amplitude(x: &[f32], freq_hz: f64, rate_hz: f64) -> f64 {
        let (a, b) = (x.len() / 4, 3 * x.len() / 4);
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate().take(b).skip(a) {
            let ph = 2.0 * PI * freq_hz * i as f64 / rate_hz;
            s += v as f64 * ph.sin();
            c += v as f64 * ph.cos();
        }
        2.0 * (s * s + c * c).sqrt() / (b - a) as f64
    }

    #[test]
    fn reduces_rate_pairs() {
        assert_eq!(ratio(1000.0, 500.0).unwrap(), (1, 2));
        assert_eq!(ratio(257.0, 500.0).unwrap(), (500, 257));
        assert_eq!(ratio(250.0, 500.0).unwrap(), (2, 1));
        assert!(matches!(ratio(0.0, 500.0), Err(ResampleError::BadRate(_))));
        // The upload that once aborted the daemon: a rate of 1e12 Hz sized a 10^11-tap filter.
        let e = Resampler::new(1e12, 500.0).unwrap_err();
        assert!(
            matches!(e, ResampleError::FilterTooLong { coefficients, .. } if coefficients > 1 << 30),
            "{e}"
        );
        assert!(e.to_string().contains("1000000000000 Hz to 500 Hz"), "{e}");
        assert!(Resampler::new(20_000.0, 500.0).is_ok());
        assert!(Resampler::new(50.0, 500.0).is_ok());
        assert!(matches!(
            ratio(257.123, 500.0),
            Err(ResampleError::Ratio { .. })
        ));
    }

    #[test]
    fn passband_is_flat_and_alias_band_is_suppressed() {
        // (input rate, output rate, passband tones, tones that would alias)
        let cases: [(f64, &[f64], &[f64]); 4] = [
            (
                1000.0,
                &[1.0, 10.0, 50.0, 150.0, 200.0],
                &[260.0, 300.0, 400.0, 490.0],
            ),
            (250.0, &[1.0, 10.0, 40.0, 90.0], &[]),
            (257.0, &[1.0, 10.0, 40.0, 90.0], &[]),
            (100.0, &[1.0, 10.0, 30.0], &[]),
        ];
        for (from, pass, stop) in cases {
            let r = Resampler::new(from, 500.0).unwrap();
            for &f in pass {
                let y = r.process(&sine(f, from, 8.0));
                let a = amplitude(&y, f, 500.0);
                assert!(
                    (a - 1.0).abs() < 1e-3,
                    "{from} Hz: tone {f} Hz came out at {a}"
                );
            }
            for &f in stop {
                let y = r.process(&sine(f, from, 8.0));
                let alias = 500.0 - f;
                let a = amplitude(&y, alias, 500.0).max(amplitude(&y, f, 500.0));
                assert!(a < 1e-3, "{from} Hz: tone {f} Hz leaked {a} (> -60 dB)");
            }
        }
    }

    #[test]
    fn upsampling_creates_no_images() {
        // A 100 Hz tone at 250 Hz would image at 150 Hz after naive upsampling to 500 Hz.
        let y = Resampler::new(250.0, 500.0)
            .unwrap()
            .process(&sine(100.0, 250.0, 8.0));
        assert!(amplitude(&y, 150.0, 500.0) < 1e-3);
    }

    #[test]
    fn lengths_dc_and_identity() {
        let r = Resampler::new(257.0, 500.0).unwrap();
        assert_eq!(r.output_len(5000), 9728);
        let y = r.process(&vec![0.7; 2570]);
        assert_eq!(y.len(), 5000);
        assert!(
            y.iter().all(|v| (v - 0.7).abs() < 1e-5),
            "DC kept, edges included"
        );
        let id = Resampler::new(500.0, 500.0).unwrap();
        assert!(id.is_identity());
        assert_eq!(id.process(&[1.0, 2.0]), vec![1.0, 2.0]);
        let down = Resampler::new(1000.0, 500.0).unwrap();
        assert_eq!(down.process(&vec![0.0; 38400]).len(), 19200);
    }
}
