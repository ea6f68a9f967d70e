//! A worker process's watchdog: a thread that ends the process when one render inside a task runs past its
//! limit, so that the pool sees the worker die (see [`WorkerSpec::task_render_limit`]).
//!
//! [`WorkerSpec::task_render_limit`]: crate::WorkerSpec::task_render_limit

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Exits the worker process when one render inside a task runs past its limit (see
/// [`WorkerSpec::task_render_limit`](crate::WorkerSpec::task_render_limit)).
pub(crate) struct Watchdog {
    /// Milliseconds since `start` after which the running render is stuck; 0 while none runs.
    deadline: Arc<AtomicU64>,
    start: Instant,
    limit: Duration,
}

/// The exit status of a worker its watchdog ended.
pub const WATCHDOG_EXIT: i32 = 75;

impl Watchdog {
    pub(crate) fn start(limit: Duration) -> std::io::Result<Watchdog> {
        let (deadline, start) = (Arc::new(AtomicU64::new(0)), Instant::now());
        let watched = deadline.clone();
        std::thread::Builder::new().name("afx-worker-watchdog".into()).spawn(move || {
            loop {
                std::thread::sleep(limit.min(Duration::from_millis(50)));
                let due = watched.load(Ordering::Acquire);
                if due != 0 && start.elapsed().as_millis() as u64 > due {
                    eprintln!(
                        "afx worker: a render inside a task ran past {:.1} s; exiting so the pool runs its \
                         examples one job each",
                        limit.as_secs_f64()
                    );
                    // SAFETY: _exit ends the process at once. Unlike `exit` it runs no atexit handler, which
                    // could wait forever on a lock the stuck render holds.
                    unsafe { libc::_exit(WATCHDOG_EXIT) };
                }
            }
        })?;
        Ok(Watchdog { deadline, start, limit })
    }

    pub(crate) fn arm(&self) {
        let due = (self.start.elapsed() + self.limit).as_millis() as u64;
        self.deadline.store(due.max(1), Ordering::Release);
    }

    pub(crate) fn disarm(&self) {
        self.deadline.store(0, Ordering::Release);
    }
}
