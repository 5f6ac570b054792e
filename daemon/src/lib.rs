//! `eknet-daemon`: the bedside daemon, being built. Present: [`protocol`], the serial decoders
//! (eknet frame v1 and OpenBCI Cyton); [`windows`], 10 s windows every hop, never across a gap;
//! [`quality`], heart rate and per-lead quality verdicts. To come with the daemon issue: serial
//! reader, simulator, inference and the HTTP API. Both binaries exist so the workspace's shape is final; each says
//! plainly that it is not implemented yet.

pub mod protocol;
pub mod quality;
pub mod windows;

/// The message both binaries print until the daemon is implemented.
pub const NOT_YET: &str = "not implemented yet: the bedside daemon arrives with the daemon issue \
(serial decoders, windows, inference, HTTP API); this build only carries the shared ECG core";

/// The model input's slot count, re-exported to show the daemon builds on the shared layout.
pub const SLOTS: usize = eknet_shared::layout::SLOT_COUNT;
