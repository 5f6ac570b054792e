//! The stage-1 token decoder, as in a masked autoencoder: each kept token's encoder output back at
//! its place on the 3x4 sheet, a learned mask token at each dropped one, plus the decoder's own
//! lead embedding and the time knowledge; then `DECODER_DEPTH` times self-attention across the
//! leads recorded in the same 50 ms (3 or 4 tokens of one column of the sheet: the limb leads are
//! linear in each other, the chest leads close to it) and a kernel-3 convolution along each
//! slot's 50 tokens (the neighbours in time of the same lead); `Linear(D -> 25)` per token.
//! A dropped token is rebuilt from what the other leads show at that moment and from its own
//! lead around it, which the encoder's outputs must therefore carry. Stage 1 only: stage 2 and
//! the exported graph do not have it.

use super::block::{Block, NormPlacement};
use super::embed::conv3;
use super::fused::gelu;
use super::ints;
use super::linear::linear;
use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use eknet_shared::layout::{
    LEAD_ROWS, PATCH_SAMPLES, PATCHES_PER_SLOT, SLOT_COUNT, SLOT_SAMPLES, TOKEN_COUNT,
};

/// Column blocks of the decoder.
pub const DECODER_DEPTH: usize = 2;

/// The 15 slots grouped by the 2.5 s column of the 3x4 sheet they were recorded in, four per
/// column; 15 is the pad that fills the first column (I, II_1, III).
pub const COLUMN_ORDER: [usize; 16] = [0, 1, 5, 15, 2, 6, 7, 8, 3, 9, 10, 11, 4, 12, 13, 14];

/// Where each slot sits in `COLUMN_ORDER`.
pub fn column_unorder() -> [usize; SLOT_COUNT] {
    let mut inv = [0usize; SLOT_COUNT];
    for (pos, &slot) in COLUMN_ORDER.iter().enumerate() {
        if slot < SLOT_COUNT {
            inv[slot] = pos;
        }
    }
    inv
}

/// Tokens per column: the four leads recorded in one 2.5 s column of the sheet.
const COLUMN: usize = 4;

/// The decoder's parameters.
#[derive(Module, Debug)]
pub struct TokenDecoder<B: Backend> {
    /// Column blocks: self-attention across the (up to) four leads of one 50 ms column.
    pub columns: Vec<Block<B>>,
    /// After each column block, `[x(t-1), x(t), x(t+1)] @ W` (`3D -> D`, residual) along a slot.
    pub time: Vec<Linear<B>>,
    /// Per token `Linear(D -> 25)`.
    pub out: Linear<B>,
    /// The decoder's own lead embedding `[12, D]` (unit scale, so the lead is as audible as the
    /// time knowledge at each position).
    pub lead: Param<Tensor<B, 2>>,
    /// The mask token `[1, D]`, placed where a token was dropped.
    pub mask: Param<Tensor<B, 2>>,
    /// The fourth member of the first column `[1, D]` (I, II_1, III have no fourth lead).
    pub pad: Param<Tensor<B, 2>>,
}

impl<B: Backend> TokenDecoder<B> {
    /// A fresh decoder of width `d`.
    pub fn new(
        d: usize,
        heads: usize,
        norm: NormPlacement,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        TokenDecoder {
            columns: (0..DECODER_DEPTH)
                .map(|_| Block::new(d, heads, norm, dropout, device))
                .collect(),
            time: (0..DECODER_DEPTH)
                .map(|_| LinearConfig::new(3 * d, d).init(device))
                .collect(),
            out: LinearConfig::new(d, PATCH_SAMPLES).init(device),
            lead: Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            }
            .init([LEAD_ROWS, d], device),
            mask: small.clone().init([1, d], device),
            pad: small.init([1, d], device),
        }
    }

    /// `memory` `[b, l, D]` (the encoder's outputs), `index[s * 750 + t]` the position of token
    /// `t` of sample `s` in `memory`, `kept` 1 where it was kept, `knowledge` `[b, 750, D]` the
    /// lead and time knowledge of each position: the rebuilt input `[b, 15, 1250]`.
    pub fn forward(
        &self,
        memory: Tensor<B, 3>,
        index: &[i64],
        kept: &[f32],
        knowledge: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let [b, _, d] = memory.dims();
        let device = memory.device();
        let idx = Tensor::<B, 2, Int>::from_data(
            TensorData::new(index.to_vec(), [b, TOKEN_COUNT]),
            &device,
        )
        .unsqueeze_dim::<3>(2)
        .expand([b, TOKEN_COUNT, d]);
        let keep = Tensor::<B, 2>::from_data(
            TensorData::new(kept.to_vec(), [b, TOKEN_COUNT]),
            (&device, memory.dtype()),
        )
        .unsqueeze_dim::<3>(2);
        let placed = memory.gather(1, idx) * keep.clone();
        let sheet = placed + (keep.neg() + 1.0) * self.mask.val().unsqueeze_dim::<3>(0) + knowledge;
        let p = PATCHES_PER_SLOT;
        let pad = self.pad.val().reshape([1, 1, 1, d]).expand([b, 1, p, d]);
        // [b, 16, 50, D] in column order: 4 columns x 4 slots.
        let mut h = Tensor::cat(vec![sheet.reshape([b, SLOT_COUNT, p, d]), pad], 1)
            .select(1, ints(&COLUMN_ORDER, &device));
        for (block, time) in self.columns.iter().zip(&self.time) {
            let cols = h
                .reshape([b, 4, COLUMN, p, d])
                .permute([0, 1, 3, 2, 4])
                .reshape([b * 4 * p, COLUMN, d]);
            let cols = block.forward(cols, None, false).0;
            let rows = cols
                .reshape([b, 4, p, COLUMN, d])
                .permute([0, 1, 3, 2, 4])
                .reshape([b * 16, p, d]);
            let g = gelu(rows.clone());
            h = (rows + conv3(g, 1, time)).reshape([b, 16, p, d]);
        }
        let h = h
            .select(1, ints(&column_unorder(), &device))
            .reshape([b, TOKEN_COUNT, d]);
        linear(&self.out, h).reshape([b, SLOT_COUNT, SLOT_SAMPLES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_sits_once_in_a_column_of_its_own_time() {
        let inv = column_unorder();
        let mut seen = [false; SLOT_COUNT];
        for (slot, &pos) in inv.iter().enumerate() {
            assert_eq!(COLUMN_ORDER[pos], slot);
            seen[slot] = true;
            // Column of the sheet (0..4) the slot was recorded in, by the layout's time columns.
            let first_token_col = eknet_shared::layout::token_cols()[slot * PATCHES_PER_SLOT];
            assert_eq!(pos / 4, first_token_col / PATCHES_PER_SLOT, "slot {slot}");
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(
            COLUMN_ORDER[3], SLOT_COUNT,
            "the pad fills the first column"
        );
    }
}
