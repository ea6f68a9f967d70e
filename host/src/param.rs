//! Parameters: what a plugin exposes, in plain units and in the normalised [0, 1] space networks predict.

use serde::{Deserialize, Serialize};

/// How the normalised [0, 1] space maps onto a parameter's plain range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// `plain = min + n * (max - min)`.
    #[default]
    Linear,
    /// `plain = min * (max / min)^n`; only for ranges that are strictly positive (or strictly negative).
    Log,
}

/// What values a parameter takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// Any value in `[min, max]`.
    #[default]
    Continuous,
    /// Whole numbers in `[min, max]`.
    Integer,
    /// Off (`min`) or on (`max`).
    Toggle,
    /// One of a list of labelled values.
    Enumeration(Vec<Choice>),
}

/// One labelled value of an enumerated parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub value: f32,
    pub label: String,
}

/// One parameter of a plugin, as the plugin describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Stable identifier: the LV2 port symbol, the CLAP or VST3 parameter id.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Unit symbol ("dB", "Hz", "ms") where the plugin says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub min: f32,
    pub max: f32,
    pub default: f32,
    pub scale: Scale,
    pub kind: ParamKind,
}

/// A plain value that a parameter does not accept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{value} is outside the range [{min}, {max}]")]
    OutOfRange { value: f32, min: f32, max: f32 },
    #[error("{value} is not a finite number")]
    NotFinite { value: f32 },
    #[error("{value} is not a whole number (the parameter is an integer in [{min}, {max}])")]
    NotInteger { value: f32, min: f32, max: f32 },
    #[error("{value} is not a toggle value (use {min} for off or {max} for on)")]
    NotToggle { value: f32, min: f32, max: f32 },
    #[error("{value} is not one of the parameter's choices: {choices}")]
    NotAChoice { value: f32, choices: String },
    #[error("normalised value {value} is outside [0, 1]")]
    NormalizedOutOfRange { value: f32 },
}

impl ParamSpec {
    /// True when gradient-based training can move this parameter smoothly.
    pub fn is_continuous(&self) -> bool {
        self.kind == ParamKind::Continuous && self.max > self.min
    }

    /// The scale actually used: a log scale needs a range that does not touch or cross zero.
    pub fn effective_scale(&self) -> Scale {
        match self.scale {
            Scale::Log if self.min > 0.0 && self.max > 0.0 || self.min < 0.0 && self.max < 0.0 => Scale::Log,
            _ => Scale::Linear,
        }
    }

    /// Maps a normalised value in [0, 1] to the plain range, snapping to the values a stepped parameter takes.
    pub fn to_plain(&self, normalized: f32) -> Result<f32, ValueError> {
        if !(0.0..=1.0).contains(&normalized) {
            return Err(ValueError::NormalizedOutOfRange { value: normalized });
        }
        let n = f64::from(normalized);
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let plain = match self.effective_scale() {
            Scale::Linear => min + n * (max - min),
            Scale::Log => min * (max / min).powf(n),
        };
        // Rounding in f64 -> f32 may step a hair outside the range; the mapping is ours, so pull it back.
        let plain = (plain as f32).clamp(self.min.min(self.max), self.max.max(self.min));
        Ok(self.snap(plain))
    }

    /// `d plain / d normalized` of [`ParamSpec::to_plain`] at `normalized` for a continuous parameter (in f64):
    /// what carries a gradient in plain units over to θ's normalised units. 0 for stepped parameters.
    pub fn d_plain_d_normalized(&self, normalized: f32) -> f64 {
        if !self.is_continuous() {
            return 0.0;
        }
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        match self.effective_scale() {
            Scale::Linear => max - min,
            Scale::Log => min * (max / min).powf(f64::from(normalized)) * (max / min).ln(),
        }
    }

    /// Maps a plain value to [0, 1]; the inverse of [`ParamSpec::to_plain`] for continuous parameters.
    pub fn to_normalized(&self, plain: f32) -> f32 {
        if self.max == self.min {
            return 0.0;
        }
        let (p, min, max) = (f64::from(plain), f64::from(self.min), f64::from(self.max));
        let n = match self.effective_scale() {
            Scale::Linear => (p - min) / (max - min),
            Scale::Log => (p / min).ln() / (max / min).ln(),
        };
        n.clamp(0.0, 1.0) as f32
    }

    fn snap(&self, plain: f32) -> f32 {
        match &self.kind {
            ParamKind::Continuous => plain,
            ParamKind::Integer => plain.round(),
            ParamKind::Toggle => {
                if plain >= 0.5 * (self.min + self.max) {
                    self.max
                } else {
                    self.min
                }
            }
            ParamKind::Enumeration(choices) => choices
                .iter()
                .map(|c| c.value)
                .min_by(|a, b| (a - plain).abs().total_cmp(&(b - plain).abs()))
                .unwrap_or(plain),
        }
    }

    /// Checks that `value` is one this parameter takes, exactly: afx never clamps silently.
    pub fn check(&self, value: f32) -> Result<(), ValueError> {
        if !value.is_finite() {
            return Err(ValueError::NotFinite { value });
        }
        let (min, max) = (self.min, self.max);
        if value < min || value > max {
            return Err(ValueError::OutOfRange { value, min, max });
        }
        match &self.kind {
            ParamKind::Continuous => Ok(()),
            ParamKind::Integer if value.fract() != 0.0 => Err(ValueError::NotInteger { value, min, max }),
            ParamKind::Integer => Ok(()),
            ParamKind::Toggle if value != min && value != max => Err(ValueError::NotToggle { value, min, max }),
            ParamKind::Toggle => Ok(()),
            ParamKind::Enumeration(choices) if choices.is_empty() || choices.iter().any(|c| c.value == value) => Ok(()),
            ParamKind::Enumeration(choices) => Err(ValueError::NotAChoice {
                value,
                choices: choices.iter().map(|c| format!("{} ({})", c.value, c.label)).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// How messages name this parameter: its id, or its name where the id is a bare number (CLAP, VST3).
    pub fn label(&self) -> &str {
        if self.id.bytes().all(|b| b.is_ascii_digit()) { &self.name } else { &self.id }
    }

    /// True when a normalised value means the same plain value for both (same id, range and effective scale);
    /// names, units and defaults may differ between plugin versions without changing that. What a trained run
    /// or a proxy checks before it is used with a chain.
    pub fn same_mapping(&self, other: &ParamSpec) -> bool {
        self.id == other.id
            && self.min == other.min
            && self.max == other.max
            && self.effective_scale() == other.effective_scale()
    }

    /// `id [min, max] Scale`: the mapping [`ParamSpec::same_mapping`] compares, for messages.
    pub fn mapping(&self) -> String {
        format!("{} [{}, {}] {:?}", self.id, self.min, self.max, self.effective_scale())
    }

    /// `value` with its unit, for printing.
    pub fn display_value(&self, value: f32) -> String {
        match &self.unit {
            Some(unit) => format!("{value} {unit}"),
            None => value.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: f32, max: f32, scale: Scale, kind: ParamKind) -> ParamSpec {
        ParamSpec { id: "p".into(), name: "P".into(), unit: None, min, max, default: min, scale, kind }
    }

    #[test]
    fn d_plain_d_normalized_is_the_slope_of_to_plain() {
        for scale in [Scale::Linear, Scale::Log] {
            let s = spec(20.0, 8000.0, scale, ParamKind::Continuous);
            for n in [0.1f32, 0.5, 0.9] {
                let h = 1e-3f32;
                let fd = (f64::from(s.to_plain(n + h).unwrap()) - f64::from(s.to_plain(n - h).unwrap())) / 0.002;
                let exact = s.d_plain_d_normalized(n);
                assert!((exact - fd).abs() < 1e-3 * fd.abs(), "{scale:?} at {n}: {exact} vs {fd}");
            }
        }
        assert_eq!(spec(0.0, 4.0, Scale::Linear, ParamKind::Integer).d_plain_d_normalized(0.5), 0.0);
    }

    #[test]
    fn linear_mapping_round_trips_and_hits_the_ends() {
        let s = spec(-80.0, 0.0, Scale::Linear, ParamKind::Continuous);
        assert_eq!(s.to_plain(0.0).unwrap(), -80.0);
        assert_eq!(s.to_plain(1.0).unwrap(), 0.0);
        assert_eq!(s.to_plain(0.25).unwrap(), -60.0);
        assert!((s.to_normalized(-20.0) - 0.75).abs() < 1e-7);
    }

    #[test]
    fn log_mapping_is_geometric() {
        let s = spec(20.0, 20000.0, Scale::Log, ParamKind::Continuous);
        assert!((s.to_plain(0.5).unwrap() - 632.4555).abs() < 1e-2);
        assert!((s.to_normalized(632.4555) - 0.5).abs() < 1e-6);
        assert_eq!(s.to_plain(1.0).unwrap(), 20000.0);
    }

    #[test]
    fn log_scale_on_a_range_through_zero_falls_back_to_linear() {
        let s = spec(-1.0, 1.0, Scale::Log, ParamKind::Continuous);
        assert_eq!(s.effective_scale(), Scale::Linear);
        assert_eq!(s.to_plain(0.5).unwrap(), 0.0);
    }

    #[test]
    fn stepped_parameters_snap() {
        assert_eq!(spec(0.0, 10.0, Scale::Linear, ParamKind::Integer).to_plain(0.33).unwrap(), 3.0);
        assert_eq!(spec(0.0, 1.0, Scale::Linear, ParamKind::Toggle).to_plain(0.6).unwrap(), 1.0);
    }

    #[test]
    fn check_rejects_instead_of_clamping() {
        let s = spec(-80.0, 0.0, Scale::Linear, ParamKind::Continuous);
        assert_eq!(s.check(3.0), Err(ValueError::OutOfRange { value: 3.0, min: -80.0, max: 0.0 }));
        assert!(s.check(f32::NAN).is_err());
        assert!(s.check(-3.0).is_ok());
        assert!(spec(0.0, 4.0, Scale::Linear, ParamKind::Integer).check(2.5).is_err());
        assert!(s.to_plain(1.5).is_err());
    }
}
