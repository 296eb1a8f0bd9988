//! Chaos driver for issue #7: proves that a 2xx from hookgate is never lost.
//!
//! Runs the release `hookgate serve` binary as a child process against the real RabbitMQ and
//! injects the faults of production while clients post signed GitHub deliveries: a broker
//! outage (a TCP proxy between gateway and broker is cut, so other users of the broker are not
//! disturbed), `kill -9` under load, restarts, a broker that refuses (queue at max-length with
//! reject-publish; exchange deleted at runtime) and a store disk that fills up. A consumer
//! records everything that reaches the queue; each scenario prints a table (sent, 2xx,
//! delivered, duplicates, lost) and the process exits non-zero on any loss or failed check.
//!
//! Run it with `scripts/chaos.sh` (builds the release binaries first). Loopback only; every
//! scenario is bounded in events and time.

mod broker;
mod ctx;
mod gateway;
mod load;
mod proxy;
mod report;
mod scenarios;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::future::LocalBoxFuture;

use ctx::Ctx;
use report::Row;
use scenarios::{crash, disk, log, outage, refuse, restart};

#[derive(Parser)]
#[command(about = "hookgate chaos scenarios against the real RabbitMQ (issue #7)")]
struct Args {
    /// The hookgate binary (a release build).
    #[arg(long, default_value = "target/release/hookgate")]
    hookgate: PathBuf,
    /// Comma-separated: outage, crash, restart, refuse, disk, disk-up, log (or all).
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// How long the broker is cut in the outage scenario.
    #[arg(long, default_value_t = 30)]
    outage_secs: u64,
    /// Concurrent clients (one source each).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Events per client in each crash round: enough that the last kill point still lands
    /// under load (6,400 events in all were done before 1.5 s once the gateway got faster).
    #[arg(long, default_value_t = 1000)]
    crash_events: usize,
    /// When to `kill -9` in the crash rounds, ms after the load started.
    #[arg(long, default_value = "150,700,2000")]
    kill_after_ms: String,
    /// Messages the refusing queue holds (x-max-length).
    #[arg(long, default_value_t = 100)]
    max_length: u32,
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Where stores, configs and gateway logs go (default target/chaos/<time>).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A scenario: its rows, one per case it runs.
type Scenario = for<'a> fn(&'a Ctx) -> LocalBoxFuture<'a, anyhow::Result<Vec<Row>>>;

/// Every scenario by its `--scenarios` name, in the order `all` runs them.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("outage", |ctx| Box::pin(outage::run(ctx))),
    ("crash", |ctx| Box::pin(crash::run(ctx))),
    ("restart", |ctx| Box::pin(restart::run(ctx))),
    ("refuse", |ctx| Box::pin(refuse::run(ctx))),
    ("disk", |ctx| Box::pin(disk::run(ctx))),
    ("disk-up", |ctx| Box::pin(disk::run_broker_up(ctx))),
    ("log", |ctx| Box::pin(log::run(ctx))),
];

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let broker = match broker_addr(&args.amqp_url) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    let work = args.work_dir.clone().unwrap_or_else(|| {
        PathBuf::from("target/chaos").join(chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string())
    });
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("chaos: cannot create {}: {e}", work.display());
        return ExitCode::from(2);
    }
    let work = work.canonicalize().unwrap_or(work);
    let ctx = Ctx {
        store_extra: Default::default(),
        bin: args.hookgate.clone(),
        work,
        amqp: args.amqp_url.clone(),
        broker,
        args,
    };
    if !ctx.bin.exists() {
        eprintln!(
            "chaos: {} not found (cargo build --release)",
            ctx.bin.display()
        );
        return ExitCode::from(2);
    }
    println!(
        "chaos: hookgate {}  broker {}  work dir {}",
        ctx.bin.display(),
        ctx.broker,
        ctx.work.display()
    );
    let wanted: Vec<&str> = match ctx.args.scenarios.as_str() {
        "all" => SCENARIOS.iter().map(|(name, _)| *name).collect(),
        s => s.split(',').map(str::trim).collect(),
    };
    let mut all = Vec::new();
    for name in wanted {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(600), async {
            match SCENARIOS.iter().find(|(known, _)| *known == name) {
                Some((_, scenario)) => scenario(&ctx).await,
                None => bail!("unknown scenario {name}"),
            }
        })
        .await;
        let rows = match result {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => vec![report::failed_row(name, format!("scenario error: {e:#}"))],
            Err(_) => vec![report::failed_row(name, "scenario exceeded 600 s".into())],
        };
        report::print_table(
            &format!("{name} ({:.1} s)", started.elapsed().as_secs_f64()),
            &rows,
        );
        all.extend(rows);
    }
    report::print_table("summary", &all);
    let failed = all.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        println!("\nchaos: {failed} scenario(s) FAILED");
        ExitCode::from(1)
    } else {
        println!("\nchaos: all scenarios passed; nothing acknowledged was lost");
        remove_stores(&ctx.work);
        ExitCode::SUCCESS
    }
}

/// Removes the scenarios' stores (logs and configs stay for a look).
fn remove_stores(work: &Path) {
    let Ok(runs) = std::fs::read_dir(work) else {
        return;
    };
    for run in runs.flatten() {
        let _ = std::fs::remove_dir_all(run.path().join("store"));
    }
}

/// The broker's socket address from an AMQP URL.
fn broker_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: lapin::uri::AMQPUri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("AMQP URL {url}: {e}"))?;
    let host = match uri.authority.host.as_str() {
        "localhost" => "127.0.0.1".to_string(),
        h => h.to_string(),
    };
    format!("{host}:{}", uri.authority.port)
        .parse()
        .context("the broker must be given by IP address or localhost")
}
