//! What one audio processor class offers afx: its audio buses and the parameters afx exposes ([`Layout`] and the
//! [`PluginInfo`] built beside it), read from a throwaway instance ([`describe`]).

use std::ffi::c_char;
use std::rc::Rc;

use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::BusTypes_::kAux;
use vst3::Steinberg::Vst::{BusDirection, ParamID};

use super::component::Plugin;
use super::module::{Module, cid_hex, utf16_string};
use crate::info::{AudioPort, Format, PluginInfo};

/// The audio buses of a class (channels per bus) and the parameters afx exposes.
#[derive(Debug, Clone, Default)]
pub(super) struct Layout {
    pub(super) inputs: Vec<usize>,
    pub(super) outputs: Vec<usize>,
    /// The `ParamID` behind each of `PluginInfo::params`, in order.
    pub(super) param_ids: Vec<ParamID>,
}

/// Opens one instance of the class and reads its buses and parameters.
pub(super) fn describe(module: &Rc<Module>, cid: &[c_char; 16], name: &str) -> Result<(PluginInfo, Layout), String> {
    let plugin = Plugin::open(module, cid, None)?;
    let mut info = PluginInfo {
        format: Format::Vst3,
        id: cid_hex(cid),
        name: name.to_string(),
        path: module.bundle.clone(),
        audio_inputs: vec![],
        audio_outputs: vec![],
        params: vec![],
    };
    let mut layout = Layout::default();
    for (dir, ports, channels) in
        [(kInput, &mut info.audio_inputs, &mut layout.inputs), (kOutput, &mut info.audio_outputs, &mut layout.outputs)]
    {
        for bus in plugin.buses(dir as BusDirection) {
            let count = usize::try_from(bus.channelCount).unwrap_or(0);
            let bus_name = utf16_string(&bus.name);
            channels.push(count);
            for c in 0..count {
                ports.push(AudioPort {
                    name: if count == 1 { bus_name.clone() } else { format!("{bus_name} {}", c + 1) },
                    // Only inputs can be sidechains; an aux output is just another output.
                    sidechain: dir == kInput && bus.busType == kAux as i32,
                });
            }
        }
    }
    for (id, spec) in plugin.params() {
        layout.param_ids.push(id);
        info.params.push(spec);
    }
    Ok((info, layout))
}
