//! The TRUE gradient of afx's own test effect, the one plugin afx hosts as a black box but knows the insides
//! of: the forward value is the packaged plugin's real render (through the pool, like every method), dL/dy is
//! the loss's own backward, and dy/dθ comes from the effect's DSP twin ([`afx_testfx_dsp::vjp`], forward-mode
//! sensitivities in f64) carried through the chain's normalised → plain mapping
//! ([`afx_host::ParamSpec::d_plain_d_normalized`], tone's log scale included). DeepAFx-ST's "autodiff" row,
//! and the reference `afx eval-grads` measures the estimators against. Refused for any other chain.

use afx_core::Audio;
use afx_host::Format;
use afx_nn::loss::{MrStftConfig, MrStftLoss};
use afx_spsa::Pool;
use afx_testfx_dsp::{DRIVE, FAULT, GAIN, PARAMS, TONE};
use candle_core::{DType, Device};

use super::{Backward, GradMethod, Gradients, MethodBatch, real_gradients};
use crate::TrainError;
use crate::chain_info::{ChainInfo, StageInfo};

/// How a trained parameter of the chain reaches the test effect: its index in [`PARAMS`] and its spec.
#[derive(Debug, Clone)]
struct Mapped {
    twin_index: usize,
    spec: afx_host::ParamSpec,
}

/// The test effect's exact sensitivities for a chain that is the test effect alone.
#[derive(Debug, Clone)]
pub struct TestFxTwin {
    /// Plain values of drive, tone and gain when θ sets none of them.
    base: [f64; 3],
    /// θ's parameters, in θ order.
    params: Vec<Mapped>,
}

/// The effect's parameter index for a host's parameter id: LV2 uses the port symbol, CLAP and VST3 the index.
fn twin_index(id: &str) -> Option<usize> {
    afx_testfx_dsp::param_index(id).or_else(|| id.parse::<usize>().ok().filter(|&i| i < PARAMS.len()))
}

fn is_test_effect(stage: &StageInfo) -> bool {
    match stage.format {
        Format::Lv2 => stage.plugin == afx_testfx_dsp::LV2_URI,
        Format::Clap => stage.plugin == afx_testfx_dsp::CLAP_ID,
        Format::Vst3 => stage.plugin.eq_ignore_ascii_case(afx_testfx_dsp::VST3_CLASS_ID),
    }
}

impl TestFxTwin {
    /// The twin of `chain`, or an error saying why `chain` has no exact gradient.
    pub fn for_chain(chain: &ChainInfo) -> Result<TestFxTwin, TrainError> {
        let refuse = |why: String| {
            Err(TrainError::Config(format!(
                "--grad exact: chain {:?} {why}; afx knows the exact gradient only of its own test effect (LV2 {}, \
                 CLAP {}, VST3 class {}) alone in a chain: use spsa, fd or a proxy method for other plugins",
                chain.name,
                afx_testfx_dsp::LV2_URI,
                afx_testfx_dsp::CLAP_ID,
                afx_testfx_dsp::VST3_CLASS_ID
            )))
        };
        let [stage] = chain.stages.as_slice() else {
            let plugins: Vec<&str> = chain.stages.iter().map(|s| s.plugin.as_str()).collect();
            return refuse(format!("hosts {} plugins ({})", plugins.len(), plugins.join(", ")));
        };
        if !is_test_effect(stage) {
            return refuse(format!("hosts {} plugin {}", stage.format.as_str(), stage.plugin));
        }
        let mut base =
            [f64::from(PARAMS[DRIVE].default), f64::from(PARAMS[TONE].default), f64::from(PARAMS[GAIN].default)];
        for (id, value) in &stage.base {
            match twin_index(id) {
                Some(FAULT) if *value != 0.0 => return refuse(format!("sets the fault parameter to {value}")),
                Some(i @ (DRIVE | TONE | GAIN)) => base[i] = f64::from(*value),
                _ => {}
            }
        }
        let mut params = vec![];
        for p in &chain.params {
            match twin_index(&p.spec.id) {
                Some(i @ (DRIVE | TONE | GAIN)) => params.push(Mapped { twin_index: i, spec: p.spec.clone() }),
                _ => return refuse(format!("trains parameter {:?}, which has no derivative", p.spec.id)),
            }
        }
        Ok(TestFxTwin { base, params })
    }

    /// `dL/dθ` (normalised units) of the packaged effect on `input` at θ, given `grad_y` = dL/dy: the plain
    /// values θ maps to, the twin's vector-Jacobian product in plain units, times d plain/d θ. θ is one row of
    /// P values, or a trajectory of rows at `hop` (see `afx_host::automation`: every row's gradient, through the
    /// twin's reverse-mode [`afx_testfx_dsp::vjp_rows`]).
    pub fn vjp(&self, input: &Audio, theta: &[f32], hop: usize, grad_y: &Audio) -> Result<Vec<f32>, TrainError> {
        let p = self.params.len();
        let one_row = theta.len() == p;
        if !one_row && (p == 0 || !theta.len().is_multiple_of(p) || hop == 0) {
            return Err(TrainError::Config(format!(
                "--grad exact: a trajectory of {} values is not rows of {p} parameters at a hop of {hop}",
                theta.len()
            )));
        }
        let rows = theta.chunks(p.max(1)).map(|row| self.plain(row)).collect::<Result<Vec<_>, _>>()?;
        // One effect per channel, as every format runs it; their contributions add up.
        let mut d_plain = vec![[0f64; 3]; rows.len()];
        let rate = f64::from(input.sample_rate());
        for (x, g) in input.channels().iter().zip(grad_y.channels()) {
            if x.len() != g.len() {
                return Err(TrainError::Config(format!(
                    "--grad exact: dL/dy has {} frames, the input {}",
                    g.len(),
                    x.len()
                )));
            }
            let per_row = match rows.as_slice() {
                [row] => vec![afx_testfx_dsp::vjp(x, rate, row[DRIVE], row[TONE], row[GAIN], g)],
                rows => afx_testfx_dsp::vjp_rows(x, rate, rows, hop, g),
            };
            for (d, v) in d_plain.iter_mut().zip(per_row) {
                for (d, v) in d.iter_mut().zip(v) {
                    *d += v;
                }
            }
        }
        Ok(theta
            .chunks(p.max(1))
            .zip(&d_plain)
            .flat_map(|(row, d)| {
                self.params.iter().zip(row).map(|(m, &t)| (d[m.twin_index] * m.spec.d_plain_d_normalized(t)) as f32)
            })
            .collect())
    }

    /// The plain (drive, tone, gain) of one row of θ, the base values where θ sets none.
    fn plain(&self, row: &[f32]) -> Result<[f64; 3], TrainError> {
        let mut plain = self.base;
        for (m, &t) in self.params.iter().zip(row) {
            let value = m.spec.to_plain(t);
            plain[m.twin_index] = f64::from(
                value.map_err(|e| TrainError::Config(format!("--grad exact: parameter {}: {e}", m.spec.id)))?,
            );
        }
        Ok(plain)
    }
}

/// The `exact` gradient method.
pub struct Exact {
    twin: TestFxTwin,
    loss: MrStftLoss,
}

impl Exact {
    pub fn new(chain: &ChainInfo, loss: &MrStftConfig) -> Result<Exact, TrainError> {
        Ok(Exact { twin: TestFxTwin::for_chain(chain)?, loss: MrStftLoss::new(loss, DType::F32, &Device::Cpu)? })
    }
}

impl GradMethod for Exact {
    fn name(&self) -> &'static str {
        "exact"
    }

    fn gradients(&mut self, pool: &mut Pool, batch: MethodBatch<'_>) -> Result<Gradients, TrainError> {
        let (twin, hop) = (&self.twin, batch.hop);
        real_gradients(pool, &self.loss, batch, Backward::Estimator, |_, forward, thetas| {
            forward
                .kept
                .iter()
                .zip(&forward.grad_y)
                .zip(&forward.inputs)
                .map(|((&i, g), x)| twin.vjp(x, &thetas[i], hop, g).map(Ok))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use afx_host::{ParamKind, ParamSpec, Scale};

    use super::*;
    use crate::chain_info::TrainedParam;

    const RATE: u32 = 22_050;

    /// The test effect as afx resolves it from its CLAP build: ids are indices, tone on a log scale, and (as
    /// plugins.toml may) drive narrowed to 3..18 dB.
    fn chain() -> ChainInfo {
        let spec = |i: usize, min: f32, max: f32| {
            let p = &PARAMS[i];
            ParamSpec {
                id: i.to_string(),
                name: p.name.into(),
                unit: None,
                min,
                max,
                default: p.default,
                scale: if p.log { Scale::Log } else { Scale::Linear },
                kind: ParamKind::Continuous,
            }
        };
        let params = [spec(DRIVE, 3.0, 18.0), spec(TONE, 200.0, 20_000.0), spec(GAIN, -24.0, 12.0)]
            .into_iter()
            .map(|spec| TrainedParam { stage: "fx".into(), default_normalized: 0.5, spec })
            .collect();
        let base = PARAMS.iter().enumerate().map(|(i, p)| (i.to_string(), p.default)).collect();
        let stage = StageInfo { name: "fx".into(), format: Format::Clap, plugin: afx_testfx_dsp::CLAP_ID.into(), base };
        ChainInfo { name: "fx".into(), params, stages: vec![stage] }
    }

    fn signal(n: usize) -> Vec<f32> {
        (0..n).map(|i| 0.6 * (i as f32 * 0.031).sin() + 0.3 * (i as f32 * 0.47).sin()).collect()
    }

    /// The twin's output at θ through the chain's own mapping, in f64.
    fn output(twin: &TestFxTwin, x: &[f32], theta: &[f64]) -> Vec<f64> {
        let mut plain = twin.base;
        for (m, &t) in twin.params.iter().zip(theta) {
            let (min, max) = (f64::from(m.spec.min), f64::from(m.spec.max));
            plain[m.twin_index] = match m.spec.scale {
                Scale::Log => min * (max / min).powf(t),
                Scale::Linear => min + t * (max - min),
            };
        }
        afx_testfx_dsp::sensitivities(x, f64::from(RATE), plain[DRIVE], plain[TONE], plain[GAIN]).output
    }

    #[test]
    fn the_vjp_in_normalised_units_matches_central_differences_through_the_mapping() {
        let twin = TestFxTwin::for_chain(&chain()).unwrap();
        let x = signal(3000);
        let g: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5).collect();
        for theta in [[0.2f32, 0.3, 0.5], [0.8, 0.75, 0.1], [0.5, 0.05, 0.9]] {
            let input = Audio::new(RATE, vec![x.clone()]).unwrap();
            let grad_y = Audio::new(RATE, vec![g.clone()]).unwrap();
            let exact = twin.vjp(&input, &theta, 0, &grad_y).unwrap();
            for j in 0..3 {
                let h = 1e-6;
                let at = |d: f64| {
                    let mut t: Vec<f64> = theta.iter().map(|&v| f64::from(v)).collect();
                    t[j] += d;
                    output(&twin, &x, &t).iter().zip(&g).map(|(y, g)| y * f64::from(*g)).sum::<f64>()
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let err = (f64::from(exact[j]) - fd).abs() / fd.abs().max(1e-9);
                assert!(err < 1e-5, "θ {theta:?}, parameter {j}: exact {} vs fd {fd} (rel. {err:.1e})", exact[j]);
            }
        }
    }

    #[test]
    fn other_chains_and_fault_settings_are_refused_by_name() {
        let mut other = chain();
        other.stages[0].plugin = "urn:zamaudio:ZamComp".into();
        other.stages[0].format = Format::Lv2;
        let e = TestFxTwin::for_chain(&other).unwrap_err().to_string();
        assert!(e.contains("--grad exact") && e.contains("urn:zamaudio:ZamComp") && e.contains("test effect"), "{e}");
        let mut faulty = chain();
        faulty.stages[0].base[FAULT].1 = 2.0;
        let e = TestFxTwin::for_chain(&faulty).unwrap_err().to_string();
        assert!(e.contains("fault"), "{e}");
        let mut two = chain();
        two.stages.push(two.stages[0].clone());
        assert!(TestFxTwin::for_chain(&two).unwrap_err().to_string().contains("2 plugins"));
    }
}
