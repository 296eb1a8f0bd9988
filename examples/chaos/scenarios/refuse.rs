//! `refuse`: the broker refuses (a full queue with reject-publish, a deleted exchange).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::ctx::{cleanup, send_all, wait_broker, Ctx};
use crate::load::{wait_delivered, Ledger, Load, Sink};
use crate::report::{analyse, Row};

/// d. The broker refuses: a full queue with reject-publish (nacks), then a deleted exchange.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
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
    // A publish to the deleted exchange closes the channel (404): counted as `channel`.
    let conn = r#"hookgate_publish_failures_total{reason="channel"}"#;
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
