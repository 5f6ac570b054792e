//! The model's shapes in every stage and variant, token drop counts, attention normalisation.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use burn::backend::Flex;
use burn::prelude::*;
use eknet_shared::config::PosMerging;
use eknet_trainer::model::block::NormPlacement;
use eknet_trainer::model::{DropPlan, Eknet, EknetConfig, Stage, scores, token_groups};
use eknet_trainer::rng::Rng;

type B = Flex;

fn tiny(
    stage: Stage,
    merging: PosMerging,
    norm: NormPlacement,
    lead_split: bool,
    full_ii: bool,
) -> EknetConfig {
    EknetConfig {
        stage,
        d_model: 16,
        depth: 1,
        heads: 2,
        knowledge_depth: 2,
        num_classes: 3,
        merging,
        norm,
        lead_split,
        full_ii_head: full_ii,
        stem: None,
        dropout: 0.0,
        lead_std: 0.02,
        token_decoder: false,
    }
}

fn input(batch: usize) -> Tensor<B, 3> {
    let dev = Default::default();
    Tensor::<B, 3>::random(
        [batch, 15, 1250],
        burn::tensor::Distribution::Normal(0.0, 0.5),
        &dev,
    )
}

#[test]
fn every_variant_has_the_right_shapes() {
    let dev = Default::default();
    for merging in [PosMerging::ConcatMlp, PosMerging::AddSincos] {
        for norm in [NormPlacement::ResPost, NormPlacement::Pre] {
            for (stage, split, full_ii) in [
                (Stage::Pretrain, false, true),
                (Stage::Pretrain, false, false),
                (Stage::Classify, true, true),
                (Stage::Classify, false, true),
            ] {
                let cfg = tiny(stage, merging, norm, split, full_ii);
                let m = Eknet::<B>::new(&cfg, &dev);
                let out = m.forward(input(2), None);
                let att = out.attention.unwrap();
                assert_eq!(att.dims(), [2, cfg.queries(), 750]);
                // Attention of each query sums to 1 over the 750 tokens.
                let sums = att.sum_dim(2).into_data().to_vec::<f32>().unwrap();
                assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4), "{sums:?}");
                match stage {
                    Stage::Pretrain => {
                        assert_eq!(out.reconstruction.unwrap().dims(), [2, 15, 1250])
                    }
                    Stage::Classify => {
                        let logits = out.logits.unwrap();
                        assert_eq!(logits.dims(), [2, 3, 2]);
                        let s = scores(logits).into_data().to_vec::<f32>().unwrap();
                        assert!(s.iter().all(|&p| (0.0..=1.0).contains(&p)));
                    }
                }
                // With a drop plan the forward pass still gives full-size outputs.
                let groups = token_groups(split);
                let plan = DropPlan::draw(&groups, 2, 0.65, &mut Rng::new(1));
                let out = m.forward(input(2), Some(&plan));
                assert!(out.attention.is_none(), "no attention map at training");
                assert!(out.reconstruction.is_some() || out.logits.is_some());
            }
        }
    }
}

#[test]
fn token_drop_keeps_exactly_floor_n_times_one_minus_r() {
    let mut rng = Rng::new(5);
    for (split, ratio) in [(false, 0.85), (true, 0.65), (false, 0.0)] {
        let groups = token_groups(split);
        let plan = DropPlan::draw(&groups, 4, ratio, &mut rng);
        for (g, group) in groups.iter().enumerate() {
            let expect = (group.len() as f64 * (1.0 - ratio)).floor() as usize;
            for kept in &plan.keep[g] {
                assert_eq!(kept.len(), expect);
                assert!(
                    kept.iter().all(|t| group.contains(t)),
                    "kept tokens come from their group"
                );
                assert!(kept.windows(2).all(|w| w[0] < w[1]), "no repeats");
            }
        }
        if ratio > 0.0 {
            assert_ne!(
                plan.keep[0][0], plan.keep[0][1],
                "samples draw independently"
            );
        }
    }
    // Stage 1 (one group of 750) at 0.85 keeps floor(750 * 0.15) = 112.
    let plan = DropPlan::draw(&token_groups(false), 1, 0.85, &mut rng);
    assert_eq!(plan.keep[0][0].len(), 112);
    let dropped: f32 = plan.dropped_mask(1).iter().sum();
    assert_eq!(dropped, 750.0 - 112.0);
}

#[test]
fn forward_is_deterministic_and_depends_on_the_input() {
    let dev = Default::default();
    let cfg = tiny(
        Stage::Classify,
        PosMerging::ConcatMlp,
        NormPlacement::ResPost,
        true,
        true,
    );
    let m = Eknet::<B>::new(&cfg, &dev);
    let x = input(1);
    let a = scores(m.forward(x.clone(), None).logits.unwrap())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = scores(m.forward(x.clone(), None).logits.unwrap())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    let c = scores(m.forward(x * 2.0, None).logits.unwrap())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(a, c);
}

/// The stage-1 token decoder rebuilds every sample, and what it rebuilds under dropped tokens is a
/// prediction: changing the input under them (with the convolutional stem, whose kept tokens see
/// their neighbours' samples) changes nothing, while changing a kept token's samples does.
#[test]
fn the_token_decoder_predicts_dropped_samples_without_seeing_them() {
    let dev = Default::default();
    let mut cfg = tiny(
        Stage::Pretrain,
        PosMerging::ConcatMlp,
        NormPlacement::Pre,
        true,
        true,
    );
    cfg.stem = Some((4, 2, false));
    cfg.token_decoder = true;
    let m = Eknet::<B>::new(&cfg, &dev);
    let x = input(2);
    let groups = token_groups(true);
    let plan = DropPlan::draw(&groups, 2, 0.5, &mut Rng::new(3));
    let rec = |x: Tensor<B, 3>| {
        m.forward(x, Some(&plan))
            .reconstruction
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let base = rec(x.clone());
    assert_eq!(base.len(), 2 * 15 * 1250);
    // Positions differ: the decoder does not give every token the same samples.
    assert!(base[..25] != base[25..50]);
    let dropped = plan.dropped_mask(2);
    let (d, k) = (
        dropped.iter().position(|&v| v == 1.0).unwrap(),
        dropped.iter().position(|&v| v == 0.0).unwrap(),
    );
    let poke = |token: usize| {
        let mut v = x.clone().into_data().to_vec::<f32>().unwrap();
        for s in 0..25 {
            v[token * 25 + s] += 3.0;
        }
        Tensor::<B, 3>::from_data(TensorData::new(v, [2, 15, 1250]), &dev)
    };
    let under_dropped = rec(poke(d));
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    assert_eq!(
        max_diff(&base, &under_dropped),
        0.0,
        "dropped token {d} leaked"
    );
    assert!(
        max_diff(&base, &rec(poke(k))) > 1e-4,
        "kept token {k} ignored"
    );
}

/// Training embeds only the tokens the drop keeps (per-token embeddings): the encoder's output
/// is the one of embedding all 750 tokens and gathering, for both merging variants, with and
/// without the lead-group split (three groups side by side, or one).
#[test]
fn embedding_only_the_kept_tokens_changes_nothing() {
    let dev = Default::default();
    for merging in [PosMerging::ConcatMlp, PosMerging::AddSincos] {
        for split in [true, false] {
            let cfg = tiny(
                Stage::Classify,
                merging,
                NormPlacement::ResPost,
                split,
                true,
            );
            let m = Eknet::<B>::new(&cfg, &dev);
            let x = input(3);
            let plan = DropPlan::draw(&token_groups(split), 3, 0.65, &mut Rng::new(5));
            let all = m.encode(m.embed.forward(x.clone()), Some(&plan));
            let kept = m.encode_kept(m.embed.forward_at(x, Some(plan.index::<B>(3, &dev))), &plan);
            assert_eq!(all.dims(), kept.dims());
            let (a, k): (Vec<f32>, Vec<f32>) = (
                all.into_data().to_vec().unwrap(),
                kept.into_data().to_vec().unwrap(),
            );
            let worst = a
                .iter()
                .zip(&k)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{merging:?}, split {split}: {worst}");
        }
    }
}
