//! `afx`: the command line. Parsing and wiring only; the work happens in the library crates.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "afx", version, about = "Train neural networks to drive real audio plugins as black boxes")]
struct Cli {
    /// plugins.toml to use [default: $AFX_CONFIG, else ./plugins.toml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Confine every process that runs plugin code (workers, scan children): on, or off to let plugins act with
    /// your rights (see the README's "Plugins are untrusted code")
    #[arg(long, global = true, value_enum, default_value_t = Switch::On)]
    sandbox: Switch,
    /// Memory cap of each process that runs plugin code, e.g. 2G or 512M [default: half the memory available,
    /// shared by the workers]
    #[arg(long, global = true, value_name = "SIZE", value_parser = afx_sandbox::parse_bytes)]
    worker_memory: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List installed plugins with their parameters
    Scan(commands::scan::Args),
    /// Render a WAV file through a plugin or chain
    Render(commands::render::Args),
    /// Train an encoder/controller to drive a real plugin chain (self-supervised style transfer)
    Train(commands::train::Args),
    /// Process a file with a trained run: predict parameters from a style reference and render
    Infer(commands::infer::Args),
    /// Match one sound without training: optimise the chain's parameters (SPSA or CMA-ES) so the input sounds
    /// like a target or a style reference
    Match(commands::r#match::Args),
    /// Collect (input, parameters, output) examples from a real chain, as shards, to train a proxy
    Collect(commands::collect::Args),
    /// Train a neural proxy (conditional TCN) of a chain on collected examples
    TrainProxy(commands::train_proxy::Args),
    /// Evaluate gradient estimators (SPSA, finite differences, proxy, exact) against a reference gradient
    EvalGrads(commands::eval_grads::Args),
    /// Train every gradient method with the same budget and score them on the same held-out examples
    Compare(commands::compare::Args),
    /// Build or check an audio corpus
    #[command(subcommand)]
    Dataset(commands::dataset::Dataset),
    /// Measure the harness against direct loops
    #[command(subcommand)]
    Bench(commands::bench::Bench),
    /// Describe one plugin file as JSON (what `scan` runs in a child process per file)
    #[command(hide = true)]
    Describe(commands::scan::DescribeArgs),
    /// A worker process of the SPSA pool (jobs on stdin, results on stdout)
    #[command(hide = true)]
    Worker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// candle's spin count before an idle elementwise worker sleeps (its default: 25 000).
const CANDLE_SPIN: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// A setting that is on or off.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

fn main() -> ExitCode {
    // Before any thread: see its doc. Collect and training make and drop megabytes of audio per job.
    afx_spsa::worker::keep_freed_memory();
    // SAFETY: no other thread exists yet (see its doc: lilv crashes on a relative LV2_PATH entry).
    unsafe { afx_host::make_lv2_path_absolute() };
    // candle's elementwise thread pool spins 25 000 times after each op before it sleeps: on 2 cores that spin
    // takes a core from the next op's rayon threads and from the plugin workers rendering beside us.
    if std::env::var_os(CANDLE_SPIN).is_none() {
        // SAFETY: no other thread exists yet; candle reads it when its pool starts.
        unsafe { std::env::set_var(CANDLE_SPIN, "1000") };
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("AFX_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    commands::set_sandbox(commands::SandboxFlags { enabled: cli.sandbox == Switch::On, memory: cli.worker_memory });
    if let Command::Worker { args } = cli.command {
        // The pool talks to workers over stdout: nothing else may print there.
        return afx_spsa::worker::main_with_args(args, afx_proxy::collect::worker_tasks);
    }
    if let Command::Describe(args) = cli.command {
        return commands::scan::describe(args);
    }
    let result = run(cli);
    commands::remove_catalogues();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `afx scan | head`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Scan(args) => commands::scan::run(args),
        Command::Render(args) => commands::render::run(args, cli.config.as_deref()),
        Command::Dataset(command) => commands::dataset::run(command),
        Command::Collect(args) => commands::collect::run(args, cli.config.as_deref()),
        Command::TrainProxy(args) => commands::train_proxy::run(args, cli.config.as_deref()),
        Command::Train(args) => commands::train::run(args, cli.config.as_deref()),
        Command::Infer(args) => commands::infer::run(args, cli.config.as_deref()),
        Command::Match(args) => commands::r#match::run(args, cli.config.as_deref()),
        Command::EvalGrads(args) => commands::eval_grads::run(args, cli.config.as_deref()),
        Command::Compare(args) => commands::compare::run(args, cli.config.as_deref()),
        Command::Bench(bench) => commands::bench::run(bench, cli.config.as_deref()),
        Command::Worker { .. } | Command::Describe(_) => unreachable!("handled above"),
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message already holds (our error
/// types often say their cause in their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
