//! The records of a run's metrics log (`metrics.jsonl`, one JSON object per line, written and truncated on resume
//! by [`afx_core::run_folder::MetricsLog`]).

use serde::{Deserialize, Deserializer, Serialize};

use crate::timing::StepTiming;

/// One training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    /// Audio loss (MRSTFT) of the real chain's output at the predicted θ, over the items that rendered (NaN when
    /// none did).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    pub lr: f64,
    pub ok: usize,
    pub failed: usize,
    /// mean |θ − θ*| over the batch (a diagnostic: equivalent settings exist); NaN (`null`) where θ* is unknown
    /// (a user's pairs).
    #[serde(deserialize_with = "nan_if_null")]
    pub param_error: f64,
    pub timing: StepTiming,
}

/// MRSTFT against target_A (lower is better) of the trained model and the baselines, means over the scored
/// items: NaN (no score) when no item was scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    #[serde(deserialize_with = "nan_if_null")]
    pub trained: f64,
    /// The model's input itself (raw or corrupted), unprocessed.
    #[serde(deserialize_with = "nan_if_null")]
    pub input: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub default: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub random: f64,
}

/// mean |θ − θ*|.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParamErrors {
    #[serde(deserialize_with = "nan_if_null")]
    pub trained: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub default: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub random: f64,
}

/// One validation on the held-out pairs, always rendered by the real chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub step: u64,
    /// Held-out items scored: those in which every render (the trained model's, the default and the random
    /// parameters') succeeded; the means are over these. 0 means no score: the means are then NaN.
    pub items: usize,
    /// Held-out items left out because at least one of their renders failed (an item counts once, however many
    /// of its renders failed): `items + failed` is the validation set's size.
    pub failed: usize,
    /// Means over the scored items; NaN when there are none.
    pub mrstft: Baselines,
    /// Methods with a neural proxy: MRSTFT of the PROXY's output at the trained θ (the real chain's is
    /// `mrstft.trained`); the gap shows how far training on the proxy can mislead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<f64>,
    /// Mean |θ − θ*|: only where θ* is known (synthetic pairs); absent for a user's pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_error: Option<ParamErrors>,
}

/// One held-out pair of a pair folder at a validation (`validation_pairs.json`, the report's table): against the
/// pair's processed crop, before (the raw input) and after (the trained model's render through the real chain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairValidation {
    pub name: String,
    /// MRSTFT of the raw input (`None`: an item whose baseline renders failed is not scored).
    pub mrstft_before: Option<f64>,
    /// MRSTFT of the trained render (`None`: its render failed).
    pub mrstft_after: Option<f64>,
    /// |loudness(raw) − loudness(processed)| in LU (EBU R128).
    pub loudness_before_lu: f64,
    /// |loudness(trained render) − loudness(processed)| in LU.
    pub loudness_after_lu: Option<f64>,
    /// The predicted parameters, in plain units.
    pub params: Vec<crate::infer::PredictedParam>,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Step(StepRecord),
    Validation(ValidationRecord),
}

impl afx_core::run_folder::MetricsRecord for Record {
    fn step(&self) -> u64 {
        match self {
            Record::Step(r) => r.step,
            Record::Validation(r) => r.step,
        }
    }
}

/// serde_json writes a non-finite f64 (NaN: no item scored) as `null`; this reads `null` back as NaN, so such a
/// record is kept, not dropped as unreadable.
fn nan_if_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_line_reads_with_or_without_a_parameter_error() {
        // A line as runs before pair folders wrote it: the parameter error is there.
        let old = r#"{"kind":"validation","step":50,"items":16,"failed":0,"mrstft":{"trained":1.5,"input":4.4,"default":2.0,"random":3.0},"param_error":{"trained":0.2,"default":0.25,"random":0.33}}"#;
        let Record::Validation(v) = serde_json::from_str::<Record>(old).unwrap() else { panic!("not a validation") };
        assert_eq!(v.param_error, Some(ParamErrors { trained: 0.2, default: 0.25, random: 0.33 }));
        // A pair folder's: θ* unknown, no parameter error, and none written back.
        let none = ValidationRecord { param_error: None, ..v.clone() };
        let line = serde_json::to_string(&Record::Validation(none.clone())).unwrap();
        assert!(!line.contains("param_error"), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), Record::Validation(none));
        // A step without θ*: NaN, written as null and read back as NaN.
        let step = StepRecord {
            step: 3,
            loss: 1.0,
            lr: 1e-3,
            ok: 4,
            failed: 0,
            param_error: f64::NAN,
            timing: Default::default(),
        };
        let line = serde_json::to_string(&Record::Step(step)).unwrap();
        assert!(line.contains(r#""param_error":null"#), "{line}");
        let Record::Step(s) = serde_json::from_str::<Record>(&line).unwrap() else { panic!("not a step") };
        assert!(s.param_error.is_nan());
    }
}
