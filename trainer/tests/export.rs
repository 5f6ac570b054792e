//! The hand-written ONNX graphs against burn, on real LUDB records: every merging variant and
//! norm placement (and the encoder on one group or on token groups) gives the same scores and
//! attention in tract as burn's forward; the int8 graph runs integer products, is calibrated on
//! real records, and stays close to f32; and a bundle that is damaged in any of the ways a file
//! can be is refused with its own error.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use burn::prelude::*;
use eknet_runtime::tract_onnx::pb;
use eknet_runtime::{Classifier, RuntimeError};
use eknet_shared::bundle::{
    self, Architecture, Bundle, BundleError, Manifest, Precision, write_bundle,
};
use eknet_shared::config::PosMerging;
use eknet_shared::layout::TOKEN_COUNT;
use eknet_shared::preprocess::{WindowOptions, record_windows};
use eknet_trainer::device::Cpu;
use eknet_trainer::export::graph::{Lowering, build};
use eknet_trainer::export::{build_graphs, encode, unvalidated_manifest, weights_of};
use eknet_trainer::model::block::NormPlacement;
use eknet_trainer::model::{Eknet, EknetConfig, Stage, scores};
use prost::Message;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

/// First 10 s windows of LUDB records `ids`, through the shared pipeline.
fn ludb_windows(ids: impl Iterator<Item = usize>) -> Vec<Vec<f32>> {
    let dir = data_dir().join("ludb/data");
    ids.map(|i| {
        let r = eknet_shared::io::read_any(&dir.join(i.to_string())).unwrap();
        record_windows(&r, WindowOptions::default()).unwrap()[0]
            .data
            .clone()
    })
    .collect()
}

fn tiny(merging: PosMerging, norm: NormPlacement, lead_split: bool, classes: usize) -> EknetConfig {
    EknetConfig {
        stage: Stage::Classify,
        d_model: 16,
        depth: 2,
        heads: 2,
        knowledge_depth: 2,
        num_classes: classes,
        merging,
        norm,
        lead_split,
        full_ii_head: false,
        stem: None,
        dropout: 0.0,
        lead_std: 0.02,
        token_decoder: false,
    }
}

/// burn's scores and mean-over-heads attention for each window.
fn burn_forward(model: &Eknet<Cpu>, windows: &[Vec<f32>]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let device = Default::default();
    let mut s = Vec::new();
    let mut a = Vec::new();
    for w in windows {
        let x = Tensor::<Cpu, 3>::from_data(TensorData::new(w.clone(), [1, 15, 1250]), &device);
        let out = model.forward(x, None);
        s.push(
            scores(out.logits.unwrap())
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
        a.push(out.attention.unwrap().into_data().to_vec::<f32>().unwrap());
    }
    (s, a)
}

fn max_abs(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn f32_graph_matches_burn_on_real_records_in_every_variant() {
    let windows = ludb_windows([1, 17, 60, 133, 200].into_iter());
    let device = Default::default();
    for merging in [PosMerging::ConcatMlp, PosMerging::AddSincos] {
        for norm in [NormPlacement::ResPost, NormPlacement::Pre] {
            for lead_split in [true, false] {
                let cfg = tiny(merging, norm, lead_split, 5);
                let model = Eknet::<Cpu>::new(&cfg, &device);
                let g = build(&cfg, &weights_of(&model), Lowering::F32).unwrap();
                let onnx = encode(&g);
                let c = Classifier::from_onnx(&onnx, "test", Precision::F32, Some(5), 1).unwrap();
                let (bs, ba) = burn_forward(&model, &windows);
                let mut ts = Vec::new();
                let mut ta = Vec::new();
                for w in &windows {
                    let out = c.classify(w).unwrap();
                    for k in 0..5 {
                        let sum: f32 = out.attention_of(k).iter().sum();
                        assert!((sum - 1.0).abs() < 1e-4, "attention row {k} sums to {sum}");
                    }
                    ts.push(out.scores);
                    ta.push(out.attention);
                }
                let what = format!("{merging:?} {norm:?} split {lead_split}");
                let ds = max_abs(&ts, &bs);
                let da = max_abs(&ta, &ba);
                eprintln!("{what}: max |tract - burn| scores {ds:.2e}, attention {da:.2e}");
                assert!(ds <= 1e-4, "{what}: scores differ by {ds}");
                assert!(da <= 1e-4, "{what}: attention differs by {da}");
                // Scores must depend on the input: not a constant graph.
                let spread = ts.iter().map(|r| r[0]).fold(f32::NEG_INFINITY, f32::max)
                    - ts.iter().map(|r| r[0]).fold(f32::INFINITY, f32::min);
                assert!(spread > 1e-6, "{what}: scores do not vary over records");
            }
        }
    }
}

#[test]
fn the_convolutional_token_stem_exports_exactly_in_f32_and_closely_in_int8() {
    let windows = ludb_windows([3, 42, 101, 150].into_iter());
    let device = Default::default();
    <Cpu as Backend>::seed(&device, 11);
    let cfg = EknetConfig {
        stem: Some((8, 4, true)),
        ..tiny(PosMerging::ConcatMlp, NormPlacement::Pre, true, 3)
    };
    let mut model = Eknet::<Cpu>::new(&cfg, &device);
    // Batch norms with running statistics away from (0, 1), as after training.
    if let Some(stem) = model.embed.stem.as_mut() {
        for bn in &mut stem.batch_norms {
            let n = bn.gamma.dims()[0];
            let mean = Tensor::<Cpu, 1>::random(
                [n],
                burn::tensor::Distribution::Normal(0.0, 0.3),
                &device,
            );
            let var = Tensor::<Cpu, 1>::random(
                [n],
                burn::tensor::Distribution::Uniform(0.2, 3.0),
                &device,
            );
            bn.running_mean = burn::module::RunningState::new(mean);
            bn.running_var = burn::module::RunningState::new(var);
        }
    }
    let w = weights_of(&model);
    assert!(w.tensors.contains_key("embed.stem.blocks.3.weight"));
    assert!(
        !w.tensors.keys().any(|k| k.contains("batch_norms")),
        "folded away"
    );
    assert!(!w.tensors.contains_key("embed.patch_embed.weight"));
    let g = build(&cfg, &w, Lowering::F32).unwrap();
    let c = Classifier::from_onnx(&encode(&g), "test", Precision::F32, Some(3), 1).unwrap();
    let (bs, ba) = burn_forward(&model, &windows);
    let (mut ts, mut ta) = (Vec::new(), Vec::new());
    for win in &windows {
        let out = c.classify(win).unwrap();
        ts.push(out.scores);
        ta.push(out.attention);
    }
    let (ds, da) = (max_abs(&ts, &bs), max_abs(&ta, &ba));
    assert!(
        ds <= 1e-4 && da <= 1e-4,
        "stem graph vs burn: scores {ds}, attention {da}"
    );
    let spread = ts.iter().map(|r| r[0]).fold(f32::NEG_INFINITY, f32::max)
        - ts.iter().map(|r| r[0]).fold(f32::INFINITY, f32::min);
    assert!(spread > 1e-6, "scores do not vary over records");
    // int8: the stem stays in f32 (its int8 products moved a class's AUC by 0.03 on the demo
    // model); the encoder's and knowledge module's products are integer products.
    let graphs = build_graphs(&cfg, &w, &ludb_windows(1..=12)).unwrap();
    let proto = pb::ModelProto::decode(graphs.int8_onnx.as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    let int8_names: Vec<&str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "MatMulInteger")
        .map(|n| n.name.as_str())
        .collect();
    assert!(
        !int8_names.iter().any(|n| n.starts_with("stem.")),
        "the stem runs in f32: {int8_names:?}"
    );
    for layer in ["g0.encoder.0.attn.q.acc", "know.cross.1.mlp.fc2.acc"] {
        assert!(int8_names.contains(&layer), "{layer} in {int8_names:?}");
    }
    let q = Classifier::from_onnx(&graphs.int8_onnx, "test", Precision::Int8, Some(3), 1).unwrap();
    let qs: Vec<Vec<f32>> = windows
        .iter()
        .map(|w| q.classify(w).unwrap().scores)
        .collect();
    let dq = max_abs(&qs, &ts);
    assert!(dq < 0.05, "int8 stem graph vs f32: {dq}");
}

#[test]
fn int8_graph_uses_integer_products_with_static_scales_and_stays_close() {
    let cfg = tiny(PosMerging::ConcatMlp, NormPlacement::ResPost, true, 4);
    let device = Default::default();
    <Cpu as Backend>::seed(&device, 7);
    let model = Eknet::<Cpu>::new(&cfg, &device);
    let w = weights_of(&model);
    let calib = ludb_windows(1..=12);
    let graphs = build_graphs(&cfg, &w, &calib).unwrap();
    let proto = pb::ModelProto::decode(graphs.int8_onnx.as_slice()).unwrap();
    let graph = proto.graph.unwrap();
    let count = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
    // Per block: q, k, v, output, fc1, fc2; 2 encoder blocks on each of the 3 groups, 2 x (self
    // + cross) knowledge blocks; two merging layers.
    let expected = 6 * (2 * 3 + 2 * 2) + 2;
    assert_eq!(count("MatMulInteger"), expected);
    assert_eq!(graphs.int8_layers, expected);
    assert_eq!(count("DynamicQuantizeLinear"), 0);
    // No i8 requantisation of a product: each is rescaled to f32 once, per output channel.
    assert_eq!(count("QLinearMatMul"), 0);
    assert_eq!(count("DequantizeLinear"), 0);
    for node in graph.node.iter().filter(|n| n.op_type == "MatMulInteger") {
        assert_eq!(
            node.input.len(),
            2,
            "{}: zero points are 0, so none are given",
            node.name
        );
    }
    // Each activation is quantised once: per block its input (shared by Q, K and V in
    // self-attention), the attention context, the MLP input and the GELU output; the encoder's
    // memory once for the K and V of every cross-attention; the merging MLP's two inputs.
    assert_eq!(count("QuantizeLinear"), 4 * (2 * 3 + 2 * 2) + 1 + 2);
    // Softmax, LayerNorm and GELU stay f32.
    assert!(count("Softmax") > 0 && count("LayerNormalization") > 0 && count("Erf") > 0);
    // Weights are int8 per output channel.
    let wq = graph
        .initializer
        .iter()
        .find(|t| t.name == "encoder.0.attn.key.weight_q")
        .unwrap();
    assert_eq!(wq.data_type, pb::tensor_proto::DataType::Int8 as i32);
    // Its product is rescaled once, per output channel: MatMulInteger -> Cast -> Mul by 16 scales.
    let consumer = |input: &str| {
        graph
            .node
            .iter()
            .find(|n| n.input.iter().any(|i| i == input))
            .unwrap()
    };
    let product = consumer(&wq.name);
    assert_eq!(product.op_type, "MatMulInteger");
    let cast = consumer(&product.output[0]);
    assert_eq!(cast.op_type, "Cast");
    let rescale = consumer(&cast.output[0]);
    assert_eq!(rescale.op_type, "Mul");
    let ws = graph
        .initializer
        .iter()
        .find(|t| t.name == rescale.input[1])
        .unwrap();
    assert_eq!(ws.dims, vec![16]);
    assert!(
        ws.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .all(|v| v.is_finite() && v > 0.0)
    );

    let f32c = Classifier::from_onnx(&graphs.f32_onnx, "f32", Precision::F32, Some(4), 1).unwrap();
    let i8c =
        Classifier::from_onnx(&graphs.int8_onnx, "int8", Precision::Int8, Some(4), 1).unwrap();
    let held_out = ludb_windows(150..=170);
    let mut worst = 0f32;
    for w in &held_out {
        let a = f32c.classify(w).unwrap();
        let b = i8c.classify(w).unwrap();
        for k in 0..4 {
            let sum: f32 = b.attention_of(k).iter().sum();
            assert!((sum - 1.0).abs() < 1e-3);
        }
        for (x, y) in a.scores.iter().zip(&b.scores) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("int8 vs f32 on 21 held-out LUDB records: max |score diff| {worst:.4}");
    assert!(
        worst > 0.0,
        "int8 gave bit-identical scores: it is not quantised"
    );
    assert!(worst < 0.05, "int8 moved a score by {worst}");
    // One range per quantised activation, each measured (non-zero).
    assert_eq!(graphs.ranges.len(), 43);
    assert!(graphs.ranges.values().all(|r| r.is_finite() && *r > 0.0));
}

fn manifest_for(classes: usize) -> Manifest {
    let codes: Vec<String> = (0..classes).map(|k| format!("C{k}")).collect();
    let arch = Architecture {
        d_model: 16,
        depth: 2,
        heads: 2,
        knowledge_depth: 2,
        merging: "add_sincos".into(),
        norm: "pre".into(),
        lead_split: false,
        parameters: 0,
    };
    unvalidated_manifest("test", &codes, arch, "test fixture")
}

/// A valid bundle of a tiny random model with 3 classes.
fn good_bundle(dir: &std::path::Path) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let cfg = tiny(PosMerging::AddSincos, NormPlacement::Pre, false, 3);
    let model = Eknet::<Cpu>::new(&cfg, &Default::default());
    let graphs = build_graphs(&cfg, &weights_of(&model), &ludb_windows(1..=3)).unwrap();
    let path = dir.join("good.eknet");
    write_bundle(
        &path,
        &mut manifest_for(3),
        &graphs.f32_onnx,
        &graphs.int8_onnx,
    )
    .unwrap();
    (path, graphs.f32_onnx, graphs.int8_onnx)
}

#[test]
fn damaged_bundles_are_refused_each_with_its_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, f32_onnx, int8_onnx) = good_bundle(tmp.path());
    let b = Bundle::open(&good).unwrap();
    for p in [Precision::F32, Precision::Int8] {
        let c = Classifier::from_bundle(&b, p, 1).unwrap();
        assert_eq!(c.classes(), 3);
    }
    let members = bundle::read_raw_members(&good).unwrap();
    let manifest_bytes = members
        .iter()
        .find(|(n, _)| n == bundle::MANIFEST)
        .unwrap()
        .1
        .clone();
    let write = |name: &str, members: &[(&str, &[u8])]| {
        let p = tmp.path().join(name);
        bundle::write_raw_members(&p, members).unwrap();
        p
    };

    // A flipped byte in the middle of the file (inside the compressed f32 graph).
    let mut bytes = std::fs::read(&good).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let flipped = tmp.path().join("flipped.eknet");
    std::fs::write(&flipped, &bytes).unwrap();
    let e = Bundle::open(&flipped).unwrap_err();
    assert!(
        matches!(
            &e,
            BundleError::DamagedMember { .. } | BundleError::Checksum { .. }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("model"), "{e}");

    // A member replaced by other bytes in an otherwise valid zip: the checksum catches it.
    let mut other = f32_onnx.clone();
    let n = other.len();
    other[n - 10] ^= 1;
    let p = write(
        "swapped.eknet",
        &[
            (bundle::MANIFEST, &manifest_bytes),
            (bundle::MODEL_F32, &other),
            (bundle::MODEL_INT8, &int8_onnx),
        ],
    );
    let e = Bundle::open(&p).unwrap_err();
    assert!(
        matches!(&e, BundleError::Checksum { member, .. } if member == "model.onnx"),
        "{e}"
    );
    assert!(e.to_string().contains("fails its checksum"), "{e}");

    // A missing member.
    let p = write(
        "missing.eknet",
        &[
            (bundle::MANIFEST, &manifest_bytes),
            (bundle::MODEL_F32, &f32_onnx),
        ],
    );
    let e = Bundle::open(&p).unwrap_err();
    assert!(
        matches!(&e, BundleError::MissingMember { member, .. } if member == "model.int8.onnx"),
        "{e}"
    );

    // A future format version.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    m["format_version"] = 2.into();
    m["a_field_from_the_future"] = true.into();
    let future = serde_json::to_vec(&m).unwrap();
    let p = write(
        "future.eknet",
        &[
            (bundle::MANIFEST, &future),
            (bundle::MODEL_F32, &f32_onnx),
            (bundle::MODEL_INT8, &int8_onnx),
        ],
    );
    let e = Bundle::open(&p).unwrap_err();
    assert!(
        matches!(
            e,
            BundleError::FutureFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("newer"), "{e}");

    // A manifest listing one label more than the graphs score (consistent in itself).
    let mut four = manifest_for(4);
    let p = tmp.path().join("labels.eknet");
    write_bundle(&p, &mut four, &f32_onnx, &int8_onnx).unwrap();
    let b = Bundle::open(&p).unwrap();
    let e = Classifier::from_bundle(&b, Precision::Int8, 1).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::LabelCount {
                graph: 3,
                manifest: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("scores 3 classes but the manifest lists 4"),
        "{e}"
    );

    // A manifest whose labels and metrics disagree.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    m["labels"].as_array_mut().unwrap().pop();
    let short = serde_json::to_vec(&m).unwrap();
    let p = write(
        "inconsistent.eknet",
        &[
            (bundle::MANIFEST, &short),
            (bundle::MODEL_F32, &f32_onnx),
            (bundle::MODEL_INT8, &int8_onnx),
        ],
    );
    let e = Bundle::open(&p).unwrap_err();
    assert!(matches!(e, BundleError::Inconsistent { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("2 labels but f32 validation metrics for 3 classes"),
        "{e}"
    );

    // Another layout's input.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    m["input"]["sample_rate_hz"] = 250.0.into();
    let p = write(
        "rate.eknet",
        &[
            (bundle::MANIFEST, &serde_json::to_vec(&m).unwrap()),
            (bundle::MODEL_F32, &f32_onnx),
            (bundle::MODEL_INT8, &int8_onnx),
        ],
    );
    let e = Bundle::open(&p).unwrap_err();
    assert!(e.to_string().contains("250 Hz"), "{e}");

    // Not a zip at all, and a manifest that is not JSON.
    let p = tmp.path().join("text.eknet");
    std::fs::write(&p, "hello").unwrap();
    assert!(matches!(
        Bundle::open(&p).unwrap_err(),
        BundleError::NotZip { .. }
    ));
    let p = write(
        "json.eknet",
        &[
            (bundle::MANIFEST, b"{not json"),
            (bundle::MODEL_F32, &f32_onnx),
            (bundle::MODEL_INT8, &int8_onnx),
        ],
    );
    let e = Bundle::open(&p).unwrap_err();
    assert!(matches!(e, BundleError::Manifest { .. }), "{e}");

    // A graph that is not EKnet's contract: the f32 graph swapped for one with other outputs.
    let mut proto = pb::ModelProto::decode(f32_onnx.as_slice()).unwrap();
    proto.graph.as_mut().unwrap().output.reverse();
    let e = Classifier::from_onnx(
        &proto.encode_to_vec(),
        "swapped outputs",
        Precision::F32,
        Some(3),
        1,
    )
    .unwrap_err();
    assert!(matches!(e, RuntimeError::Contract { .. }), "{e}");
    // And bytes that are not ONNX.
    let e = Classifier::from_onnx(b"garbage", "garbage", Precision::F32, None, 1).unwrap_err();
    assert!(matches!(e, RuntimeError::Load { .. }), "{e}");
    let _ = TOKEN_COUNT;
}

#[test]
fn a_window_of_the_wrong_size_or_with_nan_is_refused() {
    let cfg = tiny(PosMerging::AddSincos, NormPlacement::Pre, false, 2);
    let model = Eknet::<Cpu>::new(&cfg, &Default::default());
    let g = build(&cfg, &weights_of(&model), Lowering::F32).unwrap();
    let c = Classifier::from_onnx(&encode(&g), "t", Precision::F32, Some(2), 1).unwrap();
    assert!(matches!(
        c.classify(&[0.0; 100]),
        Err(RuntimeError::WindowSize { found: 100, .. })
    ));
    let mut w = vec![0.0; 15 * 1250];
    w[1250 * 3 + 7] = f32::NAN;
    assert!(matches!(
        c.classify(&w),
        Err(RuntimeError::NonFinite { slot: 3, sample: 7 })
    ));
}

#[test]
fn two_threads_give_the_same_scores_as_one() {
    let cfg = tiny(PosMerging::ConcatMlp, NormPlacement::ResPost, true, 3);
    let model = Eknet::<Cpu>::new(&cfg, &Default::default());
    let onnx = encode(&build(&cfg, &weights_of(&model), Lowering::F32).unwrap());
    let one = Classifier::from_onnx(&onnx, "t", Precision::F32, Some(3), 1).unwrap();
    let two = Classifier::from_onnx(&onnx, "t", Precision::F32, Some(3), 2).unwrap();
    for w in ludb_windows([5, 6].into_iter()) {
        let a = one.classify(&w).unwrap();
        let b = two.classify(&w).unwrap();
        assert!(max_abs(&[a.scores], &[b.scores]) < 1e-5);
    }
}
