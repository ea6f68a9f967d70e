//! This extension module as the program of worker and scan-child processes.
//!
//! The CLI's pool runs `afx worker` (its own executable); inside Python the executable is the interpreter, so a
//! child is `python -I -S -c BOOTSTRAP <this module's file> worker|describe ARGS`: the bootstrap loads this file
//! by path (no `site`, no package `__init__`, no NumPy: a few milliseconds) and calls [`worker_main`], which
//! never returns to Python. The wheel so needs no separate binary, and workers run the very code of the module
//! that drives them.

use std::ffi::OsString;
use std::path::PathBuf;

use afx_spsa::WorkerCommand;
use pyo3::prelude::*;

/// Loads the extension module from the path in `sys.argv[1]` and hands it the rest of the arguments.
const BOOTSTRAP: &str = "import importlib.util as u, sys\n\
spec = u.spec_from_file_location('afx._afx', sys.argv[1])\n\
module = u.module_from_spec(spec)\n\
spec.loader.exec_module(module)\n\
module.worker_main(sys.argv[2:])\n";

/// The interpreter and the arguments that make a child process run this module's `role` (`worker` or
/// `describe`): what [`WorkerCommand`] and the scanner take.
pub fn child_program(py: Python<'_>, role: &str) -> PyResult<(PathBuf, Vec<OsString>)> {
    let sys = py.import("sys")?;
    let python: PathBuf = sys.getattr("executable")?.extract()?;
    if python.as_os_str().is_empty() {
        return Err(crate::errors::AfxError::new_err(
            "sys.executable is empty: afx cannot start worker processes from this interpreter (use isolation=\"thread\")",
        ));
    }
    let module: PathBuf = py.import("afx._afx")?.getattr("__file__")?.extract()?;
    let args = ["-I", "-S", "-c", BOOTSTRAP].into_iter().map(OsString::from);
    Ok((python, args.chain([module.into_os_string(), role.into()]).collect()))
}

/// The pool's worker command: this module's `worker` role.
pub fn worker_command(py: Python<'_>) -> PyResult<WorkerCommand> {
    let (program, args) = child_program(py, "worker")?;
    let mut command = WorkerCommand::new(program);
    command.args = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    Ok(command)
}

/// `worker ARGS` (a pool worker: jobs on stdin, results on stdout) or `describe --format F PATH` (a scan child):
/// runs the role and exits the process with its status. Called only by the bootstrap of [`child_program`].
#[pyfunction]
pub fn worker_main(args: Vec<String>) {
    // SAFETY: a child process started by `child_program` runs nothing but the bootstrap, which starts no thread,
    // so no other thread can read the environment while it changes.
    unsafe { afx_host::make_lv2_path_absolute() };
    let code = match args.split_first() {
        Some((role, rest)) if role == "worker" => {
            let code = afx_spsa::worker::main_with_args(rest.iter().cloned(), afx_spsa::task::no_tasks);
            if code == std::process::ExitCode::SUCCESS { 0 } else { 1 }
        }
        Some((role, rest)) if role == "describe" => describe(rest),
        _ => {
            eprintln!("afx worker_main: expected `worker ARGS` or `describe --format F PATH`, got {args:?}");
            2
        }
    };
    // Straight out, without Python's shutdown: the worker's pipes and threads are done, nothing is left to run.
    std::process::exit(code);
}

fn describe(args: &[String]) -> i32 {
    // [--sandbox-dir DIR [--sandbox-memory N] [--sandbox-threads N]] --format F PATH, as the scanner passes them.
    let mut policy = None;
    let (mut format, mut path, mut report_only) = (None, None, false);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        let parsed = match arg.as_str() {
            "--sandbox-report" => {
                report_only = true;
                Ok(())
            }
            "--format" => {
                value().and_then(|f| f.parse::<afx_host::Format>().map_err(|e| e.to_string())).map(|f| format = Some(f))
            }
            flag if flag.starts_with("--") => match afx_sandbox::Policy::read_arg(&mut policy, flag, value) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("unknown argument {flag:?}")),
                Err(e) => Err(e),
            },
            other => {
                path = Some(std::path::PathBuf::from(other));
                Ok(())
            }
        };
        if let Err(e) = parsed {
            eprintln!("afx describe: {e} (expected [--sandbox-dir DIR ...] --format F PATH, got {args:?})");
            return 2;
        }
    }
    let report = policy.as_ref().map_or_else(afx_sandbox::Report::off, afx_sandbox::apply);
    if report_only {
        println!("{}", serde_json::to_string(&report).expect("a report serialises"));
        return 0;
    }
    let (Some(format), Some(path)) = (format, path) else {
        eprintln!("afx describe: expected --format F PATH, got {args:?}");
        return 2;
    };
    afx_host::scan::describe_main(format, &path)
}
