//! One window's inference in tract, f32 and int8 graphs, for the small and the full config
//! (random weights: time does not depend on their values), calibrated on real LUDB records, and
//! the graphs' sizes. `cargo bench -p eknet-trainer --bench inference`; set `EKNET_BENCH_THREADS`
//! for tract's matrix-product pool (default 1).

#![allow(clippy::unwrap_used, missing_docs)] // a bench: a panic is the failure report

use criterion::{Criterion, criterion_group, criterion_main};
use eknet_runtime::Classifier;
use eknet_shared::bundle::Precision;
use eknet_shared::config::StageConfig;
use eknet_shared::preprocess::{WindowOptions, record_windows};
use eknet_trainer::device::Cpu;
use eknet_trainer::export::{build_graphs, weights_of};
use eknet_trainer::model::{Eknet, EknetConfig};
use std::hint::black_box;
use std::path::{Path, PathBuf};

fn ludb(ids: std::ops::RangeInclusive<usize>) -> Vec<Vec<f32>> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = eknet_shared::data::require_data_dir(&here).unwrap();
    ids.map(|i| {
        let r = eknet_shared::io::read_any(&data.join("ludb/data").join(i.to_string())).unwrap();
        record_windows(&r, WindowOptions::default()).unwrap()[0]
            .data
            .clone()
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let threads: usize = std::env::var("EKNET_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let calib = ludb(1..=8);
    let window = ludb(100..=100).remove(0);
    for (name, file) in [
        ("small", "EKnet_classification_small.yaml"),
        ("full", "EKnet_classification.yaml"),
    ] {
        let cfg = EknetConfig::from_stage(&StageConfig::load(&configs.join(file)).unwrap());
        let model = Eknet::<Cpu>::new(&cfg, &Default::default());
        let graphs = build_graphs(&cfg, &weights_of(&model), &calib).unwrap();
        eprintln!(
            "{name}: model.onnx {} bytes, model.int8.onnx {} bytes ({} int8 layers), {} classes, {threads} thread(s)",
            graphs.f32_onnx.len(),
            graphs.int8_onnx.len(),
            graphs.int8_layers,
            cfg.num_classes
        );
        let mut group = c.benchmark_group(format!("inference/{name}"));
        group.sample_size(30);
        for (p, onnx) in [
            (Precision::F32, &graphs.f32_onnx),
            (Precision::Int8, &graphs.int8_onnx),
        ] {
            let clf = Classifier::from_onnx(onnx, name, p, Some(cfg.num_classes), threads).unwrap();
            group.bench_function(p.as_str(), |b| {
                b.iter(|| black_box(clf.classify(black_box(&window)).unwrap()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
