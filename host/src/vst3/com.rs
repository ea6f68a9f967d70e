//! The COM objects a VST3 host hands to plugins: the host application and parameter change lists.
//!
//! Each is a plain Rust struct turned into a reference-counted COM object by [`ComWrapper`]. Plugins call them
//! only from inside our own calls (`initialize`, `process`) on this thread, so `Cell`/`RefCell` suffice.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr;

use vst3::Steinberg::Vst::{
    IHostApplication, IHostApplicationTrait, IParamValueQueue, IParamValueQueueTrait, IParameterChanges,
    IParameterChangesTrait, ParamID, ParamValue, String128,
};
use vst3::Steinberg::{TUID, int32, kInvalidArgument, kNoInterface, kResultOk, tresult};
use vst3::{Class, ComWrapper};

/// What `IHostApplication::getName` reports.
const HOST_NAME: &str = "afx";

/// The context passed to `initialize`: names the host and creates nothing (afx connects no message channels).
pub(super) struct HostApplication;

impl Class for HostApplication {
    type Interfaces = (IHostApplication,);
}

impl IHostApplicationTrait for HostApplication {
    unsafe fn getName(&self, name: *mut String128) -> tresult {
        if name.is_null() {
            return kInvalidArgument;
        }
        let mut text: String128 = [0; 128];
        for (dst, src) in text.iter_mut().zip(HOST_NAME.encode_utf16()) {
            *dst = src;
        }
        // SAFETY: the plugin passes a writable String128, checked non-null above.
        unsafe { name.write(text) };
        kResultOk
    }

    unsafe fn createInstance(&self, _cid: *mut TUID, _iid: *mut TUID, obj: *mut *mut c_void) -> tresult {
        if !obj.is_null() {
            // SAFETY: `obj` is the plugin's out-pointer, checked non-null; COM asks for null on failure.
            unsafe { obj.write(ptr::null_mut()) };
        }
        kNoInterface
    }
}

/// The points of one parameter within one block.
pub(super) struct ParamValueQueue {
    id: Cell<ParamID>,
    points: RefCell<Vec<(int32, ParamValue)>>,
}

impl Class for ParamValueQueue {
    type Interfaces = (IParamValueQueue,);
}

impl IParamValueQueueTrait for ParamValueQueue {
    unsafe fn getParameterId(&self) -> ParamID {
        self.id.get()
    }

    unsafe fn getPointCount(&self) -> int32 {
        self.points.borrow().len() as int32
    }

    unsafe fn getPoint(&self, index: int32, sample_offset: *mut int32, value: *mut ParamValue) -> tresult {
        let points = self.points.borrow();
        let Some(&(offset, v)) = usize::try_from(index).ok().and_then(|i| points.get(i)) else {
            return kInvalidArgument;
        };
        if sample_offset.is_null() || value.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: both out-pointers come from the plugin and were checked non-null.
        unsafe {
            sample_offset.write(offset);
            value.write(v);
        }
        kResultOk
    }

    unsafe fn addPoint(&self, sample_offset: int32, value: ParamValue, index: *mut int32) -> tresult {
        let mut points = self.points.borrow_mut();
        points.push((sample_offset, value));
        if !index.is_null() {
            // SAFETY: the plugin's out-pointer, checked non-null.
            unsafe { index.write(points.len() as int32 - 1) };
        }
        kResultOk
    }
}

/// A list of parameter queues for one block: what the host sends (`inputParameterChanges`) or a sink for what
/// the plugin reports (`outputParameterChanges`). Queues are reused between blocks so processing allocates
/// nothing once warm.
pub(crate) struct ParameterChanges {
    queues: RefCell<Vec<ComWrapper<ParamValueQueue>>>,
    /// How many of `queues` are in use this block.
    used: Cell<usize>,
}

impl Class for ParameterChanges {
    type Interfaces = (IParameterChanges,);
}

impl ParameterChanges {
    pub(crate) fn new() -> ComWrapper<ParameterChanges> {
        ComWrapper::new(ParameterChanges { queues: RefCell::new(Vec::new()), used: Cell::new(0) })
    }

    /// Empties the list (the queues stay allocated).
    pub(crate) fn clear(&self) {
        self.used.set(0);
    }

    /// A queue for `id`: the one in use, or a cleared one.
    fn queue(&self, id: ParamID) -> (usize, *mut IParamValueQueue) {
        let mut queues = self.queues.borrow_mut();
        let used = self.used.get();
        let index = match queues[..used].iter().position(|q| q.id.get() == id) {
            Some(index) => index,
            None => {
                if used == queues.len() {
                    queues
                        .push(ComWrapper::new(ParamValueQueue { id: Cell::new(id), points: RefCell::new(Vec::new()) }));
                }
                let queue = &queues[used];
                queue.id.set(id);
                queue.points.borrow_mut().clear();
                self.used.set(used + 1);
                used
            }
        };
        (index, Self::raw(&queues[index]))
    }

    /// Sets `value` at sample offset 0 for `id`.
    pub(crate) fn set_at_start(&self, id: ParamID, value: ParamValue) {
        let (index, _) = self.queue(id);
        let queues = self.queues.borrow();
        let mut points = queues[index].points.borrow_mut();
        points.clear();
        points.push((0, value));
    }

    /// Appends the point (`offset`, `value`) to `id`'s queue.
    pub(crate) fn add_point(&self, id: ParamID, offset: int32, value: ParamValue) {
        let (index, _) = self.queue(id);
        self.queues.borrow()[index].points.borrow_mut().push((offset, value));
    }

    /// A borrowed interface pointer: valid while `queue` lives, which is as long as this list (queues are only
    /// ever added). VST3 hands these out without adding a reference.
    fn raw(queue: &ComWrapper<ParamValueQueue>) -> *mut IParamValueQueue {
        queue.as_com_ref::<IParamValueQueue>().map_or(ptr::null_mut(), |r| r.as_ptr())
    }
}

impl IParameterChangesTrait for ParameterChanges {
    unsafe fn getParameterCount(&self) -> int32 {
        self.used.get() as int32
    }

    unsafe fn getParameterData(&self, index: int32) -> *mut IParamValueQueue {
        let queues = self.queues.borrow();
        match usize::try_from(index) {
            Ok(i) if i < self.used.get() => Self::raw(&queues[i]),
            _ => ptr::null_mut(),
        }
    }

    unsafe fn addParameterData(&self, id: *const ParamID, index: *mut int32) -> *mut IParamValueQueue {
        if id.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: the plugin passes a readable ParamID, checked non-null.
        let id = unsafe { id.read() };
        let (i, queue) = self.queue(id);
        if !index.is_null() {
            // SAFETY: the plugin's out-pointer, checked non-null.
            unsafe { index.write(i as int32) };
        }
        queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_hold_one_queue_per_parameter_and_clear_between_blocks() {
        let changes = ParameterChanges::new();
        changes.set_at_start(7, 0.25);
        changes.set_at_start(3, 1.0);
        changes.set_at_start(7, 0.5);
        // SAFETY: the trait methods only read and write our own objects here.
        unsafe {
            assert_eq!(changes.getParameterCount(), 2);
            let queue = changes.getParameterData(0);
            assert!(!queue.is_null());
            let (mut offset, mut value) = (-1, -1.0);
            let queue = vst3::ComRef::from_raw(queue).unwrap();
            assert_eq!(queue.getParameterId(), 7);
            assert_eq!(queue.getPointCount(), 1);
            assert_eq!(queue.getPoint(0, &mut offset, &mut value), kResultOk);
            assert_eq!((offset, value), (0, 0.5));
            changes.clear();
            assert_eq!(changes.getParameterCount(), 0);
            assert!(changes.getParameterData(0).is_null());
        }
    }
}
