//! `eknet-daemon`: the bedside daemon. A serial ECG device is read ([`acquire`]) through the
//! [`protocol`] decoders (eknet frame v1, OpenBCI Cyton); 10 s windows are cut every hop, never
//! across a gap ([`windows`]); per-lead quality and heart rate are judged ([`quality`]); the
//! bundle's quantised model runs on its own thread ([`engine`]); every result ([`result`]) is
//! stored durably ([`store`]) and served over a local HTTP API ([`api`], [`openapi`]) with a live
//! bedside page and signal stream ([`signal`]) and HL7 FHIR R4 results ([`fhir`], pushed by
//! [`fhir_push`]). [`config`] reads `configs/daemon.yaml`; [`app`] wires it all together.

#![recursion_limit = "512"] // the OpenAPI document is one json! literal

pub mod acquire;
pub mod api;
pub mod app;
pub mod config;
pub mod demo;
pub mod engine;
pub mod fhir;
pub mod fhir_push;
pub mod openapi;
pub mod protocol;
pub mod quality;
pub mod result;
pub mod signal;
pub mod sim;
pub mod store;
pub mod windows;
