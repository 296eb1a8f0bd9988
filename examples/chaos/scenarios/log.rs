//! `log`: the event log's crash windows (segment roll-over, retention, a corrupt tail).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::ctx::{cleanup, send_all, wait_broker, Ctx};
use crate::load::{wait_delivered, Ledger, Load, Sink};
use crate::report::{analyse, Row};
use crate::scenarios::crash;

/// The event log's own crash windows (issue #10): kill -9 while segments roll over every few
/// records, while retention drops published segments, and a corrupt last record at restart.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // 64 KiB segments: a roll-over every ~8 events of 7 KB, so a kill lands near one.
    *ctx.store_extra.lock().unwrap() = "segment_bytes = 65536".into();
    for ms in [300, 1100] {
        let mut row = crash::round(ctx, Duration::from_millis(ms)).await?;
        row.scenario = format!("l. roll-over: {}", row.scenario);
        rows.push(row);
    }
    // Published segments dropped as soon as they are published (retention runs every second).
    *ctx.store_extra.lock().unwrap() = "segment_bytes = 65536\nretain_secs = 0".into();
    for ms in [600, 1500] {
        let mut row = crash::round(ctx, Duration::from_millis(ms)).await?;
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
