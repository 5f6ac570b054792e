//! Tokens: 25-sample patches embedded by one shared linear layer, then merged with lead and time
//! knowledge (`concat_mlp`: `[x, k_lead[row], k_time[col]]` through an MLP; `add_sincos`: plus a
//! frozen 2-D sin-cos table at `row*200 + col`).

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
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

/// Patch embedding and knowledge merging.
#[derive(Module, Debug)]
pub struct TokenEmbed<B: Backend> {
    /// `Linear(25 -> D)`, shared by every patch.
    pub patch_embed: Linear<B>,
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
    /// Builds the embedding for width `d`; `concat_mlp` selects the merging variant.
    pub fn new(d: usize, concat_mlp: bool, device: &B::Device) -> Self {
        let k_time = Tensor::from_data(
            TensorData::new(
                sincos_1d(&(0..TIME_COLUMNS).collect::<Vec<_>>(), d),
                [TIME_COLUMNS, d],
            ),
            device,
        );
        TokenEmbed {
            patch_embed: LinearConfig::new(PATCH_SAMPLES, d).init(device),
            k_lead: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
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

    /// `[batch, 15, 1250]` millivolts to `[batch, 750, D]` tokens carrying their position.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, _, _] = x.dims();
        let patches = x.reshape([
            b,
            SLOT_COUNT * (SLOT_SAMPLES / PATCH_SAMPLES),
            PATCH_SAMPLES,
        ]); // [b, 750, 25]
        let tokens = self.patch_embed.forward(patches); // [b, 750, d]
        let d = tokens.dims()[2];
        match (&self.merge_fc1, &self.merge_fc2, &self.sincos) {
            (Some(fc1), Some(fc2), _) => {
                let lead = self
                    .k_lead
                    .val()
                    .select(0, self.rows.clone())
                    .unsqueeze_dim::<3>(0)
                    .expand([b, TOKEN_COUNT, d]);
                let time = self
                    .k_time
                    .val()
                    .select(0, self.cols.clone())
                    .unsqueeze_dim::<3>(0)
                    .expand([b, TOKEN_COUNT, d]);
                let cat = Tensor::cat(vec![tokens, lead, time], 2); // [b, 750, 3d]
                fc2.forward(gelu(fc1.forward(cat)))
            }
            (_, _, Some(table)) => tokens + table.clone().unsqueeze_dim::<3>(0),
            _ => tokens,
        }
    }
}
