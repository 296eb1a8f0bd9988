//! `crash`: `kill -9` under load, and in the middle of draining a backlog.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::ctx::{cleanup, wait_broker, Ctx};
use crate::load::{finish_clients, start_clients, wait_delivered, Ledger, Load, Sink};
use crate::proxy::Proxy;
use crate::report::{analyse, Row};

/// b. `kill -9` under load at several points, restart on the same store.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let delays: Vec<u64> = ctx
        .args
        .kill_after_ms
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--kill-after-ms")?;
    for ms in delays {
        rows.push(round(ctx, Duration::from_millis(ms)).await?);
    }
    rows.push(crash_mid_publish(ctx).await?);
    Ok(rows)
}

pub async fn round(ctx: &Ctx, kill_after: Duration) -> anyhow::Result<Row> {
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
