//! Multi-head attention written out (q, k, v, output projections, scaled dot product, softmax)
//! so the hand-written ONNX graph can mirror it op for op, and so the weights come back.

use super::fused::{attention, softmax_last};
use super::linear::linear;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Multi-head attention with biased projections and no dropout.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection.
    pub query: Linear<B>,
    /// Key projection.
    pub key: Linear<B>,
    /// Value projection.
    pub value: Linear<B>,
    /// Output projection.
    pub output: Linear<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> Attention<B> {
    /// Width `d_model` split over `heads`.
    pub fn new(d_model: usize, heads: usize, device: &B::Device) -> Self {
        let lin = || LinearConfig::new(d_model, d_model).init(device);
        Attention {
            query: lin(),
            key: lin(),
            value: lin(),
            output: lin(),
            heads,
        }
    }

    /// Attends `q` `[batch, lq, d]` over `kv` `[batch, lk, d]`. Returns the output `[batch, lq, d]`
    /// and, when asked, the weights averaged over heads `[batch, lq, lk]`.
    pub fn forward(
        &self,
        q: Tensor<B, 3>,
        kv: Tensor<B, 3>,
        want_weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let [b, lq, d] = q.dims();
        let lk = kv.dims()[1];
        let h = self.heads;
        let dh = d / h;
        // The 1/sqrt(dh) scale on the queries ([b, lq, d]) rather than on the scores
        // ([b, h, lq, lk], several times larger): the same product, fewer multiplications.
        let q = linear(&self.query, q).mul_scalar(1.0 / (dh as f64).sqrt());
        let k = linear(&self.key, kv.clone());
        let v = linear(&self.value, kv);
        let (ctx, w) = if want_weights {
            let split = |x: Tensor<B, 3>, l: usize| x.reshape([b, l, h, dh]).swap_dims(1, 2); // [b, h, l, dh]
            let weights = softmax_last(split(q, lq).matmul(split(k, lk).swap_dims(2, 3))); // [b, h, lq, lk]
            let w = weights.clone().mean_dim(1).reshape([b, lq, lk]);
            let ctx = weights
                .matmul(split(v, lk))
                .swap_dims(1, 2)
                .reshape([b, lq, d]);
            (ctx, Some(w))
        } else {
            (attention(q, k, v, h), None) // [b, lq, d]
        };
        (linear(&self.output, ctx), w)
    }
}
