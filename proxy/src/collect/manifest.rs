//! `manifest.json`: the collection and the shards present in a folder, each checked whole and of the same
//! collection.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{CollectConfig, CollectError, shard_range};
use super::shard::{FORMAT_VERSION, read_meta};

pub const MANIFEST: &str = "manifest.json";

/// `manifest.json`: the collection and the shards present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub chain: String,
    pub params: Vec<String>,
    pub config: CollectConfig,
    pub shards: Vec<ManifestShard>,
    pub total_examples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestShard {
    pub file: String,
    pub examples: usize,
    pub excluded: usize,
}

/// Lists the shards in `dir` into `manifest.json` (atomically). Every shard must be whole and of the same
/// collection; a torn or foreign one is an error naming it.
pub fn write_manifest(dir: &Path) -> Result<Manifest, CollectError> {
    let manifest = scan(dir)?;
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    let path = dir.join(MANIFEST);
    afx_core::atomic::write(&path, text.as_bytes()).map_err(|reason| CollectError::Write { path, reason })?;
    Ok(manifest)
}

/// The manifest of the shards in `dir` (sorted by file name), without writing it: every shard must be whole
/// and of the same collection; a torn or foreign one is an error naming it.
pub fn scan(dir: &Path) -> Result<Manifest, CollectError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CollectError::Read { path: dir.into(), reason: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".safetensors"))
        })
        .collect();
    files.sort();
    let mut manifest: Option<Manifest> = None;
    for path in files {
        let meta = read_meta(&path)?;
        let examples = shard_range(&meta.config, meta.shard).len() - meta.excluded.len();
        let entry = ManifestShard {
            file: path.file_name().expect("a file").to_string_lossy().into_owned(),
            examples,
            excluded: meta.excluded.len(),
        };
        match &mut manifest {
            None => {
                manifest = Some(Manifest {
                    version: FORMAT_VERSION,
                    chain: meta.chain,
                    params: meta.params,
                    config: meta.config,
                    total_examples: examples,
                    shards: vec![entry],
                })
            }
            Some(m) => {
                if m.chain != meta.chain || m.params != meta.params || m.config != meta.config {
                    return Err(CollectError::Foreign {
                        path,
                        reason: format!(
                            "chain {:?} {:?}, while the others are chain {:?} {:?}",
                            meta.chain, meta.config, m.chain, m.config
                        ),
                    });
                }
                m.total_examples += examples;
                m.shards.push(entry);
            }
        }
    }
    manifest.ok_or_else(|| CollectError::Read {
        path: dir.into(),
        reason: "no shard-*.safetensors (collect examples with `afx collect --out` first)".into(),
    })
}
