//! Renders a WAV through the DSP core directly and compares the result with another host's render of it:
//!
//!     cargo run -p afx-testfx --example core_compare -- IN.wav THEIRS.wav [id=value ...]
//!
//! Each channel goes through a fresh `TestFx` at the file's rate with the given plain values, as afx and
//! lv2file run a mono plugin. Prints the max abs difference and whether the two are bit-identical.

use std::process::ExitCode;

use afx_testfx_dsp::{TestFx, param_index};

/// Planar f32 channels and the rate of a WAV file (integer formats scaled to [-1, 1)).
fn read(path: &str) -> (u32, Vec<Vec<f32>>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let spec = r.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.unwrap() as f32 * scale).collect()
        }
    };
    let n = usize::from(spec.channels);
    (spec.sample_rate, (0..n).map(|c| samples.iter().skip(c).step_by(n).copied().collect()).collect())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, theirs, sets @ ..] = args.as_slice() else {
        eprintln!("usage: core_compare IN.wav THEIRS.wav [id=value ...]");
        return ExitCode::FAILURE;
    };
    let (rate, input) = read(input);
    let (their_rate, theirs) = read(theirs);
    assert_eq!((rate, input.len()), (their_rate, theirs.len()), "rate or channel count differ");
    let mut max_diff = 0.0f32;
    let mut identical = true;
    for (x, y) in input.iter().zip(&theirs) {
        let mut fx = TestFx::new(rate as f32);
        for set in sets {
            let (id, value) = set.split_once('=').expect("id=value");
            fx.set_param(param_index(id).expect("a parameter id"), value.parse().expect("a number"));
        }
        let mut ours = vec![0.0; x.len()];
        fx.process(x, &mut ours);
        assert_eq!(ours.len(), y.len(), "lengths differ");
        for (a, b) in ours.iter().zip(y) {
            max_diff = max_diff.max((a - b).abs());
            identical &= a.to_bits() == b.to_bits();
        }
    }
    println!(
        "channels {}, frames {}, max abs difference {max_diff:e}, bit-identical {identical}",
        input.len(),
        input[0].len()
    );
    if identical { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
