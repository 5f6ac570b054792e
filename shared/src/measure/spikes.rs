//! Pacemaker spikes (and other spikes one or two samples wide) found on all leads together and
//! interpolated out before delineation, so that the low-pass filters do not smear them into
//! the QRS envelope. A pacing pulse lasts 0.1-2 ms; at 500 Hz it is a one- or two-sample
//! excursion that no cardiac wave makes (the steepest QRS needs several milliseconds to turn),
//! the basis of pacemaker pulse detection in interpretive electrocardiographs (IEC 60601-2-25,
//! which requires pulses of 0.1-2 ms and 2-250 mV to be recognised at the front end; here the
//! pulse is already band-limited by the recorder, so its residue is detected instead).

/// Multi-lead second-difference magnitude (mV) above which a sample is a spike:
/// `sqrt(sum_lead (x[i] - (x[i-1] + x[i+1]) / 2)^2)`. A QRS apex's curvature over 2 ms gives
/// well under half of this on a 12-lead record; a pacing spike's residue gives 0.7-2 mV.
pub const SPIKE_MV: f32 = 0.5;

/// Inclusive sample spans of the spikes in `leads` (all the same length): every sample whose
/// multi-lead second difference exceeds [`SPIKE_MV`] (the spike and its neighbours), widened by
/// one sample on either side, overlapping or adjacent spans merged.
pub fn find_spikes(leads: &[&[f32]]) -> Vec<(usize, usize)> {
    let n = leads.iter().map(|l| l.len()).min().unwrap_or(0);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for i in 1..n.saturating_sub(1) {
        let s = leads
            .iter()
            .map(|l| (l[i] - 0.5 * (l[i - 1] + l[i + 1])).powi(2))
            .sum::<f32>()
            .sqrt();
        if s <= SPIKE_MV {
            continue;
        }
        let (a, b) = (i - 1, (i + 1).min(n - 1));
        match spans.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => spans.push((a, b)),
        }
    }
    spans
}

/// `leads` with every span replaced by the straight line between the samples just outside it
/// (the span's edge samples where it touches the record's ends).
pub fn remove_spikes(leads: &[&[f32]], spans: &[(usize, usize)]) -> Vec<Vec<f32>> {
    leads
        .iter()
        .map(|l| {
            let mut x = l.to_vec();
            let n = x.len();
            for &(a, b) in spans {
                if n == 0 || a >= n {
                    continue;
                }
                let b = b.min(n - 1);
                let left = a.saturating_sub(1);
                let right = (b + 1).min(n - 1);
                let (ya, yb) = (x[left], x[right]);
                let width = (right - left).max(1) as f32;
                for (k, v) in x.iter_mut().enumerate().take(b + 1).skip(a) {
                    *v = ya + (yb - ya) * (k - left) as f32 / width;
                }
            }
            x
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_sample_spike_on_all_leads_is_found_and_interpolated() {
        // A slow ramp (a QRS upstroke's slope, 0.05 mV per sample) with a 3 mV spike at 50-51.
        let ramp: Vec<f32> = (0..100).map(|i| 0.05 * i as f32).collect();
        let mut spiked = ramp.clone();
        spiked[50] += 3.0;
        spiked[51] += 1.5;
        let leads: Vec<&[f32]> = vec![&spiked, &spiked, &ramp];
        let spans = find_spikes(&leads);
        // The samples beside the spike have a large second difference too: 49..52 flagged,
        // each widened by one.
        assert_eq!(spans, vec![(48, 53)]);
        let clean = remove_spikes(&leads, &spans);
        for (c, r) in clean[0].iter().zip(&ramp) {
            assert!((c - r).abs() < 1e-5, "{c} vs {r}");
        }
        // The lead without the spike is unchanged (a line through a line).
        for (c, r) in clean[2].iter().zip(&ramp) {
            assert!((c - r).abs() < 1e-5);
        }
    }

    #[test]
    fn a_sharp_but_physiological_peak_is_not_a_spike() {
        // A 3 mV triangular R wave rising and falling over 10 ms (5 samples) on 12 leads.
        let r: Vec<f32> = (0..100)
            .map(|i: i32| (3.0 - 0.6 * (i - 50).abs() as f32).max(0.0))
            .collect();
        let leads: Vec<&[f32]> = vec![&r; 12];
        // The apex's second difference is 0.6 mV per lead, 2.1 mV over 12 leads: such a turn
        // within one sample is no cardiac wave, and is found. A tall R wave (1.5 mV on every
        // lead, 40 ms from base to apex, 0.075 mV per sample) turns by 0.26 mV over 12 leads:
        // not a spike.
        let realistic: Vec<f32> = (0..100)
            .map(|i: i32| (1.5 - 0.075 * (i - 50).abs() as f32).max(0.0))
            .collect();
        let leads_ok: Vec<&[f32]> = vec![&realistic; 12];
        assert!(find_spikes(&leads_ok).is_empty());
        assert!(!find_spikes(&leads).is_empty());
        assert!(find_spikes(&[]).is_empty());
        assert!(remove_spikes(&[&[]], &[(0, 3)])[0].is_empty());
    }
}
