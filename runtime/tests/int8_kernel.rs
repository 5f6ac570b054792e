//! The int8 matrix products tract runs for eknet (on AVX2 machines without VNNI, eknet's own
//! kernel, `eknet_runtime::int8_avx2`), checked value for value against plain integer
//! arithmetic: exact i32 products for every i8 input including -128, ragged shapes that leave
//! partial tiles and k not a multiple of 4, constant and run-time operands, and the fused
//! requantisation of `QLinearMatMul` (per-tensor and per-channel).

#![allow(clippy::unwrap_used, missing_docs)]

use eknet_runtime::tract_onnx::pb;
use eknet_runtime::tract_onnx::prelude::*;
use prost::Message;

use eknet_shared::rng::Rng;

/// Any i8, with the extremes -128 and 127 over-represented.
fn i8s(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| match rng.next_u64() % 8 {
            0 => -128,
            1 => 127,
            _ => rng.next_u64() as i8,
        })
        .collect()
}

fn tensor_proto(
    name: &str,
    dims: &[usize],
    dt: pb::tensor_proto::DataType,
    raw: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: pb::tensor_proto::DataType, dims: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The graph as an opset-17 model, read and optimised by tract.
fn optimized(graph: pb::GraphProto) -> TypedModel {
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(model.encode_to_vec()))
        .unwrap()
        .into_optimized()
        .unwrap()
}

/// A one-node graph: `node(a, b, extra...) -> y`. `a` [m, k] is always an input; `b` [k, n] is
/// an input or a constant (what tract packs ahead of time).
fn run_graph(
    op: &str,
    (m, k, n): (usize, usize, usize),
    a: &[i8],
    b: &[i8],
    b_constant: bool,
    extra: Vec<pb::TensorProto>,
    out: pb::tensor_proto::DataType,
) -> Tensor {
    use pb::tensor_proto::DataType;
    let mut inputs = vec![value_info("a", DataType::Int8, &[m, k])];
    let mut initializer = extra;
    if b_constant {
        initializer.push(tensor_proto("b", &[k, n], DataType::Int8, bytes(b)));
    } else {
        inputs.push(value_info("b", DataType::Int8, &[k, n]));
    }
    let node_inputs: Vec<String> = match op {
        "MatMulInteger" => vec!["a".into(), "b".into()],
        _ => [
            "a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    let graph = pb::GraphProto {
        name: "g".into(),
        node: vec![pb::NodeProto {
            input: node_inputs,
            output: vec!["y".into()],
            name: "product".into(),
            op_type: op.into(),
            ..Default::default()
        }],
        initializer,
        input: inputs,
        output: vec![value_info("y", out, &[m, n])],
        ..Default::default()
    };
    let plan = optimized(graph).into_runnable().unwrap();
    let a_t = Tensor::from_shape(&[m, k], a).unwrap();
    let mut feed: TVec<TValue> = tvec!(a_t.into());
    if !b_constant {
        feed.push(Tensor::from_shape(&[k, n], b).unwrap().into());
    }
    plan.run(feed).unwrap().remove(0).into_tensor()
}

fn reference(m: usize, k: usize, n: usize, a: &[i8], b: &[i8]) -> Vec<i32> {
    let mut y = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k)
                .map(|l| a[i * k + l] as i32 * b[l * n + j] as i32)
                .sum();
        }
    }
    y
}

const SHAPES: [(usize, usize, usize); 9] = [
    (2, 1, 2),
    (3, 5, 7),
    (8, 4, 8),
    (9, 13, 17),
    (16, 64, 16),
    (37, 66, 3),
    (7, 255, 9),
    (64, 256, 40),
    (300, 256, 24),
];

#[test]
fn dispatch_runs_the_eknet_kernel_on_avx2_without_vnni() {
    let kernel = eknet_runtime::int8_kernel();
    #[cfg(target_arch = "x86_64")]
    {
        let vnni = std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni");
        if std::arch::is_x86_feature_detected!("avx2") && !vnni {
            assert_eq!(
                kernel.as_deref(),
                Some(eknet_runtime::int8_avx2::KERNEL_NAME)
            );
        } else {
            assert_ne!(
                kernel.as_deref(),
                Some(eknet_runtime::int8_avx2::KERNEL_NAME)
            );
        }
    }
    println!("int8 kernel here: {kernel:?}");
}

#[test]
fn matmul_integer_is_exact_for_every_shape_and_operand_kind() {
    let mut rng = Rng::new(7);
    for &(m, k, n) in &SHAPES {
        let a = i8s(&mut rng, m * k);
        let b = i8s(&mut rng, k * n);
        let expected = reference(m, k, n, &a, &b);
        for b_constant in [false, true] {
            let y = run_graph(
                "MatMulInteger",
                (m, k, n),
                &a,
                &b,
                b_constant,
                vec![],
                pb::tensor_proto::DataType::Int32,
            );
            assert_eq!(y.shape(), &[m, n]);
            assert_eq!(
                y.try_as_plain_ram().unwrap().as_slice::<i32>().unwrap(),
                &expected[..],
                "[{m}, {k}] x [{k}, {n}], b constant: {b_constant}"
            );
        }
    }
}

#[test]
fn all_minus_128_does_not_saturate() {
    // The worst case for 16-bit pair sums: every product is +16384.
    let (m, k, n) = (9, 20, 11);
    let a = vec![-128i8; m * k];
    let b = vec![-128i8; k * n];
    let y = run_graph(
        "MatMulInteger",
        (m, k, n),
        &a,
        &b,
        true,
        vec![],
        pb::tensor_proto::DataType::Int32,
    );
    assert!(
        y.try_as_plain_ram()
            .unwrap()
            .as_slice::<i32>()
            .unwrap()
            .iter()
            .all(|&v| v == 16384 * k as i32)
    );
}

/// ONNX QLinearMatMul with zero points 0: y = saturate(round(acc * sa * sb / sy)).
fn qlinear_reference(
    acc: &[i32],
    n: usize,
    a_scale: f32,
    b_scales: &[f32],
    y_scale: f32,
    y_zp: i8,
) -> Vec<i8> {
    acc.iter()
        .enumerate()
        .map(|(ix, &v)| {
            let s = a_scale * b_scales[if b_scales.len() == 1 { 0 } else { ix % n }] / y_scale;
            ((v as f64 * s as f64).round_ties_even() + y_zp as f64).clamp(-128.0, 127.0) as i8
        })
        .collect()
}

#[test]
fn qlinear_matmul_requantises_like_the_reference() {
    use pb::tensor_proto::DataType;
    let mut rng = Rng::new(11);
    for &(m, k, n) in &SHAPES {
        let a = i8s(&mut rng, m * k);
        let b = i8s(&mut rng, k * n);
        let a_scale = 0.02f32;
        // A product of two of these i8 has a spread of about 6,000: y's scale puts two spreads
        // of the sum across the i8 range, so most values land inside and some saturate.
        let y_scale = a_scale * 0.01 * 6000.0 * (k as f32).sqrt() * 2.0 / 127.0;
        // Zero points 0 (eknet's graphs), then non-zero ones: tract then adds row and column
        // corrections (and the output's zero point) around the product.
        for (per_channel, (a_zp, b_zp, y_zp)) in [
            (false, (0i8, 0i8, 0i8)),
            (true, (0, 0, 0)),
            (false, (3, -2, 5)),
            (true, (-4, 6, -3)),
        ] {
            // What the product multiplies: (a - a_zp)(b - b_zp), in i32.
            let acc: Vec<i32> = (0..m * n)
                .map(|ix| {
                    let (i, j) = (ix / n, ix % n);
                    (0..k)
                        .map(|l| {
                            (a[i * k + l] as i32 - a_zp as i32)
                                * (b[l * n + j] as i32 - b_zp as i32)
                        })
                        .sum()
                })
                .collect();
            let b_scales: Vec<f32> = if per_channel {
                (0..n)
                    .map(|j| 0.01 * (1.0 + (j % 5) as f32 * 0.25))
                    .collect()
            } else {
                vec![0.01]
            };
            let zp = |name: &str, len: usize, z: i8| {
                tensor_proto(
                    name,
                    &if len == 1 { vec![] } else { vec![len] },
                    DataType::Int8,
                    vec![z as u8; len],
                )
            };
            let scale = |name: &str, v: &[f32]| {
                tensor_proto(
                    name,
                    &if v.len() == 1 { vec![] } else { vec![v.len()] },
                    DataType::Float,
                    f32_bytes(v),
                )
            };
            let extra = vec![
                scale("a_scale", &[a_scale]),
                zp("a_zp", 1, a_zp),
                scale("b_scale", &b_scales),
                zp("b_zp", b_scales.len(), b_zp),
                scale("y_scale", &[y_scale]),
                zp("y_zp", 1, y_zp),
            ];
            let y = run_graph(
                "QLinearMatMul",
                (m, k, n),
                &a,
                &b,
                true,
                extra,
                DataType::Int8,
            );
            let expected = qlinear_reference(&acc, n, a_scale, &b_scales, y_scale, y_zp);
            let got = y.try_as_plain_ram().unwrap().as_slice::<i8>().unwrap();
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(&g, &e)| (g as i32 - e as i32).abs())
                .max()
                .unwrap();
            // tract requantises in fixed point: at most one step off the f64 rounding.
            assert!(
                worst <= 1,
                "[{m}, {k}] x [{k}, {n}], per channel {per_channel}, zero points {a_zp} {b_zp} {y_zp}: off by {worst}"
            );
            let saturated = got.iter().filter(|&&v| v == 127 || v == -128).count();
            assert!(saturated < got.len(), "the scale saturates everything");
        }
    }
}

/// Values that probe every branch of the quantiser at `scale`: exact ties either side of
/// zero, near-ties, the clamp edges, huge values, infinities and NaN, then random ones.
fn quantize_probes(scale: f32) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
    ];
    for t in -130..=130 {
        let t = t as f32;
        for d in [0.0, 0.5, -0.5, 0.499_99, 0.500_01] {
            v.push((t + d) / scale);
        }
    }
    let mut rng = Rng::new(3);
    v.extend((0..1000).map(|_| ((rng.next_u64() % 20_000) as f32 - 10_000.0) / 37.0 / scale));
    v
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vectorised_quantiser_equals_the_reference_for_every_value() {
    use eknet_runtime::quantize_avx2::{quantize, quantize_one};
    for (scale, zp) in [(1.0f32, 0i8), (127.0 / 3.7, 0), (0.37, 5), (12.5, -3)] {
        let xs = quantize_probes(scale);
        let mut ys = vec![0i8; xs.len()];
        quantize(&xs, &mut ys, scale, zp);
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(
                *y,
                quantize_one(*x, scale, zp),
                "x {x} scale {scale} zp {zp}"
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn swapped_quantize_nodes_give_tracts_own_values() {
    use pb::tensor_proto::DataType;
    let scale = 0.0291f32;
    let xs = quantize_probes(1.0 / scale);
    let n = xs.len();
    let graph = pb::GraphProto {
        name: "g".into(),
        node: vec![pb::NodeProto {
            input: vec!["x".into(), "s".into(), "z".into()],
            output: vec!["y".into()],
            name: "q".into(),
            op_type: "QuantizeLinear".into(),
            ..Default::default()
        }],
        initializer: vec![
            tensor_proto("s", &[], DataType::Float, f32_bytes(&[scale])),
            tensor_proto("z", &[], DataType::Int8, vec![0]),
        ],
        input: vec![value_info("x", DataType::Float, &[n])],
        output: vec![value_info("y", DataType::Int8, &[n])],
        ..Default::default()
    };
    let optimized = || optimized(graph.clone());
    let run = |m: TypedModel| {
        let x = Tensor::from_shape(&[n], &xs).unwrap();
        m.into_runnable()
            .unwrap()
            .run(tvec!(x.into()))
            .unwrap()
            .remove(0)
            .into_tensor()
    };
    let tracts = run(optimized());
    let mut swapped = optimized();
    let count = eknet_runtime::quantize_avx2::swap_into(&mut swapped);
    if std::arch::is_x86_feature_detected!("avx2") {
        assert_eq!(count, 1);
    }
    let ours = run(swapped);
    assert_eq!(
        ours.try_as_plain_ram().unwrap().as_slice::<i8>().unwrap(),
        tracts.try_as_plain_ram().unwrap().as_slice::<i8>().unwrap()
    );
}
