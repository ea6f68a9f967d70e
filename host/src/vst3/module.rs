//! Finding `.vst3` bundles and loading their shared libraries: `ModuleEntry`, `GetPluginFactory`, `ModuleExit`.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Mutex, MutexGuard};

use vst3::Steinberg::Vst::IHostApplication;
use vst3::Steinberg::{FUnknown, IPluginFactory, IPluginFactoryTrait, PClassInfo, kResultOk};
use vst3::{ComPtr, ComWrapper, Interface};

use super::com::HostApplication;

/// The category of the classes that process audio (`kVstAudioEffectClass`).
pub(crate) const AUDIO_MODULE_CLASS: &str = "Audio Module Class";

/// Serialises every call that may touch a plugin library's global state across threads, and counts how many
/// [`Module`]s hold each library (by binary path).
///
/// VST3 specifies loading, class queries, instantiation and (de)activation for the host's UI thread only, and
/// plugins rely on it: DPF sets process-wide globals (next sample rate, buffer size) around every instantiation
/// and initialises its plugin info lazily without a lock. Each `Vst3World` may live on its own thread, so those
/// calls take this lock; `process` and per-instance queries do not.
///
/// The count exists because `ModuleEntry`/`ModuleExit` are per process, not per `dlopen`: DPF's `ModuleExit`
/// frees the plugin info that every later `getClassInfo` reads, so one world's exit crashed another world (on
/// another thread) that still had the same library loaded. Entry runs for the first holder, exit for the last.
static SERIAL: Mutex<Option<HashMap<PathBuf, Library>>> = Mutex::new(None);

/// What the process knows about one loaded library, by binary path.
#[derive(Default)]
pub(super) struct Library {
    /// How many [`Module`]s hold it.
    holders: usize,
    /// The sample rate of the last `setupProcessing` call into the library, by any thread. DPF constructs every
    /// new plugin at that rate (a process-wide global), see `Plugin::open`.
    pub(super) sample_rate: Option<u32>,
}

/// [`SERIAL`], held until dropped.
pub(crate) struct Serial(MutexGuard<'static, Option<HashMap<PathBuf, Library>>>);

impl Serial {
    pub(super) fn library(&mut self, binary: &Path) -> &mut Library {
        self.0.get_or_insert_with(HashMap::new).entry(binary.to_path_buf()).or_default()
    }
}

/// Takes [`SERIAL`]. A panic while holding it poisons nothing afx relies on, so poison is ignored.
pub(crate) fn serial() -> Serial {
    Serial(SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// `VST3_PATH` (colon-separated; afx's own variable, VST3 defines none, like `LV2_PATH` and `CLAP_PATH`), then
/// the folders hosts search on Linux, in the order the VST3 spec lists them.
pub(crate) fn standard_dirs() -> Vec<PathBuf> {
    crate::scan::files::search_path("VST3_PATH", ".vst3", &["/usr/lib/vst3", "/usr/local/lib/vst3"])
}

/// Every `*.vst3` bundle (or single-file plugin) under `dirs`, searched recursively, sorted and deduplicated.
pub(crate) fn find_bundles(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) {
        // Vendors nest bundles in a folder or two; the limit guards against symlink loops.
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("vst3")) {
                found.push(path);
            } else if depth < 8 && path.is_dir() {
                walk(&path, found, depth + 1);
            }
        }
    }
    let mut found = Vec::new();
    for dir in dirs {
        walk(dir, &mut found, 0);
    }
    found.sort();
    found.dedup();
    found
}

/// The shared library inside a bundle: `X.vst3/Contents/<arch>-linux/X.so`, or the path itself for the legacy
/// single-file layout.
fn binary_path(bundle: &Path) -> Result<PathBuf, String> {
    if bundle.is_file() {
        return Ok(bundle.to_path_buf());
    }
    let dir = bundle.join("Contents").join(format!("{}-linux", std::env::consts::ARCH));
    let stem = bundle.file_stem().unwrap_or_default();
    let expected = dir.join(stem).with_extension("so");
    if expected.is_file() {
        return Ok(expected);
    }
    // Some bundles name the library differently from the bundle: take the only `.so` there.
    let mut libraries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "so"))
        .collect();
    match libraries.len() {
        1 => Ok(libraries.remove(0)),
        0 => Err(format!("no {} in the bundle", expected.display())),
        n => Err(format!("{n} shared libraries in {} and none named {:?}", dir.display(), stem)),
    }
}

/// One class a factory offers.
pub(crate) struct ClassEntry {
    pub(crate) cid: [c_char; 16],
    pub(crate) category: String,
    pub(crate) name: String,
}

/// A loaded VST3 library and its factory. Dropping it releases the factory, calls `ModuleExit` and unloads the
/// library; every object made from it holds an `Rc<Module>`, so this happens after the last of them is gone.
pub(crate) struct Module {
    pub(super) bundle: PathBuf,
    /// The library's path: its key in [`SERIAL`].
    pub(super) binary: PathBuf,
    /// `Some` until drop, which must release it before `ModuleExit`.
    factory: Option<ComPtr<IPluginFactory>>,
    /// Given to every component and controller as their `initialize` context.
    pub(super) host: ComWrapper<HostApplication>,
    module_exit: Option<unsafe extern "C" fn() -> bool>,
    /// `Some` until drop, which unloads it last.
    library: Option<libloading::Library>,
}

type ModuleEntryFn = unsafe extern "C" fn(*mut c_void) -> bool;
type ModuleExitFn = unsafe extern "C" fn() -> bool;
type GetPluginFactoryFn = unsafe extern "C" fn() -> *mut IPluginFactory;

impl Module {
    pub(crate) fn load(bundle: &Path) -> Result<Module, String> {
        let binary = binary_path(bundle)?;
        let mut serial = serial();
        let holders = &mut serial.library(&binary).holders;
        // SAFETY: loading a library runs its initialisers. The file is an installed VST3 plugin; native plugin
        // code is trusted in-process (afx isolates untrusted plugins in worker processes, not here).
        let library =
            unsafe { libloading::os::unix::Library::new(&binary) }.map_err(|e| format!("cannot load: {e}"))?;
        // ModuleEntry wants the dlopen handle (SDK plugins locate their bundle resources through it).
        let handle = library.into_raw();
        // SAFETY: `handle` came from `into_raw` just above and is taken back exactly once.
        let library = libloading::Library::from(unsafe { libloading::os::unix::Library::from_raw(handle) });
        // SAFETY: the symbol types are those the VST3 SDK declares for Linux modules (linuxmain.cpp).
        let (entry, exit, get_factory) = unsafe {
            (
                library.get::<ModuleEntryFn>(b"ModuleEntry\0").map(|s| *s).ok(),
                library.get::<ModuleExitFn>(b"ModuleExit\0").map(|s| *s).ok(),
                library
                    .get::<GetPluginFactoryFn>(b"GetPluginFactory\0")
                    .map(|s| *s)
                    .map_err(|e| format!("no GetPluginFactory: {e}"))?,
            )
        };
        if let Some(entry) = entry
            && *holders == 0
        {
            // SAFETY: called once per process (no other Module holds this library), before any other call into
            // the module, with the library's handle, as the SDK's linuxmain.cpp expects.
            if !unsafe { entry(handle) } {
                return Err("ModuleEntry failed".into());
            }
        }
        // SAFETY: ModuleEntry succeeded (or the module has none); the factory comes with one reference for us.
        let factory = unsafe { ComPtr::from_raw(get_factory()) };
        let Some(factory) = factory else {
            if let Some(exit) = exit
                && *holders == 0
            {
                // SAFETY: balances the ModuleEntry above; nothing from the module is alive.
                unsafe { exit() };
            }
            return Err("GetPluginFactory returned null".into());
        };
        *holders += 1;
        Ok(Module {
            binary,
            bundle: bundle.to_path_buf(),
            factory: Some(factory),
            host: ComWrapper::new(HostApplication),
            module_exit: exit,
            library: Some(library),
        })
    }

    /// The `initialize` context for components and controllers: our IHostApplication as an FUnknown (every COM
    /// object starts with its FUnknown vtable, so the cast is sound). Valid while this module lives.
    pub(crate) fn host_context(&self) -> *mut FUnknown {
        self.host.as_com_ref::<IHostApplication>().map_or(ptr::null_mut(), |c| c.as_ptr() as *mut FUnknown)
    }

    fn factory(&self) -> &ComPtr<IPluginFactory> {
        self.factory.as_ref().expect("the factory lives until drop")
    }

    /// The classes the factory offers.
    pub(crate) fn classes(&self) -> Vec<ClassEntry> {
        let _serial = serial();
        let factory = self.factory();
        // SAFETY: plain factory queries; `info` is a zeroed POD the plugin fills.
        let count = unsafe { factory.countClasses() };
        (0..count)
            .filter_map(|i| {
                // SAFETY: PClassInfo is plain data (arrays of integers), so all zeros is valid.
                let mut info: PClassInfo = unsafe { std::mem::zeroed() };
                // SAFETY: `i` is below countClasses and `info` is writable.
                (unsafe { factory.getClassInfo(i, &mut info) } == kResultOk).then(|| ClassEntry {
                    cid: info.cid,
                    category: c_string(&info.category),
                    name: c_string(&info.name),
                })
            })
            .collect()
    }

    /// A new object of class `cid`, asked for interface `I`. The caller holds [`serial`].
    pub(crate) fn create<I: Interface>(&self, cid: &[c_char; 16]) -> Option<ComPtr<I>> {
        let mut obj: *mut c_void = ptr::null_mut();
        // SAFETY: both ids are 16-byte TUIDs that outlive the call; on success `obj` holds a new reference
        // to an object implementing `I`, which ComPtr takes over.
        unsafe {
            let result = self.factory().createInstance(cid.as_ptr(), I::IID.as_ptr() as *const c_char, &mut obj);
            if result != kResultOk {
                return None;
            }
            ComPtr::from_raw(obj as *mut I)
        }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // Held until the library is unloaded too: its static destructors are plugin code like any other.
        let mut serial = serial();
        self.factory = None;
        let holders = &mut serial.library(&self.binary).holders;
        *holders = holders.saturating_sub(1);
        if let Some(exit) = self.module_exit
            && *holders == 0
        {
            // SAFETY: this was the library's last holder in the process, every object made from this module held
            // an Rc to it and is gone, and the factory was released above; the library is still loaded (it is
            // unloaded just below).
            unsafe { exit() };
        }
        self.library = None;
    }
}

/// A NUL-terminated `char8` array as a string (lossy, stops at the end of the array).
fn c_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A NUL-terminated UTF-16 array as a string.
pub(super) fn utf16_string(chars: &[u16]) -> String {
    let len = chars.iter().position(|&c| c == 0).unwrap_or(chars.len());
    String::from_utf16_lossy(&chars[..len])
}

/// A class id as VST3 hosts print it: 32 uppercase hex digits, bytes in memory order.
pub(crate) fn cid_hex(cid: &[c_char; 16]) -> String {
    cid.iter().map(|&b| format!("{:02X}", b as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_found_recursively_without_descending_into_them() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("Vendor/Sub/B.vst3/Contents/x86_64-linux");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(dir.path().join("A.vst3/Contents/Resources/Inner.vst3")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let found = find_bundles(&[dir.path().to_path_buf()]);
        assert_eq!(found, vec![dir.path().join("A.vst3"), dir.path().join("Vendor/Sub/B.vst3")]);
    }

    #[test]
    fn class_ids_print_as_uppercase_hex() {
        let cid: [c_char; 16] = std::array::from_fn(|i| (i as u8 * 17) as c_char);
        assert_eq!(cid_hex(&cid), "00112233445566778899AABBCCDDEEFF");
    }
}
