//! `afx scan`: every installed plugin with its parameters.

use std::io::Write;

use afx_host::{Format, Host, ParamKind};

#[derive(clap::Args)]
pub struct Args {
    /// Only this format
    #[arg(long, value_parser = super::parse_format)]
    format: Option<Format>,
    /// One JSON array on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let plugins = Host::new().scan(args.format);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &plugins)?;
        writeln!(out)?;
        return Ok(());
    }
    for p in &plugins {
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
    eprintln!("{} plugins", plugins.len());
    Ok(())
}
