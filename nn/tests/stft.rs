//! The differentiable STFT against a plain FFT (rustfft) of the same Hann-windowed, zero-padded centred frames.

use afx_nn::gradcheck::pseudo_random;
use afx_nn::stft::{Stft, hann};
use candle_core::{DType, Device};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

fn reference_magnitude(signal: &[f64], n_fft: usize, hop: usize) -> Vec<Vec<f64>> {
    let half = n_fft / 2;
    let mut padded = vec![0.0; half];
    padded.extend_from_slice(signal);
    padded.extend(std::iter::repeat_n(0.0, half));
    let fft = FftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let frames = 1 + (padded.len() - n_fft) / hop;
    (0..frames)
        .map(|f| {
            let mut buf: Vec<Complex<f64>> =
                (0..n_fft).map(|n| Complex::new(padded[f * hop + n] * hann(n, n_fft), 0.0)).collect();
            fft.process(&mut buf);
            buf[..=half].iter().map(|c| c.norm_sqr().max(afx_nn::stft::POWER_FLOOR).sqrt()).collect()
        })
        .collect()
}

#[test]
fn stft_magnitude_matches_rustfft_for_every_batch_item() {
    for (n_fft, hop, len) in [(64, 16, 500), (512, 128, 3000), (2048, 512, 5000), (30, 7, 101)] {
        for dtype in [DType::F64, DType::F32] {
            let x = pseudo_random((2, len), n_fft as u64, &Device::Cpu).unwrap();
            let stft = Stft::new(n_fft, hop, dtype, &Device::Cpu).unwrap();
            let mag: Vec<Vec<Vec<f64>>> =
                stft.magnitude(&x.to_dtype(dtype).unwrap()).unwrap().to_dtype(DType::F64).unwrap().to_vec3().unwrap();
            let signals: Vec<Vec<f64>> = x.to_vec2().unwrap();
            let mut worst = 0f64;
            let mut peak = 0f64;
            for (b, signal) in signals.iter().enumerate() {
                let reference = reference_magnitude(signal, n_fft, hop);
                assert_eq!(reference.len(), mag[b].len(), "frame count, n_fft {n_fft}");
                assert_eq!(reference.len(), stft.frames(len));
                for (r_frame, m_frame) in reference.iter().zip(&mag[b]) {
                    assert_eq!(r_frame.len(), m_frame.len());
                    for (r, m) in r_frame.iter().zip(m_frame) {
                        worst = worst.max((r - m).abs());
                        peak = peak.max(r.abs());
                    }
                }
            }
            let rel = worst / peak;
            println!("stft n_fft {n_fft} hop {hop} {dtype:?}: max abs err {worst:.2e}, relative to peak {rel:.2e}");
            let tolerance = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(rel < tolerance, "n_fft {n_fft} {dtype:?}: rel err {rel:.2e}");
        }
    }
}
