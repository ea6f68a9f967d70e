//! Write-then-rename, so a reader never sees a half-written file.

use std::fs::File;
use std::path::Path;

/// Writes `bytes` to `path` through [`write_with`].
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_with(path, |file| std::io::Write::write_all(file, bytes).map_err(|e| e.to_string()))
}

/// Writes `path` through `write` like [`write_with`], then takes the file's pages out of the page cache (on
/// Linux; elsewhere it is [`write_with`]).
///
/// For bulk data written once and not read back soon, such as the shards of a collection. Left in the cache,
/// every megabyte written takes a fresh page the kernel has to find (and, on a VM, the host has to back) and
/// evicts something more useful; measured on a 2-core VM, collecting 2 GB ran 25-35% faster with the pages
/// dropped. The data is on disk before the pages go (the file is synced first), so nothing is lost; a later
/// reader reads it from disk.
pub fn write_uncached_with(path: &Path, write: impl FnOnce(&mut File) -> Result<(), String>) -> Result<(), String> {
    write_file(path, write, true)
}

/// Creates a temporary file beside `path`, lets `write` fill it, and renames it over `path` only on success.
/// On failure the temporary file is removed and `path` is untouched.
pub fn write_with(path: &Path, write: impl FnOnce(&mut File) -> Result<(), String>) -> Result<(), String> {
    write_file(path, write, false)
}

fn write_file(path: &Path, write: impl FnOnce(&mut File) -> Result<(), String>, uncached: bool) -> Result<(), String> {
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
    if uncached {
        drop_cached_pages(tmp.as_file());
    }
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

/// Asks the kernel to drop `file`'s cached pages. They are clean (the file was synced), so they go at once; a
/// refusal costs nothing but the cache, so it is ignored.
#[cfg(target_os = "linux")]
fn drop_cached_pages(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the call's duration.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[cfg(not(target_os = "linux"))]
fn drop_cached_pages(_: &File) {}
