//! One module per subcommand.

pub mod bench;
pub mod render;
pub mod scan;

use std::path::Path;

use anyhow::Context;

/// The plugins.toml in force: `--config`, else `$AFX_CONFIG`, else `./plugins.toml` if it exists.
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<Option<afx_host::Config>> {
    let from_env = std::env::var_os("AFX_CONFIG").map(std::path::PathBuf::from);
    let path = match explicit.map(Path::to_path_buf).or(from_env) {
        Some(path) => path,
        None if Path::new("plugins.toml").exists() => "plugins.toml".into(),
        None => return Ok(None),
    };
    let config = afx_host::Config::load(&path).context("reading the plugin configuration")?;
    Ok(Some(config))
}

/// `--format lv2|clap|vst3`.
pub fn parse_format(s: &str) -> Result<afx_host::Format, String> {
    s.parse()
}
