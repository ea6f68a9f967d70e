//! A worker: one chain, hosted on one thread, executing jobs. The same [`Executor`] runs inside a worker
//! process ([`serve`], behind `afx worker` or the `afx-worker` binary) and inside a pool thread.
//!
//! The parts: the [`WorkerSpec`] here, the [`Executor`] (every kind of job run in one match), and the worker
//! process around it ([`serve`], [`main_with_args`]).

mod executor;
mod process;

use std::path::PathBuf;
use std::time::Duration;

use afx_host::{Format, RenderSettings};
use afx_sandbox::Policy;

pub use executor::Executor;
pub use process::{keep_freed_memory, main_with_args, serve};

// How a worker's watchdog ends it is part of the worker process's interface, beside `main_with_args`.
pub use crate::watchdog::WATCHDOG_EXIT;

/// Which chain a worker hosts and how it renders. Travels to worker processes as command-line arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// plugins.toml; `None` when the chain is an installed plugin's id.
    pub config: Option<PathBuf>,
    /// A chain or plugin name from the config, or an installed plugin's id.
    pub chain: String,
    /// Narrows an installed plugin's id or name to one format.
    pub format: Option<Format>,
    /// A scan's catalogue (written by [`afx_host::scan::Catalogue::save`]): the worker finds its plugins there and
    /// loads only their files, so no other installed plugin runs in it. `None`: discover every installed plugin
    /// in the worker ([`Host::new`](afx_host::Host::new)), which loads every file of the formats it searches.
    pub catalogue: Option<PathBuf>,
    pub block_size: usize,
    /// The longest one render inside a [`Task`](crate::Task) may take before the worker process exits, so that the pool
    /// sees it die and can run the task's examples as jobs it times one by one (a task spans many renders:
    /// the pool's own limit on it is loose). The pool sets its job time limit here for worker processes; leave
    /// it `None` anywhere else: exiting ends the whole process, not one thread.
    pub task_render_limit: Option<Duration>,
    /// The sandbox the worker process confines itself to before it loads its chain ([`afx_sandbox::apply`]):
    /// the pool sets it for each process it starts, with the worker's own folder. `None`: no sandbox.
    pub sandbox: Option<Policy>,
}

impl WorkerSpec {
    pub fn new(config: Option<PathBuf>, chain: impl Into<String>) -> WorkerSpec {
        WorkerSpec {
            config,
            chain: chain.into(),
            format: None,
            catalogue: None,
            block_size: RenderSettings::default().block_size,
            task_render_limit: None,
            sandbox: None,
        }
    }

    /// The arguments [`WorkerSpec::from_args`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--chain".to_string(), self.chain.clone()];
        if let Some(config) = &self.config {
            args.extend(["--config".to_string(), config.display().to_string()]);
        }
        if let Some(format) = self.format {
            args.extend(["--format".to_string(), format.to_string()]);
        }
        if let Some(catalogue) = &self.catalogue {
            args.extend(["--catalogue".to_string(), catalogue.display().to_string()]);
        }
        args.extend(["--block-size".to_string(), self.block_size.to_string()]);
        if let Some(limit) = self.task_render_limit {
            args.extend(["--task-render-limit-ms".to_string(), limit.as_millis().to_string()]);
        }
        if let Some(policy) = &self.sandbox {
            args.extend(policy.to_args());
        }
        args
    }

    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<WorkerSpec, String> {
        let mut spec = WorkerSpec::new(None, "");
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--chain" => spec.chain = value()?,
                "--config" => spec.config = Some(value()?.into()),
                "--format" => spec.format = Some(value()?.parse()?),
                "--catalogue" => spec.catalogue = Some(value()?.into()),
                "--block-size" => {
                    let v = value()?;
                    spec.block_size = v.parse().map_err(|_| format!("--block-size: {v:?} is not a number"))?;
                }
                "--task-render-limit-ms" => {
                    let v = value()?;
                    let ms = v.parse().map_err(|_| format!("--task-render-limit-ms: {v:?} is not a number"))?;
                    spec.task_render_limit = Some(Duration::from_millis(ms));
                }
                other if Policy::read_arg(&mut spec.sandbox, other, value)? => {}
                other => return Err(format!("unknown worker argument {other:?}")),
            }
        }
        if spec.chain.is_empty() {
            return Err("--chain is required".into());
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_its_arguments_and_bad_values_are_named() {
        let spec = WorkerSpec {
            format: Some(Format::Clap),
            catalogue: Some("/tmp/afx catalogue.json".into()),
            block_size: 64,
            task_render_limit: Some(Duration::from_millis(2500)),
            sandbox: Some(Policy { writable: "/tmp/afx-worker-x".into(), memory: Some(1 << 30), threads: Some(64) }),
            ..WorkerSpec::new(Some("plugins.toml".into()), "eq_comp")
        };
        assert_eq!(WorkerSpec::from_args(spec.to_args()), Ok(spec));
        let plain = WorkerSpec::new(None, "urn:zamaudio:ZamComp");
        assert_eq!(WorkerSpec::from_args(plain.to_args()), Ok(plain));
        let args = ["--chain", "x", "--task-render-limit-ms", "soon"].map(String::from);
        assert!(WorkerSpec::from_args(args).unwrap_err().contains("--task-render-limit-ms"));
    }
}
