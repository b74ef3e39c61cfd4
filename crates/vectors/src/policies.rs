//! `policies/*.json`: consent policies with requests and the decisions they must get
//! (reasons in order, `remaining`, the budget key charged). They are the core's own
//! evaluation cases (`crates/core/tests/data/policy/eval/`, checked by the core's
//! suite against `Policy::evaluate`), published here in the same format.

use std::path::Path;

use crate::{VectorError, VectorFile, pretty};

pub(crate) fn files(root: &Path) -> Result<Vec<VectorFile>, VectorError> {
    let dir = root.join("crates/core/tests/data/policy/eval");
    let read_err = |path: &Path, e: &dyn std::fmt::Display| VectorError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| read_err(&dir, &e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, &e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| read_err(&path, &e))?;
        out.push(pretty(&format!("policies/{name}"), &value)?);
    }
    Ok(out)
}
