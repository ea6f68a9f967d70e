//! A worker process for the pool (the same as the hidden `afx worker` subcommand).

fn main() -> std::process::ExitCode {
    afx_spsa::worker::main_with_args(std::env::args().skip(1))
}
