//! The model bundle (`*.eknet`): one zip holding `model.onnx` (f32), `model.int8.onnx` and
//! `manifest.json` (format version, input spec, labels and thresholds, validation metrics of both
//! precisions, preprocessing, architecture, quantisation, provenance, sha256 of each member).
//! Writing and reading here; running the graphs is the runtime crate's.

use crate::layout::{LAYOUT_VERSION, SAMPLE_RATE_HZ, SLOT_COUNT, SLOT_SAMPLES, TOKEN_COUNT};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The bundle format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest member.
pub const MANIFEST: &str = "manifest.json";
/// The f32 graph member.
pub const MODEL_F32: &str = "model.onnx";
/// The int8 graph member.
pub const MODEL_INT8: &str = "model.int8.onnx";
/// Name of the graph input.
pub const INPUT_NAME: &str = "ecg";
/// Name of the scores output `[batch, classes]`.
pub const SCORES_NAME: &str = "scores";
/// Name of the attention output `[batch, classes, 750]`.
pub const ATTENTION_NAME: &str = "attention";
/// Largest member accepted (uncompressed), against zip bombs and truncated headers.
pub const MAX_MEMBER_BYTES: u64 = 1 << 30;

/// Which graph of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `model.onnx`.
    F32,
    /// `model.int8.onnx`.
    Int8,
}

impl Precision {
    /// The member holding this precision's graph.
    pub fn member(self) -> &'static str {
        match self {
            Precision::F32 => MODEL_F32,
            Precision::Int8 => MODEL_INT8,
        }
    }

    /// `"f32"` or `"int8"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!(
                "unknown precision '{other}' (expected f32 or int8)"
            )),
        }
    }
}

/// What the graph takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Graph input name (`ecg`).
    pub name: String,
    /// Element type (`f32`).
    pub dtype: String,
    /// Units of the samples (`mV`).
    pub units: String,
    /// Sampling rate the samples are at.
    pub sample_rate_hz: f64,
    /// Slots of the 3x4 layout (15).
    pub slots: usize,
    /// Samples per slot (1250).
    pub samples_per_slot: usize,
    /// Version of the slot layout (`layout::LAYOUT_VERSION`).
    pub layout_version: u32,
    /// Slot names in input order.
    pub slot_names: Vec<String>,
}

impl InputSpec {
    /// The spec of this build's layout.
    pub fn current() -> InputSpec {
        InputSpec {
            name: INPUT_NAME.into(),
            dtype: "f32".into(),
            units: "mV".into(),
            sample_rate_hz: SAMPLE_RATE_HZ,
            slots: SLOT_COUNT,
            samples_per_slot: SLOT_SAMPLES,
            layout_version: LAYOUT_VERSION,
            slot_names: crate::layout::slot_names()
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }
}

/// What the graph gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Name of the `[batch, classes]` p(present) output.
    pub scores: String,
    /// Name of the `[batch, classes, tokens]` attention output.
    pub attention: String,
    /// Tokens the attention spans (750; token `t` is slot `t / 50`, patch `t % 50` of 25 samples).
    pub tokens: usize,
}

impl OutputSpec {
    /// The outputs every bundle of this format has.
    pub fn current() -> OutputSpec {
        OutputSpec {
            scores: SCORES_NAME.into(),
            attention: ATTENTION_NAME.into(),
            tokens: TOKEN_COUNT,
        }
    }
}

/// One output class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelInfo {
    /// SCP-ECG statement code (PTB-XL), e.g. `AFIB`.
    pub code: String,
    /// The statement's description, where the SCP table has it.
    pub description: Option<String>,
    /// SNOMED CT codes that map to this statement (CinC), where known.
    pub snomed: Vec<String>,
    /// Decision threshold for the f32 graph (best F1 on validation).
    pub threshold_f32: f32,
    /// Decision threshold for the int8 graph (best F1 on validation, int8 scores).
    pub threshold_int8: f32,
    /// Training records carrying the class.
    pub support_train: usize,
    /// Validation records carrying the class.
    pub support_val: usize,
}

impl LabelInfo {
    /// The threshold of `precision`.
    pub fn threshold(&self, precision: Precision) -> f32 {
        match precision {
            Precision::F32 => self.threshold_f32,
            Precision::Int8 => self.threshold_int8,
        }
    }
}

/// One class's validation figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassFigures {
    /// Class code.
    pub code: String,
    /// Positive validation records.
    pub support: usize,
    /// ROC AUC (absent when the class has no positive or no negative record).
    pub auc: Option<f64>,
    /// F1 at the precision's threshold.
    pub f1: f64,
    /// Sensitivity at the threshold.
    pub sensitivity: f64,
    /// Precision (PPV) at the threshold.
    pub ppv: f64,
}

/// Validation figures of one precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionFigures {
    /// Mean AUC over classes that have one.
    pub macro_auc: Option<f64>,
    /// Per class, in output order.
    pub per_class: Vec<ClassFigures>,
}

/// Validation metrics of both graphs, and how far they are apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationMetrics {
    /// The validation split (prepared CSV).
    pub split: String,
    /// Records scored (first 10 s window of each).
    pub records: usize,
    /// The f32 graph (run in tract).
    pub f32: PrecisionFigures,
    /// The int8 graph (run in tract).
    pub int8: PrecisionFigures,
    /// Largest |f32 graph - burn forward| over scores of the validation records.
    pub f32_vs_trainer_max_abs: f64,
    /// Largest |int8 - f32| over scores.
    pub int8_vs_f32_max_abs: f64,
    /// Mean |int8 - f32| over scores.
    pub int8_vs_f32_mean_abs: f64,
    /// int8 macro AUC minus f32 macro AUC.
    pub int8_vs_f32_macro_auc: Option<f64>,
    /// The largest per-class |AUC(int8) - AUC(f32)|.
    pub int8_vs_f32_worst_class_auc: Option<f64>,
}

/// How records become the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Resampler used to bring records to the model rate.
    pub resampler: String,
    /// Window length in seconds.
    pub window_seconds: f64,
    /// Limb leads derived when absent.
    pub derived_leads: String,
    /// Filtering applied before the model (none: the model sees the recorded signal).
    pub filtering: String,
}

impl Preprocessing {
    /// The shared pipeline of this build (`preprocess::record_windows`).
    pub fn current() -> Preprocessing {
        Preprocessing {
            resampler: "Kaiser-windowed polyphase sinc (eknet-shared resample)".into(),
            window_seconds: crate::layout::WINDOW_SAMPLES as f64 / SAMPLE_RATE_HZ,
            derived_leads: "III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2 \
                            when not recorded"
                .into(),
            filtering: "none".into(),
        }
    }
}

/// The network's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Width.
    pub d_model: usize,
    /// Encoder blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Knowledge layers.
    pub knowledge_depth: usize,
    /// `concat_mlp` or `add_sincos`.
    pub merging: String,
    /// `res_post` or `pre`.
    pub norm: String,
    /// Encoder over limb / chest / rhythm token groups.
    pub lead_split: bool,
    /// Trainable parameters.
    pub parameters: usize,
}

/// How the int8 graph was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    /// Scheme, in words.
    pub scheme: String,
    /// Where the calibration windows came from.
    pub calibration_source: String,
    /// Windows the activation ranges were measured on.
    pub calibration_windows: usize,
    /// Linear layers run as int8 products.
    pub int8_layers: usize,
}

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The stage-2 config, verbatim.
    pub config_yaml: String,
    /// The checkpoint folder exported.
    pub checkpoint: String,
    /// Data folder of the config.
    pub data_dir: String,
    /// Training split.
    pub train_csv: String,
    /// Validation split.
    pub val_csv: String,
    /// Split seed of the config.
    pub seed: u64,
    /// Training epochs completed.
    pub epochs: usize,
    /// Git commit of the code that exported (when known).
    pub commit: Option<String>,
    /// UTC time of the export (RFC 3339).
    pub created: String,
    /// The command that wrote the bundle.
    pub command: String,
    /// How to reproduce it, when a script does.
    pub reproduce: Option<String>,
    /// Version of the exporting program.
    pub exporter: String,
}

/// A member's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberDigest {
    /// Lower-case hex sha256 of the member's bytes.
    pub sha256: String,
    /// Uncompressed size.
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Identifies the model (name and digest prefix).
    pub model_id: String,
    /// Graph input.
    pub input: InputSpec,
    /// Graph outputs.
    pub outputs: OutputSpec,
    /// Classes in output order.
    pub labels: Vec<LabelInfo>,
    /// Validation metrics of both graphs.
    pub metrics: ValidationMetrics,
    /// Preprocessing.
    pub preprocessing: Preprocessing,
    /// Architecture.
    pub architecture: Architecture,
    /// int8 graph.
    pub quantization: Quantization,
    /// Provenance.
    pub provenance: Provenance,
    /// sha256 and size of `model.onnx` and `model.int8.onnx`.
    pub members: BTreeMap<String, MemberDigest>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a zip archive.
    #[error("{origin}: not a model bundle (not a readable zip archive: {detail})")]
    NotZip {
        /// The bundle.
        origin: String,
        /// What the zip reader said.
        detail: String,
    },
    /// A member is absent.
    #[error("{origin}: member '{member}' is missing")]
    MissingMember {
        /// The bundle.
        origin: String,
        /// The member.
        member: String,
    },
    /// A member could not be read (damaged compression, CRC error, too large).
    #[error("{origin}: member '{member}' is damaged: {detail}")]
    DamagedMember {
        /// The bundle.
        origin: String,
        /// The member.
        member: String,
        /// What went wrong.
        detail: String,
    },
    /// `manifest.json` is not a valid manifest.
    #[error("{origin}: manifest.json is invalid: {detail}")]
    Manifest {
        /// The bundle.
        origin: String,
        /// Which key and why.
        detail: String,
    },
    /// Written by a newer eknet.
    #[error(
        "{origin}: bundle format version {found} is newer than this build reads ({supported}); \
         update eknet"
    )]
    FutureFormat {
        /// The bundle.
        origin: String,
        /// The bundle's version.
        found: u64,
        /// This build's.
        supported: u32,
    },
    /// A format this build does not read.
    #[error(
        "{origin}: bundle format version {found} is not supported (this build reads {supported})"
    )]
    UnsupportedFormat {
        /// The bundle.
        origin: String,
        /// The bundle's version.
        found: u64,
        /// This build's.
        supported: u32,
    },
    /// A member's bytes do not match the manifest's digest.
    #[error(
        "{origin}: member '{member}' fails its checksum (manifest sha256 {expected}, actual {actual})"
    )]
    Checksum {
        /// The bundle.
        origin: String,
        /// The member.
        member: String,
        /// The manifest's digest.
        expected: String,
        /// The bytes' digest.
        actual: String,
    },
    /// The manifest contradicts itself or this build's input layout.
    #[error("{origin}: {detail}")]
    Inconsistent {
        /// The bundle.
        origin: String,
        /// What disagrees.
        detail: String,
    },
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An opened, verified bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Where it was read from.
    pub origin: String,
    /// The manifest.
    pub manifest: Manifest,
    /// `model.onnx`.
    pub f32_onnx: Vec<u8>,
    /// `model.int8.onnx`.
    pub int8_onnx: Vec<u8>,
}

impl Bundle {
    /// Opens and verifies a bundle file.
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Bundle::from_bytes(&bytes, &path.display().to_string())
    }

    /// Verifies a bundle held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Bundle, BundleError> {
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| BundleError::NotZip {
                origin: origin.into(),
                detail: e.to_string(),
            })?;
        let manifest_bytes = read_member(&mut zip, origin, MANIFEST)?;
        let manifest = parse_manifest(&manifest_bytes, origin)?;
        let f32_onnx = read_member(&mut zip, origin, MODEL_F32)?;
        let int8_onnx = read_member(&mut zip, origin, MODEL_INT8)?;
        for (member, data) in [(MODEL_F32, &f32_onnx), (MODEL_INT8, &int8_onnx)] {
            let Some(digest) = manifest.members.get(member) else {
                return Err(BundleError::Inconsistent {
                    origin: origin.into(),
                    detail: format!("the manifest lists no checksum for member '{member}'"),
                });
            };
            let actual = sha256_hex(data);
            if actual != digest.sha256 {
                return Err(BundleError::Checksum {
                    origin: origin.into(),
                    member: member.into(),
                    expected: digest.sha256.clone(),
                    actual,
                });
            }
            if digest.bytes != data.len() as u64 {
                return Err(BundleError::Inconsistent {
                    origin: origin.into(),
                    detail: format!(
                        "member '{member}' has {} bytes, the manifest says {}",
                        data.len(),
                        digest.bytes
                    ),
                });
            }
        }
        check_manifest(&manifest, origin)?;
        Ok(Bundle {
            origin: origin.into(),
            manifest,
            f32_onnx,
            int8_onnx,
        })
    }

    /// The graph of one precision.
    pub fn onnx(&self, precision: Precision) -> &[u8] {
        match precision {
            Precision::F32 => &self.f32_onnx,
            Precision::Int8 => &self.int8_onnx,
        }
    }
}

fn read_member<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    origin: &str,
    member: &str,
) -> Result<Vec<u8>, BundleError> {
    let damaged = |detail: String| BundleError::DamagedMember {
        origin: origin.into(),
        member: member.into(),
        detail,
    };
    let file = match zip.by_name(member) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(BundleError::MissingMember {
                origin: origin.into(),
                member: member.into(),
            });
        }
        Err(e) => return Err(damaged(e.to_string())),
    };
    if file.size() > MAX_MEMBER_BYTES {
        return Err(damaged(format!(
            "{} bytes uncompressed, more than the {} accepted",
            file.size(),
            MAX_MEMBER_BYTES
        )));
    }
    let mut out = Vec::with_capacity(file.size() as usize);
    // `take` bounds what a lying header can make us inflate.
    file.take(MAX_MEMBER_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| damaged(e.to_string()))?;
    Ok(out)
}

/// Parses a manifest, checking the format version before anything else so that a newer bundle is
/// named as such rather than as a list of unknown keys.
pub fn parse_manifest(bytes: &[u8], origin: &str) -> Result<Manifest, BundleError> {
    let bad = |detail: String| BundleError::Manifest {
        origin: origin.into(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
    let version = value
        .get("format_version")
        .ok_or_else(|| bad("no 'format_version' key".into()))?
        .as_u64()
        .ok_or_else(|| bad("'format_version' is not a whole number".into()))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(BundleError::FutureFormat {
            origin: origin.into(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version != u64::from(FORMAT_VERSION) {
        return Err(BundleError::UnsupportedFormat {
            origin: origin.into(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        bad(format!("at '{path}': {}", e.into_inner()))
    })
}

/// Checks a manifest against itself and against this build's layout.
pub fn check_manifest(m: &Manifest, origin: &str) -> Result<(), BundleError> {
    let bad = |detail: String| BundleError::Inconsistent {
        origin: origin.into(),
        detail,
    };
    let want = InputSpec::current();
    if m.input != want {
        return Err(bad(format!(
            "the model's input spec ({} Hz, {} slots x {} samples, {} {}, layout version {}, \
             input '{}') differs from this build's ({} Hz, {} x {}, {} {}, layout version {}, \
             input '{}')",
            m.input.sample_rate_hz,
            m.input.slots,
            m.input.samples_per_slot,
            m.input.dtype,
            m.input.units,
            m.input.layout_version,
            m.input.name,
            want.sample_rate_hz,
            want.slots,
            want.samples_per_slot,
            want.dtype,
            want.units,
            want.layout_version,
            want.name
        )));
    }
    if m.outputs != OutputSpec::current() {
        return Err(bad(format!(
            "the model's outputs ({:?}) differ from this build's ({:?})",
            m.outputs,
            OutputSpec::current()
        )));
    }
    if m.labels.is_empty() {
        return Err(bad("the manifest lists no label".into()));
    }
    for (what, n) in [
        ("f32 validation metrics", m.metrics.f32.per_class.len()),
        ("int8 validation metrics", m.metrics.int8.per_class.len()),
    ] {
        if n != m.labels.len() {
            return Err(bad(format!(
                "{} labels but {what} for {n} classes",
                m.labels.len()
            )));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, l) in m.labels.iter().enumerate() {
        if !seen.insert(l.code.as_str()) {
            return Err(bad(format!("label '{}' appears twice", l.code)));
        }
        for (p, t) in [("f32", l.threshold_f32), ("int8", l.threshold_int8)] {
            if !(0.0..=1.0).contains(&t) {
                return Err(bad(format!(
                    "label {i} ('{}'): {p} threshold {t} is outside [0, 1]",
                    l.code
                )));
            }
        }
        for p in [&m.metrics.f32, &m.metrics.int8] {
            if p.per_class[i].code != l.code {
                return Err(bad(format!(
                    "label {i} is '{}' but its metrics are for '{}'",
                    l.code, p.per_class[i].code
                )));
            }
        }
    }
    Ok(())
}

/// Writes a bundle: fills the manifest's member digests, then stores the manifest and both graphs.
/// The file is written beside `path` and renamed into place, so a reader never sees half a bundle.
pub fn write_bundle(
    path: &Path,
    manifest: &mut Manifest,
    f32_onnx: &[u8],
    int8_onnx: &[u8],
) -> Result<(), BundleError> {
    let origin = path.display().to_string();
    manifest.members.clear();
    for (member, data) in [(MODEL_F32, f32_onnx), (MODEL_INT8, int8_onnx)] {
        manifest.members.insert(
            member.into(),
            MemberDigest {
                sha256: sha256_hex(data),
                bytes: data.len() as u64,
            },
        );
    }
    check_manifest(manifest, &origin)?;
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| BundleError::Manifest {
        origin: origin.clone(),
        detail: e.to_string(),
    })?;
    let io = |source: std::io::Error| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let zerr = |e: zip::result::ZipError| io(std::io::Error::other(e.to_string()));
    let tmp = path.with_extension("eknet.partial");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    for (member, data) in [
        (MANIFEST, json.as_slice()),
        (MODEL_F32, f32_onnx),
        (MODEL_INT8, int8_onnx),
    ] {
        zip.start_file(member, opts).map_err(zerr)?;
        zip.write_all(data).map_err(io)?;
    }
    let writer = zip.finish().map_err(zerr)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Rewrites a bundle's members as given, without recomputing anything (for tests that build
/// damaged bundles, and for tools that repackage).
pub fn write_raw_members(path: &Path, members: &[(&str, &[u8])]) -> Result<(), BundleError> {
    let io = |source: std::io::Error| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let zerr = |e: zip::result::ZipError| io(std::io::Error::other(e.to_string()));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (member, data) in members {
        zip.start_file(*member, opts).map_err(zerr)?;
        zip.write_all(data).map_err(io)?;
    }
    zip.finish().map_err(zerr)?;
    Ok(())
}

/// Reads every member of a zip as raw bytes, unverified (the counterpart of
/// [`write_raw_members`]).
pub fn read_raw_members(path: &Path) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.as_slice())).map_err(|e| {
        BundleError::NotZip {
            origin: origin.clone(),
            detail: e.to_string(),
        }
    })?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let mut out = Vec::new();
    for name in names {
        let data = read_member(&mut zip, &origin, &name)?;
        out.push((name, data));
    }
    Ok(out)
}
