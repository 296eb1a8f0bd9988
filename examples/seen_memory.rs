//! Memory and CPU of the dedup index under a growing backlog: opens a [`Store`] in a temporary
//! directory and accepts `--count` unique small events (100-byte bodies) from `--concurrency`
//! tasks, printing the process's resident set (VmRSS, /proc/self/status) as the keys pile up,
//! then after every key has expired and the index dropped them (a sweep past the window),
//! with the bytes of RSS per key and the wall and CPU µs per accept.
//!
//! Nothing is published: every event stays pending, as in a broker outage.
//!
//! `cargo run --release --example seen_memory -- --count 200000`
//!
//! The allocator is mimalloc, as in the hookgate binary (src/main.rs).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use hookgate::config::StoreConfig;
use hookgate::store::{Accepted, Entry, Store};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Unique events to accept.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Accepts in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Parent of the temporary store directory (default: the system's temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const WINDOW: u64 = 86_400;
const NOW: u64 = 1_700_000_000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU of the whole process (every thread), in µs.
fn cpu_us() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

fn entry(i: u64) -> Entry {
    let id = format!("delivery-{i:012}");
    // 100 bytes of JSON.
    let mut body = format!("{{\"id\":\"{id}\",\"pad\":\"");
    while body.len() < 98 {
        body.push('p');
    }
    body.push_str("\"}");
    Entry {
        routing_key: "gh.github.push".into(),
        message_id: id,
        kind: "github.push".into(),
        source: "gh".into(),
        provider: "github".into(),
        content_key: None,
        timestamp: NOW,
        replay: false,
        body: body.into_bytes(),
    }
}

fn main() {
    let args = Args::parse();
    // The store's own info lines (the dedup table's rebuilds, with their duration) on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info")
        .init();
    let parent = args.dir.unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    let config = StoreConfig {
        path: dir.path().join("store"),
        dedup_window_secs: WINDOW,
        max_outbox_entries: u64::MAX,
        retain_secs: 3600,
        retain_max_bytes: 1 << 40,
        segment_bytes: 64 << 20,
        commit_delay_us: 0,
    };
    let rss_start = rss_kib();
    let store = Rc::new(Store::open(&config).expect("store"));
    let rss_open = rss_kib();
    println!(
        "count={} concurrency={} rss_start_kib={rss_start} rss_open_kib={rss_open}",
        args.count, args.concurrency
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let next = Rc::new(Cell::new(0u64));
    let done = Rc::new(Cell::new(0u64));
    let step = (args.count / 10).max(1);
    let (wall0, cpu0) = (Instant::now(), cpu_us());
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (store, next, done) = (store.clone(), next.clone(), done.clone());
            let count = args.count;
            tasks.push(tokio::task::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= count {
                        break;
                    }
                    next.set(i + 1);
                    let r = store
                        .accept(&entry(i), NOW, Duration::from_secs(60))
                        .await
                        .expect("accept");
                    assert_eq!(r, Accepted::New);
                    let d = done.get() + 1;
                    done.set(d);
                    if d % step == 0 {
                        println!("accepted={d} rss_kib={}", rss_kib());
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let (wall, cpu) = (wall0.elapsed(), cpu_us() - cpu0);
    // The indexer writes in the background: let it catch up before the last look.
    store.checkpoint().expect("checkpoint");
    let rss_full = rss_kib();
    // A restart with every key in the index (the open counts or loads the index).
    store.close();
    drop(store);
    let t = Instant::now();
    let store = Store::open_waiting(&config, Duration::from_secs(10)).expect("reopen");
    println!("reopen_ms={}", t.elapsed().as_millis());
    // A duplicate is still recognised (and costs a lookup, not an append).
    let dup = local.block_on(&rt, async {
        store
            .accept(&entry(0), NOW + 1, Duration::from_secs(5))
            .await
            .expect("accept")
    });
    assert_eq!(dup, Accepted::Duplicate);
    let t = Instant::now();
    let swept = store.sweep(NOW + WINDOW + 1).expect("sweep");
    let sweep_ms = t.elapsed().as_millis();
    store.checkpoint().expect("checkpoint");
    let rss_swept = rss_kib();
    let n = args.count.max(1);
    println!(
        "rss_after_accepts_kib={rss_full} rss_after_sweep_kib={rss_swept} swept={swept} sweep_ms={sweep_ms}"
    );
    println!(
        "bytes_per_key={:.1} wall_us_per_accept={:.1} cpu_us_per_accept={:.1} accepts_per_s={:.0}",
        (rss_full.saturating_sub(rss_open) * 1024) as f64 / n as f64,
        wall.as_micros() as f64 / n as f64,
        cpu as f64 / n as f64,
        n as f64 / wall.as_secs_f64(),
    );
    store.close();
}
