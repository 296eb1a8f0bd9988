//! Abuse client for `scripts/abuse.sh`: throws oversize, malformed, unsigned, wrong-IP, flood,
//! slowloris and replayed traffic at a running gateway while valid signed GitHub deliveries
//! flow, then consumes the gateway's queue and checks that every valid event was published
//! exactly once and nothing else was. Prints a table; exits 1 when that does not hold.
//!
//! The gateway must trust 127.0.0.1 as a proxy (clients are told apart by `X-Forwarded-For`),
//! allow 198.51.100.0/24 on the source, and declare `--queue` bound to `#` on its exchange.
//! Client addresses: valid 198.51.100.1–100, other abuse 198.51.100.101–200, the flood
//! 198.51.100.250, wrong IP 203.0.113.0/24 and 2001:db9::/32.
//!
//! Bounded: counts per kind and `--max-secs` overall; loopback targets only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Public listener, e.g. 127.0.0.1:18181 (loopback only).
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// Admin listener (for /readyz).
    #[arg(long)]
    admin: std::net::SocketAddr,
    /// Source name (a GitHub source).
    #[arg(long, default_value = "shop")]
    source: String,
    #[arg(long)]
    secret: String,
    /// Its max_body_bytes (oversize bodies are sized from it).
    #[arg(long, default_value_t = 65536)]
    max_body: usize,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// The gateway's queue (bound to `#`) and exchange; both are deleted at the end.
    #[arg(long)]
    queue: String,
    #[arg(long)]
    exchange: String,
    /// Valid deliveries.
    #[arg(long, default_value_t = 3000)]
    valid: usize,
    /// Requests per abuse kind (unsigned, malformed, wrong IP, oversize, replay).
    #[arg(long, default_value_t = 1000)]
    bad: usize,
    /// Most flood requests (bad signatures from one client as fast as it can).
    #[arg(long, default_value_t = 30000)]
    flood: usize,
    /// Slowloris connections.
    #[arg(long, default_value_t = 50)]
    slow: usize,
    /// Overall bound.
    #[arg(long, default_value_t = 90)]
    max_secs: u64,
}

/// Per kind: how many were sent and which answers came back.
#[derive(Default)]
struct Tally {
    sent: usize,
    statuses: BTreeMap<String, usize>,
}

type Tallies = Arc<Mutex<BTreeMap<&'static str, Tally>>>;

fn record(t: &Tallies, kind: &'static str, status: impl ToString) {
    let mut t = t.lock().unwrap();
    let e = t.entry(kind).or_default();
    e.sent += 1;
    *e.statuses.entry(status.to_string()).or_default() += 1;
}

fn main() {
    let args = Arc::new(Args::parse());
    assert!(
        args.addr.ip().is_loopback() && args.admin.ip().is_loopback(),
        "abuse goes to loopback only"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = rt.block_on(run(args));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn run(args: Arc<Args>) -> bool {
    let run_id = hex::encode(rand::random::<[u8; 3]>());
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let url = format!("http://{}/hooks/{}", args.addr, args.source);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let tallies: Tallies = Arc::default();
    let valid_done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Valid traffic: 8 in flight, from 100 client addresses.
    let valid_ids: Vec<String> = (0..args.valid)
        .map(|i| format!("valid-{run_id}-{i}"))
        .collect();
    let valid_lat = Arc::new(Mutex::new(Vec::new()));
    let valid = {
        let next = Arc::new(AtomicUsize::new(0));
        let ids = Arc::new(valid_ids.clone());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, u, a, t, n, ids, lat) = (
                client.clone(),
                url.clone(),
                args.clone(),
                tallies.clone(),
                next.clone(),
                ids.clone(),
                valid_lat.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    if i >= ids.len() || Instant::now() > deadline {
                        return;
                    }
                    let xff = format!("198.51.100.{}", 1 + i % 100);
                    let t0 = Instant::now();
                    let s = post_push(&c, &u, &a.secret, &ids[i], Some(&xff), Sign::Good).await;
                    lat.lock().unwrap().push(t0.elapsed());
                    record(&t, "valid", s);
                }
            }));
        }
        let done = valid_done.clone();
        tokio::spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut abuse = Vec::new();
    // Flood: bad signatures from one client, 16 in flight, until the valid traffic is done.
    {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..16 {
            let (c, u, a, t, n, done) = (
                client.clone(),
                url.clone(),
                args.clone(),
                tallies.clone(),
                next.clone(),
                valid_done.clone(),
            );
            abuse.push(tokio::spawn(async move {
                while n.fetch_add(1, Ordering::Relaxed) < a.flood
                    && !done.load(Ordering::Relaxed)
                    && Instant::now() < deadline
                {
                    let id = format!("flood-{}", hex::encode(rand::random::<[u8; 6]>()));
                    let s =
                        post_push(&c, &u, &a.secret, &id, Some("198.51.100.250"), Sign::Bad).await;
                    record(&t, "flood (bad sig, one IP)", s);
                }
            }));
        }
    }
    // Request-shaped abuse, 2 in flight per kind.
    for kind in [
        Kind::Unsigned,
        Kind::Malformed,
        Kind::Garbage,
        Kind::WrongIp,
        Kind::SpoofedXff,
        Kind::OversizeDeclared,
        Kind::OversizeChunked,
    ] {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let (c, u, a, t, n) = (
                client.clone(),
                url.clone(),
                args.clone(),
                tallies.clone(),
                next.clone(),
            );
            let run_id = run_id.clone();
            abuse.push(tokio::spawn(async move {
                loop {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    if i >= a.bad || Instant::now() > deadline {
                        return;
                    }
                    let s = kind
                        .send(&c, &u, &a, &format!("{}-{run_id}-{i}", kind.id()), i)
                        .await;
                    record(&t, kind.label(), s);
                }
            }));
        }
    }
    // Slowloris: headers a byte every 250 ms; the gateway should cut each one off.
    for i in 0..args.slow {
        let (a, t) = (args.clone(), tallies.clone());
        abuse.push(tokio::spawn(async move {
            let s = slowloris(a.addr, &a.source, i).await;
            record(&t, "slowloris headers", s);
        }));
    }

    let _ = valid.await;
    let valid_secs = started.elapsed().as_secs_f64();
    for t in abuse {
        let _ = t.await;
    }
    // Replays of valid deliveries: acknowledged again, published once.
    for (i, id) in valid_ids.iter().take(args.bad).enumerate() {
        if Instant::now() > deadline {
            break;
        }
        let xff = format!("198.51.100.{}", 1 + i % 100);
        let s = post_push(&client, &url, &args.secret, id, Some(&xff), Sign::Good).await;
        record(&tallies, "replay of a valid id", s);
    }
    let traffic_secs = started.elapsed().as_secs_f64();

    // Everything accepted reaches the broker; then count what is in the queue.
    let drained = wait_outbox_empty(&client, args.admin, deadline).await;
    let published = consume(&args, args.valid, deadline).await;
    let valid_set: HashSet<&str> = valid_ids.iter().map(String::as_str).collect();
    let mut valid_published = 0;
    let mut duplicates = 0;
    let mut invalid_published: BTreeMap<String, usize> = BTreeMap::new();
    for (id, n) in &published {
        if valid_set.contains(id.as_str()) {
            valid_published += 1;
            duplicates += n - 1;
        } else {
            let kind = id.split('-').next().unwrap_or("?").to_string();
            *invalid_published.entry(kind).or_default() += n;
        }
    }

    // Taken out of the mutex: the report below awaits (broker clean-up).
    let tallies = std::mem::take(&mut *tallies.lock().unwrap());
    let mut lat = valid_lat.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let valid_t = tallies.get("valid");
    let valid_sent = valid_t.map_or(0, |t| t.sent);
    let valid_2xx = valid_t.map_or(0, |t| count_2xx(&t.statuses));

    println!();
    println!(
        "{:<28} {:>7} {:>7} {:>10}  statuses",
        "KIND", "SENT", "2XX", "PUBLISHED"
    );
    println!(
        "{:<28} {:>7} {:>7} {:>10}  {}",
        "valid (signed, allowed IP)",
        valid_sent,
        valid_2xx,
        valid_published,
        fmt_statuses(valid_t.map(|t| &t.statuses))
    );
    let mut bad_2xx = 0;
    let mut bad_sent = 0;
    for (kind, t) in tallies.iter().filter(|(k, _)| **k != "valid") {
        let twoxx = count_2xx(&t.statuses);
        let published = if *kind == "replay of a valid id" {
            duplicates.to_string() + " extra"
        } else {
            invalid_published
                .get(Kind::id_of(kind))
                .copied()
                .unwrap_or(0)
                .to_string()
        };
        if *kind != "replay of a valid id" {
            bad_2xx += twoxx;
            bad_sent += t.sent;
        }
        println!(
            "{:<28} {:>7} {:>7} {:>10}  {}",
            kind,
            t.sent,
            twoxx,
            published,
            fmt_statuses(Some(&t.statuses))
        );
    }
    let invalid_total: usize = invalid_published.values().sum();
    println!();
    println!(
        "valid: {valid_sent} sent, {valid_2xx} accepted, {valid_published} published \
         ({duplicates} duplicates); latency under abuse p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "invalid: {bad_sent} sent, {bad_2xx} accepted, {invalid_total} published {:?}",
        invalid_published
    );
    println!(
        "time: valid traffic {valid_secs:.1} s, all traffic {traffic_secs:.1} s, total {:.1} s; outbox drained: {drained}",
        started.elapsed().as_secs_f64()
    );

    cleanup(&args).await;
    let ok = valid_sent == args.valid
        && valid_2xx == valid_sent
        && valid_published == valid_sent
        && duplicates == 0
        && bad_2xx == 0
        && invalid_total == 0;
    println!(
        "RESULT {}",
        if ok {
            "ok: every valid event accepted and published once, nothing else published"
        } else {
            "FAIL"
        }
    );
    ok
}

fn count_2xx(s: &BTreeMap<String, usize>) -> usize {
    s.iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, n)| n)
        .sum()
}

fn fmt_statuses(s: Option<&BTreeMap<String, usize>>) -> String {
    s.map(|s| {
        s.iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
    .unwrap_or_default()
}

#[derive(Clone, Copy)]
enum Sign {
    Good,
    Bad,
    None,
}

/// A GitHub push; returns the status or what went wrong.
async fn post_push(
    c: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    xff: Option<&str>,
    sign: Sign,
) -> String {
    let body = format!(
        r#"{{"ref":"refs/heads/main","repository":{{"full_name":"octo/abuse"}},"id":"{id}"}}"#
    );
    post(c, url, secret, id, xff, sign, body.into_bytes()).await
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    secret: &str,
    id: &str,
    xff: Option<&str>,
    sign: Sign,
    body: Vec<u8>,
) -> String {
    let mut r = c
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", id);
    match sign {
        Sign::Good => {
            r = r.header(
                "X-Hub-Signature-256",
                providers::github::signature_256(secret, &body),
            )
        }
        Sign::Bad => r = r.header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64))),
        Sign::None => {}
    }
    if let Some(x) = xff {
        r = r.header("X-Forwarded-For", x);
    }
    match r.body(body).send().await {
        Ok(resp) => {
            let s = resp.status().as_u16().to_string();
            let _ = resp.bytes().await;
            s
        }
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "conn-error".into(),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Unsigned,
    Malformed,
    Garbage,
    WrongIp,
    SpoofedXff,
    OversizeDeclared,
    OversizeChunked,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Unsigned => "unsigned",
            Kind::Malformed => "malformed (signed, not JSON)",
            Kind::Garbage => "garbage HTTP",
            Kind::WrongIp => "wrong IP (signed)",
            Kind::SpoofedXff => "spoofed XFF (signed)",
            Kind::OversizeDeclared => "oversize, Content-Length",
            Kind::OversizeChunked => "oversize, chunked 4 MB",
        }
    }

    /// Event id prefix, so a published one can be told apart.
    fn id(self) -> &'static str {
        match self {
            Kind::Unsigned => "unsigned",
            Kind::Malformed => "malformed",
            Kind::Garbage => "garbage",
            Kind::WrongIp => "wrongip",
            Kind::SpoofedXff => "spoofed",
            Kind::OversizeDeclared => "oversizecl",
            Kind::OversizeChunked => "oversizechunked",
        }
    }

    fn id_of(label: &str) -> &'static str {
        for k in [
            Kind::Unsigned,
            Kind::Malformed,
            Kind::Garbage,
            Kind::WrongIp,
            Kind::SpoofedXff,
            Kind::OversizeDeclared,
            Kind::OversizeChunked,
        ] {
            if k.label() == label {
                return k.id();
            }
        }
        match label {
            "slowloris headers" => "slowloris",
            _ => "flood",
        }
    }

    async fn send(self, c: &reqwest::Client, url: &str, a: &Args, id: &str, i: usize) -> String {
        let xff = format!("198.51.100.{}", 101 + i % 100);
        match self {
            Kind::Unsigned => post_push(c, url, &a.secret, id, Some(&xff), Sign::None).await,
            Kind::Malformed => {
                let body = format!("{{\"id\":\"{id}\", not json").into_bytes();
                post(c, url, &a.secret, id, Some(&xff), Sign::Good, body).await
            }
            Kind::Garbage => {
                let raw = format!(
                    "POST /hooks/{} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {xff}\r\nContent-Length: nope\r\n\x01\x02garbage\r\n\r\n",
                    a.source
                );
                raw_exchange(a.addr, raw.as_bytes()).await
            }
            Kind::WrongIp => {
                let xff = if i.is_multiple_of(2) {
                    format!("203.0.113.{}", 1 + i % 250)
                } else {
                    format!("2001:db9::{:x}", 1 + i)
                };
                post_push(c, url, &a.secret, id, Some(&xff), Sign::Good).await
            }
            Kind::SpoofedXff => {
                // An outsider writes an allowed address; the proxy appends the real one.
                let xff = format!("198.51.100.7, 203.0.113.{}", 1 + i % 250);
                post_push(c, url, &a.secret, id, Some(&xff), Sign::Good).await
            }
            Kind::OversizeDeclared => {
                let raw = format!(
                    "POST /hooks/{} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {xff}\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {id}\r\nContent-Length: 104857600\r\n\r\n",
                    a.source
                );
                raw_exchange(a.addr, raw.as_bytes()).await
            }
            Kind::OversizeChunked => {
                let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
                let n = (4 * 1024 * 1024 / chunk.len()).max(a.max_body / chunk.len() + 2);
                let stream = futures_util::stream::iter(
                    (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                let r = c
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("X-GitHub-Event", "push")
                    .header("X-GitHub-Delivery", id)
                    .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
                    .header("X-Forwarded-For", &xff)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await;
                match r {
                    Ok(resp) => resp.status().as_u16().to_string(),
                    Err(_) => "conn-error".into(),
                }
            }
        }
    }
}

/// Writes `raw` on a new connection and returns the status line's code, or what happened.
async fn raw_exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return "conn-error".into();
    };
    if s.write_all(raw).await.is_err() {
        return "conn-error".into();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .is_err()
    {
        return "timeout".into();
    }
    status_code(&got).unwrap_or_else(|| "closed".into())
}

fn status_code(got: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(got);
    let code = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    Some(code.to_string())
}

/// Sends headers a byte every 250 ms; returns the gateway's answer ("408", "closed") or
/// "not cut" if all of them (~25 s) could be sent, which the gateway must not allow.
async fn slowloris(addr: std::net::SocketAddr, source: &str, i: usize) -> String {
    let head = format!(
        "POST /hooks/{source} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.{}\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nContent-Length: 10\r\n\r\n",
        101 + i % 100
    );
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return "conn-error".into();
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for b in head.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    if got.is_empty() {
        // Cut without an answer, or everything was sent: tell the two apart.
        return match s.read(&mut buf).await {
            Ok(0) | Err(_) => "closed".into(),
            Ok(_) => "not cut".into(),
        };
    }
    status_code(&got).unwrap_or_else(|| "closed".into())
}

/// Polls /readyz until the outbox is empty (or the deadline passes).
async fn wait_outbox_empty(
    c: &reqwest::Client,
    admin: std::net::SocketAddr,
    deadline: Instant,
) -> bool {
    let url = format!("http://{admin}/readyz");
    loop {
        let last = match c.get(&url).send().await {
            Ok(r) => match r.json::<serde_json::Value>().await {
                Ok(v) if v["outbox_pending"] == 0 => return true,
                Ok(v) => v.to_string(),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            eprintln!("abuse: the outbox did not drain in time; last /readyz: {last}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Message ids in the queue with how often each was seen. Stops once the queue has stayed
/// empty for a second (five while fewer than `expect` ids were seen).
async fn consume(a: &Args, expect: usize, deadline: Instant) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let conn = match Connection::connect(&a.amqp_url, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("abuse: cannot connect to the broker to count messages: {e}");
            return seen;
        }
    };
    let ch = conn.create_channel().await.expect("channel");
    let mut empty_since: Option<Instant> = None;
    loop {
        match ch
            .basic_get(a.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
        {
            Ok(Some(m)) => {
                empty_since = None;
                let id = m
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                *seen.entry(id).or_default() += 1;
            }
            Ok(None) => {
                let since = *empty_since.get_or_insert_with(Instant::now);
                let quiet = if seen.len() >= expect {
                    Duration::from_millis(1000)
                } else {
                    Duration::from_secs(5)
                };
                if since.elapsed() > quiet || Instant::now() > deadline + Duration::from_secs(10) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                eprintln!("abuse: basic.get failed: {e}");
                break;
            }
        }
    }
    let _ = conn.close(200, "done".into()).await;
    seen
}

async fn cleanup(a: &Args) {
    if let Ok(conn) = Connection::connect(&a.amqp_url, ConnectionProperties::default()).await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(a.queue.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = ch
                .exchange_delete(a.exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
    }
}
