//! Load generator: posts GitHub-signed deliveries (unique delivery ids, so every request
//! takes the full path: verify, dedup, durable write) and prints throughput and latency.
//!
//! Two shapes:
//! - closed loop (default): `--concurrency` requests in flight, each sent when the previous one
//!   answered; latency is measured from the actual send.
//! - open loop, `--rate N`: request `i` is *scheduled* at `start + i/N`, whatever the answers
//!   do, and its latency is measured from that scheduled time (corrected for coordinated
//!   omission: a stall is charged to every request that should have been sent during it). One
//!   thread sleeps to each schedule point on a `timerfd` (nanosecond resolution, where tokio's
//!   timer rounds up to the millisecond) in the same event loop that sends the requests and
//!   reads the answers; up to `--concurrency` requests may be in flight (the pool opens
//!   connections as needed), and a request that finds them all busy waits, its clock already
//!   running. The line also reports how late requests left (`lag_*`: the generator's own share
//!   of the latency) and how many
//!   requests were in flight at most. `--warmup-secs` sends at the rate for a while before the
//!   counted requests (connections opened, steady state reached) without counting it, and
//!   `--timeline FILE` writes each counted request's lag and latency, to tell a stall (slow
//!   answers together) from contention (spread out).
//!
//! Every request carries the same body, formatted and signed once, as wrk does in
//! scripts/bench.sh; only the delivery id differs, and that is what hookgate dedups on. Signing
//! each request (a 7 KB HMAC) made the generator take as much CPU as the gateway it measured,
//! from the same two cores. Its CPU is reported (`client_cpu_s`: its own utime+stime from
//! /proc/self/stat).
//!
//! `cargo run --release --example load -- --url http://127.0.0.1:8080/hooks/gh --secret S`
//!
//! Bounded: at most `--count` requests and `--max-secs` seconds, loopback targets only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Target URL (must be loopback).
    #[arg(long)]
    url: String,
    /// GitHub webhook secret.
    #[arg(long)]
    secret: String,
    /// Requests to send.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Requests in flight (closed loop), or at most in flight (open loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Open loop: send at this fixed rate (requests per second) instead of as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
    /// Payload size in bytes (a realistic push is 5–10 KB).
    #[arg(long, default_value_t = 7_168)]
    body_bytes: usize,
    /// Stop after this long whatever is left.
    #[arg(long, default_value_t = 120)]
    max_secs: u64,
    /// A label for the output line.
    #[arg(long, default_value = "target")]
    label: String,
    /// Prefix of the delivery ids (a run's ids must not collide with an earlier run's).
    #[arg(long)]
    id_prefix: Option<String>,
    /// Open loop: send at the rate for this long first without counting those requests (the
    /// client's connection pool is opened during it, and the server reaches its steady
    /// state), then `--count` counted requests. wrk2 calibrates the same way.
    #[arg(long, default_value_t = 0.0)]
    warmup_secs: f64,
    /// Open loop: write one line per request to this file, `i scheduled_ms lag_ms latency_ms
    /// status` in send order (scheduled time from the first request), to see whether slow
    /// answers come spread out or together (a stall).
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
}

/// One request, built when it is sent.
struct Request {
    id: String,
    body: bytes::Bytes,
    sig: String,
}

struct Maker {
    prefix: String,
    /// The body every request sends (a clone shares it) and its signature.
    body: bytes::Bytes,
    sig: String,
}

impl Maker {
    fn new(prefix: String, body_bytes: usize, secret: &str) -> Maker {
        let filler = "x".repeat(body_bytes.saturating_sub(140));
        let body = format!(
            r#"{{"ref":"refs/heads/main","after":"{:040}","repository":{{"full_name":"octo-org/load"}},"pad":"{filler}"}}"#,
            0
        );
        let sig = providers::github::signature_256(secret, body.as_bytes());
        Maker {
            prefix,
            body: body.into(),
            sig,
        }
    }

    fn make(&self, i: usize) -> Request {
        Request {
            id: format!("{}-{i:08}", self.prefix),
            body: self.body.clone(),
            sig: self.sig.clone(),
        }
    }
}

#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    lag: Vec<Duration>,
    statuses: std::collections::BTreeMap<u16, usize>,
    /// Open loop with `--timeline`: (i, lag, latency, status) per request.
    each: Vec<(usize, Duration, Duration, u16)>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.lat.extend(o.lat);
        self.lag.extend(o.lag);
        self.each.extend(o.each);
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }
}

async fn send(client: &reqwest::Client, url: reqwest::Url, r: Request) -> u16 {
    let res = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", r.id)
        .header("X-Hub-Signature-256", r.sig)
        .body(r.body)
        .send()
        .await;
    match res {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }
        Err(_) => 0,
    }
}

/// utime+stime of this process, in seconds.
fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5); here 0-based after the ')' (field 3).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args = Args::parse();
    let host = args
        .url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    assert!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "load goes to loopback only, not {host}"
    );
    let prefix = args
        .id_prefix
        .clone()
        .unwrap_or_else(|| format!("load-{}", hex::encode(rand::random::<[u8; 4]>())));
    let maker = Arc::new(Maker::new(prefix, args.body_bytes, &args.secret));

    // The open loop runs on one thread (see [`Timer`]); the closed loop on two workers.
    let rt = match args.rate {
        Some(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
    .expect("runtime");
    let client = {
        let _g = rt.enter();
        reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()
            .expect("client")
    };
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let started = Instant::now();
    let (tally, max_in_flight, first_at) = match args.rate {
        None => (
            closed_loop(&rt, &args, client, maker, deadline),
            args.concurrency,
            started,
        ),
        Some(rate) => open_loop(&rt, &args, rate, client, maker, deadline),
    };
    // From the first counted request (after any warm-up).
    let secs = first_at.elapsed().as_secs_f64();
    let Tally {
        mut lat,
        mut lag,
        statuses,
        mut each,
    } = tally;
    if let (Some(path), Some(rate)) = (&args.timeline, args.rate) {
        use std::io::Write;
        each.sort_by_key(|e| e.0);
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("timeline file"));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // The first request's scheduled time on the system clocks, to line the file up with
        // a server's logs (unix) or a `perf trace` (monotonic).
        let ago = first_at.elapsed().as_secs_f64();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        writeln!(
            f,
            "# start_unix={:.6} start_monotonic={:.6}",
            unix.as_secs_f64() - ago,
            monotonic_now().as_secs_f64() - ago
        )
        .expect("timeline write");
        for (i, lag, lat, status) in each {
            writeln!(
                f,
                "{i} {:.3} {:.3} {:.3} {status}",
                i as f64 * 1e3 / rate,
                ms(lag),
                ms(lat)
            )
            .expect("timeline write");
        }
    }
    lat.sort();
    lag.sort();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let ok: usize = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    println!(
        "RESULT label={} mode={} sent={} ok={} secs={:.2} rps={:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} lag_p50_ms={:.3} lag_p99_ms={:.3} max_in_flight={} client_cpu_s={:.2} statuses={:?}",
        args.label,
        args.rate.map_or("closed".to_string(), |r| format!("open@{r}")),
        lat.len(),
        ok,
        secs,
        lat.len() as f64 / secs,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        pct(&lat, 1.0),
        pct(&lag, 0.50),
        pct(&lag, 0.99),
        max_in_flight,
        own_cpu_secs(),
        statuses
    );
}

fn closed_loop(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    client: reqwest::Client,
    maker: Arc<Maker>,
    deadline: Instant,
) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let count = args.count;
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (client, next, maker, url) = (
                client.clone(),
                next.clone(),
                maker.clone(),
                reqwest::Url::parse(&args.url).expect("url"),
            );
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() > deadline {
                        break;
                    }
                    let r = maker.make(i);
                    let sent = Instant::now();
                    let status = send(&client, url.clone(), r).await;
                    t.lat.push(sent.elapsed());
                    *t.statuses.entry(status).or_default() += 1;
                }
                t
            }));
        }
        let mut all = Tally::default();
        for t in tasks {
            all.merge(t.await.expect("worker"));
        }
        all
    })
}

/// A timer of `CLOCK_MONOTONIC` (the clock of [`Instant`]) with nanosecond resolution that the
/// runtime's own event loop waits on: the open loop sleeps to each send time on the thread that
/// sends and reads the answers. (A dispatcher thread handing requests to runtime workers cost
/// two cross-thread wake-ups per request, which took a third of a core at 2,000 req/s and
/// showed up in the latency it measured; tokio's own timer rounds up to the millisecond.)
struct Timer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    /// The same moment on both clocks, to turn an `Instant` into a `timespec`.
    origin: (Instant, Duration),
}

impl Timer {
    fn new() -> std::io::Result<Timer> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls; the fd is owned by the `OwnedFd` from here on.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mono = monotonic_now();
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which keeps it open until dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd)? };
        Ok(Timer {
            fd,
            origin: (Instant::now(), mono),
        })
    }

    /// Returns at `at` (at once when it has passed).
    async fn sleep_until(&self, at: Instant) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        if at <= Instant::now() {
            // Behind schedule: let the requests in flight read their answers first.
            tokio::task::yield_now().await;
            return Ok(());
        }
        let t = self.origin.1 + at.saturating_duration_since(self.origin.0);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: t.as_secs() as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: arms our own timerfd with a valid itimerspec.
        let r = unsafe {
            libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads 8 bytes into a buffer of 8.
            let n = unsafe { libc::read(fd, expirations.as_mut_ptr().cast(), 8) };
            if n == 8 {
                return Ok(());
            }
            guard.clear_ready();
        }
    }
}

fn open_loop(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    rate: f64,
    client: reqwest::Client,
    maker: Arc<Maker>,
    deadline: Instant,
) -> (Tally, usize, Instant) {
    assert!(rate > 0.0, "--rate must be positive");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let url = reqwest::Url::parse(&args.url).expect("url");
    let count = args.count;
    let keep_each = args.timeline.is_some();
    let warmup = (args.warmup_secs * rate).round() as usize;
    let launched = Instant::now() + Duration::from_millis(50);
    let start = launched + interval.mul_f64(warmup as f64);
    rt.block_on(async {
        let timer = Timer::new().expect("timerfd");
        let mut tasks = Vec::with_capacity(count + warmup);
        for n in 0..count + warmup {
            // Warm-up requests take the ids after the counted ones, and are not tallied.
            let (i, counted) = match n.checked_sub(warmup) {
                Some(i) => (i, true),
                None => (count + n, false),
            };
            let scheduled = launched + interval.mul_f64(n as f64);
            if scheduled > deadline {
                break;
            }
            timer.sleep_until(scheduled).await.expect("timerfd");
            let (client, maker, url, slots, tally, in_flight, peak) = (
                client.clone(),
                maker.clone(),
                url.clone(),
                slots.clone(),
                tally.clone(),
                in_flight.clone(),
                peak.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire().await.expect("semaphore open");
                let n = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                peak.fetch_max(n, Ordering::Relaxed);
                let r = maker.make(i);
                let lag = scheduled.elapsed();
                let status = send(&client, url, r).await;
                let lat = scheduled.elapsed();
                in_flight.fetch_sub(1, Ordering::Relaxed);
                if !counted {
                    return;
                }
                let mut t = tally.lock().expect("tally");
                t.lat.push(lat);
                t.lag.push(lag);
                *t.statuses.entry(status).or_default() += 1;
                if keep_each {
                    t.each.push((i, lag, lat, status));
                }
            }));
        }
        for t in tasks {
            let _ = tokio::time::timeout_at(deadline.into(), t).await;
        }
    });
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    (t, peak.load(Ordering::Relaxed), start)
}

/// `CLOCK_MONOTONIC` now (what `perf` and `Instant` count from).
fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
