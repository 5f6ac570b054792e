//! LUDB's free-text diagnoses mapped onto PTB-XL SCP statements by curated rules.

/// How a rule matches a normalised diagnosis (lower case, trimmed, trailing '.' removed).
#[derive(Debug, Clone, Copy)]
pub enum TextMatch {
    /// The whole text.
    Exact(&'static str),
    /// The text starts with this.
    Prefix(&'static str),
}

/// Curated rules, first match wins. An empty code list means the diagnosis is understood and
/// PTB-XL has no statement for it (axis, early repolarisation, ...): reported, never dropped.
/// "Undefined ischemia/scar/supp.NSTEMI" stays unmapped on purpose: it does not say which.
pub const LUDB_RULES: &[(TextMatch, &[&str])] = &[
    (TextMatch::Exact("rhythm: sinus rhythm"), &["SR"]),
    (TextMatch::Exact("rhythm: sinus bradycardia"), &["SBRAD"]),
    (TextMatch::Exact("rhythm: sinus tachycardia"), &["STACH"]),
    (TextMatch::Exact("rhythm: sinus arrhythmia"), &["SARRH"]),
    (
        TextMatch::Exact("rhythm: irregular sinus rhythm"),
        &["SARRH"],
    ),
    (TextMatch::Exact("rhythm: atrial fibrillation"), &["AFIB"]),
    (TextMatch::Prefix("rhythm: atrial flutter"), &["AFLT"]),
    (TextMatch::Exact("left ventricular hypertrophy"), &["LVH"]),
    (TextMatch::Exact("right ventricular hypertrophy"), &["RVH"]),
    (TextMatch::Exact("left atrial hypertrophy"), &["LAO/LAE"]),
    (TextMatch::Exact("left atrial overload"), &["LAO/LAE"]),
    (TextMatch::Exact("right atrial hypertrophy"), &["RAO/RAE"]),
    (TextMatch::Exact("right atrial overload"), &["RAO/RAE"]),
    (
        TextMatch::Exact("incomplete right bundle branch block"),
        &["IRBBB"],
    ),
    (
        TextMatch::Exact("complete right bundle branch block"),
        &["CRBBB"],
    ),
    (
        TextMatch::Exact("incomplete left bundle branch block"),
        &["ILBBB"],
    ),
    (
        TextMatch::Exact("complete left bundle branch block"),
        &["CLBBB"],
    ),
    (TextMatch::Exact("left anterior hemiblock"), &["LAFB"]),
    (TextMatch::Exact("left posterior hemiblock"), &["LPFB"]),
    (TextMatch::Exact("i degree av block"), &["1AVB"]),
    (TextMatch::Prefix("ii degree av"), &["2AVB"]),
    (TextMatch::Prefix("iii degree av"), &["3AVB"]),
    (
        TextMatch::Prefix("non-specific intravintricular conduction delay"),
        &["IVCD"],
    ),
    (
        TextMatch::Prefix("non-specific intraventricular conduction delay"),
        &["IVCD"],
    ),
    (TextMatch::Prefix("ventricular extrasystole"), &["PVC"]),
    (TextMatch::Prefix("atrial extrasystole"), &["PAC"]),
    (TextMatch::Prefix("unipolar ventricular pacing"), &["PACE"]),
    (TextMatch::Prefix("bipolar ventricular pacing"), &["PACE"]),
    (TextMatch::Prefix("biventricular pacing"), &["PACE"]),
    (TextMatch::Prefix("unipolar atrial pacing"), &["PACE"]),
    (TextMatch::Prefix("bipolar atrial pacing"), &["PACE"]),
    (TextMatch::Exact("p-synchrony"), &["PACE"]),
    (
        TextMatch::Prefix("non-specific repolarization abnormalities"),
        &["NST_"],
    ),
    (TextMatch::Exact("ischemia: inferior wall"), &["ISCIN"]),
    (TextMatch::Exact("ischemia: lateral wall"), &["ISCLA"]),
    (TextMatch::Exact("ischemia: anterior wall"), &["ISCAN"]),
    (TextMatch::Exact("ischemia: septal"), &["ISCAS"]),
    (TextMatch::Prefix("ischemia:"), &["ISC_"]),
    (TextMatch::Exact("stemi: anterior wall"), &["AMI"]),
    (TextMatch::Exact("stemi: septal"), &["ASMI"]),
    (TextMatch::Exact("stemi: lateral wall"), &["LMI"]),
    (TextMatch::Exact("stemi: inferior wall"), &["IMI"]),
    (TextMatch::Exact("stemi: posterior wall"), &["PMI"]),
    (TextMatch::Exact("stemi: apical"), &["AMI"]),
    (TextMatch::Exact("scar formation: anterior wall"), &["AMI"]),
    (TextMatch::Exact("scar formation: septal"), &["ASMI"]),
    (TextMatch::Exact("scar formation: lateral wall"), &["LMI"]),
    (TextMatch::Exact("scar formation: inferior wall"), &["IMI"]),
    (TextMatch::Exact("scar formation: posterior wall"), &["PMI"]),
    (TextMatch::Exact("scar formation: apical"), &["AMI"]),
    (TextMatch::Prefix("electric axis of the heart"), &[]),
    (TextMatch::Exact("left ventricular overload"), &[]),
    (TextMatch::Exact("early repolarization syndrome"), &[]),
    (TextMatch::Exact("wandering atrial pacemaker"), &[]),
    (TextMatch::Prefix("sinoatrial blockade"), &[]),
    (TextMatch::Exact("aberrant conduction"), &[]),
];

/// Lower case, trimmed, single-spaced, without a trailing full stop.
pub fn normalise(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches('.').trim().to_lowercase()
}

/// The curated SCP codes for a LUDB diagnosis: `Some(&[])` when understood without an
/// equivalent, `None` when no rule matches.
pub fn ludb_to_scp(text: &str) -> Option<&'static [&'static str]> {
    let t = normalise(text);
    LUDB_RULES.iter().find_map(|(m, codes)| {
        let hit = match m {
            TextMatch::Exact(s) => t == *s,
            TextMatch::Prefix(s) => t.starts_with(s),
        };
        hit.then_some(*codes)
    })
}
