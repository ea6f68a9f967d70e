//! afx's own test effect as a plugin: one cdylib that is at once a CLAP plugin (`clap_entry`), a VST3 plugin
//! (`GetPluginFactory`, `ModuleEntry`, `ModuleExit`) and an LV2 plugin (`lv2_descriptor`), all three over the
//! same DSP core ([`afx_testfx_dsp::TestFx`]) and the same parameter list ([`afx_testfx_dsp::PARAMS`]).
//!
//! Hosts find it once [`bundle::package`] (or `afx-testfx-package`, or `scripts/package-testfx.sh`) has copied
//! the built library into the three bundle layouts under `target/testfx/`.
//!
//! | format | id | parameters |
//! | --- | --- | --- |
//! | CLAP | [`CLAP_ID`] | ids 0..N in `PARAMS` order, plain values |
//! | VST3 | class [`vst3_export::PROCESSOR_CID`] | ids 0..N, normalised as afx's `ParamSpec` (log for `tone`) |
//! | LV2 | [`LV2_URI`] | control ports 2.. with the `PARAMS` ids as symbols |
//!
//! Each format reports the latency `AFX_TESTFX_LATENCY` asks for (0 unless set; see [`afx_testfx_dsp`]): CLAP
//! through its latency extension, VST3 through `getLatencySamples`, LV2 through the control output `latency`
//! ([`lv2_export::PORT_LATENCY`], after the parameters' ports).

use std::ffi::CStr;

pub mod bundle;
mod clap_export;
pub mod lv2_export;
pub mod vst3_export;

/// The plugin's name in every format.
pub const NAME: &str = "afx test effect";
/// The vendor in every format.
pub const VENDOR: &str = "afx";
/// The CLAP plugin id.
pub const CLAP_ID: &str = afx_testfx_dsp::CLAP_ID;
/// The LV2 plugin URI.
pub const LV2_URI: &str = afx_testfx_dsp::LV2_URI;
/// [`LV2_URI`] as the C string the LV2 descriptor points to.
pub const LV2_URI_C: &CStr = c"urn:afx:testfx";

clack_plugin::clack_export_entry!(clack_plugin::entry::SinglePluginEntry<clap_export::TestFxClap>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lv2_uri_constants_agree() {
        assert_eq!(LV2_URI_C.to_str().unwrap(), LV2_URI);
    }

    #[test]
    fn the_vst3_class_id_is_the_one_hosts_print() {
        // Hosts (afx's `cid_hex`) print the 16 bytes in memory order as uppercase hex.
        let hex: String = vst3_export::PROCESSOR_CID.iter().map(|&b| format!("{:02X}", b as u8)).collect();
        assert_eq!(hex, afx_testfx_dsp::VST3_CLASS_ID);
    }
}
