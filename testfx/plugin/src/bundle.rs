//! Turns the built cdylib into the three plugin bundles hosts look for:
//!
//! ```text
//! OUT/clap/AfxTest.clap                                    CLAP_PATH=OUT/clap
//! OUT/vst3/AfxTest.vst3/Contents/x86_64-linux/AfxTest.so   VST3_PATH=OUT/vst3 (afx's own variable)
//! OUT/lv2/afx-testfx.lv2/{manifest.ttl, testfx.ttl, testfx.so}   LV2_PATH=OUT/lv2
//! ```
//!
//! One folder per format, so that no host reads another format's bundle as its own (lilv complained about
//! every `.clap` and `.vst3` beside the `.lv2`).
//!
//! Each is a copy of the same library. The LV2 .ttl files are generated from [`PARAMS`], so LV2's metadata
//! is the metadata CLAP and VST3 report from code.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use afx_testfx_dsp::{FAULT, FAULT_LABELS, MAX_LATENCY, PARAMS};

use crate::lv2_export::{PORT_IN, PORT_LATENCY, PORT_OUT, PORT_PARAMS};
use crate::{LV2_URI, NAME};

/// The file name cargo gives the cdylib on Linux.
pub const LIBRARY_FILE: &str = "libafx_testfx.so";
/// The LV2 bundle's directory name.
pub const LV2_BUNDLE: &str = "afx-testfx.lv2";
/// The binary's file name inside the LV2 bundle.
pub const LV2_BINARY: &str = "testfx.so";

/// Where [`package`] put each bundle. Point `CLAP_PATH`, `VST3_PATH` and `LV2_PATH` at their parents.
#[derive(Debug, Clone)]
pub struct Bundles {
    /// The `.clap` file (in `OUT/clap`).
    pub clap: PathBuf,
    /// The `.vst3` bundle directory.
    pub vst3: PathBuf,
    /// The `.lv2` bundle directory.
    pub lv2: PathBuf,
}

/// Copies `library` (the built `libafx_testfx.so`) into the three bundles under `out_dir`, replacing older
/// copies. Each file is written beside its destination and renamed over it, so a process that still has the
/// old library mapped keeps running, and one that reads the bundle meanwhile reads whole files.
pub fn package(library: &Path, out_dir: &Path) -> io::Result<Bundles> {
    let clap = out_dir.join("clap").join("AfxTest.clap");
    let vst3 = out_dir.join("vst3").join("AfxTest.vst3");
    let lv2 = out_dir.join("lv2").join(LV2_BUNDLE);
    fs::create_dir_all(out_dir.join("clap"))?;
    let vst3_binary_dir = vst3.join("Contents").join("x86_64-linux");
    fs::create_dir_all(&vst3_binary_dir)?;
    fs::create_dir_all(&lv2)?;
    replace_with_copy(library, &clap)?;
    replace_with_copy(library, &vst3_binary_dir.join("AfxTest.so"))?;
    replace_with_copy(library, &lv2.join(LV2_BINARY))?;
    replace_with(&lv2.join("manifest.ttl"), |tmp| fs::write(tmp, lv2_manifest()))?;
    replace_with(&lv2.join("testfx.ttl"), |tmp| fs::write(tmp, lv2_plugin_ttl()))?;
    Ok(Bundles { clap, vst3, lv2 })
}

fn replace_with_copy(from: &Path, to: &Path) -> io::Result<()> {
    replace_with(to, |tmp| fs::copy(from, tmp).map(drop))
}

/// Writes `to` through `write` to a temporary name of this process's own beside it, then renames it over `to`:
/// a reader (lilv scanning the bundle in another test process) sees the old file or the new one, never half of
/// one, and two processes packaging at once do not share a temporary file.
fn replace_with(to: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let name = to.file_name().expect("a file path").to_string_lossy();
    let tmp = to.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    write(&tmp)?;
    fs::rename(&tmp, to)
}

/// The LV2 bundle's `manifest.ttl`: which plugin, which binary, where its description is.
pub fn lv2_manifest() -> String {
    format!(
        "@prefix lv2: <http://lv2plug.in/ns/lv2core#> .\n\
         @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n\n\
         <{LV2_URI}>\n    a lv2:Plugin ;\n    lv2:binary <{LV2_BINARY}> ;\n    rdfs:seeAlso <testfx.ttl> .\n"
    )
}

/// The LV2 plugin description, `testfx.ttl`: audio ports 0 and 1, a control input per parameter, then the
/// `latency` control output (`lv2:reportsLatency`, designated `lv2:latency`, as x42's plugins report theirs).
pub fn lv2_plugin_ttl() -> String {
    let mut ttl = format!(
        "@prefix doap: <http://usefulinc.com/ns/doap#> .\n\
         @prefix lv2: <http://lv2plug.in/ns/lv2core#> .\n\
         @prefix pprops: <http://lv2plug.in/ns/ext/port-props#> .\n\
         @prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .\n\
         @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n\
         @prefix units: <http://lv2plug.in/ns/extensions/units#> .\n\n\
         <{LV2_URI}>\n    a lv2:Plugin, lv2:DistortionPlugin ;\n    doap:name \"{NAME}\" ;\n\
         \x20   doap:license <https://spdx.org/licenses/MIT> ;\n    lv2:port [\n\
         \x20       a lv2:AudioPort, lv2:InputPort ;\n        lv2:index {PORT_IN} ;\n\
         \x20       lv2:symbol \"in\" ;\n        lv2:name \"In\"\n    ] , [\n\
         \x20       a lv2:AudioPort, lv2:OutputPort ;\n        lv2:index {PORT_OUT} ;\n\
         \x20       lv2:symbol \"out\" ;\n        lv2:name \"Out\"\n    ]"
    );
    for (i, p) in PARAMS.iter().enumerate() {
        // `{:?}` prints floats with a decimal point, which Turtle needs to read them as decimals.
        write!(
            ttl,
            " , [\n        a lv2:ControlPort, lv2:InputPort ;\n        lv2:index {} ;\n        lv2:symbol \"{}\" ;\n\
             \x20       lv2:name \"{}\" ;\n        lv2:default {:?} ;\n        lv2:minimum {:?} ;\n\
             \x20       lv2:maximum {:?}",
            PORT_PARAMS as usize + i,
            p.id,
            p.name,
            p.default,
            p.min,
            p.max
        )
        .unwrap();
        match p.unit {
            "dB" => ttl.push_str(" ;\n        units:unit units:db"),
            "Hz" => ttl.push_str(" ;\n        units:unit units:hz"),
            _ => {}
        }
        if p.log {
            ttl.push_str(" ;\n        lv2:portProperty pprops:logarithmic");
        }
        if p.integer {
            ttl.push_str(" ;\n        lv2:portProperty lv2:integer");
        }
        if i == FAULT {
            ttl.push_str(" ;\n        lv2:portProperty lv2:enumeration");
            for (value, label) in FAULT_LABELS.iter().enumerate() {
                write!(ttl, " ;\n        lv2:scalePoint [ rdfs:label \"{label}\" ; rdf:value {value} ]").unwrap();
            }
        }
        ttl.push_str("\n    ]");
    }
    // A control output: hosts (afx among them) list only control inputs as parameters.
    write!(
        ttl,
        " , [\n        a lv2:ControlPort, lv2:OutputPort ;\n        lv2:index {PORT_LATENCY} ;\n\
         \x20       lv2:symbol \"latency\" ;\n        lv2:name \"Latency\" ;\n        lv2:minimum 0 ;\n\
         \x20       lv2:maximum {MAX_LATENCY} ;\n        lv2:portProperty lv2:reportsLatency, lv2:integer ;\n\
         \x20       lv2:designation lv2:latency ;\n        units:unit units:frame\n    ]"
    )
    .unwrap();
    ttl.push_str(" .\n");
    ttl
}
