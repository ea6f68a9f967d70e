//! Both sides of a scan child: [`describe_main`] in the child, [`run_all`] in the scanning process.
//!
//! The child prints one JSON line ([`Report`]) on stdout. Plugins may print too, so the parent takes the last
//! line that parses; and it trusts a report only from a child that exited cleanly.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use afx_sandbox::{Caps, Folder};

use super::cache::Entry;
use super::files::{Fingerprint, PluginFile, describe_file};
use crate::info::{Format, PluginInfo};

/// What a child prints: the file's plugins, or why it could not describe them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    plugins: Vec<PluginInfo>,
    #[serde(default)]
    problems: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The child's side: describes one file in this process ([`describe_file`]) and prints the result as one JSON
/// line on stdout, `{"plugins": [...], "problems": [...], "error": null}`. Returns the exit code: 0 also when the
/// file cannot be described (the report says why), 1 only when stdout cannot be written.
pub fn describe_main(format: Format, path: &Path) -> i32 {
    // The report goes out on a handle of its own, fd 1 then being stderr: a plugin that prints to stdout or
    // closes it cannot lose or corrupt the report.
    let mut out = match report_pipe() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("cannot set up the report's pipe: {e}");
            return 1;
        }
    };
    let report = match describe_file(format, path) {
        Ok(d) => Report { plugins: d.plugins, problems: d.problems, error: None },
        Err(e) => Report { error: Some(e.message), ..Report::default() },
    };
    let line = serde_json::to_string(&report).expect("a report serialises");
    match std::io::Write::write_all(&mut out, format!("\n{line}\n").as_bytes()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write the description of {}: {e}", path.display());
            1
        }
    }
}

/// A handle on this process's stdout for the report, with fd 1 pointed at stderr.
fn report_pipe() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor (or -1) that nothing else owns; dup2(2, 1) makes fd 1
    // another name for stderr, which every process has open.
    unsafe {
        let fd = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(std::fs::File::from_raw_fd(fd))
    }
}

/// What the parent keeps of a child's stdout (the report is its last line) and stderr: the last bytes, so a
/// plugin that floods them costs no memory.
const KEEP_STDOUT: usize = 4 << 20;
const KEEP_STDERR: usize = 64 << 10;

/// Reads `pipe` to its end, keeping its last `keep` bytes.
fn read_tail(mut pipe: impl Read, keep: usize) -> Vec<u8> {
    let mut kept = std::collections::VecDeque::with_capacity(keep.min(1 << 16));
    let mut chunk = vec![0u8; 1 << 16];
    while let Ok(n) = pipe.read(&mut chunk) {
        if n == 0 {
            break;
        }
        kept.extend(&chunk[..n]);
        let excess = kept.len().saturating_sub(keep);
        kept.drain(..excess);
    }
    kept.into()
}

/// Describes every file in a child of its own, `jobs` at a time. Each result says whether it may be cached (a
/// child that could not even be started says nothing about its file).
pub(super) fn run_all(
    program: &Path,
    args: &[std::ffi::OsString],
    sandbox: Option<Caps>,
    todo: Vec<(PluginFile, Fingerprint)>,
    timeout: Duration,
    jobs: usize,
) -> Vec<(Entry, bool)> {
    let queue = Mutex::new(todo.into_iter());
    let done = Mutex::new(vec![]);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("no scan thread panics holding the queue").next();
                    let Some((file, fingerprint)) = next else { break };
                    let (plugins, failed, keep) = match run_one(program, args, sandbox, &file, timeout) {
                        Outcome::Report(r) if r.error.is_some() => (vec![], r.error, true),
                        Outcome::Report(r) => {
                            let failed = (!r.problems.is_empty()).then(|| r.problems.join("; "));
                            (r.plugins, failed, true)
                        }
                        Outcome::Failed(reason) => (vec![], Some(reason), true),
                        Outcome::NotStarted(reason) => (vec![], Some(reason), false),
                    };
                    tracing::debug!("scan: described {} {}: {failed:?}", file.format, file.path.display());
                    let entry = Entry { file, fingerprint, plugins, failed };
                    done.lock().expect("no scan thread panics holding the results").push((entry, keep));
                }
            });
        }
    });
    done.into_inner().expect("the scan threads are done")
}

enum Outcome {
    Report(Report),
    /// The child crashed, hung, or printed no report.
    Failed(String),
    /// The child could not be started.
    NotStarted(String),
}

fn run_one(
    program: &Path,
    args: &[std::ffi::OsString],
    sandbox: Option<Caps>,
    file: &PluginFile,
    timeout: Duration,
) -> Outcome {
    let mut command = Command::new(program);
    command.args(args);
    // The child's folder lives until its outcome is known (this function's end).
    let folder = match sandbox.map(|_| Folder::new("afx-scan-")).transpose() {
        Ok(folder) => folder,
        Err(e) => return Outcome::NotStarted(format!("cannot make the describing process's sandbox folder: {e}")),
    };
    if let (Some(caps), Some(folder)) = (sandbox, &folder) {
        command.args(caps.policy(folder).to_args()).envs(folder.env());
    }
    command
        .arg("--format")
        .arg(file.format.as_str())
        .arg(&file.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a hung child is killed with anything it started.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::NotStarted(format!("cannot start {}: {e}", program.display())),
    };
    let (sender, outputs) = mpsc::channel();
    for (stream, pipe) in [
        (0, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        (1, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let keep = if stream == 0 { KEEP_STDOUT } else { KEEP_STDERR };
            let bytes = pipe.map(|pipe| read_tail(pipe, keep)).unwrap_or_default();
            let _ = sender.send((stream, bytes));
        });
    }
    let start = Instant::now();
    let status = wait(&mut child, timeout);
    let timed_out = || Outcome::Failed(format!("timed out after {}", seconds(timeout)));
    let Some(status) = status else {
        return timed_out();
    };
    // The pipes close when the child exits, unless something it started still holds them.
    let (mut stdout, mut stderr) = (vec![], vec![]);
    for _ in 0..2 {
        match outputs.recv_timeout(timeout.saturating_sub(start.elapsed()).max(Duration::from_millis(100))) {
            Ok((0, bytes)) => stdout = bytes,
            Ok((_, bytes)) => stderr = bytes,
            Err(_) => return timed_out(),
        }
    }
    let report =
        String::from_utf8_lossy(&stdout).lines().rev().find_map(|line| serde_json::from_str::<Report>(line).ok());
    let cap =
        sandbox.zip(status.code()).and_then(|(caps, code)| afx_sandbox::exit_reason(code, caps.memory, caps.threads));
    match (report, cap) {
        (Some(report), None) if status.success() => Outcome::Report(report),
        (_, Some(cap)) => Outcome::Failed(format!("sandbox: {cap}{}", stderr_tail(&stderr))),
        _ => Outcome::Failed(format!("{}{}", exit_reason(status), stderr_tail(&stderr))),
    }
}

/// Waits for the child at most `timeout`; on time-out kills its process group and returns `None`.
fn wait(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < timeout => {
                std::thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            _ => {
                let pid = child.id() as i32;
                // SAFETY: kill only sends a signal. The group is the child's own (process_group(0) above), and the
                // child is not reaped yet, so its id cannot name another process.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// "killed by signal 11 (SIGSEGV)", "exited with code 3", or, for a clean exit, that it printed no description.
fn exit_reason(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(signal), _) => format!("killed by signal {signal} ({})", signal_name(signal)),
        (_, Some(0)) => "the describing process printed no description".into(),
        (_, Some(code)) => format!("the describing process exited with code {code}"),
        _ => format!("the describing process ended with {status}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "a signal",
    }
}

/// The last lines of what the child wrote on stderr (at most 5 lines and 600 characters), after "; stderr: ".
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    let start = tail.char_indices().rev().nth(599).map_or(0, |(i, _)| i);
    format!("; stderr: {}{}", if start > 0 { "..." } else { "" }, &tail[start..])
}

/// "20 s", "0.5 s".
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{} s", d.as_secs()) } else { format!("{} s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_signal_or_the_code() {
        assert_eq!(exit_reason(ExitStatus::from_raw(11)), "killed by signal 11 (SIGSEGV)");
        assert_eq!(exit_reason(ExitStatus::from_raw(6)), "killed by signal 6 (SIGABRT)");
        assert_eq!(exit_reason(ExitStatus::from_raw(3 << 8)), "the describing process exited with code 3");
        assert_eq!(seconds(Duration::from_secs(20)), "20 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(stderr_tail(b"a\n\nb\n"), "; stderr: a | b");
        assert_eq!(stderr_tail(b""), "");
    }

    fn scan_with(script: &str, timeout: Duration) -> (Entry, bool) {
        let file = PluginFile { format: Format::Clap, path: "/x/A.clap".into() };
        let print = Fingerprint { size: 1, modified_ns: 1, files: 1 };
        let args = ["-c".into(), script.into(), "sh".into()];
        run_all(Path::new("/bin/sh"), &args, None, vec![(file, print)], timeout, 2).remove(0)
    }

    #[test]
    fn a_crashing_hanging_or_mute_child_fails_its_file_with_the_reason() {
        let (entry, keep) = scan_with("echo 'plugin says hi' >&2; kill -SEGV $$", Duration::from_secs(10));
        assert!(keep);
        assert_eq!(entry.failed.as_deref(), Some("killed by signal 11 (SIGSEGV); stderr: plugin says hi"));
        // The hung child is killed at its time-out, so the scan returns long before the child's own sleep would
        // end; the receive's limit (shorter than that sleep) only stops this test from hanging when it is not.
        let (sender, scanned) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(scan_with("sleep 120", Duration::from_millis(300))));
        let (entry, _) = scanned.recv_timeout(Duration::from_secs(60)).expect("the hung child was not killed");
        assert_eq!(entry.failed.as_deref(), Some("timed out after 0.3 s"));
        let (entry, _) = scan_with("echo not json; echo oops >&2", Duration::from_secs(10));
        assert_eq!(entry.failed.as_deref(), Some("the describing process printed no description; stderr: oops"));
    }

    #[test]
    fn a_report_after_plugin_chatter_is_read_and_its_problems_kept() {
        let report = r#"{"plugins":[],"problems":["plugin \"x\": no ports"],"error":null}"#;
        let (entry, keep) = scan_with(&format!("echo chatter; echo '{report}'"), Duration::from_secs(10));
        assert!(keep);
        assert_eq!(entry.failed.as_deref(), Some("plugin \"x\": no ports"));
        let (entry, _) = scan_with(r#"echo '{"plugins":[],"error":"not an LV2 bundle"}'"#, Duration::from_secs(10));
        assert_eq!(entry.failed.as_deref(), Some("not an LV2 bundle"));
    }

    #[test]
    fn a_program_that_cannot_start_is_not_cached() {
        let file = PluginFile { format: Format::Vst3, path: "/x/A.vst3".into() };
        let print = Fingerprint { size: 1, modified_ns: 1, files: 1 };
        let no_args: [std::ffi::OsString; 0] = [];
        let (entry, keep) =
            run_all(Path::new("/nonexistent/afx"), &no_args, None, vec![(file, print)], Duration::from_secs(1), 1)
                .remove(0);
        assert!(!keep);
        assert!(entry.failed.unwrap().starts_with("cannot start /nonexistent/afx"));
    }
}
