//! `cargo bench --bench eventlog`: where envelopes should live, decided by measurement
//! (issue #10, docs/event-log.md).
//!
//! One workload for every candidate: ~7 KB GitHub push envelopes with unique ids, 64 writers
//! (tokio tasks on 2 worker threads, each a current-thread runtime with a `LocalSet` as in
//! actix-web: `Store::accept`'s future is not `Send`), then a single writer; an
//! acknowledgement only once the event is on disk (fsync/fdatasync) and after its dedup
//! decision. The 64-writer row runs 3 rounds (rotating which candidate goes first) and prints
//! medians with the events/s spread; the single-writer row runs once. Candidates:
//!
//! - `sled outbox (0.1)`: one sled transaction over `seen` + `expiry` + `outbox`, then a
//!   group-commit `db.flush()` on `spawn_blocking` shared by concurrent writers (as 0.1 did).
//!   sled 0.34's flush ends in `sync_file_range` on Linux, not an fsync, so a second row adds
//!   an `fdatasync` of sled's file after each group flush (the guarantee of the others).
//! - `event log (Store)`: `hookgate::store::Store::accept`, the real thing.
//! - `redb`: one writer thread, one `Durability::Immediate` transaction per batch of queued
//!   events (group commit through a channel).
//! - `fjall`: the same writer thread, one batch per queue drain, then `PersistMode::SyncData`.
//! - `log w/o index`: `hookgate::log::Log` alone, no dedup (diagnostic: what the index costs).
//! - baseline: one thread, `write` + `fdatasync` of the same encoded frames to one file, as
//!   many frames per sync as there are writers. No coordination at all: the floor.
//!
//! Printed per row: events/s, CPU µs per event (getrusage user+sys, whole process, from the
//! first append to the last acknowledgement), voluntary and involuntary context switches per
//! event (a proxy for thread hand-offs), bytes the process wrote per event (/proc/self/io
//! `write_bytes`, through close), bytes allocated on disk per event after close, and the
//! ratios to the baseline of the same row. No timing assertions.
//!
//! `EVENTLOG_ONLY=<part of a name>` runs the baseline and the matching candidates only.
//!
//! Data goes under `$EVENTLOG_BENCH_DIR`, else `$CARGO_TARGET_DIR`, else `target/` (never a
//! tmpfs: the point is the real disk's fsync); every directory is removed afterwards.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hookgate::commit_delay::CommitDelay;

use hookgate::config::StoreConfig;
use hookgate::log::Log;
use hookgate::store::{Accepted, Entry, Store};
use rand::{Rng, SeedableRng};
use redb::ReadableTable;
use serde_json::json;
use sled::transaction::{ConflictableTransactionError, Transactional};
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

/// Concurrent writers of the "many" row.
const WRITERS: usize = 64;
/// Events per candidate, per row (bounded further by `TIME_CAP`).
const EVENTS_MANY: u64 = 10_000;
const EVENTS_ONE: u64 = 1_000;
/// Rounds of the 64-writer row (the single-writer row runs once).
const ROUNDS: usize = 3;
/// No candidate runs longer than this per round (keeps the whole bench under ~2 minutes).
const TIME_CAP: Duration = Duration::from_secs(5);
/// Distinct push bodies cycled through (ids stay unique per event).
const BODIES: usize = 64;
const WINDOW_SECS: u64 = 604_800;

// ---------------------------------------------------------------------------------------------
// Workload

/// A GitHub `push` delivery of about 7 KB, as GitHub sends it (hex shas, URLs, commits).
fn push_body(rng: &mut impl Rng) -> Vec<u8> {
    let sha = |rng: &mut dyn rand::RngCore| {
        let mut b = [0u8; 20];
        rng.fill_bytes(&mut b);
        hex::encode(b)
    };
    let repo = "acme/payments-service";
    let user = json!({"name": "Jane Doe", "email": "jane.doe@example.com", "username": "jdoe"});
    let mut commits = Vec::new();
    let mut body = Vec::new();
    while body.len() < 7 * 1024 - 700 {
        let id = sha(rng);
        commits.push(json!({
            "id": id, "tree_id": sha(rng), "distinct": true,
            "message": format!("Fix rounding of refunds in settlement batch #{}\n\nThe \
                 settlement job summed minor units as floats; use integers throughout.",
                 rng.gen_range(1000..9999)),
            "timestamp": "2025-05-14T09:21:07+02:00",
            "url": format!("https://github.com/{repo}/commit/{id}"),
            "author": user, "committer": user,
            "added": ["src/settlement/refund.rs"],
            "removed": [],
            "modified": ["src/settlement/batch.rs", "src/settlement/mod.rs", "CHANGELOG.md"],
        }));
        let (before, after) = (sha(rng), sha(rng));
        let v = json!({
            "ref": "refs/heads/main", "before": before, "after": after,
            "repository": {
                "id": 612_345_678, "node_id": "R_kgDOJHxyzQ", "name": "payments-service",
                "full_name": repo, "private": true,
                "owner": {"name": "acme", "login": "acme", "id": 1_234_567,
                          "url": "https://api.github.com/users/acme", "type": "Organization"},
                "html_url": format!("https://github.com/{repo}"),
                "url": format!("https://github.com/{repo}"),
                "git_url": format!("git://github.com/{repo}.git"),
                "ssh_url": format!("git@github.com:{repo}.git"),
                "clone_url": format!("https://github.com/{repo}.git"),
                "default_branch": "main", "master_branch": "main",
                "created_at": 1_678_901_234, "pushed_at": 1_747_207_267,
                "size": 18_342, "language": "Rust", "visibility": "private",
            },
            "pusher": {"name": "jdoe", "email": "jane.doe@example.com"},
            "organization": {"login": "acme", "id": 1_234_567,
                             "url": "https://api.github.com/orgs/acme"},
            "sender": {"login": "jdoe", "id": 7_654_321, "type": "User", "site_admin": false},
            "created": false, "deleted": false, "forced": false, "base_ref": null,
            "compare": format!("https://github.com/{repo}/compare/{}...{}", &before[..12], &after[..12]),
            "commits": commits,
            "head_commit": commits.last(),
        });
        // The CloudEvents envelope hookgate keeps around it.
        let envelope = json!({
            "specversion": "1.0", "type": "com.github.push", "source": "github",
            "id": "00000000-0000-0000-0000-000000000000", "time": "2025-05-14T07:21:07Z",
            "datacontenttype": "application/json", "data": v,
        });
        body = serde_json::to_vec(&envelope).expect("json");
    }
    body
}

struct Workload {
    bodies: Vec<Vec<u8>>,
}

impl Workload {
    fn new() -> Workload {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        Workload {
            bodies: (0..BODIES).map(|_| push_body(&mut rng)).collect(),
        }
    }

    /// Event `i` of run `run` (ids unique across the whole process).
    fn entry(&self, run: u64, i: u64, now: u64) -> Entry {
        Entry {
            routing_key: "github.push".into(),
            message_id: format!("{run:08x}-{i:012x}-4f1c-9b2a-6d1e5c3b7a90"),
            kind: "com.github.push".into(),
            source: "github".into(),
            provider: "github".into(),
            content_key: None,
            timestamp: now,
            replay: false,
            body: self.bodies[i as usize % BODIES].clone(),
        }
    }

    fn mean_body(&self) -> f64 {
        self.bodies.iter().map(Vec::len).sum::<usize>() as f64 / BODIES as f64
    }
}

fn dedup_key(e: &Entry) -> Vec<u8> {
    let mut k = Vec::with_capacity(e.source.len() + 1 + e.message_id.len());
    k.extend_from_slice(e.source.as_bytes());
    k.push(0);
    k.extend_from_slice(e.message_id.as_bytes());
    k
}

fn expiry_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// The stored value of the key-value candidates: the same bytes the log writes, less the
/// frame header (length and crc are the store's business there).
fn value_of(e: &Entry) -> Vec<u8> {
    let mut v = Vec::with_capacity(e.body.len() + 128);
    e.encode_frame(0, &mut v);
    v.drain(..8);
    v
}

// ---------------------------------------------------------------------------------------------
// Measurement

#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    nvcsw: i64,
    nivcsw: i64,
}

fn usage() -> Usage {
    // SAFETY: getrusage only writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        nvcsw: ru.ru_nvcsw,
        nivcsw: ru.ru_nivcsw,
    }
}

/// Bytes this process sent (or dirtied for) the block layer; 0 where /proc/self/io is absent.
fn write_bytes() -> u64 {
    fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes allocated on disk under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

struct Row {
    name: &'static str,
    events: u64,
    secs: f64,
    /// Lowest and highest events/s over the rounds.
    eps_range: (f64, f64),
    cpu_us: f64,
    vcs: f64,
    ivcs: f64,
    written: f64,
    disk: f64,
}

impl Row {
    fn eps(&self) -> f64 {
        self.events as f64 / self.secs
    }
}

/// Each figure's median over the rounds (events/s and its spread from the per-round rates).
fn median(mut rows: Vec<Row>) -> Row {
    fn mid(rows: &[Row], f: impl Fn(&Row) -> f64) -> f64 {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let eps = mid(&rows, Row::eps);
    let lo = rows.iter().map(Row::eps).fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(Row::eps).fold(0.0, f64::max);
    let events = rows.iter().map(|r| r.events).min().unwrap_or(0);
    let row = Row {
        name: rows[0].name,
        events,
        secs: events as f64 / eps,
        eps_range: (lo, hi),
        cpu_us: mid(&rows, |r| r.cpu_us),
        vcs: mid(&rows, |r| r.vcs),
        ivcs: mid(&rows, |r| r.ivcs),
        written: mid(&rows, |r| r.written),
        disk: mid(&rows, |r| r.disk),
    };
    rows.clear();
    row
}

/// One candidate's whole run in a fresh directory.
type Candidate<'a> = Box<dyn Fn(&Path) -> Timed + 'a>;

/// What a candidate's timed part returns: events done, the instant and usage at the last ack.
struct Timed {
    events: u64,
    start: (Instant, Usage),
    end: (Instant, Usage),
}

/// Runs `make` (open the store, run the writers, close) in a fresh directory and makes a row.
fn measure(name: &'static str, root: &Path, make: impl FnOnce(&Path) -> Timed) -> Row {
    let dir = tempfile::Builder::new()
        .prefix("eventlog-bench-")
        .tempdir_in(root)
        .expect("bench dir");
    let before = write_bytes();
    let t = make(dir.path());
    let written = write_bytes().saturating_sub(before);
    let disk = disk_bytes(dir.path());
    drop(dir);
    let (u0, u1) = (t.start.1, t.end.1);
    let n = t.events.max(1) as f64;
    Row {
        name,
        events: t.events,
        secs: (t.end.0 - t.start.0).as_secs_f64(),
        eps_range: (0.0, 0.0),
        cpu_us: (u1.cpu - u0.cpu).as_secs_f64() * 1e6 / n,
        vcs: (u1.nvcsw - u0.nvcsw) as f64 / n,
        ivcs: (u1.nivcsw - u0.nivcsw) as f64 / n,
        written: written as f64 / n,
        disk: disk as f64 / n,
    }
}

/// A worker like actix-web's (hookgate's server): a current-thread runtime with a `LocalSet`.
/// `Store::accept`'s future is not `Send`, so the writers cannot be `tokio::spawn`ed on a
/// multi-thread runtime; two such workers are the "2-thread runtime" of this bench.
const WORKER_THREADS: usize = 2;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

static RUN: AtomicU64 = AtomicU64::new(0);

/// `writers` tasks, spread over [`WORKER_THREADS`] workers, accept events through `accept`
/// until `events` are done or the time cap.
fn drive<F, Fut>(w: &Arc<Workload>, writers: usize, events: u64, accept: F) -> Timed
where
    F: Fn(Entry, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Accepted> + 'static,
{
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let now = hookgate::now_secs();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let go = Arc::new(std::sync::Barrier::new(WORKER_THREADS + 1));
    // Runtimes start in well under a millisecond: the cap may as well start now.
    let cap = Instant::now() + TIME_CAP;
    let threads: Vec<_> = (0..WORKER_THREADS)
        .map(|t| {
            let tasks = writers / WORKER_THREADS + usize::from(t < writers % WORKER_THREADS);
            let (w, next, done, go, accept) = (
                w.clone(),
                next.clone(),
                done.clone(),
                go.clone(),
                accept.clone(),
            );
            std::thread::spawn(move || {
                let rt = current_thread();
                let local = tokio::task::LocalSet::new();
                go.wait();
                local.block_on(&rt, async move {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let (w, next, done, accept) =
                                (w.clone(), next.clone(), done.clone(), accept.clone());
                            tokio::task::spawn_local(async move {
                                loop {
                                    let i = next.fetch_add(1, Ordering::Relaxed);
                                    if i >= events || Instant::now() >= cap {
                                        break;
                                    }
                                    let got = accept(w.entry(run, i, now), now).await;
                                    assert_eq!(got, Accepted::New, "unique ids are all new");
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("writer");
                    }
                });
            })
        })
        .collect();
    go.wait();
    let start = (Instant::now(), usage());
    for t in threads {
        t.join().expect("worker");
    }
    let end = (Instant::now(), usage());
    Timed {
        events: done.load(Ordering::Relaxed),
        start,
        end,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. sled outbox, as hookgate 0.1 kept it

struct SledOutbox {
    db: sled::Db,
    seen: sled::Tree,
    expiry: sled::Tree,
    outbox: sled::Tree,
    written: AtomicU64,
    wake: Notify,
    durable: watch::Sender<u64>,
    /// sled 0.34's `flush` ends in `sync_file_range` on Linux, not `fsync`: it neither commits
    /// the file's metadata nor flushes the device's write cache. With this, each group flush is
    /// followed by an `fdatasync` of sled's file, the guarantee every other candidate gives.
    fdatasync: Option<std::fs::File>,
}

impl SledOutbox {
    fn open(dir: &Path, fdatasync: bool) -> SledOutbox {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(1000))
            .cache_capacity(256 << 20)
            .open()
            .expect("sled");
        SledOutbox {
            seen: db.open_tree("seen").expect("tree"),
            expiry: db.open_tree("expiry").expect("tree"),
            outbox: db.open_tree("outbox").expect("tree"),
            db,
            written: AtomicU64::new(0),
            wake: Notify::new(),
            durable: watch::Sender::new(0),
            fdatasync: fdatasync.then(|| std::fs::File::open(dir.join("db")).expect("sled file")),
        }
    }

    async fn accept(&self, e: &Entry, now: u64) -> Accepted {
        let key = dedup_key(e);
        let value = value_of(e);
        let accepted = (&self.seen, &self.expiry, &self.outbox)
            .transaction(|(seen, expiry, outbox)| {
                if let Some(old) = seen.get(&key)? {
                    let at = be_u64(&old);
                    if at.saturating_add(WINDOW_SECS) > now {
                        return Ok(Accepted::Duplicate);
                    }
                    expiry.remove(expiry_key(at, &key))?;
                }
                seen.insert(key.as_slice(), &now.to_be_bytes())?;
                expiry.insert(expiry_key(now, &key), &[])?;
                let seq = outbox.generate_id()?;
                outbox.insert(&seq.to_be_bytes(), value.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(Accepted::New)
            })
            .expect("sled transaction");
        let ticket = self.written.fetch_add(1, Ordering::AcqRel) + 1;
        let mut rx = self.durable.subscribe();
        self.wake.notify_one();
        rx.wait_for(|d| *d >= ticket).await.expect("flusher");
        accepted
    }

    async fn flusher(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let target = self.written.load(Ordering::Acquire);
            if target <= *self.durable.borrow() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = cancel.cancelled() => return,
                }
            }
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                me.db.flush().expect("sled flush");
                if let Some(f) = &me.fdatasync {
                    f.sync_data().expect("fdatasync");
                }
            })
            .await
            .expect("flush task");
            self.durable.send_replace(target);
        }
    }
}

fn run_sled(dir: &Path, w: &Arc<Workload>, writers: usize, events: u64, fsync: bool) -> Timed {
    let s = Arc::new(SledOutbox::open(dir, fsync));
    let cancel = CancellationToken::new();
    // 0.1 ran the flusher on the actix System's runtime (the main thread), beside the workers.
    let flusher = {
        let (s, cancel) = (s.clone(), cancel.clone());
        std::thread::spawn(move || current_thread().block_on(s.flusher(cancel)))
    };
    let t = {
        let s = s.clone();
        drive(w, writers, events, move |e, now| {
            let s = s.clone();
            async move { s.accept(&e, now).await }
        })
    };
    cancel.cancel();
    flusher.join().expect("flusher");
    let s = Arc::into_inner(s).expect("last handle");
    s.db.flush().expect("final flush");
    t
}

// ---------------------------------------------------------------------------------------------
// 2. hookgate's event log, through the real Store

/// Segments larger than a run: at the time of writing, `Committer::roll` (src/log.rs) opens the
/// next segment with `truncate(true)` + `append(true)`, which std refuses (EINVAL), so the log
/// stops taking writes once the first 64 MiB segment is full. The bench must not roll.
const SEGMENT_BYTES: u64 = 1 << 30;

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.to_owned(),
        dedup_window_secs: WINDOW_SECS,
        max_outbox_entries: u64::MAX,
        retain_secs: 259_200,
        retain_max_bytes: 10 << 30,
        segment_bytes: SEGMENT_BYTES,
        // As the other candidates: a commit never waits for more records.
        commit_delay_us: 0,
    }
}

fn run_store(dir: &Path, w: &Arc<Workload>, writers: usize, events: u64) -> Timed {
    let store = Arc::new(Store::open(&store_config(dir)).expect("store"));
    let t = {
        let store = store.clone();
        drive(w, writers, events, move |e, now| {
            let store = store.clone();
            async move {
                store
                    .accept(&e, now, Duration::from_secs(60))
                    .await
                    .expect("accept")
            }
        })
    };
    store.close();
    t
}

/// The log alone, no dedup index: not the workload (no dedup decision), a diagnostic of what
/// the index adds.
fn run_log_only(dir: &Path, w: &Arc<Workload>, writers: usize, events: u64) -> Timed {
    let (log, _) =
        Log::<()>::open(dir, SEGMENT_BYTES, 1, CommitDelay::never(), |_| {}).expect("log");
    let log = Arc::new(log);
    let t = {
        let log = log.clone();
        drive(w, writers, events, move |e, _| {
            let log = log.clone();
            async move {
                let seq = log.append(&e, ()).expect("append");
                log.durable(seq).await.expect("durable");
                Accepted::New
            }
        })
    };
    log.close();
    t
}

// ---------------------------------------------------------------------------------------------
// 3. redb and fjall: one writer thread, one commit per drain of the queue (group commit)

struct Req {
    key: Vec<u8>,
    value: Vec<u8>,
    now: u64,
    reply: oneshot::Sender<Accepted>,
}

/// Runs `commit` on a writer thread for every batch of requests queued while the last ran.
fn group_committer(
    mut commit: impl FnMut(&[Req]) -> Vec<Accepted> + Send + 'static,
) -> (mpsc::Sender<Req>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Req>();
    let handle = std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let results = commit(&batch);
            for (r, a) in batch.into_iter().zip(results) {
                let _ = r.reply.send(a);
            }
        }
    });
    (tx, handle)
}

fn drive_channel(tx: mpsc::Sender<Req>, w: &Arc<Workload>, writers: usize, events: u64) -> Timed {
    drive(w, writers, events, move |e, now| {
        let tx = tx.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            let req = Req {
                key: dedup_key(&e),
                value: value_of(&e),
                now,
                reply,
            };
            tx.send(req).expect("writer thread");
            rx.await.expect("reply")
        }
    })
}

const SEEN: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("seen");
const EXPIRY: redb::TableDefinition<&[u8], ()> = redb::TableDefinition::new("expiry");
const OUTBOX: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("outbox");

fn run_redb(dir: &Path, w: &Arc<Workload>, writers: usize, events: u64) -> Timed {
    let db = redb::Database::create(dir.join("events.redb")).expect("redb");
    let mut seq = 0u64;
    let (tx, handle) = group_committer(move |batch| {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(redb::Durability::Immediate);
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut seen = txn.open_table(SEEN).expect("seen");
            let mut expiry = txn.open_table(EXPIRY).expect("expiry");
            let mut outbox = txn.open_table(OUTBOX).expect("outbox");
            for r in batch {
                let old = seen.get(r.key.as_slice()).expect("get").map(|v| v.value());
                if old.is_some_and(|at| at.saturating_add(WINDOW_SECS) > r.now) {
                    out.push(Accepted::Duplicate);
                    continue;
                }
                if let Some(at) = old {
                    expiry
                        .remove(expiry_key(at, &r.key).as_slice())
                        .expect("rm");
                }
                seen.insert(r.key.as_slice(), r.now).expect("seen");
                expiry
                    .insert(expiry_key(r.now, &r.key).as_slice(), ())
                    .expect("expiry");
                seq += 1;
                outbox.insert(seq, r.value.as_slice()).expect("outbox");
                out.push(Accepted::New);
            }
        }
        txn.commit().expect("commit");
        out
    });
    let t = drive_channel(tx, w, writers, events);
    handle.join().expect("writer thread");
    t
}

fn run_fjall(dir: &Path, w: &Arc<Workload>, writers: usize, events: u64) -> Timed {
    let ks = fjall::Config::new(dir)
        .manual_journal_persist(true)
        .open()
        .expect("fjall");
    let opts = fjall::PartitionCreateOptions::default;
    let seen = ks.open_partition("seen", opts()).expect("seen");
    let expiry = ks.open_partition("expiry", opts()).expect("expiry");
    // Key-value separation: fjall's advice for large values (keeps 7 KB blobs out of the LSM).
    let outbox = ks
        .open_partition(
            "outbox",
            opts().with_kv_separation(fjall::KvSeparationOptions::default()),
        )
        .expect("outbox");
    let mut seq = 0u64;
    let ks2 = ks.clone();
    let (tx, handle) = group_committer(move |batch| {
        let mut b = ks2.batch();
        let mut in_batch = HashSet::new();
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            let old = seen.get(&r.key).expect("get").map(|v| be_u64(&v));
            if !in_batch.insert(r.key.as_slice())
                || old.is_some_and(|at| at.saturating_add(WINDOW_SECS) > r.now)
            {
                out.push(Accepted::Duplicate);
                continue;
            }
            if let Some(at) = old {
                b.remove(&expiry, expiry_key(at, &r.key));
            }
            b.insert(&seen, r.key.as_slice(), r.now.to_be_bytes());
            b.insert(&expiry, expiry_key(r.now, &r.key), []);
            seq += 1;
            b.insert(&outbox, seq.to_be_bytes(), r.value.as_slice());
            out.push(Accepted::New);
        }
        b.commit().expect("batch");
        ks2.persist(fjall::PersistMode::SyncData).expect("persist");
        out
    });
    let t = drive_channel(tx, w, writers, events);
    handle.join().expect("writer thread");
    ks.persist(fjall::PersistMode::SyncAll)
        .expect("final persist");
    drop(ks);
    t
}

// ---------------------------------------------------------------------------------------------
// 4. Baseline: the same frames, write + fdatasync, one thread, `batch` frames per sync

fn run_baseline(dir: &Path, w: &Arc<Workload>, batch: usize, events: u64) -> Timed {
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let now = hookgate::now_secs();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("baseline.seg"))
        .expect("file");
    let mut buf = Vec::new();
    let start = (Instant::now(), usage());
    let cap = start.0 + TIME_CAP;
    let mut i = 0;
    while i < events && Instant::now() < cap {
        buf.clear();
        let n = (batch as u64).min(events - i);
        for j in i..i + n {
            w.entry(run, j, now).encode_frame(j + 1, &mut buf);
        }
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        i += n;
    }
    let end = (Instant::now(), usage());
    Timed {
        events: i,
        start,
        end,
    }
}

// ---------------------------------------------------------------------------------------------

fn bench_root() -> PathBuf {
    let root = std::env::var_os("EVENTLOG_BENCH_DIR")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    fs::create_dir_all(&root).expect("bench root");
    root
}

/// The file system type under `root` (statfs magic), to refuse a tmpfs silently skewing fsync.
fn fs_kind(root: &Path) -> &'static str {
    let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statfs writes into the struct we pass; `c` is a valid C string.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return "unknown";
        }
        st
    };
    match st.f_type as i64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        _ => "other",
    }
}

/// Ratios are against the first row, the baseline.
fn print_table(title: &str, rows: &[Row], envelope: f64) {
    let (base_eps, base_cpu) = (rows[0].eps(), rows[0].cpu_us);
    println!("\n{title}");
    println!(
        "| store | events | events/s (min–max) | × base | CPU µs/ev | × base | vol. cs/ev | invol. cs/ev | written B/ev | disk B/ev | disk ÷ envelope |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} ({:.0}–{:.0}) | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |",
            r.name,
            r.events,
            r.eps(),
            r.eps_range.0,
            r.eps_range.1,
            r.eps() / base_eps,
            r.cpu_us,
            r.cpu_us / base_cpu,
            r.vcs,
            r.ivcs,
            r.written,
            r.disk,
            r.disk / envelope,
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse. The stores' own errors go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let root = bench_root();
    let kind = fs_kind(&root);
    let w = Arc::new(Workload::new());
    let envelope = w.mean_body();
    println!(
        "eventlog bench: {} B mean envelope, data under {} ({kind}), {} cores",
        envelope as u64,
        root.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if kind == "tmpfs" {
        println!("WARNING: tmpfs: fsync is free here, the numbers say nothing about a disk");
    }
    println!("load average at start: {}", loadavg());
    for (writers, events, rounds) in [(WRITERS, EVENTS_MANY, ROUNDS), (1, EVENTS_ONE, 1)] {
        let w = &w;
        let candidates: Vec<(&'static str, Candidate)> = vec![
            (
                "baseline: write+fdatasync",
                Box::new(move |d| run_baseline(d, w, writers, events)),
            ),
            (
                "sled outbox (0.1, sync_file_range)",
                Box::new(move |d| run_sled(d, w, writers, events, false)),
            ),
            (
                "sled outbox + fdatasync",
                Box::new(move |d| run_sled(d, w, writers, events, true)),
            ),
            (
                "event log (Store)",
                Box::new(move |d| run_store(d, w, writers, events)),
            ),
            ("redb 2", Box::new(move |d| run_redb(d, w, writers, events))),
            (
                "fjall 2",
                Box::new(move |d| run_fjall(d, w, writers, events)),
            ),
            (
                "log w/o index (diag.)",
                Box::new(move |d| run_log_only(d, w, writers, events)),
            ),
        ];
        // `EVENTLOG_ONLY=fjall` runs the baseline and the candidates whose name contains it.
        let only = std::env::var("EVENTLOG_ONLY").unwrap_or_default();
        let candidates: Vec<_> = candidates
            .into_iter()
            .enumerate()
            .filter(|(i, (name, _))| *i == 0 || name.contains(only.as_str()))
            .map(|(_, c)| c)
            .collect();
        let mut samples: Vec<Vec<Row>> = candidates.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            // A different candidate goes first each round: the disk is shared and drifts.
            for k in 0..candidates.len() {
                let i = (k + round) % candidates.len();
                let (name, run) = &candidates[i];
                samples[i].push(measure(name, &root, run));
            }
        }
        let rows: Vec<Row> = samples.into_iter().map(median).collect();
        let title = format!(
            "{writers} writer(s) on 2 worker threads, {events} events, median of {rounds} round(s); \
             baseline syncs {writers} frame(s) per fdatasync"
        );
        print_table(&title, &rows, envelope);
    }
    println!("\nload average at end: {}", loadavg());
}

/// Other work on the machine skews fsync latency: say how busy it was.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
