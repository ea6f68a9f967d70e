//! `plugins.toml`: which plugins afx drives, which of their parameters are trained (and over what range and
//! scale), which are fixed, and named chains.
//!
//! ```toml
//! [plugins.comp]
//! format = "lv2"
//! id = "urn:zamaudio:ZamComp"
//!
//! [plugins.comp.params]
//! thr = { train = true, min = -60.0, max = 0.0 }   # trained over a narrowed range
//! rat = { train = true, scale = "log" }            # trained over the plugin's range, log scale
//! mak = { value = 0.0 }                             # fixed
//! # parameters not listed stay at the plugin's default and are not trained
//!
//! [chains.eq_comp]
//! plugins = ["eq", "comp"]                          # rendered in this order as one black box
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use afx_core::FileError;
use serde::Deserialize;

use crate::info::Format;
use crate::param::Scale;
use crate::suggest;

/// Why `plugins.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or does not parse.
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: [{table}]: {message}")]
    Invalid { path: PathBuf, table: String, message: String },
}

/// A parsed and checked `plugins.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
    #[serde(default)]
    pub chains: BTreeMap<String, ChainEntry>,
    /// The file this was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One named plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    pub format: Format,
    /// LV2 URI, CLAP id or VST3 class id, or the path of the plugin's file (a `.vst3` bundle, a `.clap` file or
    /// an LV2 bundle folder holding this one plugin).
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Parameter id → how afx treats it.
    #[serde(default)]
    pub params: BTreeMap<String, ParamEntry>,
    /// `false`: the workers that host this plugin run without a sandbox (a licensed plugin that must write
    /// outside its folder, say). Default `true`.
    #[serde(default = "sandboxed")]
    pub sandbox: bool,
}

fn sandboxed() -> bool {
    true
}

/// How afx treats one parameter: trained (optionally over a narrower range or another scale) or fixed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamEntry {
    #[serde(default)]
    pub train: bool,
    pub min: Option<f32>,
    pub max: Option<f32>,
    pub scale: Option<Scale>,
    /// A fixed plain value.
    pub value: Option<f32>,
    /// The parameter is a pure output gain in dB (y = x · 10^(v/20), e.g. a compressor's makeup): a neural proxy
    /// of a chain that ends with this plugin applies it exactly instead of learning it.
    #[serde(default)]
    pub output_gain: bool,
}

/// A named chain of plugins rendered in order as one function of all their trainable parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntry {
    pub plugins: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl Config {
    /// The plugins.toml in force: `explicit` (a `--config` flag), else `$AFX_CONFIG`, else `./plugins.toml` if
    /// it exists; `None` when there is none (installed plugins are then named by id or name only).
    pub fn path_in_force(explicit: Option<&Path>) -> Option<PathBuf> {
        let from_env = std::env::var_os("AFX_CONFIG").map(PathBuf::from);
        match explicit.map(Path::to_path_buf).or(from_env) {
            Some(path) => Some(path),
            None if Path::new("plugins.toml").exists() => Some("plugins.toml".into()),
            None => None,
        }
    }

    /// Reads and checks a `plugins.toml`. Parse errors carry the line and column; errors found after parsing
    /// name the table (`[plugins.comp.params.thr]`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(FileError::io(path))?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| FileError::format(path, e))?;
        config.path = path.into();
        config.validate()?;
        Ok(config)
    }

    fn invalid(&self, table: String, message: String) -> ConfigError {
        ConfigError::Invalid { path: self.path.clone(), table, message }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, plugin) in &self.plugins {
            if self.chains.contains_key(name) {
                return Err(self.invalid(format!("chains.{name}"), "a chain and a plugin share this name".into()));
            }
            for (id, p) in &plugin.params {
                let table = format!("plugins.{name}.params.{id}");
                let narrowed = p.min.is_some() || p.max.is_some() || p.scale.is_some();
                match (p.train, p.value) {
                    (true, Some(_)) => {
                        return Err(
                            self.invalid(table, "a parameter is either trained or fixed to a value, not both".into())
                        );
                    }
                    (false, None) => {
                        return Err(self.invalid(table, "expected `train = true` or `value = <number>`".into()));
                    }
                    (false, Some(_)) if narrowed => {
                        return Err(self.invalid(table, "min, max and scale apply to trained parameters only".into()));
                    }
                    _ => {}
                }
                if let (Some(min), Some(max)) = (p.min, p.max)
                    && min >= max
                {
                    return Err(self.invalid(table, format!("min ({min}) must be below max ({max})")));
                }
            }
        }
        for (name, chain) in &self.chains {
            if chain.plugins.is_empty() {
                return Err(self.invalid(format!("chains.{name}"), "expected at least one plugin".into()));
            }
            for plugin in &chain.plugins {
                if !self.plugins.contains_key(plugin) {
                    let near = suggest::nearest(plugin, self.plugins.keys().map(String::as_str), 3);
                    return Err(self.invalid(
                        format!("chains.{name}"),
                        format!("unknown plugin {plugin:?}{}", suggest::did_you_mean(&near)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Chain and plugin names, for error messages.
    /// The plugins of `name` (a chain's, or the one plugin's) whose entry says `sandbox = false`; empty for a
    /// name this file does not define.
    pub fn unsandboxed<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let members: Vec<&str> = match self.chains.get(name) {
            Some(chain) => chain.plugins.iter().map(String::as_str).collect(),
            None => vec![name],
        };
        members.into_iter().filter(|p| self.plugins.get(*p).is_some_and(|e| !e.sandbox)).collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.chains.keys().chain(self.plugins.keys()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("plugins.toml"))
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
            [plugins.comp]
            format = "lv2"
            id = "urn:zamaudio:ZamComp"
            params.thr = { train = true, min = -60.0, max = 0.0 }
            params.rat = { train = true, scale = "log" }
            params.mak = { value = 0.0 }
            [chains.c]
            plugins = ["comp"]
            "#,
        )
        .unwrap();
        assert_eq!(c.plugins["comp"].params["rat"].scale, Some(Scale::Log));
        assert_eq!(c.chains["c"].plugins, ["comp"]);
        assert!(c.unsandboxed("c").is_empty());
    }

    #[test]
    fn a_plugin_may_leave_the_sandbox_and_its_chains_with_it() {
        let c = parse(
            "[plugins.eq]\nformat = \"lv2\"\nid = \"x\"\n[plugins.lic]\nformat = \"vst3\"\nid = \"y\"\nsandbox = false\n\
             [chains.both]\nplugins = [\"eq\", \"lic\"]\n",
        )
        .unwrap();
        assert_eq!(c.unsandboxed("both"), ["lic"]);
        assert_eq!(c.unsandboxed("lic"), ["lic"]);
        assert!(c.unsandboxed("eq").is_empty());
        assert!(c.unsandboxed("urn:other").is_empty());
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let e = parse("[plugins.comp]\nformat = \"lv2\"\nid = \n").unwrap_err().to_string();
        assert!(e.starts_with("plugins.toml:"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_errors() {
        let e = parse("[plugins.comp]\nformat = \"lv3\"\nid = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("lv2"), "{e}");
        let e = parse("[plugins.comp]\nformat = \"lv2\"\nid = \"x\"\nurl = 1\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("url"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_table() {
        let e = parse("[plugins.c]\nformat=\"lv2\"\nid=\"x\"\nparams.t = { train = true, value = 1 }\n").unwrap_err();
        assert!(e.to_string().contains("[plugins.c.params.t]"), "{e}");
        let e = parse("[plugins.comp]\nformat=\"lv2\"\nid=\"x\"\n[chains.k]\nplugins=[\"cmop\"]\n").unwrap_err();
        assert!(e.to_string().contains("did you mean comp"), "{e}");
        let e = parse("[plugins.c]\nformat=\"lv2\"\nid=\"x\"\nparams.t = { train = true, min = 2, max = 1 }\n")
            .unwrap_err();
        assert!(e.to_string().contains("min (2) must be below max (1)"), "{e}");
    }
}
