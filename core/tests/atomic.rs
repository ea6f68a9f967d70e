//! Atomic writes: the file is whole, and `write_uncached_with` leaves its pages out of the page cache.

#![cfg(target_os = "linux")]

use std::io::Write;
use std::path::Path;

use afx_core::atomic;

/// Pages of the file at `path` that are in the page cache, and the file's pages in all (`mincore` over a
/// read-only mapping: it reports residency without reading anything in).
fn resident_pages(path: &Path) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: sysconf only reads its argument.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let pages = len.div_ceil(page);
    let mut residency = vec![0u8; pages];
    // SAFETY: a private read-only mapping of an open file, unmapped before return; `residency` holds one byte per
    // page of it, as mincore requires.
    unsafe {
        let map = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0);
        assert_ne!(map, libc::MAP_FAILED, "mmap {}", path.display());
        assert_eq!(libc::mincore(map, len, residency.as_mut_ptr()), 0, "mincore {}", path.display());
        libc::munmap(map, len);
    }
    (residency.iter().filter(|&&r| r & 1 == 1).count(), pages)
}

/// Whether `dir` is on tmpfs, whose pages are the data itself and cannot be dropped.
fn on_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs is plain old data, for which all zeros is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs to fill.
    assert_eq!(unsafe { libc::statfs(name.as_ptr(), &mut stat) }, 0);
    stat.f_type == libc::TMPFS_MAGIC
}

#[test]
fn write_uncached_with_writes_the_whole_file_and_leaves_its_pages_out_of_the_cache() {
    // The target folder is on the project's disk; /tmp may be tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if on_tmpfs(dir.path()) {
        let why = format!("{} is on tmpfs, whose pages cannot leave the cache", dir.path().display());
        // In CI the target folder is on a disk: a tmpfs there means the test no longer measures anything.
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs a target folder on a disk: {why}");
        eprintln!("skipped: {why} (put the target folder on a disk to run it)");
        return;
    }
    let bytes: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let (cached, uncached) = (dir.path().join("cached.bin"), dir.path().join("uncached.bin"));
    atomic::write(&cached, &bytes).unwrap();
    atomic::write_uncached_with(&uncached, |f| f.write_all(&bytes).map_err(|e| e.to_string())).unwrap();

    // The control: a plain write stays in the cache, so the measure can tell the two apart.
    let (resident, pages) = resident_pages(&cached);
    assert!(resident > pages / 2, "a plain write left only {resident} of {pages} pages cached");
    let (resident, pages) = resident_pages(&uncached);
    assert!(resident < pages / 8, "write_uncached_with left {resident} of {pages} pages cached");

    assert_eq!(std::fs::read(&uncached).unwrap(), bytes, "the file must hold the bytes written");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "no temporary file may be left: {left:?}");
}
