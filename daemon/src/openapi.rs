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
                    "description": "Measured on the window's twelve leads by the shared delineator, as a 12-lead cart prints them: kept apart from the model's findings. Each value is null where it cannot be measured, and 'unmeasured' says why. Absent for device events.",
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
            "/openapi.json": { "get": { "summary": "This description",
                "responses": { "200": { "description": "OpenAPI 3.1" } } } }
        }
    })
}
