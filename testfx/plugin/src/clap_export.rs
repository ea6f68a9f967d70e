//! The CLAP face of the test effect (clack-plugin): one mono in/out port, plain-value parameters with the ids
//! 0..N of [`PARAMS`], the latency `AFX_TESTFX_LATENCY` asks for (0 unless set; read once per instance). Parameter
//! events apply sample-accurately: the block is split at each event.

use std::ffi::CStr;
use std::fmt::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use afx_testfx_dsp::{FAULT, FAULT_LABELS, PARAMS, TestFx, latency_from_env};
use clack_extensions::audio_ports::{
    AudioPortFlags, AudioPortInfo, AudioPortInfoWriter, AudioPortType, PluginAudioPorts, PluginAudioPortsImpl,
};
use clack_extensions::latency::{PluginLatency, PluginLatencyImpl};
use clack_extensions::params::{
    ParamDisplayWriter, ParamInfo, ParamInfoFlags, ParamInfoWriter, PluginAudioProcessorParams, PluginMainThreadParams,
    PluginParams,
};
use clack_plugin::events::spaces::CoreEventSpace;
use clack_plugin::plugin::features::{AUDIO_EFFECT, MONO};
use clack_plugin::prelude::*;
use clack_plugin::utils::Cookie;

use crate::{CLAP_ID, NAME, VENDOR};

/// The plugin type the CLAP entry exports.
pub struct TestFxClap;

impl Plugin for TestFxClap {
    type AudioProcessor<'a> = Processor<'a>;
    type Shared<'a> = Values;
    type MainThread<'a> = MainThread<'a>;

    fn declare_extensions(builder: &mut PluginExtensions<Self>, _shared: Option<&Values>) {
        builder.register::<PluginAudioPorts>().register::<PluginParams>().register::<PluginLatency>();
    }
}

impl DefaultPluginFactory for TestFxClap {
    /// Called once by the entry's `init` (clack's `SinglePluginEntry`), so `AFX_TESTFX_FAULT=load-*` breaks the
    /// plugin here, before a host sees its factory.
    fn get_descriptor() -> PluginDescriptor {
        afx_testfx_dsp::fire_load_fault();
        PluginDescriptor::new(CLAP_ID, NAME)
            .with_vendor(VENDOR)
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_features([AUDIO_EFFECT, MONO])
    }

    fn new_shared(_host: HostSharedHandle<'_>) -> Result<Values, PluginError> {
        Ok(Values {
            bits: std::array::from_fn(|i| AtomicU32::new(PARAMS[i].default.to_bits())),
            latency: latency_from_env(),
        })
    }

    fn new_main_thread<'a>(_host: HostMainThreadHandle<'a>, shared: &'a Values) -> Result<MainThread<'a>, PluginError> {
        Ok(MainThread { values: shared })
    }
}

/// The plain parameter values (f32 bits), shared because CLAP lets the main thread set them while inactive
/// (`flush`) and read them back at any time, while the audio thread changes them through events; and the
/// instance's latency, fixed when it is made, which the main thread reports and every activation's effect has.
pub struct Values {
    bits: [AtomicU32; PARAMS.len()],
    latency: usize,
}

impl Values {
    fn get(&self, index: usize) -> f32 {
        f32::from_bits(self.bits[index].load(Ordering::Relaxed))
    }

    fn set(&self, index: usize, value: f32) {
        if value.is_finite() {
            self.bits[index].store(PARAMS[index].sanitize(value).to_bits(), Ordering::Relaxed);
        }
    }
}

impl PluginShared<'_> for Values {}

/// The parameter index and plain value of a parameter-value event for one of our parameters.
fn param_change(event: &UnknownEvent) -> Option<(usize, f32)> {
    let Some(CoreEventSpace::ParamValue(event)) = event.as_core_event() else { return None };
    let index = event.param_id()?.get() as usize;
    (index < PARAMS.len()).then_some((index, event.value() as f32))
}

pub struct MainThread<'a> {
    values: &'a Values,
}

impl<'a> PluginMainThread<'a, Values> for MainThread<'a> {}

impl PluginMainThreadParams for MainThread<'_> {
    fn count(&self) -> u32 {
        PARAMS.len() as u32
    }

    fn get_info(&self, param_index: u32, info: &mut ParamInfoWriter) {
        let Some(p) = PARAMS.get(param_index as usize) else { return };
        let mut flags = ParamInfoFlags::IS_AUTOMATABLE;
        if p.integer {
            flags |= ParamInfoFlags::IS_STEPPED;
        }
        if param_index as usize == FAULT {
            flags |= ParamInfoFlags::IS_ENUM;
        }
        info.set(&ParamInfo {
            id: ClapId::new(param_index),
            flags,
            cookie: Cookie::empty(),
            name: p.name.as_bytes(),
            module: b"",
            min_value: f64::from(p.min),
            max_value: f64::from(p.max),
            default_value: f64::from(p.default),
        });
    }

    fn get_value(&self, param_id: ClapId) -> Option<f64> {
        let index = param_id.get() as usize;
        (index < PARAMS.len()).then(|| f64::from(self.values.get(index)))
    }

    fn value_to_text(&self, param_id: ClapId, value: f64, writer: &mut ParamDisplayWriter) -> std::fmt::Result {
        let index = param_id.get() as usize;
        let p = PARAMS.get(index).ok_or(std::fmt::Error)?;
        if index == FAULT {
            let label = FAULT_LABELS.get(p.sanitize(value as f32) as usize).ok_or(std::fmt::Error)?;
            return writer.write_str(label);
        }
        write!(writer, "{value:.2} {}", p.unit)
    }

    fn text_to_value(&self, param_id: ClapId, text: &CStr) -> Option<f64> {
        let index = param_id.get() as usize;
        PARAMS.get(index)?;
        let word = text.to_str().ok()?.split_whitespace().next()?;
        if index == FAULT
            && let Some(i) = FAULT_LABELS.iter().position(|l| *l == word)
        {
            return Some(i as f64);
        }
        word.parse().ok()
    }

    fn flush(&self, input: &InputEvents, _output: &mut OutputEvents) {
        for (index, value) in input.iter().filter_map(param_change) {
            self.values.set(index, value);
        }
    }
}

impl PluginAudioPortsImpl for MainThread<'_> {
    fn count(&self, _is_input: bool) -> u32 {
        1
    }

    fn get(&self, index: u32, _is_input: bool, writer: &mut AudioPortInfoWriter) {
        if index == 0 {
            writer.set(&AudioPortInfo {
                id: ClapId::new(0),
                name: b"main",
                channel_count: 1,
                flags: AudioPortFlags::IS_MAIN,
                port_type: Some(AudioPortType::MONO),
                in_place_pair: Some(ClapId::new(0)),
            });
        }
    }
}

impl PluginLatencyImpl for MainThread<'_> {
    fn get(&self) -> u32 {
        self.values.latency as u32
    }
}

/// The active effect: a [`TestFx`] at the host's rate, starting from the shared parameter values.
pub struct Processor<'a> {
    fx: TestFx,
    values: &'a Values,
}

impl Processor<'_> {
    fn apply(&mut self, index: usize, value: f32) {
        self.values.set(index, value);
        self.fx.set_param(index, self.values.get(index));
    }
}

impl<'a> PluginAudioProcessor<'a, Values, MainThread<'a>> for Processor<'a> {
    fn activate(
        _host: HostAudioProcessorHandle<'a>,
        _main_thread: &MainThread<'a>,
        values: &'a Values,
        audio_config: PluginAudioConfiguration,
    ) -> Result<Self, PluginError> {
        let mut fx = TestFx::with_latency(audio_config.sample_rate as f32, values.latency);
        for index in 0..PARAMS.len() {
            fx.set_param(index, values.get(index));
        }
        Ok(Processor { fx, values })
    }

    fn process(&mut self, _process: Process, mut audio: Audio, events: Events) -> Result<ProcessStatus, PluginError> {
        let frames = audio.frames_count() as usize;
        let mut port = audio.port_pair(0).ok_or(PluginError::Message("no audio port"))?;
        let mut channels = port.channels()?.into_f32().ok_or(PluginError::Message("only 32-bit audio is supported"))?;
        let mut pair = channels.channel_pair(0).ok_or(PluginError::Message("no audio channel"))?;
        for batch in events.input.batch() {
            for (index, value) in batch.events().filter_map(param_change) {
                self.apply(index, value);
            }
            let start = batch.first_sample().min(frames);
            let end = batch.next_batch_first_sample().unwrap_or(frames).clamp(start, frames);
            match &mut pair {
                ChannelPair::InputOutput(input, output) => self.fx.process(&input[start..end], &mut output[start..end]),
                ChannelPair::InPlace(buffer) => self.fx.process_in_place(&mut buffer[start..end]),
                // No input connected: the effect of silence.
                ChannelPair::OutputOnly(output) => {
                    output[start..end].fill(0.0);
                    self.fx.process_in_place(&mut output[start..end]);
                }
                ChannelPair::InputOnly(_) => {}
            }
        }
        Ok(ProcessStatus::Continue)
    }

    fn reset(&mut self) {
        self.fx.reset();
    }
}

impl PluginAudioProcessorParams for Processor<'_> {
    fn flush(&mut self, input: &InputEvents, _output: &mut OutputEvents) {
        for (index, value) in input.iter().filter_map(param_change) {
            self.apply(index, value);
        }
    }
}
