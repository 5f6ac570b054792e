//! The daemon's configuration: `configs/daemon.yaml` read into typed sections (unknown keys
//! refused, errors naming the dotted key), every value overridable from the command line.

use eknet_shared::Lead;
use eknet_shared::bundle::Precision;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Which framing the serial device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// eknet frame v1 (`daemon/PROTOCOL.md`).
    Eknet,
    /// OpenBCI Cyton, 8 channels at 250 Hz.
    Cyton,
}

/// Which graph the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// Time both graphs at start-up on this CPU and run the faster (int8 is not faster
    /// everywhere: on x86 without VNNI, tract's int8 kernels trail its f32 ones; see BENCHMARKS.md).
    Auto,
    /// The f32 graph.
    F32,
    /// The int8 graph.
    Int8,
}

impl PrecisionChoice {
    /// The graph, when one is named.
    pub fn fixed(self) -> Option<Precision> {
        match self {
            PrecisionChoice::Auto => None,
            PrecisionChoice::F32 => Some(Precision::F32),
            PrecisionChoice::Int8 => Some(Precision::Int8),
        }
    }
}

impl From<Precision> for PrecisionChoice {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F32 => PrecisionChoice::F32,
            Precision::Int8 => PrecisionChoice::Int8,
        }
    }
}

/// `serial`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SerialSection {
    /// Device path (a tty, a pty, or a symlink to one).
    pub path: Option<PathBuf>,
    /// Baud rate (ignored by USB-CDC devices).
    pub baud: u32,
    /// Framing.
    pub protocol: Protocol,
    /// Milliseconds without a byte before the device is declared silent (and reopened).
    pub watchdog_ms: u64,
    /// Cyton: the lead each of the 8 channels carries.
    pub cyton_channels: Vec<String>,
    /// Cyton: the programmable gain (scale = 4.5 V / gain / (2^23 - 1)).
    pub cyton_gain: f64,
}

impl Default for SerialSection {
    fn default() -> Self {
        SerialSection {
            path: None,
            baud: 230_400,
            protocol: Protocol::Eknet,
            watchdog_ms: 2000,
            cyton_channels: ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
                .map(String::from)
                .to_vec(),
            cyton_gain: 24.0,
        }
    }
}

/// `model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// The bundle (`*.eknet`).
    pub bundle: Option<PathBuf>,
    /// `auto` (default: the faster graph on this CPU, timed at start-up), `int8` or `f32`.
    pub precision: PrecisionChoice,
    /// Threads for tract's matrix products.
    pub threads: usize,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            bundle: None,
            precision: PrecisionChoice::Auto,
            threads: 1,
        }
    }
}

/// `windows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsSection {
    /// Seconds between window starts.
    pub hop_s: f64,
}

impl Default for WindowsSection {
    fn default() -> Self {
        WindowsSection { hop_s: 2.5 }
    }
}

/// `api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token every request except `/healthz` must carry (none: open).
    pub token: Option<String>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Results a client may fall behind on the event stream before it is told it lagged.
    pub stream_buffer: usize,
    /// Serve a non-loopback address without a token. Off by default: results about patients
    /// must not be readable by anyone on the ward network unless someone decided so.
    pub allow_open_network: bool,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8780)),
            token: None,
            body_limit: 4 << 20,
            stream_buffer: 256,
            allow_open_network: false,
        }
    }
}

/// `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    /// The results file (JSON lines, fsynced per result).
    pub path: PathBuf,
    /// Results kept (older ones are dropped when the file is compacted).
    pub retention: usize,
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            path: PathBuf::from("eknet-history.jsonl"),
            retention: 100_000,
        }
    }
}

/// `fhir`: HL7 FHIR R4 push (results are always available to pull at
/// `GET /v1/results/{id}/fhir`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirSection {
    /// The FHIR server's base URL (`http://` or `https://`); each result is POSTed there as a
    /// transaction Bundle. None: no push.
    pub endpoint: Option<String>,
    /// Bearer token for the FHIR server.
    pub token: Option<String>,
    /// This daemon's id in result identifiers (`urn:eknet:result|ID/RESULT`): unique per bedside
    /// device on the ward. Default: the host name.
    pub source_id: Option<String>,
    /// A `Patient/...` reference to set as every result's subject (none by default: the
    /// daemon knows no patient).
    pub patient: Option<String>,
    /// Where the push keeps the id of the last result the server accepted (default: beside the
    /// history, `HISTORY.fhir-cursor`).
    pub cursor_path: Option<PathBuf>,
    /// Seconds a request may take.
    pub timeout_s: f64,
    /// Seconds before the first retry of a refused or failed push (doubling on each failure).
    pub retry_initial_s: f64,
    /// Longest wait between retries, seconds.
    pub retry_max_s: f64,
}

impl Default for FhirSection {
    fn default() -> Self {
        FhirSection {
            endpoint: None,
            token: None,
            source_id: None,
            patient: None,
            cursor_path: None,
            timeout_s: 10.0,
            retry_initial_s: 1.0,
            retry_max_s: 60.0,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Serial device.
    pub serial: SerialSection,
    /// Model bundle.
    pub model: ModelSection,
    /// Windows.
    pub windows: WindowsSection,
    /// HTTP API.
    pub api: ApiSection,
    /// Result history.
    pub history: HistorySection,
    /// FHIR push.
    pub fhir: FhirSection,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key or value is wrong.
    #[error("{path}: at '{key}': {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

impl DaemonConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let de = serde_yaml_ng::Deserializer::from_str(&text);
        let cfg: DaemonConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                key: e.path().to_string(),
                detail: e.inner().to_string(),
            })?;
        cfg.validate()
            .map_err(|(key, detail)| ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                detail,
            })?;
        Ok(cfg)
    }

    /// Checks values serde cannot: returns the dotted key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(self.windows.hop_s > 0.0 && self.windows.hop_s <= 10.0) {
            return Err((
                "windows.hop_s".into(),
                format!("{} s: must be in (0, 10]", self.windows.hop_s),
            ));
        }
        if self.serial.watchdog_ms < 100 {
            return Err((
                "serial.watchdog_ms".into(),
                format!("{} ms is below 100 ms", self.serial.watchdog_ms),
            ));
        }
        if self.model.threads == 0 {
            return Err(("model.threads".into(), "must be at least 1".into()));
        }
        if self.api.body_limit < 1024 {
            return Err((
                "api.body_limit".into(),
                "must be at least 1024 bytes".into(),
            ));
        }
        if let Some(e) = &self.fhir.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err((
                "fhir.endpoint".into(),
                format!("'{e}' must be an http:// or https:// URL (the FHIR server's base)"),
            ));
        }
        if let Some(p) = &self.fhir.patient
            && !p.starts_with("Patient/")
        {
            return Err((
                "fhir.patient".into(),
                format!("'{p}' must be a reference like Patient/123"),
            ));
        }
        for (key, v) in [
            ("fhir.timeout_s", self.fhir.timeout_s),
            ("fhir.retry_initial_s", self.fhir.retry_initial_s),
            ("fhir.retry_max_s", self.fhir.retry_max_s),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err((key.into(), format!("{v}: must be seconds in (0, 86400]")));
            }
        }
        if self.fhir.retry_max_s < self.fhir.retry_initial_s {
            return Err((
                "fhir.retry_max_s".into(),
                "must be at least fhir.retry_initial_s".into(),
            ));
        }
        if self.history.retention == 0 {
            return Err(("history.retention".into(), "must be at least 1".into()));
        }
        if !self.api.listen.ip().is_loopback()
            && self.api.token.is_none()
            && !self.api.allow_open_network
        {
            return Err((
                "api.listen".into(),
                format!(
                    "{} is reachable from other machines but no api.token is set: set a token \
                     (--token-file), or api.allow_open_network: true (--allow-open-network) to \
                     serve results to anyone who can reach it",
                    self.api.listen
                ),
            ));
        }
        self.cyton_map()
            .map_err(|e| ("serial.cyton_channels".into(), e))?;
        if self.serial.cyton_gain.is_nan() || self.serial.cyton_gain <= 0.0 {
            return Err(("serial.cyton_gain".into(), "must be positive".into()));
        }
        Ok(())
    }

    /// The Cyton channel-to-lead map: eight distinct leads among I, II, V1..V6.
    pub fn cyton_map(&self) -> Result<[Lead; 8], String> {
        let c = &self.serial.cyton_channels;
        if c.len() != 8 {
            return Err(format!("{} channels listed, the Cyton has 8", c.len()));
        }
        let mut out = [Lead::I; 8];
        for (i, name) in c.iter().enumerate() {
            let lead = Lead::parse(name).ok_or_else(|| format!("'{name}' is not a lead"))?;
            if matches!(lead, Lead::III | Lead::AVR | Lead::AVL | Lead::AVF) {
                return Err(format!(
                    "'{name}': the Cyton channels carry I, II and V1..V6; III, aVR, aVL and aVF are derived"
                ));
            }
            if out[..i].contains(&lead) {
                return Err(format!("lead '{name}' is mapped twice"));
            }
            out[i] = lead;
        }
        Ok(out)
    }

    /// Hop in samples at 500 Hz.
    pub fn hop_samples(&self) -> usize {
        (self.windows.hop_s * 500.0).round().max(1.0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_address_without_a_token_is_refused_unless_allowed() {
        let mut cfg = DaemonConfig::default();
        assert!(cfg.validate().is_ok(), "loopback, no token: fine");
        cfg.api.listen = "0.0.0.0:8780".parse().unwrap();
        let (key, why) = cfg.validate().unwrap_err();
        assert_eq!(key, "api.listen");
        assert!(why.contains("no api.token is set"), "{why}");
        cfg.api.token = Some("s3cret".into());
        assert!(cfg.validate().is_ok());
        cfg.api.token = None;
        cfg.api.allow_open_network = true;
        assert!(cfg.validate().is_ok());
        cfg.api.allow_open_network = false;
        cfg.api.listen = "[::1]:8780".parse().unwrap();
        assert!(cfg.validate().is_ok(), "IPv6 loopback");
    }

    #[test]
    fn the_shipped_config_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/daemon.yaml");
        let cfg = DaemonConfig::load(&p).unwrap();
        assert!(!cfg.api.allow_open_network);
    }
}
