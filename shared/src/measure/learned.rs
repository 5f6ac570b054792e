//! The learned delineator: a small 1-D U-Net that labels every sample of a prepared lead as
//! background, P wave, QRS complex or T wave, its weights file format, and its inference in
//! plain Rust.
//!
//! - Network: four encoder levels of two 9-tap convolutions with ReLU (max-pooling by two
//!   between levels), three decoder levels (nearest-neighbour upsampling, concatenation with the
//!   encoder level's output, two convolutions), and a 1x1 convolution to four class scores.
//!   Batch norm is folded into the convolutions when the weights are written. The shipped
//!   network (widths 8/16/24/32) reads one lead and runs on each usable lead; its waves are
//!   merged over the leads as LUDB's global reference is (earliest onset, latest offset,
//!   [`refine`]). A network of twelve input channels (all leads together, labelling the global
//!   waves) is read too.
//! - Training: `tools/delineator/train.py --per-lead --widths 8,16,24,32` on LUDB records
//!   1-100, each lead against its own annotation, from the leads exactly as
//!   [`super::delineate::prepare`] makes them (`examples/ludb_dump.rs` writes them); records
//!   101-200 are held out for the validation (`examples/ludb_delineation.rs`).
//! - Weights file (`assets/delineator.bin`, embedded in the binary): `EKDL`, then little-endian
//!   `u32` version (1), network count, metadata length and probe length; the metadata (JSON: how
//!   the networks were trained); per network its layer count and per layer `u32` cout, cin, taps,
//!   the weights `[cout][cin][taps]` and biases as `f32`; then a probe input `[12][probe]` and
//!   the trainer's output on it (`[4][probe]`, or `[12][4][probe]` lead by lead for one-lead
//!   networks), so a test proves this inference computes what PyTorch computed. Several
//!   networks (trained alike from different seeds) are an ensemble: their class scores are
//!   averaged.
//! - Inference: channel-major rows, each convolution tiled over four output channels and two
//!   SIMD vectors of time (eight independent sums), compiled for the CPU's widest vectors by
//!   `pulp`'s dispatch.

use std::sync::OnceLock;

/// Leads the network reads, in [`crate::Lead::ALL`] order.
pub const INPUT_LEADS: usize = 12;
/// Classes per sample: background, P, QRS, T.
pub const CLASSES: usize = 4;
/// The weights shipped with this build.
pub const EMBEDDED: &[u8] = include_bytes!("../../assets/delineator.bin");

const MAGIC: &[u8; 4] = b"EKDL";
const VERSION: u32 = 1;
/// The most encoder levels a network may have (the decoder has one fewer).
const MAX_LEVELS: usize = 8;
/// Output channels are computed four at a time.
const GROUP: usize = 4;

/// Why a weights file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DelineatorError {
    /// Not a delineator weights file.
    #[error("delineator weights: the file does not start with EKDL")]
    BadMagic,
    /// Written by a newer or older format.
    #[error("delineator weights: format version {0}, this build reads version 1")]
    Version(u32),
    /// Ends early.
    #[error("delineator weights: truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes left after the probe output.
    #[error("delineator weights: {0} bytes after the end")]
    Trailing(usize),
    /// The metadata is not JSON.
    #[error("delineator weights: metadata is not JSON: {0}")]
    Metadata(String),
    /// Some networks read the twelve leads together, others one lead.
    #[error("delineator weights: networks of twelve-lead and one-lead input mixed")]
    MixedInputs,
    /// No network in the file.
    #[error("delineator weights: no network")]
    NoNetworks,
    /// A layer count no U-Net has (4 per level but the last, plus the head).
    #[error("delineator weights: network {net} has {count} layers, not 4 L - 1 for L levels")]
    LayerCount {
        /// Network index.
        net: usize,
        /// Layers found.
        count: usize,
    },
    /// The layers do not make the U-Net this inference runs.
    #[error(
        "delineator weights: network {net} layer {layer} is {cout}x{cin}x{taps}, expected {expected}"
    )]
    Shape {
        /// Network index.
        net: usize,
        /// Layer index.
        layer: usize,
        /// Output channels found.
        cout: usize,
        /// Input channels found.
        cin: usize,
        /// Taps found.
        taps: usize,
        /// What the architecture needs there.
        expected: String,
    },
    /// A weight is NaN or infinite.
    #[error("delineator weights: network {net} layer {layer} has a non-finite weight")]
    NonFinite {
        /// Network index.
        net: usize,
        /// Layer index.
        layer: usize,
    },
}

/// One convolution, weights regrouped for the kernel: `w[((g * cin + ci) * taps + k) * 4 + j]`
/// is output channel `4 g + j` (zero beyond `cout`).
#[derive(Debug, Clone)]
struct Conv {
    cout: usize,
    cin: usize,
    taps: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// A loaded delineator: an ensemble of U-Nets whose class scores are averaged.
#[derive(Debug, Clone)]
pub struct Delineator {
    nets: Vec<Vec<Conv>>,
    /// How the weights were trained (the trainer's JSON).
    pub metadata: serde_json::Value,
    probe: Vec<f32>,
    probe_out: Vec<f32>,
    /// One-lead networks, run on each lead on its own (trained on each lead's annotation).
    pub per_lead: bool,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DelineatorError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DelineatorError::Truncated(what))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<usize, DelineatorError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn f32s(&mut self, n: usize, what: &'static str) -> Result<Vec<f32>, DelineatorError> {
        let len = n.checked_mul(4).ok_or(DelineatorError::Truncated(what))?;
        Ok(self
            .take(len, what)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// The (cout, cin, taps) each layer must have, given the encoder widths.
fn expected_shapes(w: &[usize], input: usize) -> Vec<(usize, usize, Option<usize>)> {
    let mut s = Vec::new();
    let mut cin = input;
    for &c in w {
        s.push((c, cin, None));
        s.push((c, c, None));
        cin = c;
    }
    for lvl in (0..w.len().saturating_sub(1)).rev() {
        s.push((w[lvl], cin + w[lvl], None));
        s.push((w[lvl], w[lvl], None));
        cin = w[lvl];
    }
    s.push((CLASSES, cin, Some(1)));
    s
}

/// Reads one network: its layer count, then its layers, checked against the U-Net shape.
fn read_net(r: &mut Reader<'_>, net: usize) -> Result<Vec<Conv>, DelineatorError> {
    let count = r.u32("a layer count")?;
    // Four convolutions per level but the last (two), plus the head: 4 L - 1.
    if count < 3 || (count + 1) % 4 != 0 || count > 4 * MAX_LEVELS - 1 {
        return Err(DelineatorError::LayerCount { net, count });
    }
    let levels = (count + 1) / 4;
    let mut raw = Vec::with_capacity(count);
    for layer in 0..count {
        let cout = r.u32("a layer shape")?;
        let cin = r.u32("a layer shape")?;
        let taps = r.u32("a layer shape")?;
        let n = cout
            .checked_mul(cin)
            .and_then(|v| v.checked_mul(taps))
            .ok_or(DelineatorError::Truncated("a layer's weights"))?;
        let w = r.f32s(n, "a layer's weights")?;
        let b = r.f32s(cout, "a layer's biases")?;
        if w.iter().chain(&b).any(|v| !v.is_finite()) {
            return Err(DelineatorError::NonFinite { net, layer });
        }
        raw.push((cout, cin, taps, w, b));
    }
    let widths: Vec<usize> = (0..levels).map(|i| raw[2 * i].0).collect();
    // Twelve input channels (the leads together) or one (each lead on its own).
    let input = if raw[0].1 == 1 { 1 } else { INPUT_LEADS };
    let mut layers = Vec::with_capacity(count);
    for (layer, ((cout, cin, taps, w, b), (ecout, ecin, etaps))) in raw
        .into_iter()
        .zip(expected_shapes(&widths, input))
        .enumerate()
    {
        let taps_ok = match etaps {
            Some(t) => taps == t,
            None => taps % 2 == 1,
        };
        if cout != ecout || cin != ecin || !taps_ok || cout == 0 {
            return Err(DelineatorError::Shape {
                net,
                layer,
                cout,
                cin,
                taps,
                expected: format!(
                    "{ecout}x{ecin}x{}",
                    etaps.map_or("(odd)".to_string(), |t| t.to_string())
                ),
            });
        }
        layers.push(Conv::regroup(cout, cin, taps, &w, b));
    }
    Ok(layers)
}

impl Delineator {
    /// The weights embedded in this build, parsed once.
    pub fn embedded() -> Result<&'static Delineator, &'static DelineatorError> {
        static NET: OnceLock<Result<Delineator, DelineatorError>> = OnceLock::new();
        NET.get_or_init(|| Delineator::parse(EMBEDDED)).as_ref()
    }

    /// Parses and checks a weights file.
    pub fn parse(bytes: &[u8]) -> Result<Delineator, DelineatorError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4, "the magic")
            .map_err(|_| DelineatorError::BadMagic)?
            != MAGIC
        {
            return Err(DelineatorError::BadMagic);
        }
        let version = r.u32("the version")?;
        if version as u32 != VERSION {
            return Err(DelineatorError::Version(version as u32));
        }
        let count = r.u32("the network count")?;
        let meta_len = r.u32("the metadata length")?;
        let probe_len = r.u32("the probe length")?;
        let metadata = serde_json::from_slice(r.take(meta_len, "the metadata")?)
            .map_err(|e| DelineatorError::Metadata(e.to_string()))?;
        if count == 0 {
            return Err(DelineatorError::NoNetworks);
        }
        let mut nets = Vec::new();
        for net in 0..count {
            nets.push(read_net(&mut r, net)?);
        }
        let per_lead = nets[0][0].cin == 1;
        if nets.iter().any(|n| (n[0].cin == 1) != per_lead) {
            return Err(DelineatorError::MixedInputs);
        }
        let rows = if per_lead { INPUT_LEADS } else { 1 };
        let probe = r.f32s(INPUT_LEADS * probe_len, "the probe input")?;
        let probe_out = r.f32s(rows * CLASSES * probe_len, "the probe output")?;
        if r.at != bytes.len() {
            return Err(DelineatorError::Trailing(bytes.len() - r.at));
        }
        Ok(Delineator {
            nets,
            metadata,
            probe,
            probe_out,
            per_lead,
        })
    }

    /// Class scores (logits) of twelve leads of `n` samples each at 500 Hz (prepared as
    /// [`super::delineate::prepare`] does; a lead that failed quality is passed as zeros, as in
    /// training): `[CLASSES][n]` for twelve-lead networks, `[12 * CLASSES][n]` (lead by lead)
    /// for one-lead networks. Leads shorter than [`Delineator::min_len`] or of unequal lengths
    /// give empty rows.
    pub fn logits(&self, leads: &[&[f32]; INPUT_LEADS]) -> Vec<Vec<f32>> {
        self.logits_of(leads, &[true; INPUT_LEADS])
    }

    /// [`Delineator::logits`] with a one-lead network run only on the leads `run` marks (the
    /// others get empty rows, at no cost: a lead that failed quality is not worth its ~2 ms).
    /// A twelve-lead network reads all twelve and ignores `run`.
    pub fn logits_of(
        &self,
        leads: &[&[f32]; INPUT_LEADS],
        run: &[bool; INPUT_LEADS],
    ) -> Vec<Vec<f32>> {
        let n = leads[0].len();
        let rows = if self.per_lead { INPUT_LEADS } else { 1 };
        if n < self.min_len() || leads.iter().any(|l| l.len() != n) {
            return vec![Vec::new(); rows * CLASSES];
        }
        let inputs: Vec<&[&[f32]]> = if self.per_lead {
            leads.chunks(1).collect()
        } else {
            vec![&leads[..]]
        };
        let mut out = Vec::with_capacity(rows * CLASSES);
        for (i, input) in inputs.into_iter().enumerate() {
            if self.per_lead && !run[i] {
                out.extend(std::iter::repeat_n(Vec::new(), CLASSES));
                continue;
            }
            let mut sum = vec![0.0f32; CLASSES * n];
            for net in &self.nets {
                let z = pulp::Arch::new().dispatch(Forward {
                    net,
                    leads: input,
                    n,
                });
                for (s, v) in sum.iter_mut().zip(&z) {
                    *s += v;
                }
            }
            let k = self.nets.len() as f32;
            out.extend(
                sum.chunks_exact(n)
                    .map(|row| row.iter().map(|v| v / k).collect::<Vec<f32>>()),
            );
        }
        out
    }

    /// The shortest input every pooling level keeps at least one sample of.
    pub fn min_len(&self) -> usize {
        let levels = self
            .nets
            .iter()
            .map(|n| (n.len() + 1) / 4)
            .max()
            .unwrap_or(1);
        1 << (levels - 1)
    }

    /// Each sample's most likely class (0 background, 1 P, 2 QRS, 3 T): one row for twelve-lead
    /// networks, one per lead for one-lead networks; empty rows where [`Delineator::logits`]
    /// has them.
    pub fn labels(&self, leads: &[&[f32]; INPUT_LEADS]) -> Vec<Vec<u8>> {
        self.labels_of(leads, &[true; INPUT_LEADS])
    }

    /// [`Delineator::labels`] run only on the leads `run` marks ([`Delineator::logits_of`]).
    pub fn labels_of(
        &self,
        leads: &[&[f32]; INPUT_LEADS],
        run: &[bool; INPUT_LEADS],
    ) -> Vec<Vec<u8>> {
        let z = self.logits_of(leads, run);
        z.chunks_exact(CLASSES)
            .map(|c| {
                (0..c[0].len())
                    .map(|t| {
                        let mut best = 0;
                        for k in 1..CLASSES {
                            if c[k][t] > c[best][t] {
                                best = k;
                            }
                        }
                        best as u8
                    })
                    .collect()
            })
            .collect()
    }

    /// The probe stored with the weights and the trainer's output on it (`[12][m]`, `[4][m]`).
    pub fn probe(&self) -> (&[f32], &[f32]) {
        (&self.probe, &self.probe_out)
    }
}

impl Conv {
    fn regroup(cout: usize, cin: usize, taps: usize, w: &[f32], b: Vec<f32>) -> Conv {
        let groups = cout.div_ceil(GROUP);
        let mut g = vec![0.0; groups * cin * taps * GROUP];
        for co in 0..cout {
            for ci in 0..cin {
                for k in 0..taps {
                    g[(((co / GROUP) * cin + ci) * taps + k) * GROUP + co % GROUP] =
                        w[(co * cin + ci) * taps + k];
                }
            }
        }
        Conv {
            cout,
            cin,
            taps,
            w: g,
            b,
        }
    }
}

/// The whole forward pass, for pulp's dispatch.
struct Forward<'a> {
    net: &'a [Conv],
    leads: &'a [&'a [f32]],
    n: usize,
}

impl pulp::WithSimd for Forward<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> Vec<f32> {
        let Forward { net, leads, n } = self;
        let mut x: Vec<f32> = leads.iter().flat_map(|l| l.iter().copied()).collect();
        let mut len = n;
        let levels = (net.len() + 1) / 4;
        let mut layer = net.iter();
        let mut skips: Vec<(Vec<f32>, usize)> = Vec::with_capacity(levels);
        let mut conv = |x: &[f32], len: usize, relu: bool| match layer.next() {
            Some(c) => conv1d(simd, c, x, len, relu),
            None => Vec::new(),
        };
        for lvl in 0..levels {
            x = conv(&x, len, true);
            x = conv(&x, len, true);
            if lvl + 1 < levels {
                let pooled = max_pool2(&x, len);
                skips.push((x, len));
                x = pooled;
                len /= 2;
            }
        }
        while let Some((skip, skip_len)) = skips.pop() {
            let mut up = upsample(&x, len, skip_len);
            up.extend_from_slice(&skip);
            len = skip_len;
            x = conv(&up, len, true);
            x = conv(&x, len, true);
        }
        conv(&x, len, false)
    }
}

/// Halves each row (`[c][len]` to `[c][len / 2]`) by the maximum of pairs.
fn max_pool2(x: &[f32], len: usize) -> Vec<f32> {
    let half = len / 2;
    let mut out = Vec::with_capacity(x.len() / len.max(1) * half);
    for row in x.chunks_exact(len) {
        out.extend(row[..2 * half].chunks_exact(2).map(|p| p[0].max(p[1])));
    }
    out
}

/// Nearest-neighbour upsampling of each row from `len` to `to` samples (PyTorch's `nearest`:
/// output `i` takes input `floor(i * (len / to))`, computed in `f32` as PyTorch does).
fn upsample(x: &[f32], len: usize, to: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / len.max(1) * to);
    for row in x.chunks_exact(len) {
        let scale = len as f32 / to as f32;
        out.extend((0..to).map(|i| row[((i as f32 * scale).floor() as usize).min(len - 1)]));
    }
    out
}

/// A "same" convolution of `x` (`[cin][len]`) with zero padding: `[cout][len]`, ReLU if asked.
/// Tiles of four output channels by two vectors of time.
#[inline(always)]
fn conv1d<S: pulp::Simd>(simd: S, c: &Conv, x: &[f32], len: usize, relu: bool) -> Vec<f32> {
    let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
    let tile = 2 * lanes;
    let tiles = len.div_ceil(tile);
    let half = c.taps / 2;
    // Each input row padded: `half` zeros before, zeros after up to the last tile's reach.
    let stride = tiles * tile + c.taps - 1;
    let mut xp = vec![0.0f32; c.cin * stride];
    for (dst, src) in xp.chunks_exact_mut(stride).zip(x.chunks_exact(len)) {
        dst[half..half + len].copy_from_slice(src);
    }
    let groups = c.cout.div_ceil(GROUP);
    let mut out = vec![0.0f32; c.cout * len];
    let zero = simd.splat_f32s(0.0);
    // A full vector read at any offset: pulp's vectors are aligned as `f32` is.
    let load = |s: &[f32]| S::as_simd_f32s(s).0.first().copied().unwrap_or(zero);
    let per_group = c.cin * c.taps * GROUP;
    let mut acc = [[zero; 2]; GROUP];
    let mut spill = vec![0.0f32; tile];
    for g in 0..groups {
        let wg = &c.w[g * per_group..(g + 1) * per_group];
        for t in 0..tiles {
            let t0 = t * tile;
            for (j, a) in acc.iter_mut().enumerate() {
                let bias = simd.splat_f32s(c.b.get(g * GROUP + j).copied().unwrap_or(0.0));
                *a = [bias; 2];
            }
            for (ci, row) in xp.chunks_exact(stride).enumerate() {
                let wr = &wg[ci * c.taps * GROUP..(ci + 1) * c.taps * GROUP];
                for (k, w4) in wr.chunks_exact(GROUP).enumerate() {
                    let x0 = load(&row[t0 + k..t0 + k + lanes]);
                    let x1 = load(&row[t0 + k + lanes..t0 + k + tile]);
                    for (a, &w) in acc.iter_mut().zip(w4) {
                        let w = simd.splat_f32s(w);
                        a[0] = simd.mul_add_e_f32s(w, x0, a[0]);
                        a[1] = simd.mul_add_e_f32s(w, x1, a[1]);
                    }
                }
            }
            let valid = tile.min(len - t0);
            for (j, a) in acc.iter().enumerate() {
                let co = g * GROUP + j;
                if co >= c.cout {
                    break;
                }
                let (s0, s1) = spill.split_at_mut(lanes);
                simd.partial_store_f32s(s0, a[0]);
                simd.partial_store_f32s(s1, a[1]);
                let dst = &mut out[co * len + t0..co * len + t0 + valid];
                for (d, &v) in dst.iter_mut().zip(&spill) {
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    out
}

/// A run of one class: first and last sample (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First sample.
    pub on: usize,
    /// Last sample.
    pub off: usize,
}

/// Runs of `class` in `labels` at least `min_len` samples long, after closing gaps (other
/// labels) of at most `max_gap` samples between two runs.
pub fn segments(labels: &[u8], class: u8, min_len: usize, max_gap: usize) -> Vec<Segment> {
    let mut runs: Vec<Segment> = Vec::new();
    let mut i = 0;
    while i < labels.len() {
        if labels[i] != class {
            i += 1;
            continue;
        }
        let on = i;
        while i + 1 < labels.len() && labels[i + 1] == class {
            i += 1;
        }
        match runs.last_mut() {
            Some(last) if on - last.off - 1 <= max_gap => last.off = i,
            _ => runs.push(Segment { on, off: i }),
        }
        i += 1;
    }
    runs.retain(|s| s.off - s.on + 1 >= min_len);
    runs
}

/// `w` of the learned position and `1 - w` of the rule-based one where both exist; otherwise
/// the rule-based one (or none).
fn both(rule: Option<usize>, learned: Option<usize>, w: f64) -> Option<usize> {
    match (rule, learned) {
        (Some(r), Some(l)) => Some((w * l as f64 + (1.0 - w) * r as f64).round() as usize),
        (r, _) => r,
    }
}

/// Shortest P wave and QRS complex kept (ms).
const MIN_PQRS_MS: f64 = 20.0;
/// Shortest T wave kept (ms).
const MIN_T_MS: f64 = 40.0;
/// Gaps closed inside one wave (ms).
const MAX_GAP_MS: f64 = 10.0;
/// A QRS belongs to a detected beat when its span comes within this of the beat's centre (ms).
const QRS_REACH_MS: f64 = 60.0;

/// One beat's learned boundaries from one row of labels.
#[derive(Debug, Clone, Copy, Default)]
struct Found {
    p_on: Option<usize>,
    p_off: Option<usize>,
    qrs_on: Option<usize>,
    qrs_off: Option<usize>,
    t_off: Option<usize>,
}

/// The learned boundaries of each beat in one row of labels (a whole record at `rate`): the QRS
/// is the labelled QRS at the beat's centre, the P wave the last labelled P before it (after the
/// previous beat's QRS) that overlaps the beat's rule-based P wave (none where the rule-based
/// delineator found none), the T wave the first labelled T after it (before the next beat's
/// QRS). A wave cut by the record's edge gives no boundary on that side.
fn found_in_row(beats: &[super::Beat], labels: &[u8], rate: f64) -> Vec<Option<Found>> {
    let ms = |v: f64| (v * rate / 1000.0).round() as usize;
    let gap = ms(MAX_GAP_MS);
    let p = segments(labels, 1, ms(MIN_PQRS_MS), gap);
    let qrs = segments(labels, 2, ms(MIN_PQRS_MS), gap);
    let t = segments(labels, 3, ms(MIN_T_MS), gap);
    let n = labels.len();
    let inner_on = |s: &Segment| (s.on > 0).then_some(s.on);
    let inner_off = |s: &Segment| (s.off + 1 < n).then_some(s.off);
    let reach = ms(QRS_REACH_MS);
    let qrs_of: Vec<Option<Segment>> = beats
        .iter()
        .map(|b| {
            qrs.iter()
                .filter(|s| s.on <= b.r + reach && b.r <= s.off + reach)
                .min_by_key(|s| {
                    if (s.on..=s.off).contains(&b.r) {
                        0
                    } else {
                        s.on.abs_diff(b.r).min(s.off.abs_diff(b.r))
                    }
                })
                .copied()
        })
        .collect();
    (0..beats.len())
        .map(|i| {
            let q = qrs_of[i]?;
            let prev_end = qrs_of[..i]
                .iter()
                .rev()
                .flatten()
                .next()
                .map_or(0, |s| s.off);
            let next_start = qrs_of[i + 1..].iter().flatten().next().map_or(n, |s| s.on);
            // Only the labelled P wave that overlaps the rule-based one: a stray P label
            // elsewhere in one row would otherwise set the earliest onset over the rows.
            let pw = match (beats[i].p_on, beats[i].p_off) {
                (Some(on), Some(off)) => p
                    .iter()
                    .rev()
                    .find(|s| s.off < q.on && s.on > prev_end && s.on <= off && on <= s.off),
                _ => None,
            };
            let tw = t.iter().find(|s| s.on > q.off && s.off < next_start);
            Some(Found {
                p_on: pw.and_then(inner_on),
                p_off: pw.and_then(inner_off),
                qrs_on: inner_on(&q),
                qrs_off: inner_off(&q),
                t_off: tw.and_then(inner_off),
            })
        })
        .collect()
}

/// Moves the beats' boundaries towards the network's (`rows` of labels of the whole record at
/// `rate`: one row from a twelve-lead network, or one per usable lead from a one-lead network,
/// whose onsets are the earliest over the rows and offsets the latest, as LUDB's global
/// reference is built). The rule-based delineator decides whether a wave is there (its P-wave
/// consistency checks keep atrial fibrillation's f waves out); each boundary both found is
/// `weights` of the way to the learned one. A beat at which no row has a QRS is unchanged.
pub fn refine(
    beats: &mut [super::Beat],
    rows: &[Vec<u8>],
    rate: f64,
    weights: &super::delineate::LearnedWeights,
) {
    let per_row: Vec<Vec<Option<Found>>> = rows
        .iter()
        .map(|labels| found_in_row(beats, labels, rate))
        .collect();
    for (i, b) in beats.iter_mut().enumerate() {
        let found: Vec<Found> = per_row.iter().filter_map(|r| r[i]).collect();
        if found.is_empty() {
            continue;
        }
        let earliest = |f: fn(&Found) -> Option<usize>| found.iter().filter_map(f).min();
        let latest = |f: fn(&Found) -> Option<usize>| found.iter().filter_map(f).max();
        b.qrs_on = both(b.qrs_on, earliest(|f| f.qrs_on), weights.qrs_on);
        b.qrs_off = both(b.qrs_off, latest(|f| f.qrs_off), weights.qrs_off);
        b.p_on = both(b.p_on, earliest(|f| f.p_on), weights.p_on);
        b.p_off = both(b.p_off, latest(|f| f.p_off), weights.p_off);
        b.t_off = both(b.t_off, latest(|f| f.t_off), weights.t_off);
    }
}

/// Runs the network on the probe stored with the weights: the largest absolute difference from
/// the trainer's output (a parity check of this inference against the trainer's).
pub fn probe_difference(net: &Delineator) -> f32 {
    let (probe, expected) = net.probe();
    let m = probe.len() / INPUT_LEADS;
    let rows: Vec<&[f32]> = probe.chunks_exact(m.max(1)).collect();
    let Ok(leads) = <[&[f32]; INPUT_LEADS]>::try_from(rows) else {
        return f32::INFINITY;
    };
    let got = net.logits(&leads);
    got.iter()
        .flatten()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_weights_load_and_reproduce_the_trainers_output() {
        let net = Delineator::embedded().expect("embedded weights parse");
        let d = probe_difference(net);
        assert!(d < 1e-4, "largest difference from PyTorch's output {d}");
    }

    #[test]
    fn damaged_weights_are_refused_with_the_reason() {
        assert_eq!(
            Delineator::parse(b"NOPE").err(),
            Some(DelineatorError::BadMagic)
        );
        let cut = &EMBEDDED[..EMBEDDED.len() / 2];
        assert!(matches!(
            Delineator::parse(cut),
            Err(DelineatorError::Truncated(_))
        ));
        let mut long = EMBEDDED.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert_eq!(
            Delineator::parse(&long).err(),
            Some(DelineatorError::Trailing(8))
        );
        // The first layer reading 11 leads instead of 12.
        let meta_len = u32::from_le_bytes([EMBEDDED[12], EMBEDDED[13], EMBEDDED[14], EMBEDDED[15]]);
        let cin_at = 20 + meta_len as usize + 4 + 4;
        let mut wrong = EMBEDDED.to_vec();
        wrong[cin_at] = 11;
        assert!(matches!(
            Delineator::parse(&wrong),
            Err(DelineatorError::Shape {
                net: 0,
                layer: 0,
                cin: 11,
                ..
            }) | Err(DelineatorError::Truncated(_))
        ));
        let mut nan = EMBEDDED.to_vec();
        nan[cin_at + 8..cin_at + 12].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            Delineator::parse(&nan).err(),
            Some(DelineatorError::NonFinite { net: 0, layer: 0 })
        );
        let mut v2 = EMBEDDED.to_vec();
        v2[4] = 2;
        assert_eq!(
            Delineator::parse(&v2).err(),
            Some(DelineatorError::Version(2))
        );
    }

    #[test]
    fn segments_close_short_gaps_and_drop_short_runs() {
        let l = [0, 2, 2, 2, 0, 2, 2, 0, 0, 0, 2, 0, 1, 1, 1, 1];
        assert_eq!(segments(&l, 2, 3, 1), vec![Segment { on: 1, off: 6 }]);
        assert_eq!(segments(&l, 1, 4, 0), vec![Segment { on: 12, off: 15 }]);
        assert_eq!(segments(&l, 1, 5, 0), vec![]);
    }

    #[test]
    fn refine_moves_found_boundaries_by_their_weights_and_keeps_the_rest() {
        use crate::measure::{Beat, LearnedWeights};
        // P 40-69, QRS 100-139, T 200-299 (beat 1); QRS 400-439 and a T cut by the end (beat 2).
        let mut labels = vec![0u8; 520];
        labels[40..70].fill(1);
        labels[100..140].fill(2);
        labels[200..300].fill(3);
        labels[400..440].fill(2);
        labels[480..520].fill(3);
        let rule = |r: usize, t_off: Option<usize>| Beat {
            r,
            p_on: Some(r - 90),
            p_off: Some(r - 40),
            qrs_on: Some(r - 16),
            qrs_off: Some(r + 24),
            t_off,
        };
        let mut beats = vec![rule(120, Some(310)), rule(420, Some(515))];
        let w = LearnedWeights {
            p_on: 0.0,
            p_off: 0.5,
            qrs_on: 0.25,
            qrs_off: 1.0,
            t_off: 0.5,
        };
        refine(&mut beats, &[labels], 500.0, &w);
        let b = beats[0];
        assert_eq!(b.p_on, Some(30), "weight 0 keeps the rule-based onset");
        assert_eq!(
            b.p_off,
            Some(75),
            "half way between 80 and 69 (74.5 rounds up)"
        );
        assert_eq!(b.qrs_on, Some(103), "a quarter of the way from 104 to 100");
        assert_eq!(b.qrs_off, Some(139), "the learned offset alone");
        assert_eq!(
            b.t_off,
            Some(305),
            "half way between 310 and 299 (304.5 rounds up)"
        );
        // The second beat's T runs into the record's end: no learned offset, the rule's stays;
        // no P wave labelled between the beats: the rule-based P stays too.
        let c = beats[1];
        assert_eq!(c.t_off, Some(515));
        assert_eq!((c.p_on, c.p_off), (Some(330), Some(380)));
        assert_eq!(c.qrs_off, Some(439));
    }

    #[test]
    fn rows_of_several_leads_give_the_earliest_onsets_and_latest_offsets() {
        use crate::measure::{Beat, LearnedWeights};
        let row = |p: (usize, usize), q: (usize, usize), t: (usize, usize)| {
            let mut l = vec![0u8; 400];
            l[p.0..=p.1].fill(1);
            l[q.0..=q.1].fill(2);
            l[t.0..=t.1].fill(3);
            l
        };
        let rows = [
            row((40, 70), (100, 140), (200, 300)),
            row((35, 66), (104, 146), (210, 310)),
            // A lead without a QRS at the beat says nothing about it.
            vec![0u8; 400],
        ];
        let mut beats = [Beat {
            r: 120,
            p_on: Some(20),
            p_off: Some(60),
            qrs_on: Some(90),
            qrs_off: Some(150),
            t_off: Some(330),
        }];
        let all_learned = LearnedWeights {
            p_on: 1.0,
            p_off: 1.0,
            qrs_on: 1.0,
            qrs_off: 1.0,
            t_off: 1.0,
        };
        refine(&mut beats, &rows, 500.0, &all_learned);
        let b = beats[0];
        assert_eq!((b.p_on, b.p_off), (Some(35), Some(70)));
        assert_eq!((b.qrs_on, b.qrs_off), (Some(100), Some(146)));
        assert_eq!(b.t_off, Some(310));
    }

    #[test]
    fn only_p_labels_overlapping_the_rule_based_p_wave_count() {
        use crate::measure::{Beat, LearnedWeights};
        let mut one = vec![0u8; 400];
        one[62..=88].fill(1);
        one[100..=140].fill(2);
        // Another row labels its P wave well before the rule-based one (60-90): it is ignored.
        let mut stray = one.clone();
        stray[62..=88].fill(0);
        stray[10..=40].fill(1);
        let rule = Beat {
            r: 120,
            p_on: Some(60),
            p_off: Some(90),
            qrs_on: Some(98),
            qrs_off: Some(142),
            t_off: None,
        };
        let learned = LearnedWeights {
            p_on: 1.0,
            p_off: 1.0,
            ..LearnedWeights::default()
        };
        let mut beats = [rule];
        refine(&mut beats, &[one.clone(), stray.clone()], 500.0, &learned);
        assert_eq!((beats[0].p_on, beats[0].p_off), (Some(62), Some(88)));
        // Only the stray row: no learned P wave, the rule-based one stays.
        let mut beats = [rule];
        refine(&mut beats, &[stray], 500.0, &learned);
        assert_eq!((beats[0].p_on, beats[0].p_off), (Some(60), Some(90)));
        // No rule-based P wave: the labels add none.
        let mut beats = [Beat {
            p_on: None,
            p_off: None,
            ..rule
        }];
        refine(&mut beats, &[one], 500.0, &learned);
        assert_eq!((beats[0].p_on, beats[0].p_off), (None, None));
    }

    #[test]
    fn leads_not_run_get_empty_rows_and_the_others_are_unchanged() {
        let net = Delineator::embedded().expect("embedded weights parse");
        assert!(net.per_lead, "the shipped network is the one-lead one");
        // Twelve different leads: a sine burst at a lead-specific phase.
        let leads: Vec<Vec<f32>> = (0..INPUT_LEADS)
            .map(|l| {
                (0..1000)
                    .map(|i| {
                        (0.6 * ((i as f32) * 0.02 + l as f32).sin()) * ((i % 400) < 60) as u8 as f32
                    })
                    .collect()
            })
            .collect();
        let input: [&[f32]; INPUT_LEADS] = std::array::from_fn(|l| leads[l].as_slice());
        let all = net.labels(&input);
        // Rows that differ, so a row moved to another lead's place would show.
        assert!(
            all[1] != all[3] && all[8] != all[10],
            "the test input is too uniform"
        );
        let mut run = [true; INPUT_LEADS];
        run[2] = false;
        run[9] = false;
        let some = net.labels_of(&input, &run);
        assert_eq!(some.len(), INPUT_LEADS);
        for l in 0..INPUT_LEADS {
            if run[l] {
                assert_eq!(some[l], all[l], "lead {l} changed");
                assert_eq!(some[l].len(), 1000);
            } else {
                assert!(some[l].is_empty(), "lead {l} was run");
            }
        }
    }

    #[test]
    fn inputs_too_short_or_ragged_give_no_labels_and_change_no_beat() {
        let net = Delineator::embedded().expect("embedded weights parse");
        assert_eq!(net.min_len(), 8);
        let short = [0.1f32; 7];
        assert!(
            net.labels(&[&short[..]; INPUT_LEADS])
                .iter()
                .all(Vec::is_empty)
        );
        let (a, b) = ([0.0f32; 64], [0.0f32; 63]);
        let mut ragged: [&[f32]; INPUT_LEADS] = [&a[..]; INPUT_LEADS];
        ragged[5] = &b[..];
        assert!(net.labels(&ragged).iter().all(Vec::is_empty));
        assert!(
            net.labels(&[&a[..]; INPUT_LEADS])
                .iter()
                .all(|r| r.len() == 64)
        );
        let beat = crate::measure::Beat {
            r: 3,
            p_on: None,
            p_off: None,
            qrs_on: Some(1),
            qrs_off: Some(5),
            t_off: None,
        };
        let mut beats = [beat];
        refine(&mut beats, &[Vec::new()], 500.0, &Default::default());
        assert_eq!(beats, [beat]);
    }

    #[test]
    fn pooling_and_upsampling_follow_pytorch() {
        let x = [1.0, 5.0, 2.0, 3.0, 9.0, 0.0, 4.0];
        assert_eq!(max_pool2(&x, 7), vec![5.0, 3.0, 9.0]);
        assert_eq!(
            upsample(&[1.0, 2.0, 3.0], 3, 7),
            vec![1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        );
    }
}
