//! How long a group commit of the event log waits for more records before it starts
//! (`store.commit_delay_us`, docs/event-log.md "Commit delay").
//!
//! A commit costs about the same CPU however few records it carries: a `write`, an `fdatasync`
//! (two device round trips on a disk with a volatile cache: the data, then the flush), the
//! committer's wake-ups and one of each worker holding a waiter. Measured on a 2-vCPU VM
//! (session 14): ~45–50 µs of CPU per commit before any byte is copied. With idle cores that
//! is free and waiting would only add latency; with the cores full (the broker, the load and
//! hookgate on the same machine) it is CPU taken from the events. So the delay follows how busy
//! the machine's CPUs are: none below [`QUIET`], the configured maximum above [`SATURATED`],
//! in proportion between. The CPUs are read from `/proc/stat` every [`SAMPLE`] by a thread of
//! its own, never by the committer: a read costs 15-40 µs (more on a large machine, and a
//! container's lxcfs `/proc/stat` can hang), which would lengthen the commit it preceded.
//! Where it cannot be read, commits never wait.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The share of busy CPU time below which a commit never waits.
const QUIET: f64 = 0.7;
/// The share above which it waits the whole configured delay.
const SATURATED: f64 = 0.9;
/// How often the CPU counters are read again.
const SAMPLE: Duration = Duration::from_millis(100);

/// The delay for a machine whose CPUs were `busy` (0..=1) of the last sample, at most `max`.
pub fn delay_for(busy: f64, max: Duration) -> Duration {
    let share = ((busy - QUIET) / (SATURATED - QUIET)).clamp(0.0, 1.0);
    max.mul_f64(share)
}

/// Busy and total jiffies from `/proc/stat`'s first line (`cpu  user nice system idle iowait
/// irq softirq steal ...`): idle and iowait are not busy; steal is (the hypervisor gave the
/// time to another guest, so this one could not use it either).
pub fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 4 {
        return None;
    }
    // Saturating: the counters are the kernel's, but a garbled line must not panic a test build.
    let total = values.iter().fold(0u64, |a, &v| a.saturating_add(v));
    let idle = values[3].saturating_add(values.get(4).copied().unwrap_or(0));
    Some((total.saturating_sub(idle), total))
}

/// The committer's current delay: a number another thread keeps current.
pub struct CommitDelay {
    /// Microseconds.
    current: Arc<AtomicU64>,
    /// Dropped with this: the sampler thread then ends at once (never joined: a read that
    /// hangs must not hang the log's close).
    _stop: Option<mpsc::Sender<()>>,
    _sampler: Option<std::thread::JoinHandle<()>>,
}

impl CommitDelay {
    /// Follows the CPUs, up to `max`. `max` zero: never waits, and `/proc/stat` is never
    /// opened (nor a thread started).
    pub fn new(max: Duration) -> CommitDelay {
        if max.is_zero() {
            return CommitDelay::never();
        }
        let stat = match File::open("/proc/stat") {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/stat: commits will not wait for more records");
                return CommitDelay::never();
            }
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let mut sampler = Sampler::new(stat, max);
        let current = Arc::new(AtomicU64::new(0));
        let shared = current.clone();
        let started = std::thread::Builder::new()
            .name("hookgate-cpu".into())
            .spawn(move || {
                // Nothing is ever sent: the sender's drop (a disconnect) ends it.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SAMPLE) {
                    let d = sampler.sample();
                    shared.store(d.as_micros() as u64, Ordering::Relaxed);
                    crate::metrics::get()
                        .commit_delay_seconds
                        .set(d.as_secs_f64());
                }
            });
        match started {
            Ok(sampler) => CommitDelay {
                current,
                _stop: Some(stop),
                _sampler: Some(sampler),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no thread to read the CPUs: commits will not wait for more records");
                CommitDelay::never()
            }
        }
    }

    /// Commits never wait.
    pub fn never() -> CommitDelay {
        CommitDelay::fixed(Duration::ZERO)
    }

    /// Always `d`, however busy the CPUs are (tests).
    pub fn fixed(d: Duration) -> CommitDelay {
        CommitDelay {
            current: Arc::new(AtomicU64::new(d.as_micros() as u64)),
            _stop: None,
            _sampler: None,
        }
    }

    /// The delay for a commit starting now: a load, no I/O.
    pub fn get(&self) -> Duration {
        Duration::from_micros(self.current.load(Ordering::Relaxed))
    }
}

/// Turns two readings of `/proc/stat` into a delay.
struct Sampler {
    max: Duration,
    stat: File,
    last: Option<(u64, u64)>,
    current: Duration,
    buf: String,
}

impl Sampler {
    fn new(stat: File, max: Duration) -> Sampler {
        Sampler {
            max,
            stat,
            last: None,
            current: Duration::ZERO,
            buf: String::new(),
        }
    }

    /// Reads the counters again; the delay for how busy the CPUs were since the last read
    /// (the previous delay after the first read, zero when they cannot be read).
    fn sample(&mut self) -> Duration {
        self.buf.clear();
        let read = self
            .stat
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.stat.read_to_string(&mut self.buf));
        match read.ok().and_then(|_| parse_cpu_line(&self.buf)) {
            None => self.current = Duration::ZERO,
            Some(now) => {
                if let Some((busy0, total0)) = self.last.replace(now) {
                    let total = now.1.saturating_sub(total0);
                    if total > 0 {
                        let busy = now.0.saturating_sub(busy0) as f64 / total as f64;
                        self.current = delay_for(busy, self.max);
                    }
                }
            }
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_how_busy_the_cpus_are() {
        let max = Duration::from_micros(1000);
        assert_eq!(delay_for(0.0, max), Duration::ZERO);
        assert_eq!(delay_for(0.7, max), Duration::ZERO);
        assert_eq!(delay_for(0.8, max), Duration::from_micros(500));
        assert_eq!(delay_for(0.9, max), max);
        assert_eq!(delay_for(1.0, max), max);
        assert_eq!(delay_for(1.0, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn proc_stat_is_read_as_busy_and_total() {
        let stat = "cpu  100 5 20 800 50 1 4 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // total 990; idle 800 + iowait 50.
        assert_eq!(parse_cpu_line(stat), Some((140, 990)));
        // A kernel old enough to have four fields.
        assert_eq!(parse_cpu_line("cpu 1 2 3 4\n"), Some((6, 10)));
        assert_eq!(parse_cpu_line("intr 1 2 3 4\n"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 x 4\n"), None);
        assert_eq!(parse_cpu_line(""), None);
    }

    #[test]
    fn a_zero_maximum_never_waits_and_never_reads_the_cpus() {
        let d = CommitDelay::new(Duration::ZERO);
        assert!(
            d._stop.is_none() && d._sampler.is_none(),
            "no sampler thread"
        );
        assert_eq!(d.get(), Duration::ZERO);
        assert_eq!(
            CommitDelay::fixed(Duration::from_micros(700)).get(),
            Duration::from_micros(700)
        );
    }

    #[test]
    fn a_sample_compares_two_readings_of_the_cpus() {
        let max = Duration::from_millis(1);
        let mut s = Sampler::new(File::open("/proc/stat").expect("Linux"), max);
        assert_eq!(s.sample(), Duration::ZERO, "one reading says nothing yet");
        let first = s.last.expect("a reading");
        // Burn some CPU so the counters move.
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(s.sample() <= max);
        assert_ne!(s.last, Some(first));
    }

    #[test]
    fn garbled_counters_never_panic() {
        let big = format!("cpu {} {} 1 {} 1\n", u64::MAX, u64::MAX, u64::MAX);
        assert!(parse_cpu_line(&big).is_some());
    }

    #[test]
    fn the_sampler_thread_ends_with_its_delay() {
        let d = CommitDelay::new(Duration::from_millis(1));
        assert!(d.get() <= Duration::from_millis(1));
        let CommitDelay {
            _stop: stop,
            _sampler: sampler,
            ..
        } = d;
        let sampler = sampler.expect("a sampler thread");
        assert!(!sampler.is_finished());
        drop(stop);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !sampler.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sampler.is_finished(), "the sampler thread ended");
    }
}
