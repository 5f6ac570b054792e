//! Softmax and GELU as single fused CPU kernels, forward and backward, for burn's `flex` backend
//! (training: `Autodiff<Flex>`; evaluation: `Flex`). Every other backend (CUDA) gets burn's own.
//!
//! Why (profile in BENCHMARKS.md, "Training"): under autodiff burn builds softmax from five tracked
//! operations (max, subtract, exp, sum, divide) and differentiates each, about a dozen passes over
//! every attention score tensor; and flex's GELU calls the scalar `erff`/`expf` of libm for every
//! element, forward and backward. Here:
//! - softmax forward is flex's own fused row kernel (SIMD, rows in parallel); its backward is one
//!   pass per row, `dx = y * (g - sum(g * y))`, from the saved output;
//! - GELU, `0.5 x (1 + erf(x / sqrt 2))`, and its derivative `cdf(x) + x pdf(x)` are computed with
//!   a branch-free `exp` (Cephes' polynomial, about 2 ulp) and Abramowitz-Stegun 7.1.26 `erf`
//!   (absolute error below 1.5e-7), compiled for the CPU's widest vectors by `pulp`'s dispatch;
//! - attention, forward and backward, never writes the `[b, h, lq, lk]` scores: query rows go four
//!   at a time through explicit SIMD vectors of the CPU's width (pulp's `Simd`: 16 lanes with
//!   AVX-512, 8 with AVX2), so each key or value vector read serves four rows and eight
//!   independent sums hide the multiply-add latency. The compiler's own vectorisation of the same
//!   loops kept one sum chain per row and left a third of the attention's time in scalar code.
//!
//! Results agree with burn's within 1e-6 (tests below); the exported ONNX graph keeps the exact
//! `Erf`, and the export's parity check runs against this forward.
//!
//! burn has no specialisation, so the fused path is chosen by type at run time: a tensor of the
//! generic backend `B` is moved into the concrete type when `B` is that type, and back.

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;
use std::any::Any;

/// Elements per parallel task of the elementwise kernels.
pub(crate) const CHUNK: usize = 1 << 15;

pub(crate) type TrainCpu = Autodiff<Flex>;

/// Moves `x` into type `U` when `T` is `U`; gives it back otherwise.
pub(crate) fn cast<T: 'static, U: 'static>(x: T) -> Result<U, T> {
    let mut slot = Some(x);
    if let Some(u) = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
    {
        return Ok(u);
    }
    match slot {
        Some(x) => Err(x),
        // `slot` is emptied only when the downcast succeeded, which returned above.
        None => unreachable!("cast emptied its slot without returning"),
    }
}

/// Moves `x` into `U` where a [`cast`] of the same backend already succeeded, so `T` is `U`.
pub(crate) fn same<T: 'static, U: 'static>(x: T) -> U {
    match cast::<T, U>(x) {
        Ok(u) => u,
        Err(_) => unreachable!("the backend was cast before: T is U"),
    }
}

/// Runs `fast` when `B` is the concrete backend `C`, else `slow`.
fn specialise<B: Backend, C: Backend, const D: usize>(
    x: Tensor<B, D>,
    fast: impl FnOnce(Tensor<C, D>) -> Tensor<C, D>,
    slow: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    match cast::<Tensor<B, D>, Tensor<C, D>>(x) {
        Ok(x) => same(fast(x)),
        Err(x) => slow(x),
    }
}

/// Softmax over the last dimension.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    specialise::<B, TrainCpu, D>(x, train_softmax, |x| {
        specialise::<B, Flex, D>(
            x,
            |x| {
                Tensor::from_primitive(TensorPrimitive::Float(softmax_forward(
                    x.into_primitive().tensor(),
                )))
            },
            |x| burn::tensor::activation::softmax(x, D - 1),
        )
    })
}

/// GELU (the exact, erf form).
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    specialise::<B, TrainCpu, D>(x, train_gelu, |x| {
        specialise::<B, Flex, D>(
            x,
            |x| {
                let p = x.into_primitive().tensor();
                match gelu_forward(&p) {
                    Some(y) => Tensor::from_primitive(TensorPrimitive::Float(y)),
                    None => burn::tensor::activation::gelu(Tensor::from_primitive(
                        TensorPrimitive::Float(p),
                    )),
                }
            },
            burn::tensor::activation::gelu,
        )
    })
}

/// Multi-head `softmax(q k^T) v` (`q` already scaled) on unsplit projections: `q` `[b, lq, d]`,
/// `k` and `v` `[b, lk, d]`, head `i` in columns `i * d / heads ..`; returns `[b, lq, d]`, heads
/// side by side, ready for the output projection. On `flex` without autodiff (evaluation and
/// inference) one fused kernel reads and writes that layout in place (no head transposes) and
/// keeps each query's scores, softmax and weighted sum in the cache: the `[b, h, lq, lk]` score
/// tensor is never written. Elsewhere the heads are split and two products run around
/// [`softmax_last`].
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 3> {
    let composed = |q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>| {
        let [b, lq, d] = q.dims();
        let lk = k.dims()[1];
        let dh = d / heads;
        let split = |x: Tensor<B, 3>, l: usize| x.reshape([b, l, heads, dh]).swap_dims(1, 2);
        let ctx =
            softmax_last(split(q, lq).matmul(split(k, lk).swap_dims(2, 3))).matmul(split(v, lk));
        ctx.swap_dims(1, 2).reshape([b, lq, d])
    };
    let q = match cast::<Tensor<B, 3>, Tensor<TrainCpu, 3>>(q) {
        Err(q) => q,
        Ok(q) => return same(train_attention(q, same(k), same(v), heads)),
    };
    let q = match cast::<Tensor<B, 3>, Tensor<Flex, 3>>(q) {
        Ok(q) => q,
        Err(q) => return composed(q, k, v),
    };
    let (k, v): (Tensor<Flex, 3>, Tensor<Flex, 3>) = (same(k), same(v));
    let fused = attention_forward(
        &q.clone().into_primitive().tensor(),
        &k.clone().into_primitive().tensor(),
        &v.clone().into_primitive().tensor(),
        heads,
    );
    let out: Tensor<Flex, 3> = match fused {
        Some(o) => Tensor::from_primitive(TensorPrimitive::Float(o)),
        None => return composed(same(q), same(k), same(v)),
    };
    same(out)
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// q, k, v and the head count.
    type State = (FlexTensor, FlexTensor, FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [pq, pk, pv] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (q, k, v, heads) = ops.state;
        let Some((dq, dk, dv)) = attention_backward(&q, &k, &v, &grad, heads) else {
            // `train_attention` admits only shapes and types the kernels take.
            unreachable!("attention backward on tensors its forward refused")
        };
        for (parent, g) in [(pq, dq), (pk, dk), (pv, dv)] {
            if let Some(p) = parent {
                grads.register::<Flex>(p.id, g);
            }
        }
    }
}

/// Attention under autodiff: the fused forward, and a backward that recomputes each query's
/// softmax (as flash attention does) instead of keeping the `[b, h, lq, lk]` weights.
fn train_attention(
    q: Tensor<TrainCpu, 3>,
    k: Tensor<TrainCpu, 3>,
    v: Tensor<TrainCpu, 3>,
    heads: usize,
) -> Tensor<TrainCpu, 3> {
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let Some(y) = attention_forward(&q.primitive, &k.primitive, &v.primitive, heads) else {
        // Shapes or element types the kernel does not take: burn's own operations.
        let wrap = |t| Tensor::<TrainCpu, 3>::from_primitive(TensorPrimitive::Float(t));
        let (q, k, v) = (wrap(q), wrap(k), wrap(v));
        let [b, lq, d] = q.dims();
        let lk = k.dims()[1];
        let dh = d / heads;
        let split = |x: Tensor<TrainCpu, 3>, l: usize| x.reshape([b, l, heads, dh]).swap_dims(1, 2);
        let ctx =
            softmax_last(split(q, lq).matmul(split(k, lk).swap_dims(2, 3))).matmul(split(v, lk));
        return ctx.swap_dims(1, 2).reshape([b, lq, d]);
    };
    let out = match AttentionBackward
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>([
            q.node.clone(),
            k.node.clone(),
            v.node.clone(),
        ])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((q.primitive, k.primitive, v.primitive, heads), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Gradients of [`attention`] with respect to q, k and v, each in its input's `[b, l, d]` layout.
fn attention_backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    g: &FlexTensor,
    heads: usize,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    let (cq, qshape) = values(q)?;
    let (ck, kshape) = values(k)?;
    let (cv, _) = values(v)?;
    let (cg, gshape) = values(g)?;
    (gshape == qshape).then_some(())?;
    let [b, lq, d] = qshape.dims::<3>();
    let lk = kshape.dims::<3>()[1];
    let (qs, ks, vs, gs) = (
        cq.as_slice::<f32>()?,
        ck.as_slice::<f32>()?,
        cv.as_slice::<f32>()?,
        cg.as_slice::<f32>()?,
    );
    let mut dq = vec![0f32; b * lq * d];
    let mut dk = vec![0f32; b * lk * d];
    let mut dv = vec![0f32; b * lk * d];
    dq.par_chunks_mut(lq * d)
        .zip(dk.par_chunks_mut(lk * d).zip(dv.par_chunks_mut(lk * d)))
        .zip(qs.par_chunks(lq * d).zip(gs.par_chunks(lq * d)))
        .zip(ks.par_chunks(lk * d).zip(vs.par_chunks(lk * d)))
        .for_each(|(((dq, (dk, dv)), (q, g)), (k, v))| {
            attention_sample_grad(q, k, v, g, dq, dk, dv, d, heads);
        });
    Some((
        from_vec(dq, qshape),
        from_vec(dk, kshape.clone()),
        from_vec(dv, kshape),
    ))
}

/// One sample's gradients, every head. Per query row `i` of a head: `p = softmax(q_i K^T)`,
/// `dp_j = g_i . v_j`, `ds_j = p_j (dp_j - p . dp)`; then `dq_i = ds K`, `dK += ds^T q_i`,
/// `dV += p^T g_i`. Query rows go [`ROWS`] at a time, so each pass over K, V, dK and dV serves
/// four rows.
#[allow(clippy::too_many_arguments)]
fn attention_sample_grad(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    d: usize,
    heads: usize,
) {
    pulp::Arch::new().dispatch(SampleGrad {
        q,
        k,
        v,
        g,
        dq,
        dk,
        dv,
        d,
        heads,
    });
}

/// [`attention_sample_grad`]'s arguments, for pulp's dispatch.
struct SampleGrad<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    g: &'a [f32],
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    d: usize,
    heads: usize,
}

impl pulp::WithSimd for SampleGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let SampleGrad {
            q,
            k,
            v,
            g,
            dq,
            dk,
            dv,
            d,
            heads,
        } = self;
        let HeadDims {
            dh,
            lk,
            blocks,
            chunks,
        } = HeadDims::new::<S>(d, heads, k.len());
        let zero = simd.splat_f32s(0.0);
        let mut kb = vec![zero; blocks * dh];
        let mut vb = vec![zero; blocks * dh];
        let mut kp = vec![zero; chunks * lk];
        let mut dkt = vec![0f32; dh * lk];
        let mut dvt = vec![0f32; dh * lk];
        let mut scores = vec![zero; ROWS * blocks];
        let mut dps = vec![zero; ROWS * blocks];
        // The rows' softmax `p` and score gradients `ds` (zero for rows past the end).
        let mut p = vec![0f32; ROWS * lk];
        let mut ds = vec![0f32; ROWS * lk];
        let mut qh = vec![[0f32; ROWS]; dh];
        let mut gh = vec![[0f32; ROWS]; dh];
        let mut dqh = vec![zero; ROWS * chunks];
        for h in 0..heads {
            let col = h * dh;
            pack_keys::<S>(k, d, col, dh, &mut kb);
            pack_keys::<S>(v, d, col, dh, &mut vb);
            pack_rows::<S>(k, d, col, dh, &mut kp);
            dkt.fill(0.0);
            dvt.fill(0.0);
            for ((dqrows, qrows), grows) in dq
                .chunks_mut(ROWS * d)
                .zip(q.chunks(ROWS * d))
                .zip(g.chunks(ROWS * d))
            {
                let rows = qrows.len() / d;
                if rows < ROWS {
                    // The last group: rows past the end add nothing to dK and dV.
                    p.fill(0.0);
                    ds.fill(0.0);
                }
                gather_rows(qrows, d, col, &mut qh);
                gather_rows(grows, d, col, &mut gh);
                softmax_group(simd, &qh, &kb, &mut scores, &mut p, rows);
                score_rows(simd, &gh, &vb, &mut dps); // dp_j = g_t . v_j
                let df: &[f32] = pulp::bytemuck::cast_slice(&dps);
                for ((dst, pt), dpt) in ds
                    .chunks_exact_mut(lk)
                    .zip(p.chunks_exact(lk))
                    .zip(df.chunks_exact(df.len() / ROWS))
                    .take(rows)
                {
                    let pd = dot(pt, &dpt[..lk]);
                    for ((s, &pj), &dp) in dst.iter_mut().zip(pt).zip(&dpt[..lk]) {
                        *s = pj * (dp - pd);
                    }
                }
                weighted_rows(simd, &ds, &kp, &mut dqh); // dq_t = ds_t K
                put_rows::<S>(&dqh, dqrows, d, col, dh);
                let (p0, p123) = p.split_at(lk);
                let (p1, p23) = p123.split_at(lk);
                let (p2, p3) = p23.split_at(lk);
                let (s0, s123) = ds.split_at(lk);
                let (s1, s23) = s123.split_at(lk);
                let (s2, s3) = s23.split_at(lk);
                for (c, (dkr, dvr)) in dkt
                    .chunks_exact_mut(lk)
                    .zip(dvt.chunks_exact_mut(lk))
                    .enumerate()
                {
                    let (qc, gc) = (qh[c], gh[c]);
                    for j in 0..lk {
                        dkr[j] = qc[3].mul_add(
                            s3[j],
                            qc[2]
                                .mul_add(s2[j], qc[1].mul_add(s1[j], qc[0].mul_add(s0[j], dkr[j]))),
                        );
                        dvr[j] = gc[3].mul_add(
                            p3[j],
                            gc[2]
                                .mul_add(p2[j], gc[1].mul_add(p1[j], gc[0].mul_add(p0[j], dvr[j]))),
                        );
                    }
                }
            }
            for (j, (dkr, dvr)) in dk
                .chunks_exact_mut(d)
                .zip(dv.chunks_exact_mut(d))
                .enumerate()
            {
                for c in 0..dh {
                    dkr[col + c] = dkt[c * lk + j];
                    dvr[col + c] = dvt[c * lk + j];
                }
            }
        }
    }
}

/// Query rows each pass of the attention kernels serves (the weighted sums are written out for
/// four).
const ROWS: usize = 4;

fn attention_forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    heads: usize,
) -> Option<FlexTensor> {
    let (cq, qshape) = values(q)?;
    let (ck, kshape) = values(k)?;
    let (cv, vshape) = values(v)?;
    let [b, lq, d] = qshape.dims::<3>();
    let [kb, lk, kd] = kshape.dims::<3>();
    (kshape == vshape && (kb, kd) == (b, d) && lk > 0 && heads > 0 && d % heads == 0)
        .then_some(())?;
    let (qs, ks, vs) = (
        cq.as_slice::<f32>()?,
        ck.as_slice::<f32>()?,
        cv.as_slice::<f32>()?,
    );
    let mut out = vec![0f32; b * lq * d];
    out.par_chunks_mut(lq * d)
        .zip(qs.par_chunks(lq * d))
        .zip(ks.par_chunks(lk * d).zip(vs.par_chunks(lk * d)))
        .for_each(|((out, q), (k, v))| {
            pulp::Arch::new().dispatch(Sample {
                q,
                k,
                v,
                out,
                d,
                heads,
            })
        });
    Some(from_vec(out, qshape))
}

/// One sample, every head: `q` and `out` `[lq, d]`, `k` and `v` `[lk, d]`. Query rows go
/// [`ROWS`] at a time, so every key vector read feeds [`ROWS`] rows' scores and every value
/// vector read feeds [`ROWS`] rows' weighted sums, in explicit SIMD vectors of the CPU's width.
struct Sample<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a mut [f32],
    d: usize,
    heads: usize,
}

impl pulp::WithSimd for Sample<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Sample {
            q,
            k,
            v,
            out,
            d,
            heads,
        } = self;
        let HeadDims {
            dh,
            lk,
            blocks,
            chunks,
        } = HeadDims::new::<S>(d, heads, k.len());
        let zero = simd.splat_f32s(0.0);
        let mut kb = vec![zero; blocks * dh];
        let mut vp = vec![zero; chunks * lk];
        let mut scores = vec![zero; ROWS * blocks];
        let mut p = vec![0f32; ROWS * lk];
        let mut qh = vec![[0f32; ROWS]; dh];
        let mut o = vec![zero; ROWS * chunks];
        for h in 0..heads {
            let col = h * dh;
            pack_keys::<S>(k, d, col, dh, &mut kb);
            pack_rows::<S>(v, d, col, dh, &mut vp);
            for (orows, qrows) in out.chunks_mut(ROWS * d).zip(q.chunks(ROWS * d)) {
                let rows = qrows.len() / d;
                gather_rows(qrows, d, col, &mut qh);
                softmax_group(simd, &qh, &kb, &mut scores, &mut p, rows);
                weighted_rows(simd, &p, &vp, &mut o);
                put_rows::<S>(&o, orows, d, col, dh);
            }
        }
    }
}

/// One head's sizes in the attention kernels: its width, the keys, the key blocks of `lanes`
/// keys and the column chunks of `lanes` columns.
struct HeadDims {
    dh: usize,
    lk: usize,
    blocks: usize,
    chunks: usize,
}

impl HeadDims {
    /// For width `d` split over `heads`, keys `k_len / d`, vectors of `S`'s width.
    fn new<S: pulp::Simd>(d: usize, heads: usize, k_len: usize) -> HeadDims {
        let (dh, lk) = (d / heads, k_len / d);
        HeadDims {
            dh,
            lk,
            blocks: lk.div_ceil(S::F32_LANES),
            chunks: dh.div_ceil(S::F32_LANES),
        }
    }
}

/// The softmax over the keys of the first `rows` of a group of [`ROWS`] query rows (`qh` as
/// for [`score_rows`]) into `p` (`[ROWS, lk]`), through the score vectors `scores`.
#[inline(always)]
fn softmax_group<S: pulp::Simd>(
    simd: S,
    qh: &[[f32; ROWS]],
    kb: &[S::f32s],
    scores: &mut [S::f32s],
    p: &mut [f32],
    rows: usize,
) {
    score_rows(simd, qh, kb, scores);
    let sf: &[f32] = pulp::bytemuck::cast_slice(scores);
    let lk = p.len() / ROWS;
    for (pt, st) in p
        .chunks_exact_mut(lk)
        .zip(sf.chunks_exact(sf.len() / ROWS))
        .take(rows)
    {
        softmax_row(&st[..lk], pt);
    }
}

/// Writes row `t` of `src` (`[ROWS, chunks]` vectors, `dh` columns used) into columns
/// `col..col + dh` of row `t` of `dst` (`[n, d]`, `n <= ROWS`).
#[inline(always)]
fn put_rows<S: pulp::Simd>(src: &[S::f32s], dst: &mut [f32], d: usize, col: usize, dh: usize) {
    let flat: &[f32] = pulp::bytemuck::cast_slice(src);
    for (row, st) in dst
        .chunks_exact_mut(d)
        .zip(flat.chunks_exact(flat.len() / ROWS))
    {
        row[col..col + dh].copy_from_slice(&st[..dh]);
    }
}

/// Packs one head's keys (columns `col..col + dh` of `k` `[lk, d]`) as `[block][dh]` vectors:
/// lane `i` of block `b`'s vector `c` is column `c` of key `b * lanes + i` (zero past the end).
#[inline(always)]
fn pack_keys<S: pulp::Simd>(k: &[f32], d: usize, col: usize, dh: usize, kb: &mut [S::f32s]) {
    let lanes = S::F32_LANES;
    let flat: &mut [f32] = pulp::bytemuck::cast_slice_mut(kb);
    flat.fill(0.0);
    for (j, kr) in k.chunks_exact(d).enumerate() {
        let (blk, lane) = (j / lanes, j % lanes);
        for c in 0..dh {
            flat[(blk * dh + c) * lanes + lane] = kr[col + c];
        }
    }
}

/// One head's columns `col..col + dh` of `x` (`[n, d]`) as `[chunk][n]` vectors of `lanes`
/// columns (zero past `dh`), for [`weighted_rows`].
#[inline(always)]
fn pack_rows<S: pulp::Simd>(x: &[f32], d: usize, col: usize, dh: usize, out: &mut [S::f32s]) {
    let lanes = S::F32_LANES;
    let n = x.len() / d;
    let flat: &mut [f32] = pulp::bytemuck::cast_slice_mut(out);
    for (ch, chunk) in flat.chunks_exact_mut(n * lanes).enumerate() {
        let c0 = ch * lanes;
        let width = lanes.min(dh - c0);
        for (o, row) in chunk.chunks_exact_mut(lanes).zip(x.chunks_exact(d)) {
            o[..width].copy_from_slice(&row[col + c0..col + c0 + width]);
            o[width..].fill(0.0);
        }
    }
}

/// `qh[c][t]` = column `col + c` of row `t` of `rows` (`[n, d]`, `n <= ROWS`); zero for `t >= n`.
#[inline(always)]
fn gather_rows(rows: &[f32], d: usize, col: usize, qh: &mut [[f32; ROWS]]) {
    for c in qh.iter_mut() {
        *c = [0.0; ROWS];
    }
    for (t, row) in rows.chunks_exact(d).enumerate() {
        for (c, &x) in qh.iter_mut().zip(&row[col..]) {
            c[t] = x;
        }
    }
}

/// Scores of [`ROWS`] rows against every key of one head: `out[t * blocks + b]` = the vector of
/// `q_t . k_j` for the keys `j` of block `b` (`kb` from [`pack_keys`]; `qh[c][t]` = column `c`
/// of row `t`). Two key blocks per pass: eight independent sums, each key vector read serving
/// four rows.
#[inline(always)]
fn score_rows<S: pulp::Simd>(simd: S, qh: &[[f32; ROWS]], kb: &[S::f32s], out: &mut [S::f32s]) {
    let dh = qh.len();
    let blocks = kb.len() / dh;
    let zero = simd.splat_f32s(0.0);
    let mut blk = 0;
    while blk + 2 <= blocks {
        let (x, y) = (
            &kb[blk * dh..(blk + 1) * dh],
            &kb[(blk + 1) * dh..(blk + 2) * dh],
        );
        let (mut a, mut b) = ([zero; ROWS], [zero; ROWS]);
        for ((qc, &kx), &ky) in qh.iter().zip(x).zip(y) {
            for t in 0..ROWS {
                let s = simd.splat_f32s(qc[t]);
                a[t] = simd.mul_add_e_f32s(s, kx, a[t]);
                b[t] = simd.mul_add_e_f32s(s, ky, b[t]);
            }
        }
        for t in 0..ROWS {
            out[t * blocks + blk] = a[t];
            out[t * blocks + blk + 1] = b[t];
        }
        blk += 2;
    }
    if blk < blocks {
        let mut a = [zero; ROWS];
        for (qc, &kx) in qh.iter().zip(&kb[blk * dh..]) {
            for t in 0..ROWS {
                a[t] = simd.mul_add_e_f32s(simd.splat_f32s(qc[t]), kx, a[t]);
            }
        }
        for t in 0..ROWS {
            out[t * blocks + blk] = a[t];
        }
    }
}

/// For [`ROWS`] rows of weights `p` (`[ROWS, lk]`): `out[t * chunks + ch]` = sum over `j` of
/// `p[t, j] * vp[ch * lk + j]` (`vp` from [`pack_rows`]). Each value vector read feeds the four
/// rows' sums, each kept as two partial sums (even and odd `j`): eight independent sums.
#[inline(always)]
fn weighted_rows<S: pulp::Simd>(simd: S, p: &[f32], vp: &[S::f32s], out: &mut [S::f32s]) {
    let lk = p.len() / ROWS;
    let chunks = vp.len() / lk;
    let zero = simd.splat_f32s(0.0);
    let (p0, p123) = p.split_at(lk);
    let (p1, p23) = p123.split_at(lk);
    let (p2, p3) = p23.split_at(lk);
    for (ch, vc) in vp.chunks_exact(lk).enumerate() {
        let (mut e, mut o) = ([zero; ROWS], [zero; ROWS]);
        let (vpairs, vlast) = vc.as_chunks::<2>();
        for ((((w0, w1), w2), w3), [r0, r1]) in p0
            .as_chunks::<2>()
            .0
            .iter()
            .zip(p1.as_chunks::<2>().0)
            .zip(p2.as_chunks::<2>().0)
            .zip(p3.as_chunks::<2>().0)
            .zip(vpairs)
        {
            for (t, w) in [w0, w1, w2, w3].into_iter().enumerate() {
                e[t] = simd.mul_add_e_f32s(simd.splat_f32s(w[0]), *r0, e[t]);
                o[t] = simd.mul_add_e_f32s(simd.splat_f32s(w[1]), *r1, o[t]);
            }
        }
        if let [r] = vlast {
            for (t, row) in [p0, p1, p2, p3].into_iter().enumerate() {
                e[t] = simd.mul_add_e_f32s(simd.splat_f32s(row[lk - 1]), *r, e[t]);
            }
        }
        for t in 0..ROWS {
            out[t * chunks + ch] = simd.add_f32s(e[t], o[t]);
        }
    }
}

/// LayerNorm over the last dimension with burn's default epsilon (1e-5), which every norm of
/// the model has (`LayerNormConfig::new(d)`).
pub fn layer_norm<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let Some(beta) = &norm.beta else {
        return norm.forward(x);
    };
    let x = match cast::<Tensor<B, D>, Tensor<TrainCpu, D>>(x) {
        Ok(x) => x,
        Err(x) => return norm.forward(x),
    };
    same(train_layer_norm(
        x,
        same(norm.gamma.val()),
        same(beta.val()),
    ))
}

/// burn's default LayerNorm epsilon.
const LN_EPS: f32 = 1e-5;

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// The input and gamma.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pgamma, pbeta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, gamma) = ops.state;
        let d = gamma.shape()[0];
        let computed = (|| {
            let (cx, shape) = values(&x)?;
            let (cg, _) = values(&gamma)?;
            let (cgrad, gshape) = values(&grad)?;
            (shape == gshape && d > 0).then_some(())?;
            let (dx, dgamma, dbeta) = layer_norm_grad(
                cx.as_slice::<f32>()?,
                cg.as_slice::<f32>()?,
                cgrad.as_slice::<f32>()?,
                d,
            );
            Some((
                from_vec(dx, shape),
                from_vec(dgamma, [d].into()),
                from_vec(dbeta, [d].into()),
            ))
        })();
        let Some((dx, dgamma, dbeta)) = computed else {
            // Only f32 reaches this op (see `train_layer_norm`).
            unreachable!("layer norm backward on a non-f32 tensor")
        };
        if let Some(p) = px {
            grads.register::<Flex>(p.id, dx);
        }
        if let Some(p) = pgamma {
            grads.register::<Flex>(p.id, dgamma);
        }
        if let Some(p) = pbeta {
            grads.register::<Flex>(p.id, dbeta);
        }
    }
}

fn train_layer_norm<const D: usize>(
    x: Tensor<TrainCpu, D>,
    gamma: Tensor<TrainCpu, 1>,
    beta: Tensor<TrainCpu, 1>,
) -> Tensor<TrainCpu, D> {
    let x = x.into_primitive().tensor();
    let gamma = gamma.into_primitive().tensor();
    let beta = beta.into_primitive().tensor();
    let f32s = [&x.primitive, &gamma.primitive, &beta.primitive]
        .iter()
        .all(|t| t.dtype() == DType::F32);
    let forward = |x: FlexTensor, g: FlexTensor, b: FlexTensor| {
        Flex::layer_norm(x, g, Some(b), f64::from(LN_EPS))
    };
    if !f32s {
        // Other element types: burn's own (decomposed) layer norm.
        let y =
            <TrainCpu as ModuleOps<TrainCpu>>::layer_norm(x, gamma, Some(beta), f64::from(LN_EPS));
        return Tensor::from_primitive(TensorPrimitive::Float(y));
    }
    let out = match LayerNormBackward
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>([
            x.node.clone(),
            gamma.node.clone(),
            beta.node.clone(),
        ])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(x.primitive.clone(), gamma.primitive.clone(), beta.primitive);
            prep.finish((x.primitive, gamma.primitive), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.primitive, gamma.primitive, beta.primitive))
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Gradients of LayerNorm for rows of `d`: `dx = r (gy - mean(gy) - xhat mean(gy xhat))` with
/// `gy = g gamma`, and the sums over rows of `g xhat` (gamma) and `g` (beta).
fn layer_norm_grad(
    x: &[f32],
    gamma: &[f32],
    g: &[f32],
    d: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; x.len()];
    let per_task = (CHUNK / d).max(1) * d;
    // Per-task partial sums collected in task order and added in that order: the same
    // result whatever the threads did (training runs are reproducible bit for bit).
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(per_task)
        .zip(x.par_chunks(per_task).zip(g.par_chunks(per_task)))
        .map(|(o, (x, g))| {
            let mut dgamma = vec![0f32; d];
            let mut dbeta = vec![0f32; d];
            let mut xhat = vec![0f32; d];
            let mut gy = vec![0f32; d];
            vectorised(
                #[inline(always)]
                || {
                    for ((o, x), g) in o
                        .chunks_exact_mut(d)
                        .zip(x.chunks_exact(d))
                        .zip(g.chunks_exact(d))
                    {
                        let inv_d = 1.0 / d as f32;
                        let mean = sum(x) * inv_d;
                        for (h, &v) in xhat.iter_mut().zip(x) {
                            *h = v - mean;
                        }
                        let var = dot(&xhat, &xhat) * inv_d;
                        let r = 1.0 / (var + LN_EPS).sqrt();
                        for h in xhat.iter_mut() {
                            *h *= r;
                        }
                        for ((y, &gv), &gm) in gy.iter_mut().zip(g).zip(gamma) {
                            *y = gv * gm;
                        }
                        let a = sum(&gy) * inv_d;
                        let b = dot(&gy, &xhat) * inv_d;
                        for ((o, &y), &h) in o.iter_mut().zip(&gy).zip(&xhat) {
                            *o = r * (y - a - h * b);
                        }
                        for (((dg, db), &gv), &h) in
                            dgamma.iter_mut().zip(dbeta.iter_mut()).zip(g).zip(&xhat)
                        {
                            *dg += gv * h;
                            *db += gv;
                        }
                    }
                },
            );
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0f32; d];
    let mut dbeta = vec![0f32; d];
    for (pg, pb) in partials {
        for (a, b) in dgamma.iter_mut().zip(pg) {
            *a += b;
        }
        for (a, b) in dbeta.iter_mut().zip(pb) {
            *a += b;
        }
    }
    (dx, dgamma, dbeta)
}

/// The f32 values of a flex tensor in row-major order (`None` for other element types).
pub(crate) fn values(t: &FlexTensor) -> Option<(FlexTensor, burn::tensor::Shape)> {
    (t.dtype() == DType::F32).then(|| (t.to_contiguous(), t.shape()))
}

pub(crate) fn from_vec(v: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn gelu_forward(x: &FlexTensor) -> Option<FlexTensor> {
    let (c, shape) = values(x)?;
    let xs = c.as_slice::<f32>()?;
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(o, x)| gelu_slice(x, o));
    Some(from_vec(out, shape))
}

fn gelu_backward(x: &FlexTensor, g: &FlexTensor) -> Option<FlexTensor> {
    let (cx, shape) = values(x)?;
    let (cg, gshape) = values(g)?;
    if shape != gshape {
        return None;
    }
    let xs = cx.as_slice::<f32>()?;
    let gs = cg.as_slice::<f32>()?;
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
        .for_each(|(o, (x, g))| gelu_grad_slice(x, g, o));
    Some(from_vec(out, shape))
}

/// `dx = y * (g - sum(g * y))` per row of the last dimension.
fn softmax_backward(y: &FlexTensor, g: &FlexTensor) -> Option<FlexTensor> {
    let (cy, shape) = values(y)?;
    let (cg, gshape) = values(g)?;
    if shape != gshape {
        return None;
    }
    let row = shape.num_dims().checked_sub(1).map(|d| shape[d])?;
    if row == 0 {
        return None;
    }
    let ys = cy.as_slice::<f32>()?;
    let gs = cg.as_slice::<f32>()?;
    let mut out = vec![0f32; ys.len()];
    let rows_per_task = (CHUNK / row).max(1);
    out.par_chunks_mut(rows_per_task * row)
        .zip(
            ys.par_chunks(rows_per_task * row)
                .zip(gs.par_chunks(rows_per_task * row)),
        )
        .for_each(|(o, (y, g))| softmax_grad_rows(y, g, o, row));
    Some(from_vec(out, shape))
}

/// Softmax over the last dimension of a flex tensor: row max, `exp(x - max)` and its sum, scale.
fn softmax_forward(x: FlexTensor) -> FlexTensor {
    let last = x.shape().num_dims().saturating_sub(1);
    let Some((c, shape)) = values(&x) else {
        return Flex::softmax(x, last);
    };
    let row = shape[last];
    let Some(xs) = c.as_slice::<f32>().filter(|_| row > 0) else {
        return Flex::softmax(x, last);
    };
    let mut out = vec![0f32; xs.len()];
    let per_task = (CHUNK / row).max(1) * row;
    out.par_chunks_mut(per_task)
        .zip(xs.par_chunks(per_task))
        .for_each(|(o, x)| softmax_rows(x, o, row));
    from_vec(out, shape)
}

/// An elementwise or row-wise operation under autodiff: its forward, and its backward from one
/// saved tensor (the forward's input or output) and the incoming gradient.
#[derive(Debug)]
struct UnaryBackward {
    /// `dx` from the saved tensor and the gradient of the output.
    grad: fn(FlexTensor, FlexTensor) -> FlexTensor,
}

impl Backward<Flex, 1> for UnaryBackward {
    /// The saved tensor.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<Flex>(parent.id, (self.grad)(ops.state, grad));
        }
    }
}

/// Which tensor a [`UnaryBackward`] keeps.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    Input,
    Output,
}

fn train_unary<const D: usize>(
    x: Tensor<TrainCpu, D>,
    forward: fn(&FlexTensor) -> FlexTensor,
    keep: Keep,
    grad: fn(FlexTensor, FlexTensor) -> FlexTensor,
) -> Tensor<TrainCpu, D> {
    let x = x.into_primitive().tensor();
    let out = match (UnaryBackward { grad })
        .prepare::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive);
            let state = if keep == Keep::Output {
                y.clone()
            } else {
                x.primitive
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn train_softmax<const D: usize>(x: Tensor<TrainCpu, D>) -> Tensor<TrainCpu, D> {
    train_unary(
        x,
        |x| softmax_forward(x.clone()),
        Keep::Output,
        |y, grad| {
            softmax_backward(&y, &grad).unwrap_or_else(|| {
                // Other element types: the same formula from flex's own operations.
                let last = y.shape().num_dims() - 1;
                let gy = Flex::float_mul(grad.clone(), y.clone());
                let s = Flex::float_sum_dim(gy, last);
                Flex::float_mul(y, Flex::float_sub(grad, s))
            })
        },
    )
}

fn train_gelu<const D: usize>(x: Tensor<TrainCpu, D>) -> Tensor<TrainCpu, D> {
    train_unary(
        x,
        |x| gelu_forward(x).unwrap_or_else(|| Flex::gelu(x.clone())),
        Keep::Input,
        |x, grad| gelu_backward(&x, &grad).unwrap_or_else(|| Flex::gelu_backward(x, grad)),
    )
}

// ---- the kernels: plain loops over slices, vectorised by the compiler inside pulp's dispatch ----

const SQRT1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `e^x` without branches: `x = n ln 2 + r`, `e^r` by Cephes' degree-6 polynomial, `2^n` built
/// in the exponent bits. Inputs are clamped to [-87, 88] (results from 1.6e-38 to 1.7e38).
///
/// No float-to-integer conversion: Rust's `as i32` saturates and maps NaN to 0, which LLVM
/// compiled to a scalar conversion and insert per lane (a third of the attention kernel's time).
/// `n` is rounded by adding and subtracting 1.5 * 2^23, and `2^n` comes from the low mantissa
/// bits of `2^23 + 127 + n` shifted into the exponent field.
#[inline(always)]
fn exp(x: f32) -> f32 {
    /// 1.5 * 2^23: adding it rounds a float below 2^22 in magnitude to an integer.
    const ROUND: f32 = 12_582_912.0;
    /// 2^23 + 127: `n + BIAS` holds `n + 127` in its low mantissa bits.
    const BIAS: f32 = 8_388_735.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n is in [-126, 127], so n + 127 in [1, 254] is a normal exponent; the shift drops
    // 2^23's own exponent bits.
    e * f32::from_bits((n + BIAS).to_bits() << 23)
}

/// `erf(x)` by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = 1.061_405_4_f32;
    let p = p * t - 1.453_152_1;
    let p = p * t + 1.421_413_8;
    let p = p * t - 0.284_496_74;
    let p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * SQRT1_2))
}

#[inline(always)]
fn gelu_grad_one(x: f32, g: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * SQRT1_2));
    let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
    g * (cdf + x * pdf)
}

/// Runs a closure inside pulp's dispatch, compiled once per instruction set (AVX-512, AVX2,
/// baseline) so the plain loops in it are vectorised for the widest one the CPU has.
struct Vectorised<F>(F);

impl<R, F: FnOnce() -> R> pulp::WithSimd for Vectorised<F> {
    type Output = R;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> R {
        (self.0)()
    }
}

#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(Vectorised(f))
}

fn gelu_slice(x: &[f32], out: &mut [f32]) {
    vectorised(
        #[inline(always)]
        || {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = gelu_one(v);
            }
        },
    );
}

fn gelu_grad_slice(x: &[f32], g: &[f32], out: &mut [f32]) {
    vectorised(
        #[inline(always)]
        || {
            for ((o, &v), &d) in out.iter_mut().zip(x).zip(g) {
                *o = gelu_grad_one(v, d);
            }
        },
    );
}

/// Partial sums kept apart (one vector register of 16 lanes), so reductions vectorise without
/// reassociating.
const LANES: usize = 16;

/// Sum of `a * b`.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..LANES {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

/// Sum of `a`.
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for x in ac {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + ar.iter().sum::<f32>()
}

/// Largest element (`-inf` for none; NaN-free inputs).
#[inline(always)]
fn max(a: &[f32]) -> f32 {
    let (ac, ar) = a.as_chunks::<LANES>();
    let mut acc = [f32::NEG_INFINITY; LANES];
    for x in ac {
        for i in 0..LANES {
            acc[i] = if x[i] > acc[i] { x[i] } else { acc[i] };
        }
    }
    acc.iter()
        .chain(ar)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `out = softmax(x)` for one row.
#[inline(always)]
fn softmax_row(x: &[f32], out: &mut [f32]) {
    let m = max(x);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp(v - m);
    }
    let inv = 1.0 / sum(out);
    for o in out.iter_mut() {
        *o *= inv;
    }
}

fn softmax_rows(x: &[f32], out: &mut [f32], row: usize) {
    vectorised(
        #[inline(always)]
        || {
            for (o, x) in out.chunks_exact_mut(row).zip(x.chunks_exact(row)) {
                softmax_row(x, o);
            }
        },
    );
}

fn softmax_grad_rows(y: &[f32], g: &[f32], out: &mut [f32], row: usize) {
    vectorised(
        #[inline(always)]
        || {
            for ((o, y), g) in out
                .chunks_exact_mut(row)
                .zip(y.chunks_exact(row))
                .zip(g.chunks_exact(row))
            {
                let d = dot(y, g);
                for ((o, &yv), &gv) in o.iter_mut().zip(y).zip(g) {
                    *o = yv * (gv - d);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tol, "largest difference {worst} > {tol}");
    }

    fn vals<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32 data")
    }

    /// One sample's attention forward and gradients at one SIMD level.
    fn kernels_at<S: pulp::Simd>(
        simd: S,
        (q, k, v, g): (&[f32], &[f32], &[f32], &[f32]),
        d: usize,
        heads: usize,
    ) -> Vec<Vec<f32>> {
        let mut out = vec![0f32; q.len()];
        simd.vectorize(Sample {
            q,
            k,
            v,
            out: &mut out,
            d,
            heads,
        });
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; q.len()],
            vec![0f32; k.len()],
            vec![0f32; k.len()],
        );
        simd.vectorize(SampleGrad {
            q,
            k,
            v,
            g,
            dq: &mut dq,
            dk: &mut dk,
            dv: &mut dv,
            d,
            heads,
        });
        vec![out, dq, dk, dv]
    }

    /// The attention kernels agree at every SIMD width this CPU has: the dispatcher picks only
    /// the widest, so AVX2 (8 lanes) and the scalar fallback are otherwise untested on an
    /// AVX-512 machine. Head widths 16, 24, 12; 11 query rows and 29 keys (partial row group,
    /// partial key blocks, an odd last value row at every width).
    #[test]
    fn attention_kernels_agree_across_simd_widths() {
        let mut seed = 7u32;
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        };
        let (lq, lk, d) = (11, 29, 48);
        let (q, k, v, g) = (draw(lq * d), draw(lk * d), draw(lk * d), draw(lq * d));
        for heads in [3, 2, 4] {
            let inputs = (&q[..], &k[..], &v[..], &g[..]);
            let scalar = kernels_at(pulp::Scalar::new(), inputs, d, heads);
            let mut levels = vec![];
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(simd) = pulp::x86::V3::try_new() {
                    levels.push(("AVX2", kernels_at(simd, inputs, d, heads)));
                }
                if let Some(simd) = pulp::x86::V4::try_new() {
                    levels.push(("AVX-512", kernels_at(simd, inputs, d, heads)));
                }
            }
            for (name, got) in levels {
                for (a, b) in got.iter().zip(&scalar) {
                    let worst = a
                        .iter()
                        .zip(b)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-5,
                        "{name}, {heads} heads: {worst} from the scalar kernel"
                    );
                }
            }
        }
    }

    /// Random gamma and beta, so their gradients are not those of the identity.
    struct RandomParams;

    impl burn::module::ModuleMapper<TrainCpu> for RandomParams {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<TrainCpu, D>>,
        ) -> burn::module::Param<Tensor<TrainCpu, D>> {
            let (id, t, _) = param.consume();
            let r = Tensor::random(t.shape(), Distribution::Normal(1.0, 0.5), &t.device());
            burn::module::Param::initialized(id, r.require_grad())
        }
    }

    #[test]
    fn exp_and_erf_match_the_standard_library() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.01).collect();
        for &x in &xs {
            let e = exp(x);
            let want = x.exp();
            assert!(
                ((e - want) / want).abs() < 4e-7,
                "exp({x}) = {e}, want {want}"
            );
            let erf_want = libm_erf(x);
            assert!((erf(x) - erf_want).abs() < 3e-7, "erf({x}) = {}", erf(x));
        }
        assert_eq!(exp(-200.0), (-87f32).exp());
        assert!(erf(50.0) == 1.0 && erf(-50.0) == -1.0);
    }

    fn libm_erf(x: f32) -> f32 {
        // erf from the series / continued fraction in f64 (reference only).
        let x = f64::from(x);
        let t = 1.0 / (1.0 + 0.5 * x.abs());
        let y = 1.0
            - t * (-x * x - 1.265_512_23
                + t * (1.000_023_68
                    + t * (0.374_091_96
                        + t * (0.096_784_18
                            + t * (-0.186_288_06
                                + t * (0.278_868_07
                                    + t * (-1.135_203_98
                                        + t * (1.488_515_87
                                            + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                .exp();
        (if x >= 0.0 { y } else { -y }) as f32
    }

    #[test]
    fn fused_softmax_and_gelu_match_burn_forward_and_backward() {
        let device = Default::default();
        let x =
            Tensor::<TrainCpu, 4>::random([3, 2, 7, 37], Distribution::Normal(0.0, 3.0), &device);
        let w =
            Tensor::<TrainCpu, 4>::random([3, 2, 7, 37], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = x.clone().detach().require_grad();
            let s = if fused {
                softmax_last(x.clone())
            } else {
                burn::tensor::activation::softmax(x.clone(), 3)
            };
            let g = if fused {
                gelu(x.clone() * 2.0)
            } else {
                burn::tensor::activation::gelu(x.clone() * 2.0)
            };
            let loss = (s.clone() * w.clone()).sum() + (g.clone() * w.clone()).sum();
            let grads = loss.backward();
            let dx = x.grad(&grads).expect("x has a gradient");
            (vals(s), vals(g), vals(dx))
        };
        let (s1, g1, d1) = run(true);
        let (s0, g0, d0) = run(false);
        close(&s1, &s0, 1e-6);
        close(&g1, &g0, 2e-6);
        close(&d1, &d0, 2e-5);
        // LayerNorm: output and the gradients of input, gamma and beta.
        let norm = burn::nn::LayerNormConfig::new(37).init::<TrainCpu>(&device);
        let norm = burn::module::Module::map(norm, &mut RandomParams);
        let run_ln = |fused: bool| {
            let xi = x.clone().detach().require_grad();
            let y = if fused {
                layer_norm(&norm, xi.clone())
            } else {
                norm.forward(xi.clone())
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let g = |t: Tensor<TrainCpu, 1>| vals(t.grad(&grads).expect("parameter gradient"));
            (
                vals(y),
                vals(xi.grad(&grads).expect("x gradient")),
                g(norm.gamma.val()),
                g(norm.beta.as_ref().expect("beta").val()),
            )
        };
        let (y1, dx1, dg1, db1) = run_ln(true);
        let (y0, dx0, dg0, db0) = run_ln(false);
        close(&y1, &y0, 2e-5);
        close(&dx1, &dx0, 2e-4);
        close(&dg1, &dg0, 2e-4);
        close(&db1, &db0, 2e-4);
        // Attention: the fused evaluation kernel against the two products.
        let qa = Tensor::<Flex, 3>::random([2, 11, 48], Distribution::Normal(0.0, 1.0), &device);
        let ka = Tensor::<Flex, 3>::random([2, 29, 48], Distribution::Normal(0.0, 1.0), &device);
        let va = Tensor::<Flex, 3>::random([2, 29, 48], Distribution::Normal(0.0, 1.0), &device);
        // Head widths 16, 24 and 12: with AVX-512's 16 lanes, one full vector of columns, one
        // and a zero-padded half, and a padded one alone. Lengths 11 and 29: a last group of
        // three query rows, and keys that fill neither a vector block nor a pair.
        for heads in [3, 2, 4] {
            let dh = 48 / heads;
            let split = |x: Tensor<Flex, 3>| {
                let [b, l, _] = x.dims();
                x.reshape([b, l, heads, dh]).swap_dims(1, 2)
            };
            let want = burn::tensor::activation::softmax(
                split(qa.clone()).matmul(split(ka.clone()).swap_dims(2, 3)),
                3,
            )
            .matmul(split(va.clone()))
            .swap_dims(1, 2)
            .reshape([2, 11, 48]);
            close(
                &vals(attention(qa.clone(), ka.clone(), va.clone(), heads)),
                &vals(want),
                2e-6,
            );
        }
        // Under autodiff: output and the gradients of q, k and v against burn's products, for
        // the same three head widths.
        let wa =
            Tensor::<TrainCpu, 3>::random([2, 11, 48], Distribution::Normal(0.0, 1.0), &device);
        let lift = |t: Tensor<Flex, 3>| Tensor::<TrainCpu, 3>::from_inner(t).require_grad();
        for heads in [3, 2, 4] {
            let run_att = |fused: bool| {
                let (q, k, v) = (lift(qa.clone()), lift(ka.clone()), lift(va.clone()));
                let y = if fused {
                    attention(q.clone(), k.clone(), v.clone(), heads)
                } else {
                    let split = |x: Tensor<TrainCpu, 3>| {
                        let [b, l, _] = x.dims();
                        x.reshape([b, l, heads, 48 / heads]).swap_dims(1, 2)
                    };
                    burn::tensor::activation::softmax(
                        split(q.clone()).matmul(split(k.clone()).swap_dims(2, 3)),
                        3,
                    )
                    .matmul(split(v.clone()))
                    .swap_dims(1, 2)
                    .reshape([2, 11, 48])
                };
                let grads = (y.clone() * wa.clone()).sum().backward();
                let gr = |t: &Tensor<TrainCpu, 3>| vals(t.grad(&grads).expect("gradient"));
                (vals(y), gr(&q), gr(&k), gr(&v))
            };
            let (y1, q1, k1, v1) = run_att(true);
            let (y0, q0, k0, v0) = run_att(false);
            close(&y1, &y0, 2e-6);
            close(&q1, &q0, 2e-5);
            close(&k1, &k0, 2e-5);
            close(&v1, &v0, 2e-5);
        }
        // Evaluation (no autodiff) takes the flex path.
        let xe = x.inner();
        close(
            &vals(gelu(xe.clone())),
            &vals(burn::tensor::activation::gelu(xe.clone())),
            2e-6,
        );
        close(
            &vals(softmax_last(xe.clone())),
            &vals(burn::tensor::activation::softmax(xe, 3)),
            1e-6,
        );
    }
}
