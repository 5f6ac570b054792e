//! Linear layers (`y = x W + b`) on burn's `flex` backend as single matrix products, forward and
//! backward; every other backend (CUDA, bf16 working copies) gets burn's own `Linear::forward`.
//!
//! Why (profile in BENCHMARKS.md, "Training"): flex runs `x W` as a batch of small products, one
//! per sample, into an output it first zero-fills and then copies once more to align it (burn
//! 0.21's `FlexTensor::empty` builds a byte vector and re-aligns it), and adds the bias in a third
//! pass. Here the leading dimensions are flattened into one `[m, k] x [k, n]` product (gemm, the
//! crate flex itself calls, on rayon's threads) written into a buffer that already holds the bias
//! rows. The backward is `dx = g W^T` and `dW = x^T g`, two products read through strides (no
//! transposed copies), and `db` the column sums of `g`; `dW` and `db` are summed over fixed
//! tasks of rows (gemm would split only the small `dW` output over threads) whose partial sums
//! are added in task order, so a run is reproducible bit for bit whatever the thread count.

use super::fused::{TrainCpu, cast, from_vec, same, values};
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{Shape, TensorPrimitive};
use rayon::prelude::*;

/// `layer.forward(x)`, on `flex` (with or without autodiff) as one product into the bias rows.
pub fn linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let Some(bias) = &layer.bias else {
        return layer.forward(x);
    };
    let x = match cast::<Tensor<B, D>, Tensor<TrainCpu, D>>(x) {
        Ok(x) => {
            let w: Tensor<TrainCpu, 2> = same(layer.weight.val());
            let b: Tensor<TrainCpu, 1> = same(bias.val());
            return same(train_linear(x, w, b));
        }
        Err(x) => x,
    };
    let x = match cast::<Tensor<B, D>, Tensor<Flex, D>>(x) {
        Ok(x) => x,
        Err(x) => return layer.forward(x),
    };
    let w: Tensor<Flex, 2> = same(layer.weight.val());
    let b: Tensor<Flex, 1> = same(bias.val());
    let xp = x.into_primitive().tensor();
    let y = linear_forward(
        &xp,
        &w.into_primitive().tensor(),
        &b.into_primitive().tensor(),
    );
    match y {
        Some(y) => same(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(y))),
        // Element types the kernel does not take (only f32 does).
        None => layer.forward(same(Tensor::<Flex, D>::from_primitive(
            TensorPrimitive::Float(xp),
        ))),
    }
}

/// Rows of the reduction per task of the weight gradient `x^T g`: gemm splits only a product's
/// output over threads, and the weight gradient is a small output over a long reduction (a
/// 64 x 256 gradient over 3,360 rows took longer on two threads than on one).
const DW_ROWS: usize = 1024;

/// Whether gemm should split a product of these sizes over rayon's threads (flex's own rule).
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst [m, n] = a [m, k] x b [k, n]` (or `+=` when `accumulate`), each operand given by its row
/// and column strides; over rayon's threads when `split` and the product is large.
///
/// Panics unless every index the strides reach lies inside its slice (checked before the call).
#[allow(clippy::too_many_arguments)]
fn product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    split: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(dst.len() == m * n, "product: destination of the wrong size");
    if k > 0 {
        assert!(
            last(m, k, a_rs, a_cs) < a.len(),
            "product: left operand out of bounds"
        );
        assert!(
            last(k, n, b_rs, b_cs) < b.len(),
            "product: right operand out of bounds"
        );
    }
    let isz = |v: usize| isize::try_from(v).expect("stride fits isize");
    #[allow(unsafe_code)]
    // SAFETY: the destination is `m * n` contiguous elements written row-major (row stride `n`,
    // column stride 1) and borrowed mutably, so it aliases neither operand; every element the
    // operands' strides reach was checked to be inside its slice above; gemm reads the
    // destination only when `accumulate` (alpha 1) and it is initialised either way.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            isz(n),
            accumulate,
            a.as_ptr(),
            isz(a_cs),
            isz(a_rs),
            b.as_ptr(),
            isz(b_cs),
            isz(b_rs),
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            if split {
                parallelism(m, n, k)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// `x W + b` for `x` `[.., k]`, `W` `[k, n]`, `b` `[n]` (f32 only).
fn linear_forward(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> Option<FlexTensor> {
    let (cx, xshape) = values(x)?;
    let (cw, wshape) = values(w)?;
    let (cb, bshape) = values(b)?;
    let [k, n] = wshape.dims::<2>();
    let dims: Vec<usize> = (0..xshape.num_dims()).map(|i| xshape[i]).collect();
    (dims.last() == Some(&k) && bshape.num_elements() == n && k > 0).then_some(())?;
    let (xs, ws, bs) = (
        cx.as_slice::<f32>()?,
        cw.as_slice::<f32>()?,
        cb.as_slice::<f32>()?,
    );
    let m = xs.len() / k;
    let mut out = Vec::with_capacity(m * n);
    for _ in 0..m {
        out.extend_from_slice(bs);
    }
    product((m, n, k), &mut out, true, xs, (k, 1), ws, (n, 1), true);
    let mut oshape = dims;
    if let Some(last) = oshape.last_mut() {
        *last = n;
    }
    Some(from_vec(out, Shape::from(oshape)))
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw, pb] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w) = ops.state;
        let Some((dx, dw, db)) = linear_backward(&x, &w, &grad, px.is_some()) else {
            // `train_linear` admits only f32 tensors of matching shapes.
            unreachable!("linear backward on tensors its forward refused")
        };
        if let (Some(p), Some(dx)) = (px, dx) {
            grads.register::<Flex>(p.id, dx);
        }
        if let Some(p) = pw {
            grads.register::<Flex>(p.id, dw);
        }
        if let Some(p) = pb {
            grads.register::<Flex>(p.id, db);
        }
    }
}

/// `dx = g W^T` (when `want_dx`), `dW = x^T g` and `db` = the column sums of `g`.
fn linear_backward(
    x: &FlexTensor,
    w: &FlexTensor,
    g: &FlexTensor,
    want_dx: bool,
) -> Option<(Option<FlexTensor>, FlexTensor, FlexTensor)> {
    let (cx, xshape) = values(x)?;
    let (cw, wshape) = values(w)?;
    let (cg, _) = values(g)?;
    let [k, n] = wshape.dims::<2>();
    let (xs, ws, gs) = (
        cx.as_slice::<f32>()?,
        cw.as_slice::<f32>()?,
        cg.as_slice::<f32>()?,
    );
    let m = xs.len() / k;
    (gs.len() == m * n).then_some(())?;
    let dx = want_dx.then(|| {
        let mut dx = vec![0f32; m * k];
        // g [m, n] x W^T [n, k]: W^T's rows are W's columns (row stride 1, column stride n).
        product((m, k, n), &mut dx, false, gs, (n, 1), ws, (1, n), true);
        from_vec(dx, xshape)
    });
    // dW = x^T [k, m] x g [m, n] and db = the column sums of g, over tasks of DW_ROWS rows of
    // the reduction, each product on one thread; the partial sums are added in task order.
    let tasks = m.div_ceil(DW_ROWS).max(1);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = xs
        .par_chunks(DW_ROWS * k)
        .zip(gs.par_chunks(DW_ROWS * n))
        .map(|(xc, gc)| {
            let rows = xc.len() / k;
            let mut dw = vec![0f32; k * n];
            product(
                (k, n, rows),
                &mut dw,
                false,
                xc,
                (1, k),
                gc,
                (n, 1),
                tasks == 1,
            );
            let mut db = vec![0f32; n];
            for row in gc.chunks_exact(n) {
                for (a, &v) in db.iter_mut().zip(row) {
                    *a += v;
                }
            }
            (dw, db)
        })
        .collect();
    let mut partials = partials.into_iter();
    let (mut dw, mut db) = partials
        .next()
        .unwrap_or_else(|| (vec![0f32; k * n], vec![0f32; n]));
    for (pw, pb) in partials {
        for (a, v) in dw.iter_mut().zip(pw) {
            *a += v;
        }
        for (a, v) in db.iter_mut().zip(pb) {
            *a += v;
        }
    }
    Some((dx, from_vec(dw, wshape), from_vec(db, Shape::from(vec![n]))))
}

fn train_linear<const D: usize>(
    x: Tensor<TrainCpu, D>,
    w: Tensor<TrainCpu, 2>,
    b: Tensor<TrainCpu, 1>,
) -> Tensor<TrainCpu, D> {
    let (x, w, b) = (
        x.into_primitive().tensor(),
        w.into_primitive().tensor(),
        b.into_primitive().tensor(),
    );
    let Some(y) = linear_forward(&x.primitive, &w.primitive, &b.primitive) else {
        // Other element types or shapes: burn's own linear.
        let wrap = |t| Tensor::<TrainCpu, 2>::from_primitive(TensorPrimitive::Float(t));
        return burn::tensor::module::linear(
            Tensor::<TrainCpu, D>::from_primitive(TensorPrimitive::Float(x)),
            wrap(w),
            Some(Tensor::<TrainCpu, 1>::from_primitive(
                TensorPrimitive::Float(b),
            )),
        );
    };
    let out = match LinearBackward
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>([
            x.node.clone(),
            w.node.clone(),
            b.node.clone(),
        ])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::AutodiffModule;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn vals<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32 data")
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0f32, f32::max);
        assert!(worst <= tol, "largest difference {worst} > {tol}");
    }

    /// The fused layer against burn's `Linear::forward`: output, and the gradients of the input,
    /// weight and bias, for a non-contiguous input and products both below and above the size
    /// where gemm splits over threads; and the evaluation path for 3-D and 2-D inputs.
    #[test]
    fn fused_linear_matches_burn_forward_and_backward() {
        let device = Default::default();
        for (shape, k, n, transpose) in [
            (vec![5, 7], 7, 3, false),
            (vec![3, 200, 64], 64, 256, false),
            (vec![4, 33, 24], 24, 40, true),
            // 2,100 rows: the weight gradient in three tasks, the last one short.
            (vec![3, 700, 16], 16, 24, false),
        ] {
            let layer = LinearConfig::new(k, n).init::<TrainCpu>(&device);
            let x0 = match shape.len() {
                2 => Tensor::<Flex, 2>::random(
                    [shape[0], shape[1]],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
                .reshape([shape[0], 1, shape[1]]),
                _ if transpose => Tensor::<Flex, 3>::random(
                    [shape[0], shape[2], shape[1]],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
                .swap_dims(1, 2),
                _ => Tensor::<Flex, 3>::random(
                    [shape[0], shape[1], shape[2]],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                ),
            };
            let [b0, l0, _] = x0.dims();
            let wy =
                Tensor::<TrainCpu, 3>::random([b0, l0, n], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = Tensor::<TrainCpu, 3>::from_inner(x0.clone()).require_grad();
                let y = if fused {
                    linear(&layer, x.clone())
                } else {
                    layer.forward(x.clone())
                };
                let grads = (y.clone() * wy.clone()).sum().backward();
                let bias = layer.bias.as_ref().expect("bias");
                (
                    vals(y),
                    vals(x.grad(&grads).expect("x gradient")),
                    vals(layer.weight.val().grad(&grads).expect("weight gradient")),
                    vals(bias.val().grad(&grads).expect("bias gradient")),
                )
            };
            let (y1, dx1, dw1, db1) = run(true);
            let (y0, dx0, dw0, db0) = run(false);
            close(&y1, &y0, 1e-5);
            close(&dx1, &dx0, 1e-5);
            close(&dw1, &dw0, 1e-4);
            close(&db1, &db0, 1e-4);
            // Evaluation (no autodiff) takes the flex path, for 3-D and 2-D inputs.
            let inner = layer.valid();
            close(
                &vals(linear(&inner, x0.clone())),
                &vals(inner.forward(x0.clone())),
                1e-5,
            );
            let x2 = x0.reshape([b0 * l0, k]);
            close(
                &vals(linear(&inner, x2.clone())),
                &vals(inner.forward(x2)),
                1e-5,
            );
        }
    }
}
