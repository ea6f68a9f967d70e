//! The direct clack-host loop `afx bench render` measures the harness against (see `crate::direct`).

use std::ffi::CString;

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;

use crate::denormals::FlushDenormals;
use crate::direct::loops::{DirectError, DirectRender, Ports, direct_error};
use crate::plugin::Effect;

/// The baseline for CLAP: clack-host as its examples show. The `PluginEntry` is the one afx loaded (clack-host
/// caches entries by path) and the host handlers are afx's (they only answer the latency callback), but the
/// instance lifecycle and the block loop are written here on clack-host alone.
pub(crate) struct DirectClap {
    entry: PluginEntry,
    id: CString,
    host: HostInfo,
    param_ids: Vec<ClapId>,
    /// Channels per audio port, in port order.
    input_channels: Vec<usize>,
    output_channels: Vec<usize>,
    ports: Ports,
    input_ports: AudioPorts,
    output_ports: AudioPorts,
    events: EventBuffer,
}

impl DirectClap {
    pub(crate) fn new(effect: &Effect, block_size: usize, sample_rate: u32) -> Result<DirectClap, DirectError> {
        let info = effect.info();
        // SAFETY: the file is the one afx's CLAP world already loaded for this effect; clack-host returns its
        // cached entry, so no plugin code runs again.
        let entry = unsafe { PluginEntry::load(&info.path) }.map_err(direct_error)?;
        let id = CString::new(info.id.clone()).map_err(direct_error)?;
        let host = crate::clap::host_info();
        let param_ids = info
            .params
            .iter()
            .map(|p| p.id.parse().map(ClapId::new).map_err(|_| direct_error(format!("CLAP param id {:?}", p.id))))
            .collect::<Result<_, _>>()?;
        // Port layout, read once from an instance that is never activated.
        let mut instance = crate::clap::new_instance(&entry, &id, &host).map_err(direct_error)?;
        let ports = instance.plugin_shared_handle().get_extension::<PluginAudioPorts>();
        let handle = instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        let mut channels = |is_input| {
            let Some(ports) = ports else { return vec![] };
            (0..ports.count(&handle, is_input))
                .filter_map(|i| ports.get(&handle, i, is_input, &mut buffer).map(|p| p.channel_count as usize))
                .collect::<Vec<usize>>()
        };
        let (input_channels, output_channels) = (channels(true), channels(false));
        drop(instance);
        let (num_in, num_out): (usize, usize) = (input_channels.iter().sum(), output_channels.iter().sum());
        if num_in != info.audio_inputs.len() || num_out != info.audio_outputs.len() {
            return Err(direct_error(format!("{}: audio ports do not match the plugin's description", info.name)));
        }
        Ok(DirectClap {
            ports: Ports::new(info, block_size, sample_rate),
            input_ports: AudioPorts::with_capacity(num_in, input_channels.len()),
            output_ports: AudioPorts::with_capacity(num_out, output_channels.len()),
            events: EventBuffer::with_capacity(info.params.len()),
            entry,
            id,
            host,
            param_ids,
            input_channels,
            output_channels,
        })
    }
}

impl DirectRender for DirectClap {
    fn render(&mut self, signal: &[f32], values: &[f32]) -> Result<(), DirectError> {
        let _ftz = FlushDenormals::enable();
        let padded = self.ports.fill(signal, self.output_channels.iter().sum());
        let block = self.ports.block_size;

        let mut instance = crate::clap::new_instance(&self.entry, &self.id, &self.host).map_err(direct_error)?;
        let config = PluginAudioConfiguration {
            sample_rate: f64::from(self.ports.sample_rate),
            min_frames_count: 1,
            max_frames_count: block as u32,
        };
        let stopped = instance.activate(|_, _| (), config).map_err(direct_error)?;
        let mut processor = stopped.start_processing().map_err(direct_error)?;
        self.events.clear();
        for (&id, &value) in self.param_ids.iter().zip(values) {
            self.events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), f64::from(value)));
        }
        for start in (0..padded).step_by(block) {
            let range = start..start + block;
            let inputs = self.input_ports.with_input_buffers(
                crate::clap::split_ports(&mut self.ports.inputs, &self.input_channels).map(|port| AudioPortBuffer {
                    latency: 0,
                    channels: AudioPortBufferType::f32_input_only(
                        port.iter_mut().map(|c| InputChannel::variable(&mut c[range.clone()])),
                    ),
                }),
            );
            let mut outputs = self.output_ports.with_output_buffers(
                crate::clap::split_ports(&mut self.ports.outputs, &self.output_channels).map(|port| AudioPortBuffer {
                    latency: 0,
                    channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[range.clone()])),
                }),
            );
            processor
                .process(
                    &inputs,
                    &mut outputs,
                    &self.events.as_input(),
                    &mut OutputEvents::void(),
                    Some(start as u64),
                    None,
                )
                .map_err(direct_error)?;
            self.events.clear();
        }
        instance.deactivate(processor.stop_processing());
        Ok(())
    }
}
