//! Dedup ids and the outbox, in sled.
//!
//! One request = one transaction over three trees: `seen` (source, id → accepted-at),
//! `expiry` (accepted-at, source, id → ∅, so the sweeper reads only what expired) and `outbox`
//! (sequence → entry). The request then waits until a flush covers its write; concurrent
//! requests share flushes ([`GroupCommit`]), so the 2xx is never sent for data that is not
//! on disk. The relay reads the outbox oldest-first and deletes what the broker confirmed.
//!
//! Crash windows: an entry published but not yet deleted is published again on restart
//! (at-least-once; consumers dedup by `message_id`). An entry written but not flushed was
//! never acknowledged, so the provider retries it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::StoreConfig;

/// What `accept` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("outbox holds {0} entries, its configured maximum")]
    Full(u64),
    #[error("store write failed: {0}")]
    Write(#[from] sled::Error),
    #[error("store flush failed")]
    Flush,
    #[error("store is closing")]
    Closed,
}

/// A message waiting for the broker. Everything the relay needs, so it never parses bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub routing_key: String,
    pub message_id: String,
    pub kind: String,
    pub source: String,
    pub provider: String,
    /// Accept time, Unix seconds (AMQP `timestamp`).
    pub timestamp: u64,
    /// The CloudEvents JSON envelope.
    pub body: Vec<u8>,
}

const ENTRY_VERSION: u8 = 1;

impl OutboxEntry {
    pub fn encode(&self) -> Vec<u8> {
        let strings = [
            &self.routing_key,
            &self.message_id,
            &self.kind,
            &self.source,
            &self.provider,
        ];
        let len = 1 + 8 + strings.iter().map(|s| 4 + s.len()).sum::<usize>() + self.body.len();
        let mut out = Vec::with_capacity(len);
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        for s in strings {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != ENTRY_VERSION || rest.len() < 8 {
            return None;
        }
        let timestamp = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let mut rest = &rest[8..];
        let mut take = || -> Option<String> {
            let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let s = std::str::from_utf8(rest.get(4..4 + n)?).ok()?.to_owned();
            rest = &rest[4 + n..];
            Some(s)
        };
        let (routing_key, message_id, kind, source, provider) =
            (take()?, take()?, take()?, take()?, take()?);
        Some(OutboxEntry {
            routing_key,
            message_id,
            kind,
            source,
            provider,
            timestamp,
            body: rest.to_vec(),
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FlushState {
    /// Every write with a ticket up to this one is on disk.
    durable: u64,
    /// A flush covering tickets up to this one failed.
    failed_upto: u64,
}

/// Group commit: writers take a ticket after their write; one flusher fsyncs everything
/// written so far and releases every ticket it covered at once.
struct GroupCommit {
    written: AtomicU64,
    wake: Notify,
    state: watch::Sender<FlushState>,
}

pub struct Store {
    db: sled::Db,
    seen: sled::Tree,
    expiry: sled::Tree,
    outbox: sled::Tree,
    commit: GroupCommit,
    pending: AtomicU64,
    max_outbox: u64,
    window_secs: u64,
    /// Woken whenever the outbox gains an entry.
    pub outbox_notify: Notify,
}

/// Shared handle.
pub type SharedStore = Arc<Store>;

impl Store {
    pub fn open(config: &StoreConfig) -> Result<Store, sled::Error> {
        let db = sled::Config::new().path(&config.path).open()?;
        Self::with_db(db, config)
    }

    /// A store that lives in memory and in a temporary directory (tests).
    pub fn temporary(config: &StoreConfig) -> Result<Store, sled::Error> {
        Self::with_db(sled::Config::new().temporary(true).open()?, config)
    }

    fn with_db(db: sled::Db, config: &StoreConfig) -> Result<Store, sled::Error> {
        let seen = db.open_tree("seen")?;
        let expiry = db.open_tree("expiry")?;
        let outbox = db.open_tree("outbox")?;
        let pending = AtomicU64::new(outbox.len() as u64);
        Ok(Store {
            db,
            seen,
            expiry,
            outbox,
            commit: GroupCommit {
                written: AtomicU64::new(0),
                wake: Notify::new(),
                state: watch::Sender::new(FlushState::default()),
            },
            pending,
            max_outbox: config.max_outbox_entries,
            window_secs: config.dedup_window_secs,
            outbox_notify: Notify::new(),
        })
    }

    /// Remembers `(source, id)` and enqueues `entry` unless the id was seen within the window;
    /// returns once the decision is on disk.
    pub async fn accept(
        &self,
        source: &str,
        id: &str,
        entry: &OutboxEntry,
        now_secs: u64,
    ) -> Result<Accepted, StoreError> {
        let result = self.write(source, id, entry, now_secs)?;
        self.durable().await?;
        Ok(result)
    }

    /// The transaction alone (no flush).
    fn write(
        &self,
        source: &str,
        id: &str,
        entry: &OutboxEntry,
        now_secs: u64,
    ) -> Result<Accepted, StoreError> {
        let pending = self.pending.load(Ordering::Relaxed);
        if pending >= self.max_outbox {
            // Still answer duplicates: their event is already kept.
            if self.is_duplicate(source, id, now_secs)? {
                return Ok(Accepted::Duplicate);
            }
            return Err(StoreError::Full(pending));
        }
        let key = dedup_key(source, id);
        let value = entry.encode();
        let window = self.window_secs;
        let result =
            (&self.seen, &self.expiry, &self.outbox).transaction(|(seen, expiry, outbox)| {
                if let Some(old) = seen.get(&key)? {
                    let at = be_u64(&old);
                    if at.saturating_add(window) > now_secs {
                        return Ok(Accepted::Duplicate);
                    }
                    expiry.remove(expiry_key(at, &key))?;
                }
                seen.insert(key.as_slice(), &now_secs.to_be_bytes())?;
                expiry.insert(expiry_key(now_secs, &key), &[])?;
                let seq = outbox.generate_id()?;
                outbox.insert(&seq.to_be_bytes(), value.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(Accepted::New)
            });
        let accepted = match result {
            Ok(a) => a,
            Err(TransactionError::Storage(e)) => return Err(StoreError::Write(e)),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        };
        if accepted == Accepted::New {
            self.pending.fetch_add(1, Ordering::Relaxed);
            self.outbox_notify.notify_one();
        }
        Ok(accepted)
    }

    fn is_duplicate(&self, source: &str, id: &str, now_secs: u64) -> Result<bool, StoreError> {
        Ok(self
            .seen
            .get(dedup_key(source, id))?
            .is_some_and(|v| be_u64(&v).saturating_add(self.window_secs) > now_secs))
    }

    /// Waits until everything written so far is flushed.
    async fn durable(&self) -> Result<(), StoreError> {
        let ticket = self.commit.written.fetch_add(1, Ordering::AcqRel) + 1;
        let mut rx = self.commit.state.subscribe();
        self.commit.wake.notify_one();
        let state = rx
            .wait_for(|s| s.durable >= ticket || s.failed_upto >= ticket)
            .await
            .map_err(|_| StoreError::Closed)?;
        if state.durable >= ticket {
            Ok(())
        } else {
            Err(StoreError::Flush)
        }
    }

    /// The group-commit flusher: runs until `cancel`, then flushes a last time.
    pub async fn run_flusher(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let target = self.commit.written.load(Ordering::Acquire);
            if target
                <= self
                    .commit
                    .state
                    .borrow()
                    .durable
                    .max(self.commit.state.borrow().failed_upto)
            {
                tokio::select! {
                    _ = self.commit.wake.notified() => continue,
                    _ = cancel.cancelled() => break,
                }
            }
            let db = self.db.clone();
            let started = std::time::Instant::now();
            let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
            crate::metrics::get()
                .flush_seconds
                .observe(started.elapsed().as_secs_f64());
            match flushed {
                Ok(Ok(_)) => self.commit.state.send_modify(|s| s.durable = target),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "store flush failed; requests get 503");
                    self.commit.state.send_modify(|s| s.failed_upto = target);
                    // Do not spin on a failing disk.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "store flush task died");
                    self.commit.state.send_modify(|s| s.failed_upto = target);
                }
            }
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    /// Up to `max` oldest outbox entries, with their sequence numbers.
    pub fn peek(&self, max: usize) -> Result<Vec<(u64, OutboxEntry)>, sled::Error> {
        let mut out = Vec::with_capacity(max.min(1024));
        for item in self.outbox.iter().take(max) {
            let (k, v) = item?;
            let seq = be_u64(&k);
            match OutboxEntry::decode(&v) {
                Some(e) => out.push((seq, e)),
                None => {
                    // Cannot happen unless the file was edited; keep the relay moving.
                    tracing::error!(seq, "undecodable outbox entry dropped");
                    self.remove(&[seq])?;
                }
            }
        }
        Ok(out)
    }

    /// Deletes confirmed entries. Not flushed: a crash before sled's own periodic flush
    /// republishes them (at-least-once).
    pub fn remove(&self, seqs: &[u64]) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for s in seqs {
            batch.remove(&s.to_be_bytes());
        }
        self.outbox.apply_batch(batch)?;
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(seqs.len() as u64))
            });
        Ok(())
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Forgets ids accepted more than the window ago; returns how many.
    pub fn sweep(&self, now_secs: u64) -> Result<usize, sled::Error> {
        let cutoff = now_secs.saturating_sub(self.window_secs);
        let mut removed = 0;
        for item in self
            .expiry
            .range(..expiry_key(cutoff.saturating_add(1), &[]))
        {
            let (k, _) = item?;
            let at = be_u64(&k[..8]);
            let dkey = &k[8..];
            // Only if the id was not accepted again since (compare-and-swap on its timestamp).
            let _ = self.seen.compare_and_swap(
                dkey,
                Some(&at.to_be_bytes()[..]),
                None as Option<&[u8]>,
            )?;
            self.expiry.remove(&k)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Sweeps every `every` until `cancel`.
    pub async fn run_sweeper(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => return,
            }
            match self.sweep(crate::now_secs()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(forgotten = n, "dedup sweep"),
                Err(e) => tracing::warn!(error = %e, "dedup sweep failed"),
            }
        }
    }

    /// Whether the database answers (readiness).
    pub fn healthy(&self) -> bool {
        self.seen.get(b"\0readiness").is_ok()
    }

    pub fn flush_now(&self) -> Result<usize, sled::Error> {
        self.db.flush()
    }
}

fn dedup_key(source: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + id.len());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn expiry_key(at: u64, dkey: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + dkey.len());
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(dkey);
    k
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: u64) -> StoreConfig {
        StoreConfig {
            path: "unused".into(),
            dedup_window_secs: 100,
            max_outbox_entries: max,
        }
    }

    fn entry(id: &str) -> OutboxEntry {
        OutboxEntry {
            routing_key: "gh.github.push".into(),
            message_id: id.into(),
            kind: "github.push".into(),
            source: "gh".into(),
            provider: "github".into(),
            timestamp: 1_700_000_000,
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        }
    }

    async fn started(max: u64) -> (Arc<Store>, CancellationToken) {
        let store = Arc::new(Store::temporary(&config(max)).unwrap());
        let cancel = CancellationToken::new();
        tokio::spawn(store.clone().run_flusher(cancel.clone()));
        (store, cancel)
    }

    #[test]
    fn entries_round_trip() {
        let e = entry("abc");
        assert_eq!(OutboxEntry::decode(&e.encode()), Some(e));
        assert_eq!(OutboxEntry::decode(&[2, 0]), None);
        assert_eq!(OutboxEntry::decode(&entry("x").encode()[..12]), None);
    }

    #[tokio::test]
    async fn dedup_within_window_then_forget() {
        let (store, _c) = started(10).await;
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 1000).await.unwrap(),
            Accepted::New
        );
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 1050).await.unwrap(),
            Accepted::Duplicate
        );
        assert_eq!(
            store.accept("other", "a", &entry("a"), 1050).await.unwrap(),
            Accepted::New,
            "scoped by source"
        );
        assert_eq!(store.pending(), 2);
        assert_eq!(store.sweep(1099).unwrap(), 0);
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 1099).await.unwrap(),
            Accepted::Duplicate
        );
        assert_eq!(store.sweep(1100).unwrap(), 1);
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 1101).await.unwrap(),
            Accepted::New
        );
    }

    #[tokio::test]
    async fn expired_id_is_accepted_again_even_before_the_sweep() {
        let (store, _c) = started(10).await;
        store.accept("gh", "a", &entry("a"), 1000).await.unwrap();
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 1100).await.unwrap(),
            Accepted::New
        );
        // the sweep must not forget the re-accepted id
        assert_eq!(store.sweep(1150).unwrap(), 0);
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 1150).await.unwrap(),
            Accepted::Duplicate
        );
    }

    #[tokio::test]
    async fn outbox_is_fifo_and_bounded() {
        let (store, _c) = started(3).await;
        for id in ["1", "2", "3"] {
            store.accept("gh", id, &entry(id), 10).await.unwrap();
        }
        assert!(matches!(
            store.accept("gh", "4", &entry("4"), 10).await,
            Err(StoreError::Full(3))
        ));
        assert_eq!(
            store.accept("gh", "1", &entry("1"), 10).await.unwrap(),
            Accepted::Duplicate,
            "duplicates still answered when full"
        );
        let batch = store.peek(10).unwrap();
        let ids: Vec<_> = batch.iter().map(|(_, e)| e.message_id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        store.remove(&[batch[0].0]).unwrap();
        assert_eq!(store.pending(), 2);
        assert_eq!(
            store.accept("gh", "4", &entry("4"), 10).await.unwrap(),
            Accepted::New
        );
        let ids: Vec<_> = store
            .peek(10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.message_id)
            .collect();
        assert_eq!(ids, ["2", "3", "4"]);
    }

    #[tokio::test]
    async fn concurrent_same_id_is_accepted_once() {
        let (store, _c) = started(1000).await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.accept("gh", "same", &entry("same"), 5).await.unwrap()
            }));
        }
        let mut news = 0;
        for t in tasks {
            if t.await.unwrap() == Accepted::New {
                news += 1;
            }
        }
        assert_eq!(news, 1);
        assert_eq!(store.pending(), 1);
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            path: dir.path().join("db"),
            dedup_window_secs: 100,
            max_outbox_entries: 10,
        };
        {
            let store = Arc::new(Store::open(&cfg).unwrap());
            let cancel = CancellationToken::new();
            let flusher = tokio::spawn(store.clone().run_flusher(cancel.clone()));
            store.accept("gh", "a", &entry("a"), 10).await.unwrap();
            cancel.cancel();
            flusher.await.unwrap();
        }
        let store = Arc::new(Store::open(&cfg).unwrap());
        let cancel = CancellationToken::new();
        tokio::spawn(store.clone().run_flusher(cancel.clone()));
        assert_eq!(store.pending(), 1);
        assert_eq!(
            store.accept("gh", "a", &entry("a"), 20).await.unwrap(),
            Accepted::Duplicate
        );
    }
}
