//! The relay's own thread, below the request path in CPU priority.
//!
//! When the cores are saturated (a burst on a small machine, RabbitMQ on the same cores), the
//! providers' answers come first: what is acknowledged is already in the event log, and the
//! relay catches up when the burst is over. On a machine with room to spare the nice value
//! changes nothing. lapin's IO thread is started from this thread and inherits its nice value.
//! Measured in docs/benchmarks.md (session 9): on a machine where RabbitMQ shares the two cores,
//! ingest flat out with the relay on +8–27 % in 6 of 7 pairs, end to end unchanged; on one
//! where the broker was cheap (session 7) no change.

use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The relay thread's nice value (the request path's is the process's, 0 by default).
pub const NICE: i32 = 10;

/// A thread running a single-threaded tokio runtime for the relay; stopped and joined on drop,
/// which drops whatever is still spawned on it.
pub struct RelayThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RelayThread {
    pub fn start() -> io::Result<RelayThread> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, handle) = std::sync::mpsc::channel();
        // The runtime is built and dropped on its own thread: dropping it where a runtime is
        // running (a failed start) would panic.
        let thread = std::thread::Builder::new()
            .name("hookgate-relay".into())
            .spawn(move || {
                lower_priority(NICE);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let rt = match rt {
                    Ok(rt) => {
                        let _ = started.send(Ok(rt.handle().clone()));
                        rt
                    }
                    Err(e) => return drop(started.send(Err(e))),
                };
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let handle = handle
            .recv()
            .map_err(|_| io::Error::other("the relay thread ended at start"))??;
        Ok(RelayThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where to spawn the relay.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for RelayThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raises the calling thread's nice value by `by` (Linux: nice is per thread). Raising it needs
/// no privilege; a failure only costs the preference, so it is logged and ignored.
fn lower_priority(by: i32) {
    // SAFETY: plain syscalls on the calling thread's id.
    let r = unsafe {
        let tid = libc::gettid();
        let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, (now + by).min(19))
    };
    if r != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "relay thread keeps the request path's CPU priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_thread_runs_tasks_below_the_callers_priority() {
        let t = RelayThread::start().unwrap();
        let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let (tx, rx) = std::sync::mpsc::channel();
        t.handle().spawn(async move {
            let tid = unsafe { libc::gettid() };
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            tx.send((tid, nice)).unwrap();
        });
        let theirs = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_ne!(theirs.0, unsafe { libc::gettid() });
        assert_eq!(theirs.1, (mine + NICE).min(19));
        drop(t);
    }
}
