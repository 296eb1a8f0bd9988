//! The relay: drains the outbox to RabbitMQ, oldest first, with publisher confirms.
//!
//! One task, one connection, one confirm-mode channel (a single channel keeps the broker's
//! ordering). A window of publishes is in flight at once; an entry is deleted only after
//! its `basic.ack`. A nack or a returned (unroutable, `mandatory`) message leaves the entry
//! in the outbox and shrinks the window to one, so retries go out in order; a lost
//! connection drops the channel and reconnects with capped exponential backoff.
//!
//! The window stays at one until the outbox has been drained: a broker that refuses now
//! (a queue at its max-length with reject-publish) may take the next message of a window
//! after nacking this one, which would reorder; publishing one at a time cannot. Only the
//! window in which the refusals begin can still be overtaken that way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;

use crate::config::{AmqpConfig, QueueKind};
use crate::metrics::{self, ReasonLabel, SourceLabel};
use crate::store::{OutboxEntry, SharedStore};

/// What `/readyz` reports about the broker.
#[derive(Default)]
pub struct BrokerStatus {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl BrokerStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::get().broker_connected.set(up as i64);
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = e;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("store: {0}")]
    Store(#[from] sled::Error),
    #[error("connect timed out")]
    Timeout,
    #[error("connection to the broker closed")]
    Closed,
}

/// Runs until `cancel`. Never gives up: the outbox is durable, so waiting is always safe.
pub async fn run(
    store: SharedStore,
    config: AmqpConfig,
    status: Arc<BrokerStatus>,
    cancel: CancellationToken,
) {
    let max_backoff = Duration::from_secs(config.reconnect_max_secs.max(1));
    let mut backoff = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let attempt = tokio::select! {
            r = connect(&config) => r,
            _ = cancel.cancelled() => break,
        };
        match attempt {
            Ok((conn, channel)) => {
                tracing::info!(exchange = %config.exchange, "broker connected");
                status.set_connected(true);
                status.set_error(None);
                backoff = Duration::from_millis(100);
                let result = drain(&store, &conn, &channel, &config, &status, &cancel).await;
                status.set_connected(false);
                match result {
                    Ok(()) => {
                        let _ = conn.close(200, "hookgate shutting down".into()).await;
                        break;
                    }
                    Err(e) => {
                        // A store error (the outbox could not be read or trimmed) is not the
                        // broker's fault: say which it was.
                        let (reason, what) = match e {
                            RelayError::Store(_) => ("store", "outbox read or delete failed"),
                            _ => ("connection", "broker connection lost"),
                        };
                        metrics::get()
                            .publish_failures
                            .get_or_create(&ReasonLabel { reason })
                            .inc();
                        tracing::warn!(error = %e, pending = store.pending(), "{what}; events stay in the outbox");
                        status.set_error(Some(e.to_string()));
                        let _ = conn.close(320, "relay reconnecting".into()).await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, pending = store.pending(), "broker unreachable");
                status.set_error(Some(e.to_string()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = cancel.cancelled() => break,
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Connects, enables confirms and declares the exchange and the configured queues.
async fn connect(config: &AmqpConfig) -> Result<(Connection, Channel), RelayError> {
    let props = ConnectionProperties::default().with_connection_name("hookgate".into());
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&config.url, props),
    )
    .await
    .map_err(|_| RelayError::Timeout)??;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    for q in &config.queues {
        let mut args = FieldTable::default();
        if q.kind == QueueKind::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        channel
            .queue_declare(
                q.name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        for binding in &q.bindings {
            channel
                .queue_bind(
                    q.name.as_str().into(),
                    config.exchange.as_str().into(),
                    binding.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok((conn, channel))
}

/// Publishes until cancelled (`Ok`) or the channel fails (`Err`).
async fn drain(
    store: &SharedStore,
    conn: &Connection,
    channel: &Channel,
    config: &AmqpConfig,
    status: &BrokerStatus,
    cancel: &CancellationToken,
) -> Result<(), RelayError> {
    let mut window = config.max_in_flight;
    // Set by a refusal, cleared when the outbox is empty: meanwhile publish one at a time.
    let mut refused = false;
    let mut retry_delay = Duration::from_millis(100);
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        // An idle connection can die silently from our side; notice it without a publish.
        if !conn.status().connected() || !channel.status().connected() {
            return Err(RelayError::Closed);
        }
        let batch = store.peek(window)?;
        metrics::get().outbox_pending.set(store.pending() as i64);
        if batch.is_empty() {
            refused = false;
            tokio::select! {
                _ = store.outbox_notify.notified() => {}
                // Also look periodically: the connection may have died while idle.
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = cancel.cancelled() => return Ok(()),
            }
            continue;
        }
        let mut confirms = Vec::with_capacity(batch.len());
        for (seq, entry) in &batch {
            let confirm = channel
                .basic_publish(
                    config.exchange.as_str().into(),
                    entry.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &entry.body,
                    properties(entry),
                )
                .await?;
            confirms.push((*seq, entry, confirm));
        }
        let mut done = Vec::with_capacity(confirms.len());
        let mut failure: Option<String> = None;
        for (seq, entry, confirm) in confirms {
            let outcome = match confirm.await {
                Ok(c) => c,
                Err(e) => {
                    // Keep what was confirmed before the channel died.
                    store.remove(&done)?;
                    return Err(e.into());
                }
            };
            let reason = match outcome {
                Confirmation::Ack(None) => {
                    metrics::get()
                        .published
                        .get_or_create(&SourceLabel {
                            source: entry.source.clone(),
                        })
                        .inc();
                    done.push(seq);
                    continue;
                }
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                    failure = Some(format!(
                        "message returned: {} {} (routing key {})",
                        returned.reply_code, returned.reply_text, entry.routing_key
                    ));
                    "returned"
                }
                Confirmation::Nack(None) => {
                    failure = Some(format!(
                        "broker nacked a publish (routing key {})",
                        entry.routing_key
                    ));
                    "nack"
                }
                Confirmation::NotRequested => {
                    unreachable!("confirm_select was enabled on this channel")
                }
            };
            metrics::get()
                .publish_failures
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
        store.remove(&done)?;
        metrics::get().outbox_pending.set(store.pending() as i64);
        match failure {
            None => {
                if !refused {
                    window = (window * 2).min(config.max_in_flight);
                }
                retry_delay = Duration::from_millis(100);
                status.set_error(None);
            }
            Some(why) => {
                tracing::warn!(reason = %why, pending = store.pending(), "publish not confirmed; will retry");
                status.set_error(Some(why));
                // One at a time until the broker takes messages again: retries keep their order.
                window = 1;
                refused = true;
                tokio::select! {
                    _ = tokio::time::sleep(retry_delay) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                retry_delay =
                    (retry_delay * 2).min(Duration::from_secs(config.reconnect_max_secs.max(1)));
            }
        }
    }
}

/// The AMQP properties of CONTRACT.md.
fn properties(e: &OutboxEntry) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "source".into(),
        AMQPValue::LongString(LongString::from(e.source.as_str())),
    );
    headers.insert(
        "provider".into(),
        AMQPValue::LongString(LongString::from(e.provider.as_str())),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from(providers::Envelope::CONTENT_TYPE))
        .with_message_id(ShortString::from(e.message_id.as_str()))
        .with_type(ShortString::from(e.kind.as_str()))
        .with_timestamp(e.timestamp)
        .with_app_id(ShortString::from("hookgate"))
        .with_headers(headers)
}

/// ±20 % so that many gateways do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(factor)
}
