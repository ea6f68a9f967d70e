//! The caps on a child's resources: memory (`RLIMIT_DATA`), threads (a watch thread), CPU time (`RLIMIT_CPU`),
//! and the exit codes that name the cap a child ran into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Report;

/// A child that ran out of its memory cap exits with this code (its allocation failed, and the plugin or the
/// allocator then crashed the process).
pub const EXIT_MEMORY: i32 = 86;
/// A child that ran more threads than its cap exits with this code.
pub const EXIT_THREADS: i32 = 87;
/// A child that used more CPU time than [`cpu_budget`] gave it exits with this code.
pub const EXIT_CPU: i32 = 88;

/// The memory cap in bytes, for the crash handler (0: none).
static MEMORY_CAP: AtomicU64 = AtomicU64::new(0);
/// The page size, read once before any handler may run (sysconf is not async-signal-safe).
static PAGE_SIZE: AtomicU64 = AtomicU64::new(4096);

pub(crate) fn no_core_dumps() {
    set_limit(libc::RLIMIT_CORE, 0, 0);
}

/// Caps the child's data (heap, anonymous private memory) at `bytes`: an allocation past it fails with ENOMEM.
/// `RLIMIT_DATA` rather than `RLIMIT_AS`: address space a thread or allocator merely reserves does not count.
pub(crate) fn cap_memory(bytes: u64, report: &mut Report) {
    if set_limit(libc::RLIMIT_DATA, bytes, bytes) {
        report.enforced.push(format!("memory: {} of data (RLIMIT_DATA)", crate::format_bytes(bytes)));
    } else {
        report.missing.push(format!("memory cap: setrlimit failed: {}", std::io::Error::last_os_error()));
    }
}

/// Moves the child's CPU-time cap to `seconds` past what it has used so far: a worker calls it as each job
/// starts, with what a job may use in its wall-clock limit, so a plugin that keeps computing between jobs (a
/// runaway thread) is ended with [`EXIT_CPU`]. Only the soft limit moves: raising a hard limit needs a
/// privilege the child may not have.
pub fn cpu_budget(seconds: u64) {
    // SAFETY: getrusage fills the struct we own.
    let used = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) as u64 + 1
    };
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_CPU, &mut limit) } != 0 {
        return;
    }
    let soft = used.saturating_add(seconds);
    let soft = if limit.rlim_max == libc::RLIM_INFINITY { soft } else { soft.min(limit.rlim_max) };
    set_limit(libc::RLIMIT_CPU, soft, limit.rlim_max);
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(resource, &limit) == 0 }
}

/// Installs the handlers that turn a cap into an exit code: SIGXCPU (the CPU cap) exits with [`EXIT_CPU`]; a
/// crash (SIGABRT, SIGSEGV, SIGBUS) while the child's data is within 10 % of its memory cap exits with
/// [`EXIT_MEMORY`] (a failed allocation ends in one of those, by the allocator's or the plugin's hand). Any
/// other crash goes on as it would have.
pub(crate) fn exit_on_caps(memory: Option<u64>) {
    MEMORY_CAP.store(memory.unwrap_or(0), Ordering::Relaxed);
    // SAFETY: sysconf is called before any handler is installed.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        PAGE_SIZE.store(page as u64, Ordering::Relaxed);
    }
    install(libc::SIGXCPU, on_cpu_cap as *const () as libc::sighandler_t, 0);
    if memory.is_some() {
        for signal in [libc::SIGABRT, libc::SIGSEGV, libc::SIGBUS] {
            install(signal, on_crash as *const () as libc::sighandler_t, libc::SA_RESETHAND);
        }
    }
}

fn install(signal: libc::c_int, handler: libc::sighandler_t, flags: libc::c_int) {
    // SAFETY: a zeroed sigaction with an empty mask, our handler (which only makes async-signal-safe calls) and
    // SA_ONSTACK (Rust's alternate stack where the thread has one).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_cpu_cap(_: libc::c_int) {
    say(b"afx sandbox: CPU time cap exceeded\n");
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(EXIT_CPU) };
}

extern "C" fn on_crash(_: libc::c_int) {
    let cap = MEMORY_CAP.load(Ordering::Relaxed);
    if cap > 0 && data_bytes().is_some_and(|data| data >= cap / 10 * 9) {
        say(b"afx sandbox: memory cap exceeded\n");
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(EXIT_MEMORY) };
    }
    // Not the cap: return, and the signal (reset to its default by SA_RESETHAND) ends the process as it would
    // have without this handler.
}

/// Writes to stderr from a signal handler (write(2) is async-signal-safe; a closed stderr loses it).
fn say(message: &[u8]) {
    // SAFETY: write reads `message` for its length.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
}

/// The child's data in bytes, from /proc/self/statm (its sixth field, in pages), with async-signal-safe calls
/// only: open, read, close, and parsing on the stack.
fn data_bytes() -> Option<u64> {
    let mut text = [0u8; 256];
    // SAFETY: open of a NUL-terminated path; read into our stack buffer for its length; close of our fd.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, text.as_mut_ptr().cast(), text.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    let field = text[..n as usize].split(|&b| b == b' ').nth(5)?;
    let pages = field.iter().take_while(|b| b.is_ascii_digit()).fold(0u64, |v, &b| v * 10 + u64::from(b - b'0'));
    Some(pages * PAGE_SIZE.load(Ordering::Relaxed))
}

/// The thread cap, for [`check_threads`] (0: none).
static THREAD_CAP: AtomicU64 = AtomicU64::new(0);

/// Ends the child with [`EXIT_THREADS`] if it runs more threads than its cap now. The watch thread checks every
/// 20 ms; a worker also calls this after each job, before its result goes out, so a job that started too many
/// threads fails itself rather than the next one.
pub fn check_threads() {
    let cap = THREAD_CAP.load(Ordering::Relaxed) as usize;
    if cap > 0
        && let Some(n) = thread_count()
        && n > cap
    {
        eprintln!("afx sandbox: thread cap {cap} exceeded ({n} threads)");
        // SAFETY: _exit ends the process at once, running no destructor of the plugin's.
        unsafe { libc::_exit(EXIT_THREADS) };
    }
}

/// Starts a thread that ends the child with [`EXIT_THREADS`] once it runs more than `cap` threads: no rlimit
/// counts one process's threads (`RLIMIT_NPROC` counts the user's, and is not enforced for root).
pub(crate) fn watch_threads(cap: usize, report: &mut Report) {
    THREAD_CAP.store(cap as u64, Ordering::Relaxed);
    let spawned = std::thread::Builder::new().name("afx-sandbox-threads".into()).stack_size(64 << 10).spawn(|| {
        loop {
            check_threads();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    match spawned {
        Ok(_) => report.enforced.push(format!("threads: at most {cap}")),
        Err(e) => report.missing.push(format!("thread cap: no watch thread: {e}")),
    }
}

fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

/// MemAvailable from /proc/meminfo, in bytes.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
