//! Write-then-rename, so a reader never sees a half-written file.

use std::fs::File;
use std::path::Path;

/// Writes `bytes` to `path` through [`write_with`].
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_with(path, |file| std::io::Write::write_all(file, bytes).map_err(|e| e.to_string()))
}

/// Creates a temporary file beside `path`, lets `write` fill it, and renames it over `path` only on success.
/// On failure the temporary file is removed and `path` is untouched.
pub fn write_with(path: &Path, write: impl FnOnce(&mut File) -> Result<(), String>) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".afx-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}
