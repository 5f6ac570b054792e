//! The seed-compatible YAML configs of both training stages (`configs/EKnet_self_learning.yaml`,
//! `configs/EKnet_classification.yaml`): the seed's sections and keys, parsed into typed structs.
//! Every key is read; an unknown key, a value of the wrong type, or a value this implementation
//! does not support is an error naming the key and the file.

use crate::layout::{PATCH_SAMPLES, SLOT_COUNT, SLOT_SAMPLES, slot_names};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors loading a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a mistyped value.
    #[error("config {path}: key {key}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Dotted key path (`MODEL.embed_dim`); for an unknown key, its section.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A well-typed value that is out of range or unsupported.
    #[error("config {path}: key {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key path.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A whole stage config, section by section, with the seed's key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Run name; outputs go to `MODEL_SAVE_DIR/TRY_TIME_...`.
    #[serde(rename = "TRY_TIME")]
    pub try_time: String,
    /// Plot predictions every this many epochs.
    #[serde(rename = "DRAW_EPOCHS")]
    pub draw_epochs: u32,
    /// Records drawn when plotting.
    #[serde(rename = "DRAW_EPOCHS_imgs")]
    pub draw_epochs_imgs: u32,
    /// Where data and outputs are.
    #[serde(rename = "DATASET")]
    pub dataset: DatasetSection,
    /// Input geometry and augmentation.
    #[serde(rename = "DATASET_CUSTOME")]
    pub input: InputSection,
    /// Optimiser and schedule.
    #[serde(rename = "OPTIM")]
    pub optim: OptimSection,
    /// Model shape.
    #[serde(rename = "MODEL")]
    pub model: ModelSection,
    /// Training-time augmentation (eknet's; absent in the seed's configs, off by default).
    #[serde(
        rename = "AUGMENT",
        default,
        skip_serializing_if = "AugmentSection::is_off"
    )]
    pub augment: AugmentSection,
}

/// `AUGMENT`: augmentation of each training crop (eknet's section; every key optional, 0 = off).
/// Drawn per record and epoch with the run's seed; never applied to validation or test.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSection {
    /// Record-wide gain drawn from `[1 - a, 1 + a]`.
    pub amplitude_scale: f64,
    /// Further per-lead gain drawn from `[1 - a, 1 + a]`.
    pub lead_scale: f64,
    /// White noise: per record a standard deviation drawn from `[0, noise_mv]` (mV).
    pub noise_mv: f64,
    /// Baseline wander: per lead one 0.05-0.5 Hz sinusoid of amplitude up to this (mV).
    pub baseline_wander_mv: f64,
    /// Mains hum: 50 or 60 Hz of amplitude up to this (mV), on every lead.
    pub mains_hum_mv: f64,
    /// Probability that each lead is zeroed (a lead off).
    pub lead_dropout: f64,
}

impl AugmentSection {
    /// Whether every augmentation is off.
    pub fn is_off(&self) -> bool {
        *self == AugmentSection::default()
    }
}

/// `DATASET`: split files and folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// Training split (`paths,label_names`).
    #[serde(rename = "TRAIN_CSV")]
    pub train_csv: PathBuf,
    /// Validation split.
    #[serde(rename = "VAL_CSV")]
    pub val_csv: PathBuf,
    /// Test split (the seed's stage-1 script reads it; optional here).
    #[serde(rename = "TEST_CSV", default, skip_serializing_if = "Option::is_none")]
    pub test_csv: Option<PathBuf>,
    /// Class distribution (`idx,names,all,train,val`), whose row order is the output order.
    #[serde(rename = "STATS_CSV")]
    pub stats_csv: PathBuf,
    /// Folder the split paths are relative to.
    #[serde(rename = "DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where runs write checkpoints and metrics.
    #[serde(rename = "MODEL_SAVE_DIR")]
    pub model_save_dir: PathBuf,
}

/// `DATASET_CUSTOME` (sic, the seed's spelling): input geometry, token drop, pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// Samples per slot; must be 1250.
    #[serde(rename = "INPUT_LENGTH")]
    pub input_length: usize,
    /// Slot names in model order; must be the 3x4 layout's.
    #[serde(rename = "LEADS")]
    pub leads: Vec<String>,
    /// Number of slots; must be 15.
    #[serde(rename = "INPUT_LEADS")]
    pub input_leads: usize,
    /// Samples per patch; must be 25.
    #[serde(rename = "PATCH_SIZE")]
    pub patch_size: usize,
    /// Fraction of tokens dropped per sample in training.
    #[serde(rename = "MASK_RATIO")]
    pub mask_ratio: f64,
    /// Per-record normalisation; must be false (the model takes raw millivolts).
    #[serde(rename = "NORMLIZE_SINGAL")]
    pub normalize_signal: bool,
    /// The seed's V1-V6 attenuation; must be false.
    #[serde(rename = "Depress_v1_v6")]
    pub depress_v1_v6: bool,
    /// The seed's random placement of PTB-XL windows (a random 10 s crop of longer records).
    #[serde(rename = "PTB_random_pos_loc")]
    pub random_window: bool,
    /// Stage-1 checkpoint to start stage 2 from.
    #[serde(
        rename = "Pertrain_Path",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pretrain_path: Option<PathBuf>,
    /// Whether to load `Pertrain_Path`.
    #[serde(rename = "Using_Pertrain")]
    pub using_pretrain: bool,
}

/// `OPTIM`: optimiser and schedule. The learning rate is used as given, whatever the batch size
/// (the seed multiplied it by `int(batch/256)`, which is 0 below 256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// ECGs per optimiser step.
    #[serde(rename = "BATCH_SIZE")]
    pub batch_size: usize,
    /// Epochs.
    #[serde(rename = "NUM_EPOCHS")]
    pub num_epochs: usize,
    /// Peak learning rate (after warm-up).
    #[serde(rename = "LR_INITIAL")]
    pub lr_initial: f64,
    /// Learning rate at the end of the cosine.
    #[serde(rename = "LR_MIN")]
    pub lr_min: f64,
    /// AdamW weight decay (stage 1; stage 2 uses Adam without decay, as the seed).
    pub weight_decay: f64,
    /// Linear warm-up epochs (seed: 30 in stage 1, 1 in stage 2).
    #[serde(rename = "WARMUP_EPOCHS")]
    pub warmup_epochs: usize,
    /// Validate and checkpoint every this many epochs (seed: 5 in stage 1, 1 in stage 2).
    #[serde(rename = "VAL_EVERY")]
    pub val_every: usize,
    /// Seed of every random choice (init, shuffling, token drop).
    #[serde(rename = "SEED")]
    pub seed: u64,
    /// eknet: weigh each class's positives in the stage-2 loss (`balanced`: by negatives /
    /// positives in the training split, capped at 10) or not (`none`, the seed's).
    #[serde(default, skip_serializing_if = "ClassWeighting::is_none")]
    pub class_weighting: ClassWeighting,
    /// eknet: apply `weight_decay` (AdamW) in stage 2 too; the seed's stage 2 uses Adam without
    /// decay (false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weight_decay_stage2: bool,
}

/// How stage 2 weighs the classes' positives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeighting {
    /// Every label counts the same (the seed's).
    #[default]
    None,
    /// Positives of class k weigh `min(negatives_k / positives_k, 10)`.
    Balanced,
}

impl ClassWeighting {
    /// Whether this is the seed's `none`.
    pub fn is_none(&self) -> bool {
        *self == ClassWeighting::None
    }
}

/// Training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModeStage {
    /// Stage 1: lead reconstruction.
    #[serde(rename = "self_learning")]
    SelfLearning,
    /// Stage 2: classification (the seed spells it `classfier`).
    #[serde(rename = "classfier", alias = "classifier")]
    Classifier,
}

/// How a token's content, lead knowledge and time knowledge are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosMerging {
    /// Concatenate `[x, k_lead, k_time]` and map back with an MLP (the paper's; default).
    ConcatMlp,
    /// Add a frozen 2-D sin-cos table (the release's).
    AddSincos,
}

/// What rebuilds the signal in stage 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage1Head {
    /// The seed's: each lead query to its samples by one linear map.
    #[default]
    Queries,
    /// A masked-autoencoder decoder block over the whole sheet.
    Tokens,
}

impl Stage1Head {
    /// Whether this is the seed's head (left out of written configs).
    pub fn is_queries(&self) -> bool {
        *self == Stage1Head::Queries
    }
}

/// Which samples the stage-1 reconstruction loss covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    /// Every sample of the undropped input (the release's choice).
    All,
    /// Only the dropped tokens' samples.
    Masked,
}

/// The seed's purification options (`none` is the only one the release's configs use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purification {
    /// No purification.
    #[serde(rename = "none")]
    None,
    /// Not implemented.
    #[serde(rename = "token_purification_M")]
    TokenPurificationM,
    /// Not implemented.
    TokenPurification,
}

/// `MODEL`: the seed's keys, each read and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model family (`EPKnet`, `The_EKnet` or `EKnet`: all the same model here).
    #[serde(rename = "MODE")]
    pub mode: String,
    /// `1d` or `2d` patch embedding: identical for patches of one lead.
    pub embedding_1d_2d: String,
    /// Token width D.
    pub embed_dim: usize,
    /// Encoder blocks.
    pub local_depth: usize,
    /// Attention heads.
    pub num_head: usize,
    /// Add positions to keys/values before cross-attention; must be false (the design's choice).
    pub add_pos_before_cross: bool,
    /// Knowledge layers (self + cross attention pairs).
    pub cls_cross_depth: usize,
    /// Stage 1 rebuilds the whole 10 s lead II from its query.
    #[serde(rename = "pred_full_II_lead")]
    pub pred_full_ii_lead: bool,
    /// Pre-norm (`true`) or the release's residual post-norm (`false`).
    pub normalize_before: bool,
    /// Which stage this config trains.
    pub mode_stage: ModeStage,
    /// Classes (stage 2; stage 1 ignores it and uses 12 lead queries).
    pub num_classes: usize,
    /// Purification; only `none` is implemented.
    pub pufication_module: Purification,
    /// Purification ratio (inert with `none`).
    pub pufication_ratio: f64,
    /// Purification scoring (inert with `none`).
    pub pure_ways: String,
    /// Classifier head; only `cls_embeeing_seperate` (one `Linear(D,2)` per class) is implemented.
    pub classfierer_type: String,
    /// Stage 2 runs the encoder on limb, chest and rhythm groups separately.
    pub lead_split: bool,
    /// Fast purification (inert with `none`).
    pub fast_pufication: String,
    /// Fast purification heads (inert).
    pub fast_pufication_head: usize,
    /// Fast purification scoring (inert).
    pub fast_pure_ways: String,
    /// Purification heads (inert).
    #[serde(rename = "Token_Purification_M_head")]
    pub token_purification_m_head: usize,
    /// Position style; only `orginal` (sic) is implemented.
    pub pos_emb_style: String,
    /// Lead rows of the position table: `12`.
    pub pos_emb_source: String,
    /// The seed's lead-embedding freeze (inert: lead knowledge is learned).
    pub lead_embedding_trainable: bool,
    /// Time embedding source (classification config's spelling); `orginal` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_emb_source: Option<String>,
    /// Time embedding source (self-learning config's spelling); `orginal` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_emb_order: Option<String>,
    /// Merging variant (the seed's scripts pass this key; its YAML lacks it).
    #[serde(default = "default_merging")]
    pub pos_merging_style: PosMerging,
    /// Stage-1 loss coverage.
    #[serde(default = "default_loss_on")]
    pub loss_on: LossOn,
    /// The paper's optional lead-and-time prediction head in stage 1.
    #[serde(default)]
    pub lead_time_head: bool,
    /// eknet: what rebuilds the signal in stage 1: `queries` (the seed's: each lead's knowledge
    /// query, one 64-wide vector, to 1250 samples by one linear map) or `tokens` (as a masked
    /// autoencoder: each kept token's encoder output back at its place on the sheet, a learned
    /// mask token at each dropped one, plus lead and time knowledge; one self-attention block
    /// over them and the lead queries; `Linear(D -> 25)` per position).
    #[serde(default, skip_serializing_if = "Stage1Head::is_queries")]
    pub stage1_head: Stage1Head,
    /// eknet: how each 50 ms token is made from the signal: `linear` (the seed's one
    /// `Linear(25 -> D)` per patch) or `conv` (a small convolutional stem over each 2.5 s slot
    /// that sees the wave shape around the patch).
    #[serde(default, skip_serializing_if = "TokenEmbedding::is_linear")]
    pub token_embedding: TokenEmbedding,
    /// eknet: channels of the `conv` stem's sample-rate layers.
    #[serde(default = "default_conv_channels")]
    pub conv_channels: usize,
    /// eknet: residual dilated convolution blocks of the `conv` stem at token rate (dilations
    /// 1, 2, 4, ...: each block widens what a token sees).
    #[serde(default = "default_conv_blocks")]
    pub conv_blocks: usize,
    /// eknet: batch norm after each product of the `conv` stem (folded into the products on
    /// export).
    #[serde(default)]
    pub stem_batch_norm: bool,
    /// eknet: dropout in the encoder and knowledge blocks during training (the seed's: 0).
    #[serde(default)]
    pub dropout: f64,
    /// eknet: standard deviation of the lead knowledge table at initialisation (the seed's: 0.02).
    #[serde(default = "default_lead_std")]
    pub lead_knowledge_std: f64,
}

/// How tokens are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEmbedding {
    /// One shared `Linear(25 -> D)` per 50 ms patch (the seed's).
    #[default]
    Linear,
    /// A convolutional stem over each slot: three convolutions down to one token per 50 ms,
    /// then residual dilated convolutions at token rate, then a LayerNorm.
    Conv,
}

impl TokenEmbedding {
    /// Whether this is the seed's linear embedding.
    pub fn is_linear(&self) -> bool {
        *self == TokenEmbedding::Linear
    }
}

fn default_conv_channels() -> usize {
    32
}

fn default_conv_blocks() -> usize {
    4
}

fn default_lead_std() -> f64 {
    0.02
}

fn default_merging() -> PosMerging {
    PosMerging::ConcatMlp
}

fn default_loss_on() -> LossOn {
    LossOn::All
}

impl StageConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<StageConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        StageConfig::parse(&text, path)
    }

    /// Parses and validates YAML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<StageConfig, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: StageConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                path: path.to_path_buf(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// The YAML text of this config (saved beside checkpoints so a run describes itself).
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let fail = |key: &'static str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            })
        };
        let i = &self.input;
        let m = &self.model;
        let o = &self.optim;
        if i.input_length != SLOT_SAMPLES {
            return fail(
                "DATASET_CUSTOME.INPUT_LENGTH",
                format!(
                    "{} given; the 3x4 layout's slots are {SLOT_SAMPLES} samples",
                    i.input_length
                ),
            );
        }
        if i.leads != slot_names() {
            return fail(
                "DATASET_CUSTOME.LEADS",
                format!(
                    "{:?} given; the 3x4 layout's slots are {:?}",
                    i.leads,
                    slot_names()
                ),
            );
        }
        if i.input_leads != SLOT_COUNT {
            return fail(
                "DATASET_CUSTOME.INPUT_LEADS",
                format!("{} given; must be {SLOT_COUNT}", i.input_leads),
            );
        }
        if i.patch_size != PATCH_SAMPLES {
            return fail(
                "DATASET_CUSTOME.PATCH_SIZE",
                format!("{} given; must be {PATCH_SAMPLES}", i.patch_size),
            );
        }
        if !(0.0..1.0).contains(&i.mask_ratio) {
            return fail(
                "DATASET_CUSTOME.MASK_RATIO",
                format!("{} given; must be in [0, 1)", i.mask_ratio),
            );
        }
        if i.normalize_signal {
            return fail(
                "DATASET_CUSTOME.NORMLIZE_SINGAL",
                "must be false: the model takes raw millivolts".into(),
            );
        }
        if i.depress_v1_v6 {
            return fail(
                "DATASET_CUSTOME.Depress_v1_v6",
                "must be false: not part of the model".into(),
            );
        }
        if i.using_pretrain && i.pretrain_path.is_none() {
            return fail(
                "DATASET_CUSTOME.Pertrain_Path",
                "Using_Pertrain is true but no path is given".into(),
            );
        }
        if o.batch_size == 0 {
            return fail("OPTIM.BATCH_SIZE", "must be at least 1".into());
        }
        if o.num_epochs == 0 {
            return fail("OPTIM.NUM_EPOCHS", "must be at least 1".into());
        }
        if !(o.lr_initial > 0.0 && o.lr_initial.is_finite()) {
            return fail(
                "OPTIM.LR_INITIAL",
                format!("{} given; must be positive", o.lr_initial),
            );
        }
        if !(o.lr_min >= 0.0 && o.lr_min <= o.lr_initial) {
            return fail(
                "OPTIM.LR_MIN",
                format!("{} given; must be in [0, LR_INITIAL]", o.lr_min),
            );
        }
        if !(o.weight_decay >= 0.0 && o.weight_decay.is_finite()) {
            return fail(
                "OPTIM.weight_decay",
                format!("{} given; must be >= 0", o.weight_decay),
            );
        }
        if o.val_every == 0 {
            return fail("OPTIM.VAL_EVERY", "must be at least 1".into());
        }
        let a = &self.augment;
        for (key, v, max) in [
            ("AUGMENT.amplitude_scale", a.amplitude_scale, 1.0),
            ("AUGMENT.lead_scale", a.lead_scale, 1.0),
            ("AUGMENT.noise_mv", a.noise_mv, f64::INFINITY),
            (
                "AUGMENT.baseline_wander_mv",
                a.baseline_wander_mv,
                f64::INFINITY,
            ),
            ("AUGMENT.mains_hum_mv", a.mains_hum_mv, f64::INFINITY),
            ("AUGMENT.lead_dropout", a.lead_dropout, 1.0),
        ] {
            if !(v >= 0.0 && v < max && v.is_finite()) {
                return fail(key, format!("{v} given; must be in [0, {max})"));
            }
        }
        if !(m.dropout >= 0.0 && m.dropout < 1.0) {
            return fail(
                "MODEL.dropout",
                format!("{} given; must be in [0, 1)", m.dropout),
            );
        }
        if !(m.lead_knowledge_std >= 0.0 && m.lead_knowledge_std.is_finite()) {
            return fail(
                "MODEL.lead_knowledge_std",
                format!("{} given; must be >= 0", m.lead_knowledge_std),
            );
        }
        if m.token_embedding == TokenEmbedding::Conv && m.conv_channels == 0 {
            return fail("MODEL.conv_channels", "must be at least 1".into());
        }
        if !["EPKnet", "The_EKnet", "EKnet"].contains(&m.mode.as_str()) {
            return fail(
                "MODEL.MODE",
                format!("'{}' given; expected EPKnet, The_EKnet or EKnet", m.mode),
            );
        }
        if !["1d", "2d"].contains(&m.embedding_1d_2d.as_str()) {
            return fail(
                "MODEL.embedding_1d_2d",
                format!("'{}' given; expected 1d or 2d", m.embedding_1d_2d),
            );
        }
        if m.embed_dim == 0 || m.num_head == 0 || !m.embed_dim.is_multiple_of(m.num_head) {
            return fail(
                "MODEL.embed_dim",
                format!(
                    "{} must be a positive multiple of num_head ({})",
                    m.embed_dim, m.num_head
                ),
            );
        }
        if m.pos_merging_style == PosMerging::AddSincos && !m.embed_dim.is_multiple_of(4) {
            return fail(
                "MODEL.embed_dim",
                format!("{} must be a multiple of 4 for add_sincos", m.embed_dim),
            );
        }
        if m.local_depth == 0 {
            return fail("MODEL.local_depth", "must be at least 1".into());
        }
        if m.cls_cross_depth == 0 {
            return fail("MODEL.cls_cross_depth", "must be at least 1".into());
        }
        if m.num_classes == 0 {
            return fail("MODEL.num_classes", "must be at least 1".into());
        }
        if m.add_pos_before_cross {
            return fail(
                "MODEL.add_pos_before_cross",
                "must be false: keys and values are the tokens without positions".into(),
            );
        }
        if m.pufication_module != Purification::None {
            return fail(
                "MODEL.pufication_module",
                "only 'none' is implemented".into(),
            );
        }
        if m.classfierer_type != "cls_embeeing_seperate" {
            return fail(
                "MODEL.classfierer_type",
                format!(
                    "'{}' given; only 'cls_embeeing_seperate' is implemented",
                    m.classfierer_type
                ),
            );
        }
        if m.pos_emb_style != "orginal" {
            return fail(
                "MODEL.pos_emb_style",
                format!("'{}' given; only 'orginal' is implemented", m.pos_emb_style),
            );
        }
        if m.pos_emb_source != "12" {
            return fail(
                "MODEL.pos_emb_source",
                format!("'{}' given; only '12' is implemented", m.pos_emb_source),
            );
        }
        for (key, v) in [
            ("MODEL.time_emb_source", &m.time_emb_source),
            ("MODEL.time_emb_order", &m.time_emb_order),
        ] {
            if let Some(v) = v
                && v != "orginal"
            {
                return fail(key, format!("'{v}' given; only 'orginal' is implemented"));
            }
        }
        Ok(())
    }
}
