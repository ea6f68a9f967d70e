//! The LV2 face of the test effect: a hand-written `lv2_descriptor` (lv2-sys types only; the `lv2` crate's
//! port-type machinery buys nothing for one audio pair and four floats).
//!
//! Ports, as the bundle's .ttl ([`crate::bundle::lv2_plugin_ttl`]) declares them: 0 audio in, 1 audio out,
//! then one control input per entry of [`PARAMS`], in order, with the parameter's id as symbol, then the
//! control output `latency` ([`PORT_LATENCY`], `lv2:reportsLatency`), written in every `run`. Control values are
//! read at the start of every `run`, so they apply from the block's first sample.

use std::ffi::{c_char, c_void};
use std::ptr;

use afx_testfx_dsp::{PARAMS, TestFx};
use lv2_sys::{LV2_Descriptor, LV2_Feature, LV2_Handle};

use crate::LV2_URI_C;

/// Index of the audio input port.
pub const PORT_IN: u32 = 0;
/// Index of the audio output port.
pub const PORT_OUT: u32 = 1;
/// Index of the first control port; parameter `i` of [`PARAMS`] is port `PORT_PARAMS + i`.
pub const PORT_PARAMS: u32 = 2;
/// Index of the control output that reports the latency in frames, after the parameters.
pub const PORT_LATENCY: u32 = PORT_PARAMS + PARAMS.len() as u32;

/// One plugin instance: the effect and the host's port buffers.
struct Instance {
    fx: TestFx,
    input: *const f32,
    output: *mut f32,
    controls: [*const f32; PARAMS.len()],
    latency: *mut f32,
}

/// The descriptor holds only a pointer to a static C string and function pointers: immutable, shareable.
struct Descriptor(LV2_Descriptor);

// SAFETY: the wrapped descriptor is never mutated and points only to 'static data (see `Descriptor`).
unsafe impl Sync for Descriptor {}

static DESCRIPTOR: Descriptor = Descriptor(LV2_Descriptor {
    URI: LV2_URI_C.as_ptr(),
    instantiate: Some(instantiate),
    connect_port: Some(connect_port),
    activate: Some(activate),
    run: Some(run),
    deactivate: None,
    cleanup: Some(cleanup),
    extension_data: Some(extension_data),
});

unsafe extern "C" fn instantiate(
    _descriptor: *const LV2_Descriptor,
    sample_rate: f64,
    _bundle_path: *const c_char,
    _features: *const *const LV2_Feature,
) -> LV2_Handle {
    let instance = Instance {
        fx: TestFx::new(sample_rate as f32),
        input: ptr::null(),
        output: ptr::null_mut(),
        controls: [ptr::null(); PARAMS.len()],
        latency: ptr::null_mut(),
    };
    Box::into_raw(Box::new(instance)).cast()
}

unsafe extern "C" fn connect_port(handle: LV2_Handle, port: u32, data: *mut c_void) {
    // SAFETY: LV2 hosts pass the handle `instantiate` returned, and call connect_port on one thread at a time.
    let instance = unsafe { &mut *handle.cast::<Instance>() };
    match port {
        PORT_IN => instance.input = data.cast(),
        PORT_OUT => instance.output = data.cast(),
        PORT_LATENCY => instance.latency = data.cast(),
        _ => {
            if let Some(control) = instance.controls.get_mut((port - PORT_PARAMS) as usize) {
                *control = data.cast();
            }
        }
    }
}

unsafe extern "C" fn activate(handle: LV2_Handle) {
    // SAFETY: the handle `instantiate` returned; LV2 forbids calling activate concurrently with run.
    let instance = unsafe { &mut *handle.cast::<Instance>() };
    instance.fx.reset();
}

unsafe extern "C" fn run(handle: LV2_Handle, sample_count: u32) {
    // SAFETY: the handle `instantiate` returned; LV2 hosts call run on one thread at a time.
    let instance = unsafe { &mut *handle.cast::<Instance>() };
    for (index, control) in instance.controls.iter().enumerate() {
        if !control.is_null() {
            // SAFETY: a connected control port points to one float, valid during run.
            instance.fx.set_param(index, unsafe { control.read() });
        }
    }
    if !instance.latency.is_null() {
        // SAFETY: a connected control output points to one writable float, valid during run.
        unsafe { instance.latency.write(instance.fx.latency() as f32) };
    }
    let (input, output, n) = (instance.input, instance.output, sample_count as usize);
    if input.is_null() || output.is_null() {
        return;
    }
    if ptr::eq(input, output) {
        // SAFETY: LV2 lets hosts connect input and output to one buffer of sample_count floats (in place).
        instance.fx.process_in_place(unsafe { std::slice::from_raw_parts_mut(output, n) });
    } else {
        // SAFETY: distinct connected audio ports hold sample_count floats each, valid during run.
        let (i, o) = unsafe { (std::slice::from_raw_parts(input, n), std::slice::from_raw_parts_mut(output, n)) };
        instance.fx.process(i, o);
    }
}

unsafe extern "C" fn cleanup(handle: LV2_Handle) {
    // SAFETY: the handle `instantiate` made with Box::into_raw; LV2 calls cleanup once, last.
    drop(unsafe { Box::from_raw(handle.cast::<Instance>()) });
}

unsafe extern "C" fn extension_data(_uri: *const c_char) -> *const c_void {
    ptr::null()
}

/// The LV2 entry point: our one plugin at index 0. `AFX_TESTFX_FAULT=load-*` breaks it here.
#[unsafe(no_mangle)]
pub extern "C" fn lv2_descriptor(index: u32) -> *const LV2_Descriptor {
    afx_testfx_dsp::fire_load_fault();
    if index == 0 { &DESCRIPTOR.0 } else { ptr::null() }
}
