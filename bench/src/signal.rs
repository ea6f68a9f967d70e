//! The benches' input: deterministic noise with a slow envelope.

use afx_core::Audio;

/// Deterministic noise with a slow envelope, so dynamics processors do real work.
pub fn test_signal(sample_rate: u32, frames: usize) -> Audio {
    let mut state: u32 = 0x1234_5678;
    let samples = (0..frames)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = state as f32 / u32::MAX as f32 * 2.0 - 1.0;
            let envelope = 0.5 + 0.45 * (i as f32 * 2.0 * std::f32::consts::PI * 2.0 / sample_rate as f32).sin();
            noise * envelope * 0.5
        })
        .collect();
    Audio::new(sample_rate, vec![samples]).expect("one channel")
}
