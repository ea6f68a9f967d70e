//! The direct livi loop `afx bench render` measures the harness against (see `crate::direct`).

use crate::denormals::FlushDenormals;
use crate::direct::loops::{DirectError, DirectRender, direct_error, fill_ports};
use crate::plugin::Effect;

/// The baseline: livi used as its README shows, with only what a correct render needs (all ports connected).
pub(crate) struct DirectLv2 {
    plugin: livi::Plugin,
    features: std::sync::Arc<livi::Features>,
    controls: Vec<livi::PortIndex>,
    audio_in: Vec<bool>,
    outputs: usize,
    atoms_in: Vec<livi::event::LV2AtomSequence>,
    atoms_out: Vec<livi::event::LV2AtomSequence>,
    inputs_buf: Vec<Vec<f32>>,
    outputs_buf: Vec<Vec<f32>>,
    block_size: usize,
    sample_rate: u32,
}

impl DirectLv2 {
    pub(crate) fn new(effect: &Effect, block_size: usize, sample_rate: u32) -> Result<DirectLv2, DirectError> {
        let world = livi::World::new();
        let plugin = world
            .plugin_by_uri(&effect.info().id)
            .ok_or_else(|| DirectError(format!("livi does not find {}", effect.info().id)))?;
        let features = world
            .try_build_features(livi::FeaturesBuilder { min_block_length: 1, max_block_length: block_size })
            .map_err(direct_error)?;
        let controls = plugin.ports_with_type(livi::PortType::ControlInput).map(|p| p.index).collect();
        let audio_in = effect.info().audio_inputs.iter().map(|p| !p.sidechain).collect();
        let counts = *plugin.port_counts();
        let atoms = |n| (0..n).map(|_| livi::event::LV2AtomSequence::new(&features, 16 * 1024)).collect();
        Ok(DirectLv2 {
            atoms_in: atoms(counts.atom_sequence_inputs),
            atoms_out: atoms(counts.atom_sequence_outputs),
            plugin,
            features,
            controls,
            audio_in,
            outputs: counts.audio_outputs,
            inputs_buf: vec![],
            outputs_buf: vec![],
            block_size,
            sample_rate,
        })
    }
}

impl DirectRender for DirectLv2 {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), DirectError> {
        // Every direct loop flushes denormals as the harness does: the two sides must run the DSP in the same
        // floating-point mode, or the ratio measures denormal handling instead of the host layer.
        let _ftz = FlushDenormals::enable();
        let block = self.block_size;
        let padded = signal.len().div_ceil(block) * block;
        fill_ports(&mut self.inputs_buf, &mut self.outputs_buf, &self.audio_in, self.outputs, signal, padded);
        // SAFETY: same contract as the harness's LV2 backend: installed plugin, positive sample rate.
        let mut instance = unsafe { self.plugin.instantiate(self.features.clone(), f64::from(self.sample_rate)) }
            .map_err(direct_error)?;
        for (&port, &value) in self.controls.iter().zip(values) {
            instance.set_control_input(port, value);
        }
        for start in (0..padded).step_by(block) {
            let ports = livi::EmptyPortConnections::new()
                .with_audio_inputs(self.inputs_buf.iter().map(|b| &b[start..start + block]))
                .with_audio_outputs(self.outputs_buf.iter_mut().map(|b| &mut b[start..start + block]))
                .with_atom_sequence_inputs(self.atoms_in.iter())
                .with_atom_sequence_outputs(self.atoms_out.iter_mut());
            // SAFETY: every audio and atom port is connected to a buffer of at least `block` frames, in port order.
            unsafe { instance.run(block, ports) }.map_err(direct_error)?;
        }
        Ok(())
    }
}
