//! The DSP core of afx's own test effect, shared by its CLAP, VST3 and LV2 wrappers (`afx-testfx`).
//!
//! Mono in, mono out: `drive` (dB) into a tanh soft clipper, a one-pole low-pass at `tone` (Hz), then output
//! `gain` (dB). The three interact (drive sets how hard the clipper bends, the low-pass smooths what it adds,
//! gain scales the result), which is what a training harness needs from a small known effect.
//!
//! Everything is deterministic and exact on purpose, so hosts and formats can be compared bit for bit:
//! - a parameter change takes effect at the next sample processed, with no smoothing;
//! - the output does not depend on how the input is split into blocks;
//! - values that would become denormal are flushed to zero here, so the output is the same whether or not the
//!   host sets flush-to-zero on its thread.
//!
//! The `fault` parameter makes [`TestFx::process`] misbehave on demand, to test how a host survives a broken
//! plugin. `AFX_TESTFX_FAULT=abort|segfault|hang|nan` (read when the effect is made) arms a fault that fires
//! only while `drive` is at least [`ARMED_DRIVE_DB`]: like a real plugin that crashes in one corner of its
//! parameter space, so a test can put the fault in one item of a batch through that item's parameters.
//! `AFX_TESTFX_FAULT=load-abort|load-segfault|load-hang` instead breaks the plugin where a host loads or
//! describes it ([`fire_load_fault`], called by every format's entry point): no render fault is armed then.
//!
//! The hostile faults, armed the same two ways (`AFX_TESTFX_FAULT=<name>` at render, `load-<name>` at load; no
//! `fault` parameter value), do what a sandbox or process isolation should stop or survive: `write-file` writes
//! the file `AFX_TESTFX_TARGET` names, `connect` sends a few bytes to 127.0.0.1 port `AFX_TESTFX_PORT`, `fork`
//! leaves a stray child, `threads` starts a thousand sleeping threads, `stdout` floods stdout and `close-stdio`
//! closes descriptors 0 to 2; `alloc` allocates until it runs out of memory and aborts. All but `alloc` then go on:
//! a render's output is the unfaulted one bit for bit. They fire once per instance, at its first armed block, and
//! once per process at load. [`Fault`] says what each one does exactly.
//!
//! `AFX_TESTFX_LATENCY=L` (read when the effect is made, like the fault; a whole number of frames, at most
//! [`MAX_LATENCY`]; unset, empty or unparsable is 0) makes the effect a lookahead plugin that reports `L` frames
//! of latency (CLAP's latency extension, VST3's `getLatencySamples`, LV2's `latency` control output): the input
//! goes through an `L`-frame delay line in front of drive, tone and gain, and the parameters in effect at a sample
//! apply to the delayed signal there. So output sample `s` is the zero-latency effect of input sample `s - L`
//! (zeros before the first) under the parameters of sample `s`, and a host that shifts its parameter changes by
//! the latency (as afx does) gets the zero-latency output back bit for bit. With `L = 0` there is no delay line at
//! all. [`TestFx::with_latency`] sets `L` without the environment.
//!
//! The effect's exact derivatives are known, which no real plugin offers: [`sensitivities`] runs the same
//! recurrence in f64 and carries, by forward-mode differentiation, the derivative of every output sample with
//! respect to each parameter's plain value, and [`vjp`] contracts them with an output gradient in one pass. A host
//! can so measure how far the gradient it estimates of the packaged plugin (finite differences, SPSA, a proxy
//! model) is from the true one. The f64 twin differs from [`TestFx::process`] only by f32 rounding; it skips the
//! flushing of values below 1e-30, a change far below anything measurable.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The LV2 plugin URI of the packaged effect.
pub const LV2_URI: &str = "urn:afx:testfx";
/// The CLAP plugin id of the packaged effect.
pub const CLAP_ID: &str = "org.afx.testfx";
/// The VST3 class id of the packaged effect's processor, as hosts print it (32 hex digits, memory order).
pub const VST3_CLASS_ID: &str = "61667874657374667876737433010001";

/// One parameter, described once here so every format reports the same metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamInfo {
    /// Stable identifier: the LV2 port symbol; CLAP and VST3 use the index in [`PARAMS`] as numeric id.
    pub id: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// Unit symbol, empty when there is none.
    pub unit: &'static str,
    pub min: f32,
    pub max: f32,
    pub default: f32,
    /// The normalised [0, 1] space maps onto the range logarithmically (`min * (max / min)^n`).
    pub log: bool,
    /// Only whole numbers are meaningful.
    pub integer: bool,
}

/// Index of `drive` in [`PARAMS`].
pub const DRIVE: usize = 0;
/// Index of `tone` in [`PARAMS`].
pub const TONE: usize = 1;
/// Index of `gain` in [`PARAMS`].
pub const GAIN: usize = 2;
/// Index of `fault` in [`PARAMS`].
pub const FAULT: usize = 3;

/// Every parameter, in the order of their indices (the CLAP/VST3 ids and the LV2 control port order).
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { id: "drive", name: "Drive", unit: "dB", min: 0.0, max: 24.0, default: 6.0, log: false, integer: false },
    ParamInfo {
        id: "tone",
        name: "Tone",
        unit: "Hz",
        min: 200.0,
        max: 20000.0,
        default: 5000.0,
        log: true,
        integer: false,
    },
    ParamInfo { id: "gain", name: "Gain", unit: "dB", min: -24.0, max: 12.0, default: 0.0, log: false, integer: false },
    ParamInfo { id: "fault", name: "Fault", unit: "", min: 0.0, max: 4.0, default: 0.0, log: false, integer: true },
];

/// Labels of the `fault` values 0..=4, for hosts that show enumerations.
pub const FAULT_LABELS: [&str; 5] = ["none", "abort", "segfault", "hang", "nan"];

impl ParamInfo {
    /// Maps a normalised value in [0, 1] (clamped) to the plain range; integers are rounded.
    ///
    /// The same mapping as afx's `ParamSpec::to_plain`, so VST3's normalised values mean what afx means.
    pub fn to_plain(&self, normalized: f64) -> f64 {
        let n = normalized.clamp(0.0, 1.0);
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let plain = if self.log { min * (max / min).powf(n) } else { min + n * (max - min) };
        let plain = plain.clamp(min, max);
        if self.integer { plain.round() } else { plain }
    }

    /// Maps a plain value (clamped to the range) to [0, 1]; the inverse of [`ParamInfo::to_plain`].
    pub fn to_normalized(&self, plain: f64) -> f64 {
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let p = plain.clamp(min, max);
        let n = if self.log { (p / min).ln() / (max / min).ln() } else { (p - min) / (max - min) };
        n.clamp(0.0, 1.0)
    }

    /// The derivative of [`ParamInfo::to_plain`] at `normalized`: `max - min` for a linear range,
    /// `plain * ln(max / min)` for a log one, 0 for integers (a step function) and outside [0, 1] (clamped there).
    ///
    /// With it a host turns the plain-value derivatives of [`sensitivities`] into derivatives with respect to the
    /// normalised values it optimises.
    pub fn d_plain_d_normalized(&self, normalized: f64) -> f64 {
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        if self.integer || !(0.0..=1.0).contains(&normalized) {
            0.0
        } else if self.log {
            self.to_plain(normalized) * (max / min).ln()
        } else {
            max - min
        }
    }

    /// The value the effect uses for a requested plain value: clamped to the range, integers rounded.
    pub fn sanitize(&self, value: f32) -> f32 {
        let v = value.clamp(self.min, self.max);
        if self.integer { v.round() } else { v }
    }
}

/// The index in [`PARAMS`] of the parameter with this id.
pub fn param_index(id: &str) -> Option<usize> {
    PARAMS.iter().position(|p| p.id == id)
}

/// A deliberate failure of [`TestFx::process`] or of loading the plugin.
///
/// The fatal ones ([`Fault::is_fatal`]) end or hang the process; the hostile ones misbehave towards the host
/// (its files, network, memory, processes, threads, stdio) and then let the effect go on as if there were no
/// fault. `Nan` corrupts the output only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// `std::process::abort()`.
    Abort,
    /// A write through a null pointer (SIGSEGV).
    Segfault,
    /// Never returns.
    Hang,
    /// Writes NaN to every output sample.
    Nan,
    /// Writes [`HOSTILE_TEXT`] to the file [`FaultTargets::file`] names; a failed write is ignored.
    WriteFile,
    /// Connects to 127.0.0.1 at [`FaultTargets::port`] and sends [`HOSTILE_TEXT`]; failures are ignored.
    Connect,
    /// Allocates and touches memory in [`ALLOC_CHUNK`] pieces until an allocation fails, then aborts, as a plugin
    /// that dies of running out of memory (stopping at [`ALLOC_CAP`], where it aborts too).
    Alloc,
    /// Forks a child in a session of its own, named [`HOSTILE_NAME`], that sleeps [`HOSTILE_SLEEP`]: a stray
    /// process outliving the host's process group, holding the host's inherited file descriptors.
    Fork,
    /// Starts up to [`HOSTILE_THREADS`] threads named [`HOSTILE_NAME`] that sleep [`HOSTILE_SLEEP`], stopping at
    /// the first that cannot start.
    Threads,
    /// Floods stdout with [`STDOUT_LINES_BYTES`] of `x` lines, then [`STDOUT_TAIL_BYTES`] with no newline.
    Stdout,
    /// Closes file descriptors 0, 1 and 2.
    CloseStdio,
}

/// The file `write-file` writes and the bytes `connect` sends.
pub const HOSTILE_TEXT: &str = "afx test effect was here\n";
/// The name of the `fork` fault's child and of the `threads` fault's threads, to find them by.
pub const HOSTILE_NAME: &str = "afx-hostile";
/// How long the `fork` fault's child and the `threads` fault's threads live.
pub const HOSTILE_SLEEP: Duration = Duration::from_secs(600);
/// How many threads the `threads` fault starts at most.
pub const HOSTILE_THREADS: usize = 1000;
/// The stack of each of the `threads` fault's threads: small, so the thread count runs out before memory.
const HOSTILE_STACK: usize = 64 << 10;
/// The `alloc` fault allocates in pieces of this many bytes.
pub const ALLOC_CHUNK: usize = 16 << 20;
/// The `alloc` fault gives up (and aborts) after this many bytes, so a machine with no memory limit survives it.
pub const ALLOC_CAP: u64 = 64 << 30;
/// How much the `stdout` fault prints in newline-terminated lines of `x`.
pub const STDOUT_LINES_BYTES: usize = 16 << 20;
/// How much the `stdout` fault prints after the lines, with no newline: a last line a host reading lines never
/// sees end.
pub const STDOUT_TAIL_BYTES: usize = 1 << 20;

/// Every fault with an `AFX_TESTFX_FAULT` name, by that name (the render-time one; `load-` makes the load-time
/// one, except for `nan`).
const NAMED: [(&str, Fault); 11] = [
    ("abort", Fault::Abort),
    ("segfault", Fault::Segfault),
    ("hang", Fault::Hang),
    ("nan", Fault::Nan),
    ("write-file", Fault::WriteFile),
    ("connect", Fault::Connect),
    ("alloc", Fault::Alloc),
    ("fork", Fault::Fork),
    ("threads", Fault::Threads),
    ("stdout", Fault::Stdout),
    ("close-stdio", Fault::CloseStdio),
];

/// Where the hostile faults aim. Read from the environment once, where a fault is read, and passed to
/// [`Fault::fire`] so tests can aim a fault without setting the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultTargets {
    /// `AFX_TESTFX_TARGET`: the file `write-file` writes. Without it nothing is written.
    pub file: Option<PathBuf>,
    /// `AFX_TESTFX_PORT`: the 127.0.0.1 port `connect` connects to. Without it (or with no port number) no
    /// connection is made.
    pub port: Option<u16>,
}

impl FaultTargets {
    /// The targets `AFX_TESTFX_TARGET` and `AFX_TESTFX_PORT` name (an unset or empty one is none).
    pub fn from_env() -> FaultTargets {
        FaultTargets {
            file: std::env::var_os("AFX_TESTFX_TARGET").filter(|v| !v.is_empty()).map(PathBuf::from),
            port: std::env::var("AFX_TESTFX_PORT").ok().and_then(|v| v.trim().parse().ok()),
        }
    }
}

impl Fault {
    /// The fault with this `fault` parameter value (0..=4); anything else is no fault. The hostile faults have no
    /// value: only `AFX_TESTFX_FAULT` arms them.
    pub fn from_value(value: f32) -> Fault {
        match value.round() as i32 {
            1 => Fault::Abort,
            2 => Fault::Segfault,
            3 => Fault::Hang,
            4 => Fault::Nan,
            _ => Fault::None,
        }
    }

    /// The fault named by an `AFX_TESTFX_FAULT` value (`abort`, `segfault`, `hang`, `nan`, `write-file`,
    /// `connect`, `alloc`, `fork`, `threads`, `stdout`, `close-stdio`); anything else is none.
    pub fn from_name(name: &str) -> Fault {
        Fault::by_name(name.trim())
    }

    fn by_name(name: &str) -> Fault {
        NAMED.iter().find(|(n, _)| *n == name).map_or(Fault::None, |&(_, f)| f)
    }

    /// The fault `AFX_TESTFX_FAULT` asks for.
    pub fn from_env() -> Fault {
        std::env::var("AFX_TESTFX_FAULT").map(|v| Fault::from_name(&v)).unwrap_or_default()
    }

    /// The load-time fault named by an `AFX_TESTFX_FAULT` value: `load-` and a render-time name other than `nan`
    /// (`load-abort`, `load-write-file`, ...); anything else (the render faults included) is none.
    pub fn from_load_name(name: &str) -> Fault {
        match name.trim().strip_prefix("load-").map(Fault::by_name) {
            Some(Fault::Nan) | None => Fault::None,
            Some(fault) => fault,
        }
    }

    /// The load-time fault `AFX_TESTFX_FAULT` asks for.
    pub fn load_from_env() -> Fault {
        std::env::var("AFX_TESTFX_FAULT").map(|v| Fault::from_load_name(&v)).unwrap_or_default()
    }

    /// Whether [`Fault::fire`] never returns: the process crashes, aborts or hangs.
    pub fn is_fatal(self) -> bool {
        matches!(self, Fault::Abort | Fault::Segfault | Fault::Hang | Fault::Alloc)
    }

    /// Whether [`Fault::fire`] misbehaves towards the host and then returns, leaving the effect's output alone.
    pub fn is_hostile(self) -> bool {
        matches!(
            self,
            Fault::WriteFile | Fault::Connect | Fault::Fork | Fault::Threads | Fault::Stdout | Fault::CloseStdio
        )
    }

    /// Does what this fault says, `stage` telling where in the last words printed first to stderr: the fatal
    /// faults do not return, the hostile ones return once done. `Nan` and `None` do nothing here (the NaN is
    /// written by [`TestFx::process`]).
    pub fn fire(self, stage: &str, targets: &FaultTargets) {
        if self.is_fatal() || self.is_hostile() {
            // Like a real plugin's last words: hosts should capture and show them with the failure.
            eprintln!("afx test effect: deliberate {self:?} fault {stage}");
        }
        match self {
            Fault::None | Fault::Nan => {}
            Fault::Abort => std::process::abort(),
            Fault::Segfault => {
                // SAFETY: not safe, on purpose: the `segfault` fault exists to crash the process the way a
                // buggy plugin does, so a host's crash isolation can be tested. The volatile write keeps the
                // compiler from removing or reasoning about it.
                unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
                unreachable!("a write through a null pointer returned")
            }
            Fault::Hang => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            Fault::Alloc => allocate_until_failure(),
            Fault::WriteFile => {
                if let Some(file) = &targets.file {
                    // A denied write is what a sandboxed host should cause: the effect goes on regardless.
                    let _ = std::fs::write(file, HOSTILE_TEXT);
                }
            }
            Fault::Connect => {
                if let Some(port) = targets.port {
                    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                        let _ = stream.write_all(HOSTILE_TEXT.as_bytes());
                    }
                }
            }
            Fault::Fork => fork_a_stray(),
            Fault::Threads => {
                spawn_sleepers(HOSTILE_THREADS);
            }
            Fault::Stdout => {
                let _ = flood_stdout();
            }
            Fault::CloseStdio => close_stdio(),
        }
    }
}

/// The `alloc` fault: keeps allocating and touching [`ALLOC_CHUNK`]s until one cannot be had, then aborts
/// with a line on stderr, as a plugin out of memory dies. Where the kernel kills instead (an OOM killer, a
/// cgroup limit), the process dies of SIGKILL before that.
fn allocate_until_failure() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity((ALLOC_CAP / ALLOC_CHUNK as u64) as usize);
    let mut total: u64 = 0;
    while total < ALLOC_CAP {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(ALLOC_CHUNK).is_err() {
            eprintln!("afx test effect: allocation failed after {} MiB", total >> 20);
            std::process::abort();
        }
        // One write per page makes the memory resident, not merely reserved.
        for byte in chunk.spare_capacity_mut().iter_mut().step_by(4096) {
            byte.write(1);
        }
        kept.push(std::hint::black_box(chunk));
        total += ALLOC_CHUNK as u64;
    }
    eprintln!("afx test effect: allocated {} MiB without a failure; giving up", total >> 20);
    std::process::abort()
}

/// The `fork` fault: a child in a new session, named [`HOSTILE_NAME`], that sleeps [`HOSTILE_SLEEP`] and exits.
/// A failed fork is ignored. Nothing on other systems than Unix.
fn fork_a_stray() {
    #[cfg(unix)]
    {
        // SAFETY: fork has no memory-safety preconditions; in a multithreaded parent the child may only call
        // async-signal-safe functions, and it calls nothing else (setsid, prctl, sleep, _exit). Not harmless,
        // on purpose: the stray child is what a host's process isolation should contain.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above; the name is a NUL-terminated string that outlives the call.
            unsafe {
                libc::setsid();
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_NAME, c"afx-hostile".as_ptr());
                let mut left = HOSTILE_SLEEP.as_secs() as libc::c_uint;
                while left > 0 {
                    left = libc::sleep(left);
                }
                libc::_exit(0);
            }
        }
    }
}

/// Starts up to `count` threads named [`HOSTILE_NAME`] that sleep [`HOSTILE_SLEEP`], stopping at the first that
/// cannot start; returns how many started.
fn spawn_sleepers(count: usize) -> usize {
    (0..count)
        .take_while(|_| {
            std::thread::Builder::new()
                .name(HOSTILE_NAME.into())
                .stack_size(HOSTILE_STACK)
                .spawn(|| std::thread::sleep(HOSTILE_SLEEP))
                .is_ok()
        })
        .count()
}

/// The `stdout` fault's text, flushed; stops at the first error (a closed stdout, say).
fn flood_stdout() -> std::io::Result<()> {
    let mut line = [b'x'; 1024];
    line[1023] = b'\n';
    let mut out = std::io::stdout().lock();
    for _ in 0..STDOUT_LINES_BYTES / line.len() {
        out.write_all(&line)?;
    }
    out.write_all(&vec![b'x'; STDOUT_TAIL_BYTES])?;
    out.flush()
}

/// The `close-stdio` fault: closes file descriptors 0, 1 and 2. Nothing on other systems than Unix.
fn close_stdio() {
    #[cfg(unix)]
    for fd in 0..=2 {
        // SAFETY: not safe, on purpose: the descriptors belong to the host (and to std's stdio handles, which
        // then report EBADF, or write into whatever file the host opens next under these numbers); a plugin
        // that closes them is what this fault imitates.
        unsafe { libc::close(fd) };
    }
}

/// Fires the load-time fault `AFX_TESTFX_FAULT` asks for (`load-abort`, `load-segfault`, `load-hang`,
/// `load-alloc`, or a hostile `load-write-file`, `load-connect`, ...), if any. Each format's entry point calls it
/// (LV2 `lv2_descriptor`, CLAP entry init, VST3 `GetPluginFactory`), so a host that merely loads or describes the
/// plugin crashes, hangs or is misbehaved against, like one with a broken plugin installed. A hostile load fault
/// fires once per process, however often a host calls the entry point.
pub fn fire_load_fault() {
    static HOSTILE: std::sync::Once = std::sync::Once::new();
    let fault = Fault::load_from_env();
    if fault.is_fatal() {
        fault.fire("at load", &FaultTargets::default());
    } else if fault.is_hostile() {
        HOSTILE.call_once(|| fault.fire("at load", &FaultTargets::from_env()));
    }
}

/// With `AFX_TESTFX_FAULT` set, the fault fires when `drive` is at least this many dB (its top 1/24).
pub const ARMED_DRIVE_DB: f32 = 23.0;

/// The largest latency, in frames, the effect reports: `AFX_TESTFX_LATENCY` and [`TestFx::with_latency`] are
/// capped here.
pub const MAX_LATENCY: usize = 65536;

/// The latency an `AFX_TESTFX_LATENCY` value asks for: a whole number of frames, capped at [`MAX_LATENCY`];
/// empty, negative or not a number is 0.
pub fn latency_from_str(value: &str) -> usize {
    match value.trim().parse::<u64>() {
        Ok(frames) => usize::try_from(frames).unwrap_or(usize::MAX).min(MAX_LATENCY),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => MAX_LATENCY,
        Err(_) => 0,
    }
}

/// The latency `AFX_TESTFX_LATENCY` asks for (0 when it is unset): what [`TestFx::new`] uses, and what a format
/// reports where it must answer before it makes a [`TestFx`].
pub fn latency_from_env() -> usize {
    std::env::var("AFX_TESTFX_LATENCY").map(|v| latency_from_str(&v)).unwrap_or(0)
}

/// Values this small or smaller become exactly zero, far above the denormal range (~1.2e-38), so no
/// intermediate result depends on the host's flush-to-zero setting.
const FLUSH_BELOW: f32 = 1e-30;

fn flush(v: f32) -> f32 {
    if v.abs() < FLUSH_BELOW { 0.0 } else { v }
}

fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// The effect: one instance per mono channel.
#[derive(Debug, Clone)]
pub struct TestFx {
    sample_rate: f32,
    /// Plain values, indexed like [`PARAMS`].
    values: [f32; 4],
    /// Linear pre-clipper gain from `drive`.
    drive: f32,
    /// One-pole low-pass coefficient `1 - exp(-2π tone / rate)`.
    lp: f32,
    /// Linear output gain from `gain`.
    gain: f32,
    /// The low-pass state: the only history the effect keeps.
    z: f32,
    /// The fault from `AFX_TESTFX_FAULT`, read once here so a render cannot change it halfway.
    env_fault: Fault,
    /// Where a hostile `env_fault` aims, read with it.
    targets: FaultTargets,
    /// Whether a hostile fault has fired: it fires once per instance, at the first armed block, so a long render
    /// does not fork or flood stdout once per block.
    misbehaved: bool,
    /// The latency's delay line, in front of the effect: one slot per frame of latency, empty for none.
    delay: Vec<f32>,
    /// The slot of `delay` that holds the oldest input, the next one out.
    delay_pos: usize,
}

impl TestFx {
    /// A fresh effect at `sample_rate` Hz with every parameter at its default, and the latency
    /// `AFX_TESTFX_LATENCY` asks for (see the [crate docs](crate)).
    pub fn new(sample_rate: f32) -> TestFx {
        TestFx::with_latency(sample_rate, latency_from_env())
    }

    /// [`TestFx::new`] with a latency of `frames` (capped at [`MAX_LATENCY`]) whatever `AFX_TESTFX_LATENCY` says:
    /// the input is delayed by `frames` before the effect.
    pub fn with_latency(sample_rate: f32, frames: usize) -> TestFx {
        let mut fx = TestFx {
            sample_rate,
            values: [0.0; 4],
            drive: 1.0,
            lp: 1.0,
            gain: 1.0,
            z: 0.0,
            env_fault: Fault::from_env(),
            targets: FaultTargets::from_env(),
            misbehaved: false,
            delay: vec![0.0; frames.min(MAX_LATENCY)],
            delay_pos: 0,
        };
        for (i, p) in PARAMS.iter().enumerate() {
            fx.set_param(i, p.default);
        }
        fx
    }

    /// The latency in frames: how far the input is delayed before the effect.
    pub fn latency(&self) -> usize {
        self.delay.len()
    }

    /// Clears the signal history (not the parameters), the delay line included: the next output is as from a
    /// fresh instance.
    pub fn reset(&mut self) {
        self.z = 0.0;
        self.delay.fill(0.0);
        self.delay_pos = 0;
    }

    /// Sets parameter `index` (into [`PARAMS`]) to a plain value, clamped to its range (integers rounded).
    /// It applies from the next sample processed. Unknown indices and non-finite values are ignored: a
    /// plugin must not fail on what a host sends.
    pub fn set_param(&mut self, index: usize, value: f32) {
        let Some(info) = PARAMS.get(index) else { return };
        if !value.is_finite() {
            return;
        }
        let v = info.sanitize(value);
        self.values[index] = v;
        match index {
            DRIVE => self.drive = db_to_gain(v),
            TONE => {
                // Exact at any rate: no bilinear warping, and stable (0 < lp < 1) even above Nyquist.
                let w = std::f32::consts::TAU * v / self.sample_rate;
                self.lp = 1.0 - (-w).exp();
            }
            GAIN => self.gain = db_to_gain(v),
            _ => {}
        }
    }

    /// The plain value parameter `index` has now (after clamping), or `None` for an unknown index.
    pub fn param(&self, index: usize) -> Option<f32> {
        self.values.get(index).copied()
    }

    /// The fault the next [`TestFx::process`] call triggers: the `fault` parameter's, else the environment's
    /// while `drive` is at least [`ARMED_DRIVE_DB`].
    pub fn fault(&self) -> Fault {
        match Fault::from_value(self.values[FAULT]) {
            Fault::None if self.values[DRIVE] >= ARMED_DRIVE_DB => self.env_fault,
            Fault::None => Fault::None,
            f => f,
        }
    }

    /// Processes `input` into `output` (the shorter length of the two is processed).
    ///
    /// A block the `nan` fault fills with NaN is not processed: neither the low-pass nor the delay line moves.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        if self.trigger_fault(output) {
            return;
        }
        if self.delay.is_empty() {
            for (x, y) in input.iter().zip(output.iter_mut()) {
                *y = self.tick(*x);
            }
        } else {
            for (x, y) in input.iter().zip(output.iter_mut()) {
                let delayed = self.delay_tick(*x);
                *y = self.tick(delayed);
            }
        }
    }

    /// Processes `buffer` in place, for hosts that hand one buffer for input and output.
    pub fn process_in_place(&mut self, buffer: &mut [f32]) {
        if self.trigger_fault(buffer) {
            return;
        }
        if self.delay.is_empty() {
            for y in buffer.iter_mut() {
                *y = self.tick(*y);
            }
        } else {
            for y in buffer.iter_mut() {
                let delayed = self.delay_tick(*y);
                *y = self.tick(delayed);
            }
        }
    }

    /// Pushes `x` into the delay line (not empty) and returns the input of `latency()` frames ago.
    #[inline]
    fn delay_tick(&mut self, x: f32) -> f32 {
        let out = std::mem::replace(&mut self.delay[self.delay_pos], x);
        self.delay_pos += 1;
        if self.delay_pos == self.delay.len() {
            self.delay_pos = 0;
        }
        out
    }

    #[inline]
    fn tick(&mut self, x: f32) -> f32 {
        let s = flush((x * self.drive).tanh());
        self.z = flush(self.z + self.lp * (s - self.z));
        self.z * self.gain
    }

    /// Misbehaves as [`TestFx::fault`] says; true when `output` holds the (NaN) result already. A hostile fault
    /// fires on the first armed block only and returns false: the block is then processed as without a fault.
    fn trigger_fault(&mut self, output: &mut [f32]) -> bool {
        match self.fault() {
            Fault::None => false,
            Fault::Nan => {
                output.fill(f32::NAN);
                true
            }
            fatal if fatal.is_fatal() => {
                fatal.fire("in process", &self.targets);
                unreachable!("a fatal fault returned")
            }
            hostile => {
                if !std::mem::replace(&mut self.misbehaved, true) {
                    hostile.fire("in process", &self.targets);
                }
                false
            }
        }
    }
}

/// The effect's output and its exact derivatives, from [`sensitivities`]; every vector has one value per input
/// sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sensitivities {
    /// The output `y[n]`, computed in f64 (within f32 rounding of [`TestFx::process`]).
    pub output: Vec<f64>,
    /// `dy[n] / d drive`, per dB.
    pub d_drive: Vec<f64>,
    /// `dy[n] / d tone`, per Hz.
    pub d_tone: Vec<f64>,
    /// `dy[n] / d gain`, per dB.
    pub d_gain: Vec<f64>,
}

/// Renders `input` through a fresh effect in f64 at the plain values `drive_db`, `tone_hz` and `gain_db`, with
/// the exact derivative of each output sample with respect to each of them: the Jacobian's three columns.
///
/// The values must lie in their [`PARAMS`] ranges (checked in debug builds): [`TestFx::set_param`] clamps, so
/// outside a range the plugin's true derivative is 0, which this would not report. `fault` plays no part.
pub fn sensitivities(input: &[f32], sample_rate: f64, drive_db: f64, tone_hz: f64, gain_db: f64) -> Sensitivities {
    let mut out = Sensitivities::default();
    forward(input, sample_rate, drive_db, tone_hz, gain_db, |[y, d_drive, d_tone, d_gain]| {
        out.output.push(y);
        out.d_drive.push(d_drive);
        out.d_tone.push(d_tone);
        out.d_gain.push(d_gain);
    });
    out
}

/// The vector-Jacobian product `Σ grad[n] · dy[n]/dθ` for θ = (drive, tone, gain), per dB, Hz and dB: the true
/// gradient of a loss with respect to the plain values, given the loss's gradient `grad` with respect to the
/// output of [`sensitivities`] (same arguments, same requirements).
///
/// One streaming pass in f64 that stores no Jacobian column, so memory does not grow with the input length.
///
/// # Panics
///
/// When `grad` and `input` differ in length.
pub fn vjp(input: &[f32], sample_rate: f64, drive_db: f64, tone_hz: f64, gain_db: f64, grad: &[f32]) -> [f64; 3] {
    assert_eq!(grad.len(), input.len(), "vjp: the gradient needs one value per input sample");
    let mut acc = [0.0; 3];
    let mut g = grad.iter();
    forward(input, sample_rate, drive_db, tone_hz, gain_db, |[_, d_drive, d_tone, d_gain]| {
        let g = f64::from(*g.next().expect("one gradient value per sample"));
        acc[0] += g * d_drive;
        acc[1] += g * d_tone;
        acc[2] += g * d_gain;
    });
    acc
}

/// [`vjp`] for parameters that move: row `f` of `rows` (drive dB, tone Hz, gain dB) is in effect from input sample
/// `f·hop` (the last row to the end), as afx renders automation. Returns `Σ grad[n] · dy[n]/d row_f` for every
/// row, per dB, Hz and dB.
///
/// Reverse mode over the recurrence (the state's adjoint carried backwards through `z' = (1 - lp) z + lp s`):
/// one forward pass that keeps `s` and `z`, one backward pass, whatever the number of rows.
///
/// # Panics
///
/// When `grad` and `input` differ in length, `rows` is empty or `hop` is 0 with more than one row.
pub fn vjp_rows(input: &[f32], sample_rate: f64, rows: &[[f64; 3]], hop: usize, grad: &[f32]) -> Vec<[f64; 3]> {
    assert_eq!(grad.len(), input.len(), "vjp_rows: the gradient needs one value per input sample");
    assert!(!rows.is_empty() && (hop > 0 || rows.len() == 1), "vjp_rows: {} rows at a hop of {hop}", rows.len());
    let db_slope = std::f64::consts::LN_10 / 20.0;
    // Per row: linear drive, lp, linear gain and their derivatives by dB, Hz and dB.
    let coefficients: Vec<[f64; 6]> = rows
        .iter()
        .map(|&[drive_db, tone_hz, gain_db]| {
            let drive = 10f64.powf(drive_db / 20.0);
            let gain = 10f64.powf(gain_db / 20.0);
            let decay = (-std::f64::consts::TAU * tone_hz / sample_rate).exp();
            [drive, 1.0 - decay, gain, drive * db_slope, decay * std::f64::consts::TAU / sample_rate, gain * db_slope]
        })
        .collect();
    let row_of = |n: usize| if rows.len() == 1 { 0 } else { (n / hop).min(rows.len() - 1) };
    // Forward: s[n] and z[n] (z before the first sample is 0, a fresh instance).
    let (mut s, mut z) = (Vec::with_capacity(input.len()), Vec::with_capacity(input.len()));
    let mut state = 0.0f64;
    for (n, &x) in input.iter().enumerate() {
        let [drive, lp, ..] = coefficients[row_of(n)];
        let sn = (f64::from(x) * drive).tanh();
        state += lp * (sn - state);
        s.push(sn);
        z.push(state);
    }
    // Backward: `adjoint` is dL/dz[n] from the samples after n.
    let mut out = vec![[0.0f64; 3]; rows.len()];
    let mut adjoint = 0.0f64;
    for n in (0..input.len()).rev() {
        let f = row_of(n);
        let [_, lp, gain, d_drive, d_lp, d_gain] = coefficients[f];
        let g = f64::from(grad[n]);
        out[f][2] += g * z[n] * d_gain;
        let dz = g * gain + adjoint;
        let before = if n == 0 { 0.0 } else { z[n - 1] };
        out[f][1] += dz * (s[n] - before) * d_lp;
        out[f][0] += dz * lp * (1.0 - s[n] * s[n]) * f64::from(input[n]) * d_drive;
        adjoint = dz * (1.0 - lp);
    }
    out
}

/// The f64 twin of [`TestFx::tick`] with forward-mode derivatives: calls `each` with `[y, dy/d drive,
/// dy/d tone, dy/d gain]` for every sample, so [`sensitivities`] and [`vjp`] share one recurrence.
fn forward(input: &[f32], rate: f64, drive_db: f64, tone_hz: f64, gain_db: f64, mut each: impl FnMut([f64; 4])) {
    for (i, v) in [drive_db, tone_hz, gain_db].into_iter().enumerate() {
        let (min, max) = (f64::from(PARAMS[i].min), f64::from(PARAMS[i].max));
        debug_assert!((min..=max).contains(&v), "{} = {v} is outside [{min}, {max}]", PARAMS[i].id);
    }
    debug_assert!(rate > 0.0, "sample rate {rate}");
    // d lin / d dB = lin · ln(10) / 20 for lin = 10^(dB / 20).
    let db_slope = std::f64::consts::LN_10 / 20.0;
    let drive = 10f64.powf(drive_db / 20.0);
    let gain = 10f64.powf(gain_db / 20.0);
    let d_drive_db = drive * db_slope;
    let d_gain_db = gain * db_slope;
    let decay = (-std::f64::consts::TAU * tone_hz / rate).exp();
    let lp = 1.0 - decay;
    let d_lp_tone = decay * std::f64::consts::TAU / rate;
    // The low-pass state z and its derivatives; all start at 0, as in a fresh instance.
    let (mut z, mut dz_drive, mut dz_tone) = (0.0, 0.0, 0.0);
    for &x in input {
        let x = f64::from(x);
        let s = (x * drive).tanh();
        let ds_drive = x * (1.0 - s * s) * d_drive_db;
        // z' = (1 - lp) z + lp s, differentiated before z is overwritten (the tone term needs the old z).
        dz_drive = (1.0 - lp) * dz_drive + lp * ds_drive;
        dz_tone = (1.0 - lp) * dz_tone + (s - z) * d_lp_tone;
        z += lp * (s - z);
        each([z * gain, dz_drive * gain, dz_tone * gain, z * d_gain_db]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f32 = 48000.0;

    /// Deterministic uniform noise in [-0.5, 0.5): a linear congruential generator started at `seed`.
    fn noise(mut seed: u32) -> impl FnMut() -> f32 {
        move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        }
    }

    /// A deterministic test signal: a 220 Hz sine plus a little pseudo-random noise, peak about 0.9.
    fn signal(n: usize) -> Vec<f32> {
        let mut noise = noise(0x1234_5678);
        (0..n).map(|i| 0.8 * (std::f32::consts::TAU * 220.0 * i as f32 / RATE).sin() + 0.2 * noise()).collect()
    }

    /// A louder, different test signal: a pseudo-random noise burst decaying from peak about 2.
    fn burst(n: usize) -> Vec<f32> {
        let mut noise = noise(0x9e37_79b9);
        (0..n).map(|i| 4.0 * noise() * (-(i as f32) / 1500.0).exp()).collect()
    }

    /// The effect written out independently in f64 (no flushing): the reference for finite differences.
    fn render_f64(input: &[f32], rate: f64, drive: f64, tone: f64, gain: f64) -> Vec<f64> {
        let (drive, gain) = (10f64.powf(drive / 20.0), 10f64.powf(gain / 20.0));
        let lp = 1.0 - (-std::f64::consts::TAU * tone / rate).exp();
        let mut z = 0.0;
        input
            .iter()
            .map(|&x| {
                z += lp * ((f64::from(x) * drive).tanh() - z);
                z * gain
            })
            .collect()
    }

    /// `‖a − b‖₂ / ‖b‖₂`.
    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        norm(&mut a.iter().zip(b).map(|(x, y)| x - y)) / norm(&mut b.iter().copied())
    }

    /// (drive dB, tone Hz, gain dB) across the ranges, edges included.
    const THETAS: [[f64; 3]; 5] =
        [[0.0, 200.0, -24.0], [6.0, 2000.0, 0.0], [24.0, 15000.0, 12.0], [0.5, 15000.0, 0.0], [23.5, 200.0, 12.0]];

    fn render(fx: &mut TestFx, input: &[f32], block: usize) -> Vec<f32> {
        let mut out = vec![0.0; input.len()];
        for (i, o) in input.chunks(block).zip(out.chunks_mut(block)) {
            fx.process(i, o);
        }
        out
    }

    /// Renders `input` in blocks of `block`, in place or not, setting each `(frame, index, value)` of `changes`
    /// (in frame order) before that frame is processed.
    fn render_changing(
        fx: &mut TestFx,
        input: &[f32],
        block: usize,
        in_place: bool,
        changes: &[(usize, usize, f32)],
    ) -> Vec<f32> {
        let mut out = if in_place { input.to_vec() } else { vec![0.0; input.len()] };
        let (mut pos, mut next) = (0, 0);
        while pos < input.len() {
            while let Some(&(_, index, value)) = changes.get(next).filter(|c| c.0 <= pos) {
                fx.set_param(index, value);
                next += 1;
            }
            let end = changes.get(next).map_or(input.len(), |c| c.0).min(pos + block).min(input.len());
            if in_place {
                fx.process_in_place(&mut out[pos..end]);
            } else {
                fx.process(&input[pos..end], &mut out[pos..end]);
            }
            pos = end;
        }
        out
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn latency_delays_the_input_in_front_of_the_effect() {
        let n = 6000;
        let input = signal(n);
        let c = 2500;
        for latency in [1, 100, 700] {
            for (block, in_place) in [(512, false), (64, true), (1000, false)] {
                // A mid-stream change at input sample c: frame c without latency, frame c + L with it (the shift a
                // host's latency compensation makes), so both effects meet it with the same input sample.
                let at = |frame: usize| [(frame, DRIVE, 18.0), (frame, TONE, 900.0), (frame, GAIN, -5.0)];
                let zero = render_changing(&mut TestFx::with_latency(RATE, 0), &input, block, in_place, &at(c));
                let mut fx = TestFx::with_latency(RATE, latency);
                assert_eq!(fx.latency(), latency);
                let delayed = render_changing(&mut fx, &input, block, in_place, &at(c + latency));
                assert!(delayed[..latency].iter().all(|&y| y.to_bits() == 0), "L {latency}: not silent first");
                assert!(
                    same_bits(&delayed[latency..], &zero[..n - latency]),
                    "L {latency}, block {block}: not the zero-latency output shifted by L"
                );
                // The definition: output s is the effect of input s - L (zeros before) under the parameters of s.
                let mut padded = vec![0.0; latency];
                padded.extend_from_slice(&input[..n - latency]);
                let reference = render_changing(&mut TestFx::with_latency(RATE, 0), &padded, block, false, &at(c));
                let mut fx = TestFx::with_latency(RATE, latency);
                assert!(same_bits(&render_changing(&mut fx, &input, block, in_place, &at(c)), &reference));
                // reset() empties the delay line as well as the low-pass.
                fx.reset();
                fx.set_param(DRIVE, PARAMS[DRIVE].default);
                fx.set_param(TONE, PARAMS[TONE].default);
                fx.set_param(GAIN, PARAMS[GAIN].default);
                assert!(same_bits(&render_changing(&mut fx, &input, block, in_place, &at(c)), &reference));
            }
        }
    }

    #[test]
    fn zero_latency_is_no_delay_line() {
        let fx = TestFx::with_latency(RATE, 0);
        assert_eq!(fx.latency(), 0);
        assert!(fx.delay.is_empty());
        assert_eq!(TestFx::with_latency(RATE, usize::MAX).latency(), MAX_LATENCY);
    }

    #[test]
    fn latency_values_parse_as_whole_frames() {
        for (text, frames) in [
            ("", 0),
            ("0", 0),
            ("300", 300),
            (" 300\n", 300),
            ("-5", 0),
            ("1.5", 0),
            ("abc", 0),
            ("65536", MAX_LATENCY),
            ("65537", MAX_LATENCY),
            ("99999999999999999999999", MAX_LATENCY),
        ] {
            assert_eq!(latency_from_str(text), frames, "{text:?}");
        }
    }

    #[test]
    fn silence_in_silence_out() {
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 24.0);
        fx.set_param(GAIN, 12.0);
        let out = render(&mut fx, &[0.0; 1000], 100);
        assert!(out.iter().all(|&y| y == 0.0));
    }

    #[test]
    fn gain_scales_the_output() {
        let input = signal(4800);
        let mut fx = TestFx::new(RATE);
        let unity = render(&mut fx, &input, 512);
        let mut fx = TestFx::new(RATE);
        fx.set_param(GAIN, 6.0);
        let louder = render(&mut fx, &input, 512);
        let ratio = db_to_gain(6.0);
        for (a, b) in unity.iter().zip(&louder) {
            assert!((a * ratio - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} * {ratio} != {b}");
        }
    }

    #[test]
    fn plus_6_db_doubles_a_quiet_low_sine() {
        // Drive 0 dB and a quiet input keep tanh linear; a 100 Hz sine passes the 20 kHz low-pass unchanged.
        let input: Vec<f32> =
            (0..9600).map(|i| 1e-3 * (std::f32::consts::TAU * 100.0 * i as f32 / RATE).sin()).collect();
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 0.0);
        fx.set_param(TONE, 20000.0);
        fx.set_param(GAIN, 6.0);
        let out = render(&mut fx, &input, 64);
        let peak = |v: &[f32]| v[4800..].iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let ratio = peak(&out) / peak(&input);
        assert!((ratio - 2.0).abs() < 0.01, "ratio {ratio}");
    }

    #[test]
    fn drive_clips_softly() {
        let input: Vec<f32> = signal(4800).iter().map(|x| 4.0 * x).collect();
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 24.0);
        let out = render(&mut fx, &input, 256);
        // tanh is bounded by 1 and the low-pass averages, so the output never exceeds the output gain (0 dB).
        assert!(out.iter().all(|y| y.abs() <= 1.0));
        assert!(out.iter().any(|y| y.abs() > 0.9));
    }

    #[test]
    fn tone_removes_highs() {
        // Nyquist-rate alternation is what a low-pass attenuates most.
        let input: Vec<f32> = (0..4800).map(|i| if i % 2 == 0 { 0.01 } else { -0.01 }).collect();
        let level = |tone: f32| {
            let mut fx = TestFx::new(RATE);
            fx.set_param(DRIVE, 0.0);
            fx.set_param(TONE, tone);
            let out = render(&mut fx, &input, 4800);
            out[2400..].iter().fold(0.0f32, |m, x| m.max(x.abs()))
        };
        assert!(level(200.0) < 0.1 * level(20000.0), "{} vs {}", level(200.0), level(20000.0));
    }

    #[test]
    fn block_size_does_not_matter() {
        let input = signal(10_000);
        let outputs: Vec<Vec<f32>> = [1, 64, 4096, 10_000]
            .iter()
            .map(|&block| {
                let mut fx = TestFx::new(RATE);
                fx.set_param(DRIVE, 12.0);
                fx.set_param(TONE, 1000.0);
                render(&mut fx, &input, block)
            })
            .collect();
        for o in &outputs[1..] {
            assert!(o.iter().zip(&outputs[0]).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn in_place_matches_out_of_place() {
        let input = signal(3000);
        let out = render(&mut TestFx::new(RATE), &input, 100);
        let mut buf = input.clone();
        let mut fx = TestFx::new(RATE);
        buf.chunks_mut(77).for_each(|b| fx.process_in_place(b));
        assert_eq!(out, buf);
    }

    #[test]
    fn reset_gives_a_fresh_instance() {
        let input = signal(2000);
        let mut fx = TestFx::new(RATE);
        let first = render(&mut fx, &input, 333);
        fx.reset();
        let second = render(&mut fx, &input, 333);
        assert_eq!(first, second);
    }

    #[test]
    fn parameters_apply_at_the_next_sample() {
        let input = vec![0.5; 100];
        let mut fx = TestFx::new(RATE);
        let mut out = vec![0.0; 100];
        fx.process(&input[..50], &mut out[..50]);
        fx.set_param(GAIN, -24.0);
        fx.process(&input[50..], &mut out[50..]);
        // The low-pass has settled on the constant input, so only the output gain changes, exactly at sample 50.
        assert_eq!(out[48], out[49]);
        assert_eq!(out[50], out[49] * db_to_gain(-24.0));
    }

    #[test]
    fn denormals_are_flushed() {
        let mut fx = TestFx::new(RATE);
        let mut out = vec![0.0; 20_000];
        let mut input = vec![0.0; 20_000];
        input[0] = 1.0;
        fx.process(&input, &mut out);
        assert!(out.iter().all(|y| *y == 0.0 || y.is_normal()));
        assert_eq!(*out.last().unwrap(), 0.0);
    }

    #[test]
    fn set_param_clamps_rounds_and_ignores_nonsense() {
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 100.0);
        assert_eq!(fx.param(DRIVE), Some(24.0));
        fx.set_param(DRIVE, f32::NAN);
        assert_eq!(fx.param(DRIVE), Some(24.0));
        fx.set_param(FAULT, 0.4);
        assert_eq!(fx.param(FAULT), Some(0.0));
        fx.set_param(99, 1.0);
        assert_eq!(fx.param(99), None);
    }

    #[test]
    fn params_are_consistent() {
        for (i, p) in PARAMS.iter().enumerate() {
            assert_eq!(param_index(p.id), Some(i));
            assert!(p.min < p.max && (p.min..=p.max).contains(&p.default), "{}", p.id);
            assert!(!p.log || p.min > 0.0);
            for n in [0.0, 0.25, 0.5, 1.0] {
                let plain = p.to_plain(n);
                if !p.integer {
                    assert!((p.to_normalized(plain) - n).abs() < 1e-12, "{} at {n}", p.id);
                }
            }
            assert_eq!(p.to_plain(p.to_normalized(f64::from(p.default))) as f32, p.default, "{}", p.id);
        }
        assert_eq!(PARAMS[TONE].to_plain(0.5), 2000.0);
        assert_eq!(PARAMS[FAULT].to_plain(0.3), 1.0);
        assert_eq!(FAULT_LABELS.len() as f32, PARAMS[FAULT].max + 1.0);
    }

    #[test]
    fn sensitivities_match_central_differences_of_the_core() {
        let rate = f64::from(RATE);
        let mut worst = [0.0f64; 3];
        for input in [signal(4800), burst(4800)] {
            for theta in THETAS {
                let exact = sensitivities(&input, rate, theta[0], theta[1], theta[2]);
                let columns = [&exact.d_drive, &exact.d_tone, &exact.d_gain];
                for (k, column) in columns.into_iter().enumerate() {
                    let h = 1e-5 * theta[k].abs().max(1.0);
                    let at = |d: f64| {
                        let mut t = theta;
                        t[k] += d;
                        render_f64(&input, rate, t[0], t[1], t[2])
                    };
                    let (up, down) = (at(h), at(-h));
                    let fd: Vec<f64> = up.iter().zip(&down).map(|(u, d)| (u - d) / (2.0 * h)).collect();
                    let err = rel_err(column, &fd);
                    assert!(err <= 1e-6, "{} at {theta:?}: relative error {err:e}", PARAMS[k].id);
                    worst[k] = worst[k].max(err);
                }
            }
        }
        eprintln!("largest relative errors (drive, tone, gain): {:?}", worst.map(|e| format!("{e:.2e}")));
    }

    #[test]
    fn f64_output_tracks_the_f32_effect() {
        let mut worst = 0.0f64;
        for input in [signal(4800), burst(4800)] {
            for theta in THETAS {
                let mut fx = TestFx::new(RATE);
                for (i, v) in theta.iter().enumerate() {
                    fx.set_param(i, *v as f32);
                }
                let ours = render(&mut fx, &input, 512);
                let twin = sensitivities(&input, f64::from(RATE), theta[0], theta[1], theta[2]).output;
                let diff = ours.iter().zip(&twin).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
                assert!(diff <= 1e-5, "{theta:?}: f32 and f64 differ by {diff:e}");
                worst = worst.max(diff);
            }
        }
        eprintln!("largest |f32 - f64| output difference: {worst:.2e}");
    }

    #[test]
    fn vjp_equals_the_jacobian_columns_dotted_with_the_gradient() {
        let grad: Vec<f32> = signal(4800).iter().rev().map(|g| g - 0.1).collect();
        for input in [signal(4800), burst(4800)] {
            for theta in THETAS {
                let s = sensitivities(&input, f64::from(RATE), theta[0], theta[1], theta[2]);
                let got = vjp(&input, f64::from(RATE), theta[0], theta[1], theta[2], &grad);
                for (k, column) in [&s.d_drive, &s.d_tone, &s.d_gain].into_iter().enumerate() {
                    let want: f64 = column.iter().zip(&grad).map(|(d, g)| d * f64::from(*g)).sum();
                    assert!(want != 0.0 && (got[k] - want).abs() <= 1e-12 * want.abs(), "{k}: {} != {want}", got[k]);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "one value per input sample")]
    fn vjp_rejects_a_gradient_of_another_length() {
        vjp(&signal(100), f64::from(RATE), 6.0, 5000.0, 0.0, &[0.0; 99]);
    }

    #[test]
    fn d_plain_d_normalized_matches_differences() {
        for p in [&PARAMS[DRIVE], &PARAMS[TONE]] {
            for n in [0.01, 0.25, 0.5, 0.9, 0.99] {
                let h = 1e-6;
                let fd = (p.to_plain(n + h) - p.to_plain(n - h)) / (2.0 * h);
                let exact = p.d_plain_d_normalized(n);
                assert!((exact - fd).abs() <= 1e-6 * fd.abs(), "{} at {n}: {exact} vs {fd}", p.id);
            }
        }
        assert_eq!(PARAMS[FAULT].d_plain_d_normalized(0.5), 0.0);
        assert_eq!(PARAMS[DRIVE].d_plain_d_normalized(1.5), 0.0);
    }

    #[test]
    fn nan_fault_writes_nan() {
        let mut fx = TestFx::new(RATE);
        fx.set_param(FAULT, 4.0);
        assert_eq!(fx.fault(), Fault::Nan);
        let out = render(&mut fx, &signal(100), 64);
        assert!(out.iter().all(|y| y.is_nan()));
    }

    #[test]
    fn fault_names_and_values() {
        for (i, name) in FAULT_LABELS.iter().enumerate() {
            assert_eq!(Fault::from_name(name), Fault::from_value(i as f32));
        }
        assert_eq!(Fault::from_name("bogus"), Fault::None);
    }

    #[test]
    fn load_faults_and_render_faults_never_arm_each_other() {
        for (render, fault) in NAMED.into_iter().filter(|&(_, f)| f != Fault::Nan) {
            let load = format!("load-{render}");
            assert_eq!(Fault::from_name(&load), Fault::None, "{load} armed a render fault");
            assert_eq!(Fault::from_load_name(render), Fault::None, "{render} armed a load fault");
            assert_eq!(Fault::from_load_name(&load), fault, "{load}");
            assert_eq!(Fault::from_name(render), fault, "{render}");
        }
        assert_eq!(Fault::from_load_name("load-nan"), Fault::None);
        assert_eq!(Fault::from_load_name("load-load-abort"), Fault::None);
        assert_eq!(Fault::from_load_name("load-"), Fault::None);
    }

    #[test]
    fn hostile_fault_names() {
        let hostile: Vec<(&str, Fault)> = NAMED
            .into_iter()
            .filter(|(_, f)| !matches!(f, Fault::Abort | Fault::Segfault | Fault::Hang | Fault::Nan))
            .collect();
        assert_eq!(hostile.len(), 7);
        for (name, fault) in hostile {
            assert_eq!(Fault::from_name(name), fault);
            assert_eq!(Fault::from_name(&format!(" {name}\n")), fault);
            assert_eq!(Fault::from_load_name(&format!("load-{name}")), fault);
            assert_eq!(Fault::from_load_name(name), Fault::None);
            assert_eq!(Fault::from_name(&format!("load-{name}")), Fault::None);
        }
        // Env-only: no `fault` parameter value reaches them.
        assert!((0..=PARAMS[FAULT].max as i32 + 2).all(|v| !Fault::from_value(v as f32).is_hostile()));
        assert_eq!(Fault::from_name("Write-File"), Fault::None);
        assert_eq!(c"afx-hostile".to_str(), Ok(HOSTILE_NAME));
    }

    #[test]
    fn every_fault_either_ends_the_process_or_returns() {
        for (name, fault) in NAMED {
            let (fatal, hostile) = (fault.is_fatal(), fault.is_hostile());
            assert!(!(fatal && hostile), "{name} is both");
            assert_eq!(fatal || hostile, fault != Fault::Nan, "{name}");
        }
        assert!(Fault::Alloc.is_fatal() && Fault::Abort.is_fatal() && Fault::Hang.is_fatal());
        assert!(!Fault::None.is_fatal() && !Fault::None.is_hostile());
    }

    #[test]
    fn write_file_writes_the_target_and_survives_a_denied_write() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("was-here.txt");
        Fault::WriteFile.fire("in a test", &FaultTargets { file: Some(file.clone()), port: None });
        assert_eq!(std::fs::read_to_string(&file).unwrap(), HOSTILE_TEXT);
        // A directory that does not exist stands for a denied write: the fault returns all the same.
        let denied = dir.path().join("missing/was-here.txt");
        Fault::WriteFile.fire("in a test", &FaultTargets { file: Some(denied.clone()), port: None });
        assert!(!denied.exists());
        Fault::WriteFile.fire("in a test", &FaultTargets::default());
    }

    #[test]
    fn connect_sends_the_text_to_the_port() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        Fault::Connect.fire("in a test", &FaultTargets { file: None, port: Some(port) });
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        assert_eq!(got, HOSTILE_TEXT);
        // Nobody listening, or no port: the fault returns all the same.
        drop(listener);
        Fault::Connect.fire("in a test", &FaultTargets { file: None, port: Some(port) });
        Fault::Connect.fire("in a test", &FaultTargets::default());
    }

    #[test]
    fn sleepers_are_named_threads() {
        assert_eq!(spawn_sleepers(3), 3);
        if cfg!(target_os = "linux") {
            let named = || {
                std::fs::read_dir("/proc/self/task")
                    .unwrap()
                    .filter(|task| {
                        let comm = task.as_ref().unwrap().path().join("comm");
                        std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == HOSTILE_NAME)
                    })
                    .count()
            };
            // Each thread names itself once it runs, which may be after spawn returns.
            let start = std::time::Instant::now();
            while named() < 3 && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(named() >= 3, "{} threads named {HOSTILE_NAME}", named());
        }
    }

    #[test]
    fn a_hostile_fault_fires_once_when_armed_and_leaves_the_output_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("was-here.txt");
        let input = signal(3000);
        let hostile = |drive: f32| {
            let mut fx = TestFx::with_latency(RATE, 7);
            fx.env_fault = Fault::WriteFile;
            fx.targets = FaultTargets { file: Some(file.clone()), port: None };
            fx.set_param(DRIVE, drive);
            fx
        };
        let clean = |drive: f32| {
            let mut fx = TestFx::with_latency(RATE, 7);
            fx.env_fault = Fault::None;
            fx.set_param(DRIVE, drive);
            render(&mut fx, &input, 256)
        };
        // Not armed below ARMED_DRIVE_DB.
        let mut fx = hostile(ARMED_DRIVE_DB - 1.0);
        assert!(same_bits(&render(&mut fx, &input, 256), &clean(ARMED_DRIVE_DB - 1.0)));
        assert!(!file.exists());
        // Armed: the file is written at the first block and the output is the unfaulted one.
        let mut fx = hostile(24.0);
        assert_eq!(fx.fault(), Fault::WriteFile);
        let mut out = vec![0.0; 256];
        fx.process(&input[..256], &mut out);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), HOSTILE_TEXT);
        std::fs::remove_file(&file).unwrap();
        let mut rest = input[256..].to_vec();
        rest.chunks_mut(100).for_each(|b| fx.process_in_place(b));
        out.extend(rest);
        assert!(same_bits(&out, &clean(24.0)));
        // Once per instance: the later blocks wrote nothing.
        assert!(!file.exists());
    }

    /// The effect in f64 with row `f` of `rows` from sample `f·hop` on: the finite-difference reference of
    /// [`vjp_rows`].
    fn render_rows_f64(input: &[f32], rate: f64, rows: &[[f64; 3]], hop: usize) -> Vec<f64> {
        let mut z = 0.0;
        input
            .iter()
            .enumerate()
            .map(|(n, &x)| {
                let [drive, tone, gain] = rows[(n / hop).min(rows.len() - 1)];
                let (drive, gain) = (10f64.powf(drive / 20.0), 10f64.powf(gain / 20.0));
                let lp = 1.0 - (-std::f64::consts::TAU * tone / rate).exp();
                z += lp * ((f64::from(x) * drive).tanh() - z);
                z * gain
            })
            .collect()
    }

    #[test]
    fn vjp_rows_matches_central_differences_of_every_row_in_f64() {
        let (rate, hop) = (44_100.0, 700);
        let input: Vec<f32> = signal(4000).iter().zip(burst(4000)).map(|(a, b)| a + 0.5 * b).collect();
        let grad: Vec<f32> = (0..4000).map(|n| ((n * 37) % 17) as f32 / 8.0 - 1.0).collect();
        let rows: Vec<[f64; 3]> =
            (0..6).map(|f| [3.0 + 3.0 * f as f64, 400.0 + 900.0 * f as f64, -12.0 + 4.0 * f as f64]).collect();
        let exact = vjp_rows(&input, rate, &rows, hop, &grad);
        let loss = |rows: &[[f64; 3]]| -> f64 {
            render_rows_f64(&input, rate, rows, hop).iter().zip(&grad).map(|(y, g)| y * f64::from(*g)).sum()
        };
        let steps = [1e-4, 1e-2, 1e-4];
        for f in 0..rows.len() {
            for j in 0..3 {
                let (mut plus, mut minus) = (rows.clone(), rows.clone());
                plus[f][j] += steps[j];
                minus[f][j] -= steps[j];
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * steps[j]);
                let err = (exact[f][j] - fd).abs() / (1e-9 + fd.abs().max(exact[f][j].abs()));
                assert!(err < 1e-5, "row {f}, parameter {j}: exact {} vs fd {fd} (rel. {err:.1e})", exact[f][j]);
            }
        }
        // One row is the fixed-value vjp.
        let one = vjp_rows(&input, rate, &rows[2..3], 0, &grad)[0];
        let fixed = vjp(&input, rate, rows[2][0], rows[2][1], rows[2][2], &grad);
        for j in 0..3 {
            assert!((one[j] - fixed[j]).abs() <= 1e-9 * fixed[j].abs().max(1.0), "{one:?} vs {fixed:?}");
        }
    }
}
