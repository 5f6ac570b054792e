//! Training-time augmentation of a 10 s, 12-lead crop before it is laid out in 3x4 (so every slot
//! cut from a lead sees the same change): record and lead gain, white noise, baseline wander,
//! mains hum and whole-lead dropout, each drawn from the config's `AUGMENT` section with the
//! run's seeded generator. Off (all zeros) by default, as the seed.

use crate::rng::Rng;
use eknet_shared::config::AugmentSection;
use eknet_shared::layout::SAMPLE_RATE_HZ;
use std::f64::consts::PI;

/// Applies `aug` to the twelve leads in place.
pub fn augment(leads: &mut [Vec<f32>], aug: &AugmentSection, rng: &mut Rng) {
    if aug.is_off() {
        return;
    }
    let gain = rng.uniform(1.0 - aug.amplitude_scale, 1.0 + aug.amplitude_scale);
    let noise = rng.uniform(0.0, aug.noise_mv);
    let hum_hz = if rng.below(2) == 0 { 50.0 } else { 60.0 };
    let hum = rng.uniform(0.0, aug.mains_hum_mv);
    let hum_phase = rng.uniform(0.0, 2.0 * PI);
    for lead in leads.iter_mut() {
        if aug.lead_dropout > 0.0 && rng.unit() < aug.lead_dropout {
            lead.iter_mut().for_each(|v| *v = 0.0);
            continue;
        }
        let g = gain * rng.uniform(1.0 - aug.lead_scale, 1.0 + aug.lead_scale);
        // Baseline wander: one slow sinusoid (0.05-0.5 Hz) per lead.
        let (w_amp, w_hz, w_phase) = (
            rng.uniform(0.0, aug.baseline_wander_mv),
            rng.uniform(0.05, 0.5),
            rng.uniform(0.0, 2.0 * PI),
        );
        let h_amp = hum * rng.uniform(0.5, 1.0);
        let mut wander = Sine::new(w_amp, w_hz, w_phase);
        let mut mains = Sine::new(h_amp, hum_hz, hum_phase);
        let mut spare: Option<f64> = None;
        for v in lead.iter_mut() {
            let mut x = *v as f64 * g + wander.next() + mains.next();
            if noise > 0.0 {
                // Box-Muller gives two normals per draw; use both.
                let z = match spare.take() {
                    Some(z) => z,
                    None => {
                        let (a, b) = normal_pair(rng);
                        spare = Some(b);
                        a
                    }
                };
                x += noise * z;
            }
            *v = x as f32;
        }
    }
}

/// `amp * sin(2 pi f t + phase)` at successive samples, by rotation (no `sin` per sample).
struct Sine {
    s: f64,
    c: f64,
    sin_w: f64,
    cos_w: f64,
    amp: f64,
}

impl Sine {
    fn new(amp: f64, freq_hz: f64, phase: f64) -> Sine {
        let w = 2.0 * PI * freq_hz / SAMPLE_RATE_HZ;
        Sine {
            s: phase.sin(),
            c: phase.cos(),
            sin_w: w.sin(),
            cos_w: w.cos(),
            amp,
        }
    }

    fn next(&mut self) -> f64 {
        if self.amp == 0.0 {
            return 0.0;
        }
        let out = self.amp * self.s;
        let (s, c) = (
            self.s * self.cos_w + self.c * self.sin_w,
            self.c * self.cos_w - self.s * self.sin_w,
        );
        (self.s, self.c) = (s, c);
        out
    }
}

/// Two independent standard normals (Box-Muller).
fn normal_pair(rng: &mut Rng) -> (f64, f64) {
    let r = (-2.0 * (1.0 - rng.unit()).ln()).sqrt();
    let a = 2.0 * PI * rng.unit();
    (r * a.cos(), r * a.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leads() -> Vec<Vec<f32>> {
        (0..12)
            .map(|l| (0..5000).map(|i| ((i + l) as f32 * 0.01).sin()).collect())
            .collect()
    }

    #[test]
    fn the_rotating_sine_is_a_sine() {
        let mut s = Sine::new(0.5, 50.0, 0.3);
        for i in 0..5000 {
            let t = i as f64 / SAMPLE_RATE_HZ;
            let want = 0.5 * (2.0 * PI * 50.0 * t + 0.3).sin();
            assert!((s.next() - want).abs() < 1e-9, "sample {i}");
        }
    }

    #[test]
    fn off_is_the_identity_and_each_knob_changes_what_it_names() {
        let mut rng = Rng::new(1);
        let mut x = leads();
        augment(&mut x, &AugmentSection::default(), &mut rng);
        assert_eq!(x, leads());

        let gain_only = AugmentSection {
            amplitude_scale: 0.5,
            ..AugmentSection::default()
        };
        let mut x = leads();
        augment(&mut x, &gain_only, &mut rng);
        // One gain for every lead: the ratio to the original is the same everywhere.
        let r = x[3][100] / leads()[3][100];
        assert!((0.5..1.5).contains(&r));
        let orig = leads();
        for (xl, ol) in x.iter().zip(&orig) {
            for i in [7, 900, 4000] {
                let o = ol[i];
                if o.abs() > 0.1 {
                    assert!((xl[i] / o - r).abs() < 1e-4);
                }
            }
        }

        let hum = AugmentSection {
            mains_hum_mv: 0.3,
            ..AugmentSection::default()
        };
        let mut x = leads();
        augment(&mut x, &hum, &mut rng);
        let d: Vec<f32> = x[0].iter().zip(&leads()[0]).map(|(a, b)| a - b).collect();
        let amp = d.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(amp > 0.0 && amp <= 0.3 + 1e-5, "hum amplitude {amp}");

        let drop_all = AugmentSection {
            lead_dropout: 0.999_999,
            ..AugmentSection::default()
        };
        let mut x = leads();
        augment(&mut x, &drop_all, &mut rng);
        assert!(x.iter().all(|l| l.iter().all(|&v| v == 0.0)));

        let noise = AugmentSection {
            noise_mv: 0.1,
            ..AugmentSection::default()
        };
        let (mut a, mut b) = (leads(), leads());
        augment(&mut a, &noise, &mut Rng::new(5));
        augment(&mut b, &noise, &mut Rng::new(5));
        assert_eq!(a, b, "same seed, same augmentation");
        assert_ne!(a, leads());
    }
}
