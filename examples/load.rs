//! Load generator: posts GitHub-signed deliveries (unique delivery ids, so every request
//! takes the full path: verify, dedup, durable write) and prints throughput and latency.
//!
//! Two shapes:
//! - closed loop (default): `--concurrency` requests in flight, each sent when the previous one
//!   answered; latency is measured from the actual send.
//! - open loop, `--rate N`: request `i` is *scheduled* at `start + i/N`, whatever the answers
//!   do, and its latency is measured from that scheduled time (corrected for coordinated
//!   omission: a stall is charged to every request that should have been sent during it). A
//!   dispatcher thread sleeps to each schedule point and hands the request to the runtime; up
//!   to `--concurrency` requests may be in flight (the pool opens connections as needed), and a
//!   request that finds them all busy waits, its clock already running. The line also reports
//!   how late requests left (`lag_*`: the generator's own share of the latency) and how many
//!   requests were in flight at most.
//!
//! Requests are built (body formatted, HMAC signed) just before they are sent, so memory stays
//! flat for any `--count`; the signing cost is reported as part of the generator's CPU
//! (`client_cpu_s`: its own utime+stime from /proc/self/stat).
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
}

/// One request, built when it is sent.
struct Request {
    id: String,
    body: Vec<u8>,
    sig: String,
}

struct Maker {
    prefix: String,
    filler: String,
    secret: String,
}

impl Maker {
    fn make(&self, i: usize) -> Request {
        let filler = &self.filler;
        let body = format!(
            r#"{{"ref":"refs/heads/main","after":"{i:040}","repository":{{"full_name":"octo-org/load"}},"pad":"{filler}"}}"#
        )
        .into_bytes();
        let sig = providers::github::signature_256(&self.secret, &body);
        Request {
            id: format!("{}-{i:08}", self.prefix),
            body,
            sig,
        }
    }
}

#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    lag: Vec<Duration>,
    statuses: std::collections::BTreeMap<u16, usize>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.lat.extend(o.lat);
        self.lag.extend(o.lag);
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, r: Request) -> u16 {
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
    let maker = Arc::new(Maker {
        prefix: args
            .id_prefix
            .clone()
            .unwrap_or_else(|| format!("load-{}", hex::encode(rand::random::<[u8; 4]>()))),
        filler: "x".repeat(args.body_bytes.saturating_sub(140)),
        secret: args.secret.clone(),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
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
    let (tally, max_in_flight) = match args.rate {
        None => (
            closed_loop(&rt, &args, client, maker, deadline),
            args.concurrency,
        ),
        Some(rate) => open_loop(&rt, &args, rate, client, maker, deadline),
    };
    let secs = started.elapsed().as_secs_f64();
    let Tally {
        mut lat,
        mut lag,
        statuses,
    } = tally;
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
                args.url.clone(),
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
                    let status = send(&client, &url, r).await;
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

fn open_loop(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    rate: f64,
    client: reqwest::Client,
    maker: Arc<Maker>,
    deadline: Instant,
) -> (Tally, usize) {
    assert!(rate > 0.0, "--rate must be positive");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handle = rt.handle().clone();
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(args.count);
    // The dispatcher is a plain thread: `thread::sleep` wakes within tens of µs, where tokio's
    // timer rounds up to the next millisecond.
    for i in 0..args.count {
        let scheduled = start + interval.mul_f64(i as f64);
        if scheduled > deadline {
            break;
        }
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        let (client, maker, url, slots, tally, in_flight, peak) = (
            client.clone(),
            maker.clone(),
            args.url.clone(),
            slots.clone(),
            tally.clone(),
            in_flight.clone(),
            peak.clone(),
        );
        tasks.push(handle.spawn(async move {
            let _slot = slots.acquire().await.expect("semaphore open");
            let n = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            peak.fetch_max(n, Ordering::Relaxed);
            let r = maker.make(i);
            let lag = scheduled.elapsed();
            let status = send(&client, &url, r).await;
            let lat = scheduled.elapsed();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut t = tally.lock().expect("tally");
            t.lat.push(lat);
            t.lag.push(lag);
            *t.statuses.entry(status).or_default() += 1;
        }));
    }
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout_at(deadline.into(), t).await;
        }
    });
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    (t, peak.load(Ordering::Relaxed))
}
