//! Plugin files: finding them without loading any, telling what changed since a scan, and describing one.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::clap::{self, ClapWorld};
use crate::info::{Format, PluginInfo};
use crate::lv2::{self, Lv2World};
use crate::vst3::{Vst3World, module};

/// One file (or bundle folder) that may hold plugins: an LV2 bundle folder, a `.clap` file or a `.vst3`
/// bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PluginFile {
    pub format: Format,
    pub path: PathBuf,
}

/// Every plugin file of the given formats (all when `None`) in the folders each format's world searches:
/// LV2 bundle folders (any folder with a `manifest.ttl`, as lilv takes them) in `LV2_PATH` or lilv's default
/// folders; `.clap` files under `CLAP_PATH`, `~/.clap`, `/usr/lib/clap`, `/usr/local/lib/clap`; `.vst3`
/// bundles under `VST3_PATH`, `~/.vst3`, `/usr/lib/vst3`, `/usr/local/lib/vst3`. Nothing is loaded.
pub fn discover(format: Option<Format>) -> Vec<PluginFile> {
    let mut files = vec![];
    for f in Format::ALL.into_iter().filter(|f| format.is_none_or(|wanted| wanted == *f)) {
        let paths = match f {
            Format::Lv2 => lv2_bundles(&lv2::search_folders()),
            Format::Clap => clap::find_clap_files(&clap::search_folders()),
            Format::Vst3 => module::find_bundles(&module::standard_dirs()),
        };
        files.extend(paths.into_iter().map(|path| PluginFile { format: f, path }));
    }
    files
}

/// The bundle folders directly inside `folders` (lilv does not descend further), sorted per folder, each
/// counted once even when reached twice.
fn lv2_bundles(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut found = vec![];
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(folder) else { continue };
        let mut bundles: Vec<PathBuf> =
            entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.join("manifest.ttl").is_file()).collect();
        bundles.sort();
        for bundle in bundles {
            if bundle.canonicalize().is_ok_and(|canonical| seen.insert(canonical)) {
                found.push(bundle);
            }
        }
    }
    found
}

/// The format a path names by its extension (`.lv2`, `.clap`, `.vst3`, any case), or, for a folder without
/// one, LV2 when it holds a `manifest.ttl`.
pub fn format_of_path(path: &Path) -> Option<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("lv2") => Some(Format::Lv2),
        Some("clap") => Some(Format::Clap),
        Some("vst3") => Some(Format::Vst3),
        _ if path.join("manifest.ttl").is_file() => Some(Format::Lv2),
        _ => None,
    }
}

/// What a file looked like when it was described: for a bundle folder, the sum over every file inside.
/// A scan describes a file again when its fingerprint changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Bytes, over all files of a bundle.
    pub size: u64,
    /// The newest modification time (of any file or folder of a bundle), in nanoseconds since 1970.
    pub modified_ns: u64,
    /// Files (1 for a plain file).
    pub files: u64,
}

impl Fingerprint {
    /// Reads the fingerprint of a file or bundle folder (symlinks followed; bundles searched 16 folders deep).
    pub fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let mut print = Fingerprint { size: 0, modified_ns: 0, files: 0 };
        print.add(path, 0)?;
        Ok(print)
    }

    fn add(&mut self, path: &Path, depth: usize) -> std::io::Result<()> {
        let meta = std::fs::metadata(path)?;
        let modified = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        self.modified_ns = self.modified_ns.max(modified);
        if meta.is_dir() {
            if depth < 16 {
                for entry in std::fs::read_dir(path)? {
                    // A dangling symlink inside a bundle is no reason to fail the bundle.
                    let _ = self.add(&entry?.path(), depth + 1);
                }
            }
        } else {
            self.size += meta.len();
            self.files += 1;
        }
        Ok(())
    }
}

/// The plugins one file holds, as its format's world describes them in this process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileDescription {
    pub plugins: Vec<PluginInfo>,
    /// Plugins of the file that could not be described (the others are in `plugins`).
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Why a file could not be described.
#[derive(Debug, thiserror::Error)]
#[error("cannot describe {format} plugin file {}: {message}", .path.display())]
pub struct DescribeError {
    pub format: Format,
    pub path: PathBuf,
    pub message: String,
}

/// Describes the plugins of ONE file in this process, loading that file and no other: an LV2 bundle folder
/// (with the specification bundles its metadata refers to), a `.clap` file or a `.vst3` bundle.
///
/// The file's code runs here, and a broken plugin may crash or hang this process: [`super::Scanner`] calls it
/// in a child process for every file.
pub fn describe_file(format: Format, path: &Path) -> Result<FileDescription, DescribeError> {
    let error = |message: String| DescribeError { format, path: path.to_path_buf(), message };
    if !path.exists() {
        return Err(error("no such file or folder".into()));
    }
    let (plugins, problems) = match format {
        Format::Lv2 => Lv2World::describe_file(path),
        Format::Clap => ClapWorld::describe_file(path),
        Format::Vst3 => Vst3World::describe_file(path),
    }
    .map_err(error)?;
    Ok(FileDescription { plugins, problems })
}

/// The folders a format's plugins are searched in: `variable` (colon-separated, empty entries skipped), then
/// `home_folder` in the user's home ([`afx_sandbox::user_home`]), then the `system` folders.
pub(crate) fn search_path(variable: &str, home_folder: &str, system: &[&str]) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::env::var_os(variable)
        .map(|paths| std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    folders.extend(afx_sandbox::user_home().map(|home| home.join(home_folder)));
    folders.extend(system.iter().map(PathBuf::from));
    folders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions_or_an_lv2_manifest() {
        assert_eq!(format_of_path(Path::new("/x/ZamComp.VST3")), Some(Format::Vst3));
        assert_eq!(format_of_path(Path::new("/x/ZamComp.clap")), Some(Format::Clap));
        assert_eq!(format_of_path(Path::new("/x/ZamComp.lv2/")), Some(Format::Lv2));
        assert_eq!(format_of_path(Path::new("/x/ZamComp.so")), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.ttl"), "").unwrap();
        assert_eq!(format_of_path(dir.path()), Some(Format::Lv2));
    }

    #[test]
    fn a_bundle_fingerprint_changes_with_any_file_inside() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("a.lv2");
        std::fs::create_dir_all(bundle.join("sub")).unwrap();
        std::fs::write(bundle.join("manifest.ttl"), "abc").unwrap();
        std::fs::write(bundle.join("sub/x.so"), "12345").unwrap();
        let before = Fingerprint::of(&bundle).unwrap();
        assert_eq!((before.size, before.files), (8, 2));
        assert_eq!(Fingerprint::of(&bundle).unwrap(), before);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(bundle.join("sub/x.so")).unwrap().set_modified(later).unwrap();
        let touched = Fingerprint::of(&bundle).unwrap();
        assert_ne!(touched, before);
        assert_eq!(touched.size, before.size);
    }

    #[test]
    fn a_missing_file_is_a_describe_error_naming_it() {
        let e = describe_file(Format::Clap, Path::new("/nonexistent/X.clap")).unwrap_err();
        assert_eq!(e.to_string(), "cannot describe clap plugin file /nonexistent/X.clap: no such file or folder");
    }
}
