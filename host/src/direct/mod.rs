//! Direct render loops (feature `direct-render`): the plainest possible render of an [`Effect`] on its format's
//! hosting crate (livi, clack-host, vst3), for `afx bench render` to measure the harness against.
//!
//! The direct loops do what any correct render must (a fresh instance, values applied from sample 0, every port
//! connected, full blocks) and nothing else: no checks, no channel mapping, no latency trimming, no input copies.
//! They reuse afx's plugin loading (a loaded library is a loaded library) but none of its render code, so a ratio
//! against [`Effect::render`] measures `render.rs` plus each backend's per-render work.
//!
//! The loops live beside the backends they measure (`lv2/direct.rs`, `clap/direct.rs`, `vst3/direct.rs`), so that
//! all FFI stays in the format modules; what they share is in [`loops`]. Nothing else in afx uses them: they are
//! built only when the feature is on (afx-bench turns it on).

pub mod loops;

pub use loops::{DirectError, DirectRender};

use crate::info::Format;
use crate::plugin::Effect;

/// A direct loop for `effect` in its format, set up for `block_size`-frame blocks at `sample_rate`.
pub fn direct_loop(
    effect: &Effect,
    format: Format,
    block_size: usize,
    sample_rate: u32,
) -> Result<Box<dyn DirectRender>, DirectError> {
    Ok(match format {
        Format::Lv2 => Box::new(crate::lv2::direct::DirectLv2::new(effect, block_size, sample_rate)?),
        Format::Clap => Box::new(crate::clap::direct::DirectClap::new(effect, block_size, sample_rate)?),
        Format::Vst3 => Box::new(crate::vst3::direct::DirectVst3::new(effect, block_size, sample_rate)?),
    })
}
