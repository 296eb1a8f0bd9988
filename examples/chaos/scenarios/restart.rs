//! `restart`: dedup across SIGTERM / kill -9 restarts and window expiry; the outbox resumes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctx::{cleanup, send_all, wait_broker, Ctx};
use crate::load::{wait_count, wait_delivered, Ledger, Load, Sink};
use crate::proxy::Proxy;
use crate::report::{analyse, Row};

/// c. Dedup survives restarts for the whole window (and not longer); the outbox resumes.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    Ok(vec![
        restart_dedup(ctx).await?,
        restart_window(ctx).await?,
        restart_outbox(ctx, false).await?,
        restart_outbox(ctx, true).await?,
    ])
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
    // The first round was stopped (SIGTERM) right after its last 2xx, most of it not yet
    // published: it must arrive now, not only as the re-accepted copies after the window
    // (a stop that saved the relay's cursor past a batch it never sent looked like that).
    let first_round = wait_count(&sink, n, Duration::from_secs(5)).await;
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
        "every first-round event delivered before the window ends",
        first_round,
    );
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
