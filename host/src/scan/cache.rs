//! The scan cache: what each plugin file held (or why it failed) when it had a given [`Fingerprint`].
//!
//! One JSON file, by default `$AFX_CACHE_DIR/scan.json`, else `$XDG_CACHE_HOME/afx/scan.json`, else
//! `~/.cache/afx/scan.json`, written whole through [`crate::atomic`] so a killed scan never leaves a torn
//! cache. A cache that cannot be read is no error: the scan warns and describes every file again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{Fingerprint, PluginFile};
use crate::info::PluginInfo;

/// Bumped whenever what a cache entry means changes, so an older cache is described again, not misread.
const VERSION: u32 = 1;

/// The default cache file (see the module doc); `None` when no folder is known (no `HOME`).
pub fn default_cache_file() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("AFX_CACHE_DIR") {
        return Some(dir.join("scan.json"));
    }
    let base = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("afx").join("scan.json"))
}

/// What one file gave when it was last described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    #[serde(flatten)]
    pub file: PluginFile,
    pub fingerprint: Fingerprint,
    pub plugins: Vec<PluginInfo>,
    /// Why the file (or some plugin in it) failed; `None` when all went well.
    pub failed: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// The afx-host version that wrote it: a new version describes everything again (it may read more).
    afx_host: String,
    entries: Vec<Entry>,
}

/// The entries of a cache file, by file.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub entries: HashMap<PluginFile, Entry>,
}

impl Cache {
    /// Reads `path`; a missing file is an empty cache, and so is one that cannot be read or parsed or was written
    /// by another version, with a warning that names it.
    pub fn load(path: &Path) -> Cache {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Cache::default(),
            Err(e) => {
                tracing::warn!("scan cache {} unreadable ({e}): describing every plugin file again", path.display());
                return Cache::default();
            }
        };
        match serde_json::from_slice::<CacheFile>(&bytes) {
            Ok(file) if file.version == VERSION && file.afx_host == env!("CARGO_PKG_VERSION") => {
                Cache { entries: file.entries.into_iter().map(|e| (e.file.clone(), e)).collect() }
            }
            Ok(file) => {
                tracing::info!(
                    "scan cache {} was written by afx-host {} (cache version {}): describing every plugin file again",
                    path.display(),
                    file.afx_host,
                    file.version
                );
                Cache::default()
            }
            Err(e) => {
                tracing::warn!("scan cache {} is corrupt ({e}): describing every plugin file again", path.display());
                Cache::default()
            }
        }
    }

    /// The entry of `file` if it still has this fingerprint.
    pub fn fresh(&self, file: &PluginFile, fingerprint: Fingerprint) -> Option<&Entry> {
        self.entries.get(file).filter(|e| e.fingerprint == fingerprint)
    }

    /// Writes the cache atomically, creating its folder.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut entries: Vec<Entry> = self.entries.values().cloned().collect();
        entries.sort_by(|a, b| a.file.cmp(&b.file));
        let file = CacheFile { version: VERSION, afx_host: env!("CARGO_PKG_VERSION").into(), entries };
        let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        afx_core::atomic::write(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::Format;

    fn entry(path: &str) -> Entry {
        Entry {
            file: PluginFile { format: Format::Clap, path: path.into() },
            fingerprint: Fingerprint { size: 1, modified_ns: 2, files: 1 },
            plugins: vec![],
            failed: Some("killed by signal 11 (SIGSEGV)".into()),
        }
    }

    #[test]
    fn a_saved_cache_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/scan.json");
        let mut cache = Cache::default();
        let e = entry("/x/A.clap");
        cache.entries.insert(e.file.clone(), e.clone());
        cache.save(&path).unwrap();
        let back = Cache::load(&path);
        assert_eq!(back.entries.get(&e.file), Some(&e));
        assert!(back.fresh(&e.file, e.fingerprint).is_some());
        assert!(back.fresh(&e.file, Fingerprint { size: 2, ..e.fingerprint }).is_none());
    }

    #[test]
    fn a_corrupt_or_missing_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cache::load(&dir.path().join("none.json")).entries.is_empty());
        let path = dir.path().join("scan.json");
        std::fs::write(&path, "{\"version\": 1, \"entr").unwrap();
        assert!(Cache::load(&path).entries.is_empty());
        std::fs::write(&path, r#"{"version": 999, "afx_host": "0", "entries": []}"#).unwrap();
        assert!(Cache::load(&path).entries.is_empty());
    }
}
