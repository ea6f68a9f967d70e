//! Audio plugins as deterministic functions `y = f(x, params)`.
//!
//! `afx-host` loads installed effects (LV2 now; CLAP and VST3 next) and renders audio through them offline,
//! the way a training harness needs:
//!
//! 1. [`Host::new`] discovers what is installed; [`Host::scan`] describes it ([`PluginInfo`], with every
//!    parameter as a [`ParamSpec`]: plain range, default, unit, scale and kind).
//!    [`scan::Scanner`] does it the way DAWs do: each plugin file described in a child process (a plugin that
//!    crashes or hangs at load fails alone), the results cached by file; [`Host::with_catalogue`] then hosts
//!    from its [`scan::Catalogue`] and loads only the file of the plugin asked for.
//! 2. [`Host::load`] gives an [`Effect`] for one plugin, by id (LV2 URI), name or file path.
//! 3. [`Effect::render`] renders an [`Audio`] buffer with plain parameter values: a fresh plugin state per
//!    render, values applied from sample 0, the plugin's latency trimmed so output frame `n` lines up with
//!    input frame `n`, denormals flushed, and NaN/Inf output reported as an error.
//! 4. [`Config`] reads `plugins.toml` (named plugins, trainable and fixed parameters, chains) and
//!    [`Chain`] renders a chain of effects from one normalised parameter vector θ ∈ [0, 1]^P.
//! 5. [`Preset`] saves a chain's plain values as TOML and replays them bit-identically.
//!
//! ```no_run
//! use afx_host::{Audio, Host, RenderSettings};
//!
//! let host = Host::new();
//! let mut comp = host.load("urn:zamaudio:ZamComp", None)?;
//! let input = Audio::read_wav("drums.wav".as_ref())?;
//! let mut values = comp.info().default_values();
//! let thr = comp.info().param_index("thr").unwrap();
//! values[thr] = -30.0;
//! let output = comp.render(&input, &values, &RenderSettings::default())?;
//! output.write_wav("drums-compressed.wav".as_ref())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`Host`] and the effects it loads stay on the thread that made them; run one host per worker thread or
//! process. This crate knows nothing of machine learning.

pub mod automation;
pub mod chain;
mod clap;
pub mod config;
pub mod curves;
mod denormals;
#[cfg(feature = "direct-render")]
pub mod direct;
mod host;
mod info;
mod lv2;
pub mod param;
mod plugin;
pub mod preset;
pub mod render;
pub mod scan;
mod suggest;
mod vst3;

// The host renders `Audio` and its errors carry `AudioError`: its public API is stated in these types, so a user of
// the host needs no second import for them.
pub use afx_core::{Audio, AudioError};
pub use automation::{Automation, AutomationError};
pub use chain::{Chain, ChainError, ChainLayout, Stage};
pub use clap::ClapWorld;
pub use config::{Config, ConfigError};
pub use curves::{Curve, Curves, CurvesError};
pub use denormals::FlushDenormals;
pub use host::{Host, LoadError, make_lv2_path_absolute};
pub use info::{AudioPort, Format, PluginInfo};
pub use lv2::Lv2World;
pub use param::{ParamKind, ParamSpec, Scale};
pub use plugin::Effect;
pub use preset::{Preset, PresetError};
pub use render::{RenderError, RenderSettings};
pub use vst3::Vst3World;
