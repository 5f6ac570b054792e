//! HL7 FHIR R4 for ward systems: one stored result as a `Bundle` (type `collection` for
//! `GET /v1/results/{id}/fhir`, type `transaction` with conditional creates for the push), built
//! as plain JSON from the result, the model's facts and its manifest.
//!
//! # What a Bundle holds
//! - a `Device` for the model: model id, the bundle file's sha256, the graph's precision;
//! - the panel: an `Observation` coded LOINC 34534-8 (12 lead EKG panel) whose components carry
//!   heart rate (8867-4, `/min`), PR (8625-6), QRS duration (8633-0), QT (8634-8), QTc Bazett
//!   (8636-3) in `ms` and the P, QRS and T axes (8626-4, 8632-2, 8638-9) in `deg` (UCUM), each
//!   with a `dataAbsentReason` and the measurement engine's reason where it has no value;
//! - one `Observation` per model finding (a class at or above its threshold), coded with the
//!   SNOMED CT codes the manifest carries for it and the PTB-XL SCP statement code
//!   ([`SCP_SYSTEM`]), the score and threshold as components, interpretation `POS`, and
//!   `derivedFrom` the panel;
//! - one `Observation` per measurement statement (sinus brady-/tachycardia, first-degree AV
//!   block, wide QRS, long QTc, axis deviations, irregular R-R), coded SNOMED CT where one fits
//!   and always with eknet's statement code ([`STATEMENT_SYSTEM`]), the numbers it rests on as
//!   components, `derivedFrom` the panel;
//! - when the model abstained: an `Observation` coded LOINC 18844-1 (EKG impression) with
//!   `dataAbsentReason` `not-performed` and the reasons as its text.
//!
//! Every resource has `effectivePeriod` = the window's start and end, `device` = the model, and a
//! `subject` only when a patient reference is configured (the daemon knows no patient by default).
//! Identifiers are `urn:eknet:result|{source}/{id}` (the panel), with `/finding/CODE`,
//! `/statement/CODE` or `/impression` appended for the others: what conditional creates match on.

use crate::engine::ModelInfo;
use crate::result::{Outcome, WindowResult};
use eknet_shared::bundle::{Manifest, sha256_hex};
use eknet_shared::measure::{Measurements, Quantity, StatementCode, Unmeasurable};
use serde_json::{Value, json};

/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// PTB-XL's SCP-ECG statement codes (the model's classes).
pub const SCP_SYSTEM: &str = "urn:eknet:ptbxl-scp";
/// eknet's measurement statement codes (`sinus_bradycardia`, ...).
pub const STATEMENT_SYSTEM: &str = "urn:eknet:measurement-statement";
/// Identifier system of results.
pub const RESULT_SYSTEM: &str = "urn:eknet:result";
/// Identifier system of models.
pub const MODEL_SYSTEM: &str = "urn:eknet:model";

/// Why a result has no FHIR form.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// Device events (disconnects, gaps) are not ECG windows.
    #[error("result {0} is a device event, not an ECG window: it has no FHIR form")]
    NotAWindow(u64),
}

/// Who emits the results and about whom.
#[derive(Debug, Clone)]
pub struct FhirContext<'a> {
    /// The emitting daemon's id (identifiers are built from it and the result id).
    pub source_id: &'a str,
    /// `Patient/...` reference, when configured.
    pub patient: Option<&'a str>,
    /// The model.
    pub model: &'a ModelInfo,
    /// Its manifest (class descriptions and SNOMED CT codes).
    pub manifest: &'a Manifest,
}

/// The panel's components: LOINC code, display, the quantity, UCUM unit.
const PANEL: [(&str, &str, Quantity, &str); 8] = [
    ("8867-4", "Heart rate", Quantity::HrBpm, "/min"),
    ("8625-6", "P-R Interval", Quantity::PrMs, "ms"),
    ("8633-0", "QRS duration", Quantity::QrsMs, "ms"),
    ("8634-8", "Q-T interval", Quantity::QtMs, "ms"),
    (
        "8636-3",
        "Q-T interval corrected (Bazett)",
        Quantity::QtcBazettMs,
        "ms",
    ),
    ("8626-4", "P wave axis", Quantity::PAxisDeg, "deg"),
    ("8632-2", "QRS axis", Quantity::QrsAxisDeg, "deg"),
    ("8638-9", "T wave axis", Quantity::TAxisDeg, "deg"),
];

fn value_of(m: &Measurements, q: Quantity) -> Option<f64> {
    match q {
        Quantity::HrBpm => m.hr_bpm,
        Quantity::PrMs => m.pr_ms,
        Quantity::QrsMs => m.qrs_ms,
        Quantity::QtMs => m.qt_ms,
        Quantity::QtcBazettMs => m.qtc_bazett_ms,
        Quantity::PAxisDeg => m.p_axis_deg,
        Quantity::QrsAxisDeg => m.qrs_axis_deg,
        Quantity::TAxisDeg => m.t_axis_deg,
        Quantity::RrMeanMs => m.rr_mean_ms,
        Quantity::RrSdMs => m.rr_sd_ms,
        Quantity::PMs => m.p_ms,
        Quantity::QtcFridericiaMs => m.qtc_fridericia_ms,
        Quantity::QtcFraminghamMs => m.qtc_framingham_ms,
        Quantity::QtcHodgesMs => m.qtc_hodges_ms,
        Quantity::RrIrregularity => m.rr_irregularity,
    }
}

/// The UCUM unit of a quantity.
fn unit_of(q: Quantity) -> &'static str {
    match q {
        Quantity::HrBpm => "/min",
        Quantity::PAxisDeg | Quantity::QrsAxisDeg | Quantity::TAxisDeg => "deg",
        Quantity::RrIrregularity => "1",
        _ => "ms",
    }
}

/// A readable reason from the engine's typed one, e.g. `no p waves` or
/// `lead failed: lead II, problem flat`.
pub fn reason_text(u: &Unmeasurable) -> String {
    let v = serde_json::to_value(u).unwrap_or(Value::Null);
    let Some(obj) = v.as_object() else {
        return "not measured".into();
    };
    let tag = obj
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("not measured")
        .replace('_', " ");
    let rest: Vec<String> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "reason")
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{} {}", k.replace('_', " "), v.replace('_', " "))
        })
        .collect();
    if rest.is_empty() {
        tag
    } else {
        format!("{tag}: {}", rest.join(", "))
    }
}

/// SNOMED CT concept and display for a measurement statement, where one fits (the codes are the
/// ones `eknet_shared::labels::snomed` maps).
fn statement_snomed(code: StatementCode) -> Option<(&'static str, &'static str)> {
    match code {
        StatementCode::SinusBradycardia => Some(("426177001", "Sinus bradycardia")),
        StatementCode::SinusTachycardia => Some(("427084000", "Sinus tachycardia")),
        StatementCode::FirstDegreeAvBlock => {
            Some(("270492004", "First degree atrioventricular block"))
        }
        StatementCode::LongQtc => Some(("111975006", "Prolonged QT interval")),
        StatementCode::LeftAxisDeviation => Some(("39732003", "Left axis deviation")),
        StatementCode::RightAxisDeviation => Some(("47665007", "Right axis deviation")),
        StatementCode::WideQrs
        | StatementCode::ExtremeAxisDeviation
        | StatementCode::IrregularRr => None,
    }
}

fn snake(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// A UUID (RFC 9562 version 8: custom, here the first 122 bits of a sha256) for a name: the same
/// name gives the same UUID, so a Bundle is the same every time it is built.
pub fn uuid_for(name: &str) -> String {
    let h = sha256_hex(name.as_bytes());
    let mut c: Vec<char> = h.chars().take(32).collect();
    c[12] = '8';
    let variant = c[16].to_digit(16).unwrap_or(0) & 0x3 | 0x8;
    c[16] = char::from_digit(variant, 16).unwrap_or('8');
    let s: String = c.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// The identifier value of a result's panel.
pub fn result_key(source_id: &str, id: u64) -> String {
    format!("{source_id}/{id}")
}

fn quantity(value: f64, unit: &str) -> Value {
    // Two decimals at most: ms and degrees need no more, and the JSON stays short.
    let v = (value * 100.0).round() / 100.0;
    json!({ "value": v, "unit": unit, "system": UCUM, "code": unit })
}

fn absent(text: &str) -> Value {
    json!({
        "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "not-performed",
            "display": "Not Performed",
        }],
        "text": text,
    })
}

fn interpretation_pos() -> Value {
    json!([{
        "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": "POS",
            "display": "Positive",
        }]
    }])
}

struct Entry {
    full_url: String,
    resource: Value,
    /// Resource type and the identifier a conditional create matches on.
    kind: &'static str,
    identifier: (String, String),
}

/// The resources of a result, in order: device, panel, findings, statements, impression.
fn entries(r: &WindowResult, ctx: &FhirContext<'_>) -> Result<Vec<Entry>, FhirError> {
    if r.quality.is_empty() {
        return Err(FhirError::NotAWindow(r.id));
    }
    let key = result_key(ctx.source_id, r.id);
    let model = ctx.model;
    let device_url = format!(
        "urn:uuid:{}",
        uuid_for(&format!("model:{}", model.bundle_sha256))
    );
    let panel_url = format!("urn:uuid:{}", uuid_for(&format!("result:{key}")));
    let period = json!({ "start": r.window.start_time, "end": r.window.end_time });
    let subject = ctx.patient.map(|p| json!({ "reference": p }));
    let mut out = Vec::new();

    out.push(Entry {
        full_url: device_url.clone(),
        resource: json!({
            "resourceType": "Device",
            "identifier": [{ "system": MODEL_SYSTEM, "value": model.bundle_sha256 }],
            "status": "active",
            "deviceName": [{ "name": format!("eknet {}", model.model_id), "type": "model-name" }],
            "type": { "text": "ECG interpretation software (eknet), a demonstration model" },
            "version": [
                { "type": { "text": "model id" }, "value": model.model_id },
                { "type": { "text": "bundle sha256" }, "value": model.bundle_sha256 },
                { "type": { "text": "precision" }, "value": model.precision.to_string() },
            ],
        }),
        kind: "Device",
        identifier: (MODEL_SYSTEM.into(), model.bundle_sha256.clone()),
    });

    let m = r.measurements.as_deref();
    let components: Vec<Value> = PANEL
        .iter()
        .map(|(code, display, q, unit)| {
            let mut c = json!({
                "code": { "coding": [{ "system": LOINC, "code": code, "display": display }] }
            });
            let value = match (m, q) {
                (Some(m), q) => value_of(m, *q),
                (None, Quantity::HrBpm) => r.heart_rate_bpm,
                _ => None,
            };
            match value {
                Some(v) => c["valueQuantity"] = quantity(v, unit),
                None => {
                    let why = m
                        .and_then(|m| m.unmeasured.iter().find(|u| u.quantity == *q))
                        .map(|u| reason_text(&u.reason))
                        .unwrap_or_else(|| "not measured on this window".into());
                    c["dataAbsentReason"] = absent(&why);
                }
            }
            c
        })
        .collect();
    let mut panel = json!({
        "resourceType": "Observation",
        "identifier": [{ "system": RESULT_SYSTEM, "value": key }],
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "procedure", "display": "Procedure" }] }],
        "code": { "coding": [{ "system": LOINC, "code": "34534-8", "display": "12 lead EKG panel" }],
                  "text": "12-lead ECG, 10 s window" },
        "effectivePeriod": period,
        "issued": r.window.end_time,
        "device": { "reference": device_url },
        "component": components,
    });
    if let Some(s) = &subject {
        panel["subject"] = s.clone();
    }
    out.push(Entry {
        full_url: panel_url.clone(),
        resource: panel,
        kind: "Observation",
        identifier: (RESULT_SYSTEM.into(), key.clone()),
    });

    let derived = json!([{ "reference": panel_url }]);
    let base = |ident: &str, code: Value| {
        let mut o = json!({
            "resourceType": "Observation",
            "identifier": [{ "system": RESULT_SYSTEM, "value": ident }],
            "status": "final",
            "code": code,
            "effectivePeriod": period,
            "issued": r.window.end_time,
            "device": { "reference": device_url },
            "derivedFrom": derived,
        });
        if let Some(s) = &subject {
            o["subject"] = s.clone();
        }
        o
    };

    if let Some(c) = &r.classification {
        for f in &c.findings {
            let label = ctx.manifest.labels.iter().find(|l| l.code == f.code);
            let text = f
                .description
                .clone()
                .or_else(|| label.and_then(|l| l.description.clone()))
                .unwrap_or_else(|| f.code.clone());
            let mut coding: Vec<Value> = label
                .map(|l| {
                    l.snomed
                        .iter()
                        .map(|s| json!({ "system": SNOMED, "code": s, "display": text }))
                        .collect()
                })
                .unwrap_or_default();
            coding.push(json!({ "system": SCP_SYSTEM, "code": f.code, "display": text }));
            let ident = format!("{key}/finding/{}", f.code);
            let mut o = base(&ident, json!({ "coding": coding, "text": text }));
            o["interpretation"] = interpretation_pos();
            o["component"] = json!([
                { "code": { "text": "model score" }, "valueQuantity": quantity(f64::from(f.score), "1") },
                { "code": { "text": "decision threshold" }, "valueQuantity": quantity(f64::from(f.threshold), "1") },
            ]);
            o["note"] = json!([{ "text": format!(
                "Model finding (eknet {}, {}): score {:.3} >= threshold {:.3}; attention on {} {} s-{} s.",
                c.model_id, c.precision, f.score, f.threshold, f.attention.lead,
                f.attention.from_s, f.attention.to_s) }]);
            out.push(Entry {
                full_url: format!("urn:uuid:{}", uuid_for(&format!("result:{ident}"))),
                resource: o,
                kind: "Observation",
                identifier: (RESULT_SYSTEM.into(), ident),
            });
        }
    }

    if let Some(m) = m {
        for s in &m.statements {
            let code = snake(&s.code);
            let mut coding = Vec::new();
            if let Some((sct, display)) = statement_snomed(s.code) {
                coding.push(json!({ "system": SNOMED, "code": sct, "display": display }));
            }
            coding.push(json!({ "system": STATEMENT_SYSTEM, "code": code }));
            let ident = format!("{key}/statement/{code}");
            let mut o = base(&ident, json!({ "coding": coding, "text": s.text }));
            o["interpretation"] = interpretation_pos();
            o["component"] = Value::Array(
                s.basis
                    .iter()
                    .flat_map(|b| {
                        let unit = unit_of(b.quantity);
                        let name = snake(&b.quantity);
                        [
                            json!({ "code": { "text": name }, "valueQuantity": quantity(b.value, unit) }),
                            json!({ "code": { "text": format!("{name} threshold") },
                                    "valueQuantity": quantity(b.threshold, unit) }),
                        ]
                    })
                    .collect(),
            );
            o["note"] = json!([{ "text": "Measurement statement (eknet's rule on the measured values), not a model finding." }]);
            out.push(Entry {
                full_url: format!("urn:uuid:{}", uuid_for(&format!("result:{ident}"))),
                resource: o,
                kind: "Observation",
                identifier: (RESULT_SYSTEM.into(), ident),
            });
        }
    }

    if r.outcome == Outcome::Abstained {
        let ident = format!("{key}/impression");
        let mut o = base(
            &ident,
            json!({ "coding": [{ "system": LOINC, "code": "18844-1", "display": "EKG impression" }] }),
        );
        let why = if r.reasons.is_empty() {
            "the model abstained".to_string()
        } else {
            format!("the model abstained: {}", r.reasons.join("; "))
        };
        o["dataAbsentReason"] = absent(&why);
        out.push(Entry {
            full_url: format!("urn:uuid:{}", uuid_for(&format!("result:{ident}"))),
            resource: o,
            kind: "Observation",
            identifier: (RESULT_SYSTEM.into(), ident),
        });
    }
    Ok(out)
}

/// The result as a `collection` Bundle (what `GET /v1/results/{id}/fhir` serves).
pub fn collection(r: &WindowResult, ctx: &FhirContext<'_>) -> Result<Value, FhirError> {
    let entries = entries(r, ctx)?;
    Ok(json!({
        "resourceType": "Bundle",
        "identifier": { "system": RESULT_SYSTEM, "value": result_key(ctx.source_id, r.id) },
        "type": "collection",
        "timestamp": r.window.end_time,
        "entry": entries.into_iter().map(|e| json!({ "fullUrl": e.full_url, "resource": e.resource })).collect::<Vec<_>>(),
    }))
}

/// The result as a `transaction` Bundle for the push: every entry a conditional create
/// (`ifNoneExist` on its identifier), so a resend after a lost answer creates nothing twice.
pub fn transaction(r: &WindowResult, ctx: &FhirContext<'_>) -> Result<Value, FhirError> {
    let entries = entries(r, ctx)?;
    Ok(json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": r.window.end_time,
        "entry": entries.into_iter().map(|e| json!({
            "fullUrl": e.full_url,
            "resource": e.resource,
            "request": {
                "method": "POST",
                "url": e.kind,
                "ifNoneExist": format!("identifier={}|{}", e.identifier.0, e.identifier.1),
            },
        })).collect::<Vec<_>>(),
    }))
}
