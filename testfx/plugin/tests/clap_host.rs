//! The CLAP build of the test effect loaded from its packaged `.clap` file by a real CLAP host (clack-host):
//! descriptor and parameter metadata as in `PARAMS`, and renders bit-identical to the DSP core, with parameter
//! events at sample 0 and in the middle of a block.

use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;

use afx_testfx_dsp::{PARAMS, TestFx, param_index};

const RATE: f64 = 48000.0;
const BLOCK: usize = 512;

struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

fn signal(n: usize) -> Vec<f32> {
    (0..n).map(|i| 0.9 * (std::f32::consts::TAU * 330.0 * i as f32 / RATE as f32).sin()).collect()
}

/// Packages the built library into a temporary directory and loads its `.clap` file.
fn entry() -> (tempfile::TempDir, PluginEntry) {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().and_then(std::path::Path::parent).unwrap().join(afx_testfx::bundle::LIBRARY_FILE);
    let dir = tempfile::tempdir().unwrap();
    let bundles = afx_testfx::bundle::package(&lib, dir.path()).unwrap();
    // SAFETY: loading our own plugin library, whose initialisation code is ours and does nothing unusual.
    let entry = unsafe { PluginEntry::load(&bundles.clap) }.unwrap();
    (dir, entry)
}

fn instance(entry: &PluginEntry) -> PluginInstance<TestHost> {
    let host_info = HostInfo::new("afx-testfx tests", "afx", "", "0").unwrap();
    let id = c"org.afx.testfx";
    PluginInstance::<TestHost>::new(|_| Shared, |_| (), entry, id, &host_info).unwrap()
}

/// Renders `input` in blocks of [`BLOCK`] frames; `events` are (frame, parameter id, value) in frame order.
fn render_clap(entry: &PluginEntry, input: &[f32], events: &[(usize, &str, f64)]) -> Vec<f32> {
    let mut plugin = instance(entry);
    let config = PluginAudioConfiguration { sample_rate: RATE, min_frames_count: 1, max_frames_count: BLOCK as u32 };
    let mut processor = plugin.activate(|_, _| (), config).unwrap().start_processing().unwrap();
    let mut output = vec![0.0f32; input.len()];
    let (mut in_ports, mut out_ports) = (AudioPorts::with_capacity(1, 1), AudioPorts::with_capacity(1, 1));
    let mut out_events = EventBuffer::new();
    for (start, (x, y)) in input.chunks(BLOCK).zip(output.chunks_mut(BLOCK)).enumerate().map(|(i, b)| (i * BLOCK, b)) {
        let block_events: Vec<ParamValueEvent> = events
            .iter()
            .filter(|(frame, _, _)| (start..start + x.len()).contains(frame))
            .map(|(frame, id, value)| {
                let id = ClapId::new(param_index(id).unwrap() as u32);
                ParamValueEvent::new((frame - start) as u32, id, Pckn::match_all(), *value)
            })
            .collect();
        let mut x = x.to_vec();
        let input_audio = in_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only([InputChannel::variable(&mut x)]),
        }]);
        let mut output_audio = out_ports
            .with_output_buffers([AudioPortBuffer { latency: 0, channels: AudioPortBufferType::f32_output_only([y]) }]);
        let in_events = InputEvents::from_buffer(&block_events);
        let mut out_events = OutputEvents::from_buffer(&mut out_events);
        processor.process(&input_audio, &mut output_audio, &in_events, &mut out_events, None, None).unwrap();
    }
    plugin.deactivate(processor.stop_processing());
    output
}

#[test]
fn descriptor_and_parameters_match_params() {
    let (_dir, entry) = entry();
    let factory = entry.get_plugin_factory().unwrap();
    let descriptor = factory.plugin_descriptors().next().unwrap();
    assert_eq!(descriptor.id().unwrap(), c"org.afx.testfx");
    assert_eq!(descriptor.name().unwrap().to_str().unwrap(), afx_testfx::NAME);

    let mut plugin = instance(&entry);
    let handle = plugin.plugin_handle();
    let params: PluginParams = handle.get_extension().unwrap();
    assert_eq!(params.count(&handle) as usize, PARAMS.len());
    let mut buffer = ParamInfoBuffer::new();
    for (i, p) in PARAMS.iter().enumerate() {
        let info = params.get_info(&handle, i as u32, &mut buffer).unwrap();
        assert_eq!(info.id.get() as usize, i);
        assert_eq!(std::str::from_utf8(info.name).unwrap(), p.name);
        let range = (info.min_value, info.max_value, info.default_value);
        assert_eq!(range, (f64::from(p.min), f64::from(p.max), f64::from(p.default)), "{}", p.id);
    }
}

#[test]
fn renders_bit_identically_to_the_core() {
    let (_dir, entry) = entry();
    let input = signal(48000);
    // Values at frame 0, then a change in the middle of a block (frame 1000 = 488 frames into block 1).
    let events = [(0, "drive", 18.0), (0, "tone", 800.0), (0, "gain", -3.0), (1000, "tone", 12000.0)];
    let theirs = render_clap(&entry, &input, &events);

    let mut fx = TestFx::new(RATE as f32);
    let mut ours = vec![0.0; input.len()];
    fx.set_param(param_index("drive").unwrap(), 18.0);
    fx.set_param(param_index("tone").unwrap(), 800.0);
    fx.set_param(param_index("gain").unwrap(), -3.0);
    fx.process(&input[..1000], &mut ours[..1000]);
    fx.set_param(param_index("tone").unwrap(), 12000.0);
    fx.process(&input[1000..], &mut ours[1000..]);

    let max_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("CLAP vs core: max abs difference {max_diff:e}");
    assert!(ours.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "max abs difference {max_diff:e}");
}
