//! `afx bench`: speed of the harness measured against direct loops, side by side in one run.

use afx_host::Host;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Render throughput of the harness over a direct livi loop (same plugin, buffer and block size)
    Render(RenderArgs),
}

#[derive(clap::Args)]
pub struct RenderArgs {
    /// LV2 plugin id or name
    #[arg(long, default_value = "urn:zamaudio:ZamComp")]
    plugin: String,
    /// Seconds of audio per render (48 kHz mono)
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 512)]
    block_size: usize,
    /// Renders per side
    #[arg(long, default_value_t = 15)]
    repeats: usize,
    /// One JSON object on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Render(args) => {
            let r = afx_host::bench::render_overhead(
                &Host::new(),
                &args.plugin,
                args.seconds,
                args.block_size,
                args.repeats,
            )?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} ({}), {} frames at {} Hz, block {}, median of {}:\n  harness {:.3} ms  direct livi {:.3} ms  overhead {:.3}x (target <= 1.05)",
                    r.plugin,
                    r.format,
                    r.frames,
                    r.sample_rate,
                    r.block_size,
                    r.repeats,
                    r.harness_s * 1e3,
                    r.direct_s * 1e3,
                    r.overhead
                );
            }
            Ok(())
        }
    }
}
