//! `prepare --format ptbxl` on a miniature PTB-XL folder laid out as PhysioNet publishes it,
//! built from the PTB-XL records (HR*) among the shared CinC files.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_shared::wfdb;
use eknet_trainer::data::prepare::{PtbxlPrepare, PtbxlSplit, prepare_ptbxl};
use eknet_trainer::data::split::{read_distribution, read_split};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ptbxl_layout_becomes_the_seed_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let ptbxl = tmp.path().join("ptbxl");
    std::fs::create_dir_all(ptbxl.join("records500/00000")).unwrap();
    std::fs::copy(
        data_dir().join("ptbxl/scp_statements.csv"),
        ptbxl.join("scp_statements.csv"),
    )
    .unwrap();
    let mut hr: Vec<PathBuf> = std::fs::read_dir(data_dir().join("cinc/records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("HR")
                && p.extension().unwrap() == "hea"
        })
        .collect();
    hr.sort();
    hr.truncate(12);
    let codes = [
        "{'NORM': 100.0, 'SR': 0.0}",
        "{'IMI': 50.0, 'ABQRS': 0.0, 'SR': 0.0}",
        "{'AFIB': 100.0}",
    ];
    let mut db =
        String::from("ecg_id,patient_id,age,sex,scp_codes,strat_fold,filename_lr,filename_hr\n");
    for (i, h) in hr.iter().enumerate() {
        let rec = wfdb::read_record(&h.with_extension("")).unwrap();
        let name = format!("{:05}_hr", i + 1);
        wfdb::write_record(&rec, &ptbxl.join("records500/00000"), &name, 1000.0).unwrap();
        let fold = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 9, 10][i];
        db.push_str(&format!(
            "{},{},{},{},\"{}\",{fold},records100/00000/{:05}_lr,records500/00000/{name}\n",
            i + 1,
            100 + i,
            50 + i,
            i % 2,
            codes[i % 3],
            i + 1
        ));
    }
    std::fs::write(ptbxl.join("ptbxl_database.csv"), db).unwrap();
    let out = tmp.path().join("out");
    let opts = PtbxlPrepare {
        fold: 0,
        use_500hz: true,
        split: PtbxlSplit::StratFold,
        classes: None,
    };
    let report = prepare_ptbxl(&ptbxl, &out, &opts).unwrap();
    assert_eq!(
        (report.records, report.train, report.val, report.test),
        (12, 8, 2, 2)
    );
    let train = read_split(&out.join("k0_train.csv")).unwrap();
    assert_eq!(train[0].path, "records500/00000/00001_hr");
    assert_eq!(train[0].labels, vec!["NORM"], "SR is not an EKnet class");
    assert_eq!(
        train[1].labels,
        vec!["IMI", "ABQRS"],
        "class order, not file order"
    );
    let dist = read_distribution(&out.join("k0_distribution.csv")).unwrap();
    assert_eq!(dist.len(), 70);
    let norm = dist.iter().find(|c| c.name == "NORM").unwrap();
    assert_eq!(
        (norm.all, norm.train, norm.val),
        (4, 3, 0),
        "folds 1, 4, 7 and 10"
    );
    let rec = eknet_shared::ecgzip::read(&out.join("records500/00000/00002_hr.ecgzip")).unwrap();
    assert_eq!(rec.meta.id, "2");
    assert_eq!(rec.meta.sex, Some(eknet_shared::Sex::Female));
    // The seed's random split: 70/30 train/validation, no test.
    let out2 = tmp.path().join("out2");
    let opts = PtbxlPrepare {
        split: PtbxlSplit::Random70_30 { seed: 1 },
        ..opts
    };
    let report = prepare_ptbxl(&ptbxl, &out2, &opts).unwrap();
    assert_eq!((report.train, report.val, report.test), (8, 4, 0));
}
