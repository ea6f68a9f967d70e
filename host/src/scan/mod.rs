//! Scanning installed plugins the way DAWs do: every plugin file is described in a child process of its own, so a
//! plugin that crashes or hangs when loaded fails alone, and the results are cached by file.
//!
//! 1. [`discover`] lists the plugin files of the search folders without loading any ([`PluginFile`]: an LV2
//!    bundle folder, a `.clap` file or a `.vst3` bundle).
//! 2. [`Scanner::scan`] runs a child per file that is not in the cache with the same [`Fingerprint`] (size and
//!    modification time, over all files of a bundle), as many at once as there are cores. The child is a
//!    program the caller names (the `afx` CLI passes itself with its hidden `describe` command), which calls
//!    [`describe_main`]: [`describe_file`] in that process, one JSON line on stdout. A child killed by a
//!    signal, one that runs past the time-out (it is killed), or one that prints no description makes that
//!    file a [`Failure`] that says why; the scan goes on.
//! 3. The result is a [`Catalogue`]: the described plugins and the failed files. It is also what
//!    [`crate::Host::with_catalogue`] resolves ids, names and paths from without loading anything; such a host
//!    loads only the one file that holds the plugin asked for.
//!
//! ```no_run
//! use afx_host::scan::Scanner;
//!
//! let exe = std::env::current_exe()?;
//! let catalogue = Scanner::new(exe, ["describe"]).scan();
//! for failure in &catalogue.failed {
//!     eprintln!("{} {}: {}", failure.format, failure.path.display(), failure.reason);
//! }
//! let host = afx_host::Host::with_catalogue(catalogue.plugins);
//! let comp = host.load("urn:zamaudio:ZamComp", None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod child;
pub(crate) mod files;

use afx_sandbox::Caps;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cache::default_cache_file;
pub use child::describe_main;
pub use files::{DescribeError, FileDescription, Fingerprint, PluginFile, describe_file, discover, format_of_path};

use self::cache::{Cache, Entry};
use crate::info::{Format, PluginInfo};

/// The time a child may take to describe one file, unless [`Scanner::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A plugin file that could not be described, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub format: Format,
    pub path: PathBuf,
    /// E.g. "killed by signal 11 (SIGSEGV)", "timed out after 20 s", or the child's own error.
    pub reason: String,
}

/// What a scan did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// Plugin files found.
    pub files: usize,
    /// Files described by a child process in this scan.
    pub described: usize,
    /// Files taken from the cache unchanged.
    pub cached: usize,
}

/// The result of a scan: every plugin described, every file that failed, and what the scan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// Sorted by format, name and id; copies of one plugin in several files in search order (the first is the one
    /// [`crate::Host::with_catalogue`] loads by id).
    pub plugins: Vec<PluginInfo>,
    /// Sorted by format and path.
    pub failed: Vec<Failure>,
    #[serde(default)]
    pub stats: ScanStats,
}

/// Why a catalogue file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read the plugin catalogue {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the plugin catalogue {} is not valid: {source}", .path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write the plugin catalogue {}: {message}", .path.display())]
    Write { path: PathBuf, message: String },
}

impl Catalogue {
    /// Reads a catalogue that [`Catalogue::save`] wrote (for worker processes that must not scan).
    pub fn load(path: &Path) -> Result<Catalogue, CatalogueError> {
        let bytes = std::fs::read(path).map_err(|source| CatalogueError::Read { path: path.into(), source })?;
        serde_json::from_slice(&bytes).map_err(|source| CatalogueError::Parse { path: path.into(), source })
    }

    /// Writes the catalogue as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), CatalogueError> {
        let write = |message: String| CatalogueError::Write { path: path.into(), message };
        let bytes = serde_json::to_vec(self).map_err(|e| write(e.to_string()))?;
        afx_core::atomic::write(path, &bytes).map_err(write)
    }
}

/// Describes plugin files in child processes, in parallel, with a time-out and a cache (see the module doc).
#[derive(Debug, Clone)]
pub struct Scanner {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    jobs: usize,
    cache_file: Option<PathBuf>,
    rescan: bool,
    format: Option<Format>,
    sandbox: Option<Caps>,
}

impl Scanner {
    /// A scanner that describes a file by running `program args... --format <lv2|clap|vst3> <path>`, a program
    /// whose `main` hands those two to [`describe_main`]. By default: every format, [`DEFAULT_TIMEOUT`], one
    /// child per core, the cache at [`default_cache_file`].
    pub fn new<A: Into<OsString>>(program: impl Into<PathBuf>, args: impl IntoIterator<Item = A>) -> Scanner {
        Scanner {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_TIMEOUT,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache_file: default_cache_file(),
            rescan: false,
            format: None,
            sandbox: Some(Caps::default_for(std::thread::available_parallelism().map_or(1, |n| n.get()))),
        }
    }

    /// How each child is confined: in a folder of its own with these caps ([`afx_sandbox`]; the default, with
    /// [`Caps::default_for`] the number of cores), or with the user's rights (`None`). The program's `main`
    /// applies the policy it is given as arguments ([`afx_sandbox::Policy::to_args`]) before
    /// [`describe_main`].
    pub fn sandbox(self, caps: Option<Caps>) -> Scanner {
        Scanner { sandbox: caps, ..self }
    }

    /// How long one child may take before it is killed and its file counted as failed.
    pub fn timeout(mut self, timeout: Duration) -> Scanner {
        self.timeout = timeout;
        self
    }

    /// How many children run at once (at least 1).
    pub fn jobs(mut self, jobs: usize) -> Scanner {
        self.jobs = jobs.max(1);
        self
    }

    /// The cache file, or `None` for no cache at all.
    pub fn cache_file(mut self, path: Option<PathBuf>) -> Scanner {
        self.cache_file = path;
        self
    }

    /// Describes every file again, ignoring (and then replacing) what the cache holds.
    pub fn rescan(mut self, rescan: bool) -> Scanner {
        self.rescan = rescan;
        self
    }

    /// Only this format (all when `None`). The cache keeps the other formats' entries.
    pub fn format(mut self, format: Option<Format>) -> Scanner {
        self.format = format;
        self
    }

    /// The protections a child of this scanner runs with, as one such child reports them: the program is run
    /// with the sandbox's arguments and `--sandbox-report`, and prints [`afx_sandbox::Report`] as one JSON line.
    pub fn sandbox_report(&self) -> afx_sandbox::Report {
        let Some(caps) = self.sandbox else { return afx_sandbox::Report::off() };
        let not_checked =
            |why: String| afx_sandbox::Report { missing: vec![format!("not checked: {why}")], ..Default::default() };
        let folder = match afx_sandbox::Folder::new("afx-scan-") {
            Ok(folder) => folder,
            Err(e) => return not_checked(e.to_string()),
        };
        let out = std::process::Command::new(&self.program)
            .args(&self.args)
            .args(caps.policy(&folder).to_args())
            .arg("--sandbox-report")
            .envs(folder.env())
            .output();
        match out {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .find_map(|line| serde_json::from_str(line).ok())
                .unwrap_or_else(|| not_checked(format!("the child printed no report ({})", out.status))),
            Err(e) => not_checked(format!("cannot start {}: {e}", self.program.display())),
        }
    }

    /// Scans: every plugin file found is taken from the cache when unchanged, else described by a child.
    /// Problems with the cache are logged, never returned; a file that fails is a [`Failure`] in the result.
    pub fn scan(&self) -> Catalogue {
        let found = discover(self.format);
        // Search order decides between copies of one plugin in several folders, as in other hosts.
        let order: std::collections::HashMap<PluginFile, usize> =
            found.iter().enumerate().map(|(i, f)| (f.clone(), i)).collect();
        let mut cache = match (&self.cache_file, self.rescan) {
            (Some(path), false) => Cache::load(path),
            _ => Cache::default(),
        };
        let mut stats = ScanStats { files: found.len(), ..ScanStats::default() };
        // Each entry with whether it may be cached.
        let mut entries: Vec<(Entry, bool)> = vec![];
        let mut todo: Vec<(PluginFile, Fingerprint)> = vec![];
        for file in found {
            match Fingerprint::of(&file.path) {
                Ok(print) => match cache.fresh(&file, print) {
                    Some(entry) => entries.push((entry.clone(), true)),
                    None => todo.push((file, print)),
                },
                Err(e) => {
                    // Not cached: it may be readable next time.
                    let failed = Some(format!("cannot read it: {e}"));
                    let fingerprint = Fingerprint { size: 0, modified_ns: 0, files: 0 };
                    entries.push((Entry { file, fingerprint, plugins: vec![], failed }, false));
                }
            }
        }
        stats.cached = entries.iter().filter(|(_, cached)| *cached).count();
        stats.described = todo.len();
        tracing::debug!("scan: {} files, {} from the cache, {} to describe", stats.files, stats.cached, todo.len());
        entries.extend(child::run_all(&self.program, &self.args, self.sandbox, todo, self.timeout, self.jobs));
        if let Some(path) = &self.cache_file {
            // Keep the formats this scan did not look at; drop the files of the others that are gone.
            cache.entries.retain(|file, _| self.format.is_some_and(|f| f != file.format));
            for (entry, _) in entries.iter().filter(|(_, keep)| *keep) {
                cache.entries.insert(entry.file.clone(), entry.clone());
            }
            if let Err(e) = cache.save(path) {
                tracing::warn!("the plugin scan cache was not saved: {e}");
            }
        }
        entries.sort_by_key(|(entry, _)| order[&entry.file]);
        catalogue(entries.into_iter().map(|(entry, _)| entry).collect(), stats)
    }
}

/// The catalogue of a scan's entries, sorted.
fn catalogue(entries: Vec<Entry>, stats: ScanStats) -> Catalogue {
    let mut plugins = vec![];
    let mut failed = vec![];
    for entry in entries {
        if let Some(reason) = entry.failed {
            failed.push(Failure { format: entry.file.format, path: entry.file.path, reason });
        }
        plugins.extend(entry.plugins);
    }
    plugins.sort_by(|a, b| (a.format.as_str(), &a.name, &a.id).cmp(&(b.format.as_str(), &b.name, &b.id)));
    failed.sort_by(|a, b| (a.format.as_str(), &a.path).cmp(&(b.format.as_str(), &b.path)));
    Catalogue { plugins, failed, stats }
}
