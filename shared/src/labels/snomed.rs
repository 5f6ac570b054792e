//! SNOMED CT codes of the CinC records: their names from the challenge's mapping files, and this
//! project's curated bridge from SNOMED CT onto PTB-XL SCP statements.

use super::LabelError;
use std::collections::BTreeMap;
use std::path::Path;

/// Curated SNOMED CT to SCP-ECG correspondence. An empty list means the concept is known and has
/// no PTB-XL statement (axis deviations, unspecified MI, ...): such labels are reported as
/// unmapped with that reason, never dropped. Sources: the PhysioNet/CinC 2020 challenge's
/// conversion of PTB-XL statements to SNOMED CT and the statements' own descriptions.
pub const SNOMED_TO_SCP: &[(&str, &[&str])] = &[
    ("426783006", &["SR"]),           // sinus rhythm
    ("426177001", &["SBRAD"]),        // sinus bradycardia
    ("427084000", &["STACH"]),        // sinus tachycardia
    ("427393009", &["SARRH"]),        // sinus arrhythmia
    ("164889003", &["AFIB"]),         // atrial fibrillation
    ("164890007", &["AFLT"]),         // atrial flutter
    ("426761007", &["SVTAC"]),        // supraventricular tachycardia
    ("67198005", &["PSVT"]),          // paroxysmal supraventricular tachycardia
    ("10370003", &["PACE"]),          // pacing rhythm
    ("284470004", &["PAC"]),          // premature atrial contraction
    ("63593006", &["PAC"]),           // supraventricular premature beats
    ("251170000", &["PAC"]),          // blocked premature atrial contraction
    ("427172004", &["PVC"]),          // premature ventricular contractions
    ("17338001", &["PVC"]),           // ventricular premature beats
    ("164884008", &["PVC"]),          // ventricular ectopics
    ("270492004", &["1AVB"]),         // 1st degree AV block
    ("195042002", &["2AVB"]),         // 2nd degree AV block
    ("27885002", &["3AVB"]),          // complete (3rd degree) AV block
    ("164947007", &["LPR"]),          // prolonged PR interval
    ("59118001", &["CRBBB"]),         // right bundle branch block
    ("713427006", &["CRBBB"]),        // complete right bundle branch block
    ("713426002", &["IRBBB"]),        // incomplete right bundle branch block
    ("164909002", &["CLBBB"]),        // left bundle branch block
    ("733534002", &["CLBBB"]),        // complete left bundle branch block
    ("251120003", &["ILBBB"]),        // incomplete left bundle branch block
    ("445118002", &["LAFB"]),         // left anterior fascicular block
    ("445211001", &["LPFB"]),         // left posterior fascicular block
    ("698252002", &["IVCD"]),         // nonspecific intraventricular conduction disorder
    ("74390002", &["WPW"]),           // Wolff-Parkinson-White pattern
    ("164873001", &["LVH"]),          // left ventricular hypertrophy
    ("55827005", &["VCLVH"]),         // left ventricular high voltage
    ("89792004", &["RVH"]),           // right ventricular hypertrophy
    ("253352002", &["LAO/LAE"]),      // left atrial abnormality
    ("67741000119109", &["LAO/LAE"]), // left atrial enlargement
    ("446358003", &["RAO/RAE"]),      // right atrial hypertrophy
    ("251146004", &["LVOLT"]),        // low QRS voltages
    ("164951009", &["ABQRS"]),        // abnormal QRS
    ("164917005", &["QWAVE"]),        // Q wave abnormal
    ("111975006", &["LNGQT"]),        // prolonged QT interval
    ("164934002", &["TAB_"]),         // T wave abnormal
    ("59931005", &["INVT"]),          // T wave inversion
    ("428750005", &["NST_"]),         // nonspecific ST-T abnormality
    ("55930002", &["NST_"]),          // ST changes
    ("429622005", &["STD_"]),         // ST depression
    ("164931005", &["STE_"]),         // ST elevation
    ("164861001", &["ISC_"]),         // myocardial ischemia
    ("413844008", &["ISC_"]),         // chronic myocardial ischemia
    ("425623009", &["ISCLA"]),        // lateral ischaemia
    ("426434006", &["ISCAN"]),        // anterior ischemia
    ("54329005", &["AMI"]),           // anterior myocardial infarction
    ("164865005", &[]),               // myocardial infarction, site unstated: no single statement
    ("164867002", &[]),               // old myocardial infarction: no age distinction in PTB-XL
    ("39732003", &[]),                // left axis deviation
    ("47665007", &[]),                // right axis deviation
    ("426627000", &[]),               // bradycardia (origin unstated)
    ("713422000", &[]),               // atrial tachycardia
    ("425856008", &[]),               // paroxysmal ventricular tachycardia
    ("233897008", &[]),               // AV reentrant tachycardia
    ("233917008", &[]),               // AV block, degree unstated
    ("164930006", &[]),               // ST interval abnormal
    ("251223006", &[]),               // tall P wave
    ("251259000", &[]),               // high T voltage
    ("251187003", &[]),               // atrial escape beat
    ("61721007", &[]),                // (counter)clockwise vectorcardiographic loop
    ("365413008", &[]),               // poor R wave progression
    ("13640000", &[]),                // fusion beats
    ("106068003", &[]),               // atrial rhythm
];

/// The curated SCP codes for a SNOMED concept: `Some(&[])` when known without an equivalent,
/// `None` when the concept is not in the table.
pub fn snomed_to_scp(code: &str) -> Option<&'static [&'static str]> {
    SNOMED_TO_SCP
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, scp)| *scp)
}

/// Name and abbreviation of SNOMED concepts, from the challenge's mapping files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnomedNames {
    names: BTreeMap<String, (String, String)>,
}

impl SnomedNames {
    /// Reads `cinc2021_eval_dx_mapping_scored.csv` and `..._unscored.csv` from `cinc_dir`
    /// (columns `Dx`, `SNOMEDCTCode`, `Abbreviation`).
    pub fn from_cinc_dir(cinc_dir: &Path) -> Result<SnomedNames, LabelError> {
        let mut names = BTreeMap::new();
        for file in [
            "cinc2021_eval_dx_mapping_scored.csv",
            "cinc2021_eval_dx_mapping_unscored.csv",
        ] {
            let path = cinc_dir.join(file);
            let bad = |what: String| LabelError::Table {
                path: path.clone(),
                what,
            };
            let mut reader = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
            let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
            let col = |name: &str| {
                headers
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| bad(format!("missing column '{name}'")))
            };
            let (c_dx, c_code, c_abbr) = (col("Dx")?, col("SNOMEDCTCode")?, col("Abbreviation")?);
            for row in reader.records() {
                let row = row.map_err(|e| bad(e.to_string()))?;
                let get = |c: usize| row.get(c).unwrap_or("").trim().to_string();
                names.insert(get(c_code), (get(c_dx), get(c_abbr)));
            }
        }
        Ok(SnomedNames { names })
    }

    /// `(name, abbreviation)` of a concept.
    pub fn get(&self, code: &str) -> Option<(&str, &str)> {
        self.names.get(code).map(|(n, a)| (n.as_str(), a.as_str()))
    }

    /// Number of concepts known.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no concept is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
