//! Tokens: one per 50 ms of each slot, made by one shared linear layer over the 25-sample patch
//! (the seed's `linear`) or by a convolutional stem over the whole 2.5 s slot (`conv`: it sees the
//! wave shape and neighbouring beats around the patch), then merged with lead and time knowledge
//! (`concat_mlp`: `[x, k_lead[row], k_time[col]]` through an MLP; `add_sincos`: plus a frozen 2-D
//! sin-cos table at `row*200 + col`).

use super::fused::{gelu, layer_norm};
use super::linear::linear;
use crate::precision::like;
use burn::module::Param;
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::DType;
use eknet_shared::layout::{
    LEAD_ROWS, PATCH_SAMPLES, SLOT_COUNT, SLOT_SAMPLES, TIME_COLUMNS, TOKEN_COUNT, token_cols,
    token_rows,
};

/// 1-D sin-cos encoding of `positions` in `dim` dimensions (`dim` even): `sin` on even, `cos` on
/// odd dimensions, frequencies `10000^(-2i/dim)`. Row-major `[positions.len(), dim]`.
pub fn sincos_1d(positions: &[usize], dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(positions.len() * dim);
    for &p in positions {
        for j in 0..dim {
            let i = (j / 2) as f64;
            let angle = p as f64 / 10000f64.powf(2.0 * i / dim as f64);
            out.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    out
}

/// The release's frozen 2-D table for each of the 750 tokens: first D/2 dimensions encode the
/// time column, last D/2 the lead row. `[750, d]`, row-major.
pub fn sincos_2d_tokens(dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let cols = sincos_1d(&token_cols(), half);
    let rows = sincos_1d(&token_rows(), half);
    let mut out = Vec::with_capacity(TOKEN_COUNT * dim);
    for t in 0..TOKEN_COUNT {
        out.extend_from_slice(&cols[t * half..(t + 1) * half]);
        out.extend_from_slice(&rows[t * half..(t + 1) * half]);
    }
    out
}

fn index_tensor<B: Backend>(values: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), device)
}

/// Samples per sub-patch of the stem's first layers (10 ms).
pub const STEM_SUB: usize = 5;
/// Sub-patches per token (5 x 10 ms = one 50 ms token).
pub const STEM_SUBS_PER_TOKEN: usize = PATCH_SAMPLES / STEM_SUB;

/// `x` `[n, t, c]` moved `k` steps later along `t` (`k` < 0: earlier), zeros shifted in: the
/// output at `t` is the input at `t - k`.
pub fn shift_time<B: Backend>(x: Tensor<B, 3>, k: isize) -> Tensor<B, 3> {
    let [n, t, c] = x.dims();
    let m = k.unsigned_abs().min(t);
    if m == 0 {
        return x;
    }
    let zeros = Tensor::zeros([n, m, c], (&x.device(), x.dtype()));
    if k > 0 {
        Tensor::cat(vec![zeros, x.slice([0..n, 0..t - m, 0..c])], 1)
    } else {
        Tensor::cat(vec![x.slice([0..n, m..t, 0..c]), zeros], 1)
    }
}

/// A 1-D convolution of kernel 3 and dilation `d` along `t` of `[n, t, c]`, zero padded to keep
/// the length, written as `[x(t-d), x(t), x(t+d)] @ W`: the same arithmetic as a convolution,
/// in one matrix product (fast forward and backward on every backend; exported as a product too).
pub fn conv3<B: Backend>(x: Tensor<B, 3>, d: usize, layer: &Linear<B>) -> Tensor<B, 3> {
    let di = d as isize;
    let cat = Tensor::cat(
        vec![shift_time(x.clone(), di), x.clone(), shift_time(x, -di)],
        2,
    );
    linear(layer, cat)
}

/// The signal each slot belongs to: the four lead II slots are one continuous 10 s rhythm strip;
/// every other slot is a 2.5 s signal of its own.
pub fn slot_stream(slot: usize) -> usize {
    if (1..=4).contains(&slot) { 1 } else { slot }
}

/// For the 15 slots laid end to end (`per_slot` positions each), 1 where the position `t - k`
/// exists and belongs to the same signal as `t`, else 0: a convolution over the whole sheet that
/// never mixes two signals, yet runs through the rhythm strip's slot boundaries.
pub fn stream_mask(per_slot: usize, k: isize) -> Vec<f32> {
    let total = SLOT_COUNT * per_slot;
    (0..total)
        .map(|t| {
            let src = t as isize - k;
            let same = src >= 0
                && (src as usize) < total
                && slot_stream(src as usize / per_slot) == slot_stream(t / per_slot);
            f32::from(u8::from(same))
        })
        .collect()
}

/// [`conv3`] over the 15 slots laid end to end (`[b, 15 * per_slot, c]`), each tap masked by
/// [`stream_mask`].
pub fn conv3_sheet<B: Backend>(
    x: Tensor<B, 3>,
    d: usize,
    layer: &Linear<B>,
    per_slot: usize,
) -> Tensor<B, 3> {
    let di = d as isize;
    let device = x.device();
    let dtype = x.dtype();
    let mask = |k: isize| {
        let m = stream_mask(per_slot, k);
        let n = m.len();
        Tensor::<B, 3>::from_data(TensorData::new(m, [1, n, 1]), (&device, dtype))
    };
    let cat = Tensor::cat(
        vec![
            shift_time(x.clone(), di) * mask(di),
            x.clone(),
            shift_time(x, -di) * mask(-di),
        ],
        2,
    );
    linear(layer, cat)
}

/// The convolutional token stem. Every layer is a 1-D convolution written as a matrix product over
/// neighbouring positions, run over the 15 slots laid end to end with taps that never cross from
/// one signal into another, except along the rhythm strip, whose four II slots are one continuous
/// 10 s signal ([`conv3_sheet`]):
/// 1. the slot as 250 sub-patches of 10 ms; each with its two neighbours (15 samples) through
///    `Linear(15 -> C)`, GELU;
/// 2. kernel 3 over sub-patches, `Linear(3C -> C)`, GELU;
/// 3. five sub-patches to one 50 ms token, `Linear(5C -> D)`;
/// 4. residual blocks at token rate, `h + conv3_d(gelu(h))` with dilation `d` = 1, 2, 4, ...
///    (four blocks see about 1.6 s around a token, five 3.2 s: neighbouring beats, so R-R
///    intervals);
/// 5. a LayerNorm over each token's D features.
///
/// With `stem_batch_norm`, every product of steps 1-4 is followed by a batch norm over its
/// channels (batch statistics in training, running statistics at inference, where the export
/// folds it into the product's weights).
#[derive(Module, Debug)]
pub struct ConvStem<B: Backend> {
    /// Layer 1: `Linear(3 * 5 -> C)`.
    pub sub_embed: Linear<B>,
    /// Layer 2: `Linear(3C -> C)`.
    pub sub_conv: Linear<B>,
    /// Layer 3: `Linear(5C -> D)`.
    pub to_token: Linear<B>,
    /// Token-rate residual blocks, `Linear(3D -> D)` each.
    pub blocks: Vec<Linear<B>>,
    /// Norm of each token.
    pub norm: LayerNorm<B>,
    /// Batch norms after layers 1, 2, 3 and each block (empty without `stem_batch_norm`).
    pub batch_norms: Vec<BatchNorm<B>>,
}

/// A batch norm over the channels of `[n, t, c]`.
fn channel_norm<B: Backend>(bn: Option<&BatchNorm<B>>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match bn {
        // Batch norms run in f32 (their statistics are f32 under mixed precision too).
        Some(bn) => {
            let dtype = x.dtype();
            like(
                bn.forward(like(x, DType::F32).swap_dims(1, 2))
                    .swap_dims(1, 2),
                dtype,
            )
        }
        None => x,
    }
}

impl<B: Backend> ConvStem<B> {
    /// A stem of `channels` sub-patch channels, `blocks` residual blocks, width `d`, with batch
    /// norms when `batch_norm`.
    pub fn new(
        d: usize,
        channels: usize,
        blocks: usize,
        batch_norm: bool,
        device: &B::Device,
    ) -> Self {
        let widths = [channels, channels, d]
            .into_iter()
            .chain(std::iter::repeat_n(d, blocks));
        ConvStem {
            batch_norms: if batch_norm {
                widths
                    .map(|w| BatchNormConfig::new(w).init(device))
                    .collect()
            } else {
                Vec::new()
            },
            sub_embed: LinearConfig::new(3 * STEM_SUB, channels).init(device),
            sub_conv: LinearConfig::new(3 * channels, channels).init(device),
            to_token: LinearConfig::new(STEM_SUBS_PER_TOKEN * channels, d).init(device),
            blocks: (0..blocks)
                .map(|_| LinearConfig::new(3 * d, d).init(device))
                .collect(),
            norm: LayerNormConfig::new(d).init(device),
        }
    }

    /// `[batch, 15, 1250]` to `[batch, 750, D]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, slots, samples] = x.dims();
        let subs = samples / STEM_SUB;
        let bn = |i: usize, x| channel_norm(self.batch_norms.get(i), x);
        let h = x.reshape([b, slots * subs, STEM_SUB]); // [b, 3750, 5]
        let h = gelu(bn(0, conv3_sheet(h, 1, &self.sub_embed, subs))); // [b, 3750, C]
        let h = gelu(bn(1, conv3_sheet(h, 1, &self.sub_conv, subs)));
        let c = h.dims()[2];
        let tokens = subs / STEM_SUBS_PER_TOKEN;
        let h = h.reshape([b, slots * tokens, STEM_SUBS_PER_TOKEN * c]);
        let mut h = bn(2, linear(&self.to_token, h)); // [b, 750, D]
        for (i, block) in self.blocks.iter().enumerate() {
            h = h.clone() + bn(3 + i, conv3_sheet(gelu(h), 1 << i, block, tokens));
        }
        layer_norm(&self.norm, h)
    }
}

/// Patch embedding and knowledge merging.
#[derive(Module, Debug)]
pub struct TokenEmbed<B: Backend> {
    /// `Linear(25 -> D)`, shared by every patch (`linear` embedding).
    pub patch_embed: Option<Linear<B>>,
    /// The convolutional stem (`conv` embedding).
    pub stem: Option<ConvStem<B>>,
    /// Lead knowledge `[12, D]`.
    pub k_lead: Param<Tensor<B, 2>>,
    /// Time knowledge `[200, D]`, initialised as 1-D sin-cos.
    pub k_time: Param<Tensor<B, 2>>,
    /// Merging MLP first layer `Linear(3D -> D)` (`concat_mlp` only).
    pub merge_fc1: Option<Linear<B>>,
    /// Merging MLP second layer `Linear(D -> D)` (`concat_mlp` only).
    pub merge_fc2: Option<Linear<B>>,
    /// Frozen 2-D sin-cos table `[750, D]` (`add_sincos` only; not a parameter, not saved).
    pub sincos: Option<Tensor<B, 2>>,
    /// Lead row of each token `[750]`.
    pub rows: Tensor<B, 1, Int>,
    /// Time column of each token `[750]`.
    pub cols: Tensor<B, 1, Int>,
}

impl<B: Backend> TokenEmbed<B> {
    /// Builds the embedding for width `d`; `concat_mlp` selects the merging variant, `stem`
    /// (channels, blocks, batch norm) the convolutional token embedding instead of the linear
    /// one, and `lead_std` the lead knowledge's initial standard deviation.
    pub fn new(
        d: usize,
        concat_mlp: bool,
        stem: Option<(usize, usize, bool)>,
        lead_std: f64,
        device: &B::Device,
    ) -> Self {
        let k_time = Tensor::from_data(
            TensorData::new(
                sincos_1d(&(0..TIME_COLUMNS).collect::<Vec<_>>(), d),
                [TIME_COLUMNS, d],
            ),
            device,
        );
        TokenEmbed {
            patch_embed: stem
                .is_none()
                .then(|| LinearConfig::new(PATCH_SAMPLES, d).init(device)),
            stem: stem.map(|(channels, blocks, bn)| ConvStem::new(d, channels, blocks, bn, device)),
            k_lead: Initializer::Normal {
                mean: 0.0,
                std: lead_std,
            }
            .init([LEAD_ROWS, d], device),
            k_time: Param::from_tensor(k_time),
            merge_fc1: concat_mlp.then(|| LinearConfig::new(3 * d, d).init(device)),
            merge_fc2: concat_mlp.then(|| LinearConfig::new(d, d).init(device)),
            sincos: (!concat_mlp).then(|| {
                Tensor::from_data(
                    TensorData::new(sincos_2d_tokens(d), [TOKEN_COUNT, d]),
                    device,
                )
            }),
            rows: index_tensor(&token_rows(), device),
            cols: index_tensor(&token_cols(), device),
        }
    }

    /// `[batch, 750, D]`: each token position's lead (a row of `leads`, `[12, D]`) plus its time
    /// knowledge, no signal (what the stage-1 token decoder asks with).
    pub fn position_knowledge(&self, leads: Tensor<B, 2>, b: usize) -> Tensor<B, 3> {
        let lead = leads.select(0, self.rows.clone());
        let time = self.k_time.val().select(0, self.cols.clone());
        let [t, d] = lead.dims();
        (lead + time).unsqueeze_dim::<3>(0).expand([b, t, d])
    }

    /// `[batch, 15, 1250]` millivolts to `[batch, 750, D]` tokens carrying their position.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_at(x, None)
    }

    /// Whether each token's embedding depends only on its own patch and position (the linear
    /// patch embedding), so the embedding of some tokens is those rows of [`forward`]'s.
    pub fn per_token(&self) -> bool {
        self.stem.is_none()
    }

    /// [`forward`], or with `index` (`[batch, k]` token numbers, [`per_token`] embeddings only)
    /// the `[batch, k, D]` embeddings of those tokens alone: the same rows, without computing
    /// (and differentiating) the others. Training embeds only the tokens the drop keeps.
    pub fn forward_at(&self, x: Tensor<B, 3>, index: Option<Tensor<B, 2, Int>>) -> Tensor<B, 3> {
        let [b, _, _] = x.dims();
        let pick = |t: Tensor<B, 3>, index: &Option<Tensor<B, 2, Int>>| match index {
            Some(idx) => {
                let [rows, k] = idx.dims();
                let [tb, n, w] = t.dims();
                let t = if tb == rows {
                    t
                } else {
                    t.expand([rows, n, w])
                };
                t.gather(1, idx.clone().unsqueeze_dim::<3>(2).expand([rows, k, w]))
            }
            None => t,
        };
        let tokens = match (&self.stem, &self.patch_embed) {
            (Some(stem), _) => pick(stem.forward(x), &index),
            (None, Some(layer)) => {
                let patches = x.reshape([
                    b,
                    SLOT_COUNT * (SLOT_SAMPLES / PATCH_SAMPLES),
                    PATCH_SAMPLES,
                ]); // [b, 750, 25]
                linear(layer, pick(patches, &index)) // [b, 750 or k, d]
            }
            // `new` always builds one of the two; an empty module embeds nothing.
            (None, None) => Tensor::zeros(
                [b, TOKEN_COUNT, self.k_lead.dims()[1]],
                (&x.device(), x.dtype()),
            ),
        };
        let d = tokens.dims()[2];
        match (&self.merge_fc1, &self.merge_fc2, &self.sincos) {
            (Some(fc1), Some(fc2), _) => {
                // fc1 over [x, k_lead[row], k_time[col]] (`3d` inputs) is the sum of three
                // products with row blocks of its weight; the lead and time terms are the same
                // for every sample, so they are computed once per call (`[750, d]`) instead of
                // per sample, and the `[b, 750, 3d]` concatenation is never built.
                let w = fc1.weight.val(); // [3d, d]
                let lead = self.k_lead.val().select(0, self.rows.clone()); // [750, d]
                let time = self.k_time.val().select(0, self.cols.clone()); // [750, d]
                let mut position = lead.matmul(w.clone().slice([d..2 * d, 0..d]))
                    + time.matmul(w.clone().slice([2 * d..3 * d, 0..d])); // [750, d]
                if let Some(bias) = &fc1.bias {
                    position = position + bias.val().unsqueeze_dim::<2>(0);
                }
                let h = tokens.matmul(w.slice([0..d, 0..d]).unsqueeze_dim::<3>(0))
                    + pick(position.unsqueeze_dim::<3>(0), &index); // [b, 750 or k, d]
                linear(fc2, gelu(h))
            }
            (_, _, Some(table)) => {
                let dtype = tokens.dtype();
                tokens + pick(like(table.clone(), dtype).unsqueeze_dim::<3>(0), &index)
            }
            _ => tokens,
        }
    }
}
