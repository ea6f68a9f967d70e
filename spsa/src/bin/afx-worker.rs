//! A worker process for the pool (the hidden `afx worker` subcommand, without its tasks).

fn main() -> std::process::ExitCode {
    afx_spsa::worker::main_with_args(std::env::args().skip(1), afx_spsa::task::no_tasks)
}
