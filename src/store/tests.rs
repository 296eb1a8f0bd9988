use super::*;

fn config(dir: &Path, max: u64) -> StoreConfig {
    StoreConfig {
        path: dir.join("store"),
        dedup_window_secs: 100,
        max_outbox_entries: max,
        retain_secs: 3600,
        retain_max_bytes: 1 << 30,
        segment_bytes: 4096,
    }
}

fn entry(id: &str) -> Entry {
    Entry {
        routing_key: "gh.github.push".into(),
        message_id: id.into(),
        kind: "github.push".into(),
        source: "gh".into(),
        provider: "github".into(),
        content_key: None,
        timestamp: 1000,
        replay: false,
        body: format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "p".repeat(500)).into_bytes(),
    }
}

const T: Duration = Duration::from_secs(5);

async fn accept(s: &Store, e: &Entry, now: u64) -> Accepted {
    s.accept(e, now, T).await.unwrap()
}

fn pending_ids(s: &Store) -> Vec<String> {
    let mut r = s.reader(s.cursor()).unwrap();
    let mut out = Vec::new();
    while let Some((_, _, e)) = r.next_record().unwrap() {
        out.push(e.message_id);
    }
    out
}

#[tokio::test]
async fn dedup_within_window_then_forget() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&config(dir.path(), 10)).unwrap();
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
    assert_eq!(s.sweep(1099).unwrap(), 0);
    assert_eq!(accept(&s, &entry("a"), 1099).await, Accepted::Duplicate);
    assert_eq!(s.sweep(1100).unwrap(), 1);
    assert_eq!(accept(&s, &entry("a"), 1101).await, Accepted::New);
    // An id accepted again is not forgotten by the sweep of its old acceptance (the one
    // id swept is `other`'s, accepted at 1050).
    assert_eq!(s.sweep(1150).unwrap(), 1);
    assert_eq!(accept(&s, &entry("a"), 1150).await, Accepted::Duplicate);
}

/// A regrouped request (same signed content, another id) is a duplicate of the first.
#[tokio::test]
async fn the_content_key_is_a_second_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&config(dir.path(), 10)).unwrap();
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
    let s = Store::open(&config(dir.path(), 2)).unwrap();
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
    let s = Arc::new(Store::open(&config(dir.path(), 1000)).unwrap());
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
    let s = Store::open(&config(dir.path(), 10)).unwrap();
    s.log.close();
    assert!(matches!(
        s.accept(&entry("a"), 1000, T).await,
        Err(StoreError::Write)
    ));
    assert_eq!(s.problem(), Some(COMMITTER_STOPPED));
    assert!(!s.healthy());
}

#[tokio::test]
async fn survives_a_restart_and_reindexes_what_sled_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100);
    {
        let s = Store::open(&cfg).unwrap();
        for id in ["a", "b", "c"] {
            accept(&s, &entry(id), 1000).await;
        }
        s.close();
    }
    {
        // As if sled had lost every index write since its last checkpoint.
        let db = sled::open(&cfg.path).unwrap();
        db.open_tree("seen").unwrap().clear().unwrap();
        db.open_tree("meta").unwrap().remove(CHECKPOINT).unwrap();
        db.flush().unwrap();
    }
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
    let s = Store::open(&cfg).unwrap();
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
        let db = sled::open(&cfg.path).unwrap();
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
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(s.pending(), 2);
    assert_eq!(pending_ids(&s), ["old1", "old2"]);
    assert_eq!(accept(&s, &entry("old1"), 1001).await, Accepted::Duplicate);
    s.close();
    drop(s);
    let s = Store::open_waiting(&cfg, Duration::from_secs(5)).unwrap();
    assert_eq!(pending_ids(&s), ["old1", "old2"], "moved once");
}
