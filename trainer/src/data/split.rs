//! The seed's split files: `k{fold}_{train,val,test}.csv` (`paths,label_names`, labels as a
//! Python list literal; eknet may add a third column, `label_unknown`, listing the classes a
//! record's source cannot state, which training and evaluation leave out for that record) and `k{fold}_distribution.csv` (`idx,names,all,train,val`, whose row order
//! is the model's output order).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// One row of a split file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    /// Record path relative to the data folder, without the `.ecgzip` extension.
    pub path: String,
    /// Class names present.
    pub labels: Vec<String>,
    /// Class names whose presence the record's source does not state (neither present nor absent).
    pub unknown: Vec<String>,
}

/// One row of a distribution file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRow {
    /// Output index.
    pub idx: usize,
    /// Class name (an SCP code here; the seed used display names).
    pub name: String,
    /// Records with this class in all splits.
    pub all: usize,
    /// In the training split.
    pub train: usize,
    /// In the validation split.
    pub val: usize,
}

/// Formats labels as the seed's Python list literal: `['NORM', 'SR']`.
pub fn format_label_list(labels: &[String]) -> String {
    let inner: Vec<String> = labels.iter().map(|l| format!("'{l}'")).collect();
    format!("[{}]", inner.join(", "))
}

/// Parses the seed's Python list literal of strings.
pub fn parse_label_list(text: &str) -> Result<Vec<String>> {
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .with_context(|| format!("label list '{t}' is not a [..] literal"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|item| {
            let item = item.trim();
            let unquoted = item
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| item.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            unquoted
                .map(str::to_string)
                .with_context(|| format!("label '{item}' in '{t}' is not a quoted string"))
        })
        .collect()
}

/// Writes a split file.
pub fn write_split(path: &Path, rows: &[SplitRow]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    // The seed's two columns, plus `label_unknown` only where some record has unknown labels.
    let third = rows.iter().any(|r| !r.unknown.is_empty());
    if third {
        w.write_record(["paths", "label_names", "label_unknown"])?;
    } else {
        w.write_record(["paths", "label_names"])?;
    }
    for r in rows {
        let labels = format_label_list(&r.labels);
        if third {
            w.write_record([
                r.path.as_str(),
                labels.as_str(),
                format_label_list(&r.unknown).as_str(),
            ])?;
        } else {
            w.write_record([r.path.as_str(), labels.as_str()])?;
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a split file.
pub fn read_split(path: &Path) -> Result<Vec<SplitRow>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("opening split {}", path.display()))?;
    let headers = r.headers()?.clone();
    let cols: Vec<&str> = headers.iter().collect();
    let third = match cols.as_slice() {
        ["paths", "label_names"] => false,
        ["paths", "label_names", "label_unknown"] => true,
        _ => bail!(
            "{}: expected columns paths,label_names (and optionally label_unknown), found {:?}",
            path.display(),
            headers
        ),
    };
    r.records()
        .enumerate()
        .map(|(i, row)| {
            let row = row.with_context(|| format!("{} row {}", path.display(), i + 2))?;
            let list = |c: usize| {
                parse_label_list(row.get(c).unwrap_or(""))
                    .with_context(|| format!("{} row {}", path.display(), i + 2))
            };
            let labels = list(1)?;
            let unknown = if third { list(2)? } else { Vec::new() };
            if let Some(both) = labels.iter().find(|l| unknown.contains(l)) {
                bail!(
                    "{} row {}: '{both}' is both present and unknown",
                    path.display(),
                    i + 2
                );
            }
            Ok(SplitRow {
                path: row.get(0).unwrap_or("").to_string(),
                labels,
                unknown,
            })
        })
        .collect()
}

/// Writes a distribution file.
pub fn write_distribution(path: &Path, rows: &[ClassRow]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record(["idx", "names", "all", "train", "val"])?;
    for r in rows {
        w.write_record([
            r.idx.to_string(),
            r.name.clone(),
            r.all.to_string(),
            r.train.to_string(),
            r.val.to_string(),
        ])?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a distribution file: the class names in output order.
pub fn read_distribution(path: &Path) -> Result<Vec<ClassRow>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("opening class distribution {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, row) in r.records().enumerate() {
        let row = row.with_context(|| format!("{} row {}", path.display(), i + 2))?;
        let num = |c: usize, what: &str| -> Result<usize> {
            row.get(c).unwrap_or("").trim().parse().with_context(|| {
                format!(
                    "{} row {}: column {what} is not a count",
                    path.display(),
                    i + 2
                )
            })
        };
        let idx = num(0, "idx")?;
        if idx != i {
            bail!(
                "{} row {}: idx {idx} out of order (expected {i})",
                path.display(),
                i + 2
            );
        }
        rows.push(ClassRow {
            idx,
            name: row.get(1).unwrap_or("").to_string(),
            all: num(2, "all")?,
            train: num(3, "train")?,
            val: num(4, "val")?,
        });
    }
    if rows.is_empty() {
        bail!("{}: no classes", path.display());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_round_trip_in_the_seed_form() {
        let labels = vec!["NORM".to_string(), "LAO/LAE".to_string()];
        let text = format_label_list(&labels);
        assert_eq!(text, "['NORM', 'LAO/LAE']");
        assert_eq!(parse_label_list(&text).unwrap(), labels);
        assert_eq!(parse_label_list("[]").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_label_list("[\"左心室肥厚\"]").unwrap(),
            vec!["左心室肥厚"]
        );
        assert!(parse_label_list("NORM").is_err());
        assert!(parse_label_list("[NORM]").is_err());
    }

    #[test]
    fn split_and_distribution_files_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let rows = vec![
            SplitRow {
                path: "records/ludb/1".into(),
                labels: vec!["SBRAD".into(), "LVH".into()],
                unknown: vec![],
            },
            SplitRow {
                path: "records/cinc/A0001".into(),
                labels: vec![],
                unknown: vec![],
            },
        ];
        let p = tmp.path().join("k0_train.csv");
        write_split(&p, &rows).unwrap();
        assert_eq!(read_split(&p).unwrap(), rows);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("paths,label_names\n"),
            "the seed's form: {text}"
        );
        // With unknown labels, a third column.
        let mut rows = rows;
        rows[1].unknown = vec!["NORM".into()];
        write_split(&p, &rows).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("paths,label_names,label_unknown\n"),
            "{text}"
        );
        assert_eq!(read_split(&p).unwrap(), rows);
        std::fs::write(&p, "paths,label_names,label_unknown\nr,['NORM'],['NORM']\n").unwrap();
        let e = read_split(&p).unwrap_err();
        assert!(
            format!("{e:#}").contains("both present and unknown"),
            "{e:#}"
        );
        let classes = vec![ClassRow {
            idx: 0,
            name: "AFIB".into(),
            all: 3,
            train: 2,
            val: 1,
        }];
        let p = tmp.path().join("k0_distribution.csv");
        write_distribution(&p, &classes).unwrap();
        assert_eq!(read_distribution(&p).unwrap(), classes);
    }
}
