//! `outage`: the broker is cut while clients keep posting.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ctx::{cleanup, wait_broker, Ctx};
use crate::load::{finish_clients, start_clients, wait_delivered, Ledger, Load, Sink};
use crate::proxy::Proxy;
use crate::report::{analyse, Row};

/// a. The broker is cut for `outage_secs` while clients keep posting.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
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
