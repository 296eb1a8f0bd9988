//! Load generator: posts GitHub-signed deliveries (unique delivery ids, so every request
//! takes the full path: verify, dedup, durable outbox write) at a fixed concurrency and prints
//! throughput and latency. Signing happens before the clock starts.
//!
//! `cargo run --release --example load -- --url http://127.0.0.1:8080/hooks/gh --secret S`
//!
//! Bounded: at most `--count` requests and `--max-secs` seconds, loopback targets only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Payload size in bytes (a realistic push is 5–10 KB).
    #[arg(long, default_value_t = 6_000)]
    body_bytes: usize,
    /// Stop after this long whatever is left.
    #[arg(long, default_value_t = 120)]
    max_secs: u64,
    /// A label for the output line.
    #[arg(long, default_value = "target")]
    label: String,
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

    let filler = "x".repeat(args.body_bytes.saturating_sub(200));
    let requests: Vec<(String, Vec<u8>, String)> = (0..args.count)
        .map(|i| {
            let id = format!("load-{:08}-{}", i, hex::encode(rand::random::<[u8; 4]>()));
            let body = format!(
                r#"{{"ref":"refs/heads/main","after":"{i:040}","repository":{{"full_name":"octo-org/load"}},"pad":"{filler}"}}"#
            )
            .into_bytes();
            let sig = providers::github::signature_256(&args.secret, &body);
            (id, body, sig)
        })
        .collect();
    let requests = Arc::new(requests);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build().expect("client");
        let next = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(args.max_secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (client, next, requests, url) = (client.clone(), next.clone(), requests.clone(), args.url.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || Instant::now() > deadline {
                        break;
                    }
                    let (id, body, sig) = &requests[i];
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("X-GitHub-Event", "push")
                        .header("X-GitHub-Delivery", id)
                        .header("X-Hub-Signature-256", sig)
                        .body(body.clone())
                        .send()
                        .await;
                    let status = match r {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    lat.push(t.elapsed());
                    *statuses.entry(status).or_default() += 1;
                }
                (lat, statuses)
            }));
        }
        let mut lat = Vec::new();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for t in tasks {
            let (l, s) = t.await.expect("worker");
            lat.extend(l);
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort();
        let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let ok: usize = statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
        println!(
            "RESULT label={} sent={} ok={} secs={:.2} rps={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} statuses={:?}",
            args.label,
            lat.len(),
            ok,
            secs,
            lat.len() as f64 / secs,
            pct(0.50),
            pct(0.99),
            pct(1.0),
            statuses
        );
    });
}
