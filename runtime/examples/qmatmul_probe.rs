//! Times one `QLinearMatMul` ([1, 750, 256] x [256, 256]) in tract in several forms (per-tensor or
//! per-channel weight scale, rank 3 or rank 2 activations) against the f32 `MatMul`, to find the
//! form tract runs on its integer kernels.

#![allow(clippy::unwrap_used, missing_docs)]

use eknet_runtime::tract_onnx::pb;
use eknet_runtime::tract_onnx::prelude::*;
use prost::Message;
use std::time::Instant;

fn t(name: &str, dims: &[i64], dt: pb::tensor_proto::DataType, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn vi(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
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

fn node(op: &str, i: &[&str], o: &str) -> pb::NodeProto {
    pb::NodeProto {
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        name: o.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

/// `Cast` to ONNX data type `to` (1 float, 6 int32).
fn cast(i: &str, o: &str, to: i64) -> pb::NodeProto {
    let mut c = node("Cast", &[i], o);
    c.attribute.push(pb::AttributeProto {
        name: "to".into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: to,
        ..Default::default()
    });
    c
}

/// variant: 0 f32, 1 QLinearMatMul i8 x i8, 2 MatMulInteger i8 x i8 (+ Cast, Mul), 3 QLinearMatMul
/// u8 (zp 128) x i8, 4 MatMulInteger u8 x i8, 5 the same int8 values widened to int32 (Cast) and
/// multiplied by an int32 `MatMul` (tract's i32 x i32 path, which avoids the i8 x i8 inner loop).
fn model_v(variant: u8, per_channel: bool, rank2: bool) -> Vec<u8> {
    use pb::tensor_proto::DataType as D;
    let (l, k, n) = (750i64, 256i64, 1024i64);
    let mut inits = vec![];
    let mut nodes = vec![];
    let xdims: Vec<i64> = if rank2 { vec![l, k] } else { vec![1, l, k] };
    if variant == 0 {
        inits.push(t(
            "w",
            &[k, n],
            D::Float,
            (0..k * n)
                .flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes())
                .collect(),
        ));
        nodes.push(node("MatMul", &["x", "w"], "y"));
    } else {
        // Every int8 form: the activation quantised once (u8 with zero point 128 for the u8
        // forms), the same int8 weights.
        let u8a = variant == 3 || variant == 4;
        inits.push(t("xs", &[], D::Float, 0.02f32.to_le_bytes().to_vec()));
        if u8a {
            inits.push(t("z", &[], D::Uint8, vec![128]));
        } else {
            inits.push(t("z", &[], D::Int8, vec![0]));
        }
        inits.push(t(
            "w",
            &[k, n],
            D::Int8,
            (0..k * n).map(|i| (i % 251) as u8).collect(),
        ));
        nodes.push(node("QuantizeLinear", &["x", "xs", "z"], "xq"));
        let per_channel_scale = |name: &str, v: f32| {
            t(
                name,
                &[n],
                D::Float,
                (0..n).flat_map(|_| v.to_le_bytes()).collect(),
            )
        };
        match variant {
            1 | 3 => {
                if per_channel && variant == 1 {
                    inits.push(per_channel_scale("ws", 0.01));
                    inits.push(t("wz", &[n], D::Int8, vec![0; n as usize]));
                } else {
                    inits.push(t("ws", &[], D::Float, 0.01f32.to_le_bytes().to_vec()));
                    inits.push(t("wz", &[], D::Int8, vec![0]));
                }
                inits.push(t("ys", &[], D::Float, 0.5f32.to_le_bytes().to_vec()));
                nodes.push(node(
                    "QLinearMatMul",
                    &["xq", "xs", "z", "w", "ws", "wz", "ys", "z"],
                    "yq",
                ));
                nodes.push(node("DequantizeLinear", &["yq", "ys", "z"], "y"));
            }
            _ => {
                inits.push(per_channel_scale("sc", 0.0002));
                if variant == 5 {
                    nodes.push(cast("xq", "x32", 6));
                    nodes.push(cast("w", "w32", 6));
                    nodes.push(node("MatMul", &["x32", "w32"], "acc"));
                } else if u8a {
                    inits.push(t("wz", &[], D::Int8, vec![0]));
                    nodes.push(node("MatMulInteger", &["xq", "w", "z", "wz"], "acc"));
                } else {
                    nodes.push(node("MatMulInteger", &["xq", "w"], "acc"));
                }
                nodes.push(cast("acc", "accf", 1));
                nodes.push(node("Mul", &["accf", "sc"], "y"));
            }
        }
    }
    let mut ydims = xdims.clone();
    *ydims.last_mut().unwrap() = n;
    let g = pb::GraphProto {
        node: nodes,
        name: "g".into(),
        initializer: inits,
        input: vec![vi("x", &xdims)],
        output: vec![vi("y", &ydims)],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

fn main() {
    for (name, v, pc, r2) in [
        ("f32 rank3", 0, false, false),
        ("qlinear i8 per-tensor", 1, false, false),
        ("qlinear i8 per-channel", 1, true, false),
        ("matmulinteger i8", 2, false, false),
        ("qlinear u8", 3, false, false),
        ("matmulinteger u8", 4, false, false),
        ("int8 values as i32 matmul", 5, false, false),
    ] {
        let bytes = model_v(v, pc, r2);
        let m = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .unwrap()
            .into_optimized()
            .unwrap();
        if std::env::var("PROBE_DUMP").is_ok() {
            for n in m.nodes() {
                println!(
                    "   {} : {} {:?}",
                    n.name,
                    n.op().name(),
                    n.op().info().unwrap_or_default()
                );
            }
        }
        let plan = m.into_runnable().unwrap();
        let shape: Vec<usize> = if r2 {
            vec![750, 256]
        } else {
            vec![1, 750, 256]
        };
        let x = Tensor::from_shape(&shape, &vec![0.3f32; 750 * 256]).unwrap();
        for _ in 0..3 {
            plan.run(tvec!(x.clone().into())).unwrap();
        }
        let mut v = vec![];
        for _ in 0..15 {
            let t0 = Instant::now();
            plan.run(tvec!(x.clone().into())).unwrap();
            v.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        v.sort_by(f64::total_cmp);
        println!("{name:<26} median {:.2} ms", v[v.len() / 2]);
    }
}
