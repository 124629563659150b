//! Finding the base model an adapter directory was trained on, so that copied directories still load unmerged.
//!
//! The manifest names its base three ways: `base.path` (relative to the model directory, or absolute),
//! `base.id` (e.g. "sentence-transformers/all-MiniLM-L6-v2") and `base.weights_sha256`. The recorded path wins
//! when it exists; otherwise each root of the search path `LORAKIT_BASES` (separated like `PATH`) is tried:
//! the root itself, `root/<id>`, `root/<last part of id>`, `root/<last part of path>`. A searched candidate is
//! accepted only when its `model.safetensors` has the recorded sha256, so a same-named base never stands in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::base::WEIGHTS_FILE;
use crate::error::{Error, Result};
use crate::manifest::ModelDir;
use crate::tensors::{read_file, sha256_hex};

/// Environment variable holding the base search path.
pub const BASES_ENV: &str = "LORAKIT_BASES";

/// The base directory of the lorakit model directory `model_dir` (see the module docs for the search order).
pub fn resolve_base(model_dir: &Path) -> Result<PathBuf> {
    let md = ModelDir::open(model_dir, false)?;
    locate(&md, std::env::var_os(BASES_ENV))
}

pub(crate) fn locate(md: &ModelDir, search: Option<OsString>) -> Result<PathBuf> {
    let base = md.manifest.base.as_ref();
    let recorded = base.and_then(|b| b.path.as_deref()).map(|p| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            md.dir.join(p)
        }
    });
    if let Some(dir) = recorded.as_ref().filter(|d| d.join(WEIGHTS_FILE).is_file()) {
        return Ok(dir.clone());
    }
    let sha = base.and_then(|b| b.weights_sha256.as_deref());
    let id = base.and_then(|b| b.id.as_deref());
    let roots: Vec<PathBuf> = search
        .map(|s| {
            std::env::split_paths(&s)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(sha) = sha {
        for dir in candidates(&roots, id, recorded.as_deref()) {
            if has_weights(&dir, sha)? {
                return Ok(dir);
            }
        }
    }
    Err(not_found(md, recorded.as_deref(), id, sha, &roots))
}

/// Search candidates in order, without duplicates.
fn candidates(roots: &[PathBuf], id: Option<&str>, recorded: Option<&Path>) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = vec![PathBuf::new()];
    if let Some(id) = id.filter(|i| is_relative_name(i)) {
        names.push(PathBuf::from(id));
        names.extend(Path::new(id).file_name().map(PathBuf::from));
    }
    names.extend(recorded.and_then(Path::file_name).map(PathBuf::from));
    let mut out: Vec<PathBuf> = Vec::new();
    for root in roots {
        for name in &names {
            let dir = root.join(name);
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    out
}

/// An id usable as a path under a root: relative, without `..` (ids come from files we did not write).
fn is_relative_name(id: &str) -> bool {
    let p = Path::new(id);
    !id.is_empty()
        && p.is_relative()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn has_weights(dir: &Path, sha: &str) -> Result<bool> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        return Ok(false);
    }
    Ok(sha256_hex(&read_file(&path)?).eq_ignore_ascii_case(sha))
}

/// A missing base is a missing file (`Io`, NotFound), with what was tried and what to do.
fn not_found(
    md: &ModelDir,
    recorded: Option<&Path>,
    id: Option<&str>,
    sha: Option<&str>,
    roots: &[PathBuf],
) -> Error {
    let id = id.map(|i| format!(" {i:?}")).unwrap_or_default();
    let at = match recorded {
        Some(p) => format!("not at {}", p.display()),
        None => "no base.path recorded".to_string(),
    };
    let search = match (roots.is_empty(), sha) {
        (true, _) => format!("{BASES_ENV} is not set"),
        (false, Some(sha)) => {
            let listed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            format!(
                "none with sha256 {sha} under {BASES_ENV}={}",
                listed.join(":")
            )
        }
        (false, None) => format!("{BASES_ENV} is not searched without base.weights_sha256"),
    };
    let why = format!(
        "base model{id} {at}, {search}; set {BASES_ENV} to a directory holding it, \
         load it with load_base, or load the merged weights"
    );
    Error::io(
        recorded.unwrap_or(&md.dir),
        std::io::Error::new(std::io::ErrorKind::NotFound, why),
    )
}
