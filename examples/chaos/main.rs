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

mod gateway;
mod load;
mod proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;

use gateway::{Gateway, Spec};
use load::{
    analyse, finish_clients, start_clients, wait_count, wait_delivered, Ledger, Load, Row, Sink,
};
use proxy::Proxy;

#[derive(Parser)]
#[command(about = "hookgate chaos scenarios against the real RabbitMQ (issue #7)")]
struct Args {
    /// The hookgate binary (a release build).
    #[arg(long, default_value = "target/release/hookgate")]
    hookgate: PathBuf,
    /// Comma-separated: outage, crash, restart, refuse, disk, log (or all).
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// How long the broker is cut in the outage scenario.
    #[arg(long, default_value_t = 30)]
    outage_secs: u64,
    /// Concurrent clients (one source each).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Events per client in each crash round.
    #[arg(long, default_value_t = 400)]
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

struct Ctx {
    /// Extra `[store]` keys for the next gateway (the event-log scenarios set them).
    store_extra: std::sync::Mutex<String>,
    bin: PathBuf,
    work: PathBuf,
    amqp: String,
    broker: SocketAddr,
    args: Args,
}

impl Ctx {
    fn run_id(&self, tag: &str) -> String {
        format!("chaos-{tag}-{}", hex::encode(rand::random::<[u8; 3]>()))
    }

    fn sources(&self, tag: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{tag}{i}")).collect()
    }

    /// A gateway in `work/<run>` with its own store, exchange and (optionally) sink queue.
    fn gateway(
        &self,
        run: &str,
        amqp_url: &str,
        sink: bool,
        sources: &[String],
        window: u64,
    ) -> anyhow::Result<Gateway> {
        let dir = self.work.join(run);
        self.gateway_in(
            &dir,
            &dir.join("store"),
            run,
            amqp_url,
            sink,
            sources,
            window,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn gateway_in(
        &self,
        dir: &Path,
        store: &Path,
        run: &str,
        amqp_url: &str,
        sink: bool,
        sources: &[String],
        window: u64,
    ) -> anyhow::Result<Gateway> {
        Gateway::new(
            &self.bin,
            dir,
            &Spec {
                store: store.to_path_buf(),
                amqp_url: amqp_url.to_string(),
                exchange: run.to_string(),
                sink: sink.then(|| format!("{run}-sink")),
                sources: sources.to_vec(),
                dedup_window_secs: window,
                store_extra: self.store_extra.lock().unwrap().clone(),
            },
        )
    }
}

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
        "all" => vec!["outage", "crash", "restart", "refuse", "disk", "log"],
        s => s.split(',').map(str::trim).collect(),
    };
    let mut all = Vec::new();
    for name in wanted {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(600), async {
            match name {
                "outage" => outage(&ctx).await,
                "crash" => crash(&ctx).await,
                "restart" => restart(&ctx).await,
                "refuse" => refuse(&ctx).await,
                "disk" => disk(&ctx).await,
                "log" => log_scenarios(&ctx).await,
                other => bail!("unknown scenario {other}"),
            }
        })
        .await;
        let rows = match result {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => vec![failed_row(name, format!("scenario error: {e:#}"))],
            Err(_) => vec![failed_row(name, "scenario exceeded 600 s".into())],
        };
        load::print_table(
            &format!("{name} ({:.1} s)", started.elapsed().as_secs_f64()),
            &rows,
        );
        all.extend(rows);
    }
    load::print_table("summary", &all);
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

fn failed_row(name: &str, why: String) -> Row {
    let mut r = analyse(name, &Ledger::default(), &[]);
    r.check(why, false);
    r
}

/// a. The broker is cut for `outage_secs` while clients keep posting.
async fn outage(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let run = ctx.run_id("a");
    let sources = ctx.sources("a", ctx.args.clients);
    let proxy = Proxy::start(ctx.broker).await?;
    let mut gw = ctx.gateway(&run, &proxy.url(&ctx.amqp), true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    let ledger = Arc::new(Ledger::default());
    let load = Load {
        run: run.clone(),
        sources,
        events: None,
        pace: Some(Duration::from_millis(40)),
        retry_after: Duration::from_millis(200),
    };
    let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
    let clients = start_clients(
        &format!("http://{}", gw.public),
        &load,
        &ledger,
        &stop_new,
        &give_up,
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.cut();
    let acks_at_cut = ledger.acks.load(Ordering::Relaxed);
    let noticed = wait_broker(&gw, false).await.is_ok();
    tokio::time::sleep(Duration::from_secs(ctx.args.outage_secs)).await;
    let ready = gw.readyz().await;
    let accepted_while_cut = ledger.acks.load(Ordering::Relaxed) - acks_at_cut;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(5)).await;
    finish_clients(clients, &stop_new, &give_up, Duration::from_secs(10)).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let mut row = analyse(
        &format!(
            "a. outage {}s, {} clients",
            ctx.args.outage_secs, ctx.args.clients
        ),
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        "every request answered 2xx",
        ledger.refusals.lock().unwrap().is_empty(),
    );
    row.check("readyz said broker.connected=false during the cut", noticed);
    row.check(
        format!(
            "{accepted_while_cut} events accepted while cut; readyz then: outbox_pending={} last_error={}",
            ready["outbox_pending"], ready["broker"]["last_error"]
        ),
        accepted_while_cut > 0,
    );
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(vec![row])
}

/// b. `kill -9` under load at several points, restart on the same store.
async fn crash(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let delays: Vec<u64> = ctx
        .args
        .kill_after_ms
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--kill-after-ms")?;
    for ms in delays {
        rows.push(crash_round(ctx, Duration::from_millis(ms)).await?);
    }
    rows.push(crash_mid_publish(ctx).await?);
    Ok(rows)
}

/// The event log's own crash windows (issue #10): kill -9 while segments roll over every few
/// records, while retention drops published segments, and a corrupt last record at restart.
async fn log_scenarios(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // 64 KiB segments: a roll-over every ~8 events of 7 KB, so a kill lands near one.
    *ctx.store_extra.lock().unwrap() = "segment_bytes = 65536".into();
    for ms in [300, 1100] {
        let mut row = crash_round(ctx, Duration::from_millis(ms)).await?;
        row.scenario = format!("l. roll-over: {}", row.scenario);
        rows.push(row);
    }
    // Published segments dropped as soon as they are published (retention runs every second).
    *ctx.store_extra.lock().unwrap() = "segment_bytes = 65536\nretain_secs = 0".into();
    for ms in [600, 1500] {
        let mut row = crash_round(ctx, Duration::from_millis(ms)).await?;
        row.scenario = format!("l. retention: {}", row.scenario);
        rows.push(row);
    }
    *ctx.store_extra.lock().unwrap() = "segment_bytes = 65536".into();
    rows.push(corrupt_tail(ctx).await?);
    ctx.store_extra.lock().unwrap().clear();
    Ok(rows)
}

/// Everything delivered, then kill -9, the last record's bytes flipped and half a frame
/// appended (a torn write): the gateway starts, cuts the tail and goes on; a new batch arrives.
async fn corrupt_tail(ctx: &Ctx) -> anyhow::Result<Row> {
    let run = ctx.run_id("lc");
    let sources = ctx.sources("c", ctx.args.clients);
    let mut gw = ctx.gateway(&run, &ctx.amqp, true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    let ledger = Arc::new(Ledger::default());
    let mut load = Load {
        run: format!("{run}-a"),
        sources: sources.clone(),
        events: Some(50),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    send_all(&gw, &load, &ledger).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    gw.kill9();
    let log_dir = ctx.work.join(&run).join("store").join("log");
    let mut segs: Vec<_> = std::fs::read_dir(&log_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    segs.sort();
    let last = segs.last().context("no segment written")?;
    let mut bytes = std::fs::read(last)?;
    let n = bytes.len();
    bytes[n - 10] ^= 0x5a;
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(last, &bytes)?;
    gw.start().await?;
    load.run = format!("{run}-b");
    send_all(&gw, &load, &ledger).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await;
    let mut row = analyse(
        "l. corrupt last record + torn frame, restart",
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        "the gateway restarted over the corrupt tail",
        gw.readyz().await["status"] == "ready",
    );
    row.check("every event acked", row.acked == 2 * 50 * sources.len());
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

async fn crash_round(ctx: &Ctx, kill_after: Duration) -> anyhow::Result<Row> {
    let run = ctx.run_id("b");
    let clients = ctx.args.clients * 2;
    let sources = ctx.sources("b", clients);
    let mut gw = ctx.gateway(&run, &ctx.amqp, true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    let ledger = Arc::new(Ledger::default());
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(ctx.args.crash_events),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
    let tasks = start_clients(
        &format!("http://{}", gw.public),
        &load,
        &ledger,
        &stop_new,
        &give_up,
    );
    tokio::time::sleep(kill_after).await;
    let acked_at_kill = ledger.acks.load(Ordering::Relaxed);
    let delivered_at_kill = sink.count();
    gw.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.start().await?;
    // The clients re-send whatever got no 2xx, as providers do.
    let total = clients * ctx.args.crash_events;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.acks.load(Ordering::Relaxed) < total as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish_clients(tasks, &stop_new, &give_up, Duration::from_secs(5)).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await;
    let mut row = analyse(
        &format!(
            "b. kill -9 at {} ms, {clients} clients",
            kill_after.as_millis()
        ),
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        format!(
            "killed under load: {acked_at_kill} of {total} acked, {delivered_at_kill} delivered at the kill"
        ),
        (acked_at_kill as usize) < total,
    );
    row.check("every event eventually acked", row.acked == total);
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

/// A backlog piles up while the broker is cut; the gateway is killed while draining it.
async fn crash_mid_publish(ctx: &Ctx) -> anyhow::Result<Row> {
    let run = ctx.run_id("bp");
    let clients = ctx.args.clients * 2;
    let sources = ctx.sources("p", clients);
    let proxy = Proxy::start(ctx.broker).await?;
    let mut gw = ctx.gateway(&run, &proxy.url(&ctx.amqp), true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    proxy.cut();
    wait_broker(&gw, false).await?;
    let ledger = Arc::new(Ledger::default());
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(ctx.args.crash_events),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
    let tasks = start_clients(
        &format!("http://{}", gw.public),
        &load,
        &ledger,
        &stop_new,
        &give_up,
    );
    // Let every client finish its events: the whole load is then in the outbox.
    for t in tasks {
        let _ = t.await;
    }
    let backlog = gw.readyz().await["outbox_pending"].as_u64().unwrap_or(0) as usize;
    proxy.restore();
    let target = backlog / 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.count() < target.max(1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gw.kill9();
    let delivered_at_kill = sink.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.start().await?;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(2),
    )
    .await;
    let mut row = analyse(
        &format!("b. kill -9 mid-publish ({backlog} queued)"),
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        format!("killed mid-drain: {delivered_at_kill} of {backlog} delivered at the kill"),
        delivered_at_kill < backlog,
    );
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

/// c. Dedup survives restarts for the whole window (and not longer); the outbox resumes.
async fn restart(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    Ok(vec![
        restart_dedup(ctx).await?,
        restart_window(ctx).await?,
        restart_outbox(ctx, false).await?,
        restart_outbox(ctx, true).await?,
    ])
}

/// Sends `events` per source of `load.run` and waits for every 2xx.
async fn send_all(gw: &Gateway, load: &Load, ledger: &Arc<Ledger>) {
    let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
    let tasks = start_clients(
        &format!("http://{}", gw.public),
        load,
        ledger,
        &stop_new,
        &give_up,
    );
    for t in tasks {
        let _ = t.await;
    }
}

async fn restart_dedup(ctx: &Ctx) -> anyhow::Result<Row> {
    let run = ctx.run_id("c");
    let sources = ctx.sources("c", ctx.args.clients);
    let mut gw = ctx.gateway(&run, &ctx.amqp, true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(100),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let ledger = Arc::new(Ledger::default());
    send_all(&gw, &load, &ledger).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await;
    let mut resent = Vec::new();
    for how in ["SIGTERM", "kill -9"] {
        if how == "SIGTERM" {
            gw.term().await;
        } else {
            gw.kill9();
        }
        gw.start().await?;
        let again = Arc::new(Ledger::default());
        send_all(&gw, &load, &again).await;
        resent.push((
            how,
            again.acks.load(Ordering::Relaxed),
            again.refusals.lock().unwrap().len(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut row = analyse(
        "c. dedup across restarts",
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    for (how, acks, refusals) in resent {
        row.check(
            format!(
                "all {} re-sent after a {how} restart: {acks} 2xx, none enqueued again",
                row.sent
            ),
            acks as usize == row.sent && refusals == 0,
        );
    }
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

/// A short window: a re-send within it (after a restart) is a duplicate, after it a new event.
async fn restart_window(ctx: &Ctx) -> anyhow::Result<Row> {
    let window = 6;
    let run = ctx.run_id("w");
    let sources = ctx.sources("w", 4);
    let mut gw = ctx.gateway(&run, &ctx.amqp, true, &sources, window)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(10),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let ledger = Arc::new(Ledger::default());
    let first_sent = Instant::now();
    send_all(&gw, &load, &ledger).await;
    let n = ledger.acks.load(Ordering::Relaxed) as usize;
    gw.term().await;
    gw.start().await?;
    send_all(&gw, &load, &Arc::new(Ledger::default())).await;
    let within = first_sent.elapsed();
    // Past the window (whole seconds, so one more): the ids are new again.
    tokio::time::sleep(Duration::from_secs(window + 2).saturating_sub(first_sent.elapsed())).await;
    gw.term().await;
    gw.start().await?;
    send_all(&gw, &load, &Arc::new(Ledger::default())).await;
    let complete = wait_count(&sink, 2 * n, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut row = analyse(
        &format!("c. dedup window {window}s, restarts"),
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.expect_reaccepted = n;
    row.check(
        format!(
            "re-sent {:.1}s later: duplicate; re-sent after {window}s: accepted again",
            within.as_secs_f64()
        ),
        complete && row.duplicates == 0,
    );
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

/// Events accepted while the broker is cut, then a restart: the outbox drains afterwards.
async fn restart_outbox(ctx: &Ctx, kill: bool) -> anyhow::Result<Row> {
    let run = ctx.run_id("o");
    let sources = ctx.sources("o", ctx.args.clients);
    let proxy = Proxy::start(ctx.broker).await?;
    let mut gw = ctx.gateway(&run, &proxy.url(&ctx.amqp), true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    proxy.cut();
    wait_broker(&gw, false).await?;
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(150),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let ledger = Arc::new(Ledger::default());
    send_all(&gw, &load, &ledger).await;
    let pending = gw.readyz().await["outbox_pending"].as_u64().unwrap_or(0);
    if kill {
        gw.kill9();
    } else {
        gw.term().await;
    }
    proxy.restore();
    gw.start().await?;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let how = if kill { "kill -9" } else { "SIGTERM" };
    let mut row = analyse(
        &format!("c. outbox resumes after {how}"),
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        format!("{pending} events waited in the outbox over the restart"),
        pending as usize == row.acked,
    );
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

/// d. The broker refuses: a full queue with reject-publish (nacks), then a deleted exchange.
async fn refuse(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    Ok(vec![
        refuse_nack(ctx).await?,
        refuse_slow_consumer(ctx).await?,
        refuse_exchange(ctx).await?,
    ])
}

async fn refuse_nack(ctx: &Ctx) -> anyhow::Result<Row> {
    let run = ctx.run_id("d");
    let limited = format!("{run}-limited");
    let broker = Broker::connect(&ctx.amqp).await?;
    broker.declare_exchange(&run).await?;
    broker
        .limited_queue(&limited, &run, ctx.args.max_length)
        .await?;
    let sources = ctx.sources("d", ctx.args.clients);
    // No [[amqp.queues]]: the limited queue has arguments the config cannot express.
    let mut gw = ctx.gateway(&run, &ctx.amqp, false, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let nack = r#"hookgate_publish_failures_total{reason="nack"}"#;
    let nacks_before = gw.metric(nack).await;
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(50),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let ledger = Arc::new(Ledger::default());
    send_all(&gw, &load, &ledger).await;
    // While it refuses, readyz and the metrics must say why.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut why, mut nacks) = (String::new(), 0.0);
    while Instant::now() < deadline {
        why = gw.readyz().await["broker"]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        nacks = gw.metric(nack).await - nacks_before;
        if why.contains("nack") && nacks > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let depth = broker.depth(&limited).await?;
    // The consumer comes back and drains while the relay retries.
    let sink = Sink::start(&ctx.amqp, &limited).await?;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(120),
        Duration::from_secs(1),
    )
    .await;
    let cleared = gw.readyz().await["broker"]["last_error"].is_null();
    let mut row = analyse(
        &format!("d. reject-publish, max-length {}", ctx.args.max_length),
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        format!("readyz broker.last_error while refused: {why:?}"),
        why.contains("nack"),
    );
    row.check(format!("{nack} rose by {nacks}"), nacks > 0.0);
    row.check(
        format!("queue held {depth} (its max-length) while refusing"),
        depth == ctx.args.max_length,
    );
    row.check("readyz last_error cleared after the drain", cleared);
    gw.term().await;
    drop(sink);
    let _ = broker.delete_queue(&limited).await;
    let _ = broker.delete_exchange(&run).await;
    Ok(row)
}

/// The queue sits at its limit while a slow consumer drains it and clients keep posting: the
/// broker acks and nacks in turn, the case where a pipelining relay could reorder.
async fn refuse_slow_consumer(ctx: &Ctx) -> anyhow::Result<Row> {
    let run = ctx.run_id("ds");
    let limited = format!("{run}-limited");
    let broker = Broker::connect(&ctx.amqp).await?;
    broker.declare_exchange(&run).await?;
    broker
        .limited_queue(&limited, &run, ctx.args.max_length)
        .await?;
    let sources = ctx.sources("s", ctx.args.clients);
    let mut gw = ctx.gateway(&run, &ctx.amqp, false, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let nack = r#"hookgate_publish_failures_total{reason="nack"}"#;
    let nacks_before = gw.metric(nack).await;
    let sink = Sink::start_paced(&ctx.amqp, &limited, 10, Some(Duration::from_millis(1))).await?;
    let load = Load {
        run: run.clone(),
        sources,
        events: Some(250),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    let ledger = Arc::new(Ledger::default());
    send_all(&gw, &load, &ledger).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(180),
        Duration::from_secs(1),
    )
    .await;
    let nacks = gw.metric(nack).await - nacks_before;
    let mut row = analyse(
        "d. reject-publish, slow consumer",
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(format!("{nack} rose by {nacks}"), nacks > 0.0);
    gw.term().await;
    drop(sink);
    let _ = broker.delete_queue(&limited).await;
    let _ = broker.delete_exchange(&run).await;
    Ok(row)
}

async fn refuse_exchange(ctx: &Ctx) -> anyhow::Result<Row> {
    let run = ctx.run_id("x");
    let sources = ctx.sources("x", ctx.args.clients);
    let mut gw = ctx.gateway(&run, &ctx.amqp, true, &sources, 86_400)?;
    gw.start().await?;
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    let ledger = Arc::new(Ledger::default());
    let mut load = Load {
        run: format!("{run}-1"),
        sources,
        events: Some(25),
        pace: None,
        retry_after: Duration::from_millis(50),
    };
    send_all(&gw, &load, &ledger).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(30),
        Duration::from_millis(200),
    )
    .await;
    let conn = r#"hookgate_publish_failures_total{reason="connection"}"#;
    let before = gw.metric(conn).await;
    let broker = Broker::connect(&ctx.amqp).await?;
    broker.delete_exchange(&run).await?;
    load.run = format!("{run}-2");
    send_all(&gw, &load, &ledger).await;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let failures = gw.metric(conn).await - before;
    let mut row = analyse(
        "d. exchange deleted at runtime",
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        format!("{conn} rose by {failures}; exchange and binding redeclared on reconnect"),
        failures > 0.0,
    );
    gw.term().await;
    cleanup(ctx, &run).await;
    Ok(row)
}

/// e. The store's disk fills up (a small tmpfs), then space returns; the broker is cut all
/// along and the gateway is killed at the end, so every acknowledged event must come from disk.
async fn disk(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let run = ctx.run_id("e");
    let dir = ctx.work.join(&run);
    let mnt = dir.join("disk");
    std::fs::create_dir_all(&mnt)?;
    let Some(_mount) = Tmpfs::mount(&mnt, "64m") else {
        let mut r = analyse("e. disk full (SKIPPED)", &Ledger::default(), &[]);
        r.check("mounting a tmpfs needs root; not run", true);
        return Ok(vec![r]);
    };
    let sources = ctx.sources("e", 4);
    let proxy = Proxy::start(ctx.broker).await?;
    proxy.cut();
    let mut gw = ctx.gateway_in(
        &dir,
        &mnt.join("store"),
        &run,
        &proxy.url(&ctx.amqp),
        true,
        &sources,
        86_400,
    )?;
    gw.start().await?;
    let ledger = Arc::new(Ledger::default());
    let load = Load {
        run: run.clone(),
        sources,
        events: None,
        pace: Some(Duration::from_millis(20)),
        retry_after: Duration::from_millis(100),
    };
    let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
    let tasks = start_clients(
        &format!("http://{}", gw.public),
        &load,
        &ledger,
        &stop_new,
        &give_up,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Fill the disk.
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    let refused_before = ledger.refused("503");
    let acks_at_full = ledger.acks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ready_full = gw.readyz().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused_full = ledger.refused("503") - refused_before;
    let acks_full = ledger.acks.load(Ordering::Relaxed) - acks_at_full;
    std::fs::remove_file(&filler)?;
    let acks_at_space = ledger.acks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let acks_after = ledger.acks.load(Ordering::Relaxed) - acks_at_space;
    let ready_after = gw.readyz().await;
    finish_clients(tasks, &stop_new, &give_up, Duration::from_secs(20)).await;

    // Only what is on disk survives this.
    gw.kill9();
    proxy.restore();
    gw.start().await?;
    // The sink queue is declared by the relay's first connection, which is this one.
    wait_broker(&gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{run}-sink")).await?;
    wait_delivered(
        &ledger,
        &sink,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let mut row = analyse(
        "e. store disk full, then space back",
        &ledger,
        &sink.seen.lock().unwrap(),
    );
    row.check(
        format!("filled the disk with {} MiB", filled >> 20),
        filled > 0,
    );
    row.check(
        format!(
            "while full: {refused_full} replies 503, {acks_full} 2xx; readyz store={}",
            ready_full["store"]
        ),
        refused_full > 0,
    );
    row.check(
        format!(
            "space back: {acks_after} 2xx in 8 s; readyz store={}",
            ready_after["store"]
        ),
        acks_after > 0,
    );
    gw.term().await;
    drop(sink);
    cleanup(ctx, &run).await;
    Ok(vec![row])
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    let _ = f.sync_all();
    n
}

/// A tmpfs mounted for the scenario, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Waits until `/readyz` reports the broker `connected` (or not).
async fn wait_broker(gw: &Gateway, connected: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if gw.readyz().await["broker"]["connected"] == connected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("readyz never said broker.connected={connected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a scenario's exchange and sink queue.
async fn cleanup(ctx: &Ctx, run: &str) {
    if let Ok(b) = Broker::connect(&ctx.amqp).await {
        let _ = b.delete_queue(&format!("{run}-sink")).await;
        let _ = b.delete_exchange(run).await;
    }
}

/// Direct broker operations of the driver (topology the gateway's config cannot express).
struct Broker {
    conn: Connection,
}

impl Broker {
    async fn connect(url: &str) -> anyhow::Result<Broker> {
        Ok(Broker {
            conn: Connection::connect(url, ConnectionProperties::default()).await?,
        })
    }

    async fn declare_exchange(&self, name: &str) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// A queue that nacks publishes beyond `max` messages, bound with `#`.
    async fn limited_queue(&self, name: &str, exchange: &str, max: u32) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongUInt(max));
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
        ch.queue_bind(
            name.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        let ch = self.conn.create_channel().await?;
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    async fn delete_exchange(&self, name: &str) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        ch.exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await?;
        Ok(())
    }

    async fn delete_queue(&self, name: &str) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        ch.queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
        Ok(())
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
