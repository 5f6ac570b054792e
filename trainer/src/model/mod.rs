//! EKnet in burn (`eknet-model.md` §2-4): token embedding and knowledge merging, the encoder
//! (stage 2 runs it on limb, chest and rhythm token groups separately), the knowledge module
//! (learned queries; self- then cross-attention, `knowledge_depth` times) and the heads: stage 1
//! rebuilds the leads, stage 2 scores each class present/absent. The last cross-attention's
//! weights are each query's attention over the 750 tokens, in slot order.

pub mod attention;
pub mod block;
pub mod decoder;
pub mod embed;
pub mod fused;
pub mod linear;

use crate::precision::like;
use block::{Block, NormPlacement};
use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use decoder::TokenDecoder;
use eknet_shared::config::{ModeStage, PosMerging, Stage1Head, StageConfig, TokenEmbedding};
use eknet_shared::layout::{
    LeadGroup, PATCH_SAMPLES, PATCHES_PER_SLOT, SLOT_COUNT, SLOT_SAMPLES, TOKEN_COUNT,
    WINDOW_SAMPLES, group_tokens,
};
use embed::TokenEmbed;
use fused::gelu;
use linear::linear;

/// Which stage a model is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Self-learning: reconstruct the leads.
    Pretrain,
    /// Classification.
    Classify,
}

/// Every size and switch of the model, from a stage config.
#[derive(Debug, Clone, PartialEq)]
pub struct EknetConfig {
    /// Stage.
    pub stage: Stage,
    /// Width D.
    pub d_model: usize,
    /// Encoder blocks.
    pub depth: usize,
    /// Heads.
    pub heads: usize,
    /// Knowledge layers.
    pub knowledge_depth: usize,
    /// Classes (stage 2).
    pub num_classes: usize,
    /// Merging variant.
    pub merging: PosMerging,
    /// Norm placement.
    pub norm: NormPlacement,
    /// Encoder on token groups separately.
    pub lead_split: bool,
    /// Stage 1 rebuilds the whole 10 s lead II from its query (else one query per slot).
    pub full_ii_head: bool,
    /// Convolutional token stem `(channels, blocks, batch norm)`, or `None` for the linear patch
    /// embedding.
    pub stem: Option<(usize, usize, bool)>,
    /// Branch dropout in training.
    pub dropout: f64,
    /// Initial standard deviation of the lead knowledge.
    pub lead_std: f64,
    /// Stage 1 rebuilds each token's samples with a decoder block (else from the lead queries).
    pub token_decoder: bool,
}

impl EknetConfig {
    /// Reads the model section of a stage config.
    pub fn from_stage(cfg: &StageConfig) -> EknetConfig {
        let m = &cfg.model;
        EknetConfig {
            stage: match m.mode_stage {
                ModeStage::SelfLearning => Stage::Pretrain,
                ModeStage::Classifier => Stage::Classify,
            },
            d_model: m.embed_dim,
            depth: m.local_depth,
            heads: m.num_head,
            knowledge_depth: m.cls_cross_depth,
            num_classes: m.num_classes,
            merging: m.pos_merging_style,
            norm: if m.normalize_before {
                NormPlacement::Pre
            } else {
                NormPlacement::ResPost
            },
            lead_split: m.lead_split,
            full_ii_head: m.pred_full_ii_lead,
            stem: (m.token_embedding == TokenEmbedding::Conv).then_some((
                m.conv_channels,
                m.conv_blocks,
                m.stem_batch_norm,
            )),
            dropout: m.dropout,
            lead_std: m.lead_knowledge_std,
            token_decoder: m.stage1_head == Stage1Head::Tokens,
        }
    }

    /// Number of knowledge queries: 12 leads (or 15 slots without the full-II head) in stage 1,
    /// one per class in stage 2.
    pub fn queries(&self) -> usize {
        match (self.stage, self.full_ii_head) {
            (Stage::Pretrain, true) => 12,
            (Stage::Pretrain, false) => SLOT_COUNT,
            (Stage::Classify, _) => self.num_classes,
        }
    }
}

/// Token groups the encoder sees: one group of all 750 tokens, or limb / chest / rhythm.
pub fn token_groups(lead_split: bool) -> Vec<Vec<usize>> {
    if lead_split {
        vec![
            group_tokens(LeadGroup::Limb),
            group_tokens(LeadGroup::Chest),
            group_tokens(LeadGroup::Rhythm),
        ]
    } else {
        vec![(0..TOKEN_COUNT).collect()]
    }
}

/// Which tokens each sample keeps in each group during training (`[group][batch][kept]`, token
/// indices within the whole 750), drawn on the host so every backend drops the same tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct DropPlan {
    /// Kept token indices, ascending.
    pub keep: Vec<Vec<Vec<usize>>>,
}

impl DropPlan {
    /// Every group's kept tokens side by side per sample, `[batch, kept]`, in group order.
    pub fn index<B: Backend>(&self, batch: usize, device: &B::Device) -> Tensor<B, 2, Int> {
        let per_row: usize = self
            .keep
            .iter()
            .map(|g| g.first().map_or(0, Vec::len))
            .sum();
        let mut idx = Vec::with_capacity(batch * per_row);
        for row in 0..batch {
            for g in &self.keep {
                idx.extend(g[row].iter().map(|&t| t as i64));
            }
        }
        Tensor::from_data(TensorData::new(idx, [batch, per_row]), device)
    }

    /// Each sample keeps a random `floor(n * (1 - ratio))` of each group's `n` tokens.
    pub fn draw(
        groups: &[Vec<usize>],
        batch: usize,
        ratio: f64,
        rng: &mut crate::rng::Rng,
    ) -> DropPlan {
        let keep = groups
            .iter()
            .map(|g| {
                let k = (g.len() as f64 * (1.0 - ratio)).floor() as usize;
                (0..batch)
                    .map(|_| {
                        let mut idx = g.clone();
                        rng.shuffle(&mut idx);
                        let mut kept = idx[..k].to_vec();
                        kept.sort_unstable();
                        kept
                    })
                    .collect()
            })
            .collect();
        DropPlan { keep }
    }

    /// The plan of samples `rows` of the batch (one device's share in data-parallel training).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> DropPlan {
        DropPlan {
            keep: self.keep.iter().map(|g| g[rows.clone()].to_vec()).collect(),
        }
    }

    /// A `[batch, 750]` mask: 1 where a token was dropped.
    pub fn dropped_mask(&self, batch: usize) -> Vec<f32> {
        let mut m = vec![1.0; batch * TOKEN_COUNT];
        for group in &self.keep {
            for (b, kept) in group.iter().enumerate() {
                for &t in kept {
                    m[b * TOKEN_COUNT + t] = 0.0;
                }
            }
        }
        m
    }
}

/// Where each of the 750 token positions sits in the encoder's output (`[batch * 750]` indices)
/// and whether it was kept (1) or dropped (0). With a plan the encoder's output is each group's
/// kept tokens in group order; without one it is in slot order, every token kept.
fn sheet_index(plan: Option<&DropPlan>, b: usize) -> (Vec<i64>, Vec<f32>) {
    let mut index = vec![0i64; b * TOKEN_COUNT];
    let mut kept = vec![0.0f32; b * TOKEN_COUNT];
    match plan {
        Some(p) => {
            for s in 0..b {
                let mut pos = 0i64;
                for group in &p.keep {
                    for &t in group.get(s).map(Vec::as_slice).unwrap_or(&[]) {
                        index[s * TOKEN_COUNT + t] = pos;
                        kept[s * TOKEN_COUNT + t] = 1.0;
                        pos += 1;
                    }
                }
            }
        }
        None => {
            for s in 0..b {
                for t in 0..TOKEN_COUNT {
                    index[s * TOKEN_COUNT + t] = t as i64;
                    kept[s * TOKEN_COUNT + t] = 1.0;
                }
            }
        }
    }
    (index, kept)
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct EknetOutput<B: Backend> {
    /// Stage 1: rebuilt input `[batch, 15, 1250]`.
    pub reconstruction: Option<Tensor<B, 3>>,
    /// Stage 2: present/absent logits `[batch, classes, 2]`.
    pub logits: Option<Tensor<B, 3>>,
    /// Last cross-attention weights, mean over heads `[batch, queries, 750]` (no drop only).
    pub attention: Option<Tensor<B, 3>>,
}

/// The EKnet model.
#[derive(Module, Debug)]
pub struct Eknet<B: Backend> {
    /// Patch embedding and knowledge merging.
    pub embed: TokenEmbed<B>,
    /// Encoder blocks.
    pub encoder: Vec<Block<B>>,
    /// Knowledge self-attention blocks.
    pub knowledge_self: Vec<Block<B>>,
    /// Knowledge cross-attention blocks.
    pub knowledge_cross: Vec<Block<B>>,
    /// Learned queries `[K, D]`: leads (stage 1) or classes (stage 2).
    pub queries: Param<Tensor<B, 2>>,
    /// Stage 1: the lead II query's 10 s head (`D -> 1250 -> 2500 -> 5000`).
    pub recon_ii: Vec<Linear<B>>,
    /// Stage 1: the shared 2.5 s slot head `D -> 1250`.
    pub recon_slot: Option<Linear<B>>,
    /// Stage 1 (`stage1_head: tokens`): the token decoder.
    pub token_decoder: Option<TokenDecoder<B>>,
    /// Stage 2: per-class `Linear(D -> 2)` weights `[K, D, 2]`.
    pub class_weight: Option<Param<Tensor<B, 3>>>,
    /// Stage 2: per-class biases `[K, 2]`.
    pub class_bias: Option<Param<Tensor<B, 2>>>,
    /// Group token indices, and the permutation from concatenated groups back to slot order.
    pub groups: Vec<Tensor<B, 1, Int>>,
    /// `unsplit[t]` = position of token `t` in the concatenated groups.
    pub unsplit: Tensor<B, 1, Int>,
    /// Stage.
    pub pretrain: bool,
    /// Whether the II head is the 10 s head.
    pub full_ii_head: bool,
}

fn ints<B: Backend>(v: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let data: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(data, [v.len()]), device)
}

impl<B: Backend> Eknet<B> {
    /// A freshly initialised model.
    pub fn new(cfg: &EknetConfig, device: &B::Device) -> Self {
        let d = cfg.d_model;
        let blocks = |n: usize| {
            (0..n)
                .map(|_| Block::new(d, cfg.heads, cfg.norm, cfg.dropout, device))
                .collect::<Vec<_>>()
        };
        let k = cfg.queries();
        let pretrain = cfg.stage == Stage::Pretrain;
        let groups = token_groups(cfg.lead_split);
        let concat: Vec<usize> = groups.iter().flatten().copied().collect();
        let mut unsplit = vec![0usize; TOKEN_COUNT];
        for (pos, &t) in concat.iter().enumerate() {
            unsplit[t] = pos;
        }
        let bound = 1.0 / (d as f64).sqrt();
        Eknet {
            embed: TokenEmbed::new(
                d,
                cfg.merging == PosMerging::ConcatMlp,
                cfg.stem,
                cfg.lead_std,
                device,
            ),
            encoder: blocks(cfg.depth),
            knowledge_self: blocks(cfg.knowledge_depth),
            knowledge_cross: blocks(cfg.knowledge_depth),
            queries: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([k, d], device),
            recon_ii: if pretrain && cfg.full_ii_head {
                vec![
                    LinearConfig::new(d, SLOT_SAMPLES).init(device),
                    LinearConfig::new(SLOT_SAMPLES, 2 * SLOT_SAMPLES).init(device),
                    LinearConfig::new(2 * SLOT_SAMPLES, WINDOW_SAMPLES).init(device),
                ]
            } else {
                Vec::new()
            },
            recon_slot: pretrain.then(|| LinearConfig::new(d, SLOT_SAMPLES).init(device)),
            token_decoder: (pretrain && cfg.token_decoder)
                .then(|| TokenDecoder::new(d, cfg.heads, cfg.norm, cfg.dropout, device)),
            class_weight: (!pretrain).then(|| {
                Initializer::Uniform {
                    min: -bound,
                    max: bound,
                }
                .init([k, d, 2], device)
            }),
            class_bias: (!pretrain).then(|| {
                Initializer::Uniform {
                    min: -bound,
                    max: bound,
                }
                .init([k, 2], device)
            }),
            groups: groups.iter().map(|g| ints(g, device)).collect(),
            unsplit: ints(&unsplit, device),
            pretrain,
            full_ii_head: cfg.full_ii_head,
        }
    }

    /// Runs the encoder on each token group (dropping tokens per `plan` when given) and returns the
    /// concatenated outputs; without a plan, in slot order.
    pub fn encode(&self, tokens: Tensor<B, 3>, plan: Option<&DropPlan>) -> Tensor<B, 3> {
        self.encode_from(tokens, plan, false)
    }

    /// [`encode`](Self::encode) of tokens embedded only where `plan` keeps them: `tokens`
    /// `[b, kept, d]`, the groups' side by side as [`DropPlan::index`] lists them.
    pub fn encode_kept(&self, tokens: Tensor<B, 3>, plan: &DropPlan) -> Tensor<B, 3> {
        self.encode_from(tokens, Some(plan), true)
    }

    /// [`encode`](Self::encode); with `kept`, `tokens` holds only the kept tokens, the groups'
    /// side by side in the plan's order (as [`DropPlan::index`] lists them).
    fn encode_from(
        &self,
        tokens: Tensor<B, 3>,
        plan: Option<&DropPlan>,
        kept: bool,
    ) -> Tensor<B, 3> {
        let [b, _, d] = tokens.dims();
        let device = tokens.device();
        let mut inputs = Vec::with_capacity(self.groups.len());
        let mut offset = 0;
        for (g, group) in self.groups.iter().enumerate() {
            let x = match plan {
                Some(p) if kept => {
                    let k = p.keep[g].first().map_or(0, Vec::len);
                    offset += k;
                    tokens.clone().slice([0..b, offset - k..offset, 0..d])
                }
                Some(p) => {
                    let kept: Vec<usize> = p.keep[g].iter().flatten().copied().collect();
                    let k = p.keep[g].first().map_or(0, Vec::len);
                    let idx: Tensor<B, 3, Int> = Tensor::<B, 2, Int>::from_data(
                        TensorData::new(kept.iter().map(|&t| t as i64).collect::<Vec<_>>(), [b, k]),
                        &device,
                    )
                    .unsqueeze_dim::<3>(2)
                    .expand([b, k, d]);
                    tokens.clone().gather(1, idx) // [b, k, d]
                }
                None => tokens.clone().select(1, group.clone()), // [b, n_g, d]
            };
            inputs.push(x);
        }
        // Groups of equal length (limb and chest: 300 tokens each, or as many kept) go through
        // the encoder together, stacked on the batch axis: the same arithmetic per sequence in
        // fewer, larger operations.
        let mut outs: Vec<Option<Tensor<B, 3>>> = vec![None; inputs.len()];
        let lengths: Vec<usize> = inputs.iter().map(|x| x.dims()[1]).collect();
        let mut inputs: Vec<Option<Tensor<B, 3>>> = inputs.into_iter().map(Some).collect();
        for (g, &len) in lengths.iter().enumerate() {
            if outs[g].is_some() {
                continue;
            }
            let members: Vec<usize> = (g..lengths.len()).filter(|&o| lengths[o] == len).collect();
            let stacked: Vec<Tensor<B, 3>> =
                members.iter().filter_map(|&m| inputs[m].take()).collect();
            let mut x = Tensor::cat(stacked, 0);
            for block in &self.encoder {
                x = block.forward(x, None, false).0;
            }
            for (i, &m) in members.iter().enumerate() {
                outs[m] = Some(x.clone().slice([i * b..(i + 1) * b, 0..len, 0..d]));
            }
        }
        let cat = Tensor::cat(outs.into_iter().flatten().collect(), 1);
        match plan {
            Some(_) => cat,
            None if self.groups.len() > 1 => cat.select(1, self.unsplit.clone()),
            None => cat,
        }
    }

    /// The forward pass. `plan` drops tokens (training); `None` keeps all (evaluation, inference).
    pub fn forward(&self, x: Tensor<B, 3>, plan: Option<&DropPlan>) -> EknetOutput<B> {
        let b = x.dims()[0];
        // The input in the parameters' float type (bf16 in a mixed-precision working copy).
        let x = like(x, self.queries.val().dtype());
        // Stage 1 with the convolutional stem: a kept token's stem sees its neighbours' samples,
        // so the samples under dropped tokens are zeroed first, or rebuilding them would be a
        // copy instead of a prediction.
        let x = match plan {
            Some(p) if self.pretrain && self.embed.stem.is_some() => {
                let keep: Vec<f32> = p.dropped_mask(b).iter().map(|m| 1.0 - m).collect();
                let mask = Tensor::<B, 2>::from_data(
                    TensorData::new(keep, [b, TOKEN_COUNT]),
                    (&x.device(), x.dtype()),
                )
                .reshape([b, SLOT_COUNT, PATCHES_PER_SLOT, 1])
                .repeat_dim(3, PATCH_SAMPLES)
                .reshape([b, SLOT_COUNT, SLOT_SAMPLES]);
                x * mask
            }
            _ => x,
        };
        // With a drop plan and a per-token embedding, only the kept tokens are embedded.
        let memory = match plan {
            Some(p) if self.embed.per_token() => {
                let index = p.index::<B>(b, &x.device());
                self.encode_kept(self.embed.forward_at(x, Some(index)), p)
            }
            _ => self.encode(self.embed.forward(x), plan),
        }; // [b, l, d]
        if self.pretrain
            && let Some(decoder) = &self.token_decoder
        {
            let (index, kept) = sheet_index(plan, b);
            let knowledge = self.embed.position_knowledge(decoder.lead.val(), b);
            return EknetOutput {
                reconstruction: Some(decoder.forward(memory, &index, &kept, knowledge)),
                logits: None,
                attention: None,
            };
        }
        let [k, d] = self.queries.dims();
        let mut q = self.queries.val().unsqueeze_dim::<3>(0).expand([b, k, d]);
        let mut attention = None;
        let last = self.knowledge_cross.len().saturating_sub(1);
        for (i, (sa, ca)) in self
            .knowledge_self
            .iter()
            .zip(&self.knowledge_cross)
            .enumerate()
        {
            q = sa.forward(q, None, false).0;
            let want = i == last && plan.is_none();
            let (nq, w) = ca.forward(q, Some(memory.clone()), want);
            q = nq;
            if want {
                attention = w;
            }
        }
        if self.pretrain {
            EknetOutput {
                reconstruction: Some(self.reconstruct(q)),
                logits: None,
                attention,
            }
        } else {
            EknetOutput {
                reconstruction: None,
                logits: Some(self.classify(q)),
                attention,
            }
        }
    }

    /// Stage-1 heads: `[b, K, D]` queries to `[b, 15, 1250]` in slot order.
    fn reconstruct(&self, q: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, k, d] = q.dims();
        let Some(slot_head) = &self.recon_slot else {
            return Tensor::zeros([b, SLOT_COUNT, SLOT_SAMPLES], (&q.device(), q.dtype()));
        };
        if !self.full_ii_head {
            return linear(slot_head, q); // one query per slot
        }
        let per_lead = linear(slot_head, q.clone()); // [b, 12, 1250]
        let ii = q.slice([0..b, 1..2, 0..d]).reshape([b, d]);
        let mut h = ii;
        for (i, layer) in self.recon_ii.iter().enumerate() {
            h = linear(layer, h);
            if i + 1 < self.recon_ii.len() {
                h = gelu(h);
            }
        }
        let ii_slots = h.reshape([b, 4, SLOT_SAMPLES]);
        // Slot order: I, II_1..II_4, III, aVR, aVL, aVF, V1..V6 (lead rows 0, 1x4, 2..11).
        Tensor::cat(
            vec![
                per_lead.clone().slice([0..b, 0..1, 0..SLOT_SAMPLES]),
                ii_slots,
                per_lead.slice([0..b, 2..k, 0..SLOT_SAMPLES]),
            ],
            1,
        )
    }

    /// Stage-2 heads: `[b, K, D]` to `[b, K, 2]` logits, one `Linear(D -> 2)` per class.
    fn classify(&self, q: Tensor<B, 3>) -> Tensor<B, 3> {
        let (Some(w), Some(bias)) = (&self.class_weight, &self.class_bias) else {
            let [b, k, _] = q.dims();
            return Tensor::zeros([b, k, 2], (&q.device(), q.dtype()));
        };
        let per_class = q.swap_dims(0, 1).matmul(w.val()); // [K, b, D] x [K, D, 2] = [K, b, 2]
        per_class.swap_dims(0, 1) + bias.val().unsqueeze_dim::<3>(0)
    }
}

/// `p(present)` per class from logits `[b, K, 2]`.
pub fn scores<B: Backend>(logits: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, k, _] = logits.dims();
    softmax(logits, 2).slice([0..b, 0..k, 1..2]).reshape([b, k])
}
