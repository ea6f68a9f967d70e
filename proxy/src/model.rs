//! A trained proxy: the TCN plus what it is a proxy of (chain, parameter list, sample rate), loaded from the
//! newest checkpoint of a proxy run folder and refused for any other chain.

use std::path::{Path, PathBuf};

use afx_host::{ChainLayout, ParamSpec, Scale};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::ProxyError;
use crate::tcn::{Tcn, TcnConfig};

/// One parameter of θ as the proxy was trained on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyParam {
    pub stage: String,
    pub spec: ParamSpec,
    /// Applied analytically as an output gain in dB (plugins.toml `output_gain` on the chain's last plugin).
    pub output_gain: bool,
}

/// What a proxy models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyMeta {
    pub chain: String,
    pub params: Vec<ProxyParam>,
    pub sample_rate: u32,
    pub tcn: TcnConfig,
}

impl ProxyMeta {
    /// The parameters of `chain` in θ order.
    pub fn params_of(chain: &ChainLayout) -> Vec<ProxyParam> {
        chain
            .params()
            .iter()
            .map(|p| ProxyParam { stage: p.stage.to_string(), spec: p.spec.clone(), output_gain: p.output_gain })
            .collect()
    }

    /// `stage.id` of every parameter, in θ order: the names a collection's shards list.
    pub fn param_names(&self) -> Vec<String> {
        self.params.iter().map(|p| format!("{}.{}", p.stage, p.spec.id)).collect()
    }

    /// `stage.id [min, max] scale` per parameter, for error messages.
    pub fn describe(params: &[(&str, &ParamSpec)]) -> String {
        let list: Vec<String> = params.iter().map(|(stage, s)| format!("{stage}.{}", s.mapping())).collect();
        format!("{} parameters: {}", list.len(), list.join(", "))
    }

    /// Ok when θ means the same plain values for `params` as for this proxy (same parameters, ranges and
    /// scales, in order) at the same sample rate; otherwise an error naming both parameter lists.
    pub fn check(
        &self,
        origin: &Path,
        chain: &str,
        params: &[(&str, &ParamSpec)],
        sample_rate: u32,
    ) -> Result<(), ProxyError> {
        let same = self.params.len() == params.len()
            && self.params.iter().zip(params).all(|(a, (stage, b))| a.stage == *stage && a.spec.same_mapping(b));
        if !same || self.chain != chain {
            let own: Vec<(&str, &ParamSpec)> = self.params.iter().map(|p| (p.stage.as_str(), &p.spec)).collect();
            return Err(ProxyError::WrongChain {
                proxy: origin.to_path_buf(),
                proxy_chain: self.chain.clone(),
                proxy_params: Self::describe(&own),
                chain: chain.to_string(),
                chain_params: Self::describe(params),
            });
        }
        if self.sample_rate != sample_rate {
            return Err(ProxyError::Config(format!(
                "{} was trained at {} Hz; this run is at {sample_rate} Hz (train a proxy at that rate)",
                origin.display(),
                self.sample_rate
            )));
        }
        Ok(())
    }
}

/// The network and its metadata: `y = tcn(x, θ) · 10^(Σ gain_dB(θ) / 20)`.
pub struct Proxy {
    meta: ProxyMeta,
    tcn: Tcn,
    /// θ indices of the output gains with (min, max) dB of their linear ranges.
    gains: Vec<(usize, f64, f64)>,
    origin: PathBuf,
}

impl Proxy {
    /// A network for `meta` with weights created (or loaded) under `vb`.
    pub fn new(meta: ProxyMeta, vb: VarBuilder, origin: &Path) -> Result<Proxy, ProxyError> {
        meta.tcn.validate().map_err(ProxyError::Config)?;
        let tcn = Tcn::new(&meta.tcn, meta.params.len(), vb)?;
        let gains = meta
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.output_gain && p.spec.effective_scale() == Scale::Linear)
            .map(|(i, p)| (i, f64::from(p.spec.min), f64::from(p.spec.max)))
            .collect();
        Ok(Proxy { meta, tcn, gains, origin: origin.to_path_buf() })
    }

    pub fn meta(&self) -> &ProxyMeta {
        &self.meta
    }

    /// Where it was loaded from (for messages).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Checks that this proxy models `chain` at `sample_rate` (see [`ProxyMeta::check`]).
    pub fn check(&self, chain: &str, params: &[(&str, &ParamSpec)], sample_rate: u32) -> Result<(), ProxyError> {
        self.meta.check(&self.origin, chain, params, sample_rate)
    }

    /// `x` `(B, T)` audio, `theta` `(B, P)` normalised parameters → `(B, T)`; differentiable in both.
    pub fn forward_t(&self, x: &Tensor, theta: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (b, t) = x.dims2()?;
        let y = self.tcn.forward_t(&x.reshape((b, 1, t))?, theta, train)?.reshape((b, t))?;
        if self.gains.is_empty() {
            return Ok(y);
        }
        let mut db: Option<Tensor> = None;
        for &(i, min, max) in &self.gains {
            let g = ((theta.narrow(1, i, 1)? * (max - min))? + min)?;
            db = Some(match db {
                Some(d) => (d + g)?,
                None => g,
            });
        }
        let db = db.expect("at least one gain");
        let factor = (db * (std::f64::consts::LN_10 / 20.0))?.exp()?;
        y.broadcast_mul(&factor)
    }

    /// Inference: running statistics, no graph.
    pub fn forward(&self, x: &Tensor, theta: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(&x.detach(), &theta.detach(), false)
    }
}
