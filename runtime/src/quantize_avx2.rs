//! Quantising activations to i8 (ONNX `QuantizeLinear` to int8) with AVX2, swapped into an
//! optimised tract plan in place of tract's element-by-element version.
//!
//! tract 0.23.9 runs `QuantizeLinearI8` one element at a time (a software round-to-even per
//! value): about 1.8 ns per element on this project's reference CPU, 9 % of the full int8
//! plan (`BENCHMARKS.md`). [`swap_into`] replaces every such node of an optimised model with
//! [`QuantizeI8`], which computes the same function 32 values at a time: `x * scale` in f32,
//! rounded half to even, plus the zero point, clamped to [-128, 127]. It is the same result for
//! every input, NaN and infinities included (NaN gives the zero point, as `NaN as i32` is 0
//! there); `tests/int8_kernel.rs` holds it to tract's op value for value.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_onnx::tract_core::ops::quant::QuantizeLinearI8;

/// `QuantizeLinear` to i8, vectorised. `scale` is the reciprocal of ONNX's `y_scale`, as in
/// tract's op.
#[derive(Debug, Clone)]
pub struct QuantizeI8 {
    /// Multiplier (1 / the ONNX scale).
    pub scale: f32,
    /// Zero point.
    pub zero_point: i8,
}

impl PartialEq for QuantizeI8 {
    fn eq(&self, other: &Self) -> bool {
        self.scale.to_bits() == other.scale.to_bits() && self.zero_point == other.zero_point
    }
}

impl Eq for QuantizeI8 {}

impl ElementWiseMiniOp for QuantizeI8 {
    fn name(&self) -> String {
        "EknetQuantizeI8".into()
    }

    fn output_type(&self, input_type: DatumType) -> Option<DatumType> {
        (input_type == DatumType::F32).then_some(DatumType::I8)
    }

    fn eval_out_of_place(&self, t: &Tensor, _out_dt: Option<DatumType>) -> TractResult<Tensor> {
        let plain = t.try_as_plain_ram()?;
        let xs = plain.as_slice::<f32>()?;
        // SAFETY: every element is written below (`quantize` covers the whole slice).
        let mut out = unsafe { Tensor::uninitialized::<i8>(t.shape())? };
        {
            let mut out_plain = out.try_as_plain_ram_mut()?;
            let ys = out_plain.as_slice_mut::<i8>()?;
            quantize(xs, ys, self.scale, self.zero_point);
        }
        Ok(out)
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "scale: {} zero_point: {} (AVX2)",
            self.scale, self.zero_point
        )])
    }
}

/// The reference: tract's `quantize_linear_f32_i8`, one value. The one difference is on
/// purpose: where `x * scale` is beyond +-2^31 and the zero point is not 0, tract's integer add
/// wraps (and panics in a debug build); this saturates. eknet's graphs use zero point 0, where
/// the two agree everywhere.
pub fn quantize_one(x: f32, scale: f32, zero_point: i8) -> i8 {
    (round_ties_to_even(x * scale) as i32)
        .saturating_add(zero_point as i32)
        .clamp(-128, 127) as i8
}

/// Quantises `xs` into `ys` (same length).
pub fn quantize(xs: &[f32], ys: &mut [i8], scale: f32, zero_point: i8) {
    let n = xs.len().min(ys.len());
    let done = if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the slices hold `n` values each.
        unsafe { quantize_avx2(&xs[..n], &mut ys[..n], scale, zero_point) }
    } else {
        0
    };
    for (x, y) in xs[done..n].iter().zip(&mut ys[done..n]) {
        *y = quantize_one(*x, scale, zero_point);
    }
}

/// 32 values per step; returns how many it did (a multiple of 32).
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(xs: &[f32], ys: &mut [i8], scale: f32, zero_point: i8) -> usize {
    use std::arch::x86_64::*;
    let steps = xs.len() / 32;
    let s = _mm256_set1_ps(scale);
    let zp = _mm256_set1_ps(zero_point as f32);
    let lo = _mm256_set1_ps(-128.0);
    let hi = _mm256_set1_ps(127.0);
    let zero = _mm256_setzero_ps();
    // packs work within 128-bit lanes: this puts the four groups of 8 back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for step in 0..steps {
        let q = |j: usize| {
            // SAFETY: step * 32 + j * 8 + 8 <= xs.len().
            let x = unsafe { _mm256_loadu_ps(xs.as_ptr().add(step * 32 + j * 8)) };
            let p = _mm256_mul_ps(x, s);
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p);
            // NaN rounds to 0 in the reference (`NaN as i32`).
            let r = _mm256_blendv_ps(r, zero, _mm256_cmp_ps::<_CMP_UNORD_Q>(p, p));
            let r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, zp), lo), hi);
            _mm256_cvtps_epi32(r)
        };
        let (a, b, c, d) = (q(0), q(1), q(2), q(3));
        let ab = _mm256_packs_epi32(a, b);
        let cd = _mm256_packs_epi32(c, d);
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
        // SAFETY: step * 32 + 32 <= ys.len().
        unsafe { _mm256_storeu_si256(ys.as_mut_ptr().add(step * 32) as *mut __m256i, bytes) };
    }
    steps * 32
}

/// Replaces every `QuantizeLinearI8` node of an optimised model that quantises an f32 input
/// with [`QuantizeI8`] (tract's op also takes i32 inputs; those keep it). Returns how many it
/// replaced (0 without AVX2, where tract's op stays).
pub fn swap_into(model: &mut TypedModel) -> usize {
    if !std::arch::is_x86_feature_detected!("avx2") {
        return 0;
    }
    let f32_input: Vec<bool> = model
        .nodes()
        .iter()
        .map(|n| {
            n.inputs.first().is_some_and(|i| {
                model
                    .outlet_fact(*i)
                    .is_ok_and(|f| f.datum_type == DatumType::F32)
            })
        })
        .collect();
    let mut swapped = 0;
    for node in model.nodes_mut() {
        if !f32_input[node.id] {
            continue;
        }
        let Some(ew) = node.op_as::<ElementWiseOp>() else {
            continue;
        };
        let Some(q) = ew.0.downcast_ref::<QuantizeLinearI8>() else {
            continue;
        };
        let op = ElementWiseOp(
            Box::new(QuantizeI8 {
                scale: q.scale,
                zero_point: q.zero_point,
            }),
            ew.1,
        );
        node.op = Box::new(op);
        swapped += 1;
    }
    swapped
}
