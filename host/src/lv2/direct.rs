//! The direct livi loop `afx bench render` measures the harness against (see `crate::direct`).

use crate::denormals::FlushDenormals;
use crate::direct::loops::{DirectError, DirectRender, Ports, direct_error};
use crate::plugin::Effect;

/// The baseline: livi used as its README shows, with only what a correct render needs (all ports connected).
pub(crate) struct DirectLv2 {
    plugin: livi::Plugin,
    features: std::sync::Arc<livi::Features>,
    controls: Vec<livi::PortIndex>,
    outputs: usize,
    atoms_in: Vec<livi::event::LV2AtomSequence>,
    atoms_out: Vec<livi::event::LV2AtomSequence>,
    ports: Ports,
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
        let counts = *plugin.port_counts();
        let atoms = |n| (0..n).map(|_| livi::event::LV2AtomSequence::new(&features, 16 * 1024)).collect();
        Ok(DirectLv2 {
            atoms_in: atoms(counts.atom_sequence_inputs),
            atoms_out: atoms(counts.atom_sequence_outputs),
            plugin,
            features,
            controls,
            outputs: counts.audio_outputs,
            ports: Ports::new(effect.info(), block_size, sample_rate),
        })
    }
}

impl DirectRender for DirectLv2 {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), DirectError> {
        // Every direct loop flushes denormals as the harness does: the two sides must run the DSP in the same
        // floating-point mode, or the ratio measures denormal handling instead of the host layer.
        let _ftz = FlushDenormals::enable();
        let padded = self.ports.fill(signal, self.outputs);
        let block = self.ports.block_size;
        // SAFETY: same contract as the harness's LV2 backend: installed plugin, positive sample rate.
        let mut instance = unsafe { self.plugin.instantiate(self.features.clone(), f64::from(self.ports.sample_rate)) }
            .map_err(direct_error)?;
        for (&port, &value) in self.controls.iter().zip(values) {
            instance.set_control_input(port, value);
        }
        for start in (0..padded).step_by(block) {
            let ports = livi::EmptyPortConnections::new()
                .with_audio_inputs(self.ports.inputs.iter().map(|b| &b[start..start + block]))
                .with_audio_outputs(self.ports.outputs.iter_mut().map(|b| &mut b[start..start + block]))
                .with_atom_sequence_inputs(self.atoms_in.iter())
                .with_atom_sequence_outputs(self.atoms_out.iter_mut());
            // SAFETY: every audio and atom port is connected to a buffer of at least `block` frames, in port order.
            unsafe { instance.run(block, ports) }.map_err(direct_error)?;
        }
        Ok(())
    }
}
