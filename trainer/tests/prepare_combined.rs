//! `prepare --format combined` on miniature copies of the shared sources (a PTB-XL folder in
//! PhysioNet's layout with its official rows, CinC records including one that re-publishes a
//! PTB-XL ECG, CPSC 2018, LUDB, CODE-15% as unlabelled): one set, each ECG once, PTB-XL by its
//! folds, no patient on two sides, unknown labels marked per source, stage 1's own list.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use eknet_trainer::cli::{Cli, run};
use eknet_trainer::data::split::{read_distribution, read_split};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    eknet_shared::data::require_data_dir(&here).unwrap_or_else(|e| panic!("{e}"))
}

fn copy_record(from: &Path, name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        if p.file_stem().unwrap() == name {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn several_sources_become_one_set_with_each_ecg_once() {
    let src = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // PTB-XL: ecg_ids 2-10 (patients each once; folds 1-10 among them) and 17, 18, 20 (one
    // patient, fold 9), with the official rows.
    let ptbxl = root.join("ptbxl");
    std::fs::create_dir_all(&ptbxl).unwrap();
    std::fs::copy(
        src.join("ptbxl/scp_statements.csv"),
        ptbxl.join("scp_statements.csv"),
    )
    .unwrap();
    let db = std::fs::read_to_string(src.join("ptbxl/ptbxl_database.csv")).unwrap();
    let ids = [2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 20];
    let mut text = String::new();
    for (i, line) in db.lines().enumerate() {
        let id: Option<u32> = line.split(',').next().and_then(|v| v.parse().ok());
        if i == 0 || id.is_some_and(|id| ids.contains(&id)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    std::fs::write(ptbxl.join("ptbxl_database.csv"), text).unwrap();
    for id in ids {
        copy_record(
            &src.join("ptbxl/records100/00000"),
            &format!("{id:05}_lr"),
            &ptbxl.join("records100/00000"),
        );
    }
    // CinC: HR00002 is PTB-XL's ecg_id 2 again; two others.
    for name in ["HR00002", "A0001", "E00001"] {
        copy_record(&src.join("cinc/records"), name, &root.join("cinc/records"));
    }
    for name in ["A0011", "A0012", "A0013", "A0014"] {
        copy_record(
            &src.join("cpsc2018/records"),
            name,
            &root.join("cpsc2018/records"),
        );
    }
    for name in ["1", "2", "3", "4"] {
        copy_record(&src.join("ludb/data"), name, &root.join("ludb/data"));
    }
    // CODE-15%: the first record long enough and the first too short once its padding is cut.
    let code = src.join("code15/records");
    let mut names: Vec<String> = std::fs::read_dir(&code)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "hea").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let samples = |n: &str| -> usize {
        let h = std::fs::read_to_string(code.join(format!("{n}.hea"))).unwrap();
        h.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap()
    };
    let long = names.iter().find(|n| samples(n) == 4096).unwrap();
    let short = names.iter().find(|n| samples(n) == 2934).unwrap();
    for n in [long, short] {
        copy_record(&code, n, &root.join("code15/records"));
    }

    let out = root.join("out");
    let arg = |p: PathBuf| p.to_str().unwrap().to_string();
    let args: Vec<String> = [
        "eknet-train",
        "prepare",
        "--format",
        "combined",
        "--classes",
        "NORM,SBRAD,AFIB,CRBBB,CLBBB",
        "--min-count",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--input".into(),
        arg(root.join("cinc/records")),
        "--input".into(),
        arg(ptbxl.clone()),
        "--input".into(),
        arg(root.join("cpsc2018/records")),
        "--input".into(),
        arg(root.join("ludb/data")),
        "--unlabelled".into(),
        arg(root.join("code15/records")),
        "--out".into(),
        arg(out.clone()),
        "--tables".into(),
        arg(src.clone()),
    ])
    .collect();
    run(<Cli as clap::Parser>::parse_from(args)).unwrap();

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("k0_prepare_report.json")).unwrap())
            .unwrap();
    // 12 PTB-XL + 2 CinC (HR00002 left out) + 4 CPSC + 4 LUDB.
    assert_eq!(report["records"], 22);
    let dups = report["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1);
    assert!(dups[0][0].as_str().unwrap().ends_with("HR00002"));
    assert!(dups[0][1].as_str().unwrap().contains("ecg_id 2"));
    let sources = report["sources"].as_array().unwrap();
    let names: Vec<&str> = sources
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // PTB-XL first (its copy of an ECG is the one kept), then the others in order given.
    assert_eq!(names, ["ptbxl", "cinc", "cpsc2018", "ludb", "code15"]);
    assert_eq!(sources[1]["duplicates"], 1);
    assert_eq!(
        sources[4]["unlabelled"], 1,
        "the short CODE-15% exam is skipped"
    );
    assert_eq!(sources[4]["skipped"], 1);

    let train = read_split(&out.join("k0_train.csv")).unwrap();
    let val = read_split(&out.join("k0_val.csv")).unwrap();
    let test = read_split(&out.join("k0_test.csv")).unwrap();
    assert_eq!(train.len() + val.len() + test.len(), 22);
    let side = |path: &str| -> usize {
        [&train, &val, &test]
            .iter()
            .position(|s| s.iter().any(|r| r.path == path))
            .unwrap()
    };
    // PTB-XL by strat_fold: ecg_id 4 is fold 3 (train), 17 fold 9 (val); 18 and 20 share
    // ecg_id 17's patient and fold.
    assert_eq!(side("ptbxl/records100/00000/00004_lr"), 0);
    for id in [17, 18, 20] {
        assert_eq!(
            side(&format!("ptbxl/records100/00000/{id:05}_lr")),
            1,
            "ecg_id {id}"
        );
    }
    // Unknown labels: CinC and LUDB cannot state NORM; CPSC 2018 states NORM and AFIB but not
    // SBRAD; PTB-XL states everything.
    let all: Vec<_> = train.iter().chain(&val).chain(&test).collect();
    let row = |p: &str| *all.iter().find(|r| r.path == p).unwrap();
    assert_eq!(row("records/cinc/A0001").unknown, ["NORM"]);
    assert_eq!(row("records/ludb/1").unknown, ["NORM"]);
    assert_eq!(row("records/cpsc2018/A0011").unknown, ["SBRAD"]);
    assert!(row("ptbxl/records100/00000/00002_lr").unknown.is_empty());
    assert_eq!(
        row("ptbxl/records100/00000/00002_lr").labels,
        ["NORM", "SBRAD"]
    );
    // CPSC 2018's A0011 is LBBB (its original class name, also SNOMED 164909002).
    assert_eq!(row("records/cpsc2018/A0011").labels, ["CLBBB"]);
    assert!(out.join("records/cpsc2018/A0011.ecgzip").exists());
    assert!(out.join("ptbxl/records100/00000/00002_lr.ecgzip").exists());
    // Stage 1's list: the training split plus the unlabelled exam, nothing held out.
    let pretrain = read_split(&out.join("k0_pretrain.csv")).unwrap();
    assert_eq!(pretrain.len(), train.len() + 1);
    assert!(pretrain[train.len()].path.starts_with("records/code15/"));
    assert!(
        pretrain
            .iter()
            .all(|r| side_of(&r.path, &val, &test).is_none())
    );
    assert_eq!(
        read_distribution(&out.join("k0_distribution.csv"))
            .unwrap()
            .len(),
        5
    );
}

fn side_of(
    path: &str,
    val: &[eknet_trainer::data::split::SplitRow],
    test: &[eknet_trainer::data::split::SplitRow],
) -> Option<usize> {
    [val, test]
        .iter()
        .position(|s| s.iter().any(|r| r.path == path))
}
