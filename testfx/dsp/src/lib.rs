//! The DSP core of afx's own test effect, shared by its CLAP, VST3 and LV2 wrappers (`afx-testfx`).
//!
//! Mono in, mono out: `drive` (dB) into a tanh soft clipper, a one-pole low-pass at `tone` (Hz), then output
//! `gain` (dB). The three interact (drive sets how hard the clipper bends, the low-pass smooths what it adds,
//! gain scales the result), which is what a training harness needs from a small known effect.
//!
//! Everything is deterministic and exact on purpose, so hosts and formats can be compared bit for bit:
//! - a parameter change takes effect at the next sample processed, with no smoothing;
//! - the output does not depend on how the input is split into blocks;
//! - values that would become denormal are flushed to zero here, so the output is the same whether or not the
//!   host sets flush-to-zero on its thread.
//!
//! The `fault` parameter makes [`TestFx::process`] misbehave on demand, to test how a host survives a broken
//! plugin. `AFX_TESTFX_FAULT=abort|segfault|hang|nan` (read when the effect is made) arms a fault that fires
//! only while `drive` is at least [`ARMED_DRIVE_DB`]: like a real plugin that crashes in one corner of its
//! parameter space, so a test can put the fault in one item of a batch through that item's parameters.

use std::time::Duration;

/// One parameter, described once here so every format reports the same metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamInfo {
    /// Stable identifier: the LV2 port symbol; CLAP and VST3 use the index in [`PARAMS`] as numeric id.
    pub id: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// Unit symbol, empty when there is none.
    pub unit: &'static str,
    pub min: f32,
    pub max: f32,
    pub default: f32,
    /// The normalised [0, 1] space maps onto the range logarithmically (`min * (max / min)^n`).
    pub log: bool,
    /// Only whole numbers are meaningful.
    pub integer: bool,
}

/// Index of `drive` in [`PARAMS`].
pub const DRIVE: usize = 0;
/// Index of `tone` in [`PARAMS`].
pub const TONE: usize = 1;
/// Index of `gain` in [`PARAMS`].
pub const GAIN: usize = 2;
/// Index of `fault` in [`PARAMS`].
pub const FAULT: usize = 3;

/// Every parameter, in the order of their indices (the CLAP/VST3 ids and the LV2 control port order).
pub const PARAMS: &[ParamInfo] = &[
    ParamInfo { id: "drive", name: "Drive", unit: "dB", min: 0.0, max: 24.0, default: 6.0, log: false, integer: false },
    ParamInfo {
        id: "tone",
        name: "Tone",
        unit: "Hz",
        min: 200.0,
        max: 20000.0,
        default: 5000.0,
        log: true,
        integer: false,
    },
    ParamInfo { id: "gain", name: "Gain", unit: "dB", min: -24.0, max: 12.0, default: 0.0, log: false, integer: false },
    ParamInfo { id: "fault", name: "Fault", unit: "", min: 0.0, max: 4.0, default: 0.0, log: false, integer: true },
];

/// Labels of the `fault` values 0..=4, for hosts that show enumerations.
pub const FAULT_LABELS: [&str; 5] = ["none", "abort", "segfault", "hang", "nan"];

impl ParamInfo {
    /// Maps a normalised value in [0, 1] (clamped) to the plain range; integers are rounded.
    ///
    /// The same mapping as afx's `ParamSpec::to_plain`, so VST3's normalised values mean what afx means.
    pub fn to_plain(&self, normalized: f64) -> f64 {
        let n = normalized.clamp(0.0, 1.0);
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let plain = if self.log { min * (max / min).powf(n) } else { min + n * (max - min) };
        let plain = plain.clamp(min, max);
        if self.integer { plain.round() } else { plain }
    }

    /// Maps a plain value (clamped to the range) to [0, 1]; the inverse of [`ParamInfo::to_plain`].
    pub fn to_normalized(&self, plain: f64) -> f64 {
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let p = plain.clamp(min, max);
        let n = if self.log { (p / min).ln() / (max / min).ln() } else { (p - min) / (max - min) };
        n.clamp(0.0, 1.0)
    }

    /// The value the effect uses for a requested plain value: clamped to the range, integers rounded.
    pub fn sanitize(&self, value: f32) -> f32 {
        let v = value.clamp(self.min, self.max);
        if self.integer { v.round() } else { v }
    }
}

/// The index in [`PARAMS`] of the parameter with this id.
pub fn param_index(id: &str) -> Option<usize> {
    PARAMS.iter().position(|p| p.id == id)
}

/// A deliberate failure of [`TestFx::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// `std::process::abort()`.
    Abort,
    /// A write through a null pointer (SIGSEGV).
    Segfault,
    /// Never returns.
    Hang,
    /// Writes NaN to every output sample.
    Nan,
}

impl Fault {
    /// The fault with this `fault` parameter value (0..=4); anything else is no fault.
    pub fn from_value(value: f32) -> Fault {
        match value.round() as i32 {
            1 => Fault::Abort,
            2 => Fault::Segfault,
            3 => Fault::Hang,
            4 => Fault::Nan,
            _ => Fault::None,
        }
    }

    /// The fault named by an `AFX_TESTFX_FAULT` value (`abort`, `segfault`, `hang`, `nan`); anything else is none.
    pub fn from_name(name: &str) -> Fault {
        match name.trim() {
            "abort" => Fault::Abort,
            "segfault" => Fault::Segfault,
            "hang" => Fault::Hang,
            "nan" => Fault::Nan,
            _ => Fault::None,
        }
    }

    /// The fault `AFX_TESTFX_FAULT` asks for.
    pub fn from_env() -> Fault {
        std::env::var("AFX_TESTFX_FAULT").map(|v| Fault::from_name(&v)).unwrap_or_default()
    }
}

/// With `AFX_TESTFX_FAULT` set, the fault fires when `drive` is at least this many dB (its top 1/24).
pub const ARMED_DRIVE_DB: f32 = 23.0;

/// Values this small or smaller become exactly zero, far above the denormal range (~1.2e-38), so no
/// intermediate result depends on the host's flush-to-zero setting.
const FLUSH_BELOW: f32 = 1e-30;

fn flush(v: f32) -> f32 {
    if v.abs() < FLUSH_BELOW { 0.0 } else { v }
}

fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// The effect: one instance per mono channel.
#[derive(Debug, Clone)]
pub struct TestFx {
    sample_rate: f32,
    /// Plain values, indexed like [`PARAMS`].
    values: [f32; 4],
    /// Linear pre-clipper gain from `drive`.
    drive: f32,
    /// One-pole low-pass coefficient `1 - exp(-2π tone / rate)`.
    lp: f32,
    /// Linear output gain from `gain`.
    gain: f32,
    /// The low-pass state: the only history the effect keeps.
    z: f32,
    /// The fault from `AFX_TESTFX_FAULT`, read once here so a render cannot change it halfway.
    env_fault: Fault,
}

impl TestFx {
    /// A fresh effect at `sample_rate` Hz with every parameter at its default.
    pub fn new(sample_rate: f32) -> TestFx {
        let mut fx = TestFx {
            sample_rate,
            values: [0.0; 4],
            drive: 1.0,
            lp: 1.0,
            gain: 1.0,
            z: 0.0,
            env_fault: Fault::from_env(),
        };
        for (i, p) in PARAMS.iter().enumerate() {
            fx.set_param(i, p.default);
        }
        fx
    }

    /// Clears the signal history (not the parameters): the next output is as from a fresh instance.
    pub fn reset(&mut self) {
        self.z = 0.0;
    }

    /// Sets parameter `index` (into [`PARAMS`]) to a plain value, clamped to its range (integers rounded).
    /// It applies from the next sample processed. Unknown indices and non-finite values are ignored: a
    /// plugin must not fail on what a host sends.
    pub fn set_param(&mut self, index: usize, value: f32) {
        let Some(info) = PARAMS.get(index) else { return };
        if !value.is_finite() {
            return;
        }
        let v = info.sanitize(value);
        self.values[index] = v;
        match index {
            DRIVE => self.drive = db_to_gain(v),
            TONE => {
                // Exact at any rate: no bilinear warping, and stable (0 < lp < 1) even above Nyquist.
                let w = std::f32::consts::TAU * v / self.sample_rate;
                self.lp = 1.0 - (-w).exp();
            }
            GAIN => self.gain = db_to_gain(v),
            _ => {}
        }
    }

    /// The plain value parameter `index` has now (after clamping), or `None` for an unknown index.
    pub fn param(&self, index: usize) -> Option<f32> {
        self.values.get(index).copied()
    }

    /// The fault the next [`TestFx::process`] call triggers: the `fault` parameter's, else the environment's
    /// while `drive` is at least [`ARMED_DRIVE_DB`].
    pub fn fault(&self) -> Fault {
        match Fault::from_value(self.values[FAULT]) {
            Fault::None if self.values[DRIVE] >= ARMED_DRIVE_DB => self.env_fault,
            Fault::None => Fault::None,
            f => f,
        }
    }

    /// Processes `input` into `output` (the shorter length of the two is processed).
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        if self.trigger_fault(output) {
            return;
        }
        for (x, y) in input.iter().zip(output.iter_mut()) {
            *y = self.tick(*x);
        }
    }

    /// Processes `buffer` in place, for hosts that hand one buffer for input and output.
    pub fn process_in_place(&mut self, buffer: &mut [f32]) {
        if self.trigger_fault(buffer) {
            return;
        }
        for y in buffer.iter_mut() {
            *y = self.tick(*y);
        }
    }

    #[inline]
    fn tick(&mut self, x: f32) -> f32 {
        let s = flush((x * self.drive).tanh());
        self.z = flush(self.z + self.lp * (s - self.z));
        self.z * self.gain
    }

    /// Misbehaves as [`TestFx::fault`] says; true when `output` holds the (NaN) result already.
    fn trigger_fault(&self, output: &mut [f32]) -> bool {
        let fault = self.fault();
        if matches!(fault, Fault::Abort | Fault::Segfault | Fault::Hang) {
            // Like a real plugin's last words: hosts should capture and show them with the failure.
            eprintln!("afx test effect: deliberate {fault:?} fault");
        }
        match fault {
            Fault::None => false,
            Fault::Abort => std::process::abort(),
            Fault::Segfault => {
                // SAFETY: not safe, on purpose: the `segfault` fault exists to crash the process the way a
                // buggy plugin does, so a host's crash isolation can be tested. The volatile write keeps the
                // compiler from removing or reasoning about it.
                unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
                unreachable!("a write through a null pointer returned")
            }
            Fault::Hang => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            Fault::Nan => {
                output.fill(f32::NAN);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f32 = 48000.0;

    /// A deterministic test signal: a 220 Hz sine plus a little pseudo-random noise, peak about 0.9.
    fn signal(n: usize) -> Vec<f32> {
        let mut seed = 0x1234_5678_u32;
        (0..n)
            .map(|i| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (seed >> 8) as f32 / (1 << 24) as f32 - 0.5;
                0.8 * (std::f32::consts::TAU * 220.0 * i as f32 / RATE).sin() + 0.2 * noise
            })
            .collect()
    }

    fn render(fx: &mut TestFx, input: &[f32], block: usize) -> Vec<f32> {
        let mut out = vec![0.0; input.len()];
        for (i, o) in input.chunks(block).zip(out.chunks_mut(block)) {
            fx.process(i, o);
        }
        out
    }

    #[test]
    fn silence_in_silence_out() {
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 24.0);
        fx.set_param(GAIN, 12.0);
        let out = render(&mut fx, &[0.0; 1000], 100);
        assert!(out.iter().all(|&y| y == 0.0));
    }

    #[test]
    fn gain_scales_the_output() {
        let input = signal(4800);
        let mut fx = TestFx::new(RATE);
        let unity = render(&mut fx, &input, 512);
        let mut fx = TestFx::new(RATE);
        fx.set_param(GAIN, 6.0);
        let louder = render(&mut fx, &input, 512);
        let ratio = db_to_gain(6.0);
        for (a, b) in unity.iter().zip(&louder) {
            assert!((a * ratio - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} * {ratio} != {b}");
        }
    }

    #[test]
    fn plus_6_db_doubles_a_quiet_low_sine() {
        // Drive 0 dB and a quiet input keep tanh linear; a 100 Hz sine passes the 20 kHz low-pass unchanged.
        let input: Vec<f32> =
            (0..9600).map(|i| 1e-3 * (std::f32::consts::TAU * 100.0 * i as f32 / RATE).sin()).collect();
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 0.0);
        fx.set_param(TONE, 20000.0);
        fx.set_param(GAIN, 6.0);
        let out = render(&mut fx, &input, 64);
        let peak = |v: &[f32]| v[4800..].iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let ratio = peak(&out) / peak(&input);
        assert!((ratio - 2.0).abs() < 0.01, "ratio {ratio}");
    }

    #[test]
    fn drive_clips_softly() {
        let input: Vec<f32> = signal(4800).iter().map(|x| 4.0 * x).collect();
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 24.0);
        let out = render(&mut fx, &input, 256);
        // tanh is bounded by 1 and the low-pass averages, so the output never exceeds the output gain (0 dB).
        assert!(out.iter().all(|y| y.abs() <= 1.0));
        assert!(out.iter().any(|y| y.abs() > 0.9));
    }

    #[test]
    fn tone_removes_highs() {
        // Nyquist-rate alternation is what a low-pass attenuates most.
        let input: Vec<f32> = (0..4800).map(|i| if i % 2 == 0 { 0.01 } else { -0.01 }).collect();
        let level = |tone: f32| {
            let mut fx = TestFx::new(RATE);
            fx.set_param(DRIVE, 0.0);
            fx.set_param(TONE, tone);
            let out = render(&mut fx, &input, 4800);
            out[2400..].iter().fold(0.0f32, |m, x| m.max(x.abs()))
        };
        assert!(level(200.0) < 0.1 * level(20000.0), "{} vs {}", level(200.0), level(20000.0));
    }

    #[test]
    fn block_size_does_not_matter() {
        let input = signal(10_000);
        let outputs: Vec<Vec<f32>> = [1, 64, 4096, 10_000]
            .iter()
            .map(|&block| {
                let mut fx = TestFx::new(RATE);
                fx.set_param(DRIVE, 12.0);
                fx.set_param(TONE, 1000.0);
                render(&mut fx, &input, block)
            })
            .collect();
        for o in &outputs[1..] {
            assert!(o.iter().zip(&outputs[0]).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn in_place_matches_out_of_place() {
        let input = signal(3000);
        let out = render(&mut TestFx::new(RATE), &input, 100);
        let mut buf = input.clone();
        let mut fx = TestFx::new(RATE);
        buf.chunks_mut(77).for_each(|b| fx.process_in_place(b));
        assert_eq!(out, buf);
    }

    #[test]
    fn reset_gives_a_fresh_instance() {
        let input = signal(2000);
        let mut fx = TestFx::new(RATE);
        let first = render(&mut fx, &input, 333);
        fx.reset();
        let second = render(&mut fx, &input, 333);
        assert_eq!(first, second);
    }

    #[test]
    fn parameters_apply_at_the_next_sample() {
        let input = vec![0.5; 100];
        let mut fx = TestFx::new(RATE);
        let mut out = vec![0.0; 100];
        fx.process(&input[..50], &mut out[..50]);
        fx.set_param(GAIN, -24.0);
        fx.process(&input[50..], &mut out[50..]);
        // The low-pass has settled on the constant input, so only the output gain changes, exactly at sample 50.
        assert_eq!(out[48], out[49]);
        assert_eq!(out[50], out[49] * db_to_gain(-24.0));
    }

    #[test]
    fn denormals_are_flushed() {
        let mut fx = TestFx::new(RATE);
        let mut out = vec![0.0; 20_000];
        let mut input = vec![0.0; 20_000];
        input[0] = 1.0;
        fx.process(&input, &mut out);
        assert!(out.iter().all(|y| *y == 0.0 || y.is_normal()));
        assert_eq!(*out.last().unwrap(), 0.0);
    }

    #[test]
    fn set_param_clamps_rounds_and_ignores_nonsense() {
        let mut fx = TestFx::new(RATE);
        fx.set_param(DRIVE, 100.0);
        assert_eq!(fx.param(DRIVE), Some(24.0));
        fx.set_param(DRIVE, f32::NAN);
        assert_eq!(fx.param(DRIVE), Some(24.0));
        fx.set_param(FAULT, 0.4);
        assert_eq!(fx.param(FAULT), Some(0.0));
        fx.set_param(99, 1.0);
        assert_eq!(fx.param(99), None);
    }

    #[test]
    fn params_are_consistent() {
        for (i, p) in PARAMS.iter().enumerate() {
            assert_eq!(param_index(p.id), Some(i));
            assert!(p.min < p.max && (p.min..=p.max).contains(&p.default), "{}", p.id);
            assert!(!p.log || p.min > 0.0);
            for n in [0.0, 0.25, 0.5, 1.0] {
                let plain = p.to_plain(n);
                if !p.integer {
                    assert!((p.to_normalized(plain) - n).abs() < 1e-12, "{} at {n}", p.id);
                }
            }
            assert_eq!(p.to_plain(p.to_normalized(f64::from(p.default))) as f32, p.default, "{}", p.id);
        }
        assert_eq!(PARAMS[TONE].to_plain(0.5), 2000.0);
        assert_eq!(PARAMS[FAULT].to_plain(0.3), 1.0);
        assert_eq!(FAULT_LABELS.len() as f32, PARAMS[FAULT].max + 1.0);
    }

    #[test]
    fn nan_fault_writes_nan() {
        let mut fx = TestFx::new(RATE);
        fx.set_param(FAULT, 4.0);
        assert_eq!(fx.fault(), Fault::Nan);
        let out = render(&mut fx, &signal(100), 64);
        assert!(out.iter().all(|y| y.is_nan()));
    }

    #[test]
    fn fault_names_and_values() {
        for (i, name) in FAULT_LABELS.iter().enumerate() {
            assert_eq!(Fault::from_name(name), Fault::from_value(i as f32));
        }
        assert_eq!(Fault::from_name("bogus"), Fault::None);
    }
}
