//! Baselines for `scripts/bench.sh`: what hookgate is compared with, in the same run.
//!
//! - `--mode bare`: an actix-web server that reads the body and answers 200, nothing else.
//! - `--mode hmac`: the same, but it checks `X-Hub-Signature-256` over the body (HMAC-SHA256,
//!   ring's, as hookgate's providers use, constant-time compare) and answers 200 or 401.
//! - `--mode publish`: the naive durable handler: verify, publish to RabbitMQ (persistent,
//!   publisher confirms) on one shared channel, await the confirm, answer 202.
//! - `--mode raw-publish`: no HTTP at all: publishes `--count` bodies of `--body-bytes` with
//!   `--window` unconfirmed in flight and prints the time from the first publish to the last
//!   confirm (a `RESULT` line).
//! - `--mode sync-probe`: no HTTP, no broker: `--count` writes of `--body-bytes` appended to
//!   `--path`, each followed by `fdatasync`, and the latency of each (a `RESULT` line with
//!   p50/p99/max). What the disk gives one durable write, next to hookgate's p99: on a shared
//!   host it moves from minute to minute (docs/benchmarks.md, session 19).
//!
//! Server modes run `--workers` actix workers (default: one per CPU, like hookgate) until
//! killed, on a loopback `--listen` address. Publishing modes go to the default exchange with
//! the queue's name as routing key; the queue is declared durable.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Bare,
    Hmac,
    Publish,
    RawPublish,
    SyncProbe,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Listen address of the server modes (loopback only).
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// GitHub webhook secret (hmac, publish).
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// HTTP worker threads; 0 = one per CPU.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Queue published to (publish, raw-publish); declared durable.
    #[arg(long, default_value = "bench-baseline")]
    queue: String,
    /// raw-publish: publish through this topic exchange (declared, queue bound with `#`,
    /// mandatory flag: the same route as hookgate's relay) instead of the default exchange.
    #[arg(long)]
    exchange: Option<String>,
    /// raw-publish: messages to publish; sync-probe: synced writes.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// sync-probe: the file written (created, removed at the end).
    #[arg(long, default_value = "sync-probe.tmp")]
    path: std::path::PathBuf,
    /// raw-publish: body size; sync-probe: bytes per write.
    #[arg(long, default_value_t = 7_168)]
    body_bytes: usize,
    /// raw-publish: unconfirmed publishes in flight (hookgate's `amqp.max_in_flight`).
    #[arg(long, default_value_t = 512)]
    window: usize,
}

struct State {
    mode: Mode,
    secret: Vec<u8>,
    channel: Option<Channel>,
    queue: String,
}

fn verified(secret: &[u8], req: &HttpRequest, body: &[u8]) -> bool {
    let Some(sig) = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &sig).is_ok()
}

fn props() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

async fn handle(req: HttpRequest, body: Bytes, st: web::Data<State>) -> HttpResponse {
    if st.mode == Mode::Bare {
        return HttpResponse::Ok().finish();
    }
    if !verified(&st.secret, &req, &body) {
        return HttpResponse::Unauthorized().finish();
    }
    let Some(channel) = &st.channel else {
        return HttpResponse::Ok().finish();
    };
    let confirm = channel
        .basic_publish(
            "".into(),
            st.queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            props(),
        )
        .await;
    match confirm {
        Ok(c) => match c.await {
            Ok(Confirmation::Ack(_)) => HttpResponse::Accepted().finish(),
            _ => HttpResponse::ServiceUnavailable().finish(),
        },
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

async fn channel(url: &str, queue: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((conn, channel))
}

async fn raw_publish(args: &Args) -> anyhow::Result<()> {
    let (conn, channel) = channel(&args.amqp_url, &args.queue).await?;
    let exchange = args.exchange.clone().unwrap_or_default();
    if !exchange.is_empty() {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                args.queue.as_str().into(),
                exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let routing_key = if exchange.is_empty() {
        args.queue.clone()
    } else {
        "gh.push".to_string()
    };
    let filler = "x".repeat(args.body_bytes.saturating_sub(120));
    let bodies: Vec<Vec<u8>> = (0..args.count)
        .map(|i| {
            format!(r#"{{"ref":"refs/heads/main","after":"{i:040}","pad":"{filler}"}}"#)
                .into_bytes()
        })
        .collect();
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(args.window);
    let (mut acked, mut refused) = (0usize, 0usize);
    let mut settle = |c: Confirmation| match c {
        Confirmation::Ack(_) => acked += 1,
        _ => refused += 1,
    };
    for (i, body) in bodies.iter().enumerate() {
        if in_flight.len() >= args.window {
            let c = in_flight.pop_front().expect("non-empty");
            settle(c.await?);
        }
        // The properties hookgate's relay sets (docs/consuming.md), so the broker does the same work.
        let mut headers = FieldTable::default();
        headers.insert("source".into(), AMQPValue::LongString("gh".into()));
        headers.insert("provider".into(), AMQPValue::LongString("github".into()));
        let props = props()
            .with_message_id(format!("raw-{i}").into())
            .with_type("com.github.push".into())
            .with_timestamp(i as u64)
            .with_app_id("baseline".into())
            .with_headers(headers);
        let c = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: !exchange.is_empty(),
                    ..Default::default()
                },
                body,
                props,
            )
            .await?;
        in_flight.push_back(c);
    }
    while let Some(c) = in_flight.pop_front() {
        settle(c.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "RESULT label=raw-publish sent={} acked={acked} refused={refused} secs={secs:.3} eps={:.0} window={}",
        bodies.len(),
        acked as f64 / secs,
        args.window
    );
    conn.close(200, "done".into()).await?;
    Ok(())
}

fn sync_probe(args: &Args) -> anyhow::Result<()> {
    use std::io::Write;
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let mut f = std::fs::File::create(&args.path)?;
    let block = vec![b'x'; args.body_bytes];
    let mut ms: Vec<f64> = Vec::with_capacity(args.count);
    let written = (0..args.count).try_for_each(|_| {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::io::Result::Ok(())
    });
    let _ = std::fs::remove_file(&args.path);
    written?;
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    println!(
        "RESULT label=sync-probe count={} bytes={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        ms.len(),
        args.body_bytes,
        at(0.5),
        at(0.99),
        ms[ms.len() - 1]
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "baseline listens on loopback only"
    );
    if args.mode == Mode::SyncProbe {
        return sync_probe(&args);
    }
    if args.mode == Mode::RawPublish {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(raw_publish(&args));
    }
    actix_web::rt::System::new().block_on(async move {
        // The connection's IO runs on this (the system's) runtime; workers only enqueue.
        let (conn, channel) = if args.mode == Mode::Publish {
            let (c, ch) = channel(&args.amqp_url, &args.queue).await?;
            (Some(c), Some(ch))
        } else {
            (None, None)
        };
        let state = web::Data::new(State {
            mode: args.mode,
            secret: args.secret.clone().into_bytes(),
            channel,
            queue: args.queue.clone(),
        });
        let workers = if args.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            args.workers
        };
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::post().to(handle))
        })
        .workers(workers)
        .bind(args.listen)?
        .run()
        .await?;
        drop(conn);
        Ok(())
    })
}
