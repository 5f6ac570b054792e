//! The `eknet-train` command line: argument definitions (clap) and dispatch to each command.

use crate::inspect::{Inspection, inspect};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use eknet_shared::{ecgzip, io};
use std::path::PathBuf;

/// EKnet trainer: inspect and convert ECG records (training, evaluation and export follow).
#[derive(Debug, Parser)]
#[command(name = "eknet-train", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `eknet-train` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a record: leads, rate, duration, metadata, source labels, their harmonised PTB-XL
    /// SCP codes and any label that did not map.
    Inspect {
        /// A WFDB record path without extension (e.g. ../shared/data/ludb/data/1) or an
        /// `.ecgzip` file.
        record: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Folder with `ptbxl/scp_statements.csv` and the CinC mapping files (default:
        /// $EKNET_DATA_DIR, else ../shared/data found upward from the current folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a record's 12 leads, at its own rate, in millivolts, as a seed `.ecgzip`
    /// (III, aVR, aVL, aVF derived from I and II where the record lacks them).
    Convert {
        /// A WFDB record path without extension, or an `.ecgzip` file.
        record: PathBuf,
        /// The `.ecgzip` file to write.
        out: PathBuf,
    },
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect {
            record,
            json,
            data_dir,
        } => {
            let report = inspect(&record, data_dir.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", Inspection::to_text(&report));
            }
            Ok(())
        }
        Command::Convert { record, out } => {
            let r = io::read_any(&record)
                .with_context(|| format!("reading {}", record.display()))?
                .with_derived_limb_leads()
                .with_context(|| format!("completing the 12 leads of {}", record.display()))?;
            r.require_all_leads()
                .with_context(|| format!("{} cannot give 12 leads", record.display()))?;
            ecgzip::write(&r, &out).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {}: 12 leads, {} samples at {} Hz ({:.2} s)",
                out.display(),
                r.len_samples(),
                r.sample_rate_hz(),
                r.duration_s()
            );
            Ok(())
        }
    }
}
