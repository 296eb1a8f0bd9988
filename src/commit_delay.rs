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
//! in proportion between. The CPUs are read from `/proc/stat` at most every [`SAMPLE`]; where
//! that cannot be read, commits never wait.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

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
    let total: u64 = values.iter().sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The committer's current delay, re-sampled as it goes.
pub struct CommitDelay {
    max: Duration,
    stat: Option<File>,
    last: Option<(u64, u64)>,
    next_sample: Instant,
    current: Duration,
    buf: String,
}

impl CommitDelay {
    /// `max` zero: never waits, and `/proc/stat` is never opened.
    pub fn new(max: Duration) -> CommitDelay {
        let stat = if max.is_zero() {
            None
        } else {
            File::open("/proc/stat")
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "cannot read /proc/stat: commits will not wait for more records");
                })
                .ok()
        };
        CommitDelay {
            max,
            stat,
            last: None,
            next_sample: Instant::now(),
            current: Duration::ZERO,
            buf: String::new(),
        }
    }

    /// Commits never wait.
    pub fn never() -> CommitDelay {
        CommitDelay::new(Duration::ZERO)
    }

    /// Always `d`, however busy the CPUs are (tests).
    pub fn fixed(d: Duration) -> CommitDelay {
        CommitDelay {
            current: d,
            ..CommitDelay::never()
        }
    }

    /// The delay to use for a commit starting `now`.
    pub fn get(&mut self, now: Instant) -> Duration {
        if self.stat.is_some() && now >= self.next_sample {
            self.next_sample = now + SAMPLE;
            self.sample();
        }
        self.current
    }

    fn sample(&mut self) {
        let Some(file) = self.stat.as_mut() else {
            return;
        };
        self.buf.clear();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut self.buf));
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
        crate::metrics::get()
            .commit_delay_seconds
            .set(self.current.as_secs_f64());
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
        let mut d = CommitDelay::new(Duration::ZERO);
        assert!(d.stat.is_none());
        assert_eq!(d.get(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn the_machine_is_sampled_at_most_every_sample_period() {
        let mut d = CommitDelay::new(Duration::from_millis(1));
        let t0 = Instant::now();
        d.get(t0);
        let first = d.last.expect("first sample on Linux");
        // Burn some CPU so the counters move, then ask again within the period: no new sample.
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        d.get(t0 + Duration::from_millis(50));
        assert_eq!(d.last, Some(first));
        d.get(t0 + SAMPLE);
        assert_ne!(d.last, Some(first));
        assert!(d.get(t0 + SAMPLE) <= Duration::from_millis(1));
    }
}
