//! The store: the event log ([`crate::log`]) for envelopes, a disk-resident hash table
//! (`seen.idx`, [`seen`]) for the dedup index, sled for the rest (checkpoint and cursor,
//! dead letters, cursor saves, refusals).
//!
//! Accepting an event: look its keys up (the `(source, id)` key, and the provider's content
//! key where its signature scheme is ambiguous) among the records still being committed and in
//! the dedup table (by fingerprint: one `pread` of a 4 KiB bucket); a new one is appended to
//! the log and the request waits for the group commit that puts it on disk. Only then is it
//! written to the table, by the indexer thread (its keys stay in the in-flight map until then,
//! so a new request never misses it). The table is never synced on the request path: a
//! checkpoint syncs it and records the last seq it holds, and a start re-inserts the keys of
//! the records after that from the log. Its memory does not grow with the number of keys (the
//! file's pages are the kernel's page cache, not the process's).
//!
//! Two requests with one id at once: the first appends, the second finds the id among the
//! records being committed and waits for that record's fate — a duplicate once it is on disk,
//! 503 if its write failed (the provider retries). A request that gives up waiting (deadline,
//! client gone) changes nothing: its record is indexed when it lands.
//!
//! Status of a kept record: below the relay's cursor it is published, or dead when the
//! `dead` tree holds it (a copy, so retention may drop its segment); at or above, pending.
//! Retention drops whole segments that are published and past `retain_secs` /
//! `retain_max_bytes`. Crash windows: a record published but whose cursor was not saved yet
//! is published again on restart (at-least-once; consumers dedup by `message_id`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::StoreConfig;
pub use crate::log::Entry;
use crate::log::{self, Committed, Log, Reader};

mod seen;
use seen::{Opened, Seen};

/// What `accept` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

/// Where an event stands on this replica ([`Store::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Accepted within the dedup window.
    Seen,
    /// Being committed right now.
    Writing,
    Absent,
}

impl StoreError {
    /// Another process (a running gateway) holds the store.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Index(sled::Error::Io(e))
            if e.to_string().contains("could not acquire lock"))
    }
}

/// Why a store is opened: to serve (created and upgraded as needed) or to inspect (neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Serve,
    Inspect,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} events wait for the broker, the configured maximum")]
    Full(u64),
    #[error("store metadata (sled) failed: {0}")]
    Index(#[from] sled::Error),
    /// Reading or writing the dedup table (`seen.idx`, [`seen`]).
    #[error("dedup table failed: {0}")]
    Table(std::io::Error),
    #[error("event log write failed")]
    Write,
    #[error("event not on disk within the deadline")]
    Deadline,
    /// `forget` found the dedup index behind the log, or failing: what it changed would not
    /// survive a restart.
    #[error("the dedup index is behind the event log or failing; try again")]
    IndexBehind,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Opening to inspect: there is no store at this path (it is not created).
    #[error("no hookgate store at {0}")]
    Missing(String),
    /// Opening to inspect: the store was written by an earlier version (it is not upgraded).
    #[error(
        "the store at {0} was written by an earlier hookgate: `hookgate serve` upgrades it at \
         its first start (keep a copy of it first to be able to go back); until then, inspect \
         it with the binary that wrote it"
    )]
    Older(String),
}

/// [`Store::problem`] when the log's committer thread is gone (not restartable).
pub const COMMITTER_STOPPED: &str = "event log committer stopped";
/// [`Store::problem`] when the dedup indexer thread is gone (not restartable).
pub const INDEXER_STOPPED: &str = "dedup indexer stopped";

/// How often the dedup index is flushed and the checkpoint moved (a crash re-indexes at most
/// this much of the log).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// How long the indexer gathers commits into one table write, and the most records a
/// re-index puts in one.
const INDEX_COALESCE: Duration = Duration::from_millis(20);
const INDEX_BATCH_MAX: usize = 4096;

/// The sled tree of cursor saves: cursor → when (Unix secs). A record below a saved cursor
/// was published by then.
const PUBLISHED: &str = "published_at";

/// The sled tree of recent refusals, one ring per source.
const REJECTIONS: &str = "rejections";

/// Meta keys in sled.
const CHECKPOINT: &[u8] = b"checkpoint";
const CURSOR: &[u8] = b"relay_cursor";
/// How long `forget` waits for the indexer to reach the records on disk.
const FORGET_SETTLE: Duration = Duration::from_secs(30);

/// Tree of dead letters that were replayed (see [`Store::remove_dead`]).
const DEAD_REPLAYED: &str = "dead_replayed";

/// What the indexer puts in the dedup table once a record is on disk.
struct Tag {
    /// The fingerprints ([`Seen::fingerprint`]) of the record's dedup keys.
    fps: Vec<u128>,
    at: u64,
}

impl Tag {
    /// A record without dedup keys (a replay, an upgraded outbox entry).
    fn unindexed() -> Tag {
        Tag { fps: vec![], at: 0 }
    }
}

/// The dedup index and the records not indexed yet.
struct Index {
    seen: Seen,
    /// Dedup key fingerprint → seq of a record appended but not yet committed and indexed
    /// (the fingerprint, as in the table: no key is copied on the request path).
    inflight: Mutex<HashMap<u128, u64>>,
    /// Every record up to this seq is indexed in the table (or failed to be written).
    indexed_upto: AtomicU64,
    failing: AtomicBool,
}

impl Index {
    /// Runs on the indexer thread after every commit (or several queued ones): the keys go
    /// into the table (one `pread` of their bucket and one 32-byte `pwrite` each, no sync),
    /// and only then leave the in-flight map, so a lookup that misses them there finds them
    /// in the table.
    fn committed(&self, batch: &[Committed<Tag>], pending: &AtomicU64) {
        let mut failed = 0;
        let mut items = Vec::with_capacity(batch.len());
        for c in batch.iter() {
            if !c.ok {
                failed += 1;
                continue;
            }
            items.extend(c.tag.fps.iter().map(|&fp| (fp, c.tag.at, c.seq)));
        }
        let fail = |e: std::io::Error| {
            if !self.failing.swap(true, Ordering::Relaxed) {
                tracing::error!(error = %e, "dedup index write failed");
            }
        };
        let indexed = match self.seen.insert(&items) {
            // A failed write-back leaves the keys in the table (its pages in memory) but
            // maybe not on disk: the table refuses every sync from then on, so no checkpoint
            // passes them, and a restart re-indexes them from the log.
            Ok(()) => {
                self.seen.write_back().unwrap_or_else(fail);
                true
            }
            // The records are on disk; the next start re-indexes them from the log.
            Err(e) => {
                fail(e);
                false
            }
        };
        // Counted as pending when appended; a failed write never will be.
        if failed > 0 {
            pending.fetch_sub(failed, Ordering::Relaxed);
        }
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        // A record whose keys may not have reached the table stays in the map (a request with
        // its id is a duplicate of a durable record) until the restart that re-indexes it.
        for c in batch.iter().filter(|c| indexed || !c.ok) {
            for fp in &c.tag.fps {
                if inflight.get(fp) == Some(&c.seq) {
                    inflight.remove(fp);
                }
            }
        }
        drop(inflight);
        if let Some(last) = batch.last() {
            self.indexed_upto.store(last.seq, Ordering::Release);
        }
    }
}

/// A dead letter as kept in sled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeadInfo {
    pub attempts: u32,
    pub reason: String,
    pub dead_at: u64,
}

/// What [`Store::refusals`] knows of a record the broker refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    pub count: u32,
    pub last_error: String,
}

pub struct Store {
    db: sled::Db,
    sled_files: SledFiles,
    index: Arc<Index>,
    meta: sled::Tree,
    dead: sled::Tree,
    log: Log<Tag>,
    max_pending: u64,
    retain_secs: u64,
    retain_max_bytes: u64,
    /// Records committed and not yet published or dead.
    pending: Arc<AtomicU64>,
    /// First seq the relay has not finished with; everything below is published or dead.
    cursor: AtomicU64,
    /// Accept time (Unix secs) of the record at the cursor; 0 when nothing is pending.
    oldest_pending_at: AtomicU64,
    /// `(cursor, accept time of its record, when read)`: [`Store::oldest_pending_at`].
    oldest_read: Mutex<Option<(u64, Option<u64>, std::time::Instant)>>,
    /// `relay.cursor`: the cursor again, written in place at every save ([`CursorFile`]).
    cursor_file: CursorFile,
    /// Records the broker confirmed past the cursor (while an earlier one waits for a retry):
    /// published, though the cursor has not passed them yet. Until the cursor does.
    published_ahead: Mutex<BTreeSet<u64>>,
    /// Refusals by the broker of records not finished yet (`events show` of a pending event
    /// says how often and why), until the cursor passes them. In memory: a restart starts the
    /// count again, as the relay does.
    refusals: Mutex<BTreeMap<u64, Refusals>>,
    /// The last write to sled of the relay's position, a dead letter or a checkpoint failed:
    /// sled answers every later write with the same error after an I/O failure (a full disk,
    /// even once space is back) until a restart, so `/readyz` must say so.
    meta_failing: AtomicBool,
    /// Makes sled's writes of the relay's position fail ([`Store::advance`]).
    #[cfg(test)]
    pub(crate) fail_meta_writes: AtomicBool,
    /// The last save of the relay's position wrote only one of its two copies (logged once).
    saves_failing: AtomicBool,
    /// Woken whenever a record is committed.
    pub committed: Arc<Notify>,
    /// The thread that writes committed records' keys into the dedup table; ends after the
    /// log's committer.
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Shared handle.
pub type SharedStore = Arc<Store>;

/// [`Store::problem`] once a write-back of the dedup table failed (until a restart, which
/// re-indexes from the log).
pub const INDEX_FAILING: &str = "dedup index writes fail";

/// [`Store::problem`] while sled's metadata writes fail (after a failed fsync, until a
/// restart).
pub const META_FAILING: &str =
    "store metadata (sled) writes fail: the relay cannot record its progress or a dead letter reliably (after a full disk or an I/O error, restart it)";

impl Store {
    /// Opens the store at `config.path` (sled files, the dedup table `seen.idx`, and the log
    /// in `log/`), cuts a torn log tail, re-indexes what the table lost since its last
    /// checkpoint (everything, when the table is missing or damaged), moves the dedup index
    /// of a previous version out of sled, and its outbox into the log.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_as(config, Purpose::Serve)
    }

    fn open_as(config: &StoreConfig, purpose: Purpose) -> Result<Store, StoreError> {
        let shown = || config.path.display().to_string();
        // sled's own file: without it there is no store here, and sled would create one.
        if purpose == Purpose::Inspect && !config.path.join("conf").is_file() {
            return Err(StoreError::Missing(shown()));
        }
        let db = sled::Config::new()
            .path(&config.path)
            // sled holds little now (meta, dead letters, cursor saves, refusals) and nothing
            // on the request path; checkpoints flush it.
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(CHECKPOINT_EVERY.as_millis() as u64 * 2))
            .cache_capacity(64 << 20)
            .open()?;
        // 0.1 kept an outbox tree, 0.2 its dedup index in `seen`: opening upgrades them.
        let older = db
            .tree_names()
            .iter()
            .any(|n| &n[..] == b"outbox" || &n[..] == b"seen");
        if older && purpose == Purpose::Inspect {
            return Err(StoreError::Older(shown()));
        }
        let (seen, opened) =
            Seen::open(&config.path, config.dedup_window_secs, seen::INITIAL_PAGES)
                .map_err(StoreError::Table)?;
        let sled_files = SledFiles::open(&config.path)?;
        let meta = db.open_tree("meta")?;
        let dead = db.open_tree("dead")?;
        let last_checkpoint = saved_checkpoint(&meta)?;
        let mut checkpoint = last_checkpoint;
        // A store of the previous version keeps its dedup index in sled (`seen`: key → at).
        let upgrade = db.tree_names().iter().any(|n| &n[..] == b"seen");
        match &opened {
            Opened::Existing => {}
            Opened::Created if upgrade || checkpoint == 0 => {}
            Opened::Created | Opened::Replaced(_) => {
                let why = match &opened {
                    Opened::Replaced(why) => why.as_str(),
                    _ => "missing",
                };
                tracing::warn!(
                    problem = why,
                    checkpoint,
                    "dedup table lost: a new one is filled from the whole event log (ids of \
                     segments already dropped by retention are not recovered)"
                );
                // Durably, before the refill: a kill during it must not leave the old
                // checkpoint for the next start to trust with a table that lacks its keys.
                meta.insert(CHECKPOINT, &0u64.to_be_bytes())?;
                sled_files.sync(&db, false)?;
                checkpoint = 0;
            }
        }
        let copied = match upgrade {
            true => upgrade_sled_index(&db, &seen)?,
            false => 0,
        };
        let index = Arc::new(Index {
            seen,
            inflight: Mutex::new(HashMap::new()),
            indexed_upto: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        });
        let cursor_file = CursorFile::open(&config.path)?;
        // The file may be ahead of sled (a process killed between checkpoints), never behind
        // what was confirmed: both only ever get cursors the relay has finished with.
        let saved_cursor = meta
            .get(CURSOR)?
            .map_or(0, |v| be_u64(&v))
            .max(cursor_file.read().unwrap_or(0));

        let pending = Arc::new(AtomicU64::new(0));
        let committed = Arc::new(Notify::new());
        // The table's writes (and its rebuilds) run on their own thread: they never hold up
        // the next group commit. Until a record is indexed its keys stay in the in-flight
        // map, so dedup sees it throughout.
        let (to_indexer, batches) = std::sync::mpsc::channel::<Vec<Committed<Tag>>>();
        let indexer = {
            let (index, pending) = (index.clone(), pending.clone());
            std::thread::Builder::new()
                .name("hookgate-index".into())
                .spawn(move || {
                    while let Ok(mut batch) = batches.recv() {
                        // Commits of the next few ms are indexed together (one lock of the
                        // table's writer); the in-flight map covers the wait. Asleep rather
                        // than waiting on the channel: a commit sent meanwhile wakes nobody
                        // (at 2,000 req/s that was a wake-up per commit).
                        std::thread::sleep(INDEX_COALESCE);
                        while let Ok(more) = batches.try_recv() {
                            batch.extend(more);
                        }
                        index.committed(&batch, &pending);
                    }
                })?
        };
        let on_commit = {
            let committed = committed.clone();
            move |batch: Vec<Committed<Tag>>| {
                committed.notify_one();
                // The indexer only stops after the committer (the sender's owner) has.
                let _ = to_indexer.send(batch);
            }
        };
        let (log, recovered) = Log::open(
            &log_dir(&config.path),
            config.segment_bytes,
            saved_cursor.max(last_checkpoint + 1),
            crate::commit_delay::CommitDelay::new(std::time::Duration::from_micros(
                config.commit_delay_us,
            )),
            on_commit,
        )?;
        if recovered.cut_bytes > 0 {
            tracing::warn!(
                bytes = recovered.cut_bytes,
                "event log: cut a torn tail (never acknowledged)"
            );
        }
        let first = log.segments().first().map_or(1, |s| s.first);
        let cursor = saved_cursor.max(first);
        let store = Store {
            db,
            sled_files,
            index,
            meta,
            dead,
            log,
            max_pending: config.max_outbox_entries,
            retain_secs: config.retain_secs,
            retain_max_bytes: config.retain_max_bytes,
            pending,
            cursor: AtomicU64::new(cursor),
            oldest_pending_at: AtomicU64::new(0),
            oldest_read: Mutex::new(None),
            cursor_file,
            published_ahead: Mutex::new(BTreeSet::new()),
            refusals: Mutex::new(BTreeMap::new()),
            meta_failing: AtomicBool::new(false),
            #[cfg(test)]
            fail_meta_writes: AtomicBool::new(false),
            saves_failing: AtomicBool::new(false),
            committed,
            indexer: Mutex::new(Some(indexer)),
        };
        let reindexed = store.reindex(checkpoint)?;
        let moved = store.upgrade_outbox()?;
        let next = store.log.next_seq();
        store
            .index
            .indexed_upto
            .store(next.saturating_sub(1), Ordering::Release);
        store
            .pending
            .store(next.saturating_sub(cursor), Ordering::Relaxed);
        if reindexed > 0 || moved > 0 || copied > 0 {
            tracing::info!(
                reindexed,
                moved_from_outbox = moved,
                copied_from_sled_index = copied,
                "store recovered"
            );
        }
        Ok(store)
    }

    /// [`Store::open`], waiting up to `wait` while sled's lock on the directory is still held
    /// by handles of this process that are being released (sled finishes some background work
    /// after a `Db` is dropped): a gateway restarted in the same process (tests, a future
    /// reload) opens its store again at once. Another process's lock fails after `wait`.
    pub fn open_waiting(config: &StoreConfig, wait: Duration) -> Result<Store, StoreError> {
        Store::open_waiting_as(config, wait, Purpose::Serve)
    }

    /// Whether a process holds the store at `path` (sled's lock on its `db` file), found
    /// without opening it: `tail` asks while it waits for a gateway, and an open would take
    /// the lock the starting gateway needs.
    pub fn is_held(path: &Path) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        let file = match std::fs::File::open(path.join("db")) {
            Ok(f) => f,
            // No store there (removed meanwhile): nobody holds it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // Shared: it fails against sled's exclusive lock all the same, and needs no write
        // access (NFS emulates flock with fcntl locks, whose exclusive kind does).
        // SAFETY: flock on a descriptor this function owns; the lock goes with it.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            return Ok(false);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Ok(true),
            _ => Err(e),
        }
    }

    /// [`Store::open_waiting`] for the inspection commands (`events`, `outbox`, `replay`,
    /// `forget`): never creates a store ([`StoreError::Missing`]: a relative `store.path` read
    /// from another directory gave an empty store and a false all-clear) and never upgrades
    /// one written by an earlier version ([`StoreError::Older`]: a look with the new binary
    /// made going back lose the pending events). Both found by a black-box review.
    pub fn open_to_inspect(config: &StoreConfig, wait: Duration) -> Result<Store, StoreError> {
        Store::open_waiting_as(config, wait, Purpose::Inspect)
    }

    fn open_waiting_as(
        config: &StoreConfig,
        wait: Duration,
        purpose: Purpose,
    ) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Store::open_as(config, purpose) {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Re-inserts the dedup keys of every record after `checkpoint` (the table may have lost
    /// them; an insert keeps the later of two acceptances).
    fn reindex(&self, checkpoint: u64) -> Result<usize, StoreError> {
        let mut reader = self.log.reader(checkpoint + 1)?;
        let mut n = 0;
        let mut items = Vec::new();
        while let Some((seq, _, e)) = reader.next_record()? {
            if e.replay {
                continue;
            }
            for k in keys(&e) {
                items.push((self.index.seen.fingerprint(&k), e.timestamp, seq));
            }
            if items.len() >= INDEX_BATCH_MAX {
                self.index.seen.insert(&items).map_err(StoreError::Table)?;
                items.clear();
            }
            n += 1;
        }
        self.index.seen.insert(&items).map_err(StoreError::Table)?;
        Ok(n)
    }

    /// A store written by hookgate 0.1 kept unpublished events in sled's `outbox` tree: append
    /// them to the log (in their order, already indexed), then empty the tree.
    fn upgrade_outbox(&self) -> Result<usize, StoreError> {
        if !self.db.tree_names().iter().any(|n| &n[..] == b"outbox") {
            return Ok(0);
        }
        let outbox = self.db.open_tree("outbox")?;
        let (mut first, mut last) = (None, None);
        let mut n = 0;
        for item in outbox.iter() {
            let (_, v) = item?;
            match decode_v1(&v) {
                Some(e) => {
                    let seq = self
                        .log
                        .append(&e, Tag::unindexed())
                        .map_err(|_| StoreError::Write)?;
                    first.get_or_insert(seq);
                    last = Some(seq);
                    n += 1;
                }
                None => tracing::error!("undecodable entry in the old outbox skipped"),
            }
        }
        if let (Some(first), Some(last)) = (first, last) {
            // This runs at start, before any request: a short blocking wait is fine.
            loop {
                let d = self.log.durable_state();
                // Any failed commit among them (not only the last's): the old outbox stays.
                if d.failed_upto >= first {
                    return Err(StoreError::Write);
                }
                if d.upto >= last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        outbox.clear()?;
        self.db.drop_tree("outbox")?;
        self.db.flush()?;
        Ok(n)
    }

    /// Keeps `entry` unless its id (or content key) was seen within the window; returns once
    /// the decision is on disk, or with an error by `deadline`.
    pub async fn accept(
        &self,
        entry: &Entry,
        now_secs: u64,
        deadline: Duration,
    ) -> Result<Accepted, StoreError> {
        let fps = self.fingerprints(entry);
        // Decided under the lock, awaited outside it.
        let (seq, new) = {
            let mut inflight = self
                .index
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match fps.iter().find_map(|fp| inflight.get(fp)) {
                // Someone is committing this event: its fate is ours.
                Some(&other) => (other, false),
                None => {
                    if self.seen_within_window(&fps, now_secs)? {
                        return Ok(Accepted::Duplicate);
                    }
                    self.reserve(1)?;
                    let tag = Tag {
                        fps: fps.clone(),
                        at: now_secs,
                    };
                    let seq = self.append_to_log(entry, tag)?;
                    for fp in fps {
                        inflight.insert(fp, seq);
                    }
                    (seq, true)
                }
            }
        };
        match tokio::time::timeout(deadline, self.log.durable(seq)).await {
            Ok(Ok(())) if new => Ok(Accepted::New),
            Ok(Ok(())) => Ok(Accepted::Duplicate),
            Ok(Err(_)) => Err(StoreError::Write),
            Err(_) => Err(StoreError::Deadline),
        }
    }

    /// Where `entry` stands here, writing nothing: the shared dedup ([`crate::dedup`]) asks
    /// before it claims the id across replicas. The indexer puts a record in the table before
    /// it leaves `inflight`, so a record is never missed between the two looks.
    pub fn lookup(&self, entry: &Entry, now_secs: u64) -> Result<Local, StoreError> {
        let fps = self.fingerprints(entry);
        {
            let inflight = self
                .index
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if fps.iter().any(|fp| inflight.contains_key(fp)) {
                return Ok(Local::Writing);
            }
        }
        match self.seen_within_window(&fps, now_secs)? {
            true => Ok(Local::Seen),
            false => Ok(Local::Absent),
        }
    }

    /// Whether any of the keys (by fingerprint) was accepted within the dedup window, by the
    /// table: one `pread` of a 4 KiB bucket each.
    /// The fingerprints of `entry`'s dedup keys ([`keys`]).
    fn fingerprints(&self, entry: &Entry) -> Vec<u128> {
        keys(entry)
            .iter()
            .map(|k| self.index.seen.fingerprint(k))
            .collect()
    }

    fn seen_within_window(&self, fps: &[u128], now_secs: u64) -> Result<bool, StoreError> {
        for &fp in fps {
            if self
                .index
                .seen
                .lookup(fp, now_secs)
                .map_err(StoreError::Table)?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Room for `n` more pending events, taken whole or not at all: `store.max_outbox_entries`
    /// bounds ingest and replay alike, so the backlog's disk stays within what the operator
    /// allowed. In one step, so two takers at `max - 1` cannot both pass.
    pub fn reserve(&self, n: u64) -> Result<(), StoreError> {
        self.pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                (p.saturating_add(n) <= self.max_pending).then_some(p + n)
            })
            .map(|_| ())
            .map_err(StoreError::Full)
    }

    /// Queues `entry` in room taken by [`Store::reserve`], giving the room back if the log
    /// is closed (a record appended is counted until its commit settles it).
    fn append_to_log(&self, entry: &Entry, tag: Tag) -> Result<u64, StoreError> {
        self.log.append(entry, tag).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            StoreError::Write
        })
    }

    /// Appends `entry` without dedup (a replay) into room taken by [`Store::reserve`]; returns
    /// its seq once it is on disk.
    pub async fn append_reserved(&self, entry: &Entry) -> Result<u64, StoreError> {
        let seq = self.append_to_log(entry, Tag::unindexed())?;
        self.log.durable(seq).await.map_err(|_| StoreError::Write)?;
        Ok(seq)
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// `store.max_outbox_entries`: the most pending events ingest and replay may leave.
    pub fn max_pending(&self) -> u64 {
        self.max_pending
    }

    /// Highest seq on disk; the relay never reads past it.
    pub fn durable_upto(&self) -> u64 {
        self.log.durable_state().upto
    }

    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// A reader for the relay, at `seq`.
    pub fn reader(&self, seq: u64) -> std::io::Result<Reader> {
        self.log.reader(seq)
    }

    /// The relay is done with everything below `cursor`; `finished` records left the backlog
    /// since the last call. Written in place to `relay.cursor` without a sync, and saved in
    /// sled without a flush: a killed process loses nothing of it (the page cache keeps it),
    /// a power cut falls back to sled's last checkpoint (and republishes a little).
    ///
    /// Either copy is enough (a start takes the later of the two), so a save fails the relay
    /// only when both fail. Once sled fails a write it fails every later one until a restart
    /// (`failing_until_restart`: `/readyz` says so and the gateway stops after a grace), and
    /// the relay goes on meanwhile from `relay.cursor`. It used to reconnect on every save,
    /// republishing its window each time, and the count of pending events kept what those
    /// saves had finished (found after a full disk: the outbox count stayed up with nothing
    /// pending).
    pub fn advance(&self, cursor: u64, finished: u64, oldest_at: u64) -> Result<(), StoreError> {
        let before = self.cursor.swap(cursor, Ordering::AcqRel);
        self.oldest_pending_at.store(oldest_at, Ordering::Relaxed);
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(finished))
            });
        let mut ahead = self
            .published_ahead
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !ahead.is_empty() {
            *ahead = ahead.split_off(&cursor);
        }
        drop(ahead);
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if !refusals.is_empty() {
            *refusals = refusals.split_off(&cursor);
        }
        drop(refusals);
        #[cfg(test)]
        let injected = self.fail_meta_writes.load(Ordering::Relaxed);
        #[cfg(not(test))]
        let injected = false;
        let saved = match injected {
            true => Err(sled::Error::Io(std::io::Error::other("injected by a test"))),
            false => match cursor > before {
                true => self
                    .db
                    .open_tree(PUBLISHED)
                    .and_then(|t| t.insert(cursor.to_be_bytes(), &crate::now_secs().to_be_bytes())),
                false => Ok(None),
            }
            .and_then(|_| self.meta.insert(CURSOR, &cursor.to_be_bytes())),
        };
        let saved = self.note_meta(saved);
        let filed = self.cursor_file.write(cursor);
        let failed = match (saved, filed) {
            (Err(_), Err(e)) => return Err(e.into()),
            (Err(e), Ok(())) => Some(format!("sled: {e}")),
            (Ok(_), Err(e)) => Some(format!("relay.cursor: {e}")),
            (Ok(_), Ok(())) => None,
        };
        let was_failing = self.saves_failing.swap(failed.is_some(), Ordering::Relaxed);
        if let (Some(why), false) = (failed, was_failing) {
            tracing::error!(error = %why, "a copy of the relay's position cannot be written; the relay goes on with the other");
        }
        Ok(())
    }

    /// The broker refused record `seq` (returned, nacked, or a channel closed over it).
    pub fn refused(&self, seq: u64, why: &str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        let r = refusals.entry(seq).or_default();
        r.count += 1;
        why.clone_into(&mut r.last_error);
    }

    /// How often and why the broker refused record `seq`, while it is not finished.
    pub fn refusals(&self, seq: u64) -> Option<Refusals> {
        if seq < self.cursor() {
            return None;
        }
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&seq)
            .cloned()
    }

    /// The broker confirmed record `seq`, which is past the cursor (an earlier record waits
    /// for a retry): it is published, whatever the cursor says (`events`, `replay`).
    pub fn published_ahead(&self, seq: u64) {
        if seq >= self.cursor() {
            self.published_ahead
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(seq);
        }
    }

    /// The records confirmed past the cursor ([`Store::published_ahead`]).
    pub fn published_past_cursor(&self) -> BTreeSet<u64> {
        self.published_ahead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps a copy of record `seq` as a dead letter (so retention may drop its segment).
    pub fn mark_dead(&self, seq: u64, entry: &Entry, info: &DeadInfo) -> Result<(), StoreError> {
        let mut frame = Vec::with_capacity(entry.body.len() + 256);
        entry.encode_frame(seq, &mut frame);
        let info = serde_json::to_vec(info).map_err(std::io::Error::other)?;
        let mut value = Vec::with_capacity(4 + info.len() + frame.len());
        value.extend_from_slice(&(info.len() as u32).to_be_bytes());
        value.extend_from_slice(&info);
        value.extend_from_slice(&frame[8..]);
        self.note_meta(self.dead.insert(seq.to_be_bytes(), value))?;
        // Retention may drop the record's segment once the cursor passes it.
        self.sled_files.sync(&self.db, true)?;
        Ok(())
    }

    /// Records whether a write to sled's metadata failed ([`Store::problem`]).
    pub(crate) fn note_meta<T, E: Into<StoreError>>(
        &self,
        r: Result<T, E>,
    ) -> Result<T, StoreError> {
        let r = r.map_err(Into::into);
        self.meta_failing.store(r.is_err(), Ordering::Relaxed);
        r
    }

    /// Dead letters, oldest first (the integration tests read them whole).
    pub fn dead_letters(&self) -> Result<Vec<(u64, Entry, DeadInfo)>, StoreError> {
        self.dead_letters_before(u64::MAX).collect()
    }

    /// The dead letters of records before `end` (those whose segment retention dropped, when
    /// `end` is the log's first record), oldest first (`.rev()`: newest first), decoded one at
    /// a time: the dead list can be as long as the log (a missing binding makes every event
    /// dead), so nothing reads it whole into memory.
    pub fn dead_letters_before(
        &self,
        end: u64,
    ) -> impl DoubleEndedIterator<Item = Result<(u64, Entry, DeadInfo), StoreError>> + '_ {
        self.dead
            .range(..end.to_be_bytes())
            .filter_map(|item| match item {
                Ok((_, v)) => dead_parts(&v).and_then(|(info, payload)| {
                    let info = serde_json::from_slice::<DeadInfo>(info).ok()?;
                    let (seq, e) = Entry::decode_payload(payload)?;
                    Some(Ok((seq, e, info)))
                }),
                Err(e) => Some(Err(e.into())),
            })
    }

    /// Why each dead letter is dead, by seq, without their envelopes: what telling a
    /// record's status needs.
    pub fn dead_infos(&self) -> Result<HashMap<u64, DeadInfo>, StoreError> {
        let mut out = HashMap::new();
        for item in self.dead.iter() {
            let (k, v) = item?;
            if let Some(info) = dead_parts(&v).and_then(|(i, _)| serde_json::from_slice(i).ok()) {
                out.insert(be_u64(&k), info);
            }
        }
        Ok(out)
    }

    pub fn dead_count(&self) -> usize {
        self.dead.len()
    }

    /// Accept time of the oldest pending record (Unix secs), if any. The relay says it while
    /// it has records in flight and saves; otherwise (a broker down, unreachable, blocking
    /// publishers, or refusing one record over and over: the very cases the age is watched
    /// for; it read 0 there, found by two reviews) it is read from the record at the cursor.
    /// A reader finds a record by reading its segment from the start, so that is done at most
    /// once per cursor position and once per [`OLDEST_REREAD`]: between two reads of a moving
    /// cursor it says nothing (the relay is working: the age is near 0).
    pub fn oldest_pending_at(&self) -> Option<u64> {
        if self.pending() == 0 {
            return None;
        }
        if let at @ 1.. = self.oldest_pending_at.load(Ordering::Relaxed) {
            return Some(at);
        }
        let cursor = self.cursor();
        let mut last = self
            .oldest_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some((at_cursor, Some(at), _)) if at_cursor == cursor => return Some(at),
            Some((_, _, read_at)) if read_at.elapsed() < OLDEST_REREAD => return None,
            _ => {}
        }
        // `None` when the record is not on disk yet (counted pending a moment before its
        // commit): read again after OLDEST_REREAD.
        let at = self
            .reader(cursor)
            .ok()
            .and_then(|mut r| r.next_record().ok().flatten())
            .map(|(_, _, e)| e.timestamp);
        *last = Some((cursor, at, std::time::Instant::now()));
        at
    }

    pub fn log_bytes(&self) -> u64 {
        self.log.bytes()
    }

    pub fn log_segments(&self) -> usize {
        self.log.segments().len()
    }

    /// Drops ids accepted more than the window ago from the dedup table, when worthwhile:
    /// at most once a minute (of `now_secs`) the table is counted, and rebuilt without its
    /// dead slots (expired or forgotten) when they are a quarter of it. Lookups never needed
    /// this (they check the window), nor do inserts (they reuse dead slots). Returns the dead
    /// slots dropped by every rebuild since the last call, growing ones included.
    pub fn sweep(&self, now_secs: u64) -> Result<usize, StoreError> {
        self.settle_index();
        self.index.seen.sweep(now_secs).map_err(StoreError::Table)
    }

    /// Syncs the dedup table, then records how far the log is indexed (in sled's `meta`), so
    /// a restart re-indexes only what came after.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.move_checkpoint().map(drop)
    }

    /// [`Store::checkpoint`]; whether the checkpoint now covers every record indexed (not
    /// while index writes fail).
    fn move_checkpoint(&self) -> Result<bool, StoreError> {
        self.settle_index();
        let upto = self.index.indexed_upto.load(Ordering::Acquire);
        self.index.seen.sync().map_err(StoreError::Table)?;
        // Records whose keys failed to reach the table count as indexed (the request path
        // goes on); only a start re-inserts them, from the last checkpoint before the failure.
        let indexed = !self.index.failing.load(Ordering::Relaxed);
        if indexed {
            // Never backwards: a checkpoint that read `upto` before a concurrent one
            // (forget's) wrote a later one must not undo it.
            self.note_meta(self.meta.fetch_and_update(CHECKPOINT, |old| {
                let old = old.map_or(0, be_u64);
                Some(old.max(upto).to_be_bytes().to_vec())
            }))?;
        }
        // Retention trusts this checkpoint to drop segments: it must not go back.
        self.sled_files.sync(&self.db, false)?;
        Ok(indexed)
    }

    /// Drops whole segments whose records are all published (or dead, kept in sled) and
    /// indexed, when older than `retain_secs` or beyond `retain_max_bytes`.
    pub fn retain(&self, now: SystemTime) -> std::io::Result<usize> {
        let cursor = self.cursor();
        let checkpoint = saved_checkpoint(&self.meta).unwrap_or(0);
        let mut bytes = self.log.bytes();
        let max_bytes = self.retain_max_bytes;
        let retain = Duration::from_secs(self.retain_secs);
        // Cursor saves of records no longer kept.
        if let (Ok(tree), Some(first)) = (
            self.db.open_tree(PUBLISHED),
            self.log.segments().first().map(|s| s.first),
        ) {
            for (k, _) in tree.range(..=first.to_be_bytes()).flatten() {
                let _ = tree.remove(k);
            }
        }
        self.log.drop_segments(|seg, next_first| {
            let last = next_first.saturating_sub(1);
            if last >= cursor || last > checkpoint {
                return false;
            }
            let old = self.retain_secs == 0
                || log::modified(seg)
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age >= retain);
            if old || bytes > max_bytes {
                bytes = bytes.saturating_sub(seg.bytes);
                true
            } else {
                false
            }
        })
    }

    /// Sweeps, checkpoints and applies retention every `every` until `cancel`.
    pub async fn run_maintenance(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        let mut last_checkpoint = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => return,
            }
            let store = self.clone();
            let checkpoint_due = last_checkpoint.elapsed() >= CHECKPOINT_EVERY;
            if checkpoint_due {
                last_checkpoint = std::time::Instant::now();
            }
            let done = tokio::task::spawn_blocking(move || {
                let swept = store.sweep(crate::now_secs());
                let checkpoint = match checkpoint_due {
                    true => {
                        let started = std::time::Instant::now();
                        let done = store.checkpoint();
                        crate::metrics::get()
                            .checkpoint_seconds
                            .observe(started.elapsed().as_secs_f64());
                        done
                    }
                    false => Ok(()),
                };
                let retained = store.retain(SystemTime::now());
                (swept, checkpoint, retained)
            })
            .await;
            match done {
                Ok((swept, checkpoint, retained)) => {
                    let m = crate::metrics::get();
                    if swept.is_err() {
                        m.store_error("sweep");
                    }
                    if checkpoint.is_err() {
                        m.store_error("checkpoint");
                    }
                    if retained.is_err() {
                        m.store_error("retention");
                    }
                    match swept {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(forgotten = n, "dedup sweep"),
                        Err(e) => tracing::warn!(error = %e, "dedup sweep failed"),
                    }
                    if let Err(e) = checkpoint {
                        tracing::warn!(error = %e, "store checkpoint failed");
                    }
                    match retained {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(segments = n, "event log retention"),
                        Err(e) => tracing::warn!(error = %e, "event log retention failed"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "store maintenance panicked"),
            }
        }
    }

    /// Records below this were published `store.retain_secs` ago or more (every published one
    /// with 0): no longer kept for inspection or replay, though retention, which deletes whole
    /// segments, may not have deleted their files yet.
    pub fn published_expired_below(&self, now_secs: u64) -> u64 {
        if self.retain_secs == 0 {
            return self.cursor();
        }
        self.published_before(now_secs.saturating_sub(self.retain_secs))
    }

    /// The seq below which every record was published at `cutoff` (Unix secs) or before, by
    /// the cursor saves' times.
    pub fn published_before(&self, cutoff: u64) -> u64 {
        let cursor = self.cursor();
        let Ok(tree) = self.db.open_tree(PUBLISHED) else {
            return 0;
        };
        // Cursor saves in order, their times growing with them: the expired ones come first
        // (and retention trims them with their segments, so there are few).
        let mut below = 0;
        for (k, v) in tree.iter().flatten() {
            if be_u64(&v) > cutoff {
                break;
            }
            below = be_u64(&k);
        }
        below.min(cursor)
    }

    /// When record `seq` was published, at the latest (the first cursor save past it); `None`
    /// while it is pending or when that save was trimmed with its segment.
    pub fn published_at(&self, seq: u64) -> Option<u64> {
        if seq >= self.cursor() {
            return None;
        }
        let tree = self.db.open_tree(PUBLISHED).ok()?;
        let (_, at) = tree.range((seq + 1).to_be_bytes()..).next()?.ok()?;
        Some(be_u64(&at))
    }

    /// Keeps a source's ring of recent refusals (JSON), replacing the previous one.
    pub fn put_rejections(&self, source: &str, json: &[u8]) -> Result<(), StoreError> {
        self.db
            .open_tree(REJECTIONS)?
            .insert(source.as_bytes(), json)?;
        Ok(())
    }

    /// Every source's kept ring of refusals.
    pub fn rejections(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.open_tree(REJECTIONS)?.iter() {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// Whether the store can take events (readiness): the log writes and the index answers.
    pub fn healthy(&self) -> bool {
        !self.log.failing()
            && self.log.committer_alive()
            && self.indexer_alive()
            && self.index.seen.check().is_ok()
    }

    /// Why the store is not healthy, for `/readyz`.
    pub fn problem(&self) -> Option<&'static str> {
        if !self.log.committer_alive() {
            Some(COMMITTER_STOPPED)
        } else if !self.indexer_alive() {
            Some(INDEXER_STOPPED)
        } else if self.log.failing() {
            Some("event log writes fail")
        } else {
            self.failing_until_restart()
        }
    }

    /// A failure only a restart mends, whatever else fails too: the dedup table's write-back
    /// or sled's writes (sled answers every write with its first I/O error until reopened; a
    /// lost write-back is reported by the kernel once, so a later fsync that succeeds proves
    /// nothing). The process stops for it after a grace (`app::StoreWatch`).
    pub fn failing_until_restart(&self) -> Option<&'static str> {
        if self.index.failing.load(Ordering::Relaxed) || self.index.seen.failed() {
            Some(INDEX_FAILING)
        } else if self.meta_failing.load(Ordering::Relaxed) || self.sled_files.lost() {
            Some(META_FAILING)
        } else {
            None
        }
    }

    /// Waits (briefly: the indexer gathers commits for [`INDEX_COALESCE`]) until every
    /// record on disk is indexed in the table, for the operations that read or change the index
    /// directly. Never on the request path, which also looks in the in-flight map.
    fn settle_index(&self) {
        self.settle_index_within(INDEX_COALESCE * 10);
    }

    /// [`Store::settle_index`] for at most `limit`; whether the index caught up.
    fn settle_index_within(&self, limit: Duration) -> bool {
        let target = self.log.durable_state().upto;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.index.indexed_upto.load(Ordering::Acquire) >= target {
                return true;
            }
            if std::time::Instant::now() >= deadline || !self.indexer_alive() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn indexer_alive(&self) -> bool {
        self.indexer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// Writes what is queued, stops the committer, checkpoints. Called once at shutdown.
    pub fn close(&self) {
        self.log.close();
        let indexer = self
            .indexer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = indexer {
            let _ = h.join();
        }
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "final store flush failed");
        }
    }
}

/// What inspection and replay ([`crate::inspect`]) need beyond the request path and the relay.
impl Store {
    /// First seq of every log segment, oldest first.
    pub fn segment_starts(&self) -> Vec<u64> {
        self.log.segments().iter().map(|s| s.first).collect()
    }

    /// Takes dead letter `seq` off the dead list once it was re-enqueued as record
    /// `replayed_as`; remembered in `dead_replayed` so the original is not shown as published.
    pub fn remove_dead(&self, seq: u64, replayed_as: u64) -> Result<bool, StoreError> {
        let replayed = self.db.open_tree(DEAD_REPLAYED)?;
        replayed.insert(seq.to_be_bytes(), &replayed_as.to_be_bytes())?;
        let removed = self.dead.remove(seq.to_be_bytes())?.is_some();
        self.sled_files.sync(&self.db, false)?;
        Ok(removed)
    }

    /// Dead letters that were replayed: original seq → seq of the replayed record.
    pub fn replayed_dead(&self) -> Result<HashMap<u64, u64>, StoreError> {
        let mut out = HashMap::new();
        for item in self.db.open_tree(DEAD_REPLAYED)?.iter() {
            let (k, v) = item?;
            out.insert(be_u64(&k), be_u64(&v));
        }
        Ok(out)
    }

    /// What a forget waits for. An id accepted a moment ago may still be on its way into the
    /// table: wait for the indexer (a rebuild can hold it for longer than `settle_index`
    /// waits). And a start re-inserts the keys of the records after the last checkpoint, which
    /// would bring back an id forgotten since: checkpoint past it first.
    pub fn settle_for_forget(&self) -> Result<(), StoreError> {
        if !self.settle_index_within(FORGET_SETTLE) || !self.move_checkpoint()? {
            return Err(StoreError::IndexBehind);
        }
        Ok(())
    }

    /// Removes `(source, id)` and the event's `content_keys` (Alipay, WeChat Pay v2: indexed
    /// beside the id, see [`keys`]) from the dedup index, so a redelivery is accepted again;
    /// returns the accept time the id (or else a content key) was indexed with, if it was.
    pub fn forget(
        &self,
        source: &str,
        id: &str,
        content_keys: &[String],
    ) -> Result<Option<u64>, StoreError> {
        self.settle_for_forget()?;
        self.forget_settled(source, id, content_keys)
    }

    /// [`Store::forget`] once [`Store::settle_for_forget`] has succeeded (a caller that reads
    /// the log in between, as `inspect::forget` does, settles once, not twice).
    pub fn forget_settled(
        &self,
        source: &str,
        id: &str,
        content_keys: &[String],
    ) -> Result<Option<u64>, StoreError> {
        let mut was = None;
        let id_key = dedup_key(source, 0, id);
        let content = content_keys.iter().map(|c| dedup_key(source, 1, c));
        for key in std::iter::once(id_key).chain(content) {
            let fp = self.index.seen.fingerprint(&key);
            let at = self.index.seen.forget(fp).map_err(StoreError::Table)?;
            was = was.or(at);
        }
        Ok(was)
    }
}

/// How often [`Store::oldest_pending_at`] may read the log for the record at the cursor.
const OLDEST_REREAD: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_secs(10)
};

/// `relay.cursor` in the store's directory: 16 bytes, `HGC1`, the cursor (u64 BE) and a
/// crc32 of both, rewritten in place with one `pwrite` (within one sector) at every cursor
/// save. Before it, the cursor reached disk only with sled's checkpoint, and a kill -9
/// republished up to 5 s of confirmed events (513–7,165 per chaos kill row).
struct CursorFile(std::fs::File);

impl CursorFile {
    const MAGIC: &'static [u8; 4] = b"HGC1";

    /// In the store's directory, which sled has made.
    fn open(dir: &Path) -> std::io::Result<CursorFile> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("relay.cursor"))?;
        Ok(CursorFile(f))
    }

    /// The saved cursor; `None` for a new, short or damaged file.
    fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        self.0.read_exact_at(&mut b, 0).ok()?;
        let crc = u32::from_be_bytes(b[12..].try_into().expect("4 bytes"));
        (&b[..4] == Self::MAGIC && crc32fast::hash(&b[..12]) == crc).then(|| be_u64(&b[4..12]))
    }

    fn write(&self, cursor: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(Self::MAGIC);
        b[4..12].copy_from_slice(&cursor.to_be_bytes());
        let crc = crc32fast::hash(&b[..12]);
        b[12..].copy_from_slice(&crc.to_be_bytes());
        self.0.write_all_at(&b, 0)
    }
}

/// How far the log is indexed in the table, by the last checkpoint (0: none yet).
/// sled's data file and blob directory. sled's own flush writes with `sync_file_range`:
/// neither the device's cache nor the file's size is made durable. What retention or the dedup
/// window relies on is synced here for real.
struct SledFiles {
    file: std::fs::File,
    blobs: PathBuf,
    /// A flush or an fsync failed: what sled wrote may not be on disk, until a restart.
    /// Not a file that could not be opened or listed (too many open files, say).
    lost: AtomicBool,
}

impl SledFiles {
    fn open(path: &Path) -> Result<SledFiles, StoreError> {
        Ok(SledFiles {
            file: std::fs::File::open(path.join("db")).map_err(sled::Error::Io)?,
            blobs: path.join("blobs"),
            lost: AtomicBool::new(false),
        })
    }

    /// Whether a flush or an fsync of sled's files failed since the start.
    fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// `r`, a flush or an fsync: its failure is recorded for good
    /// ([`Store::failing_until_restart`]).
    fn lost_if<T, E>(&self, r: Result<T, E>) -> Result<T, E> {
        if r.is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Flushes `db` and syncs its file. `with_blobs`: a value over sled's blob threshold (a
    /// large dead letter) is a file of its own in `blobs/` that sled never syncs, so those
    /// files and their directory are synced too (dead letters are rare, and so are blobs).
    fn sync(&self, db: &sled::Db, with_blobs: bool) -> Result<(), StoreError> {
        self.lost_if(db.flush())?;
        self.lost_if(self.file.sync_all())
            .map_err(sled::Error::Io)?;
        if !with_blobs {
            return Ok(());
        }
        let sync = |p: &Path| -> Result<(), sled::Error> {
            match std::fs::File::open(p) {
                Ok(f) => self.lost_if(f.sync_all()).map_err(sled::Error::Io),
                // Removed by sled since the listing (another dead letter replayed): nothing
                // of it to sync, and no failed write to report.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(sled::Error::Io(e)),
            }
        };
        match std::fs::read_dir(&self.blobs) {
            Ok(entries) => {
                for e in entries {
                    sync(&e.map_err(sled::Error::Io)?.path())?;
                }
                sync(&self.blobs)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(sled::Error::Io(e).into()),
        }
        Ok(())
    }
}

fn saved_checkpoint(meta: &sled::Tree) -> Result<u64, sled::Error> {
    Ok(meta.get(CHECKPOINT)?.map_or(0, |v| be_u64(&v)))
}

fn log_dir(path: &Path) -> PathBuf {
    path.join("log")
}

/// The dedup keys of an entry: `source \0 id`, and `source \1 content_key` where present.
fn keys(e: &Entry) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(2);
    out.push(dedup_key(&e.source, 0, &e.message_id));
    if let Some(c) = &e.content_key {
        out.push(dedup_key(&e.source, 1, c));
    }
    out
}

/// `source sep value`: `sep` 0 for an id, 1 for a content key.
fn dedup_key(source: &str, sep: u8, v: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + v.len());
    k.extend_from_slice(source.as_bytes());
    k.push(sep);
    k.extend_from_slice(v.as_bytes());
    k
}

/// A store of the previous version kept the dedup index in sled: `seen` (key → accept time,
/// u64 BE) and `expiry`. Copies `seen` into the table (up to sled's checkpoint, which stays
/// valid; the record's seq is not known there: 0), syncs it, then drops both trees.
fn upgrade_sled_index(db: &sled::Db, seen: &Seen) -> Result<usize, StoreError> {
    let tree = db.open_tree("seen")?;
    let mut items = Vec::new();
    let mut n = 0;
    for item in tree.iter() {
        let (k, v) = item?;
        items.push((seen.fingerprint(&k), be_u64(&v), 0));
        if items.len() >= INDEX_BATCH_MAX {
            seen.insert(&items).map_err(StoreError::Table)?;
            items.clear();
        }
        n += 1;
    }
    seen.insert(&items).map_err(StoreError::Table)?;
    // The table first: a crash before the trees are gone copies them again (an insert keeps
    // the later acceptance), one after finds them gone.
    seen.sync().map_err(StoreError::Table)?;
    drop(tree);
    db.drop_tree("seen")?;
    db.drop_tree("expiry")?;
    db.flush()?;
    tracing::info!(keys = n, "dedup index moved from sled to the dedup table");
    Ok(n)
}

/// A dead letter's value: `[info length: u32 BE][DeadInfo JSON][record payload]` (see
/// [`Store::mark_dead`]), split into the info and the payload.
fn dead_parts(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u32::from_be_bytes(v.get(..4)?.try_into().ok()?) as usize;
    Some((v.get(4..4 + n)?, v.get(4 + n..)?))
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// An outbox entry as hookgate 0.1 wrote it (version byte 1).
fn decode_v1(bytes: &[u8]) -> Option<Entry> {
    let (&version, rest) = bytes.split_first()?;
    if version != 1 || rest.len() < 8 {
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
    Some(Entry {
        routing_key,
        message_id,
        kind,
        source,
        provider,
        content_key: None,
        timestamp,
        replay: false,
        body: rest.to_vec(),
    })
}

#[cfg(test)]
mod tests;
