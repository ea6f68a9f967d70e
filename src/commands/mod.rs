//! One module per subcommand.

pub mod bench;
pub mod collect;
pub mod compare;
pub mod dataset;
pub mod eval_grads;
pub mod infer;
pub mod render;
pub mod scan;
pub mod train;
pub mod train_proxy;

use std::path::Path;

use anyhow::Context;

/// The plugins.toml in force: `--config`, else `$AFX_CONFIG`, else `./plugins.toml` if it exists.
pub fn config_path(explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    let from_env = std::env::var_os("AFX_CONFIG").map(std::path::PathBuf::from);
    match explicit.map(Path::to_path_buf).or(from_env) {
        Some(path) => Some(path),
        None if Path::new("plugins.toml").exists() => Some("plugins.toml".into()),
        None => None,
    }
}

/// The plugins.toml in force, read and checked (see [`config_path`]).
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<Option<afx_host::Config>> {
    let Some(path) = config_path(explicit) else { return Ok(None) };
    let config = afx_host::Config::load(&path).context("reading the plugin configuration")?;
    Ok(Some(config))
}

/// `--format lv2|clap|vst3`.
pub fn parse_format(s: &str) -> Result<afx_host::Format, String> {
    s.parse()
}
