//! What the delineation dumps of the examples share: one record's rule-based beats, failed
//! leads and the learned delineator's per-lead labels as JSON fields.

use eknet_shared::Record;
use eknet_shared::measure::DelineationParams;
use eknet_shared::measure::learned::Delineator;

/// `beats` (`[r, p_on, p_off, qrs_on, qrs_off, t_off]` of the rule-based delineator with
/// `params`), `failed` (leads that failed quality) and `labels` (one string of class digits per
/// lead from `net`, empty without one) of a 500 Hz record.
pub fn delineation_fields(
    record: &Record,
    params: &DelineationParams,
    net: Option<&Delineator>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let rule = DelineationParams {
        learned: false,
        ..params.clone()
    };
    let m = eknet_shared::measure::measure_using(record, &rule, None);
    let beats: Vec<[Option<usize>; 6]> = m
        .beats
        .iter()
        .map(|b| [Some(b.r), b.p_on, b.p_off, b.qrs_on, b.qrs_off, b.t_off])
        .collect();
    let failed: Vec<String> = m.lead_quality.iter().map(|q| q.lead.to_string()).collect();
    let mut labels: Vec<String> = Vec::new();
    if let Some(net) = net {
        let leads: Vec<&[f32]> = eknet_shared::Lead::ALL
            .iter()
            .map(|&l| record.lead(l))
            .collect::<Option<_>>()
            .ok_or("a lead is missing")?;
        let prepared = eknet_shared::measure::delineate::prepare(&leads, record.sample_rate_hz());
        let input: [&[f32]; 12] = std::array::from_fn(|i| prepared.base[i].as_slice());
        labels = net
            .labels(&input)
            .iter()
            .map(|row| row.iter().map(|c| char::from(b'0' + c)).collect())
            .collect();
    }
    let mut fields = serde_json::Map::new();
    fields.insert("beats".into(), serde_json::json!(beats));
    fields.insert("failed".into(), serde_json::json!(failed));
    fields.insert("labels".into(), serde_json::json!(labels));
    Ok(fields)
}
