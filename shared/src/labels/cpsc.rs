//! The CPSC 2018 challenge's nine classes (`#Dx_CPSC2018:` in the shared copy's headers) mapped
//! onto PTB-XL SCP statements. CPSC's `Normal` is a normal ECG (PTB-XL `NORM`), which the SNOMED
//! code the challenge later gave it (426783006, sinus rhythm) does not say; this table is why
//! CPSC 2018 records can count as NORM positives and negatives.

/// `(CPSC name, description, SCP statements)`, in the challenge's order.
pub const CPSC2018_CLASSES: &[(&str, &str, &[&str])] = &[
    ("Normal", "normal ECG", &["NORM"]),
    ("AF", "atrial fibrillation", &["AFIB"]),
    ("I-AVB", "first-degree atrioventricular block", &["1AVB"]),
    ("LBBB", "left bundle branch block", &["CLBBB"]),
    ("RBBB", "right bundle branch block", &["CRBBB"]),
    ("PAC", "premature atrial contraction", &["PAC"]),
    ("PVC", "premature ventricular contraction", &["PVC"]),
    ("STD", "ST-segment depression", &["STD_"]),
    ("STE", "ST-segment elevation", &["STE_"]),
];

/// The SCP statements of a CPSC 2018 class name (any case), or `None` for a name that is not one
/// of the nine.
pub fn cpsc2018_to_scp(name: &str) -> Option<&'static [&'static str]> {
    CPSC2018_CLASSES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, _, codes)| *codes)
}

/// Every SCP statement a CPSC 2018 record can state: for any other statement its labels say
/// nothing (a record without `AF` is not AF; a record without `LVH` may still be LVH).
pub fn cpsc2018_vocabulary() -> Vec<&'static str> {
    let mut v: Vec<&str> = CPSC2018_CLASSES
        .iter()
        .flat_map(|(_, _, codes)| codes.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpsc_names_map_in_any_case() {
        assert_eq!(cpsc2018_to_scp("Normal"), Some(&["NORM"][..]));
        assert_eq!(cpsc2018_to_scp("i-avb"), Some(&["1AVB"][..]));
        assert_eq!(cpsc2018_to_scp("LVH"), None);
        assert_eq!(cpsc2018_vocabulary().len(), 9);
        assert!(cpsc2018_vocabulary().contains(&"STE_"));
    }
}
