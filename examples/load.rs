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
    /// Open loop: wake up at most once per this many microseconds and send every request
    /// scheduled until then (0: wake for each request). Each wake-up is a context switch of
    /// the generator's thread, which it pays from the cores it shares with what it measures;
    /// a request sent late is still timed from its scheduled send. For a sustained rate, not
    /// for a latency measurement.
    #[arg(long, default_value_t = 0)]
    tick_us: u64,
}

/// Where the requests go and what they are: every request carries the same body, formatted and
/// signed once; only the delivery id differs. Each request is `head`, the id, `tail`.
struct Wire {
    addr: std::net::SocketAddr,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Wire {
    fn new(url: &str, prefix: &str, body_bytes: usize, secret: &str) -> Wire {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .expect("target address")
            .next()
            .expect("target address");
        let filler = "x".repeat(body_bytes.saturating_sub(140));
        let body = format!(
            r#"{{"ref":"refs/heads/main","after":"{:040}","repository":{{"full_name":"octo-org/load"}},"pad":"{filler}"}}"#,
            0
        );
        let sig = providers::github::signature_256(secret, body.as_bytes());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             X-GitHub-Event: push\r\nX-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n\
             X-GitHub-Delivery: {prefix}-",
            body.len()
        );
        Wire {
            addr,
            head: head.into_bytes(),
            tail: format!("\r\n\r\n{body}").into_bytes(),
        }
    }
}

/// One keep-alive HTTP/1.1 connection: a request is one write, its answer one or two reads.
/// The generator shares the cores with what it measures; through reqwest (a task, a header map
/// and a URL per request, the body in a second write) it took ~100 µs of CPU per request at
/// 6,000 req/s, more than the gateway (docs/benchmarks.md, session 22). It reads answers with
/// a `Content-Length` only, which is what actix sends for every reply of hookgate and the
/// baselines; anything else is an error (status 0) and a new connection.
struct Conn {
    stream: tokio::net::TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(wire: &Wire) -> std::io::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(wire.addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(wire.head.len() + 32 + wire.tail.len()),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends request `i`; the answer's status and whether the connection may be used again.
    async fn exchange(&mut self, wire: &Wire, i: usize) -> std::io::Result<(u16, bool)> {
        use std::io::Write;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.out.clear();
        self.out.extend_from_slice(&wire.head);
        write!(self.out, "{i:08}")?;
        self.out.extend_from_slice(&wire.tail);
        self.stream.write_all(&self.out).await?;
        self.buf.clear();
        let mut answer = None;
        loop {
            if let Some((status, total, keep)) = answer {
                if self.buf.len() >= total {
                    return Ok((status, keep && self.buf.len() == total));
                }
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if answer.is_none() {
                answer = parse_head(&self.buf)?;
            }
        }
    }
}

/// The status, the whole answer's length and keep-alive, once the head has arrived.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<(u16, usize, bool)>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let (mut length, mut keep) = (None, true);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("header line"))?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.trim().eq_ignore_ascii_case("close");
        }
    }
    let length = length.ok_or_else(|| bad("no Content-Length"))?;
    Ok(Some((status, end + 4 + length, keep)))
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

/// Sends request `i` on `conn` (opened first when `None`): the answer's status, 0 on an error.
/// `conn` is left `None` when it may not be used again.
async fn send(wire: &Wire, conn: &mut Option<Conn>, i: usize) -> u16 {
    for _ in 0..2 {
        let reused = conn.is_some();
        if !reused {
            *conn = Conn::open(wire).await.ok();
        }
        let Some(c) = conn.as_mut() else { return 0 };
        match c.exchange(wire, i).await {
            Ok((status, keep)) => {
                if !keep {
                    *conn = None;
                }
                return status;
            }
            // A kept connection the server closed while it sat idle (the baselines keep one
            // alive for actix's default 5 s) fails before any answer: once more on a new
            // connection, as an HTTP client's pool does.
            Err(_) if reused && c.buf.is_empty() => *conn = None,
            Err(_) => {
                *conn = None;
                return 0;
            }
        }
    }
    0
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
    let wire = Arc::new(Wire::new(&args.url, &prefix, args.body_bytes, &args.secret));

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
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let started = Instant::now();
    let (tally, max_in_flight, first_at) = match args.rate {
        None => (
            closed_loop(&rt, &args, wire, deadline),
            args.concurrency,
            started,
        ),
        Some(rate) => open_loop(&rt, &args, rate, wire, deadline),
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
    wire: Arc<Wire>,
    deadline: Instant,
) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let count = args.count;
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (next, wire) = (next.clone(), wire.clone());
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                let mut conn = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() > deadline {
                        break;
                    }
                    let sent = Instant::now();
                    let status = send(&wire, &mut conn, i).await;
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
    wire: Arc<Wire>,
    deadline: Instant,
) -> (Tally, usize, Instant) {
    assert!(rate > 0.0, "--rate must be positive");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let idle: Arc<Mutex<Vec<Conn>>> = Default::default();
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
            let due = match args.tick_us {
                0 => scheduled,
                t => {
                    let t = Duration::from_micros(t);
                    let ticks = (scheduled - launched).as_nanos().div_ceil(t.as_nanos());
                    launched + t * ticks as u32
                }
            };
            timer.sleep_until(due).await.expect("timerfd");
            let (wire, idle, slots, tally, in_flight, peak) = (
                wire.clone(),
                idle.clone(),
                slots.clone(),
                tally.clone(),
                in_flight.clone(),
                peak.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire().await.expect("semaphore open");
                let n = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                peak.fetch_max(n, Ordering::Relaxed);
                let lag = scheduled.elapsed();
                // A slot holds at most one connection, so there are never more than
                // `--concurrency` of them.
                let mut conn = idle.lock().expect("pool").pop();
                let status = send(&wire, &mut conn, i).await;
                let lat = scheduled.elapsed();
                idle.lock().expect("pool").extend(conn);
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
