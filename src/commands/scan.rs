//! `afx scan`: every installed plugin with its parameters, and every plugin file that failed to load and why.
//!
//! Each plugin file is described by a child process (`afx describe`, hidden), so a plugin that crashes or hangs
//! when loaded fails alone; the results are cached by file (see [`afx_host::scan`]).

use std::io::Write;
use std::time::Duration;

use afx_host::scan::{Catalogue, Scanner};
use afx_host::{Format, ParamKind};
use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Only this format
    #[arg(long, value_parser = super::parse_format)]
    format: Option<Format>,
    /// One JSON object on stdout: {"plugins": [...], "failed": [{"format", "path", "reason"}], "stats": {...}}
    #[arg(long)]
    json: bool,
    /// Seconds one plugin file may take to load and describe before it counts as failed
    #[arg(long, default_value_t = afx_host::scan::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = parse_timeout)]
    timeout: f64,
    /// Describe every file again instead of taking unchanged ones from the cache
    /// ($AFX_CACHE_DIR/scan.json, else $XDG_CACHE_HOME/afx/scan.json, else ~/.cache/afx/scan.json)
    #[arg(long)]
    rescan: bool,
    /// Files described at once [default: the number of cores]
    #[arg(long)]
    jobs: Option<usize>,
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t.is_finite() => Ok(t),
        _ => Err(format!("{s:?} is not a time-out: give a positive number of seconds")),
    }
}

/// The scanner the CLI uses: this very program's hidden `describe` command describes each file.
pub fn scanner() -> anyhow::Result<Scanner> {
    let exe = std::env::current_exe().context("cannot find the afx executable to describe plugin files with")?;
    let flags = super::sandbox_flags();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let caps = afx_sandbox::Caps::default_for(jobs).with_memory(flags.memory);
    Ok(Scanner::new(exe, ["describe"]).sandbox(flags.enabled.then_some(caps)))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut scanner = scanner()?.format(args.format).timeout(Duration::from_secs_f64(args.timeout)).rescan(args.rescan);
    if let Some(jobs) = args.jobs {
        scanner = scanner.jobs(jobs);
    }
    let catalogue = scanner.scan();
    let sandbox = scanner.sandbox_report();
    let mut out = std::io::stdout().lock();
    if args.json {
        // Written straight from the types (a serde_json::Value would print each f32 as the f64 it widens to).
        #[derive(serde::Serialize)]
        struct ScanJson<'a> {
            #[serde(flatten)]
            catalogue: &'a afx_host::scan::Catalogue,
            sandbox: &'a afx_sandbox::Report,
        }
        serde_json::to_writer_pretty(&mut out, &ScanJson { catalogue: &catalogue, sandbox: &sandbox })?;
        writeln!(out)?;
    } else {
        print_text(&mut out, &catalogue)?;
    }
    eprintln!("sandbox of each plugin process: {sandbox}");
    let s = catalogue.stats;
    eprintln!(
        "{} plugins, {} failed files ({} files: {} described, {} from the cache)",
        catalogue.plugins.len(),
        catalogue.failed.len(),
        s.files,
        s.described,
        s.cached
    );
    Ok(())
}

fn print_text(out: &mut impl Write, catalogue: &Catalogue) -> std::io::Result<()> {
    let plugins = &catalogue.plugins;
    for p in plugins {
        let sidechains = p.audio_inputs.len() - p.main_inputs();
        writeln!(
            out,
            "{} {} ({})\n  {} in{} / {} out  {}",
            p.format,
            p.name,
            p.id,
            p.main_inputs(),
            if sidechains > 0 { format!(" + {sidechains} sidechain") } else { String::new() },
            p.audio_outputs.len(),
            p.path.display()
        )?;
        for q in &p.params {
            let kind = match &q.kind {
                ParamKind::Continuous => String::new(),
                ParamKind::Integer => " integer".into(),
                ParamKind::Toggle => " toggle".into(),
                ParamKind::Enumeration(c) => format!(" one of {}", c.len()),
            };
            writeln!(
                out,
                "    {:<12} {:<28} [{}, {}] default {}{}{}{}",
                q.id,
                q.name,
                q.min,
                q.max,
                q.default,
                q.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default(),
                if q.scale == afx_host::Scale::Log { " log" } else { "" },
                kind
            )?;
        }
    }
    for f in &catalogue.failed {
        writeln!(out, "FAILED {} {}\n  {}", f.format, f.path.display(), f.reason)?;
    }
    Ok(())
}

/// `afx describe [--sandbox-dir DIR --sandbox-memory BYTES --sandbox-threads N] --format F PATH` (hidden): what
/// one scan child does; with `--sandbox-report` instead of a file, it prints the protections in force.
#[derive(clap::Args)]
pub struct DescribeArgs {
    #[arg(long, value_parser = super::parse_format, required_unless_present = "sandbox_report")]
    format: Option<Format>,
    #[arg(required_unless_present = "sandbox_report")]
    path: Option<std::path::PathBuf>,
    #[arg(long)]
    sandbox_report: bool,
    #[arg(long)]
    sandbox_dir: Option<std::path::PathBuf>,
    #[arg(long, requires = "sandbox_dir")]
    sandbox_memory: Option<u64>,
    #[arg(long, requires = "sandbox_dir")]
    sandbox_threads: Option<usize>,
}

/// Describes one plugin file in this process, confined first when asked, and prints one JSON line; the exit
/// code for `main`.
pub fn describe(args: DescribeArgs) -> std::process::ExitCode {
    let report = match args.sandbox_dir {
        Some(writable) => afx_sandbox::apply(&afx_sandbox::Policy {
            writable,
            memory: args.sandbox_memory,
            threads: args.sandbox_threads,
        }),
        None => afx_sandbox::Report::off(),
    };
    if args.sandbox_report {
        println!("{}", serde_json::to_string(&report).expect("a report serialises"));
        return std::process::ExitCode::SUCCESS;
    }
    let (Some(format), Some(path)) = (args.format, args.path) else { unreachable!("clap requires both") };
    std::process::ExitCode::from(afx_host::scan::describe_main(format, &path).clamp(0, 255) as u8)
}
