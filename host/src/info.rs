//! What afx knows about a plugin without running it: its [`Format`], audio ports and parameters
//! ([`PluginInfo`]).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::param::ParamSpec;

/// A plugin standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Lv2,
    Clap,
    Vst3,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Lv2, Format::Clap, Format::Vst3];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Lv2 => "lv2",
            Format::Clap => "clap",
            Format::Vst3 => "vst3",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown plugin format {s:?}; valid: lv2, clap, vst3"))
    }
}

/// One audio port of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioPort {
    pub name: String,
    /// A sidechain (key) input: fed silence, since afx renders one signal through the effect.
    pub sidechain: bool,
}

/// Everything afx knows about a plugin without running it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub format: Format,
    /// LV2 URI, CLAP id or VST3 class id.
    pub id: String,
    pub name: String,
    /// The bundle or file the plugin was found in.
    pub path: PathBuf,
    pub audio_inputs: Vec<AudioPort>,
    pub audio_outputs: Vec<AudioPort>,
    /// Control inputs, in the order [`Effect::render`] takes their values.
    pub params: Vec<ParamSpec>,
}

impl PluginInfo {
    /// Audio inputs that carry the signal (not sidechains).
    pub fn main_inputs(&self) -> usize {
        self.audio_inputs.iter().filter(|p| !p.sidechain).count()
    }

    /// An effect has at least one main audio input and one audio output.
    pub fn is_effect(&self) -> bool {
        self.main_inputs() > 0 && !self.audio_outputs.is_empty()
    }

    /// The parameter with this id.
    pub fn param_index(&self, id: &str) -> Option<usize> {
        self.params.iter().position(|p| p.id == id)
    }

    /// The parameter with this id or, failing that, the one parameter with this name (case-insensitive).
    /// CLAP and VST3 ids are numbers; their names match the LV2 versions' port names.
    pub fn find_param(&self, key: &str) -> Option<usize> {
        self.param_index(key).or_else(|| {
            let mut named = self.params.iter().enumerate().filter(|(_, p)| p.name.eq_ignore_ascii_case(key));
            match (named.next(), named.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
    }

    /// Default plain values of every parameter.
    pub fn default_values(&self) -> Vec<f32> {
        self.params.iter().map(|p| p.default).collect()
    }
}
