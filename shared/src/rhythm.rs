//! Rhythm from one lead at 500 Hz: R peaks, heart rate and R-R irregularity. The daemon reports
//! them beside every result, and the trainer's `evaluate` scores the trivial rules they give
//! (heart rate for sinus brady/tachycardia, R-R irregularity for atrial fibrillation) beside the
//! model, so a model that loses to a rule is visible.

/// Sampling rate the detector assumes (the model's).
pub const RATE_HZ: f64 = 500.0;

/// Moving average of width `w` samples (centred, edges shortened).
pub fn moving_average(x: &[f32], w: usize) -> Vec<f32> {
    let half = w / 2;
    let mut prefix = Vec::with_capacity(x.len() + 1);
    prefix.push(0.0f64);
    for &v in x {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + v as f64);
    }
    (0..x.len())
        .map(|i| {
            let a = i.saturating_sub(half);
            let b = (i + half + 1).min(x.len());
            ((prefix[b] - prefix[a]) / (b - a) as f64) as f32
        })
        .collect()
}

/// R-peak sample positions in one lead (lead II by convention): band-pass by differencing two
/// moving averages (~5-15 Hz), squared slope, 150 ms integration, threshold at 30 % of the
/// window's robust maximum, 250 ms refractory period, each peak placed at the largest absolute
/// deviation of the band-passed signal near the detection.
pub fn r_peaks(lead: &[f32]) -> Vec<usize> {
    let n = lead.len();
    if n < 3 || lead.iter().any(|v| !v.is_finite()) {
        return Vec::new();
    }
    let fast = moving_average(lead, 7); // ~14 ms: keeps QRS, drops high-frequency noise
    let slow = moving_average(lead, 50); // 100 ms: the slower P/T and baseline
    let band: Vec<f32> = fast.iter().zip(&slow).map(|(a, b)| a - b).collect();
    let slope: Vec<f32> = band
        .windows(2)
        .map(|w| (w[1] - w[0]).powi(2))
        .chain([0.0])
        .collect();
    let energy = moving_average(&slope, (0.15 * RATE_HZ) as usize);
    let mut sorted = energy.clone();
    sorted.sort_by(f32::total_cmp);
    let robust_max = sorted[((n as f64 * 0.99) as usize).min(n - 1)];
    if robust_max <= 0.0 {
        return Vec::new();
    }
    let threshold = 0.3 * robust_max;
    let refractory = (0.25 * RATE_HZ) as usize;
    let search = (0.08 * RATE_HZ) as usize;
    let mut peaks: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < n {
        if energy[i] > threshold {
            let a = i.saturating_sub(search);
            let b = (i + search).min(n);
            let p = (a..b)
                .max_by(|&x, &y| band[x].abs().total_cmp(&band[y].abs()))
                .unwrap_or(i);
            if peaks.last().is_none_or(|&last| p > last + refractory) {
                peaks.push(p);
            }
            i = p.max(i) + refractory;
        } else {
            i += 1;
        }
    }
    peaks
}

/// R-R intervals in seconds between consecutive R peaks.
pub fn rr_intervals_s(lead: &[f32]) -> Vec<f64> {
    r_peaks(lead)
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / RATE_HZ)
        .collect()
}

/// Heart rate (beats per minute) from the median R-R interval, or `None` with fewer than three
/// beats.
pub fn heart_rate_bpm(lead: &[f32]) -> Option<f64> {
    let mut rr = rr_intervals_s(lead);
    if rr.len() < 2 {
        return None;
    }
    rr.sort_by(f64::total_cmp);
    Some(60.0 / rr[rr.len() / 2])
}

/// R-R irregularity: the root mean square of successive R-R differences divided by the mean R-R
/// interval (0 for a perfectly regular rhythm; atrial fibrillation typically above 0.1), or
/// `None` with fewer than four beats.
pub fn rr_irregularity(lead: &[f32]) -> Option<f64> {
    let rr = rr_intervals_s(lead);
    if rr.len() < 3 {
        return None;
    }
    let mean = rr.iter().sum::<f64>() / rr.len() as f64;
    let msd = rr.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>() / (rr.len() - 1) as f64;
    Some(msd.sqrt() / mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gaussian "R waves" at the given beat times (s) on a slow sine baseline, 10 s.
    fn beats_at(times: &[f64]) -> Vec<f32> {
        (0..5000)
            .map(|i| {
                let t = i as f64 / RATE_HZ;
                let r: f64 = times
                    .iter()
                    .map(|&b| 1.2 * (-((t - b) * RATE_HZ / 8.0).powi(2)).exp())
                    .sum();
                (r + 0.05 * (i as f64 * 0.01).sin()) as f32
            })
            .collect()
    }

    fn regular(bpm: f64) -> Vec<f32> {
        let period = 60.0 / bpm;
        let times: Vec<f64> = (0..)
            .map(|k| period / 2.0 + k as f64 * period)
            .take_while(|&t| t < 10.0)
            .collect();
        beats_at(&times)
    }

    #[test]
    fn heart_rate_of_synthetic_beats() {
        for bpm in [45.0, 72.0, 120.0, 170.0] {
            let hr = heart_rate_bpm(&regular(bpm)).unwrap();
            assert!((hr - bpm).abs() < 1.5, "{bpm} bpm measured as {hr}");
        }
        assert_eq!(heart_rate_bpm(&[0.0; 5000]), None);
        assert_eq!(heart_rate_bpm(&[f32::NAN; 5000]), None);
    }

    #[test]
    fn irregularity_separates_regular_from_irregular_beats() {
        let reg = rr_irregularity(&regular(80.0)).unwrap();
        assert!(reg < 0.01, "regular rhythm gave {reg}");
        // R-R alternating 0.5 s and 0.9 s: RMSSD 0.4 s over a mean of 0.7 s.
        let mut times = vec![0.3];
        while *times.last().unwrap() < 9.0 {
            let gap = if times.len() % 2 == 0 { 0.5 } else { 0.9 };
            times.push(times.last().unwrap() + gap);
        }
        let irr = rr_irregularity(&beats_at(&times)).unwrap();
        assert!((irr - 0.4 / 0.7).abs() < 0.02, "alternating R-R gave {irr}");
        assert_eq!(rr_irregularity(&beats_at(&[1.0, 2.0, 3.0])), None);
    }
}
