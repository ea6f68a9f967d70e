//! Presets: a chain's name and every parameter of every stage in plain units, as TOML, replayed exactly.
//!
//! A preset is plugin-only data (what `afx infer` predicted, what `afx render --preset` replays), so it lives
//! beside [`ChainLayout`] rather than in the trainer. Values are stored as f64 holding the exact f32 the plugin got,
//! so save → load gives the same bits and the replayed render is bit-identical.

use std::collections::BTreeMap;
use std::path::Path;

use afx_core::{FileError, atomic};
use serde::{Deserialize, Serialize};

use crate::chain::ChainLayout;

/// Why a preset could not be read, written or applied.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// The preset file could not be read, parsed or written.
    #[error("preset {0}")]
    File(#[from] FileError),
    #[error("preset is for chain {preset:?} ({preset_stages}), not for {chain:?} ({chain_stages})")]
    WrongChain { preset: String, preset_stages: String, chain: String, chain_stages: String },
    #[error("preset stage {stage:?}: {message}")]
    BadParam { stage: String, message: String },
}

/// Every parameter of every stage of a chain, in plain units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// The chain (or plugin) name the preset was made for.
    pub chain: String,
    pub stages: Vec<PresetStage>,
}

/// One stage of a [`Preset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetStage {
    /// The stage's name in the chain.
    pub name: String,
    /// The plugin's id (LV2 URI, CLAP id, VST3 class id), for a reader; matching goes by stage name.
    pub plugin: String,
    /// Parameter id → plain value.
    pub params: BTreeMap<String, f64>,
}

impl Preset {
    /// A preset of `chain` at plain `values` (one `Vec` per stage, every parameter, as
    /// [`ChainLayout::plain_values`]).
    pub fn from_values(chain: &ChainLayout, values: &[Vec<f32>]) -> Preset {
        let stages = chain
            .stages()
            .iter()
            .zip(values)
            .map(|(stage, v)| PresetStage {
                name: stage.name().to_string(),
                plugin: stage.plugin().id.clone(),
                params: stage.plugin().params.iter().zip(v).map(|(p, &x)| (p.id.clone(), f64::from(x))).collect(),
            })
            .collect();
        Preset { chain: chain.name().to_string(), stages }
    }

    /// The plain values to render `chain` with: every stage and every parameter must be present and in range
    /// (nothing is filled in or clamped silently).
    pub fn values_for(&self, chain: &ChainLayout) -> Result<Vec<Vec<f32>>, PresetError> {
        let names = |v: Vec<&str>| v.join(" → ");
        let chain_stages: Vec<&str> = chain.stages().iter().map(|s| s.name()).collect();
        let preset_stages: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        if self.chain != chain.name() || chain_stages != preset_stages {
            return Err(PresetError::WrongChain {
                preset: self.chain.clone(),
                preset_stages: names(preset_stages),
                chain: chain.name().to_string(),
                chain_stages: names(chain_stages),
            });
        }
        let mut values = Vec::with_capacity(self.stages.len());
        for (stage, preset) in chain.stages().iter().zip(&self.stages) {
            let bad = |message: String| PresetError::BadParam { stage: stage.name().to_string(), message };
            let info = stage.plugin();
            if let Some(extra) = preset.params.keys().find(|id| info.find_param(id).is_none()) {
                return Err(bad(format!("{} has no parameter {extra:?}", info.name)));
            }
            let mut v = Vec::with_capacity(info.params.len());
            for spec in &info.params {
                let Some(&plain) = preset.params.get(&spec.id) else {
                    return Err(bad(format!("parameter {:?} ({}) is missing", spec.id, spec.name)));
                };
                let plain = plain as f32;
                spec.check(plain).map_err(|e| bad(format!("parameter {:?}: {e}", spec.id)))?;
                v.push(plain);
            }
            values.push(v);
        }
        Ok(values)
    }

    pub fn load(path: &Path) -> Result<Preset, PresetError> {
        let text = std::fs::read_to_string(path).map_err(FileError::io(path))?;
        Ok(toml::from_str(&text).map_err(|e| FileError::format(path, format!("is not valid: {e}")))?)
    }

    /// Writes the preset as TOML through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<(), PresetError> {
        let text = toml::to_string_pretty(self).map_err(|e| FileError::format(path, e))?;
        Ok(atomic::write(path, text.as_bytes()).map_err(|e| FileError::format(path, e))?)
    }
}
