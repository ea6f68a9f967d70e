//! `afx-testfx-package [OUT_DIR]`: copies the `libafx_testfx.so` built next to this binary into the CLAP,
//! VST3 and LV2 bundles under OUT_DIR (default: `<target dir>/testfx`), and prints where they are.
//!
//! `cargo run -p afx-testfx --bin afx-testfx-package` builds the library first (same target dir and profile).

use std::path::PathBuf;
use std::process::ExitCode;

use afx_testfx::bundle::{self, LIBRARY_FILE};

fn main() -> ExitCode {
    // The binary lives in <target>/<profile>/, next to the cdylib of the same build.
    let exe = std::env::current_exe().expect("the path of this binary");
    let profile_dir = exe.parent().expect("a directory holds this binary").to_path_buf();
    let library = profile_dir.join(LIBRARY_FILE);
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir.parent().unwrap_or(&profile_dir).join("testfx"));
    match bundle::package(&library, &out) {
        Ok(b) => {
            println!("CLAP  {}\nVST3  {}\nLV2   {}", b.clap.display(), b.vst3.display(), b.lv2.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("afx-testfx-package: {} -> {}: {e}", library.display(), out.display());
            ExitCode::FAILURE
        }
    }
}
