//! What a run records about its chain, so a run is never used with a chain it was not trained for.

use afx_host::{ChainLayout, ParamSpec};
use serde::{Deserialize, Serialize};

/// One trained parameter: the stage it belongs to, its spec in the trained range, and where the chain's base
/// (default or fixed) value sits in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedParam {
    pub stage: String,
    pub spec: ParamSpec,
    pub default_normalized: f32,
}

/// Which plugin a stage hosts, and the plain value of each of its parameters when θ sets none (defaults, or
/// fixed in plugins.toml): enough to recognise a plugin whose DSP afx knows (the test effect's exact gradient).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    pub name: String,
    pub format: afx_host::Format,
    /// LV2 URI, CLAP id or VST3 class id.
    pub plugin: String,
    /// Every parameter's id and base plain value, in the plugin's order.
    pub base: Vec<(String, f32)>,
}

/// A chain's name and its trainable parameters in θ order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainInfo {
    pub name: String,
    pub params: Vec<TrainedParam>,
    /// The chain's plugins in order (runs written before this was recorded have none).
    #[serde(default)]
    pub stages: Vec<StageInfo>,
}

impl ChainInfo {
    pub fn from_chain(chain: &ChainLayout) -> ChainInfo {
        let params = chain
            .stages()
            .iter()
            .flat_map(|stage| {
                stage.trainable().iter().map(move |(index, spec)| TrainedParam {
                    stage: stage.name().to_string(),
                    spec: spec.clone(),
                    // A base value outside a narrowed trained range maps to the nearest end (to_normalized clamps).
                    default_normalized: spec.to_normalized(stage.base_values()[*index]),
                })
            })
            .collect();
        let stages = chain
            .stages()
            .iter()
            .map(|stage| {
                let info = stage.plugin();
                StageInfo {
                    name: stage.name().to_string(),
                    format: info.format,
                    plugin: info.id.clone(),
                    base: info.params.iter().map(|p| p.id.clone()).zip(stage.base_values().iter().copied()).collect(),
                }
            })
            .collect();
        ChainInfo { name: chain.name().to_string(), params, stages }
    }

    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// θ of the chain's defaults (the "default parameters" baseline).
    pub fn default_theta(&self) -> Vec<f32> {
        self.params.iter().map(|p| p.default_normalized).collect()
    }

    /// `stage.id [min, max] scale` for each parameter, for error messages.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.params.iter().map(|p| format!("{}.{}", p.stage, p.spec.mapping())).collect();
        format!("{} parameters: {}", list.len(), list.join(", "))
    }

    /// True when θ means the same plain values for both (same parameters, ranges and scales, in order);
    /// plugin-reported names, units and defaults may differ between versions without changing that.
    pub fn same_parameters(&self, other: &ChainInfo) -> bool {
        self.params.len() == other.params.len()
            && self.params.iter().zip(&other.params).all(|(a, b)| a.stage == b.stage && a.spec.same_mapping(&b.spec))
    }
}
