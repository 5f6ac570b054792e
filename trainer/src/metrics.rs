//! Classification metrics on scores and 0/1 labels: ROC AUC (rank based, ties averaged), F1,
//! precision, recall at a threshold, per-class thresholds that maximise F1 on validation, macro
//! and micro aggregates, and bootstrap 95 % intervals. Each class is scored only on the records
//! whose source states it (`known`).

use crate::rng::Rng;
use serde::Serialize;

/// ROC AUC of `scores` against `labels` (Mann-Whitney U with average ranks for ties). `None`
/// when only one class is present.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    Some((rank_sum_pos - pos as f64 * (pos as f64 + 1.0) / 2.0) / (pos as f64 * neg as f64))
}

/// ROC curve points `(false positive rate, true positive rate)` from the highest threshold down.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let neg = labels.iter().filter(|&&l| !l).count().max(1) as f64;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (n, &k) in order.iter().enumerate() {
        if labels[k] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(n + 1).is_none_or(|&nx| scores[nx] != scores[k]);
        if last_of_tie {
            pts.push((fp / neg, tp / pos));
        }
    }
    pts
}

/// Counts at a threshold (score >= threshold is positive).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    pub fn_: usize,
}

impl Counts {
    /// Counts of one class at `threshold`.
    pub fn at(scores: &[f32], labels: &[bool], threshold: f32) -> Counts {
        let mut c = Counts::default();
        for (&s, &l) in scores.iter().zip(labels) {
            match (s >= threshold, l) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                _ => {}
            }
        }
        c
    }

    /// Precision (0 when nothing is predicted positive).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Recall (0 when there is no positive).
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// F1 (0 when undefined).
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The threshold maximising F1 on (validation) scores; 0.5 when the class has no positive.
pub fn best_f1_threshold(scores: &[f32], labels: &[bool]) -> f32 {
    if !labels.iter().any(|&l| l) {
        return 0.5;
    }
    let mut candidates: Vec<f32> = scores.to_vec();
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    let mut best = (f64::MIN, 0.5f32);
    for t in candidates {
        let f = Counts::at(scores, labels, t).f1();
        if f > best.0 {
            best = (f, t);
        }
    }
    best.1
}

/// Per-class results.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    /// Class name.
    pub name: String,
    /// Positives in the evaluated split.
    pub support: usize,
    /// ROC AUC (`None` when the split has only one class).
    pub auc: Option<f64>,
    /// Threshold applied.
    pub threshold: f32,
    /// F1 at that threshold.
    pub f1: f64,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
    /// F1 at 0.5 (the seed's fixed threshold).
    pub f1_at_half: f64,
    /// Records whose source states this class (positives and negatives).
    #[serde(default)]
    pub known: usize,
    /// 95 % bootstrap interval of the AUC (records resampled).
    pub auc_interval: Option<Interval>,
}

/// Aggregates with 95 % bootstrap intervals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Macro AUC over classes with both labels present.
    pub macro_auc: Interval,
    /// Micro AUC (all class-record pairs pooled).
    pub micro_auc: Interval,
    /// Macro F1 at the fitted thresholds.
    pub macro_f1: Interval,
    /// Micro F1 at the fitted thresholds.
    pub micro_f1: Interval,
    /// Macro F1 at 0.5.
    pub macro_f1_at_half: Interval,
}

/// A point estimate and its percentile bootstrap interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interval {
    /// On the full split.
    pub value: f64,
    /// 2.5th percentile over resamples.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
}

/// Scores and labels, `[record][class]`.
pub struct Predictions<'a> {
    /// Scores.
    pub scores: &'a [Vec<f32>],
    /// Labels.
    pub labels: &'a [Vec<bool>],
    /// Which labels are known (`None`: all).
    pub known: Option<&'a [Vec<bool>]>,
}

impl Predictions<'_> {
    /// Scores and labels of class `k` on `rows`, leaving out records whose label is unknown.
    pub fn column(&self, k: usize, rows: &[usize]) -> (Vec<f32>, Vec<bool>) {
        rows.iter()
            .filter(|&&r| self.known.is_none_or(|kn| kn[r][k]))
            .map(|&r| (self.scores[r][k], self.labels[r][k]))
            .unzip()
    }

    fn aggregates(&self, rows: &[usize], thresholds: &[f32]) -> [f64; 5] {
        let (mut aucs, mut f1s, mut f1h) = (Vec::new(), Vec::new(), Vec::new());
        let mut pooled = Counts::default();
        let (mut all_s, mut all_l) = (Vec::new(), Vec::new());
        for (k, &threshold) in thresholds.iter().enumerate() {
            let (s, l) = self.column(k, rows);
            if let Some(a) = roc_auc(&s, &l) {
                aucs.push(a);
            }
            let c = Counts::at(&s, &l, threshold);
            pooled.tp += c.tp;
            pooled.fp += c.fp;
            pooled.fn_ += c.fn_;
            f1s.push(c.f1());
            f1h.push(Counts::at(&s, &l, 0.5).f1());
            all_s.extend(s);
            all_l.extend(l);
        }
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        [
            mean(&aucs),
            roc_auc(&all_s, &all_l).unwrap_or(f64::NAN),
            mean(&f1s),
            pooled.f1(),
            mean(&f1h),
        ]
    }
}

/// Per-class metrics at `thresholds`, and aggregates with `resamples` bootstrap resamples of
/// records (seeded).
pub fn evaluate(
    names: &[String],
    preds: &Predictions<'_>,
    thresholds: &[f32],
    resamples: usize,
    seed: u64,
) -> (Vec<ClassMetrics>, Summary) {
    let rows: Vec<usize> = (0..preds.scores.len()).collect();
    let resampled = bootstrap_rows(rows.len(), resamples, seed);
    let per_class = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (s, l) = preds.column(k, &rows);
            let c = Counts::at(&s, &l, thresholds[k]);
            let auc = roc_auc(&s, &l);
            let auc_interval = auc.map(|a| {
                let v = resampled.iter().filter_map(|pick| {
                    let (s, l) = preds.column(k, pick);
                    roc_auc(&s, &l)
                });
                percentile_interval(a, v.collect())
            });
            ClassMetrics {
                name: name.clone(),
                support: l.iter().filter(|&&x| x).count(),
                auc,
                threshold: thresholds[k],
                f1: c.f1(),
                precision: c.precision(),
                recall: c.recall(),
                f1_at_half: Counts::at(&s, &l, 0.5).f1(),
                known: l.len(),
                auc_interval,
            }
        })
        .collect();
    let point = preds.aggregates(&rows, thresholds);
    let samples: Vec<[f64; 5]> = resampled
        .iter()
        .map(|pick| preds.aggregates(pick, thresholds))
        .collect();
    let interval = |m: usize| percentile_interval(point[m], samples.iter().map(|s| s[m]).collect());
    let summary = Summary {
        macro_auc: interval(0),
        micro_auc: interval(1),
        macro_f1: interval(2),
        micro_f1: interval(3),
        macro_f1_at_half: interval(4),
    };
    (per_class, summary)
}

/// `resamples` bootstrap resamples of `n` rows (seeded): the same resamples for every figure of
/// one evaluation, so paired comparisons (model against rule) see the same records.
pub fn bootstrap_rows(n: usize, resamples: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    (0..resamples)
        .map(|_| (0..n).map(|_| rng.below(n)).collect())
        .collect()
}

/// The 2.5th and 97.5th percentiles of `samples` (non-finite ones dropped) around `value`.
pub fn percentile_interval(value: f64, mut samples: Vec<f64>) -> Interval {
    samples.retain(|x| x.is_finite());
    samples.sort_by(f64::total_cmp);
    let q = |p: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Interval {
        value,
        low: q(0.025),
        high: q(0.975),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_computed_values() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(
            roc_auc(&[0.5, 0.5], &[false, true]),
            Some(0.5),
            "ties count half"
        );
        assert_eq!(roc_auc(&[0.2, 0.9], &[false, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.2, 0.9], &[true, true]), None);
    }

    #[test]
    fn f1_threshold_and_counts() {
        let s = [0.1, 0.2, 0.6, 0.7, 0.9];
        let l = [false, true, false, true, true];
        let c = Counts::at(&s, &l, 0.5);
        assert_eq!((c.tp, c.fp, c.fn_), (2, 1, 1));
        assert!((c.f1() - 2.0 / 3.0).abs() < 1e-12);
        // Lowering the threshold to 0.2 catches every positive: F1 = 6/8.
        assert_eq!(best_f1_threshold(&s, &l), 0.2);
        let roc = roc_curve(&s, &l);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn bootstrap_interval_brackets_the_point_estimate() {
        let mut rng = Rng::new(3);
        let labels: Vec<Vec<bool>> = (0..200).map(|i| vec![i % 3 == 0, i % 5 == 0]).collect();
        let scores: Vec<Vec<f32>> = labels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&y| (y as u8 as f32) * 0.3 + (rng.below(1000) as f32 / 1000.0) * 0.7)
                    .collect()
            })
            .collect();
        let names = vec!["a".to_string(), "b".to_string()];
        let p = Predictions {
            scores: &scores,
            labels: &labels,
            known: None,
        };
        let (per, sum) = evaluate(&names, &p, &[0.5, 0.5], 200, 1);
        assert_eq!(per[0].support, 67);
        assert!(
            sum.macro_auc.low <= sum.macro_auc.value && sum.macro_auc.value <= sum.macro_auc.high
        );
        assert!(sum.macro_auc.value > 0.6 && sum.macro_auc.high < 1.0);
        let ci = per[0].auc_interval.unwrap();
        assert!(ci.low < ci.value && ci.value < ci.high);
        // Unknown labels are left out of their class only.
        let known: Vec<Vec<bool>> = (0..200).map(|i| vec![i < 100, true]).collect();
        let p = Predictions {
            known: Some(&known),
            ..p
        };
        let (per2, _) = evaluate(&names, &p, &[0.5, 0.5], 10, 1);
        assert_eq!((per2[0].known, per2[1].known), (100, 200));
        assert_eq!(per2[0].support, 34);
        assert_eq!(per2[1].auc, per[1].auc);
    }
}
