//! The OpenAPI 3.1 description served at `/openapi.json`.

use serde_json::{Value, json};

fn err(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The API's description.
pub fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "eknetd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "EKnet bedside daemon: live 12-lead ECG classified every 2.5 s over 10 s windows. Demonstration model; not for clinical decisions."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "SignalFrame": { "type": "object", "properties": {
                    "seq": { "type": "integer", "description": "sequence number of the first frame in this event (frames are 25 samples, 50 ms)" },
                    "seq_last": { "type": "integer" },
                    "start_index": { "type": "integer", "description": "stream index of the first sample, as results' window.start_index" },
                    "device_start_index": { "type": ["integer", "null"] },
                    "rate_hz": { "type": "integer" }, "uv_per_unit": { "type": "integer", "description": "microvolts per unit of leads (1)" },
                    "lead_off": { "type": "integer", "description": "electrode bits (0 RA, 1 LA, 2 LL, 3..8 V1..V6) off in the frame" },
                    "gap_before": { "type": "boolean", "description": "the signal broke before this frame" },
                    "lead_names": { "type": "array", "items": { "type": "string" } },
                    "leads": { "type": "array", "items": { "type": "array", "items": { "type": "integer" } } } } },
                "Error": { "type": "object", "required": ["error", "status"],
                    "properties": { "error": { "type": "string" }, "status": { "type": "integer" } } },
                "Result": { "type": "object",
                    "required": ["id", "source", "outcome", "reasons", "window", "quality"],
                    "properties": {
                        "id": { "type": "integer", "description": "sequence number; the event id on /v1/stream (0 for uploads)" },
                        "source": { "enum": ["live", "upload"] },
                        "outcome": { "enum": ["classified", "abstained"] },
                        "reasons": { "type": "array", "items": { "type": "string" }, "description": "why the model did not run (lead off, noise, gap, silence)" },
                        "window": { "type": "object", "properties": {
                            "start_index": { "type": ["integer", "null"] }, "end_index": { "type": ["integer", "null"] },
                            "device_start_index": { "type": ["integer", "null"], "description": "the device's own index of the first sample (eknet frame devices; null for Cyton boards, uploads and events)" },
                            "start_time": { "type": "string" }, "end_time": { "type": "string" } } },
                        "heart_rate_bpm": { "type": ["number", "null"] },
                        "quality": { "type": "array", "items": { "type": "object", "properties": {
                            "lead": { "type": "string" }, "ok": { "type": "boolean" }, "reason": { "type": ["string", "null"] } } } },
                        "classification": { "type": ["object", "null"], "properties": {
                            "model_id": { "type": "string" }, "precision": { "enum": ["f32", "int8"] },
                            "inference_ms": { "type": "number" },
                            "scores": { "type": "array", "items": { "type": "object", "properties": {
                                "code": { "type": "string" }, "score": { "type": "number" },
                                "threshold": { "type": "number" }, "positive": { "type": "boolean" } } } },
                            "findings": { "type": "array", "items": { "type": "object", "properties": {
                                "code": { "type": "string" }, "description": { "type": ["string", "null"] },
                                "score": { "type": "number" }, "threshold": { "type": "number" },
                                "attention": { "type": "object", "properties": {
                                    "lead": { "type": "string" }, "slot": { "type": "string" },
                                    "from_s": { "type": "number" }, "to_s": { "type": "number" },
                                    "share": { "type": "number" } } } } } } } },
                        "pipeline_ms": { "type": ["number", "null"] },
                        "measurements": { "$ref": "#/components/schemas/Measurements" }
                    } },
                "Measurements": { "type": ["object", "null"],
                    "description": "Measured on the window's twelve leads by the shared delineator, as a 12-lead cart prints them: kept apart from the model's findings. Each value is null where it cannot be measured, and 'unmeasured' says why. Absent for device events. Calibration: durations follow LUDB's global reference (earliest onset and latest offset over twelve leads marked one by one), which runs longer than one consensus mark (on 60 public ECGs labelled sinus rhythm only, QRS median 112 ms); read a wide-QRS or long-QTc statement near its threshold as a prompt to read the ECG.",
                    "properties": {
                        "hr_bpm": { "type": ["number", "null"], "description": "heart rate from the mean R-R, beats per minute" },
                        "rr_mean_ms": { "type": ["number", "null"] }, "rr_sd_ms": { "type": ["number", "null"] },
                        "rr_irregularity": { "type": ["number", "null"], "description": "RMS of successive R-R differences over the mean R-R" },
                        "p_ms": { "type": ["number", "null"], "description": "P duration, median over beats (ms)" },
                        "pr_ms": { "type": ["number", "null"] }, "qrs_ms": { "type": ["number", "null"] }, "qt_ms": { "type": ["number", "null"] },
                        "qtc_bazett_ms": { "type": ["number", "null"] }, "qtc_fridericia_ms": { "type": ["number", "null"] },
                        "qtc_framingham_ms": { "type": ["number", "null"] }, "qtc_hodges_ms": { "type": ["number", "null"] },
                        "p_axis_deg": { "type": ["number", "null"], "description": "frontal axis from I and aVF, degrees, -180 to 180" },
                        "qrs_axis_deg": { "type": ["number", "null"] }, "t_axis_deg": { "type": ["number", "null"] },
                        "statements": { "type": "array", "description": "measurement statements by fixed rules (sinus brady/tachycardia, first-degree AV block, wide QRS, long QTc, axis deviation, irregular R-R), each with the numbers and thresholds it rests on",
                            "items": { "type": "object", "properties": {
                                "code": { "type": "string" }, "text": { "type": "string" },
                                "basis": { "type": "array", "items": { "type": "object", "properties": {
                                    "quantity": { "type": "string" }, "value": { "type": "number" }, "threshold": { "type": "number" } } } } } } },
                        "beats": { "type": "array", "description": "per beat, sample indices in the window (500 Hz)",
                            "items": { "type": "object", "properties": {
                                "r": { "type": "integer" }, "p_on": { "type": ["integer", "null"] }, "p_off": { "type": ["integer", "null"] },
                                "qrs_on": { "type": ["integer", "null"] }, "qrs_off": { "type": ["integer", "null"] }, "t_off": { "type": ["integer", "null"] } } } },
                        "lead_quality": { "type": "array", "description": "leads left out of the measurements, and why",
                            "items": { "type": "object", "properties": { "lead": { "type": "string" } } } },
                        "unmeasured": { "type": "array", "description": "each quantity without a value and the reason (wrong_rate, too_short, lead_failed, too_few_good_leads, too_few_beats, no_p_waves, no_boundaries, needs)",
                            "items": { "type": "object", "properties": { "quantity": { "type": "string" }, "reason": { "type": "string" } } } }
                    } }
            }
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/healthz": { "get": { "summary": "Liveness (no token needed)", "security": [],
                "responses": { "200": { "description": "alive" } } } },
            "/v1/status": { "get": { "summary": "Device state, measured rate, frames, drops, CRC errors, gaps, model, uptime",
                "responses": { "200": { "description": "status" }, "401": err("token missing or wrong") } } },
            "/v1/results/latest": { "get": { "summary": "The newest stored result",
                "responses": { "200": { "description": "a result", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Result" } } } },
                               "404": err("no result yet"), "401": err("token missing or wrong") } } },
            "/v1/results": { "get": { "summary": "Stored results with id > since, oldest first",
                "parameters": [
                    { "name": "since", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } } ],
                "responses": { "200": { "description": "results, oldest_id, next_since" }, "400": err("bad query"), "401": err("token missing or wrong") } } },
            "/v1/stream": { "get": { "summary": "Server-sent events: `result` events with ids, `lagged` when a client fell behind; Last-Event-ID resumes",
                "parameters": [ { "name": "Last-Event-ID", "in": "header", "schema": { "type": "integer" } } ],
                "responses": { "200": { "description": "text/event-stream" }, "400": err("bad Last-Event-ID"), "401": err("token missing or wrong") } } },
            "/v1/classify": { "post": { "summary": "Classify a 10 s 12-lead ECG given as the seed's JSON form (lead name to samples in mV, or {\"value\": [...]}; optional eknet_meta.sample_rate_hz, else 500 Hz), plain or gzip",
                "requestBody": { "required": true, "content": { "application/json": {}, "application/gzip": {} } },
                "responses": { "200": { "description": "a result (not stored)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Result" } } } },
                    "400": err("not JSON, not gzip, empty"), "413": err("body too large"),
                    "415": err("wrong content type"), "422": err("wrong lead set or too short"),
                    "503": err("model busy"), "401": err("token missing or wrong") } } },
            "/v1/model": { "get": { "summary": "Labels, thresholds, validation metrics, provenance",
                "responses": { "200": { "description": "model facts" }, "401": err("token missing or wrong") } } },
            "/metrics": { "get": { "summary": "Prometheus text format",
                "responses": { "200": { "description": "metrics" }, "401": err("token missing or wrong") } } },
            "/": { "get": { "summary": "The bedside page: the live 3x4 sheet (25 mm/s, 10 mm/mV), findings, measurements, device state (HTML; with /app.js and /style.css, no token needed: they hold no data, the page asks for the token)", "security": [],
                "responses": { "200": { "description": "text/html" } } } },
            "/v1/stream/signal": { "get": { "summary": "Server-sent events: `signal` frames of the live 500 Hz twelve-lead signal in microvolts, at most 20 a second (contiguous frames merged), id = the last frame's sequence number; `gap_before` marks a break in the signal, a jump in `seq` frames this client missed; `lagged` when it fell behind",
                "responses": { "200": { "description": "text/event-stream of `signal` events", "content": { "text/event-stream": { "schema": { "$ref": "#/components/schemas/SignalFrame" } } } },
                    "401": err("token missing or wrong") } } },
            "/v1/results/{id}/fhir": { "get": { "summary": "One stored result as an HL7 FHIR R4 Bundle (type collection): a Device for the model, the 12 lead EKG panel Observation (LOINC 34534-8) with heart rate, PR, QRS, QT, QTc and the P/QRS/T axes as components (UCUM units, dataAbsentReason with the reason where unmeasured), one Observation per model finding (SNOMED CT from the manifest and the SCP code; score and threshold as components) and per measurement statement, derivedFrom the panel; an abstention as an EKG impression (LOINC 18844-1) with dataAbsentReason",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } } ],
                "responses": { "200": { "description": "application/fhir+json" }, "400": err("not a result id"),
                    "404": err("no such result, or a device event (no FHIR form)"), "401": err("token missing or wrong") } } },
            "/openapi.json": { "get": { "summary": "This description",
                "responses": { "200": { "description": "OpenAPI 3.1" } } } }
        }
    })
}
