//! The relay: reads the event log from the store's cursor and publishes to RabbitMQ with
//! publisher confirms, many in flight on one confirm-mode channel (one channel keeps the
//! broker's ordering).
//!
//! A record is finished when the broker confirms it (published) or when it has been refused
//! `amqp.max_attempts` times (dead: kept in the store's dead-letter list, counted, requeued by
//! `hookgate replay`). Refusals that count: returned as unroutable, and a channel closed by the
//! broker over the one message in flight (too large, …). A plain nack is a queue's
//! back-pressure (reject-publish at its max-length): retried in order, never made dead (unless
//! nacked 60 times in a row). The cursor (first unfinished record) is saved as records finish;
//! a crash republishes what finished after the last save (at-least-once).
//!
//! A record returned as unroutable names itself (its `basic.return`), so it is parked: kept
//! aside and sent again when its back-off is due, while the records behind it go on. The
//! contract's "never stops for one event" is meant literally: one unroutable event used to
//! hold every other one for its retries (~1.5 s), and one-at-a-time mode until the backlog
//! was empty could keep the relay at one publish per round trip for good under load. A nack,
//! or a channel closed by the broker with several in flight, switches to one publish at a
//! time from the first unfinished record, so retries keep their order and a closed channel
//! can be charged to the one record that caused it, until a window's worth of confirms in a
//! row (or an empty backlog).
//! A lost connection drops the channel and reconnects with capped exponential backoff; the
//! attempts and the one-at-a-time mode survive the reconnect. A channel the broker closed over
//! a message it will not take (406: too large) is no failing node: the relay reconnects after
//! a short pause, without that back-off. With several nodes in `amqp.url`
//! the reconnect goes to the next node that is not backing off ([`crate::nodes`]): the log is
//! read again from the saved cursor, so what the failed node had not confirmed is published
//! to the next one (at-least-once; consumers dedup on `message_id`). `amqps://` nodes connect
//! with rustls ([`crate::amqp_tls`]).
//!
//! The bookkeeping (the window, attempts, one-at-a-time mode, dead records, the cursor) is a
//! pure state machine in `window`, tested without a broker; `Drain` does the I/O it
//! decides.
//!
//! Nothing a request carries can stop the relay: AMQP short strings are built with
//! `ShortString::try_new` (an over-long value makes its record dead, never a panic).

mod returns;
mod thread;
mod window;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::tcp::{AMQPUriTcpExt, TLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::PublisherConfirm;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use lapin::{ErrorKind, ExchangeKind};
use tokio_util::sync::CancellationToken;

use crate::config::{AmqpConfig, QueueKind};
use crate::log::{Entry, Position};
use crate::metrics::{self, ReasonLabel, SourceLabel};
use crate::nodes::Nodes;
use crate::store::{DeadInfo, SharedStore};
use returns::{Confirm, Returns};
pub use thread::RelayThread;
use window::{Dead, Limits, Read, Resume, Returned, Save, Window};

/// What `/readyz` reports about the broker: what the relay is really doing.
#[derive(Default)]
pub struct BrokerStatus {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    state: Mutex<&'static str>,
    /// The node in use, or the one last tried: its index in `amqp.url` and its redacted URL.
    node: Mutex<Option<(usize, String)>>,
    /// The relay cannot read on in the event log (a damaged record): why, until it moves on.
    stuck: Mutex<Option<String>>,
    stuck_set: AtomicBool,
    nodes: std::sync::atomic::AtomicUsize,
}

impl BrokerStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// `connecting`, `publishing`, `idle`, `retrying` (one at a time after a refusal, or a
    /// returned event waiting for its next try), `backoff` (waiting to reconnect), `stopped`.
    pub fn state(&self) -> &'static str {
        self.state.lock().map(|s| *s).unwrap_or("unknown")
    }

    /// The node of the current connection, or (not connected) the node last tried, whose
    /// error `last_error` is: its index in `amqp.url` and its URL without the password.
    pub fn node(&self) -> Option<(usize, String)> {
        self.node.lock().map(|n| n.clone()).unwrap_or(None)
    }

    /// Why the relay cannot read on in the event log, if it cannot: a reason for `/readyz`
    /// to answer 503 (events are accepted and would never be published).
    pub fn stuck(&self) -> Option<String> {
        if !self.stuck_set.load(Ordering::Relaxed) {
            return None;
        }
        self.stuck.lock().map(|s| s.clone()).unwrap_or(None)
    }

    fn set_stuck(&self, why: Option<String>) {
        if why.is_none() && !self.stuck_set.load(Ordering::Relaxed) {
            return;
        }
        self.stuck_set.store(why.is_some(), Ordering::Relaxed);
        if let Ok(mut slot) = self.stuck.lock() {
            *slot = why;
        }
    }

    /// How many nodes `amqp.url` lists.
    pub fn nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }

    fn set_node(&self, i: usize, label: String) {
        if let Ok(mut slot) = self.node.lock() {
            *slot = Some((i, label));
        }
    }

    fn set_state(&self, s: &'static str) {
        if let Ok(mut slot) = self.state.lock() {
            *slot = s;
        }
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::get().broker_connected.set(up as i64);
        let node = match (up, self.node()) {
            (true, Some((i, _))) => i as i64,
            _ => -1,
        };
        metrics::get().amqp_node_index.set(node);
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
    Store(String),
    #[error("connecting and declaring timed out")]
    Timeout,
    #[error("connection to the broker closed")]
    Closed,
    /// The broker closed the channel over a message it will not take (406: too large): the
    /// connection and the node are fine.
    #[error("broker refused a message: {0}")]
    Refused(lapin::Error),
    /// The URL or the TLS files (read at every connect).
    #[error("{0}")]
    Setup(String),
}

impl From<std::io::Error> for RelayError {
    fn from(e: std::io::Error) -> Self {
        RelayError::Store(e.to_string())
    }
}

impl From<sled::Error> for RelayError {
    fn from(e: sled::Error) -> Self {
        RelayError::Store(e.to_string())
    }
}

impl From<crate::store::StoreError> for RelayError {
    fn from(e: crate::store::StoreError) -> Self {
        RelayError::Store(e.to_string())
    }
}

/// Runs until `cancel`. Never gives up: the log is durable, so waiting is always safe.
pub async fn run(
    store: SharedStore,
    config: AmqpConfig,
    status: Arc<BrokerStatus>,
    cancel: CancellationToken,
) {
    let mut nodes = Nodes::new(
        &config.url,
        Duration::from_secs(config.reconnect_max_secs.max(1)),
    );
    status.nodes.store(nodes.len(), Ordering::Relaxed);
    // Kept across reconnects: refusal attempts and one-at-a-time mode.
    let mut window = Window::new(Limits {
        max_in_flight: config.max_in_flight,
        max_attempts: config.max_attempts,
        max_delay: Duration::from_secs(config.reconnect_max_secs.max(1)),
    });
    // The node of the last connection: connecting to another one is a failover.
    let mut last_used: Option<usize> = None;
    // An outage is logged when it starts and then once every `UNREACHABLE_LOG_EVERY` with the
    // attempts since, not at every attempt (a line each 5 s for as long as a broker is down).
    let mut outage = Outage::default();
    // The last connection ended over a refused message: its error stays in `/readyz`.
    let mut refused_last = false;
    while !cancel.is_cancelled() {
        let (i, wait) = nodes.next(Instant::now());
        if !wait.is_zero() {
            status.set_state("backoff");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => break,
            }
        }
        let node = nodes.label(i);
        status.set_node(i, node.clone());
        status.set_state("connecting");
        let attempt = tokio::select! {
            r = connect(&config, nodes.url(i)) => r,
            _ = cancel.cancelled() => break,
        };
        let result = if attempt.is_ok() { "ok" } else { "error" };
        metrics::get()
            .broker_connect_attempts
            .get_or_create(&metrics::ResultLabel { result })
            .inc();
        match attempt {
            Ok((conn, channel)) => {
                nodes.connected(i);
                if last_used.is_some_and(|p| p != i) {
                    metrics::get().amqp_failovers.inc();
                }
                last_used = Some(i);
                outage = Outage::default();
                tracing::info!(exchange = %config.exchange, node = %node, node_index = i, nodes = nodes.len(), "broker connected");
                status.set_connected(true);
                if !std::mem::take(&mut refused_last) {
                    status.set_error(None);
                }
                let since = Instant::now();
                let result = Drain::new(&store, &config, &status, &mut window)
                    .run(&conn, &channel, &cancel)
                    .await;
                status.set_connected(false);
                match result {
                    Ok(()) => {
                        close(&conn, 200, "hookgate shutting down").await;
                        break;
                    }
                    Err(RelayError::Refused(e)) => {
                        // Not the node's failure: no back-off (which grew with each refusal
                        // of a short-lived connection and held every other event for up to
                        // `reconnect_max_secs` per try), a short pause. Said in `/readyz`
                        // until the next connection publishes (the connect keeps it).
                        tracing::info!(error = %e, node = %node, "the broker closed the channel over a message; reconnecting");
                        status.set_error(Some(format!("{node}: {e}")));
                        refused_last = true;
                        close(&conn, 200, "relay reopening its channel").await;
                        tokio::select! {
                            _ = tokio::time::sleep(REFUSED_PAUSE) => {}
                            _ = cancel.cancelled() => break,
                        }
                    }
                    Err(e) => {
                        // A store error is not the broker's fault: say which it was.
                        let (reason, what) = match &e {
                            RelayError::Store(why) => {
                                status.set_stuck(Some(format!("the store failed: {why}")));
                                ("store", "event log read failed")
                            }
                            _ => ("connection", "broker connection lost"),
                        };
                        metrics::get()
                            .publish_failures
                            .get_or_create(&ReasonLabel { reason })
                            .inc();
                        let backoff = nodes.failed(i, Instant::now(), Some(since.elapsed()));
                        tracing::warn!(error = %e, node = %node, node_index = i, node_backoff_ms = backoff.as_millis() as u64, pending = store.pending(), "{what}; events stay in the log");
                        status.set_error(Some(format!("{node}: {e}")));
                        close(&conn, 320, "relay reconnecting").await;
                    }
                }
            }
            Err(e) => {
                let backoff = nodes.failed(i, Instant::now(), None);
                match outage.attempt(Instant::now()) {
                    Some(attempts) => {
                        tracing::warn!(error = %e, node = %node, node_index = i, node_backoff_ms = backoff.as_millis() as u64, pending = store.pending(), attempts, "broker unreachable")
                    }
                    None => {
                        tracing::debug!(error = %e, node = %node, node_index = i, "broker unreachable")
                    }
                }
                status.set_error(Some(format!("{node}: {e}")));
            }
        }
    }
    status.set_state("stopped");
}

/// The pause before reconnecting after the broker closed the channel over a message.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// How often a broker that stays unreachable is logged again.
const UNREACHABLE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The failed connection attempts since the broker was last reached.
#[derive(Default)]
struct Outage {
    /// When a failure was last logged, and the attempts since then.
    logged: Option<(Instant, u64)>,
}

impl Outage {
    /// One more failed attempt at `now`: `Some(attempts since the last line)` when it is to
    /// be logged (the outage's first, or one `UNREACHABLE_LOG_EVERY` after the last line).
    fn attempt(&mut self, now: Instant) -> Option<u64> {
        match &mut self.logged {
            Some((at, n)) if now.duration_since(*at) < UNREACHABLE_LOG_EVERY => {
                *n += 1;
                None
            }
            Some((_, n)) => {
                let attempts = *n + 1;
                self.logged = Some((now, 0));
                Some(attempts)
            }
            None => {
                self.logged = Some((now, 0));
                Some(1)
            }
        }
    }
}

/// Closes `conn` politely, but never waits long: on a connection whose socket was reset the
/// broker's close-ok never comes, and the relay must move on to the next node (found by the
/// failover test: the relay sat in `close` after a node reset its connection).
async fn close(conn: &Connection, code: u16, why: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(code, why.into())).await;
}

/// Connects, enables confirms and declares the exchange and the configured queues.
///
/// All of it within the URL's `connection_timeout` (milliseconds; default 10 s): a node that
/// does not answer, or hangs in a declare (a quorum queue without its majority), is left for
/// the next one.
async fn connect(config: &AmqpConfig, url: &str) -> Result<(Connection, Channel), RelayError> {
    // The URL was checked at load time; its error text may quote it, password included.
    let uri: AMQPUri = url
        .parse()
        .map_err(|_| RelayError::Setup("amqp.url: not an AMQP URI".into()))?;
    let limit = uri
        .query
        .connection_timeout
        .map_or(Duration::from_secs(10), Duration::from_millis);
    tokio::time::timeout(limit, setup(config, uri))
        .await
        .map_err(|_| RelayError::Timeout)?
}

async fn setup(config: &AmqpConfig, uri: AMQPUri) -> Result<(Connection, Channel), RelayError> {
    let props = ConnectionProperties::default().with_connection_name("hookgate".into());
    let conn = open(config, uri, props).await?;
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

/// Opens the AMQP connection to `url`; an `amqps://` node with rustls configured from
/// `[amqp.tls]` (read again at every connect, so rotated files are picked up).
async fn open(
    config: &AmqpConfig,
    uri: AMQPUri,
    props: ConnectionProperties,
) -> Result<Connection, RelayError> {
    let runtime = lapin::runtime::default_runtime()?;
    if uri.scheme == AMQPScheme::AMQP {
        return Ok(Connection::connect_uri_with_runtime(uri, props, runtime).await?);
    }
    let tls = crate::amqp_tls::client_config(config.tls.as_ref()).map_err(RelayError::Setup)?;
    let connector = rustls_connector::RustlsConnector::from(tls);
    Ok(Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            // TCP first (lapin's own resolver and socket), then our rustls on top: the
            // connector lapin would build cannot pin a CA without also trusting every root.
            let host = uri.authority.host.clone();
            let mut plain = uri;
            plain.scheme = AMQPScheme::AMQP;
            let tcp = plain
                .connect_with_config_async(TLSConfig::default(), &runtime)
                .await
                .map_err(lapin::Error::from)?;
            Ok(tcp.into_rustls(&connector, &host).await?)
        },
        props,
    )
    .await?)
}

/// What the relay carries per record in flight: the entry (for the dead-letter list, the
/// metrics and the logs) and the broker's confirm.
type Carried = (Entry, Confirm);

/// One connection's worth of publishing: the I/O around the [`Window`] state machine,
/// whose decisions it follows.
struct Drain<'a> {
    store: &'a SharedStore,
    config: &'a AmqpConfig,
    status: &'a BrokerStatus,
    window: &'a mut Window<Carried>,
    /// This channel's returns, by the record they belong to.
    returns: Returns,
}

impl<'a> Drain<'a> {
    fn new(
        store: &'a SharedStore,
        config: &'a AmqpConfig,
        status: &'a BrokerStatus,
        window: &'a mut Window<Carried>,
    ) -> Self {
        window.connect(store.cursor());
        Drain {
            store,
            config,
            status,
            window,
            returns: Returns::default(),
        }
    }

    /// Publishes until cancelled (`Ok`) or the channel or the store fails (`Err`).
    async fn run(
        mut self,
        conn: &Connection,
        channel: &Channel,
        cancel: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut reader = self.store.reader(self.window.read_next())?;
        // When durable records first waited for a batch to gather (see [`LINGER`]).
        let mut waiting_since: Option<tokio::time::Instant> = None;
        // Stopping: records the linger holds back go out once first, as they would have
        // without it (found by the nginx replica test: a replica stopped within 5 ms of its
        // last accept left that event pending until its next start).
        let mut flushed_for_stop = false;
        // A read of the log failed: nothing more is read; what is in flight is settled and
        // saved first, then the error ends this connection (returned at once, those records
        // were published again at every reconnect; found by a review).
        let mut read_failed: Option<RelayError> = None;
        loop {
            let stopping = cancel.is_cancelled();
            if stopping && (flushed_for_stop || waiting_since.is_none()) {
                self.settle_for_shutdown().await?;
                self.save()?;
                return Ok(());
            }
            // An idle connection can die silently from our side; notice it without a publish.
            if !conn.status().connected() || !channel.status().connected() {
                self.save()?;
                return Err(RelayError::Closed);
            }
            let durable = self.store.durable_upto();
            // Read what may go out now and hand it to the channel in one go (`publish_batch`),
            // once a batch's worth of the window is free: refilling one slot per confirm would
            // cost a round trip to lapin's IO thread per message. A record that can never be
            // sent ends the batch; it is made dead once the batch is in flight, as it would be
            // had they gone out one by one.
            let (mut batch, mut outgoing) = (Vec::new(), Vec::new());
            // Returned records whose retry is due go first, whatever the linger says.
            let mut again = Vec::new();
            while let Some((front, (entry, _))) = self.window.due(tokio::time::Instant::now()) {
                match Outgoing::new(&self.config.exchange, &entry) {
                    Ok(out) => {
                        batch.push((front.seq, front.pos, entry));
                        outgoing.push(out);
                        again.push(front);
                        if self.window.single() {
                            break;
                        }
                    }
                    // It was published once with the same exchange: cannot happen.
                    Err(why) => {
                        let (dead, save) = self.window.unpublishable_again(front);
                        self.dead(dead, &entry, why)?;
                        self.apply(save)?;
                    }
                }
            }
            let mut unpublishable = None;
            let waiting = (durable + 1).saturating_sub(self.window.read_next());
            let gathered = stopping
                || gathered(
                    waiting,
                    self.window.single(),
                    &mut waiting_since,
                    tokio::time::Instant::now(),
                );
            flushed_for_stop = stopping;
            // Parked records keep slots: with a small window they could leave less room than
            // a batch for good (events behind them waited for their retries, and the idle
            // wait below spun on a passed linger deadline; found by a review).
            let fill =
                gathered && self.window.free() >= PUBLISH_BATCH.min(self.window.room_when_empty());
            if fill {
                waiting_since = None;
            }
            while fill
                && read_failed.is_none()
                && batch.len() < PUBLISH_BATCH
                && self.window.room_for(batch.len())
            {
                let next = match reader.next_record() {
                    Ok(next) => next,
                    // What was read before a damaged record goes out first (it was dropped
                    // with the batch, so nothing before the damage was ever published; found
                    // by a black-box review).
                    Err(e) => {
                        read_failed = Some(e.into());
                        break;
                    }
                };
                let Some((seq, pos, entry)) = next else {
                    break;
                };
                if seq > durable {
                    // Written but not yet synced: its request has no answer yet.
                    reader.seek(pos);
                    break;
                }
                if self.window.read(seq) == Read::Skip {
                    continue;
                }
                match Outgoing::new(&self.config.exchange, &entry) {
                    Ok(out) => {
                        batch.push((seq, pos, entry));
                        outgoing.push(out);
                    }
                    Err(why) => {
                        unpublishable = Some((seq, entry, why));
                        break;
                    }
                }
            }
            // A broker that blocks publishers (a memory or disk alarm) never takes the batch:
            // once stopping, it gets `SHUTDOWN_SETTLE`, then the reader goes back to the
            // batch's first record (or what is in flight before it), so the saved cursor
            // never passes what was not sent.
            let stop_waited = async {
                cancel.cancelled().await;
                tokio::time::sleep(SHUTDOWN_SETTLE).await;
            };
            let sent = match batch.first() {
                None => Vec::new(),
                Some(&(first, _, _)) => tokio::select! {
                    sent = publish_batch(channel, &batch, outgoing) => sent,
                    _ = stop_waited => {
                        let r = self.window.send_failed(first);
                        self.apply(r.save)?;
                        return Ok(());
                    }
                },
            };
            let mut again = again.into_iter();
            for ((seq, pos, entry), sent) in batch.into_iter().zip(sent) {
                match sent {
                    Ok(confirm) => {
                        let carried = (entry, Confirm::Pending(confirm));
                        match again.next() {
                            Some(front) => self.window.sent_again(front, carried),
                            None => {
                                let at = carried.0.timestamp;
                                self.window.sent(seq, pos, at, carried);
                            }
                        }
                    }
                    // The channel failed (not this record's fault): reconnect, read it again.
                    Err(e) => {
                        let r = self.window.send_failed(seq);
                        self.apply(r.save)?;
                        return Err(e.into());
                    }
                }
            }
            if let Some((seq, entry, why)) = unpublishable {
                let dead = self.window.unpublishable(seq);
                self.dead(dead, &entry, why)?;
            }
            let Some((front, (entry, confirm))) = self.window.pop() else {
                let drained = self.window.drained();
                self.apply(drained.save)?;
                if let Some(e) = read_failed.take() {
                    return Err(e);
                }
                // Caught up with the log: nothing holds the reader.
                self.status.set_stuck(None);
                if !drained.idle {
                    continue;
                }
                // An event waiting for its next try is not idleness.
                self.status.set_state(match self.window.parked() {
                    0 => "idle",
                    _ => "retrying",
                });
                // Lingering, only its deadline ends the wait, not every commit (at 2,000 req/s
                // that was a wake-up per commit). Otherwise the next commit, or a look every
                // 250 ms: the connection may have died while idle.
                // A parked record's retry ends the wait too.
                let due = self.window.next_due();
                let woken = async {
                    match waiting_since {
                        Some(since) => {
                            let until = due.map_or(since + LINGER, |d| d.min(since + LINGER));
                            tokio::time::sleep_until(until).await
                        }
                        None => {
                            let commit = self.store.committed.notified();
                            let now = tokio::time::Instant::now();
                            let look = Duration::from_millis(250);
                            let wait =
                                due.map_or(look, |d| d.saturating_duration_since(now).min(look));
                            let _ = tokio::time::timeout(wait, commit).await;
                        }
                    }
                };
                tokio::select! {
                    _ = woken => {}
                    _ = cancel.cancelled() => {}
                }
                continue;
            };
            self.status.set_state(if self.window.single() {
                "retrying"
            } else {
                "publishing"
            });
            let confirm = match self.outcome(&entry, confirm, cancel.cancelled()).await {
                Ok(done) => done,
                // Stopping: confirms that never come (a quorum queue without its majority)
                // are given `SHUTDOWN_SETTLE` below, not forever.
                Err(confirm) => {
                    self.window.unpop(front, (entry, confirm));
                    continue;
                }
            };
            let why = match confirm {
                Ok(Confirmation::Ack(None)) => {
                    count_published(&entry);
                    let c = self.window.confirmed(front);
                    if c.ahead {
                        self.store.published_ahead(front.seq);
                    }
                    self.apply(c.save)?;
                    if c.recovered {
                        self.status.set_error(None);
                    }
                    continue;
                }
                Ok(Confirmation::Ack(Some(r)) | Confirmation::Nack(Some(r))) => {
                    // Unroutable: parked for its next try while the rest goes on.
                    count_failure("returned");
                    let why = format!(
                        "returned by the broker: {} {} (routing key {})",
                        r.reply_code, r.reply_text, entry.routing_key
                    );
                    self.store.refused(front.seq, &why);
                    let spent = Confirm::Done(Box::new(Ok(Confirmation::NotRequested)));
                    let now = tokio::time::Instant::now();
                    match self.window.returned(front, (entry, spent), now) {
                        Returned::Parked { delay } => {
                            tracing::warn!(reason = %why, seq = front.seq, retry_in_ms = delay.as_millis() as u64, "publish returned; will retry");
                            self.status.set_error(Some(why));
                        }
                        Returned::Dead {
                            dead,
                            payload: (entry, _),
                            save,
                        } => {
                            self.dead(dead, &entry, why)?;
                            self.apply(save)?;
                        }
                    }
                    continue;
                }
                Ok(Confirmation::Nack(None)) => {
                    format!("nacked by the broker (routing key {})", entry.routing_key)
                }
                Ok(Confirmation::NotRequested) => "no confirm requested".into(),
                Err(e) => {
                    // The broker closed the channel over a message (406 too large, 403 a
                    // policy: soft errors); the window charges it only when it was the one
                    // message in flight. A connection the broker closed (320 at a restart, a
                    // hard error) is nobody's fault.
                    // Over the message itself (406: larger than the broker takes; 311), the
                    // connection is fine and the relay reconnects at once. Any other soft error
                    // (403 permissions, 404 an exchange gone) may hit every message: the
                    // node's back-off keeps it from churning connections.
                    let (refused, about_message) = match e.kind() {
                        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                            AMQPErrorKind::Soft(
                                AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::CONTENTTOOLARGE,
                            ) => (true, true),
                            AMQPErrorKind::Soft(_) => (true, false),
                            _ => (false, false),
                        },
                        ErrorKind::SerialisationError(_) => (true, false),
                        _ => (false, false),
                    };
                    let r = self.window.closed(front, refused);
                    if refused {
                        count_failure("channel");
                    }
                    if r.charged {
                        self.store.refused(front.seq, &e.to_string());
                    }
                    if let Some(dead) = r.dead {
                        self.dead(dead, &entry, e.to_string())?;
                    }
                    self.apply(r.save)?;
                    return Err(match about_message {
                        true => RelayError::Refused(e),
                        false => e.into(),
                    });
                }
            };
            count_failure("nack");
            self.store.refused(front.seq, &why);
            let dead = self.window.nacked(front);
            if let Some(dead) = dead {
                self.dead(dead, &entry, why.clone())?;
            }
            // A nack: settle the rest of the window: what the broker took there is skipped on
            // the re-read, the rest is sent again one at a time.
            while let Some((ahead, (entry, confirm))) = self.window.pop() {
                let outcome = match self.outcome(&entry, confirm, cancel.cancelled()).await {
                    Ok(outcome) => outcome,
                    // Stopping: not forever either (what is unsettled is sent again).
                    Err(_) => {
                        let r = self.window.settle_failed(front, dead);
                        self.apply(r.save)?;
                        return Ok(());
                    }
                };
                match outcome {
                    Ok(Confirmation::Ack(None)) => {
                        count_published(&entry);
                        self.window.confirmed_ahead(ahead);
                        self.store.published_ahead(ahead.seq);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Settled as far as it goes: one at a time from here (the refused
                        // record, or the one behind it if it is dead) on the next channel.
                        let r = self.window.settle_failed(front, dead);
                        self.apply(r.save)?;
                        return Err(e.into());
                    }
                }
            }
            match self.window.settled(front, dead) {
                Resume::Retry {
                    seq,
                    pos,
                    delay,
                    save,
                } => {
                    reader.seek(pos);
                    tracing::warn!(reason = %why, seq = seq, pending = self.store.pending(), "publish refused; will retry");
                    self.status.set_error(Some(why));
                    self.apply(save)?;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
                Resume::Next { from, save } => {
                    if let Some(pos) = from {
                        reader.seek(pos);
                    }
                    self.apply(save)?;
                }
            }
        }
    }

    /// Moves a record to the dead-letter list (before any cursor save past it).
    fn dead(&mut self, dead: Dead, e: &Entry, reason: String) -> Result<(), RelayError> {
        let Dead { seq, attempts } = dead;
        tracing::error!(source = %e.source, id = ?e.message_id, seq, attempts, reason = %reason, "event moved to the dead-letter list; the relay goes on");
        let info = DeadInfo {
            attempts,
            reason,
            dead_at: crate::now_secs(),
        };
        if let Err(err) = self.store.mark_dead(seq, e, &info) {
            // Not on the dead-letter list: the next connection (from the saved cursor, which
            // has not passed it) must send it again, not skip it as dead (found by a review).
            self.window.revive(seq);
            return Err(err.into());
        }
        metrics::get()
            .dead_letters
            .get_or_create(&SourceLabel {
                source: e.source.clone(),
            })
            .inc();
        Ok(())
    }

    /// At shutdown: takes the confirms of what is in flight, for at most [`SHUTDOWN_SETTLE`],
    /// so that a clean stop does not publish them again at the next start. The first one that
    /// is not a plain ack in time goes back on the window, and the cursor stops there.
    async fn settle_for_shutdown(&mut self) -> Result<(), RelayError> {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_SETTLE;
        while let Some((front, (entry, confirm))) = self.window.pop() {
            let stop = tokio::time::sleep_until(deadline);
            let done = match self.outcome(&entry, confirm, stop).await {
                Ok(done) => done,
                Err(confirm) => {
                    self.window.unpop(front, (entry, confirm));
                    break;
                }
            };
            match done {
                Ok(Confirmation::Ack(None)) => {
                    count_published(&entry);
                    let c = self.window.confirmed(front);
                    self.apply(c.save)?;
                }
                other => {
                    self.window
                        .unpop(front, (entry, Confirm::Done(Box::new(other))));
                    break;
                }
            }
        }
        Ok(())
    }

    /// What the broker said about `entry` (just taken off the window): its confirm, awaited
    /// if need be, with `entry`'s own return wherever lapin put it ([`returns`]). `Err` gives
    /// the confirm back when `stop` comes first.
    async fn outcome(
        &mut self,
        entry: &Entry,
        confirm: Confirm,
        stop: impl Future<Output = ()>,
    ) -> Result<lapin::Result<Confirmation>, Confirm> {
        let done = match confirm {
            Confirm::Done(done) => *done,
            Confirm::Pending(mut pending) => {
                let done = tokio::select! {
                    done = &mut pending => done,
                    () = stop => return Err(Confirm::Pending(pending)),
                };
                // After a wait: the returns of every confirm lapin has completed by now.
                let flights = self.window.payloads_mut().map(|(_, confirm)| confirm);
                self.returns.harvest(flights);
                done
            }
        };
        Ok(done.map(|c| self.returns.claim(c, entry)))
    }

    fn save(&mut self) -> Result<(), RelayError> {
        let save = self.window.save();
        self.apply(save)
    }

    /// Saves the cursor when the window says so.
    fn apply(&self, save: Option<Save>) -> Result<(), RelayError> {
        if let Some(Save {
            cursor,
            finished,
            oldest_at,
        }) = save
        {
            self.store.advance(cursor, finished, oldest_at)?;
            // Moving on: whatever held the reader is behind it.
            self.status.set_stuck(None);
            metrics::get()
                .outbox_pending
                .set(self.store.pending() as i64);
        }
        Ok(())
    }
}

fn count_published(e: &Entry) {
    metrics::get()
        .published
        .get_or_create(&SourceLabel {
            source: e.source.clone(),
        })
        .inc();
}

fn count_failure(reason: &'static str) {
    metrics::get()
        .publish_failures
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// How long a stopping relay waits for the confirms of what it has in flight.
const SHUTDOWN_SETTLE: Duration = Duration::from_secs(2);

/// The most records handed to the channel in one go, and the free room in the window that
/// starts a refill.
const PUBLISH_BATCH: usize = 64;

/// How long durable records may wait for a batch's worth to gather before they are
/// published anyway. At a moderate rate every group commit holds a record or two; publishing
/// each as it comes wakes lapin's IO thread and the broker's processes per record, and on a
/// shared machine that CPU comes out of the request path's share (issue #10: p99 at 2,000
/// req/s). A full batch goes at once; so does everything while retrying one at a time.
const LINGER: Duration = Duration::from_millis(5);

/// Whether the `waiting` durable records that are not yet read should go out now: a batch's
/// worth, anything while retrying one at a time, or whatever has waited [`LINGER`] since
/// `since` (set here when records first wait).
fn gathered(
    waiting: u64,
    single: bool,
    since: &mut Option<tokio::time::Instant>,
    now: tokio::time::Instant,
) -> bool {
    match waiting {
        0 => {
            *since = None;
            false
        }
        n if n >= PUBLISH_BATCH as u64 || single => true,
        _ => now.duration_since(*since.get_or_insert(now)) >= LINGER,
    }
}

/// A record's publish arguments, checked against AMQP's limits.
struct Outgoing {
    exchange: ShortString,
    routing_key: ShortString,
    properties: BasicProperties,
}

impl Outgoing {
    /// `Err` (why) when the record can never be published as it is: a field over 255 bytes.
    fn new(exchange: &str, e: &Entry) -> Result<Outgoing, String> {
        let short = |what: &str, v: &str| {
            ShortString::try_new(v)
                .map_err(|_| format!("{what} is {} bytes, over AMQP's 255", v.len()))
        };
        Ok(Outgoing {
            exchange: short("exchange", exchange)?,
            routing_key: short("routing key", &e.routing_key)?,
            properties: properties(
                e,
                short("message id", &e.message_id)?,
                short("type", &e.kind)?,
            ),
        })
    }
}

/// Publishes a batch in order. lapin resolves a publish only once its IO thread has written
/// the frames, so awaiting each in turn costs a round trip between threads per message. Every
/// publish queues its frames (and takes its delivery tag) when first polled, so polling all
/// of them in order keeps log order on the wire and lets the IO thread write the batch at once.
async fn publish_batch(
    channel: &Channel,
    batch: &[(u64, Position, Entry)],
    outgoing: Vec<Outgoing>,
) -> Vec<lapin::Result<PublisherConfirm>> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let mut publishes: Vec<_> = batch
        .iter()
        .zip(outgoing)
        .map(|((_, _, e), out)| {
            Box::pin(channel.basic_publish(
                out.exchange,
                out.routing_key,
                options,
                &e.body,
                out.properties,
            ))
        })
        .collect();
    let mut done: Vec<Option<lapin::Result<PublisherConfirm>>> =
        publishes.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (publish, done) in publishes.iter_mut().zip(done.iter_mut()) {
            if done.is_none() {
                match publish.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *done = Some(r),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        match waiting {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await;
    done.into_iter()
        .map(|d| d.expect("every publish finished"))
        .collect()
}

/// The AMQP properties of docs/consuming.md.
fn properties(e: &Entry, message_id: ShortString, kind: ShortString) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "source".into(),
        AMQPValue::LongString(LongString::from(e.source.as_str())),
    );
    headers.insert(
        "provider".into(),
        AMQPValue::LongString(LongString::from(e.provider.as_str())),
    );
    if e.replay {
        headers.insert("x-hookgate-replay".into(), AMQPValue::Boolean(true));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from(providers::Envelope::CONTENT_TYPE))
        .with_message_id(message_id)
        .with_type(kind)
        .with_timestamp(e.timestamp)
        .with_app_id(ShortString::from("hookgate"))
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn an_outage_is_logged_when_it_starts_and_then_once_a_minute() {
        let t0 = std::time::Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.attempt(t0), Some(1));
        for s in 1..12 {
            assert_eq!(o.attempt(t0 + Duration::from_secs(5 * s)), None);
        }
        // 60 s after the first line: the 11 attempts between, and this one.
        assert_eq!(o.attempt(t0 + Duration::from_secs(60)), Some(12));
        assert_eq!(o.attempt(t0 + Duration::from_secs(65)), None);
    }

    #[test]
    fn a_few_records_wait_for_the_linger_then_go() {
        let t0 = Instant::now();
        let mut since = None;
        assert!(!gathered(3, false, &mut since, t0));
        assert_eq!(since, Some(t0));
        // More records arriving do not restart the wait.
        assert!(!gathered(5, false, &mut since, t0 + LINGER / 2));
        assert_eq!(since, Some(t0));
        assert!(gathered(5, false, &mut since, t0 + LINGER));
    }

    #[test]
    fn a_full_batch_or_a_retry_goes_at_once() {
        let t0 = Instant::now();
        let mut since = None;
        assert!(gathered(PUBLISH_BATCH as u64, false, &mut since, t0));
        assert!(gathered(1, true, &mut since, t0));
    }

    #[test]
    fn nothing_waiting_forgets_the_wait() {
        let t0 = Instant::now();
        let mut since = Some(t0);
        assert!(!gathered(0, false, &mut since, t0 + LINGER * 2));
        assert_eq!(since, None);
        // The next record waits its own full linger.
        assert!(!gathered(1, false, &mut since, t0 + LINGER * 2));
    }
}
