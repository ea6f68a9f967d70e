//! Confinement for the processes that run plugin code: afx's pool workers and its scan children.
//!
//! A plugin is a third-party binary. afx runs it only in child processes (a crash never reaches training),
//! and this crate limits what such a child may do to the machine. The parent makes a [`Folder`] for each child
//! (its only writable place, removed when the folder drops) and passes its path and the caps as a [`Policy`];
//! the child calls [`apply`] after it has set up its pipes and shared buffers and before it opens the first
//! plugin library. What is then in force:
//!
//! | rule | how | what a plugin sees |
//! | --- | --- | --- |
//! | writes only in its folder | Landlock (read and execute everywhere, write in the folder and `/dev/null`) | `EACCES` |
//! | no network | a new network namespace where permitted; a seccomp rule: no socket but a Unix one; Landlock's TCP rules | `EACCES`, `ENETUNREACH` |
//! | no new processes | seccomp: `fork`, `vfork` and `clone` without `CLONE_THREAD` fail (threads work) | `EPERM` |
//! | no signals or abstract sockets outside | Landlock scopes (ABI 6) | `EPERM` |
//! | memory | `RLIMIT_DATA` | `malloc` fails; the child exits with [`EXIT_MEMORY`] |
//! | threads | a watch thread counts them | the child exits with [`EXIT_THREADS`] |
//! | CPU time | `RLIMIT_CPU`, moved on by [`cpu_budget`] | the child exits with [`EXIT_CPU`] |
//!
//! Every rule is applied with what the kernel offers: [`Report`] says what is in force and what is missing.
//! The rules are for the plugin's own misdeeds; they are not a boundary against a local attacker who already
//! controls the child (the child may, for instance, still read any file its user can read).

#[cfg(target_os = "linux")]
mod confine;
mod limits;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use limits::{EXIT_CPU, EXIT_MEMORY, EXIT_THREADS, check_threads, cpu_budget};

/// The environment variable that keeps the user's home for plugin discovery, while `HOME` points into the
/// child's [`Folder`] (so plugins write their settings there).
pub const USER_HOME_ENV: &str = "AFX_USER_HOME";

/// The user's home folder, where plugins are installed (`~/.lv2`, `~/.clap`, `~/.vst3`): [`USER_HOME_ENV`] in a
/// sandboxed child, else `HOME`.
pub fn user_home() -> Option<PathBuf> {
    std::env::var_os(USER_HOME_ENV).or_else(|| std::env::var_os("HOME")).map(PathBuf::from)
}

/// What [`apply`] confines a child to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The only folder the child may write (a [`Folder`]'s path).
    pub writable: PathBuf,
    /// The most bytes of data (heap and other private writable memory) the child may hold.
    pub memory: Option<u64>,
    /// The most threads the child may run at once.
    pub threads: Option<usize>,
}

impl Policy {
    /// The command-line arguments that carry this policy to a child: `--sandbox-dir DIR`, then
    /// `--sandbox-memory BYTES` and `--sandbox-threads N` where set. [`Policy::read_arg`] reads them back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--sandbox-dir".to_string(), self.writable.display().to_string()];
        if let Some(bytes) = self.memory {
            args.extend(["--sandbox-memory".to_string(), bytes.to_string()]);
        }
        if let Some(threads) = self.threads {
            args.extend(["--sandbox-threads".to_string(), threads.to_string()]);
        }
        args
    }

    /// Reads one of [`Policy::to_args`]'s flags, taking its value from `value`, into `policy` (`--sandbox-dir`
    /// comes first). `Ok(false)`: `flag` is not one of them.
    pub fn read_arg(
        policy: &mut Option<Policy>,
        flag: &str,
        value: impl FnOnce() -> Result<String, String>,
    ) -> Result<bool, String> {
        match flag {
            "--sandbox-dir" => *policy = Some(Policy { writable: value()?.into(), memory: None, threads: None }),
            "--sandbox-memory" | "--sandbox-threads" => {
                let v = value()?;
                let Some(policy) = policy.as_mut() else { return Err(format!("{flag} needs --sandbox-dir before it")) };
                let n: u64 = v.parse().map_err(|_| format!("{flag}: {v:?} is not a number"))?;
                if flag == "--sandbox-memory" {
                    policy.memory = Some(n);
                } else {
                    policy.threads = Some(n as usize);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The caps a parent gives each child it sandboxes; with the child's own [`Folder`] they make its [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub memory: Option<u64>,
    pub threads: Option<usize>,
}

impl Caps {
    /// [`default_memory`] for `children` children at once, and [`DEFAULT_THREADS`].
    pub fn default_for(children: usize) -> Caps {
        Caps { memory: Some(default_memory(children)), threads: Some(DEFAULT_THREADS) }
    }

    /// These caps with the memory cap `memory` instead, where one is given (a `--worker-memory`, say).
    pub fn with_memory(self, memory: Option<u64>) -> Caps {
        Caps { memory: memory.or(self.memory), ..self }
    }

    /// The policy of a child confined to `folder`.
    pub fn policy(&self, folder: &Folder) -> Policy {
        Policy { writable: folder.path().to_path_buf(), memory: self.memory, threads: self.threads }
    }
}

/// Which protections are in force in a child, and which the kernel or the settings could not give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// One line per protection in force: what it is and how it is enforced.
    pub enforced: Vec<String>,
    /// One line per protection that is not, with why.
    pub missing: Vec<String>,
}

impl Report {
    /// The report of a child that runs with no sandbox at all (`--sandbox off`).
    pub fn off() -> Report {
        Report { enforced: vec![], missing: vec!["everything: the sandbox is off".into()] }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", if self.enforced.is_empty() { "nothing".to_string() } else { self.enforced.join("; ") })?;
        if !self.missing.is_empty() {
            write!(f, " (missing: {})", self.missing.join("; "))?;
        }
        Ok(())
    }
}

/// Confines this process as `policy` says, with every protection the kernel offers; returns what is in force.
///
/// Call it once, early: before any plugin library is opened and while the process has only one thread (a new
/// user or network namespace needs that). It starts the thread watch (a thread of its own) last.
pub fn apply(policy: &Policy) -> Report {
    let mut report = Report::default();
    limits::no_core_dumps();
    if let Some(bytes) = policy.memory {
        limits::cap_memory(bytes, &mut report);
    }
    limits::exit_on_caps(policy.memory);
    #[cfg(target_os = "linux")]
    {
        confine::network_namespace(&mut report);
        confine::landlock(&policy.writable, &mut report);
        confine::seccomp(&mut report);
    }
    #[cfg(not(target_os = "linux"))]
    report.missing.push("filesystem, network and process rules: Linux only".into());
    if let Some(threads) = policy.threads {
        limits::watch_threads(threads, &mut report);
    }
    report
}

/// What a child's exit code says about the caps, if it is one of [`EXIT_MEMORY`], [`EXIT_THREADS`] and
/// [`EXIT_CPU`]: e.g. "memory cap 512 MiB exceeded".
pub fn exit_reason(code: i32, memory: Option<u64>, threads: Option<usize>) -> Option<String> {
    match code {
        EXIT_MEMORY => Some(match memory {
            Some(bytes) => format!("memory cap {} exceeded", format_bytes(bytes)),
            None => "memory cap exceeded".into(),
        }),
        EXIT_THREADS => Some(match threads {
            Some(n) => format!("thread cap {n} exceeded"),
            None => "thread cap exceeded".into(),
        }),
        EXIT_CPU => Some("CPU time cap exceeded (the worker kept computing outside its jobs' time)".into()),
        _ => None,
    }
}

/// `bytes` as a person writes it: "512 MiB", "2 GiB", "1.5 GiB".
pub fn format_bytes(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB {
        let gib = bytes as f64 / GIB as f64;
        if bytes.is_multiple_of(GIB) { format!("{} GiB", bytes / GIB) } else { format!("{gib:.1} GiB") }
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

/// Parses a size as `--worker-memory` takes it: a number of bytes with an optional K, M, G or T suffix (powers
/// of 1024; "2G", "512M", "1.5G").
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let scale: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ if t[..i].trim().parse::<f64>().is_ok() => {
                    return Err(format!("{text:?}: the suffix must be K, M, G or T"));
                }
                _ => return Err(format!("{text:?} is not a size (e.g. 2G, 512M)")),
            };
            (&t[..i], scale)
        }
        _ => (t, 1),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a size (e.g. 2G, 512M)"))?;
    let bytes = value * scale as f64;
    if bytes.is_nan() || bytes < (64 << 20) as f64 || !bytes.is_finite() {
        return Err(format!("{text:?}: a worker needs at least 64M"));
    }
    Ok(bytes as u64)
}

/// The memory cap a worker gets when none is given: half the memory available now, shared by `workers`, and
/// at least 1 GiB, so that the workers together can never take the machine to its OOM killer.
pub fn default_memory(workers: usize) -> u64 {
    let available = limits::available_memory().unwrap_or(8 << 30);
    (available / 2 / workers.max(1) as u64).max(1 << 30)
}

/// The thread cap a child gets when none is given: far above what an effect needs (a few worker threads),
/// far below what would exhaust the machine.
pub const DEFAULT_THREADS: usize = 256;

/// A sandboxed child's own temporary folder: the only place it may write, its `HOME`, XDG folders and
/// `TMPDIR`. Removed when it drops (the parent keeps it for as long as the child runs).
pub struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    /// A new folder under the system's temporary folder, named `{prefix}XXXXXX`.
    pub fn new(prefix: &str) -> std::io::Result<Folder> {
        Ok(Folder { dir: tempfile::Builder::new().prefix(prefix).tempdir()? })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The environment of a child confined to this folder: `HOME`, the XDG folders and `TMPDIR` in it, and
    /// [`USER_HOME_ENV`] keeping the user's home, where plugins are installed.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let dir = self.path().as_os_str().to_owned();
        let sub = |name: &str| self.path().join(name).into_os_string();
        let mut env = vec![
            ("HOME".into(), dir.clone()),
            ("TMPDIR".into(), dir),
            ("XDG_CONFIG_HOME".into(), sub(".config")),
            ("XDG_CACHE_HOME".into(), sub(".cache")),
            ("XDG_DATA_HOME".into(), sub(".local/share")),
            ("XDG_STATE_HOME".into(), sub(".local/state")),
        ];
        if let Some(home) = user_home() {
            env.push((USER_HOME_ENV.into(), home.into_os_string()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_small_or_bad_ones_are_refused() {
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert!(parse_bytes("1M").unwrap_err().contains("at least 64M"));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(parse_bytes("2X").unwrap_err().contains("suffix"));
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn exit_codes_of_the_caps_are_named_and_others_are_not() {
        assert_eq!(exit_reason(EXIT_MEMORY, Some(512 << 20), None).unwrap(), "memory cap 512 MiB exceeded");
        assert_eq!(exit_reason(EXIT_THREADS, None, Some(256)).unwrap(), "thread cap 256 exceeded");
        assert!(exit_reason(EXIT_CPU, None, None).unwrap().starts_with("CPU time cap exceeded"));
        assert_eq!(exit_reason(1, None, None), None);
    }

    #[test]
    fn a_folder_is_the_childs_home_and_goes_when_dropped() {
        let folder = Folder::new("afx-sandbox-test-").unwrap();
        let path = folder.path().to_path_buf();
        let env = folder.env();
        assert!(env.contains(&("HOME".into(), path.clone().into_os_string())));
        assert!(env.iter().any(|(k, v)| k == "XDG_CONFIG_HOME" && Path::new(v).starts_with(&path)));
        drop(folder);
        assert!(!path.exists());
    }
}
