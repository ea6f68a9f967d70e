//! A chain of effects rendered in order as one function `y = f(x, θ)` of all its trainable parameters.

use crate::automation::Automation;
use crate::config::{Config, ConfigError};
use crate::host::{Host, LoadError};
use crate::info::{Format, PluginInfo};
use crate::param::{ParamSpec, ValueError};
use crate::plugin::Effect;
use crate::render::{RenderError, RenderSettings};
use crate::suggest;
use afx_core::Audio;
use serde::{Deserialize, Serialize};

/// Why a chain could not be built or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    NotFound(String),
    #[error("plugin {stage:?}: {source}")]
    Load { stage: String, source: LoadError },
    #[error("{path}: [plugins.{stage}.params.{param}]: {message}")]
    BadEntry { path: String, stage: String, param: String, message: String },
    #[error("{0}")]
    UnknownParam(String),
    #[error("parameter {param}: {source}")]
    BadValue { param: String, source: ValueError },
    #[error("chain {chain:?} takes {expected} normalised parameters, got {got}")]
    ThetaLength { chain: String, expected: usize, got: usize },
    #[error(
        "chain {chain:?} takes a trajectory of rows of {params} normalised parameters at a hop of at least 1 frame, \
         got {got} values at a hop of {hop}"
    )]
    TrajectoryShape { chain: String, params: usize, got: usize, hop: usize },
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// One plugin of a chain, as data: which plugin, and how θ maps onto its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    name: String,
    /// The plugin's description (every parameter's full spec), as the process that loaded it reported it.
    plugin: PluginInfo,
    /// Plain values used for every parameter that is not trained: defaults, or fixed in `plugins.toml`.
    base: Vec<f32>,
    /// Trained parameters: index into the plugin's parameters and the spec θ maps through (narrowed range,
    /// chosen scale).
    trainable: Vec<(usize, ParamSpec)>,
    /// Plugin parameter indices marked `output_gain` in plugins.toml.
    output_gains: Vec<usize>,
    /// Frames of latency the plugin reported (and afx trimmed) in [`Chain::probe`]'s render.
    #[serde(default)]
    latency: Option<usize>,
}

impl Stage {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stage's plugin: format, id, name, file and every parameter.
    pub fn plugin(&self) -> &PluginInfo {
        &self.plugin
    }

    /// The plain value of every parameter when nothing is trained or set.
    pub fn base_values(&self) -> &[f32] {
        &self.base
    }

    /// Frames of latency the plugin reported in the chain's probe render ([`Chain::probe`]: 44.1 kHz, base
    /// values), which afx trims from every output; `None` when the chain was not probed. Every render measures
    /// its own (latency may change with the rate and the values), so this is for reports, not for alignment.
    pub fn latency(&self) -> Option<usize> {
        self.latency
    }

    /// Trained parameters as (plugin parameter index, spec in the trained range).
    pub fn trainable(&self) -> &[(usize, ParamSpec)] {
        &self.trainable
    }
}

/// A trainable parameter of a chain, in θ order.
#[derive(Debug, Clone, Copy)]
pub struct ChainParam<'a> {
    pub stage: &'a str,
    pub spec: &'a ParamSpec,
    /// A pure output gain in dB of the chain's LAST plugin (marked `output_gain` in plugins.toml): the chain's
    /// output scales by 10^(v/20). The same mark on an earlier stage does not make it an output gain of the chain.
    pub output_gain: bool,
}

/// What a chain is, without its plugins loaded: its stages' plugins and parameters and how θ maps onto them.
///
/// A worker process that loaded the chain sends this to the process that drives it, which then never runs
/// plugin code itself (a plugin that crashes while loading takes only the worker down). Every method that needs
/// no rendering lives here; [`Chain`] adds the loaded effects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainLayout {
    name: String,
    stages: Vec<Stage>,
}

/// Effects rendered in order. θ ∈ [0, 1]^P covers the trainable parameters of every stage, stage by stage,
/// each stage's in the plugin's parameter order.
pub struct Chain {
    layout: ChainLayout,
    effects: Vec<Effect>,
    scratch: Audio,
}

impl Chain {
    /// A chain or plugin named in `config`, or else any installed plugin by id or name (then every continuous
    /// parameter is trained over its full range).
    /// `format` narrows the search among installed plugins (names such as "ZamComp" exist in several formats).
    pub fn resolve(
        host: &Host,
        config: Option<&Config>,
        key: &str,
        format: Option<Format>,
    ) -> Result<Chain, ChainError> {
        if let Some(config) = config {
            if let Some(entry) = config.chains.get(key) {
                let stages =
                    entry.plugins.iter().map(|p| stage_from_config(host, config, p)).collect::<Result<_, _>>()?;
                return Ok(Chain::new(key, stages));
            }
            if config.plugins.contains_key(key) {
                return Ok(Chain::new(key, vec![stage_from_config(host, config, key)?]));
            }
        }
        match host.load(key, format) {
            Ok(effect) => Ok(Chain::new(key, vec![stage_from_plugin(key, effect)])),
            Err(LoadError::NotFound { suggestions, failed, .. }) => {
                let mut near = config.map(|c| suggest::nearest(key, c.names(), 3)).unwrap_or_default();
                near.extend(suggestions);
                let known = match config {
                    Some(c) => format!("a chain or plugin in {} or an installed plugin's id or name", c.path.display()),
                    None => "an installed plugin's id or name (and no plugins.toml was given)".into(),
                };
                Err(ChainError::NotFound(format!(
                    "{key:?} is not {known}{}{}",
                    suggest::did_you_mean(&near),
                    crate::host::failed_files(&failed)
                )))
            }
            Err(source) => Err(ChainError::Load { stage: key.into(), source }),
        }
    }

    fn new(name: &str, stages: Vec<(Stage, Effect)>) -> Chain {
        let (stages, effects) = stages.into_iter().unzip();
        Chain { layout: ChainLayout { name: name.into(), stages }, effects, scratch: Audio::silence(1, 1, 0) }
    }

    /// Renders one block of silence through every stage at its base values, at 44.1 kHz, and records each
    /// plugin's latency in the layout ([`Stage::latency`]). Some formats (LV2) run no plugin code until an
    /// instance is made: a worker probes its chain before it reports ready, so a plugin that crashes or hangs there
    /// fails the worker's start instead of the first job of a batch. Non-finite output is not an error here: it
    /// is a property of the values, which every render checks for itself.
    pub fn probe(&mut self, settings: &RenderSettings) -> Result<(), ChainError> {
        let base: Vec<Vec<f32>> = self.layout.stages.iter().map(|s| s.base.clone()).collect();
        let silence = Audio::silence(44_100, 1, settings.block_size.max(1));
        let mut output = Audio::silence(44_100, 1, 0);
        match self.render_values_into(&silence, None, &base, settings, &mut output) {
            Ok(()) | Err(ChainError::Render(RenderError::NonFinite { .. })) => {}
            Err(e) => return Err(e),
        }
        for (stage, effect) in self.layout.stages.iter_mut().zip(&self.effects) {
            stage.latency = effect.latency();
        }
        Ok(())
    }

    /// The chain as data, for a process that does not load the plugins.
    pub fn layout(&self) -> &ChainLayout {
        &self.layout
    }

    pub fn name(&self) -> &str {
        self.layout.name()
    }

    pub fn stages(&self) -> &[Stage] {
        self.layout.stages()
    }

    /// The trainable parameters, in θ order.
    pub fn params(&self) -> Vec<ChainParam<'_>> {
        self.layout.params()
    }

    /// The number of trainable parameters, P.
    pub fn num_params(&self) -> usize {
        self.layout.num_params()
    }

    /// Plain values for every parameter of every stage, from normalised θ.
    pub fn plain_values(&self, theta: &[f32]) -> Result<Vec<Vec<f32>>, ChainError> {
        self.layout.plain_values(theta)
    }

    /// See [`ChainLayout::values_with`].
    pub fn values_with(&self, sets: &[(String, f32)], normalized: bool) -> Result<Vec<Vec<f32>>, ChainError> {
        self.layout.values_with(sets, normalized)
    }
}

impl ChainLayout {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The trainable parameters, in θ order.
    pub fn params(&self) -> Vec<ChainParam<'_>> {
        let last = self.stages.len().saturating_sub(1);
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(k, s)| {
                s.trainable.iter().map(move |(index, spec)| ChainParam {
                    stage: &s.name,
                    spec,
                    output_gain: k == last && s.output_gains.contains(index),
                })
            })
            .collect()
    }

    /// The number of trainable parameters, P.
    pub fn num_params(&self) -> usize {
        self.stages.iter().map(|s| s.trainable.len()).sum()
    }

    /// Plain values for every parameter of every stage, from normalised θ.
    pub fn plain_values(&self, theta: &[f32]) -> Result<Vec<Vec<f32>>, ChainError> {
        if theta.len() != self.num_params() {
            return Err(ChainError::ThetaLength {
                chain: self.name.clone(),
                expected: self.num_params(),
                got: theta.len(),
            });
        }
        let mut theta = theta.iter();
        let mut values = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let mut v = stage.base.clone();
            for (index, spec) in &stage.trainable {
                let n = *theta.next().expect("length checked");
                v[*index] = spec
                    .to_plain(n)
                    .map_err(|source| ChainError::BadValue { param: format!("{}.{}", stage.name, spec.id), source })?;
            }
            values.push(v);
        }
        Ok(values)
    }

    /// Plain automation for every stage from a normalised trajectory: `theta` holds one row of P values per
    /// control frame (F·P in all, row `f` from input frame `f·hop`; see [`crate::automation`]). One row gives
    /// constant automation, as [`ChainLayout::plain_values`] would.
    pub fn plain_automation(&self, theta: &[f32], hop: usize) -> Result<Vec<Automation>, ChainError> {
        let p = self.num_params();
        if theta.len() == p {
            return Ok(self.plain_values(theta)?.iter().map(|v| Automation::constant(v)).collect());
        }
        if p == 0 || !theta.len().is_multiple_of(p) || hop == 0 {
            return Err(ChainError::TrajectoryShape { chain: self.name.clone(), params: p, got: theta.len(), hop });
        }
        let mut stages: Vec<Vec<f32>> = vec![vec![]; self.stages.len()];
        for row in theta.chunks_exact(p) {
            for (rows, values) in stages.iter_mut().zip(self.plain_values(row)?) {
                rows.extend_from_slice(&values);
            }
        }
        Ok(self
            .stages
            .iter()
            .zip(stages)
            .map(|(stage, rows)| {
                Automation::new(hop, stage.base.len(), rows).expect("one row of the stage's values per frame")
            })
            .collect())
    }

    /// Every stage's base values with some parameters set, by `id` (when one stage has it) or `stage.id`.
    /// With `normalized`, values are in [0, 1] of the trained range (or of the plugin's range for parameters
    /// that are not trained).
    pub fn values_with(&self, sets: &[(String, f32)], normalized: bool) -> Result<Vec<Vec<f32>>, ChainError> {
        let mut values: Vec<Vec<f32>> = self.stages.iter().map(|s| s.base.clone()).collect();
        for (key, value) in sets {
            let (s, index) = self.find_param(key)?;
            let stage = &self.stages[s];
            let spec = &stage.plugin.params[index];
            let qualified = format!("{}.{}", stage.name, spec.id);
            let plain = if normalized {
                let mapped = stage.trainable.iter().find(|(i, _)| *i == index).map_or(spec, |(_, t)| t);
                mapped.to_plain(*value).map_err(|source| ChainError::BadValue { param: qualified.clone(), source })?
            } else {
                *value
            };
            spec.check(plain).map_err(|source| ChainError::BadValue { param: qualified, source })?;
            values[s][index] = plain;
        }
        Ok(values)
    }

    /// The (stage, parameter index) that `key` names: `id`, `stage.id`, or a name (see [`ChainLayout::values_with`]).
    pub(crate) fn find_param(&self, key: &str) -> Result<(usize, usize), ChainError> {
        let (stage_name, id) = match key.split_once('.') {
            Some((s, id)) if self.stages.iter().any(|st| st.name == s) => (Some(s), id),
            _ => (None, key),
        };
        let hits: Vec<(usize, usize)> = self
            .stages
            .iter()
            .enumerate()
            .filter(|(_, st)| stage_name.is_none_or(|n| n == st.name))
            .filter_map(|(s, st)| st.plugin.find_param(id).map(|i| (s, i)))
            .collect();
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => {
                let all: Vec<String> = self.all_param_keys();
                let near = suggest::nearest(key, all.iter().map(String::as_str), 5);
                Err(ChainError::UnknownParam(format!(
                    "{} has no parameter {key:?}{}",
                    self.name,
                    if near.is_empty() { format!("; valid: {}", all.join(", ")) } else { suggest::did_you_mean(&near) }
                )))
            }
            many => Err(ChainError::UnknownParam(format!(
                "{key:?} is ambiguous in {}: {}",
                self.name,
                many.iter().map(|&(s, _)| format!("{}.{id}", self.stages[s].name)).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn all_param_keys(&self) -> Vec<String> {
        let qualify = self.stages.len() > 1;
        self.stages
            .iter()
            .flat_map(|s| {
                s.plugin.params.iter().map(move |p| if qualify { format!("{}.{}", s.name, p.id) } else { p.id.clone() })
            })
            .collect()
    }
}

impl Chain {
    /// Renders `input` through every stage with the given plain values (one `Vec` per stage).
    pub fn render(
        &mut self,
        input: &Audio,
        values: &[Vec<f32>],
        settings: &RenderSettings,
    ) -> Result<Audio, ChainError> {
        let mut output = Audio::silence(input.sample_rate(), input.num_channels(), input.frames());
        self.render_into(input, values, settings, &mut output)?;
        Ok(output)
    }

    /// Like [`Chain::render`], reusing `output`'s buffers.
    pub fn render_into(
        &mut self,
        input: &Audio,
        values: &[Vec<f32>],
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), ChainError> {
        self.render_values_into(input, None, values, settings, output)
    }

    /// Like [`Chain::render`], feeding `sidechain` to every stage's sidechain (key) inputs instead of silence.
    pub fn render_keyed(
        &mut self,
        input: &Audio,
        sidechain: &Audio,
        values: &[Vec<f32>],
        settings: &RenderSettings,
    ) -> Result<Audio, ChainError> {
        let mut output = Audio::silence(input.sample_rate(), input.num_channels(), input.frames());
        self.render_values_into(input, Some(sidechain), values, settings, &mut output)?;
        Ok(output)
    }

    /// Renders `input` with plain `values` (one `Vec` per stage), `sidechain` fed to every stage's sidechain
    /// (key) inputs (silence when `None`), into `output`'s buffers.
    pub fn render_values_into(
        &mut self,
        input: &Audio,
        sidechain: Option<&Audio>,
        values: &[Vec<f32>],
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), ChainError> {
        let automations: Vec<Automation> = values.iter().map(|v| Automation::constant(v)).collect();
        self.render_automated_into(input, sidechain, &automations, settings, output)
    }

    /// Renders `input` with parameters that move: one [`Automation`] per stage (plain values of all its
    /// parameters; see [`crate::automation`]), `sidechain` as in [`Chain::render_values_into`].
    pub fn render_automated_into(
        &mut self,
        input: &Audio,
        sidechain: Option<&Audio>,
        automations: &[Automation],
        settings: &RenderSettings,
        output: &mut Audio,
    ) -> Result<(), ChainError> {
        if automations.len() != self.effects.len() {
            return Err(ChainError::ThetaLength {
                chain: self.layout.name.clone(),
                expected: self.effects.len(),
                got: automations.len(),
            });
        }
        for (i, (effect, automation)) in self.effects.iter_mut().zip(automations).enumerate() {
            let source = if i == 0 {
                input
            } else {
                std::mem::swap(output, &mut self.scratch);
                &self.scratch
            };
            effect.render_automated_into(source, sidechain, automation, settings, output)?;
        }
        Ok(())
    }

    /// Renders with normalised θ over the trainable parameters.
    pub fn render_normalized(
        &mut self,
        input: &Audio,
        theta: &[f32],
        settings: &RenderSettings,
    ) -> Result<Audio, ChainError> {
        let values = self.plain_values(theta)?;
        self.render(input, &values, settings)
    }
}

fn stage_from_plugin(name: &str, effect: Effect) -> (Stage, Effect) {
    let info = effect.info();
    let trainable =
        info.params.iter().enumerate().filter(|(_, p)| p.is_continuous()).map(|(i, p)| (i, p.clone())).collect();
    let stage = Stage {
        name: name.into(),
        plugin: info.clone(),
        base: info.default_values(),
        trainable,
        output_gains: vec![],
        latency: None,
    };
    (stage, effect)
}

fn stage_from_config(host: &Host, config: &Config, name: &str) -> Result<(Stage, Effect), ChainError> {
    let entry = &config.plugins[name];
    let effect =
        host.load(&entry.id, Some(entry.format)).map_err(|source| ChainError::Load { stage: name.into(), source })?;
    let info = effect.info();
    let bad = |param: &str, message: String| ChainError::BadEntry {
        path: config.path.display().to_string(),
        stage: name.into(),
        param: param.into(),
        message,
    };
    let mut base = info.default_values();
    let mut trainable = vec![];
    let mut output_gains = vec![];
    for (id, p) in &entry.params {
        let Some(index) = info.find_param(id) else {
            let near = suggest::nearest(id, info.params.iter().map(|p| p.id.as_str()), 5);
            let valid = info.params.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ");
            return Err(bad(
                id,
                format!("{} has no parameter {id:?}{}; valid: {valid}", info.name, suggest::did_you_mean(&near)),
            ));
        };
        let spec = &info.params[index];
        if let Some(value) = p.value {
            spec.check(value).map_err(|e| bad(id, e.to_string()))?;
            base[index] = value;
            continue;
        }
        if !spec.is_continuous() {
            return Err(bad(id, format!("{} is not continuous ({:?}); fix it with `value = ...`", spec.id, spec.kind)));
        }
        let mut trained = spec.clone();
        trained.min = p.min.unwrap_or(spec.min);
        trained.max = p.max.unwrap_or(spec.max);
        trained.scale = p.scale.unwrap_or(spec.scale);
        for bound in [trained.min, trained.max] {
            spec.check(bound).map_err(|e| bad(id, format!("trained range: {e}")))?;
        }
        if trained.min >= trained.max {
            return Err(bad(id, format!("empty trained range [{}, {}]", trained.min, trained.max)));
        }
        if p.output_gain {
            // Analytic application maps θ linearly to dB; a log scale would make that mapping wrong.
            if trained.effective_scale() != crate::Scale::Linear {
                return Err(bad(id, "output_gain needs a linear scale (dB)".into()));
            }
            output_gains.push(index);
        }
        trainable.push((index, trained));
    }
    if let Some((id, _)) = entry.params.iter().find(|(_, p)| p.output_gain && !p.train) {
        return Err(bad(id, "output_gain marks a trained parameter; add `train = true`".into()));
    }
    trainable.sort_by_key(|(i, _)| *i);
    let stage = Stage { name: name.into(), plugin: info.clone(), base, trainable, output_gains, latency: None };
    Ok((stage, effect))
}
