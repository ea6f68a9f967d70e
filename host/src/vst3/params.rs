//! VST3 parameters in afx's terms: plain-unit [`ParamSpec`]s from the edit controller's own mapping, and the
//! exact normalised value for a plain one.

use vst3::ComPtr;
use vst3::Steinberg::Vst::{IEditController, IEditControllerTrait, ParamID, ParameterInfo, String128};

use super::module::utf16_string;
use crate::param::{Choice, ParamKind, ParamSpec, Scale};

/// Parameters DPF adds to every plugin for its own bookkeeping; they are not part of the DSP.
pub(super) const DPF_INTERNALS: [&str; 3] = ["Buffer Size", "Sample Rate", "Current Program"];

/// One parameter in plain units, from the controller's own mapping.
pub(super) fn param_spec(controller: &ComPtr<IEditController>, info: &ParameterInfo, name: String) -> ParamSpec {
    let plain = |normalized: f64| {
        // SAFETY: a pure conversion on an initialised controller, for a parameter id it reported.
        (unsafe { controller.normalizedParamToPlain(info.id, normalized) }) as f32
    };
    let (a, b) = (plain(0.0), plain(1.0));
    // Some parameters run backwards (plain falls as normalised rises); ranges are stored low to high.
    let (min, max) = if a <= b { (a, b) } else { (b, a) };
    let steps = info.stepCount;
    let kind = match steps {
        1 => ParamKind::Toggle,
        s if s > 1 && min.fract() == 0.0 && max.fract() == 0.0 && max - min == s as f32 => ParamKind::Integer,
        s if s > 1 => {
            // Stepped, but not as whole plain numbers: the steps themselves are the values it takes.
            let choices = (0..=s)
                .map(|k| {
                    let normalized = f64::from(k) / f64::from(s);
                    let mut label: String128 = [0; 128];
                    // SAFETY: `label` is a writable String128; a failed call leaves it empty.
                    unsafe { controller.getParamStringByValue(info.id, normalized, &mut label) };
                    Choice { value: plain(normalized), label: utf16_string(&label) }
                })
                .collect();
            ParamKind::Enumeration(choices)
        }
        _ => ParamKind::Continuous,
    };
    // DPF reports a blank unit as " ".
    let unit = utf16_string(&info.units).trim().to_string();
    ParamSpec {
        id: info.id.to_string(),
        name,
        unit: (!unit.is_empty()).then_some(unit),
        min,
        max,
        default: plain(info.defaultNormalizedValue).clamp(min, max),
        scale: Scale::Linear,
        kind,
    }
}

/// The normalised value whose plain value, by the plugin's own mapping, is exactly `plain` where one exists.
///
/// `plainParamToNormalized` then `normalizedParamToPlain` often misses by an ulp (700 Hz comes back as
/// 700.00006), and the plugin applies its own mapping to what it receives: the DSP would run at a value a hair
/// off the one asked for, and differ from the same plugin in other formats. The mapping is monotonic, so a
/// bisection finds an exact preimage when the direct conversion has none.
pub(super) fn normalize_exactly(controller: &ComPtr<IEditController>, id: ParamID, plain: f32) -> f64 {
    // SAFETY: pure conversions on an initialised controller, for one of its parameter ids.
    let to_plain = |n: f64| (unsafe { controller.normalizedParamToPlain(id, n) }) as f32;
    // SAFETY: as above.
    let direct = unsafe { controller.plainParamToNormalized(id, f64::from(plain)) };
    if !(0.0..=1.0).contains(&direct) || to_plain(direct) == plain {
        return direct;
    }
    let rising = to_plain(1.0) >= to_plain(0.0);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    // 64 halvings reach adjacent doubles, finer than any f32 plain value can resolve.
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        let value = to_plain(mid);
        if value == plain {
            return mid;
        }
        if (value < plain) == rising {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    direct
}
