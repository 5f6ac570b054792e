//! PTB-XL's SCP-ECG statement table (`scp_statements.csv`): the 71 statements, their kinds
//! (diagnostic, form, rhythm) and diagnostic classes; the EKnet PTB-XL label set is the 70 without SR.

use super::LabelError;
use serde::Serialize;
use std::path::Path;

/// The statement the EKnet PTB-XL class set leaves out.
pub const EXCLUDED_FROM_EKNET: &str = "SR";

/// One SCP-ECG statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScpStatement {
    /// Code, e.g. `IRBBB`.
    pub code: String,
    /// Description, e.g. `incomplete right bundle branch block`.
    pub description: String,
    /// A diagnostic statement.
    pub diagnostic: bool,
    /// A form statement.
    pub form: bool,
    /// A rhythm statement.
    pub rhythm: bool,
    /// Diagnostic superclass (NORM, MI, STTC, CD, HYP), for diagnostic statements.
    pub diagnostic_class: Option<String>,
    /// Diagnostic subclass.
    pub diagnostic_subclass: Option<String>,
}

/// The statement table, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScpTable {
    statements: Vec<ScpStatement>,
}

impl ScpTable {
    /// Reads PTB-XL's `scp_statements.csv`.
    pub fn from_csv(path: &Path) -> Result<ScpTable, LabelError> {
        let bad = |what: String| LabelError::Table {
            path: path.to_path_buf(),
            what,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
        let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad(format!("missing column '{name}'")))
        };
        let (c_desc, c_diag, c_form, c_rhythm) = (
            col("description")?,
            col("diagnostic")?,
            col("form")?,
            col("rhythm")?,
        );
        let (c_class, c_sub) = (col("diagnostic_class")?, col("diagnostic_subclass")?);
        let mut statements = Vec::new();
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| bad(format!("row {}: {e}", i + 2)))?;
            let get = |c: usize| row.get(c).unwrap_or("").trim().to_string();
            let flag = |c: usize| {
                let v = get(c);
                v == "1" || v == "1.0"
            };
            let opt = |c: usize| Some(get(c)).filter(|s| !s.is_empty());
            let code = get(0);
            if code.is_empty() {
                return Err(bad(format!("row {}: empty statement code", i + 2)));
            }
            statements.push(ScpStatement {
                code,
                description: get(c_desc),
                diagnostic: flag(c_diag),
                form: flag(c_form),
                rhythm: flag(c_rhythm),
                diagnostic_class: opt(c_class),
                diagnostic_subclass: opt(c_sub),
            });
        }
        if statements.is_empty() {
            return Err(bad("no statements".into()));
        }
        Ok(ScpTable { statements })
    }

    /// All statements in file order.
    pub fn statements(&self) -> &[ScpStatement] {
        &self.statements
    }

    /// The statement with this code.
    pub fn get(&self, code: &str) -> Option<&ScpStatement> {
        self.statements.iter().find(|s| s.code == code)
    }

    /// The EKnet PTB-XL class list (every statement but SR), in file order: the model's output
    /// order for the PTB-XL task.
    pub fn eknet_classes(&self) -> Vec<&ScpStatement> {
        self.statements
            .iter()
            .filter(|s| s.code != EXCLUDED_FROM_EKNET)
            .collect()
    }
}
