//! Replicas behind nginx with a shared Redis (issue 13): run by `scripts/cluster.sh`.
//!
//! Starts a private `redis-server` (AOF, fsynced every second: docs/replicas.md's advice; a
//! kill -9 of the process loses nothing, the AOF is written before each reply), three release `hookgate`
//! replicas with stores of their own and `[dedup] shared` on it, and nginx in front (one
//! upstream of all three, one of the first replica only). Then, in one run:
//!
//! 1. throughput: mixed-provider load (GitHub, Standard Webhooks, encrypted Feishu), closed
//!    loop, through nginx to one replica, then to three;
//! 2. the latency the shared claim adds: the same load straight to a replica with the shared
//!    store, then to a fourth replica without it (p50 / p99);
//! 3. chaos: provider-like clients (each retries its delivery with backoff until a 2xx) through
//!    nginx; one replica is killed -9 and restarted, then Redis is killed -9 and restarted.
//!
//! A consumer records every message on a queue bound to the exchange; the run ends with
//! accepted / published / duplicates / lost (lost must be 0, the process exits non-zero
//! otherwise). Loopback only; every phase is bounded in time.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use providers::sign::{SampleOptions, SampleRequest};

#[derive(Parser)]
#[command(about = "hookgate replicas behind nginx with a shared Redis (issue 13)")]
struct Args {
    /// The hookgate binary (a release build).
    #[arg(long, default_value = "target/release/hookgate")]
    hookgate: PathBuf,
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    #[arg(long, default_value = "redis-server")]
    redis: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Length of each measured phase; the chaos phase takes twice this.
    #[arg(long, default_value_t = 8)]
    phase_secs: u64,
    /// Requests in flight in the throughput and chaos phases.
    #[arg(long, default_value_t = 48)]
    concurrency: usize,
    /// Requests in flight in the latency phase.
    #[arg(long, default_value_t = 4)]
    latency_concurrency: usize,
    /// Directory for configs, stores and logs.
    #[arg(long, default_value = "target/cluster")]
    dir: PathBuf,
}

const GH_SECRET: &str = "cluster-secret";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process started (and restarted) from one command line; killed -9 on drop.
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(name: &str, program: impl Into<PathBuf>, args: Vec<String>, dir: &Path) -> Proc {
        Proc {
            name: name.into(),
            program: program.into(),
            args,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("{what} did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The sources every replica serves, in config TOML.
fn sources_toml() -> String {
    format!(
        r#"
[[sources]]
name = "gh"
provider = "github"
secrets = ["{GH_SECRET}"]

[[sources]]
name = "std"
provider = "standard"
secrets = ["{WHSEC}"]

[[sources]]
name = "fs"
provider = "feishu"
verification_token = "cluster-token"
encrypt_key = "cluster-encrypt-key"
"#
    )
}

struct Replica {
    proc: Proc,
    port: u16,
    admin: u16,
}

fn replica(
    args: &Args,
    dir: &Path,
    name: &str,
    exchange: &str,
    redis: Option<&str>,
) -> anyhow::Result<Replica> {
    let (port, admin) = (free_port()?, free_port()?);
    let dedup = redis.map_or(String::new(), |url| {
        format!("[dedup]\nshared = \"{url}\"\nclaim_secs = 15\ntimeout_ms = 50\n")
    });
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         request_timeout_secs = 10\ntrusted_proxies = [\"127.0.0.1/32\"]\nworkers = 2\n\
         [store]\npath = \"{}\"\n[amqp]\nurl = \"{}\"\nexchange = \"{exchange}\"\n\
         reconnect_max_secs = 1\n{dedup}{}",
        dir.join(format!("{name}-store")).display(),
        args.amqp_url,
        sources_toml()
    );
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text)?;
    let serve = vec!["serve".into(), "-c".into(), config.display().to_string()];
    Ok(Replica {
        proc: Proc::new(name, &args.hookgate, serve, dir),
        port,
        admin,
    })
}

/// Signed requests for the sources of [`sources_toml`].
struct Signer {
    sources: Vec<(String, providers::ProviderConfig)>,
}

impl Signer {
    fn new() -> anyhow::Result<Signer> {
        let text = format!("[store]\npath = \"unused\"\n{}", sources_toml());
        let config = hookgate::config::Config::parse(&text, &HashMap::new(), Path::new("."))?;
        Ok(Signer {
            sources: config
                .sources
                .into_iter()
                .map(|s| (s.name, s.provider))
                .collect(),
        })
    }

    /// Request `n`'s source and signed request, with event id `id`.
    fn request(&self, n: usize, id: &str) -> (String, SampleRequest) {
        let (name, provider) = &self.sources[n % self.sources.len()];
        let mut o = SampleOptions::new(SystemTime::now());
        o.id = Some(id.to_string());
        let r = provider.sample(&o).expect("the sample signs");
        (name.clone(), r)
    }
}

async fn post(http: &reqwest::Client, base: &str, source: &str, r: &SampleRequest) -> u16 {
    let mut req = http
        .post(r.url(&format!("{base}/hooks/{source}")))
        .body(r.body.clone());
    for (k, v) in &r.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

/// What a load phase saw.
#[derive(Default)]
struct Stats {
    ok: usize,
    other: usize,
    latencies: Vec<Duration>,
    secs: f64,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Closed loop: `concurrency` requests in flight against `base` for `secs`, unique ids; every
/// 2xx id is added to `acked`.
async fn closed_loop(
    http: &reqwest::Client,
    signer: &Arc<Signer>,
    base: &str,
    tag: &str,
    concurrency: usize,
    secs: u64,
    acked: &Arc<Mutex<HashSet<String>>>,
) -> Stats {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, signer, base, tag, next, acked) = (
            http.clone(),
            signer.clone(),
            base.to_string(),
            tag.to_string(),
            next.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let id = format!("{tag}-{n}");
                let (source, r) = signer.request(n, &id);
                let t = Instant::now();
                let status = post(&http, &base, &source, &r).await;
                if (200..300).contains(&status) {
                    s.latencies.push(t.elapsed());
                    s.ok += 1;
                    acked.lock().unwrap().insert(id);
                } else {
                    s.other += 1;
                }
            }
            s
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await.expect("load task");
        all.ok += s.ok;
        all.other += s.other;
        all.latencies.extend(s.latencies);
    }
    all.secs = started.elapsed().as_secs_f64();
    all
}

/// Provider-like clients: each sends a new delivery and retries it (backoff 100 ms doubling
/// to 2 s) until a 2xx; new deliveries stop at `until`, retries continue up to `give_up`.
async fn provider_clients(
    http: &reqwest::Client,
    signer: &Arc<Signer>,
    base: &str,
    concurrency: usize,
    (until, give_up): (Instant, Instant),
    acked: &Arc<Mutex<HashSet<String>>>,
    replies: &Arc<Mutex<HashMap<u16, usize>>>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..concurrency)
        .map(|_| {
            let (http, signer, base, next, acked, replies) = (
                http.clone(),
                signer.clone(),
                base.to_string(),
                next.clone(),
                acked.clone(),
                replies.clone(),
            );
            tokio::spawn(async move {
                let mut unacked = Vec::new();
                while Instant::now() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let id = format!("chaos-{n}");
                    let (source, r) = signer.request(n, &id);
                    let mut backoff = Duration::from_millis(100);
                    loop {
                        let status = post(&http, &base, &source, &r).await;
                        *replies.lock().unwrap().entry(status).or_default() += 1;
                        if (200..300).contains(&status) {
                            acked.lock().unwrap().insert(id);
                            break;
                        }
                        if Instant::now() > give_up {
                            unacked.push(id);
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
                unacked
            })
        })
        .collect()
}

/// Every message on the queue: id → `receivedat` of each copy.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

async fn sink(url: &str, queue: &str) -> anyhow::Result<(Connection, Seen)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "cluster".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap_or_default();
            let id = v["id"].as_str().unwrap_or_default().to_string();
            let at = v["receivedat"].as_str().unwrap_or_default().to_string();
            s.lock().unwrap().entry(id).or_default().push(at);
            if d.ack(BasicAckOptions::default()).await.is_err() {
                return;
            }
        }
    });
    Ok((conn, seen))
}

fn nginx_conf(dir: &Path, three: u16, one: u16, replicas: &[u16]) -> String {
    let servers: String = replicas
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    let d = dir.display();
    // Root starts the workers as root here (a throwaway instance in a private directory).
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;\n"
    } else {
        ""
    };
    format!(
        r#"{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/nginx-body;
  proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fastcgi;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  upstream three {{
{servers}    keepalive 128;
  }}
  upstream one {{
    server 127.0.0.1:{first};
    keepalive 128;
  }}
  # A POST is retried on the next replica only when it could not be sent (connection refused
  # or reset: a dead replica); hookgate's dedup makes a resend harmless either way.
  proxy_next_upstream error timeout non_idempotent;
  proxy_next_upstream_tries 3;
  proxy_connect_timeout 1s;
  proxy_read_timeout 15s;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  server {{ listen 127.0.0.1:{three}; location /hooks/ {{ proxy_pass http://three; }} }}
  server {{ listen 127.0.0.1:{one}; location /hooks/ {{ proxy_pass http://one; }} }}
}}
"#,
        first = replicas[0]
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    let dir = std::fs::canonicalize(&args.dir)
        .or_else(|_| {
            std::fs::create_dir_all(&args.dir)?;
            std::fs::canonicalize(&args.dir)
        })?
        .join(stamp.to_string());
    std::fs::create_dir_all(&dir)?;
    let exchange = format!("cluster-{stamp}");
    let queue = format!("cluster-sink-{stamp}");

    // The sink queue first, so nothing published is missed.
    let amqp = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let ch = amqp.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let (_sink_conn, seen) = sink(&args.amqp_url, &queue).await?;

    let redis_port = free_port()?;
    let redis_dir = dir.join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let mut redis = Proc::new(
        "redis",
        &args.redis,
        [
            "--bind",
            "127.0.0.1",
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            redis_dir.to_str().unwrap_or("."),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        &dir,
    );
    redis.start()?;
    wait_port(redis_port, "redis-server").await?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");

    let mut replicas = Vec::new();
    for i in 1..=3 {
        let mut r = replica(
            &args,
            &dir,
            &format!("replica{i}"),
            &exchange,
            Some(&redis_url),
        )?;
        r.proc.start()?;
        replicas.push(r);
    }
    for r in &replicas {
        wait_port(r.port, &r.proc.name).await?;
    }
    let (three, one) = (free_port()?, free_port()?);
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    std::fs::write(dir.join("nginx.conf"), nginx_conf(&dir, three, one, &ports))?;
    let mut nginx = Proc::new(
        "nginx",
        &args.nginx,
        vec![
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            dir.join("nginx.conf").display().to_string(),
            "-e".into(),
            dir.join("nginx-error.log").display().to_string(),
        ],
        &dir,
    );
    nginx.start()?;
    wait_port(three, "nginx").await?;
    wait_port(one, "nginx").await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(256)
        .build()?;
    let signer = Arc::new(Signer::new()?);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let secs = args.phase_secs;
    let c = args.concurrency;
    println!(
        "cluster run in {} (3 replicas, nginx, redis-server; {} CPUs)",
        dir.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Throughput: one replica vs three, through nginx.
    let base1 = format!("http://127.0.0.1:{one}");
    let base3 = format!("http://127.0.0.1:{three}");
    let t1 = closed_loop(&http, &signer, &base1, "tp1", c, secs, &acked).await;
    let t3 = closed_loop(&http, &signer, &base3, "tp3", c, secs, &acked).await;
    println!(
        "\nthroughput through nginx, {c} in flight, {secs} s each (mixed github/standard/feishu):"
    );
    println!(
        "  one replica    {:>7.0} req/s   p50 {:>6.1} ms  p99 {:>6.1} ms  non-2xx {}",
        t1.rps(),
        t1.pct(0.5),
        t1.pct(0.99),
        t1.other
    );
    println!(
        "  three replicas {:>7.0} req/s   p50 {:>6.1} ms  p99 {:>6.1} ms  non-2xx {}   ({:.2}x)",
        t3.rps(),
        t3.pct(0.5),
        t3.pct(0.99),
        t3.other,
        t3.rps() / t1.rps().max(1.0)
    );

    // 2. The latency of the shared claim: the same light load to a replica with it and to
    // one without it.
    let mut off = replica(&args, &dir, "replica-off", &exchange, None)?;
    off.proc.start()?;
    wait_port(off.port, "replica-off").await?;
    let lc = args.latency_concurrency;
    let on_base = format!("http://127.0.0.1:{}", replicas[0].port);
    let off_base = format!("http://127.0.0.1:{}", off.port);
    // Alternating halves, so a noisy neighbour hits both alike.
    let mut on = Stats::default();
    let mut offs = Stats::default();
    for round in 0..2 {
        for (base, into, tag) in [
            (&on_base, &mut on, "lat-on"),
            (&off_base, &mut offs, "lat-off"),
        ] {
            let s = closed_loop(
                &http,
                &signer,
                base,
                &format!("{tag}{round}"),
                lc,
                secs / 2,
                &acked,
            )
            .await;
            into.ok += s.ok;
            into.other += s.other;
            into.latencies.extend(s.latencies);
            into.secs += s.secs;
        }
    }
    println!(
        "\nlatency of the shared claim, straight to a replica, {lc} in flight, {secs} s each:"
    );
    for (name, s) in [("shared on ", &on), ("shared off", &offs)] {
        println!(
            "  {name}  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  ({:.0} req/s)",
            s.pct(0.5),
            s.pct(0.9),
            s.pct(0.99),
            s.rps()
        );
    }
    println!(
        "  added      p50 {:>+6.2} ms  p99 {:>+6.2} ms",
        on.pct(0.5) - offs.pct(0.5),
        on.pct(0.99) - offs.pct(0.99)
    );
    if let Ok(m) = http
        .get(format!("http://127.0.0.1:{}/metrics", replicas[0].admin))
        .send()
        .await
    {
        let text = m.text().await.unwrap_or_default();
        for step in ["claim", "confirm"] {
            let sum = series(
                &text,
                &format!("hookgate_dedup_shared_duration_seconds_sum{{step=\"{step}\"}}"),
            );
            let n = series(
                &text,
                &format!("hookgate_dedup_shared_duration_seconds_count{{step=\"{step}\"}}"),
            );
            if n > 0.0 {
                println!(
                    "  redis {step:<7} mean {:.3} ms over {n} calls (replica1's histogram)",
                    sum / n * 1000.0
                );
            }
        }
    }
    // Its events go to the broker before it stops (a replica that never comes back would
    // keep them on its disk).
    drain(&http, off.admin).await;
    off.proc.kill9();
    let before = scrape(&http, &replicas).await;
    println!(
        "  shared dedup so far: fallbacks {}  conflicts (503) {}  errors {}",
        before.0, before.1, before.2
    );

    // 3. Chaos through nginx: kill a replica, then Redis.
    let replies: Arc<Mutex<HashMap<u16, usize>>> = Arc::default();
    let chaos = Duration::from_secs(secs * 2);
    let start = Instant::now();
    let clients = provider_clients(
        &http,
        &signer,
        &base3,
        c,
        (start + chaos, start + chaos + Duration::from_secs(60)),
        &acked,
        &replies,
    )
    .await;
    let at = |f: f64| start + chaos.mul_f64(f);
    tokio::time::sleep_until(at(0.2).into()).await;
    replicas[1].proc.kill9();
    println!(
        "\nchaos: {:>5.1} s  replica2 killed -9",
        start.elapsed().as_secs_f64()
    );
    tokio::time::sleep_until(at(0.35).into()).await;
    replicas[1].proc.start()?;
    println!(
        "chaos: {:>5.1} s  replica2 restarted",
        start.elapsed().as_secs_f64()
    );
    tokio::time::sleep_until(at(0.55).into()).await;
    redis.kill9();
    println!(
        "chaos: {:>5.1} s  redis killed -9",
        start.elapsed().as_secs_f64()
    );
    tokio::time::sleep_until(at(0.7).into()).await;
    redis.start()?;
    println!(
        "chaos: {:>5.1} s  redis restarted",
        start.elapsed().as_secs_f64()
    );
    // When Redis answers again (it loads its AOF first), and when the replicas see it.
    let probe = redis::Client::open(redis_url.as_str())?;
    let restarted = Instant::now();
    while restarted.elapsed() < Duration::from_secs(30) {
        if let Ok(mut c) = probe.get_multiplexed_async_connection().await {
            if redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "chaos: {:>5.1} s  redis answers (AOF loaded)",
        start.elapsed().as_secs_f64()
    );
    for r in &replicas {
        while restarted.elapsed() < Duration::from_secs(30) {
            let ok = match http
                .get(format!("http://127.0.0.1:{}/readyz", r.admin))
                .send()
                .await
            {
                Ok(resp) => {
                    let v: serde_json::Value = resp.json().await.unwrap_or_default();
                    v["dedup"]["shared"] == "ok"
                }
                Err(_) => false,
            };
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "chaos: {:>5.1} s  every replica reports dedup.shared ok",
        start.elapsed().as_secs_f64()
    );
    let mut unacked = Vec::new();
    for t in clients {
        unacked.extend(t.await?);
    }
    println!(
        "chaos: {:>5.1} s  clients done; replies {:?}",
        start.elapsed().as_secs_f64(),
        sorted(&replies.lock().unwrap())
    );

    // Every acknowledged id must arrive.
    let acked = acked.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = {
            let s = seen.lock().unwrap();
            acked.iter().filter(|id| s.contains_key(*id)).count()
        };
        if n == acked.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // late copies
    let seen = seen.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    let copies: usize = seen.values().map(|v| v.len() - 1).sum();
    // Two `receivedat` for one id: two acceptances (two replicas, or one replica after the
    // dedup window); the same one twice: the relay republishing after a kill.
    let accepted_twice = seen
        .values()
        .filter(|v| v.iter().collect::<HashSet<_>>().len() > 1)
        .count();
    let metrics = scrape(&http, &replicas).await;
    println!("\nresult (all phases):");
    println!("  accepted (2xx ids)   {}", acked.len());
    println!("  published (ids)      {}", seen.len());
    println!("  duplicates           {copies} copies: {accepted_twice} ids accepted twice, {} republished", copies.saturating_sub(accepted_twice));
    println!(
        "  unacknowledged       {} (gave up retrying)",
        unacked.len()
    );
    println!("  lost                 {}", lost.len());
    println!(
        "  shared dedup         fallbacks {}  conflicts (503) {}  errors {}",
        metrics.0, metrics.1, metrics.2
    );

    for r in &mut replicas {
        r.proc.kill9();
    }
    nginx.kill9();
    redis.kill9();
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    if !lost.is_empty() {
        println!("LOST: {:?}", lost.iter().take(20).collect::<Vec<_>>());
        return Ok(false);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(true)
}

fn sorted(m: &HashMap<u16, usize>) -> Vec<(u16, usize)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
    v.sort();
    v
}

/// Sum over every line starting with `prefix` (all label sets).
fn series(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most 30 s) until a replica's outbox is empty.
async fn drain(http: &reqwest::Client, admin: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await
        {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if v["outbox_pending"] == 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (fallbacks, conflicts, errors) summed over the replicas.
async fn scrape(http: &reqwest::Client, replicas: &[Replica]) -> (f64, f64, f64) {
    let mut out = (0.0, 0.0, 0.0);
    for r in replicas {
        let Ok(resp) = http
            .get(format!("http://127.0.0.1:{}/metrics", r.admin))
            .send()
            .await
        else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        out.0 += series(&text, "hookgate_dedup_shared_fallbacks_total");
        out.1 += text
            .lines()
            .filter(|l| {
                l.starts_with("hookgate_dedup_shared_claims_total") && l.contains("conflict")
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>();
        out.2 += series(&text, "hookgate_dedup_shared_errors_total");
        for step in ["claim", "confirm", "release"] {
            let n: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("hookgate_dedup_shared_errors_total")
                        && l.contains(&format!("step=\"{step}\""))
                })
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .sum();
            if n > 0.0 {
                eprintln!("    {}: {step} errors {n}", r.proc.name);
            }
        }
    }
    out
}
