//! AdamW with one fused pass per parameter tensor on burn's `flex` backend; burn's own AdamW on
//! every other backend. Same formula, same state and record type as `burn::optim::AdamW`, so
//! checkpoints written by either load into the other.
//!
//! Why (phases of `eknet-train bench`): burn's AdamW runs about ten tensor operations per
//! parameter (moments, squares, bias corrections, square root, division, decay, update), each a
//! full pass over the tensor into a fresh allocation. Stage 1's reconstruction heads hold 16
//! million parameters, and its optimiser step took 93 ms of a 202 ms training step. Here each
//! element is read once (weight, gradient, both moments) and written once (weight, moments), on
//! rayon's threads, with burn's operations in burn's order and rounding (f32, no fused
//! multiply-adds), so the results match burn's to the last bit or within an ulp.

use crate::model::fused::{CHUNK, cast, from_vec, same};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use rayon::prelude::*;

/// AdamW's settings (no AMSGrad, plain decoupled weight decay, no gradient clipping).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// First moment's decay.
    pub beta_1: f32,
    /// Second moment's decay.
    pub beta_2: f32,
    /// Added to the second moment's square root.
    pub epsilon: f32,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f32,
}

impl AdamWSettings {
    /// The optimiser for module `M` of autodiff backend `B`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        self,
    ) -> OptimizerAdaptor<FusedAdamW, M, B> {
        OptimizerAdaptor::from(FusedAdamW {
            settings: self,
            reference: AdamWConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .with_weight_decay(self.weight_decay)
                .build(),
        })
    }
}

/// AdamW, fused on `flex`; burn's [`AdamW`] (same settings) elsewhere.
#[derive(Clone)]
pub struct FusedAdamW {
    settings: AdamWSettings,
    reference: AdamW,
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        type Flexed<const D: usize> = (
            Tensor<Flex, D>,
            Tensor<Flex, D>,
            Option<AdamWState<Flex, D>>,
        );
        let (tensor, grad, state) = match cast::<_, Flexed<D>>((tensor, grad, state)) {
            Ok((t, g, st)) => {
                let out = if takes(&t, &g, st.as_ref()) {
                    let (t, st) = self.fused(lr, t, &g, st);
                    (t, Some(st))
                } else {
                    // Element types the kernel does not take: burn's AdamW.
                    SimpleOptimizer::<Flex>::step(&self.reference, lr, t, g, st)
                };
                return same(out);
            }
            Err(other) => other,
        };
        self.reference.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// Whether [`FusedAdamW::fused`] takes these: f32 tensors of one shape, and no AMSGrad state
/// (which this optimiser never writes).
fn takes<const D: usize>(
    tensor: &Tensor<Flex, D>,
    grad: &Tensor<Flex, D>,
    state: Option<&AdamWState<Flex, D>>,
) -> bool {
    let ok = |t: &Tensor<Flex, D>| t.dtype() == DType::F32 && t.shape() == tensor.shape();
    ok(tensor)
        && ok(grad)
        && state.is_none_or(|st| {
            st.momentum.max_moment_2.is_none()
                && ok(&st.momentum.moment_1)
                && ok(&st.momentum.moment_2)
        })
}

/// `t`'s buffer, contiguous, covering exactly its elements, to update in place (a copy only when
/// the layout is strided or the buffer is shared).
fn owned<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    let t = t.into_primitive().tensor();
    let whole = t.bytes().len() == t.layout().num_elements() * std::mem::size_of::<f32>();
    if t.is_contiguous() && t.layout().start_offset() == 0 && whole {
        t
    } else {
        t.to_contiguous()
    }
}

impl FusedAdamW {
    /// One step of one parameter tensor ([`takes`] said yes) in a single pass, updating the
    /// weight and the moments in place.
    fn fused<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<Flex, D>,
        grad: &Tensor<Flex, D>,
        state: Option<AdamWState<Flex, D>>,
    ) -> (Tensor<Flex, D>, AdamWState<Flex, D>) {
        let shape = tensor.shape();
        let n = shape.num_elements();
        let mut p = owned(tensor);
        let g = owned(grad.clone());
        let (time, mut m, mut v) = match state {
            Some(st) => (
                st.momentum.time + 1,
                owned(st.momentum.moment_1),
                owned(st.momentum.moment_2),
            ),
            None => (
                1,
                from_vec(vec![0f32; n], shape.clone()),
                from_vec(vec![0f32; n], shape.clone()),
            ),
        };
        adamw_pass(
            &self.settings,
            lr,
            time,
            p.storage_mut::<f32>(),
            g.storage::<f32>(),
            (m.storage_mut::<f32>(), v.storage_mut::<f32>()),
        );
        let wrap = |t: FlexTensor| Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(t));
        let momentum = AdaptiveMomentumState::new(time, wrap(m), wrap(v));
        (wrap(p), AdamWState::new(momentum))
    }
}

/// Updates the weights `p` and the moments `m`, `v` in place, element by element in parallel
/// tasks, with burn's operations: `m = m b1 + g (1 - b1)`, `v = v b2 + g^2 (1 - b2)` (from zero
/// moments on the first step these are burn's `g (1 - b1)` and `g^2 (1 - b2)` exactly),
/// `delta = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`, `w = w (1 - lr wd) - delta lr`.
fn adamw_pass(
    s: &AdamWSettings,
    lr: f64,
    time: usize,
    p: &mut [f32],
    g: &[f32],
    (m, v): (&mut [f32], &mut [f32]),
) {
    let (b1, b2, eps) = (s.beta_1, s.beta_2, s.epsilon);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let t = i32::try_from(time).unwrap_or(i32::MAX);
    let (c1, c2) = (1f32 - b1.powi(t), 1f32 - b2.powi(t));
    let decay_rate = lr * f64::from(s.weight_decay);
    let keep = (1.0 - decay_rate) as f32;
    let lr32 = lr as f32;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            crate::model::fused::vectorised(
                #[inline(always)]
                || {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        *m = *m * b1 + g * f1;
                        *v = *v * b2 + (g * g) * f2;
                        let delta = (*m / c1) / ((*v / c2).sqrt() + eps);
                        let decayed = if decay_rate == 0.0 { *p } else { *p * keep };
                        *p = decayed - delta * lr32;
                    }
                },
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::Distribution;

    type TrainCpu = Autodiff<Flex>;

    fn vals<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32 data")
    }

    /// Ten steps of the fused AdamW against burn's AdamW from the same weights and batches, with
    /// and without weight decay, over a weight larger than one parallel task: the weights agree
    /// within 1e-5 (relative) at every step (the moments feed every step after the first), and
    /// they moved.
    #[test]
    fn fused_adamw_follows_burns_adamw() {
        let device = Default::default();
        for weight_decay in [0.0f32, 0.05] {
            let settings = AdamWSettings {
                beta_1: 0.9,
                beta_2: 0.95,
                epsilon: 1e-8,
                weight_decay,
            };
            let layer: Linear<TrainCpu> = LinearConfig::new(96, 400).init(&device);
            // Lazily initialised parameters are drawn when first read: read both before cloning,
            // or each clone draws its own.
            let before = vals(layer.weight.val());
            let _ = vals(layer.bias.as_ref().expect("bias").val());
            let mut fused_model = layer.clone();
            let mut burn_model = layer;
            let mut fused = settings.init::<TrainCpu, Linear<TrainCpu>>();
            let mut reference = AdamWConfig::new()
                .with_beta_1(settings.beta_1)
                .with_beta_2(settings.beta_2)
                .with_epsilon(settings.epsilon)
                .with_weight_decay(weight_decay)
                .init::<TrainCpu, Linear<TrainCpu>>();
            for step in 0..10 {
                let x =
                    Tensor::<TrainCpu, 2>::random([8, 96], Distribution::Normal(0.0, 1.0), &device);
                let loss = |m: &Linear<TrainCpu>| m.forward(x.clone()).powi_scalar(2).mean();
                let g1 = GradientsParams::from_grads(loss(&fused_model).backward(), &fused_model);
                let g0 = GradientsParams::from_grads(loss(&burn_model).backward(), &burn_model);
                fused_model = fused.step(1e-2, fused_model, g1);
                burn_model = reference.step(1e-2, burn_model, g0);
                let (a, b) = (
                    vals(fused_model.weight.val()),
                    vals(burn_model.weight.val()),
                );
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs() / (1e-3 + y.abs()))
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "step {step}, decay {weight_decay}: relative difference {worst}"
                );
                if step == 9 {
                    // The weights moved: the test compares steps, not two untouched copies.
                    let moved = a
                        .iter()
                        .zip(&before)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max);
                    assert!(moved > 0.05, "largest change after ten steps {moved}");
                }
            }
        }
    }
}
