use super::*;

fn config(dir: &Path, max: u64) -> StoreConfig {
    StoreConfig {
        path: dir.join("store"),
        dedup_window_secs: 100,
        max_outbox_entries: max,
        retain_secs: 3600,
        retain_max_bytes: 1 << 30,
        segment_bytes: 4096,
        commit_delay_us: 0,
    }
}

fn entry(id: &str) -> Entry {
    let body = format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "p".repeat(500));
    Entry::test_push(id, 1000, body.into_bytes())
}

const T: Duration = Duration::from_secs(5);

async fn accept(s: &Store, e: &Entry, now: u64) -> Accepted {
    s.accept(e, now, T).await.unwrap()
}

/// The store at `cfg`. A reopen in the same process waits while sled's background threads of
/// the last handle still hold its lock (as the gateway's own restart does, `open_waiting`):
/// under a loaded test run they can outlive the handle by more than an instant.
fn open_store(cfg: &StoreConfig) -> Store {
    Store::open_waiting(cfg, Duration::from_secs(10)).unwrap()
}

/// sled's own handle on a store closed in this process: as [`open_store`], waits while the
/// last handle's background threads still hold its lock (a flaky failure under load).
fn sled_reopened(path: &Path) -> sled::Db {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("reopening sled at {}: {e}", path.display()),
        }
    }
}

/// Waits (boundedly) until the indexer has every record on disk in the table: `accept`
/// returns once its record is durable, before the indexer (another thread, after a 20 ms
/// gather) has written its keys, and `checkpoint` or `sweep` wait for it 200 ms at most.
fn indexed(s: &Store) {
    assert!(
        s.settle_index_within(Duration::from_secs(10)),
        "not indexed"
    );
}

/// A store at `cfg` that accepted `ids` at time 1000, then closed.
async fn closed_with(cfg: &StoreConfig, ids: &[&str]) {
    let s = open_store(cfg);
    for id in ids {
        accept(&s, &entry(id), 1000).await;
    }
    s.close();
}

fn pending_ids(s: &Store) -> Vec<String> {
    let mut r = s.reader(s.cursor()).unwrap();
    let mut out = Vec::new();
    while let Some((_, _, e)) = r.next_record().unwrap() {
        out.push(e.message_id);
    }
    out
}

/// A table refilled from the whole log: a kill during the refill must not leave the old
/// checkpoint for the next start to trust.
#[tokio::test]
async fn a_lost_table_resets_the_checkpoint_before_it_is_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 10);
    closed_with(&cfg, &["a", "b"]).await;
    std::fs::remove_file(cfg.path.join(seen::FILE)).unwrap();
    let s = open_store(&cfg);
    assert_eq!(saved_checkpoint(&s.meta).unwrap(), 0);
    assert_eq!(accept(&s, &entry("a"), 1001).await, Accepted::Duplicate);
    s.checkpoint().unwrap();
    assert_eq!(saved_checkpoint(&s.meta).unwrap(), 2);
}

/// `id` is a duplicate in `s`, and again once `s` is closed and its store (in `dir`) reopened.
async fn a_duplicate_now_and_after_a_restart(s: Store, dir: &Path, id: &str) {
    assert_eq!(accept(&s, &entry(id), 1001).await, Accepted::Duplicate);
    s.close();
    drop(s);
    let s = open_store(&config(dir, 10));
    assert_eq!(accept(&s, &entry(id), 1002).await, Accepted::Duplicate);
}

/// A record whose keys the indexer could not write stays in the in-flight map: its id is a
/// duplicate until a restart re-indexes it from the log.
#[tokio::test]
async fn an_id_whose_index_write_failed_stays_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    s.index.seen.fail_inserts.store(true, Ordering::Relaxed);
    assert!(matches!(
        s.accept(&entry("b"), 1000, Duration::from_secs(5)).await,
        Ok(Accepted::New)
    ));
    indexed(&s);
    assert!(
        s.index.failing.load(Ordering::Relaxed),
        "the failed index write shows"
    );
    // Its keys are not in the table; the in-flight map keeps them until a restart re-indexes.
    a_duplicate_now_and_after_a_restart(s, dir.path(), "b").await;
}

/// A failed write-back of the table's pages: the wait that saw the error took it from the
/// file (a later `fdatasync` would not report it again), so the table refuses every sync from
/// then on and the checkpoint stays before the records whose pages may not be on disk.
#[tokio::test]
async fn a_failed_write_back_keeps_the_checkpoint_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    accept(&s, &entry("a"), 1000).await;
    indexed(&s);
    s.checkpoint().unwrap();
    assert_eq!(saved_checkpoint(&s.meta).unwrap(), 1);
    s.index.seen.fail_write_back.store(true, Ordering::Relaxed);
    // At most one write-back per interval, counted from the open.
    tokio::time::sleep(Duration::from_millis(250)).await;
    accept(&s, &entry("b"), 1000).await;
    indexed(&s);
    assert!(s.index.failing.load(Ordering::Relaxed));
    assert_eq!(s.problem(), Some(INDEX_FAILING));
    // Refused, and again later: the error was the write-back's to see, not the next sync's.
    s.index.seen.fail_write_back.store(false, Ordering::Relaxed);
    assert!(s.checkpoint().is_err());
    assert!(s.checkpoint().is_err());
    assert_eq!(saved_checkpoint(&s.meta).unwrap(), 1);
    a_duplicate_now_and_after_a_restart(s, dir.path(), "b").await;
}

/// Keys that failed to reach the table are re-inserted by a start only if the checkpoint did
/// not move past them.
#[tokio::test]
async fn a_checkpoint_stays_put_while_index_writes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    accept(&s, &entry("a"), 1000).await;
    indexed(&s);
    s.checkpoint().unwrap();
    assert_eq!(saved_checkpoint(&s.meta).unwrap(), 1);
    s.index.failing.store(true, Ordering::Relaxed);
    accept(&s, &entry("b"), 1000).await;
    s.checkpoint().unwrap();
    assert_eq!(saved_checkpoint(&s.meta).unwrap(), 1);
    assert!(matches!(
        s.forget("gh", "a", &[]),
        Err(StoreError::IndexBehind)
    ));
}

/// A start re-inserts the keys of the records after the last checkpoint: a forget since then
/// must not come back with them.
#[tokio::test]
async fn a_forgotten_id_stays_forgotten_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 10);
    let s = open_store(&cfg);
    assert_eq!(accept(&s, &entry("a"), 1000).await, Accepted::New);
    assert_eq!(accept(&s, &entry("b"), 1000).await, Accepted::New);
    assert_eq!(s.forget("gh", "a", &[]).unwrap(), Some(1000));
    // Killed: no close, so no checkpoint after the forget.
    drop(s);
    let s = open_store(&cfg);
    assert_eq!(accept(&s, &entry("a"), 1001).await, Accepted::New);
    assert_eq!(accept(&s, &entry("b"), 1001).await, Accepted::Duplicate);
}

#[tokio::test]
async fn dedup_within_window_then_forget() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    assert_eq!(accept(&s, &entry("a"), 1000).await, Accepted::New);
    assert_eq!(accept(&s, &entry("a"), 1050).await, Accepted::Duplicate);
    let mut other = entry("a");
    other.source = "other".into();
    assert_eq!(
        accept(&s, &other, 1050).await,
        Accepted::New,
        "scoped by source"
    );
    assert_eq!(s.pending(), 2);
    // Both in the table: an id still in the in-flight map is a duplicate whatever the time.
    indexed(&s);
    // Sweeps drop nothing here (a handful of dead slots is not worth a rebuild; see
    // `table_sweep_rebuilds_without_dead_slots`), and they change no decision.
    assert_eq!(s.sweep(1099).unwrap(), 0);
    assert_eq!(accept(&s, &entry("a"), 1099).await, Accepted::Duplicate);
    s.sweep(1100).unwrap();
    assert_eq!(accept(&s, &entry("a"), 1101).await, Accepted::New);
    // An id accepted again is not forgotten by its old acceptance.
    s.sweep(1160).unwrap();
    assert_eq!(accept(&s, &entry("a"), 1150).await, Accepted::Duplicate);
    assert_eq!(accept(&s, &other, 1150).await, Accepted::New, "expired");
    assert_eq!(s.forget("gh", "a", &[]).unwrap(), Some(1101));
    assert_eq!(s.forget("gh", "a", &[]).unwrap(), None);
    assert_eq!(accept(&s, &entry("a"), 1151).await, Accepted::New);
    assert_eq!(accept(&s, &entry("a"), 1152).await, Accepted::Duplicate);
}

/// A regrouped request (same signed content, another id) is a duplicate of the first.
#[tokio::test]
async fn the_content_key_is_a_second_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    let mut first = entry("n1");
    first.content_key = Some("sha256:abc".into());
    let mut regrouped = entry("n1&notify_time=x");
    regrouped.content_key = Some("sha256:abc".into());
    assert_eq!(accept(&s, &first, 1000).await, Accepted::New);
    assert_eq!(accept(&s, &regrouped, 1001).await, Accepted::Duplicate);
    assert_eq!(pending_ids(&s), ["n1"]);
}

#[tokio::test]
async fn full_backlog_refuses_new_events_but_answers_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 2));
    accept(&s, &entry("1"), 1000).await;
    accept(&s, &entry("2"), 1000).await;
    assert!(matches!(
        s.accept(&entry("3"), 1000, T).await,
        Err(StoreError::Full(2))
    ));
    assert_eq!(accept(&s, &entry("1"), 1000).await, Accepted::Duplicate);
    s.advance(s.cursor() + 1, 1, 0).unwrap();
    assert_eq!(accept(&s, &entry("3"), 1000).await, Accepted::New);
    assert_eq!(pending_ids(&s), ["2", "3"]);
}

#[tokio::test]
async fn concurrent_same_id_is_accepted_once_and_the_rest_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open_store(&config(dir.path(), 1000)));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = accept(&s, &entry("same"), 1000).await;
            // Whoever hears "duplicate" may rely on the event being on disk.
            assert!(s.durable_upto() >= 1);
            r
        }));
    }
    let mut news = 0;
    for t in tasks {
        news += (t.await.unwrap() == Accepted::New) as usize;
    }
    assert_eq!(news, 1);
    assert_eq!(s.pending(), 1);
}

/// Issue 11, class 5: no request waits forever for the disk. A log whose committer is gone
/// answers at once (and readiness says why); a commit that does not come within the
/// request's deadline ends with `StoreError::Deadline` (see `accept`).
#[tokio::test]
async fn class5_no_request_waits_forever_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    s.log.close();
    assert!(matches!(
        s.accept(&entry("a"), 1000, T).await,
        Err(StoreError::Write)
    ));
    assert_eq!(s.problem(), Some(COMMITTER_STOPPED));
    assert!(!s.healthy());
}

#[tokio::test]
async fn survives_a_restart_and_reindexes_a_lost_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    closed_with(&cfg, &["a", "b", "c"]).await;
    // The table is gone (the checkpoint in sled says 3 records are indexed): filled again
    // from the whole log.
    std::fs::remove_file(cfg.path.join(seen::FILE)).unwrap();
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(s.pending(), 3);
    assert_eq!(pending_ids(&s), ["a", "b", "c"]);
    for id in ["a", "b", "c"] {
        assert_eq!(
            accept(&s, &entry(id), 1010).await,
            Accepted::Duplicate,
            "{id}"
        );
    }
    assert_eq!(accept(&s, &entry("d"), 1010).await, Accepted::New);
}

#[tokio::test]
async fn cursor_dead_letters_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1000);
    cfg.retain_secs = 0;
    let s = open_store(&cfg);
    for i in 0..30 {
        accept(&s, &entry(&format!("e{i}")), 1000).await;
    }
    assert!(s.log_segments() > 3);
    let (seq, e) = {
        let mut r = s.reader(s.cursor()).unwrap();
        let (seq, _, e) = r.next_record().unwrap().unwrap();
        (seq, e)
    };
    let info = DeadInfo {
        attempts: 5,
        reason: "unroutable".into(),
        dead_at: 1001,
    };
    s.mark_dead(seq, &e, &info).unwrap();
    // Nothing is dropped while it is pending, nor past the checkpoint.
    assert_eq!(s.retain(SystemTime::now()).unwrap(), 0);
    assert_eq!(s.published_at(5), None, "pending");
    s.advance(21, 20, 1000).unwrap();
    assert_eq!(s.pending(), 10);
    let at = s.published_at(5).expect("published by the cursor save");
    assert!(at.abs_diff(crate::now_secs()) < 5);
    assert_eq!(s.published_at(21), None, "still pending");
    indexed(&s);
    s.checkpoint().unwrap();
    let before = s.log_segments();
    assert!(s.retain(SystemTime::now()).unwrap() > 0);
    assert!(s.log_segments() < before);
    assert!(s.log.segments()[0].first <= 21, "pending records stay");
    let ids = pending_ids(&s);
    assert_eq!(ids.first().map(String::as_str), Some("e20"));
    assert_eq!(ids.len(), 10);
    // The dead letter outlives its segment.
    let dead = s.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].0, &dead[0].1.message_id), (seq, &"e0".to_string()));
    assert_eq!(dead[0].2.reason, "unroutable");
    // One more, still in the log: only the first is before it; both have their info.
    let (seq25, e25) = {
        let mut r = s.reader(25).unwrap();
        let (seq, _, e) = r.next_record().unwrap().unwrap();
        (seq, e)
    };
    s.mark_dead(seq25, &e25, &info).unwrap();
    let first = s.log.segments()[0].first;
    assert!(seq < first && first <= seq25);
    let ids = |end| {
        s.dead_letters_before(end)
            .map(|d| d.unwrap().1.message_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(first), ["e0"]);
    assert_eq!(ids(u64::MAX), ["e0".to_string(), e25.message_id.clone()]);
    let newest_first: Vec<u64> = s
        .dead_letters_before(u64::MAX)
        .rev()
        .map(|d| d.unwrap().0)
        .collect();
    assert_eq!(newest_first, [seq25, seq]);
    let infos = s.dead_infos().unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[&seq25].reason, "unroutable");
    // And the cursor survives a restart.
    s.close();
    drop(s);
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(s.cursor(), 21);
    assert_eq!(s.pending(), 10);
}

#[tokio::test]
async fn a_store_of_the_previous_version_is_moved_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    {
        let db = sled_reopened(&cfg.path);
        let outbox = db.open_tree("outbox").unwrap();
        let seen = db.open_tree("seen").unwrap();
        for (i, id) in ["old1", "old2"].iter().enumerate() {
            let e = entry(id);
            let mut v = vec![1u8];
            v.extend_from_slice(&e.timestamp.to_be_bytes());
            for s in [
                &e.routing_key,
                &e.message_id,
                &e.kind,
                &e.source,
                &e.provider,
            ] {
                v.extend_from_slice(&(s.len() as u32).to_be_bytes());
                v.extend_from_slice(s.as_bytes());
            }
            v.extend_from_slice(&e.body);
            outbox.insert((i as u64).to_be_bytes(), v).unwrap();
            seen.insert(format!("gh\0{id}"), &1000u64.to_be_bytes())
                .unwrap();
        }
        db.flush().unwrap();
    }
    // Looking at it to inspect upgrades nothing (a rollback to 0.1 lost its pending events).
    let err = Store::open_to_inspect(&cfg, Duration::from_secs(5)).err();
    assert!(matches!(err, Some(StoreError::Older(_))), "{err:?}");
    assert!(!cfg.path.join("seen.idx").exists() && !cfg.path.join("log").exists());
    {
        let db = sled_reopened(&cfg.path);
        assert_eq!(db.open_tree("outbox").unwrap().len(), 2, "untouched");
    }
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(s.pending(), 2);
    assert_eq!(pending_ids(&s), ["old1", "old2"]);
    assert_eq!(accept(&s, &entry("old1"), 1001).await, Accepted::Duplicate);
    assert!(!s.db.tree_names().iter().any(|n| &n[..] == b"seen"));
    s.close();
    drop(s);
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(pending_ids(&s), ["old1", "old2"], "moved once");
}

#[test]
fn inspecting_where_there_is_no_store_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("data"), 100);
    let err = Store::open_to_inspect(&cfg, Duration::from_millis(100)).err();
    assert!(matches!(err, Some(StoreError::Missing(_))), "{err:?}");
    assert!(!cfg.path.exists(), "nothing created");
    // A store that exists opens as usual.
    Store::open_waiting(&cfg, Duration::from_secs(5))
        .unwrap()
        .close();
    Store::open_to_inspect(&cfg, Duration::from_secs(5))
        .unwrap()
        .close();
}

// The dedup table (`seen.rs`) on its own, on real files.

use seen::{Hit, Opened, Seen};

fn table(dir: &Path, window: u64, min_pages: u64) -> Seen {
    Seen::open(dir, window, min_pages).unwrap().0
}

fn fp(s: &Seen, i: u64) -> u128 {
    s.fingerprint(format!("gh\0id-{i}").as_bytes())
}

/// `(fingerprint, at, seq)` of the keys `ids`, all accepted at 1000, seq = id + 1.
fn keys(s: &Seen, ids: std::ops::Range<u64>) -> Vec<(u128, u64, u64)> {
    ids.map(|i| (fp(s, i), 1000, i + 1)).collect()
}

/// Dirty and under-write-back pages of `file` (Linux `cachestat`, 6.5+); `None` where the
/// kernel cannot say.
fn dirty_pages(file: &Path) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    // `cachestat`'s number where the generic syscall table gives it (not alpha or MIPS).
    if !cfg!(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "x86",
        target_arch = "arm"
    )) {
        return None;
    }
    let f = std::fs::File::open(file).unwrap();
    let range = Range { off: 0, len: 0 };
    let mut stat = Stat::default();
    // SAFETY: `cachestat(fd, &range, &mut stat, 0)` writes only into `stat`.
    let r = unsafe { libc::syscall(451, f.as_raw_fd(), &range, &mut stat, 0) };
    (r == 0).then_some((stat.nr_dirty, stat.nr_writeback))
}

/// The write-back leaves none of the pages the inserts dirtied dirty or in flight: keys
/// scattered over a 1,024-page table, more dirty pages than one group.
#[test]
fn table_write_back_writes_every_page_the_inserts_dirtied() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 1024);
    let items = keys(&s, 0..300);
    s.insert(&items).unwrap();
    let file = dir.path().join(seen::FILE);
    let Some((dirty, _)) = dirty_pages(&file) else {
        eprintln!("skipped: no cachestat (Linux before 6.5)");
        return;
    };
    // The file systems whose buffered writes show as dirty page-cache pages (ext4 on the
    // project's machines and CI) must show the inserts' pages; others (tmpfs, overlayfs, ZFS,
    // FUSE…) cannot say.
    // SAFETY: statfs fills the struct it is given.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::statfs(path.as_ptr(), &mut fs) }, 0);
    let counted = [
        libc::EXT4_SUPER_MAGIC,
        libc::XFS_SUPER_MAGIC,
        libc::BTRFS_SUPER_MAGIC,
    ];
    if !counted.contains(&fs.f_type) {
        eprintln!(
            "skipped: file system {:#x} does not count dirty pages",
            fs.f_type
        );
        return;
    }
    assert!(dirty > 100, "{dirty} dirty pages after 300 inserts");
    // At most one write-back per interval, counted from the open.
    std::thread::sleep(Duration::from_millis(250));
    s.write_back().unwrap();
    assert_eq!(dirty_pages(&file), Some((0, 0)));
}

#[test]
fn table_insert_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let (s, opened) = Seen::open(dir.path(), 100, 64).unwrap();
    assert_eq!(opened, Opened::Created);
    let items: Vec<_> = (0..1000)
        .map(|i| (fp(&s, i), 1000 + i % 7, i + 1))
        .collect();
    s.insert(&items).unwrap();
    for &(f, at, seq) in &items {
        assert_eq!(s.lookup(f, 1050).unwrap(), Some(Hit { at, seq }));
    }
    assert_eq!(s.lookup(fp(&s, 5000), 1050).unwrap(), None);
    assert_eq!(s.stats(), (64, 1000));
    // The same key again keeps its slot, and the later acceptance.
    s.insert(&[(fp(&s, 1), 1090, 77), (fp(&s, 1), 1020, 78)])
        .unwrap();
    assert_eq!(s.lookup(fp(&s, 1), 1100).unwrap().map(|h| h.at), Some(1090));
    assert_eq!(s.stats().1, 1000);
    // Fingerprints are keyed: another table gives another one.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(fp(&table(other.path(), 100, 64), 1), fp(&s, 1));
}

/// A rebuild that fails (here after its new file took the table's name, as a failed sync of
/// the directory would) leaves the table refusing every sync until a restart.
#[test]
fn table_a_failed_rebuild_refuses_every_sync_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 64);
    s.fail_rebuild.store(true, Ordering::Relaxed);
    // Past the 3/4 load of 8,192 slots: the insert that crosses it rebuilds.
    let items = keys(&s, 0..7000);
    assert!(s.insert(&items).is_err());
    assert!(s.failed());
    s.fail_rebuild.store(false, Ordering::Relaxed);
    assert!(s.sync().is_err());
    assert!(s.sync().is_err());
}

#[test]
fn table_new_keys_are_answered_by_the_filter_without_a_page_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 64);
    // 6,000 keys in 8,192 slots: just under the 3/4 load that grows the table.
    let items = keys(&s, 0..6000);
    s.insert(&items).unwrap();
    assert_eq!(s.stats().0, 64, "not grown");
    let absent = |s: &Seen| {
        let before = s.page_reads();
        for i in 100_000..110_000 {
            assert_eq!(s.lookup(fp(s, i), 1001).unwrap(), None);
        }
        s.page_reads() - before
    };
    // ~1 % false positives expected at this load; each costs at least one page.
    let reads = absent(&s);
    assert!(reads < 500, "{reads} page reads for 10,000 absent keys");
    // Without the filter every one of them would read its home page at least.
    for &(f, at, seq) in &items {
        assert_eq!(s.lookup(f, 1001).unwrap(), Some(Hit { at, seq }));
    }
    // Rebuilt at open from the file, and by a rebuild from the slots it keeps.
    drop(s);
    let s = table(dir.path(), 100, 64);
    assert!(absent(&s) < 500);
    for &(f, at, seq) in &items {
        assert_eq!(s.lookup(f, 1001).unwrap(), Some(Hit { at, seq }));
    }
    let more = keys(&s, 6000..7000);
    s.insert(&more).unwrap();
    assert!(s.stats().0 > 64, "grown");
    assert!(absent(&s) < 500);
    for &(f, at, seq) in items.iter().chain(&more) {
        assert_eq!(s.lookup(f, 1001).unwrap(), Some(Hit { at, seq }));
    }
}

#[test]
fn table_window_expiry_and_reuse_of_expired_slots() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 10, 64);
    s.collide.store(true, Ordering::Relaxed);
    let old: Vec<_> = (0..128).map(|i| (fp(&s, i), 100, i)).collect();
    s.insert(&old).unwrap();
    assert_eq!(s.stats().1, 128, "page 0 is full");
    assert!(s.lookup(old[5].0, 109).unwrap().is_some());
    assert_eq!(s.lookup(old[5].0, 110).unwrap(), None, "at + window <= now");
    // New keys at 200 take the expired slots of page 0 instead of new ones.
    let new: Vec<_> = (1000..1010).map(|i| (fp(&s, i), 200, i)).collect();
    s.insert(&new).unwrap();
    assert_eq!(s.stats().1, 128);
    for &(f, at, seq) in &new {
        assert_eq!(s.lookup(f, 205).unwrap(), Some(Hit { at, seq }));
    }
    // An expired key accepted again is a key again.
    s.insert(&[(old[100].0, 300, 9)]).unwrap();
    assert_eq!(
        s.lookup(old[100].0, 301).unwrap(),
        Some(Hit { at: 300, seq: 9 })
    );
}

#[test]
fn table_forget() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 64);
    s.insert(&[(fp(&s, 1), 1000, 1), (fp(&s, 2), 1000, 2)])
        .unwrap();
    assert_eq!(s.forget(fp(&s, 1)).unwrap(), Some(1000));
    assert_eq!(s.lookup(fp(&s, 1), 1001).unwrap(), None);
    assert_eq!(s.forget(fp(&s, 1)).unwrap(), None);
    assert_eq!(s.forget(fp(&s, 3)).unwrap(), None);
    assert!(s.lookup(fp(&s, 2), 1001).unwrap().is_some());
    // Accepted again after it was forgotten: in its old slot.
    s.insert(&[(fp(&s, 1), 1002, 3)]).unwrap();
    assert_eq!(
        s.lookup(fp(&s, 1), 1003).unwrap(),
        Some(Hit { at: 1002, seq: 3 })
    );
    assert_eq!(s.stats().1, 2);
}

#[test]
fn table_overflow_into_the_next_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 64);
    // Every key's home is page 0: 300 keys fill pages 0 and 1 and part of 2.
    s.collide.store(true, Ordering::Relaxed);
    let items: Vec<_> = (0..300).map(|i| (fp(&s, i), 1000, i)).collect();
    s.insert(&items).unwrap();
    // Forgotten and expired slots on the way keep the chain to the keys behind them.
    assert_eq!(s.forget(items[3].0).unwrap(), Some(1000));
    for &(f, at, seq) in &items[4..] {
        assert_eq!(s.lookup(f, 1001).unwrap(), Some(Hit { at, seq }));
    }
    // The forgotten slot is reused by the next new key, not a slot behind it.
    s.insert(&[(fp(&s, 999), 1001, 999)]).unwrap();
    assert_eq!(s.stats().1, 300);
    drop(s);
    let s = table(dir.path(), 100, 64);
    s.collide.store(true, Ordering::Relaxed);
    assert_eq!(s.stats(), (64, 300), "counted at open");
    for &(f, at, seq) in &items[4..] {
        assert_eq!(s.lookup(f, 1001).unwrap(), Some(Hit { at, seq }));
    }
    assert!(s.lookup(fp(&s, 999), 1001).unwrap().is_some());
}

#[test]
fn table_grows_keeping_every_live_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 1);
    // 500 keys that will have expired, then 20,000 live ones.
    let dead: Vec<_> = (0..500).map(|i| (fp(&s, i), 10, i)).collect();
    s.insert(&dead).unwrap();
    let live: Vec<_> = (1000..21_000).map(|i| (fp(&s, i), 1000, i)).collect();
    for chunk in live.chunks(1000) {
        s.insert(chunk).unwrap();
    }
    let (pages, used) = s.stats();
    assert!(pages >= 256, "{pages} pages");
    assert!(used * 4 < pages * 128 * 3, "{used} used in {pages} pages");
    assert!(
        used < 20_500,
        "the expired keys' slots were reused or dropped: {used}"
    );
    for &(f, at, seq) in &live {
        assert_eq!(s.lookup(f, 1001).unwrap(), Some(Hit { at, seq }));
    }
    assert!(!dir.path().join(seen::NEW_FILE).exists());
}

#[test]
fn table_sweep_rebuilds_without_dead_slots() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 4);
    let items: Vec<_> = (0..3000)
        .map(|i| (fp(&s, i), if i < 2000 { 1000 } else { 1050 }, i))
        .collect();
    s.insert(&items).unwrap();
    let grown = s.stats().0;
    assert!(grown >= 32);
    s.sweep(1050).unwrap();
    assert_eq!(s.stats().0, grown, "nothing dead, nothing rebuilt");
    // At 1101 the first 2,000 have expired (a quarter of the 4,096 slots and more); the next
    // look is due a minute after the last.
    assert_eq!(s.sweep(1101).unwrap(), 0, "not due");
    assert_eq!(s.sweep(1110).unwrap(), 2000);
    assert_eq!(s.stats().1, 1000);
    assert!(s.stats().0 < grown, "shrunk");
    for &(f, at, seq) in &items[2000..] {
        assert_eq!(s.lookup(f, 1110).unwrap(), Some(Hit { at, seq }));
    }
    assert_eq!(s.lookup(items[0].0, 1050).unwrap(), None, "dropped");
}

#[test]
fn table_reopen_keeps_keys_and_damage_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let s = table(dir.path(), 100, 64);
    s.insert(&[(fp(&s, 1), 1000, 1)]).unwrap();
    let key = fp(&s, 1);
    drop(s);
    let (s, opened) = Seen::open(dir.path(), 100, 64).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert_eq!(fp(&s, 1), key, "the hash key is kept");
    assert_eq!(s.lookup(key, 1001).unwrap(), Some(Hit { at: 1000, seq: 1 }));
    drop(s);
    // A rebuild cut short leaves seen.idx.new: removed, the table stands.
    std::fs::write(dir.path().join(seen::NEW_FILE), b"half a table").unwrap();
    let (s, opened) = Seen::open(dir.path(), 100, 64).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert!(!dir.path().join(seen::NEW_FILE).exists());
    assert!(s.lookup(key, 1001).unwrap().is_some());
    drop(s);
    // A damaged header, a truncated file: replaced by an empty table.
    let path = dir.path().join(seen::FILE);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"X", 20).unwrap();
    let (s, opened) = Seen::open(dir.path(), 100, 64).unwrap();
    assert!(
        matches!(&opened, Opened::Replaced(why) if why.contains("checksum")),
        "{opened:?}"
    );
    assert_eq!(s.stats(), (64, 0));
    drop(s);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096 * 10)
        .unwrap();
    let (_, opened) = Seen::open(dir.path(), 100, 64).unwrap();
    assert!(
        matches!(&opened, Opened::Replaced(why) if why.contains("bytes")),
        "{opened:?}"
    );
}

/// A crash loses the table's writes since the last checkpoint (here: the file as it was at
/// the checkpoint is put back); the start re-inserts the keys of the records after it.
#[tokio::test]
async fn a_crash_after_the_checkpoint_is_reindexed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    let path = cfg.path.join(seen::FILE);
    let at_checkpoint = dir.path().join("at-checkpoint");
    {
        let s = open_store(&cfg);
        accept(&s, &entry("a"), 1000).await;
        s.checkpoint().unwrap();
        std::fs::copy(&path, &at_checkpoint).unwrap();
        for id in ["b", "c"] {
            accept(&s, &entry(id), 1000).await;
        }
        indexed(&s);
        assert_eq!(s.lookup(&entry("c"), 1001).unwrap(), Local::Seen);
        // Dropped without close (no final checkpoint).
    }
    std::fs::copy(&at_checkpoint, &path).unwrap();
    std::fs::write(cfg.path.join(seen::NEW_FILE), b"garbage").unwrap();
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert!(!cfg.path.join(seen::NEW_FILE).exists());
    for id in ["a", "b", "c"] {
        assert_eq!(s.lookup(&entry(id), 1001).unwrap(), Local::Seen, "{id}");
    }
    duplicates_then_new(&s, &["a", "b", "c"], "d").await;
}

/// Every one of `ids` is a duplicate at 1001, and `new` is new.
async fn duplicates_then_new(s: &Store, ids: &[&str], new: &str) {
    for &id in ids {
        assert_eq!(
            accept(s, &entry(id), 1001).await,
            Accepted::Duplicate,
            "{id}"
        );
    }
    assert_eq!(accept(s, &entry(new), 1001).await, Accepted::New);
}

#[tokio::test]
async fn a_corrupt_table_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    closed_with(&cfg, &["a", "b", "c"]).await;
    std::fs::write(cfg.path.join(seen::FILE), vec![0xAB; 8192]).unwrap();
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert!(s.healthy());
    duplicates_then_new(&s, &["a", "b", "c"], "d").await;
}

/// The previous version kept the dedup index in sled (`seen`: key → at BE, `expiry`): the
/// first start copies it into the table and drops the trees.
#[tokio::test]
async fn the_sled_index_of_the_previous_version_moves_into_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    closed_with(&cfg, &["logged"]).await;
    std::fs::remove_file(cfg.path.join(seen::FILE)).unwrap();
    let mut content = entry("x");
    content.content_key = Some("sha256:c".into());
    {
        let db = sled_reopened(&cfg.path);
        let (seen, expiry) = (
            db.open_tree("seen").unwrap(),
            db.open_tree("expiry").unwrap(),
        );
        for (key, at) in [
            ("gh\0old", 1000u64),
            ("gh\x01sha256:c", 1000),
            ("gh\0gone", 800),
        ] {
            seen.insert(key, &at.to_be_bytes()).unwrap();
            expiry
                .insert([&at.to_be_bytes()[..], key.as_bytes()].concat(), &[])
                .unwrap();
        }
        db.flush().unwrap();
    }
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(accept(&s, &entry("old"), 1001).await, Accepted::Duplicate);
    assert_eq!(
        accept(&s, &content, 1001).await,
        Accepted::Duplicate,
        "content key"
    );
    assert_eq!(
        accept(&s, &entry("gone"), 1001).await,
        Accepted::New,
        "expired"
    );
    // "logged" is at the checkpoint: in neither the old index nor the log after it.
    assert_eq!(accept(&s, &entry("logged"), 1001).await, Accepted::New);
    let names = s.db.tree_names();
    assert!(!names
        .iter()
        .any(|n| &n[..] == b"seen" || &n[..] == b"expiry"));
    s.close();
    drop(s);
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(
        accept(&s, &entry("old"), 1002).await,
        Accepted::Duplicate,
        "kept"
    );
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Lookup(u64),
        Forget(u64),
        Advance(u64),
        Sweep,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..400).prop_map(Op::Insert),
            4 => (0u64..400).prop_map(Op::Lookup),
            1 => (0u64..400).prop_map(Op::Forget),
            2 => (0u64..15).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
            1 => Just(Op::Reopen),
        ]
    }

    const WINDOW: u64 = 20;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The table against a map of key → latest acceptance (0: forgotten), with a table
        /// of one page so it grows (and shrinks on sweeps) along the way.
        #[test]
        fn table_matches_a_map(ops in proptest::collection::vec(op(), 1..400), collide: bool) {
            let dir = tempfile::tempdir().unwrap();
            let open = || {
                let s = table(dir.path(), WINDOW, 1);
                s.collide.store(collide, Ordering::Relaxed);
                s
            };
            let mut s = open();
            let mut model: HashMap<u64, u64> = HashMap::new();
            let mut now = 1000;
            let mut seq = 0;
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        seq += 1;
                        s.insert(&[(fp(&s, k), now, seq)]).unwrap();
                        let at = model.entry(k).or_insert(0);
                        *at = (*at).max(now);
                    }
                    Op::Lookup(k) => {
                        let want = model.get(&k).filter(|&&at| at != 0 && at + WINDOW > now);
                        let got = s.lookup(fp(&s, k), now).unwrap();
                        prop_assert_eq!(got.map(|h| h.at), want.copied(), "key {}", k);
                    }
                    Op::Forget(k) => {
                        let got = s.forget(fp(&s, k)).unwrap();
                        match model.get(&k).copied().unwrap_or(0) {
                            0 => prop_assert_eq!(got, None),
                            // A live key is there; an expired one may have been dropped.
                            at if at + WINDOW > now => prop_assert_eq!(got, Some(at)),
                            at => prop_assert!(got.is_none() || got == Some(at)),
                        }
                        model.insert(k, 0);
                    }
                    Op::Advance(d) => now += d,
                    Op::Sweep => {
                        s.sweep(now).unwrap();
                    }
                    Op::Reopen => {
                        drop(s);
                        s = open();
                    }
                }
                let (pages, used) = s.stats();
                prop_assert!(used * 4 <= pages * 128 * 3 + 4, "{} used in {} pages", used, pages);
            }
            for (&k, &at) in &model {
                let want = (at != 0 && at + WINDOW > now).then_some(at);
                prop_assert_eq!(s.lookup(fp(&s, k), now).unwrap().map(|h| h.at), want);
            }
        }
    }
}

/// A killed process leaves `relay.cursor` ahead of sled (saved only by checkpoints): a start
/// resumes from the file, so confirmed events are not published again. A damaged file is
/// ignored (sled's cursor holds).
#[tokio::test]
async fn a_start_resumes_from_the_cursor_file_ahead_of_sled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    {
        let s = open_store(&cfg);
        for i in 0..8 {
            assert_eq!(
                accept(&s, &entry(&format!("c{i}")), 1000).await,
                Accepted::New
            );
        }
        s.advance(3, 2, 1000).unwrap();
        s.close();
    }
    // As a kill -9 after later saves leaves it: the file has them, sled does not.
    CursorFile::open(&cfg.path).unwrap().write(6).unwrap();
    {
        let s = open_store(&cfg);
        assert_eq!((s.cursor(), s.pending()), (6, 3));
        assert_eq!(pending_ids(&s), ["c5", "c6", "c7"]);
        s.close();
    }
    let path = cfg.path.join("relay.cursor");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let s = open_store(&cfg);
    assert_eq!(s.cursor(), 3, "a damaged file is ignored");
    // The next save writes a good file again.
    s.advance(4, 1, 1000).unwrap();
    assert_eq!(CursorFile::open(&cfg.path).unwrap().read(), Some(4));
}

/// The age of the oldest pending event is what is watched while the broker is down: with no
/// relay to say it (nothing in flight), it is read from the record at the cursor (it was
/// `None`, the gauge 0, for as long as the broker was unreachable; found by a review).
#[tokio::test]
async fn the_oldest_pending_time_is_known_without_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    assert_eq!(s.oldest_pending_at(), None);
    for (id, at) in [("a", 1000), ("b", 1005)] {
        let e = Entry {
            timestamp: at,
            ..entry(id)
        };
        accept(&s, &e, at).await;
    }
    assert_eq!(
        s.oldest_pending_at(),
        Some(1000),
        "the relay has said nothing"
    );
    // The relay confirmed the first and has nothing in flight (a stall, an outage).
    s.advance(s.cursor() + 1, 1, 0).unwrap();
    assert_eq!(s.oldest_pending_at(), Some(1005));
    // What the relay says while it has something in flight wins.
    s.advance(s.cursor(), 0, 1003).unwrap();
    assert_eq!(s.oldest_pending_at(), Some(1003));
    s.advance(s.cursor() + 1, 1, 0).unwrap();
    assert_eq!(s.oldest_pending_at(), None);
}

/// A failed write to sled's metadata (the relay's position, a dead letter, a checkpoint) makes
/// the store a problem for `/readyz` until a write succeeds again: after a full disk sled keeps
/// failing until a restart, and `/readyz` said ready meanwhile (found by a black-box review).
#[tokio::test]
async fn a_failing_metadata_write_is_a_store_problem_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    accept(&s, &entry("a"), 1000).await;
    assert_eq!(s.problem(), None);
    let full = std::io::Error::other("No space left on device");
    assert!(s.note_meta::<(), _>(Err(sled::Error::Io(full))).is_err());
    assert_eq!(s.problem(), Some(META_FAILING));
    s.advance(s.durable_upto() + 1, 1, 0).unwrap();
    assert_eq!(s.problem(), None);
    // A failed fsync stays a problem: the kernel reports a lost write-back once.
    let lost = std::io::Error::other("Input/output error");
    assert!(s.sled_files.lost_if::<(), _>(Err(lost)).is_err());
    s.advance(s.durable_upto() + 1, 0, 0).unwrap();
    s.checkpoint().unwrap();
    assert_eq!(s.problem(), Some(META_FAILING));
    assert_eq!(s.failing_until_restart(), Some(META_FAILING));
}

/// While sled's writes fail (until a restart, after a full disk), the relay's saves still move
/// the cursor, the count of pending events and `relay.cursor`, and do not fail the relay: it
/// used to reconnect on every save (republishing its window) and the count kept what those
/// saves had finished. A start after it resumes from `relay.cursor`.
#[tokio::test]
async fn saves_go_on_from_the_cursor_file_while_sled_writes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    {
        let s = open_store(&cfg);
        for i in 0..6 {
            accept(&s, &entry(&format!("m{i}")), 1000).await;
        }
        s.advance(2, 1, 1000).unwrap();
        s.fail_meta_writes.store(true, Ordering::Relaxed);
        s.advance(4, 2, 1000).unwrap();
        assert_eq!((s.cursor(), s.pending()), (4, 3));
        assert_eq!(s.problem(), Some(META_FAILING));
        assert_eq!(s.failing_until_restart(), Some(META_FAILING));
        s.advance(5, 1, 1000).unwrap();
        assert_eq!(s.pending(), 2);
        assert_eq!(CursorFile::open(&cfg.path).unwrap().read(), Some(5));
        // sled's own copy stayed at 2 (the injected failure wrote nothing), so the start
        // below can only have the cursor from the file.
        let in_sled = s.meta.get(CURSOR).unwrap().map(|v| be_u64(&v));
        assert_eq!(in_sled, Some(2));
        let published = s.db.open_tree(PUBLISHED).unwrap();
        assert_eq!(published.last().unwrap().map(|(k, _)| be_u64(&k)), Some(2));
    }
    let s = open_store(&cfg);
    assert_eq!((s.cursor(), s.pending()), (5, 2));
    assert_eq!(pending_ids(&s), ["m4", "m5"]);
    assert_eq!(s.problem(), None);
    s.advance(7, 2, 1000).unwrap();
    assert_eq!(s.pending(), 0);
}

/// A blob directory that cannot be listed (too many open files, say) fails that sync, but is
/// no lost write: only a failed flush or fsync is a problem until a restart (after which the
/// gateway stops; found by a review).
#[tokio::test]
async fn a_sync_that_cannot_list_the_blobs_is_no_lost_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    // A file where the directory would be: `read_dir` fails (ENOTDIR), nothing is synced.
    let _ = std::fs::remove_dir_all(&s.sled_files.blobs);
    std::fs::write(&s.sled_files.blobs, b"not a directory").unwrap();
    assert!(s.sled_files.sync(&s.db, true).is_err());
    assert_eq!(s.problem(), None);
    assert_eq!(s.failing_until_restart(), None);
    s.sled_files.sync(&s.db, false).unwrap();
}

/// A blob sled removes while its directory is synced (a dead letter replayed meanwhile) is not
/// a failed write: with failed syncs a store problem until a restart, it would have been one.
#[tokio::test]
async fn a_blob_gone_during_the_sync_is_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&config(dir.path(), 10));
    std::fs::create_dir_all(&s.sled_files.blobs).unwrap();
    // What the listing then finds: a name whose file is gone.
    std::os::unix::fs::symlink(dir.path().join("gone"), s.sled_files.blobs.join("7")).unwrap();
    s.sled_files.sync(&s.db, true).unwrap();
    assert_eq!(s.problem(), None);
}
