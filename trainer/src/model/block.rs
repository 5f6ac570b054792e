//! One transformer block (attention then MLP, each with a residual and a LayerNorm) in either
//! norm placement: the release's residual post-norm `x + LN(f(x))` or pre-norm `x + f(LN(x))`.

use super::attention::Attention;
use super::fused::{gelu, layer_norm};
use super::linear::linear;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

/// Norm placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x = x + LN(f(x))` (the release's; default).
    ResPost,
    /// `x = x + f(LN(x))`.
    Pre,
}

/// Attention + MLP block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Attention.
    pub attn: Attention<B>,
    /// Norm around attention.
    pub norm1: LayerNorm<B>,
    /// MLP expansion (D to 4D).
    pub fc1: Linear<B>,
    /// MLP projection (4D to D).
    pub fc2: Linear<B>,
    /// Norm around the MLP.
    pub norm2: LayerNorm<B>,
    /// True for pre-norm.
    pub pre_norm: bool,
    /// Dropout on the attention and MLP branches (training only; 0 in the seed's recipe).
    pub dropout: Dropout,
}

impl<B: Backend> Block<B> {
    /// A block of width `d_model`, `heads` heads, MLP hidden `4 * d_model`, branch dropout
    /// `dropout` (active only while training).
    pub fn new(
        d_model: usize,
        heads: usize,
        norm: NormPlacement,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        Block {
            attn: Attention::new(d_model, heads, device),
            norm1: LayerNormConfig::new(d_model).init(device),
            fc1: LinearConfig::new(d_model, 4 * d_model).init(device),
            fc2: LinearConfig::new(4 * d_model, d_model).init(device),
            norm2: LayerNormConfig::new(d_model).init(device),
            pre_norm: norm == NormPlacement::Pre,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn mlp(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear(&self.fc2, gelu(linear(&self.fc1, x)))
    }

    /// Self-attention when `kv` is `None`, else cross-attention of `x` over `kv`. Returns the new
    /// `x` and, when asked, the attention weights averaged over heads.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        kv: Option<Tensor<B, 3>>,
        want_weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        if self.pre_norm {
            let xn = layer_norm(&self.norm1, x.clone());
            let kv = kv.unwrap_or_else(|| xn.clone());
            let (a, w) = self.attn.forward(xn, kv, want_weights);
            let x = x + self.dropout.forward(a);
            let x = x.clone() + self.dropout.forward(self.mlp(layer_norm(&self.norm2, x)));
            (x, w)
        } else {
            let kv = kv.unwrap_or_else(|| x.clone());
            let (a, w) = self.attn.forward(x.clone(), kv, want_weights);
            let x = x + self.dropout.forward(layer_norm(&self.norm1, a));
            let x = x.clone() + self.dropout.forward(layer_norm(&self.norm2, self.mlp(x)));
            (x, w)
        }
    }
}
