//! An exact int8 matrix-product kernel for x86-64 CPUs with AVX2 but no VNNI, registered into
//! tract's kernel dispatch from outside tract.
//!
//! tract-linalg 0.23.9 has one AVX2 integer kernel, `avx2_mmm_i32_8x8`. It widens every byte
//! twice and multiplies with `vpmullw`, and its inner loop loads A with a legacy-SSE `movq`: on
//! a CPU (or hypervisor) that charges for SSE/AVX transitions it runs at about 0.5 GMAC/s, 40 to
//! 80 times slower than tract's own f32 kernel (`BENCHMARKS.md` has the profile). This kernel
//! is what tract's VNNI kernels are, without VNNI:
//!
//! - both operands packed K=4-inner (`PackedI8K4(8)`, tract's own packer: per block of 4 k, 8
//!   rows or columns of 4 bytes each);
//! - per block, A's bytes split into the even-k and odd-k halves as sign-extended 16-bit pairs
//!   by two shifts, the same for B, and `vpmaddwd` forms `a0 b0 + a2 b2` and `a1 b1 + a3 b3`
//!   in 32-bit lanes: 16 multiply-adds per instruction, **exact** for every i8 input (no
//!   `vpmaddubsw` saturation, no +128 bias);
//! - the 8x8 i32 tile stays in eight ymm registers, one per output column, for the whole k.
//!
//! The fused epilogue (requantisation, bias, stores) follows tract's generic Rust kernel op by
//! op, on the same tile. A dispatch tier of its own names this kernel for i32-accumulated
//! products on machines with AVX2, unless tract has a VNNI or AMX int8 kernel for the machine
//! (those stay tract's choice). [`registered`] says whether dispatch picks it on this machine.

use tract_onnx::prelude::DatumType;
use tract_onnx::tract_core::tract_linalg as linalg;

use linalg::isa::{Arch, Isa, IsaReq, IsaSet};
use linalg::mmm::{DynKernel, FusedKerSpec, MatMatMul, OutputStoreKer, Query, Suitable};
use linalg::pack::{PackedI8K4, Packing};
use linalg::{ScaleShiftAndRound, Scaler};

/// The kernel's name in tract's dispatch (and in profiles).
pub const KERNEL_NAME: &str = "eknet_avx2_mmm_i32_8x8_k4";

const MR: usize = 8;
const NR: usize = 8;

/// The tile, column-major: `tile[col][row]`, as the registers hold it.
type Tile = [[i32; MR]; NR];

fn build() -> DynKernel<MR, NR, i32> {
    // Packing 0 is the accumulator type's own (i32 x i32), which every i32 kernel carries;
    // packing 1 is the i8 x i8 product this kernel exists for.
    let mut k = DynKernel::<MR, NR, i32>::new(
        KERNEL_NAME,
        kernel,
        i32::packing(MR).align(32),
        i32::packing(NR).align(4),
    )
    .with_packing(PackedI8K4::new(MR), PackedI8K4::new(NR))
    .with_store::<i8>()
    .with_isa(IsaReq::ANY.needing(&[Isa::X86_64Avx2]))
    // Above tract's AVX2 kernel (instruction-set level 2) and below its AVX-VNNI one (level 3)
    // wherever a caller ranks kernels by preference rather than by tier: a matrix-vector
    // product, or a product whose n is symbolic.
    .with_boost(|| linalg::isa::LEVEL_BOOST / 2);
    k.arch = Some(Arch::X86_64);
    k
}

fn make() -> Box<dyn MatMatMul> {
    build().mmm()
}

fn applies(isa: &IsaSet) -> bool {
    isa.has(Isa::X86_64Avx2)
}

/// i32-accumulated products, unless tract has a VNNI or AMX int8 kernel for this machine (its
/// `vpdpbusd` / `tdpbssd` kernels are better; whether they exist depends on the CPU and on
/// what tract's build could assemble, so the suitable list is asked, not the CPU). Matrix-vector
/// products are left to the tiers below, as tract's AVX2 tier leaves them; the preference
/// ranking that then decides still puts this kernel above tract's AVX2 one.
fn preferred(
    _isa: &IsaSet,
    acc: DatumType,
    query: &Query,
    suitable: &[Suitable],
) -> Option<&'static str> {
    let better = suitable.iter().any(|(mmm, _, _)| {
        let name = mmm.name();
        name.contains("vnni") || name.contains("amx")
    });
    (acc == DatumType::I32 && query.n != Some(1) && !better).then_some(KERNEL_NAME)
}

inventory::submit! {
    linalg::mmm_routines::MmmRoutine { make }
}

inventory::submit! {
    linalg::mmm_tiers::MmmTier {
        arch: Some(Arch::X86_64),
        // Unique among x86-64 tiers (tract uses 1 to 8); it only answers where no VNNI tier does.
        precedence: 20,
        name: "eknet-avx2-int8",
        applies,
        preferred,
    }
}

/// The kernel tract's dispatch would run for an i32-accumulated `[m, k] x [k, n]` int8 product
/// on this machine. [`KERNEL_NAME`] on AVX2 machines without VNNI.
pub fn registered(m: usize, k: usize, n: usize) -> Option<String> {
    linalg::MmmDispatch::native()
        .preferred_kernel(DatumType::I32, Some(m), Some(k), Some(n))
        .map(|mmm| mmm.name().to_string())
}

unsafe fn kernel(ops: &[FusedKerSpec<i32>]) -> isize {
    // Dispatch only picks this kernel where its instruction-set view has AVX2, but that view
    // can be edited (`TRACT_CPU_ISA`): check the CPU itself. A non-zero return is tract's
    // "kernel failed" error.
    if !std::arch::is_x86_feature_detected!("avx2") {
        return 1;
    }
    // SAFETY: AVX2 is present.
    unsafe { kernel_avx2(ops) }
}

#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(ops: &[FusedKerSpec<i32>]) -> isize {
    let mut tile: Tile = [[0; MR]; NR];
    for op in ops {
        // SAFETY: the pointers in the ops are tract's, valid for the tile and the k given.
        unsafe {
            match *op {
                FusedKerSpec::Done => break,
                FusedKerSpec::Clear => tile = [[0; MR]; NR],
                FusedKerSpec::LoadTile(col_major, _row_major) => {
                    for (c, col) in tile.iter_mut().enumerate() {
                        for (r, v) in col.iter_mut().enumerate() {
                            *v = *col_major.add(c * MR + r);
                        }
                    }
                }
                FusedKerSpec::ScalarAdd(s) => each(&mut tile, |v| v.wrapping_add(s)),
                FusedKerSpec::ScalarMul(s) => each(&mut tile, |v| v.wrapping_mul(s)),
                FusedKerSpec::ScalarMin(s) => each(&mut tile, |v| v.min(s)),
                FusedKerSpec::ScalarMax(s) => each(&mut tile, |v| v.max(s)),
                FusedKerSpec::ScalarSub(s) => each(&mut tile, |v| s.wrapping_sub(v)),
                FusedKerSpec::ScalarSubF(s) => each(&mut tile, |v| v.wrapping_sub(s)),
                FusedKerSpec::LeakyRelu(s) => {
                    each(&mut tile, |v| if v > 0 { v } else { s.wrapping_mul(v) })
                }
                FusedKerSpec::PerRowMin(p) => per_row(&mut tile, p, |m, v| m.min(v)),
                FusedKerSpec::PerRowMax(p) => per_row(&mut tile, p, |m, v| m.max(v)),
                FusedKerSpec::PerRowAdd(p) => per_row(&mut tile, p, |m, v| m.wrapping_add(v)),
                FusedKerSpec::PerRowMul(p) => per_row(&mut tile, p, |m, v| m.wrapping_mul(v)),
                FusedKerSpec::PerRowSub(p) => per_row(&mut tile, p, |m, v| m.wrapping_sub(v)),
                FusedKerSpec::PerRowSubF(p) => per_row(&mut tile, p, |m, v| v.wrapping_sub(m)),
                FusedKerSpec::PerColMin(p) => per_col(&mut tile, p, |m, v| m.min(v)),
                FusedKerSpec::PerColMax(p) => per_col(&mut tile, p, |m, v| m.max(v)),
                FusedKerSpec::PerColAdd(p) => per_col(&mut tile, p, |m, v| m.wrapping_add(v)),
                FusedKerSpec::PerColMul(p) => per_col(&mut tile, p, |m, v| m.wrapping_mul(v)),
                FusedKerSpec::PerColSub(p) => per_col(&mut tile, p, |m, v| m.wrapping_sub(v)),
                FusedKerSpec::PerColSubF(p) => per_col(&mut tile, p, |m, v| v.wrapping_sub(m)),
                FusedKerSpec::AddRowColProducts(rows, cols) => {
                    for (c, col) in tile.iter_mut().enumerate() {
                        for (r, v) in col.iter_mut().enumerate() {
                            *v = v.wrapping_add((*rows.add(r)).wrapping_mul(*cols.add(c)));
                        }
                    }
                }
                FusedKerSpec::AddUnicast(other) => match other.item_size {
                    1 => add_unicast::<i8>(&mut tile, &other),
                    4 => add_unicast::<i32>(&mut tile, &other),
                    _ => return 1,
                },
                FusedKerSpec::ShiftLeft(shift) => each(&mut tile, |v| v.q_shl(shift)),
                FusedKerSpec::RoundingShiftRight(shift, rp) => {
                    each(&mut tile, |v| v.q_shr(shift, rp))
                }
                FusedKerSpec::QScale(shift, rp, mult) => {
                    let scaler = Scaler::from_fuse_params(shift, rp, mult);
                    each(&mut tile, |v| v.q_scale(scaler))
                }
                FusedKerSpec::AddMatMul { k, pa, pb, packing } => match packing {
                    0 => add_mat_mul_i32(&mut tile, pa as *const i32, pb as *const i32, k),
                    1 => add_mat_mul_i8_k4(&mut tile, pa as *const i8, pb as *const i8, k),
                    _ => return 1,
                },
                FusedKerSpec::Store(out) => match out.item_size {
                    1 => store::<i8>(&tile, &out, |v| v as i8),
                    4 if out.row_byte_stride == 4 => store_columns_i32(&tile, &out),
                    4 => store::<i32>(&tile, &out, |v| v),
                    _ => return 1,
                },
            }
        }
    }
    0
}

#[inline(always)]
fn each(tile: &mut Tile, f: impl Fn(i32) -> i32) {
    for col in tile.iter_mut() {
        for v in col.iter_mut() {
            *v = f(*v);
        }
    }
}

#[inline(always)]
unsafe fn per_row(tile: &mut Tile, p: *const i32, f: impl Fn(i32, i32) -> i32) {
    for col in tile.iter_mut() {
        for (r, v) in col.iter_mut().enumerate() {
            // SAFETY: tract passes MR values per row.
            *v = f(unsafe { *p.add(r) }, *v);
        }
    }
}

#[inline(always)]
unsafe fn per_col(tile: &mut Tile, p: *const i32, f: impl Fn(i32, i32) -> i32) {
    for (c, col) in tile.iter_mut().enumerate() {
        // SAFETY: tract passes NR values per column.
        let m = unsafe { *p.add(c) };
        for v in col.iter_mut() {
            *v = f(m, *v);
        }
    }
}

#[inline(always)]
unsafe fn add_unicast<T: Copy + Into<i32>>(tile: &mut Tile, other: &OutputStoreKer) {
    for (c, col) in tile.iter_mut().enumerate() {
        for (r, v) in col.iter_mut().enumerate() {
            // SAFETY: the store describes an MR x NR tile of T.
            let x = unsafe {
                *(other
                    .ptr
                    .offset(other.row_byte_stride * r as isize + other.col_byte_stride * c as isize)
                    as *const T)
            };
            *v = v.wrapping_add(x.into());
        }
    }
}

#[inline(always)]
unsafe fn store<T: Copy>(tile: &Tile, out: &OutputStoreKer, cast: impl Fn(i32) -> T) {
    for (c, col) in tile.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            // SAFETY: the store describes an MR x NR tile of T.
            unsafe {
                *(out
                    .ptr
                    .offset(out.row_byte_stride * r as isize + out.col_byte_stride * c as isize)
                    as *mut T) = cast(*v);
            }
        }
    }
}

/// The i32 tile into an output whose rows are contiguous: one 32-byte store per column.
#[target_feature(enable = "avx2")]
unsafe fn store_columns_i32(tile: &Tile, out: &OutputStoreKer) {
    use std::arch::x86_64::*;
    for (c, col) in tile.iter().enumerate() {
        // SAFETY: the store describes an MR x NR tile of i32 with a row stride of 4 bytes, so
        // each column is 8 contiguous i32.
        unsafe {
            let v = _mm256_loadu_si256(col.as_ptr() as *const __m256i);
            _mm256_storeu_si256(
                out.ptr.offset(out.col_byte_stride * c as isize) as *mut __m256i,
                v,
            );
        }
    }
}

/// i32 x i32, tract's plain packing: per k, MR values of A then NR values of B.
#[target_feature(enable = "avx2")]
unsafe fn add_mat_mul_i32(tile: &mut Tile, pa: *const i32, pb: *const i32, k: usize) {
    use std::arch::x86_64::*;
    // SAFETY: A holds k x MR and B k x NR i32 values; the tile is 8 x 8 i32.
    unsafe {
        let mut acc: [__m256i; NR] =
            std::array::from_fn(|c| _mm256_loadu_si256(tile[c].as_ptr() as *const __m256i));
        for ik in 0..k {
            let a = _mm256_loadu_si256(pa.add(ik * MR) as *const __m256i);
            let b = pb.add(ik * NR);
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_add_epi32(*acc, _mm256_mullo_epi32(a, _mm256_set1_epi32(*b.add(c))));
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            _mm256_storeu_si256(tile[c].as_mut_ptr() as *mut __m256i, *acc);
        }
    }
}

/// Blocks of B split per pass of [`add_mat_mul_i8_k4`]: 64 blocks (k 256) are 4 KiB of split
/// pairs on the stack.
const CHUNK_BLOCKS: usize = 64;

/// i8 x i8, both packed K=4-inner (`PackedI8K4(8)`): per block of 4 k, 8 x 4 bytes of A (row r
/// at bytes 4r..4r+4) and 8 x 4 bytes of B (column c at 4c..4c+4); k is zero-padded to a
/// multiple of 4 by the packer.
///
/// B is split into sign-extended 16-bit pairs a chunk of blocks ahead of the products, into a
/// stack buffer the product loop then broadcasts from: broadcasting straight out of a vector
/// store made the line before stalls on store-to-load forwarding.
#[target_feature(enable = "avx2")]
unsafe fn add_mat_mul_i8_k4(tile: &mut Tile, pa: *const i8, pb: *const i8, k: usize) {
    use std::arch::x86_64::*;
    let blocks = k.div_ceil(4);
    // SAFETY: A and B hold `blocks` blocks of 32 bytes each; the tile is 8 x 8 i32; `split`
    // holds CHUNK_BLOCKS blocks of two 32-byte halves.
    unsafe {
        let mut acc: [__m256i; NR] =
            std::array::from_fn(|c| _mm256_loadu_si256(tile[c].as_ptr() as *const __m256i));
        // Written before it is read, block by block: no need to clear 4 KiB per tile.
        let mut split = std::mem::MaybeUninit::<[__m256i; 2 * CHUNK_BLOCKS]>::uninit();
        let sp = split.as_mut_ptr() as *mut __m256i;
        let mut first = 0;
        while first < blocks {
            let len = CHUNK_BLOCKS.min(blocks - first);
            // Each 16-bit word holds the (even k, odd k) bytes of one column; the low byte
            // sign-extended is the even k, the high byte the odd k. Per 32-bit lane: column
            // c's (k0, k2) in the first half, (k1, k3) in the second.
            for i in 0..len {
                let b = _mm256_loadu_si256(pb.add((first + i) * 32) as *const __m256i);
                _mm256_storeu_si256(
                    sp.add(2 * i),
                    _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(b)),
                );
                _mm256_storeu_si256(sp.add(2 * i + 1), _mm256_srai_epi16::<8>(b));
            }
            let s = std::hint::black_box(sp as *const i32);
            for i in 0..len {
                let a = _mm256_loadu_si256(pa.add((first + i) * 32) as *const __m256i);
                // The same split of A: row r's (k0, k2) and (k1, k3) per 32-bit lane.
                let a_even = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(a));
                let a_odd = _mm256_srai_epi16::<8>(a);
                let s = s.add(i * 16);
                for (c, acc) in acc.iter_mut().enumerate() {
                    // Column c's pairs, broadcast from memory (a load-port `vpbroadcastd`).
                    let b_even = _mm256_set1_epi32(*s.add(c));
                    let b_odd = _mm256_set1_epi32(*s.add(NR + c));
                    let sum = _mm256_add_epi32(
                        _mm256_madd_epi16(a_even, b_even),
                        _mm256_madd_epi16(a_odd, b_odd),
                    );
                    *acc = _mm256_add_epi32(*acc, sum);
                }
            }
            first += len;
        }
        for (c, acc) in acc.iter().enumerate() {
            _mm256_storeu_si256(tile[c].as_mut_ptr() as *mut __m256i, *acc);
        }
    }
}
