//! Load and bookkeeping: clients that post signed GitHub deliveries the way a provider does
//! (one source each, one event after another, retrying the same delivery id until a 2xx), a
//! consumer that records every message that reaches the queue (`report` compares both).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::gateway::SECRET;

/// What one source (client) sent and what was acknowledged.
#[derive(Default)]
pub struct SourceLog {
    /// Delivery ids in the order they were first sent; a client sends event n+1 only after
    /// event n got its 2xx, so this is also the order hookgate accepted them in.
    pub sent: Vec<String>,
    pub acked: HashSet<String>,
}

/// Everything the clients did, shared by the client tasks.
#[derive(Default)]
pub struct Ledger {
    pub sources: Mutex<BTreeMap<String, SourceLog>>,
    pub attempts: AtomicU64,
    pub acks: AtomicU64,
    /// Replies that were not 2xx, by status (`conn` for a transport error).
    pub refusals: Mutex<BTreeMap<String, u64>>,
}

impl Ledger {
    pub fn refused(&self, what: &str) -> u64 {
        self.refusals
            .lock()
            .unwrap()
            .get(what)
            .copied()
            .unwrap_or(0)
    }

    pub fn acked_ids(&self) -> HashSet<String> {
        let s = self.sources.lock().unwrap();
        s.values().flat_map(|l| l.acked.iter().cloned()).collect()
    }

    fn refuse(&self, what: String) {
        *self.refusals.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// How the clients behave.
#[derive(Clone)]
pub struct Load {
    pub run: String,
    pub sources: Vec<String>,
    /// Events per source; `None` = until `stop_new`.
    pub events: Option<usize>,
    /// Pause between two events of one client (an open-ish loop); `None` = as fast as acks come.
    pub pace: Option<Duration>,
    /// Pause before re-sending a refused delivery.
    pub retry_after: Duration,
}

pub fn event_id(run: &str, source: &str, seq: usize) -> String {
    format!("{run}-{source}-{seq:06}")
}

/// Starts one task a source. `stop_new`: start no new event; `give_up`: stop retrying.
pub fn start_clients(
    base: &str,
    load: &Load,
    ledger: &Arc<Ledger>,
    stop_new: &CancellationToken,
    give_up: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(64)
        .build()
        .expect("an HTTP client");
    load.sources
        .iter()
        .map(|source| {
            let (http, load, ledger) = (http.clone(), load.clone(), ledger.clone());
            let (stop_new, give_up) = (stop_new.clone(), give_up.clone());
            let url = format!("{base}/hooks/{source}");
            let source = source.clone();
            tokio::spawn(
                async move { client(http, url, source, load, ledger, stop_new, give_up).await },
            )
        })
        .collect()
}

async fn client(
    http: reqwest::Client,
    url: String,
    source: String,
    load: Load,
    ledger: Arc<Ledger>,
    stop_new: CancellationToken,
    give_up: CancellationToken,
) {
    let pad = "x".repeat(160);
    for seq in 0.. {
        if stop_new.is_cancelled() || load.events.is_some_and(|n| seq >= n) {
            return;
        }
        let id = event_id(&load.run, &source, seq);
        let body = format!(
            r#"{{"ref":"refs/heads/main","seq":{seq},"repository":{{"full_name":"chaos/{source}"}},"pad":"{pad}"}}"#
        );
        let req = providers::github::delivery(SECRET, "push", &id, body.as_bytes());
        ledger
            .sources
            .lock()
            .unwrap()
            .entry(source.clone())
            .or_default()
            .sent
            .push(id.clone());
        loop {
            ledger.attempts.fetch_add(1, Ordering::Relaxed);
            let mut r = http.post(&url).body(req.body.clone());
            for (k, v) in &req.headers {
                r = r.header(k, v);
            }
            match r.send().await {
                Ok(resp) if resp.status().is_success() => {
                    ledger.acks.fetch_add(1, Ordering::Relaxed);
                    let mut s = ledger.sources.lock().unwrap();
                    s.entry(source.clone())
                        .or_default()
                        .acked
                        .insert(id.clone());
                    break;
                }
                Ok(resp) => ledger.refuse(resp.status().as_u16().to_string()),
                Err(_) => ledger.refuse("conn".into()),
            }
            if give_up.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(load.retry_after) => {}
                _ = give_up.cancelled() => break,
            }
        }
        if let Some(p) = load.pace {
            tokio::select! {
                _ = tokio::time::sleep(p) => {}
                _ = stop_new.cancelled() => return,
            }
        }
    }
}

/// Waits for the clients; after `grace`, tells them to stop retrying.
pub async fn finish_clients(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_new: &CancellationToken,
    give_up: &CancellationToken,
    grace: Duration,
) {
    stop_new.cancel();
    let g = give_up.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        g.cancel();
    });
    for t in tasks {
        let _ = t.await;
    }
    timer.abort();
}

/// One message as it reached the queue.
pub struct Seen {
    pub id: String,
    /// The envelope's `receivedat`: the same for a republished entry, new for a re-acceptance.
    pub received: String,
}

/// A consumer on a queue: records every delivery, in arrival order.
pub struct Sink {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    _conn: Connection,
}

impl Sink {
    pub async fn start(amqp_url: &str, queue: &str) -> anyhow::Result<Sink> {
        Self::start_paced(amqp_url, queue, 500, None).await
    }

    /// A consumer that takes `prefetch` messages at a time and spends `each` on every one.
    pub async fn start_paced(
        amqp_url: &str,
        queue: &str,
        prefetch: u16,
        each: Option<Duration>,
    ) -> anyhow::Result<Sink> {
        let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "chaos".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                // The message id is the GitHub delivery id the client chose.
                let id = d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let received = serde_json::from_slice::<serde_json::Value>(&d.data)
                    .ok()
                    .and_then(|v| v["receivedat"].as_str().map(str::to_string))
                    .unwrap_or_default();
                s.lock().unwrap().push(Seen { id, received });
                if let Some(each) = each {
                    tokio::time::sleep(each).await;
                }
                if d.ack(BasicAckOptions::default()).await.is_err() {
                    return;
                }
            }
        });
        Ok(Sink {
            seen,
            task,
            _conn: conn,
        })
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until every acknowledged event has reached the queue (or `timeout`), then `settle`
/// longer so late duplicates are counted too.
pub async fn wait_delivered(ledger: &Ledger, sink: &Sink, timeout: Duration, settle: Duration) {
    let acked = ledger.acked_ids();
    let deadline = Instant::now() + timeout;
    loop {
        let missing = {
            let seen = sink.seen.lock().unwrap();
            let got: HashSet<&str> = seen.iter().map(|m| m.id.as_str()).collect();
            acked.iter().filter(|id| !got.contains(id.as_str())).count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(settle).await;
}

/// Waits until the queue delivered at least `n` messages; `false` on timeout.
pub async fn wait_count(sink: &Sink, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while sink.count() < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}
