//! The event log: every accepted envelope, appended in acceptance order to segment files.
//!
//! A record is a frame `[len u32][crc32 u32][payload]` (little endian); the payload is an
//! [`Entry`] with its sequence number. Records go to the active segment
//! `log/{first_seq:020}.seg`; past `segment_bytes` the next batch starts a new segment.
//!
//! Group commit: a request encodes its record, appends it to a shared buffer and waits; one
//! committer thread writes the whole buffer with one `write` and one `fdatasync`, then
//! releases every record it covered at once ([`Durable`]). That is two thread hand-offs per
//! request (worker → committer → worker), whatever the load, and one fsync for all the
//! requests that arrived while the previous one ran. While the machine's CPUs are busy, a
//! commit also waits up to `store.commit_delay_us` after its first record for more
//! ([`crate::commit_delay`]).
//!
//! Preallocation: a new segment is a spare file written full of zeros and synced beforehand
//! by a helper thread ([`Spare`]), so a commit writes into blocks the file already has and its
//! `fdatasync` writes the data alone. Appending instead changes the file's size, and every
//! `fdatasync` then also writes the inode, a second synchronous device write per commit
//! (measured: `ext4_write_inode`, waiting in `__sync_dirty_buffer`, was 6 % of hookgate's CPU at
//! 2,000 req/s). An all-zero frame header is where a preallocated segment's records end; a
//! segment is cut to its records' length when the next one starts, so a finished segment ends
//! at its file's end. Without a spare ready in time (ingest outran the helper), the next
//! segment is an empty file, appended to until the spare is ready; then the next commit
//! starts a new segment in it.
//!
//! Crash safety: an acknowledgement waits for the fsync that covered its record, and records
//! are only ever added after the last one, so a crash can leave at most a torn tail after the
//! last synced record. [`Log::open`] checks every frame of the last segment up to the first
//! one that is short, zero or fails its checksum: nothing acknowledged lies behind it. Only
//! zeros after it: the segment is kept, still preallocated. Anything else: the file is cut
//! there (its zeros go too; it is appended to until the next segment). A failed write or
//! fsync truncates the segment back to its last synced length, so no later batch is ever
//! written behind bytes that may be garbage.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use crate::commit_delay::CommitDelay;

/// One kept event: what the relay publishes, without parsing the envelope again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub routing_key: String,
    pub message_id: String,
    pub kind: String,
    pub source: String,
    pub provider: String,
    /// A second dedup key for providers whose signed content can be regrouped.
    pub content_key: Option<String>,
    /// Accept time, Unix seconds (AMQP `timestamp`).
    pub timestamp: u64,
    /// Re-enqueued by `hookgate replay` (AMQP header `x-hookgate-replay: true`).
    pub replay: bool,
    /// The CloudEvents JSON envelope.
    pub body: Vec<u8>,
}

#[cfg(test)]
impl Entry {
    /// A GitHub push of source `gh` (unit tests).
    pub(crate) fn test_push(id: &str, timestamp: u64, body: Vec<u8>) -> Entry {
        Entry {
            routing_key: "gh.github.push".into(),
            message_id: id.into(),
            kind: "github.push".into(),
            source: "gh".into(),
            provider: "github".into(),
            content_key: None,
            timestamp,
            replay: false,
            body,
        }
    }
}

const PAYLOAD_VERSION: u8 = 2;
const FRAME_HEADER: usize = 8;
/// Larger frames are corruption: no source accepts bodies near this size.
const MAX_FRAME: usize = 512 << 20;

impl Entry {
    /// Appends the frame of this entry as record `seq` to `out`.
    pub fn encode_frame(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        out.push(PAYLOAD_VERSION);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.push(self.replay as u8);
        let content_key = self.content_key.as_deref().unwrap_or("");
        for s in [
            self.routing_key.as_str(),
            &self.message_id,
            &self.kind,
            &self.source,
            &self.provider,
            content_key,
        ] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.body);
        let payload = &out[start + FRAME_HEADER..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The record in a checked payload: `(seq, entry)`.
    pub fn decode_payload(p: &[u8]) -> Option<(u64, Entry)> {
        let (&version, rest) = p.split_first()?;
        if version != PAYLOAD_VERSION || rest.len() < 17 {
            return None;
        }
        let seq = u64::from_le_bytes(rest[..8].try_into().ok()?);
        let timestamp = u64::from_le_bytes(rest[8..16].try_into().ok()?);
        let replay = rest[16] != 0;
        let mut rest = &rest[17..];
        let mut take = || -> Option<String> {
            let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let s = std::str::from_utf8(rest.get(4..4 + n)?).ok()?.to_owned();
            rest = &rest[4 + n..];
            Some(s)
        };
        let (routing_key, message_id, kind, source, provider, content_key) =
            (take()?, take()?, take()?, take()?, take()?, take()?);
        Some((
            seq,
            Entry {
                routing_key,
                message_id,
                kind,
                source,
                provider,
                content_key: (!content_key.is_empty()).then_some(content_key),
                timestamp,
                replay,
                body: rest.to_vec(),
            },
        ))
    }
}

/// Reads one frame; `Ok(None)` at a clean end, `Err(InvalidData)` for a torn or corrupt frame.
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut header = [0u8; FRAME_HEADER];
    let mut got = 0;
    while got < FRAME_HEADER {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::InvalidData.into()),
            n => got += n,
        }
    }
    // Never a frame (a payload is never empty): the zeros of a preallocated segment, past
    // its last record.
    if header == [0; FRAME_HEADER] {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_FRAME {
        return Err(io::ErrorKind::InvalidData.into());
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::ErrorKind::InvalidData.into(),
        _ => e,
    })?;
    if crc32fast::hash(buf) != crc {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(Some(FRAME_HEADER + len))
}

/// Where durability stands after the last commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Every record up to this sequence number is on disk.
    pub upto: u64,
    /// A write covering records up to this one failed: they are not on disk and never will be.
    pub failed_upto: u64,
}

/// What the committer hands back for every record of a batch (the store indexes them).
pub struct Committed<T> {
    pub seq: u64,
    pub ok: bool,
    pub tag: T,
}

/// A segment file: records `first..=last` (`last < first` while empty).
#[derive(Debug, Clone)]
pub struct Segment {
    pub first: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

struct Queue<T> {
    buf: Vec<u8>,
    tags: Vec<(u64, T)>,
    /// When the first record of `buf` was appended (set with it).
    first_at: std::time::Instant,
    next_seq: u64,
    stop: bool,
}

/// Failed commits kept in [`Settled::failed`]. Each failure is followed by a 100 ms pause, so
/// these span minutes of failures, far beyond a request's wait.
const FAILED_KEPT: usize = 4096;

/// Where each record stands and who waits for it, behind one lock: the committer publishes a
/// commit and takes its waiters out in one go, and a wait looks and adds itself in one go, so
/// no commit can fall between the two.
#[derive(Default)]
struct Settled {
    durable: Durable,
    /// The seq ranges of the last [`FAILED_KEPT`] failed commits, adjacent ones merged: their
    /// numbers are not reused, so `upto` passes them at the next good commit, and a wait that
    /// starts after that (one that joined a failed record through the in-flight map) must
    /// still be told it failed.
    failed: VecDeque<(u64, u64)>,
    /// Tasks waiting for a record, each woken once, by the commit that settles it (a watch
    /// channel woke every waiter at every commit): `(seq, entry id, waker)`. An entry goes
    /// when its record is settled or its wait dropped.
    waiters: Vec<(u64, u64, Waker)>,
    next_id: u64,
    /// The committer has ended: nothing more will be settled.
    closed: bool,
}

impl Settled {
    /// How record `seq` ended, if it has.
    fn outcome(&self, seq: u64) -> Option<Result<(), LogClosed>> {
        // Only after a failure at or past `seq` (rare) is the list looked at.
        if seq <= self.durable.failed_upto
            && self.failed.iter().any(|&(a, b)| (a..=b).contains(&seq))
        {
            return Some(Err(LogClosed));
        }
        (self.durable.upto >= seq).then_some(Ok(()))
    }

    /// Records the fate of records `first..=upto` (one commit) and moves their waiters' wakers
    /// to `woken`, to be woken outside the lock.
    fn publish(&mut self, first: u64, upto: u64, ok: bool, woken: &mut Vec<Waker>) {
        if ok {
            self.durable.upto = upto;
        } else {
            self.durable.failed_upto = upto;
            match self.failed.back_mut() {
                Some(last) if last.1 + 1 == first => last.1 = upto,
                _ => self.failed.push_back((first, upto)),
            }
            if self.failed.len() > FAILED_KEPT {
                self.failed.pop_front();
            }
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 <= upto {
                woken.push(self.waiters.swap_remove(i).2);
            } else {
                i += 1;
            }
        }
    }
}

/// Waits until a record is on disk (`Ok`) or its write failed (`Err`): [`Log::durable`].
pub struct DurableWait<'a> {
    settled: &'a Mutex<Settled>,
    seq: u64,
    /// The id of this wait's entry in the list while it has one.
    entry: Option<u64>,
}

impl std::future::Future for DurableWait<'_> {
    type Output = Result<(), LogClosed>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut s = lock(this.settled);
        let done = match s.outcome(this.seq) {
            Some(r) => Some(r),
            None if s.closed => Some(Err(LogClosed)),
            None => None,
        };
        if let Some(r) = done {
            this.entry = None;
            return Poll::Ready(r);
        }
        // Polled again before its commit (a spurious wake): its entry is still there (only a
        // settled record's go), given the waker of this poll.
        if let Some(id) = this.entry {
            if let Some(e) = s.waiters.iter_mut().find(|e| e.1 == id) {
                e.2.clone_from(cx.waker());
                return Poll::Pending;
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        s.waiters.push((this.seq, id, cx.waker().clone()));
        this.entry = Some(id);
        Poll::Pending
    }
}

impl Drop for DurableWait<'_> {
    /// A wait given up (its request's deadline, a closed connection) takes its entry out:
    /// behind a stalled disk, retries of one id would otherwise pile entries (and the tasks
    /// their wakers keep) up until the commit.
    fn drop(&mut self) {
        if let Some(id) = self.entry {
            lock(self.settled).waiters.retain(|e| e.1 != id);
        }
    }
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    wake: Condvar,
    settled: Mutex<Settled>,
    /// Shared with readers: the active segment's `bytes` is how far they may read in it.
    segments: Arc<RwLock<VecDeque<Segment>>>,
    failed: AtomicBool,
    /// Bytes of all segments, for metrics and retention.
    bytes: AtomicU64,
    /// Test hook: the next this many commits fail as a full disk would.
    #[cfg(test)]
    fail_commits: std::sync::atomic::AtomicU32,
}

/// The log. `T` is what the caller attaches to a record to get back once it is committed.
pub struct Log<T: Send + 'static> {
    dir: PathBuf,
    shared: Arc<Shared<T>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What [`Log::open`] found on disk.
pub struct Recovered {
    /// The last record's sequence number (0 for an empty log).
    pub last_seq: u64,
    /// Bytes cut from a torn or corrupt tail.
    pub cut_bytes: u64,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Truncates `path` to `len` bytes, durably.
fn cut(path: &Path, len: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl<T: Send + 'static> Log<T> {
    /// Opens (or creates) the log in `dir`, cuts a torn tail, and starts the committer thread.
    /// `on_commit` gets every batch on that thread, after its waiters are released.
    /// `min_next_seq`: sequence numbers never go below this (an emptied log keeps counting).
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        min_next_seq: u64,
        commit_delay: CommitDelay,
        on_commit: impl FnMut(Vec<Committed<T>>) + Send + 'static,
    ) -> io::Result<(Log<T>, Recovered)> {
        fs::create_dir_all(dir)?;
        // A spare left by an earlier run may be unfinished, or sized for another segment_bytes.
        for name in [SPARE, SPARE_TMP] {
            match fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let mut segments = list_segments(dir)?;
        let mut cut_bytes = 0;
        let mut last_seq = 0;
        // The tail's file size: past its records while it is still preallocated.
        let mut tail_size = 0;
        if let Some(tail) = segments.back_mut() {
            let (valid, last, zeros_after) = scan_valid(&tail.path)?;
            tail_size = fs::metadata(&tail.path)?.len();
            if !zeros_after {
                cut(&tail.path, valid)?;
                cut_bytes = tail_size - valid;
                tail_size = valid;
            } else if valid > 0 {
                // A process killed between a batch's write and its sync leaves records that
                // read back whole from the page cache: on disk before anything relies on
                // them (the relay, the dedup table, a duplicate's 2xx).
                OpenOptions::new()
                    .write(true)
                    .open(&tail.path)?
                    .sync_data()?;
            }
            tail.bytes = valid;
            last_seq = last.unwrap_or(tail.first.saturating_sub(1));
        }
        let next_seq = (last_seq + 1).max(min_next_seq).max(1);
        // A fresh segment whenever the tail is full, missing, or does not continue at next_seq.
        let need_new = match segments.back() {
            None => true,
            Some(s) => s.bytes >= segment_bytes || last_seq + 1 != next_seq,
        };
        if need_new {
            if let Some(tail) = segments.back().filter(|t| tail_size > t.bytes) {
                // A finished segment ends at its file's end (readers move on there).
                cut(&tail.path, tail.bytes)?;
            }
            tail_size = 0;
            let path = segment_path(dir, next_seq);
            File::create(&path)?.sync_all()?;
            sync_dir(dir)?;
            segments.push_back(Segment {
                first: next_seq,
                path,
                bytes: 0,
            });
        }
        let active = segments.back().expect("one segment").clone();
        let file = OpenOptions::new().write(true).open(&active.path)?;
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                buf: Vec::new(),
                tags: Vec::new(),
                first_at: std::time::Instant::now(),
                next_seq,
                stop: false,
            }),
            wake: Condvar::new(),
            settled: Mutex::new(Settled {
                durable: Durable {
                    upto: next_seq - 1,
                    failed_upto: 0,
                },
                ..Settled::default()
            }),
            segments: Arc::new(RwLock::new(segments)),
            failed: AtomicBool::new(false),
            bytes: AtomicU64::new(bytes),
            #[cfg(test)]
            fail_commits: Default::default(),
        });
        let committer = Committer {
            dir: dir.to_owned(),
            shared: shared.clone(),
            file,
            len: active.bytes,
            size: tail_size,
            segment_bytes,
            spare: None,
            appends: 0,
            cut_pending: false,
            delay: commit_delay,
            on_commit: Box::new(on_commit),
        };
        let handle = std::thread::Builder::new()
            .name("hookgate-log".into())
            .spawn(move || committer.run())?;
        Ok((
            Log {
                dir: dir.to_owned(),
                shared,
                committer: Mutex::new(Some(handle)),
            },
            Recovered {
                last_seq,
                cut_bytes,
            },
        ))
    }

    /// Queues `entry` for the next commit and returns its sequence number. `tag` comes back
    /// to `on_commit` with the record's fate.
    pub fn append(&self, entry: &Entry, tag: T) -> Result<u64, LogClosed> {
        // The frame carries its own seq: encoded under the lock, straight into the batch (one
        // copy of the body, a memcpy-sized critical section).
        let mut q = lock(&self.shared.queue);
        if q.stop {
            return Err(LogClosed);
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        entry.encode_frame(seq, &mut q.buf);
        q.tags.push((seq, tag));
        let first_in_batch = q.tags.len() == 1;
        if first_in_batch {
            q.first_at = std::time::Instant::now();
        }
        drop(q);
        if first_in_batch {
            self.shared.wake.notify_one();
        }
        Ok(seq)
    }

    /// Waits until record `seq` is on disk (`Ok`) or its write failed (`Err`).
    pub fn durable(&self, seq: u64) -> DurableWait<'_> {
        DurableWait {
            settled: &self.shared.settled,
            seq,
            entry: None,
        }
    }

    pub fn durable_state(&self) -> Durable {
        lock(&self.shared.settled).durable
    }

    /// Sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        lock(&self.shared.queue).next_seq
    }

    /// True while the last write or fsync failed (disk full, I/O error).
    pub fn failing(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    pub fn segments(&self) -> Vec<Segment> {
        self.shared
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// A reader positioned at the first record with sequence number `>= seq`.
    pub fn reader(&self, seq: u64) -> io::Result<Reader> {
        let segments = self.segments();
        let idx = segments.iter().rposition(|s| s.first <= seq).unwrap_or(0);
        let mut r = Reader {
            segments: self.shared.segments.clone(),
            dir: self.dir.clone(),
            segment_first: segments.get(idx).map_or(seq, |s| s.first),
            file: None,
            offset: 0,
            buf: Vec::new(),
        };
        // Skip what comes before `seq` in its segment (sequential, page cache).
        while let Some((s, pos)) = r.peek_seq()? {
            if s >= seq {
                r.seek(pos);
                break;
            }
        }
        Ok(r)
    }

    /// Deletes whole segments, oldest first, while `drop(segment, next_first)` says so; never
    /// the active one. Returns how many went.
    pub fn drop_segments(&self, mut drop: impl FnMut(&Segment, u64) -> bool) -> io::Result<usize> {
        let mut n = 0;
        loop {
            let victim = {
                let segs = self
                    .shared
                    .segments
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                match (segs.front(), segs.get(1)) {
                    (Some(s), Some(next)) if drop(s, next.first) => s.clone(),
                    _ => break,
                }
            };
            fs::remove_file(&victim.path)?;
            self.shared
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            self.shared.bytes.fetch_sub(victim.bytes, Ordering::Relaxed);
            n += 1;
        }
        if n > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(n)
    }

    /// Stops the committer after it has written what is queued; later appends fail.
    pub fn close(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_one();
        let handle = lock(&self.committer).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Whether the committer thread is still running.
    pub fn committer_alive(&self) -> bool {
        lock(&self.committer)
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }
}

impl<T: Send + 'static> Drop for Log<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the event log is closed or its write failed")]
pub struct LogClosed;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn list_segments(dir: &Path) -> io::Result<VecDeque<Segment>> {
    let mut segs = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        // Retention may delete a segment between the listing and this look at it.
        let bytes = match e.metadata() {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        segs.push(Segment {
            first,
            path: e.path(),
            bytes,
        });
    }
    segs.sort_by_key(|s| s.first);
    Ok(segs.into())
}

/// The length of the valid prefix of a segment, the last valid record's seq, and whether
/// only zeros follow it (nothing to cut: the rest of a preallocated segment).
fn scan_valid(path: &Path) -> io::Result<(u64, Option<u64>, bool)> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut buf = Vec::new();
    let (mut valid, mut last) = (0u64, None);
    loop {
        match read_frame(&mut r, &mut buf) {
            Ok(Some(n)) => match Entry::decode_payload(&buf) {
                Some((seq, _)) if last.is_none_or(|l| seq > l) => {
                    valid += n as u64;
                    last = Some(seq);
                }
                _ => return Ok((valid, last, false)),
            },
            // The end, or a zero header: a torn batch may still have left pages after it.
            Ok(None) => return Ok((valid, last, only_zeros(&mut r)?)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok((valid, last, false)),
            Err(e) => return Err(e),
        }
    }
}

fn only_zeros(r: &mut impl Read) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut chunk)? {
            0 => return Ok(true),
            n if chunk[..n].iter().any(|&b| b != 0) => return Ok(false),
            _ => {}
        }
    }
}

/// What the committer hands each batch to once it is on disk (the store: to its indexer).
type OnCommit<T> = Box<dyn FnMut(Vec<Committed<T>>) + Send>;

struct Committer<T> {
    dir: PathBuf,
    shared: Arc<Shared<T>>,
    file: File,
    /// Bytes of the active segment known to be on disk.
    len: u64,
    /// The active segment's file size: past `len` while it is preallocated.
    size: u64,
    segment_bytes: u64,
    /// The next segment, being written full of zeros: started at each roll-over, and in a
    /// segment that is appended to (a run's first) once it is a quarter full or has taken
    /// [`APPENDS_BEFORE_SPARE`] commits ([`Committer::write`]), so a short-lived process
    /// writes none.
    spare: Option<Spare>,
    /// Commits into the active segment while it had no preallocated tail.
    appends: u32,
    /// A failed write was cut off the active segment and that cut is not known to be on
    /// disk: the roll-over makes it durable before the segment is left behind.
    cut_pending: bool,
    /// How long a commit waits for more records: none unless the CPUs are busy.
    delay: CommitDelay,
    on_commit: OnCommit<T>,
}

/// Commits that may grow a segment's file before a spare is prepared for it: each costs a
/// second synchronous device write (the inode), so a steady stream of small commits should
/// not go on paying it for a whole segment; a test or a short run stays below it.
const APPENDS_BEFORE_SPARE: u32 = 256;

/// The page size commits into a preallocated segment round their writes up to.
const PAGE: u64 = 4096;

impl<T> Committer<T> {
    fn run(mut self) {
        // However the thread ends (a panic too), waiters learn that nothing more will come.
        struct Closing<'a>(&'a Mutex<Settled>);
        impl Drop for Closing<'_> {
            fn drop(&mut self) {
                let waiters = {
                    let mut s = lock(self.0);
                    s.closed = true;
                    std::mem::take(&mut s.waiters)
                };
                waiters.into_iter().for_each(|(_, _, waker)| waker.wake());
            }
        }
        let shared = self.shared.clone();
        let _closing = Closing(&shared.settled);
        let mut buf = Vec::new();
        let mut tags = Vec::new();
        let mut woken = Vec::new();
        loop {
            let first_at = {
                let mut q = lock(&self.shared.queue);
                while q.tags.is_empty() && !q.stop {
                    q = self
                        .shared
                        .wake
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if q.tags.is_empty() {
                    // Dropping the committer stops a spare still being written.
                    return;
                }
                // With the CPUs full, more records share the commit's fixed cost
                // (crate::commit_delay); the records that arrive meanwhile join the batch
                // (they do not wake this thread: only a batch's first does). `close` cuts the
                // wait short.
                let first_at = q.first_at;
                let until = first_at + self.delay.get();
                loop {
                    let now = std::time::Instant::now();
                    if q.stop || now >= until {
                        break;
                    }
                    q = self
                        .shared
                        .wake
                        .wait_timeout(q, until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                // Only this thread empties the queue: `first_at` still dates its first record.
                std::mem::swap(&mut q.buf, &mut buf);
                std::mem::swap(&mut q.tags, &mut tags);
                first_at
            };
            let (first, upto) = (tags[0].0, tags[tags.len() - 1].0);
            let started = std::time::Instant::now();
            let written = self.write(first, &mut buf);
            let m = crate::metrics::get();
            // Behind a slow commit, the next batch waits as long again before its own.
            m.commit_wait_seconds
                .observe(started.saturating_duration_since(first_at).as_secs_f64());
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
            m.commit_records.observe(tags.len() as f64);
            let ok = match written {
                Ok(()) => true,
                Err(e) => {
                    m.store_error("log_write");
                    tracing::error!(error = %e, records = tags.len(), "event log write failed; requests get 503");
                    self.rewind();
                    false
                }
            };
            self.shared.failed.store(!ok, Ordering::Relaxed);
            let done: Vec<_> = tags
                .drain(..)
                .map(|(seq, tag)| Committed { seq, ok, tag })
                .collect();
            // Release waiters first: the index update does not make anything more durable.
            lock(&self.shared.settled).publish(first, upto, ok, &mut woken);
            woken.drain(..).for_each(Waker::wake);
            (self.on_commit)(done);
            buf.clear();
            if !ok {
                // Do not spin on a failing disk.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn write(&mut self, first: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        #[cfg(test)]
        if self
            .shared
            .fail_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io::Error::other("injected by a test"));
        }
        let records = buf.len() as u64;
        // A segment that is appended to (a run's first, or one whose spare was not ready at
        // its roll-over) gives way to the spare as soon as that is ready, full or not.
        let spare_ready = self.spare.as_ref().is_some_and(Spare::ready);
        if self.len >= self.segment_bytes
            || (self.len > 0 && !self.preallocated_for(records) && spare_ready)
        {
            self.roll(first)?;
        }
        if self.preallocated_for(records) {
            // The write runs on to the next page boundary with the zeros that are there: the
            // kernel then never has to read a page in before writing part of it (the spare's
            // zeros went around the page cache).
            let end = (self.len + records).next_multiple_of(PAGE).min(self.size);
            buf.resize((end - self.len) as usize, 0);
        } else {
            self.appends = self.appends.saturating_add(1);
        }
        self.file.write_all_at(buf, self.len)?;
        self.file.sync_data()?;
        self.len += records;
        self.size = self.size.max(self.len);
        if self.spare.is_none()
            && (self.len >= self.segment_bytes / 4 || self.appends >= APPENDS_BEFORE_SPARE)
        {
            self.spare = Some(Spare::prepare(&self.dir, self.segment_bytes));
        }
        self.shared.bytes.fetch_add(records, Ordering::Relaxed);
        if let Some(s) = self
            .shared
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .back_mut()
        {
            s.bytes = self.len;
        }
        Ok(())
    }

    /// Whether `records` more bytes fit in the active segment's preallocated part.
    fn preallocated_for(&self, records: u64) -> bool {
        self.len + records <= self.size
    }

    /// Starts segment `first`. The old one was fully synced by the last commit.
    fn roll(&mut self, first: u64) -> io::Result<()> {
        if self.size > self.len || self.cut_pending {
            // The finished segment ends where its records end (readers move on to the next
            // segment at its file's end), and durably so before the next one exists: only
            // the last segment's tail is scanned and cut at a restart.
            self.file.set_len(self.len)?;
            self.file.sync_all()?;
            self.cut_pending = false;
        }
        let path = segment_path(&self.dir, first);
        // A leftover file of that name can only hold a cut, never-acknowledged tail: the
        // rename or the create replaces it.
        // A spare still being written is kept for the next roll: never wait for it here.
        let preallocated = self.spare.as_ref().is_some_and(|s| s.take(&path));
        if preallocated || self.spare.as_ref().is_some_and(Spare::failed) {
            self.spare = None;
        }
        self.size = match preallocated {
            true => self.segment_bytes,
            false => {
                File::create(&path)?;
                0
            }
        };
        let opened = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| sync_dir(&self.dir).map(|()| f));
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // Not a segment yet: the batch fails and the next roll-over names its own.
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        if self.spare.is_none() {
            // The whole of this segment's filling time to write the next one.
            self.spare = Some(Spare::prepare(&self.dir, self.segment_bytes));
        }
        self.file = file;
        self.len = 0;
        self.appends = 0;
        self.shared
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Segment {
                first,
                path,
                bytes: 0,
            });
        Ok(())
    }

    /// After a failed write: cut whatever part of the batch reached the file. No reader has
    /// read any of it: they stop at the committed length, which only a successful write moves.
    fn rewind(&mut self) {
        self.cut_pending = true;
        match self.file.set_len(self.len) {
            Ok(()) => self.size = self.len,
            Err(e) => tracing::error!(error = %e, "event log could not cut a failed write"),
        }
    }
}

/// The spare segment's file name while it is being written, and once it is complete.
const SPARE_TMP: &str = "next.spare.tmp";
const SPARE: &str = "next.spare";

/// The next segment, prepared ahead by a helper thread: `segment_bytes` of zeros, synced,
/// then renamed to [`SPARE`]. One at a time: the next is started when this one is taken.
struct Spare {
    state: Arc<SpareState>,
    helper: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct SpareState {
    ready: AtomicBool,
    stop: AtomicBool,
}

impl Spare {
    fn prepare(dir: &Path, bytes: u64) -> Spare {
        let state = Arc::new(SpareState::default());
        let (dir, st) = (dir.to_owned(), state.clone());
        let helper = std::thread::Builder::new()
            .name("hookgate-spare".into())
            .spawn(move || match write_spare(&dir, bytes, &st.stop) {
                Ok(true) => st.ready.store(true, Ordering::Release),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event log could not preallocate its next segment; it will be appended to")
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "no thread to preallocate segments"))
            .ok();
        Spare { state, helper }
    }

    /// Renames the spare to `path` if it is ready (`true`); never waits for it. A failed
    /// rename (the file is gone) gives it up: the segment is created empty instead.
    fn take(&self, path: &Path) -> bool {
        if !self.state.ready.swap(false, Ordering::Acquire) {
            return false;
        }
        let dir = path.parent().expect("a segment path has a directory");
        match fs::rename(dir.join(SPARE), path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "event log lost its preallocated segment; appending instead");
                false
            }
        }
    }

    /// The spare is complete and not taken yet.
    fn ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// The helper ended without a spare (an error, or its rename was lost).
    fn failed(&self) -> bool {
        !self.state.ready.load(Ordering::Acquire)
            && self.helper.as_ref().is_none_or(|h| h.is_finished())
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.helper.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes [`SPARE`] in `dir`; `Ok(false)` when stopped first. A failed one leaves nothing
/// behind (on a full disk it would hold the space commits need).
fn write_spare(dir: &Path, bytes: u64, stop: &AtomicBool) -> io::Result<bool> {
    let tmp = dir.join(SPARE_TMP);
    match write_zeros(&tmp, bytes, stop) {
        Ok(true) => fs::rename(&tmp, dir.join(SPARE)).map(|()| true),
        other => {
            let _ = fs::remove_file(&tmp);
            other
        }
    }
}

/// Fills `path` with `bytes` zeros and syncs it; `Ok(false)` when stopped first.
///
/// With `O_DIRECT` where the filesystem takes it: the zeros go from one buffer to the disk,
/// never through the page cache (copying them there and writing them back was the helper's
/// whole CPU cost, 5-7 % of hookgate's at flat-out ingest), and each chunk's `write` returns
/// once the disk has it. Elsewhere (tmpfs), buffered writes, each chunk written back before
/// the next. Either way the helper then rests as long as the chunk took: at most one chunk
/// ever queues ahead of a commit's fsync, and the helper takes at most half of the disk's
/// time. (Left to the final fsync, or only started with `SYNC_FILE_RANGE_WRITE`, the whole
/// segment left as one burst and commits waited behind it: p99 at 2,000 req/s 60-77 ms,
/// against 7-11 ms without preallocation.)
fn write_zeros(path: &Path, bytes: u64, stop: &AtomicBool) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    const CHUNK: usize = 256 << 10;
    /// `O_DIRECT` wants the buffer, offsets and lengths aligned to the logical block size.
    const ALIGN: usize = 4096;
    let direct = match bytes.is_multiple_of(ALIGN as u64) {
        true => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok(),
        false => None,
    };
    let (f, is_direct) = match direct {
        Some(f) => (f, true),
        None => (File::create(path)?, false),
    };
    let buf = vec![0u8; CHUNK + ALIGN];
    let at = buf.as_ptr().align_offset(ALIGN);
    let zeros = &buf[at..at + CHUNK];
    let mut done = 0u64;
    while done < bytes {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let n = (bytes - done).min(CHUNK as u64) as usize;
        f.write_all_at(&zeros[..n], done)?;
        if !is_direct {
            // Checked: the wait takes a failed write-back's error, which `sync_all` below
            // would then not see.
            sync_range(&f, (done, n as u64), WAIT)?;
        }
        done += n as u64;
        std::thread::sleep(started.elapsed());
    }
    f.sync_all()?;
    Ok(true)
}

/// Waits for the range's pages in flight, writes the dirty ones and waits for them.
pub(crate) const WAIT: libc::c_uint = libc::SYNC_FILE_RANGE_WAIT_BEFORE
    | libc::SYNC_FILE_RANGE_WRITE
    | libc::SYNC_FILE_RANGE_WAIT_AFTER;

/// `sync_file_range` of `(offset, length)` in `file`.
pub(crate) fn sync_range(
    file: &File,
    (offset, length): (u64, u64),
    flags: libc::c_uint,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor `file` keeps open for the call.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            length as libc::off64_t,
            flags,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Sequential reader over the segments, for the relay and the recovery scan.
pub struct Reader {
    /// The log's segments: the active one's `bytes` bounds what is read of it.
    segments: Arc<RwLock<VecDeque<Segment>>>,
    dir: PathBuf,
    segment_first: u64,
    /// Kept open (with its buffer) at the end of what is committed and across a seek within
    /// the segment: the relay reaches that end after every batch.
    file: Option<BufReader<SegmentFile>>,
    offset: u64,
    buf: Vec<u8>,
}

/// Where a record starts: `(segment's first seq, offset)`.
pub type Position = (u64, u64);

impl Reader {
    /// The next record, if it is complete and valid; `None` at the end of what is written.
    /// After an error the next call reads from the same record again (the relay reads on
    /// after a damaged record's error to publish what came before it: with the buffer left
    /// past the bad frame, that read skipped it and put every later position off).
    pub fn next_record(&mut self) -> io::Result<Option<(u64, Position, Entry)>> {
        let r = self.read_next_record();
        if r.is_err() {
            self.file = None;
        }
        r
    }

    fn read_next_record(&mut self) -> io::Result<Option<(u64, Position, Entry)>> {
        // A bad frame is read once more from the file before it is called damage: a buffer
        // filled without the committed bound (a segment whose writer is not this process's
        // log) may hold the first bytes of a record still being written, and the segment may
        // have been finished and followed by another since.
        let mut reread = false;
        loop {
            if self.file.is_none() {
                match File::open(segment_path(&self.dir, self.segment_first)) {
                    Ok(file) => {
                        let f = SegmentFile {
                            file,
                            first: self.segment_first,
                            pos: self.offset,
                            segments: self.segments.clone(),
                        };
                        self.file = Some(BufReader::with_capacity(256 << 10, f));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Deleted by retention: go on at the next segment.
                        match self.next_segment()? {
                            true => continue,
                            false => return Ok(None),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let f = self.file.as_mut().expect("opened above");
            let pos = (self.segment_first, self.offset);
            match read_frame(f, &mut self.buf) {
                Ok(Some(n)) => {
                    let Some((seq, entry)) = Entry::decode_payload(&self.buf) else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "undecodable record",
                        ));
                    };
                    self.offset += n as u64;
                    return Ok(Some((seq, pos, entry)));
                }
                // A bad frame in a finished segment is damage on disk, not a write in
                // progress: say so (the relay reports it) rather than stall in silence.
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData
                        && self.behind_a_later_segment()? =>
                {
                    if !reread {
                        reread = true;
                        self.file = None;
                        continue;
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "corrupt record in segment {} at offset {}",
                            self.segment_first, self.offset
                        ),
                    ));
                }
                // The end of this segment, or a record still being written.
                r @ (Ok(None) | Err(_)) => {
                    // Re-seek: a partial read must be retried from the frame start (the
                    // buffer goes, the allocation and the open file stay).
                    let f = self.file.as_mut().expect("opened above");
                    f.seek(SeekFrom::Start(self.offset))?;
                    // Kept for the next call unless the read itself failed (`EIO`): that one
                    // reopens the file, as before.
                    let failed = r.is_err_and(|e| e.kind() != io::ErrorKind::InvalidData);
                    if !failed && active_len(&self.segments, self.segment_first).is_some() {
                        // Still the segment being written: nothing more yet.
                        return Ok(None);
                    }
                    self.file = None;
                    if !self.next_segment()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads the next record, returning only its seq and position.
    fn peek_seq(&mut self) -> io::Result<Option<(u64, Position)>> {
        Ok(self.next_record()?.map(|(s, pos, _)| (s, pos)))
    }

    /// Moves to a position returned by [`Reader::next_record`].
    pub fn seek(&mut self, pos: Position) {
        if let Some(f) = self.file.as_mut().filter(|_| pos.0 == self.segment_first) {
            // Infallible for `SegmentFile`; keeps the open file and the buffer's allocation.
            if f.seek(SeekFrom::Start(pos.1)).is_ok() {
                self.offset = pos.1;
                return;
            }
        }
        self.segment_first = pos.0;
        self.offset = pos.1;
        self.file = None;
    }

    /// Whether a later segment exists (so the current one is finished).
    fn behind_a_later_segment(&self) -> io::Result<bool> {
        Ok(list_segments(&self.dir)?
            .iter()
            .any(|s| s.first > self.segment_first))
    }

    /// Moves to the segment after the current one if there is one and this one is complete.
    fn next_segment(&mut self) -> io::Result<bool> {
        let segs = list_segments(&self.dir)?;
        let next = segs.iter().find(|s| s.first > self.segment_first);
        match next {
            Some(s) => {
                // Only when the current segment has been read to its end: its file's end, or
                // zeros (a later segment exists, so nothing more is written here; open and a
                // roll-over cut finished segments, this is for one whose cut was lost).
                let path = segment_path(&self.dir, self.segment_first);
                let cur_len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if self.offset < cur_len && !zero_header_at(&path, self.offset)? {
                    return Ok(false);
                }
                self.segment_first = s.first;
                self.offset = 0;
                self.file = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The committed length of segment `first` while it is the one being written; `None` once it
/// is finished (its file ends where its records do).
fn active_len(segments: &RwLock<VecDeque<Segment>>, first: u64) -> Option<u64> {
    let segments = segments.read().unwrap_or_else(PoisonError::into_inner);
    segments
        .back()
        .filter(|s| s.first == first)
        .map(|s| s.bytes)
}

/// A segment read with `pread`, never past what is committed in the active segment: neither
/// a record still being written nor the zeros of a preallocated tail (which would be read
/// from the device, the spare having been written around the page cache).
struct SegmentFile {
    file: File,
    first: u64,
    pos: u64,
    segments: Arc<RwLock<VecDeque<Segment>>>,
}

impl Read for SegmentFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = active_len(&self.segments, self.first)
            .map_or(u64::MAX, |end| end.saturating_sub(self.pos));
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SegmentFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Start(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

/// Whether the 8 bytes at `offset` of `path` are zeros (or the file ends there).
fn zero_header_at(path: &Path, offset: u64) -> io::Result<bool> {
    let mut header = [0u8; FRAME_HEADER];
    let file = match File::open(path) {
        Ok(f) => f,
        // Deleted by retention since it was listed: nothing more is written there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let n = file.read_at(&mut header, offset)?;
    Ok(header[..n].iter().all(|&b| b == 0))
}

/// Modification time of a segment (the time of its last append), for time-based retention.
pub fn modified(seg: &Segment) -> Option<SystemTime> {
    fs::metadata(&seg.path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn entry(id: &str, body_len: usize) -> Entry {
        Entry {
            content_key: id.len().is_multiple_of(2).then(|| format!("sha256:{id}")),
            ..Entry::test_push(id, 1_700_000_000, vec![b'x'; body_len])
        }
    }

    type TestLog = Log<()>;

    fn open(dir: &Path, segment_bytes: u64) -> (TestLog, Recovered) {
        Log::open(
            dir,
            segment_bytes,
            1,
            CommitDelay::never(),
            |_: Vec<Committed<()>>| {},
        )
        .unwrap()
    }

    async fn append(log: &TestLog, e: &Entry) -> u64 {
        let seq = log.append(e, ()).unwrap();
        log.durable(seq).await.unwrap();
        seq
    }

    fn read_all(log: &TestLog, from: u64) -> Vec<(u64, Entry)> {
        let mut r = log.reader(from).unwrap();
        let mut out = Vec::new();
        while let Some((seq, _, e)) = r.next_record().unwrap() {
            out.push((seq, e));
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let e = entry("abcd", 10);
        let mut buf = Vec::new();
        e.encode_frame(7, &mut buf);
        let mut r = &buf[..];
        let mut payload = Vec::new();
        assert_eq!(read_frame(&mut r, &mut payload).unwrap(), Some(buf.len()));
        assert_eq!(Entry::decode_payload(&payload), Some((7, e)));
    }

    #[tokio::test]
    async fn append_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, rec) = open(dir.path(), 1 << 20);
            assert_eq!(rec.last_seq, 0);
            for i in 0..5 {
                assert_eq!(append(&log, &entry(&format!("e{i}"), 100)).await, i + 1);
            }
            let got = read_all(&log, 1);
            assert_eq!(got.len(), 5);
            assert_eq!(got[4].1.message_id, "e4");
            assert_eq!(read_all(&log, 4).first().map(|r| r.0), Some(4));
        }
        let (log, rec) = open(dir.path(), 1 << 20);
        assert_eq!((rec.last_seq, rec.cut_bytes), (5, 0));
        assert_eq!(append(&log, &entry("e5", 100)).await, 6);
        assert_eq!(read_all(&log, 1).len(), 6);
    }

    /// A crash can leave any prefix of the last record's frame: every one is cut, and every
    /// record before it is kept.
    #[tokio::test]
    async fn torn_tail_at_every_offset_of_the_last_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let seg;
        let last_len;
        {
            let (log, _) = open(dir.path(), 1 << 20);
            append(&log, &entry("a", 50)).await;
            append(&log, &entry("bb", 60)).await;
            let before = log.bytes();
            append(&log, &entry("ccc", 70)).await;
            last_len = log.bytes() - before;
            seg = log.segments()[0].path.clone();
        }
        let full = fs::read(&seg).unwrap();
        let keep = full.len() - last_len as usize;
        for cut in keep..full.len() {
            let d = tempfile::tempdir().unwrap();
            fs::write(d.path().join(seg.file_name().unwrap()), &full[..cut]).unwrap();
            let (log, rec) = open(d.path(), 1 << 20);
            assert_eq!(rec.last_seq, 2, "cut at {cut}");
            assert_eq!(rec.cut_bytes, (cut - keep) as u64);
            let got = read_all(&log, 1);
            assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
            // The log goes on behind the cut, and the new record reads back.
            assert_eq!(append(&log, &entry("dd", 10)).await, 3);
            assert_eq!(read_all(&log, 3)[0].1.message_id, "dd");
        }
    }

    #[tokio::test]
    async fn a_corrupt_last_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let seg = {
            let (log, _) = open(dir.path(), 1 << 20);
            append(&log, &entry("a", 50)).await;
            append(&log, &entry("bb", 50)).await;
            log.segments()[0].path.clone()
        };
        let mut bytes = fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let (log, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec.last_seq, 1);
        assert!(rec.cut_bytes > 0);
        assert_eq!(read_all(&log, 1).len(), 1);
    }

    /// Found by a black-box review: a damaged record in a finished segment, read again after
    /// its error (the relay publishes what came before it, then reads on), was skipped, and
    /// every later position was off by the difference in record sizes.
    #[tokio::test]
    async fn a_damaged_record_is_reported_again_never_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // Small segments: the first is finished, so its damage is not a torn tail.
        let seg = {
            let (log, _) = open(dir.path(), 400);
            for id in ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g", "h"] {
                append(&log, &entry(id, 50)).await;
            }
            assert!(log.segments().len() > 2);
            log.segments()[0].path.clone()
        };
        let mut bytes = fs::read(&seg).unwrap();
        let second = FRAME_HEADER + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[second + FRAME_HEADER + 20] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let (log, _) = open(dir.path(), 400);
        let mut r = log.reader(1).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().0, 1);
        for _ in 0..3 {
            let e = r.next_record().unwrap_err();
            assert!(
                e.to_string().contains(&format!("at offset {second}")),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn segments_roll_over_and_whole_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 4096);
        for i in 0..20 {
            append(&log, &entry(&format!("e{i}"), 1000)).await;
        }
        let segs = log.segments();
        assert!(segs.len() >= 4, "{segs:?}");
        assert_eq!(read_all(&log, 1).len(), 20, "the reader crosses segments");
        // Drop what lies wholly below seq 10.
        let dropped = log.drop_segments(|_, next_first| next_first <= 10).unwrap();
        assert!(dropped >= 1);
        let first = log.segments()[0].first;
        assert!(first <= 10);
        let got = read_all(&log, 1);
        assert_eq!(
            got[0].0, first,
            "reading from before the first kept segment"
        );
        assert_eq!(got.last().unwrap().0, 20);
        assert_eq!(
            log.bytes(),
            log.segments().iter().map(|s| s.bytes).sum::<u64>()
        );
        drop(log);
        // Reopened after a roll-over and a drop: numbering goes on.
        let (log, rec) = open(dir.path(), 4096);
        assert_eq!(rec.last_seq, 20);
        assert_eq!(append(&log, &entry("x", 10)).await, 21);
    }

    /// Waits for the helper to finish the spare segment.
    fn wait_spare(dir: &Path) {
        for _ in 0..1000 {
            if dir.join(SPARE).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no spare segment after 10 s");
    }

    fn file_len(p: &Path) -> u64 {
        fs::metadata(p).unwrap().len()
    }

    /// Appends 1 KB records until the log has `n` segments; returns the last seq.
    async fn fill_to(log: &TestLog, n: usize, mut seq: u64) -> u64 {
        while log.segments().len() < n {
            seq = append(log, &entry(&format!("r{seq}"), 1000)).await;
        }
        seq
    }

    #[tokio::test]
    async fn later_segments_are_preallocated_and_cut_to_their_records_when_finished() {
        const SEG: u64 = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path();
        let (log, _) = open(log_dir, SEG);
        // The first segment of a fresh log is appended to; its spare is started a quarter in.
        let last = append(&log, &entry("first", 20_000)).await;
        wait_spare(log_dir);
        fill_to(&log, 2, last).await;
        let segs = log.segments();
        assert_eq!(file_len(&segs[1].path), SEG, "the spare became segment 2");
        // The roll-over started the next spare; segment 2 then finishes.
        let last = append(&log, &entry("big", 20_000)).await;
        wait_spare(log_dir);
        let last = fill_to(&log, 3, last).await;
        let segs = log.segments();
        assert_eq!(
            file_len(&segs[1].path),
            segs[1].bytes,
            "a finished segment is cut to its records"
        );
        assert_eq!(file_len(&segs[2].path), SEG);
        let got = read_all(&log, 1);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "the reader stops at the zeros of the active segment and crosses finished ones"
        );
        drop(log);
        // A clean restart keeps the active segment preallocated: zeros are no torn tail.
        let (log, rec) = open(log_dir, SEG);
        assert_eq!((rec.last_seq, rec.cut_bytes), (last, 0));
        assert_eq!(file_len(&log.segments()[2].path), SEG);
        assert_eq!(append(&log, &entry("after", 100)).await, last + 1);
        assert_eq!(read_all(&log, last + 1)[0].1.message_id, "after");
        assert_eq!(file_len(&log.segments()[2].path), SEG);
    }

    /// Record `seq`'s frame, written by hand.
    fn frame(id: &str, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        entry(id, 300).encode_frame(seq, &mut out);
        out
    }

    /// A reader at the start of segment 1 of `dir`, without a log: the test writes the files
    /// and says in `segments` what is committed (nothing listed: every segment finished).
    fn reader_at(dir: &Path, segments: Arc<RwLock<VecDeque<Segment>>>) -> Reader {
        Reader {
            segments,
            dir: dir.to_owned(),
            segment_first: 1,
            file: None,
            offset: 0,
            buf: Vec::new(),
        }
    }

    /// Session 5 saw the relay report "corrupt record" now and then and recover by
    /// reconnecting: its reader had buffered a record that was still being written, and by
    /// the time it parsed it the segment was finished and followed by another.
    #[test]
    fn a_record_buffered_while_being_written_is_read_again_before_it_is_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, r2, r3) = (frame("one", 1), frame("two", 2), frame("three", 3));
        // Segment 1, preallocated: record 1, the first half of record 2, zeros.
        let seg1 = segment_path(dir.path(), 1);
        let mut writing = r1.clone();
        writing.extend_from_slice(&r2[..r2.len() / 2]);
        writing.resize(64 << 10, 0);
        fs::write(&seg1, &writing).unwrap();
        let mut reader = reader_at(dir.path(), Arc::default());
        assert_eq!(reader.next_record().unwrap().unwrap().0, 1);
        // Record 2 is complete, segment 1 is cut to its records and segment 3 starts.
        fs::write(&seg1, [r1.as_slice(), r2.as_slice()].concat()).unwrap();
        fs::write(segment_path(dir.path(), 3), &r3).unwrap();
        assert_eq!(reader.next_record().unwrap().unwrap().0, 2);
        assert_eq!(reader.next_record().unwrap().unwrap().0, 3);
        // Damage that is really on disk is still reported.
        let mut damaged = r3.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        fs::write(
            segment_path(dir.path(), 3),
            [r3.as_slice(), damaged.as_slice()].concat(),
        )
        .unwrap();
        fs::write(segment_path(dir.path(), 5), &r3).unwrap();
        let err = reader.next_record().unwrap_err();
        assert!(err.to_string().contains("corrupt record"), "{err}");
    }

    /// In the segment being written, a reader stops at the committed length the committer
    /// publishes, whatever the file holds after it, and goes on from there once it grows.
    #[test]
    fn a_reader_stops_at_the_committed_end_of_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, r2) = (frame("one", 1), frame("two", 2));
        let path = segment_path(dir.path(), 1);
        // Both records are in the file (the second written, not yet committed) before zeros.
        let mut bytes = [r1.as_slice(), r2.as_slice()].concat();
        bytes.resize(64 << 10, 0);
        fs::write(&path, &bytes).unwrap();
        let segments = Arc::new(RwLock::new(VecDeque::from([Segment {
            first: 1,
            path,
            bytes: r1.len() as u64,
        }])));
        let mut reader = reader_at(dir.path(), segments.clone());
        assert_eq!(reader.next_record().unwrap().unwrap().0, 1);
        assert!(reader.next_record().unwrap().is_none());
        assert!(reader.next_record().unwrap().is_none());
        segments.write().unwrap()[0].bytes = (r1.len() + r2.len()) as u64;
        let (seq, pos, _) = reader.next_record().unwrap().unwrap();
        assert_eq!((seq, pos), (2, (1, r1.len() as u64)));
        assert!(reader.next_record().unwrap().is_none());
        // A seek back within the segment reads the record again.
        reader.seek(pos);
        assert_eq!(reader.next_record().unwrap().unwrap().0, 2);
    }

    /// A reader follows a writer through a hundred roll-overs (spare and appended segments,
    /// padded commits) while retention deletes what it has read and it now and then seeks
    /// back a record: every record once, in order. (A larger stress run of this kind, 20,000
    /// records in 8 KiB segments, also caught retention deleting a segment between the
    /// directory listing and its `metadata`; too rare to catch at this size.)
    #[test]
    fn a_reader_follows_the_writer_through_roll_overs_and_retention() {
        const SEG: u64 = 64 << 10;
        const TOTAL: u64 = 5_000;
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path(), SEG).0);
        // Everything before this seq is done with (one record kept for the seek back).
        let done_below = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 1..=TOTAL {
                    let len = (i * 7919 % 3000 + 1) as usize;
                    assert_eq!(log.append(&entry(&format!("r{i}"), len), ()).unwrap(), i);
                    if i % 7 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        };
        let retention = {
            let (log, done_below, stop) = (log.clone(), done_below.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let below = done_below.load(Ordering::Acquire);
                    log.drop_segments(|_, next| next <= below).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        };
        let mut reader = log.reader(1).unwrap();
        let (mut expect, mut previous, mut waits, mut went_back) = (1, None, 0, 0);
        while expect <= TOTAL {
            let Some((seq, pos, e)) = reader.next_record().unwrap() else {
                waits += 1;
                assert!(waits < 100_000, "stalled before {expect}");
                std::thread::sleep(Duration::from_micros(20));
                continue;
            };
            assert_eq!(
                (seq, e.message_id.as_str()),
                (expect, format!("r{seq}").as_str())
            );
            match previous {
                Some((prev, prev_pos)) if seq % 50 == 0 && went_back != seq => {
                    went_back = seq;
                    reader.seek(prev_pos);
                    expect = prev;
                    previous = None;
                }
                _ => {
                    previous = Some((seq, pos));
                    done_below.store(seq.saturating_sub(1), Ordering::Release);
                    expect += 1;
                }
            }
        }
        writer.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        retention.join().unwrap();
        assert!(reader.next_record().unwrap().is_none());
        assert!(
            log.segments()[0].first > 1,
            "retention ran under the reader"
        );
    }

    #[tokio::test]
    async fn an_appended_segment_gives_way_to_its_spare_once_that_is_ready() {
        const SEG: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), SEG);
        // Small commits, far from a quarter of the segment: the count starts the spare.
        let mut last = 0;
        for i in 0..APPENDS_BEFORE_SPARE {
            last = append(&log, &entry(&format!("a{i}"), 100)).await;
        }
        assert!(log.segments()[0].bytes < SEG / 4);
        wait_spare(dir.path());
        assert_eq!(log.segments().len(), 1);
        let next = append(&log, &entry("next", 100)).await;
        let segs = log.segments();
        assert_eq!(segs.len(), 2, "the next commit went into the spare");
        assert_eq!((segs[1].first, file_len(&segs[1].path)), (next, SEG));
        assert_eq!(file_len(&segs[0].path), segs[0].bytes);
        let got: Vec<u64> = read_all(&log, 1).iter().map(|r| r.0).collect();
        assert_eq!(got, (1..=next).collect::<Vec<_>>());
        drop(log);
        let (log, rec) = open(dir.path(), SEG);
        assert_eq!((rec.last_seq, rec.cut_bytes), (last + 1, 0));
        assert_eq!(log.segments().len(), 2);
    }

    /// A crash during a commit into a preallocated segment can persist any of its pages: the
    /// header page may be missing (zeros) while a later one landed. Either way it is cut.
    #[tokio::test]
    async fn a_torn_batch_inside_a_preallocated_segment_is_cut() {
        const SEG: u64 = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let (active, last, valid) = {
            let (log, _) = open(dir.path(), SEG);
            let last = append(&log, &entry("first", 20_000)).await;
            wait_spare(dir.path());
            let last = fill_to(&log, 2, last).await;
            let seg = log.segments()[1].clone();
            (seg.path, last, seg.bytes)
        };
        let mut frame = Vec::new();
        entry("lost", 9000).encode_frame(last + 1, &mut frame);
        let original = fs::read(&active).unwrap();
        for (what, at, bytes) in [
            ("a later page only", valid + 4096, &frame[4096..]),
            ("the first bytes only", valid, &frame[..100]),
        ] {
            fs::write(&active, &original).unwrap();
            File::options()
                .write(true)
                .open(&active)
                .unwrap()
                .write_all_at(bytes, at)
                .unwrap();
            let (log, rec) = open(dir.path(), SEG);
            assert_eq!(rec.last_seq, last, "{what}");
            assert_eq!(rec.cut_bytes, SEG - valid, "{what}");
            assert_eq!(file_len(&active), valid, "{what}");
            assert_eq!(append(&log, &entry("next", 100)).await, last + 1);
            let got = read_all(&log, 1);
            assert_eq!(got.len() as u64, last + 1, "{what}");
            assert_eq!(got.last().unwrap().1.message_id, "next");
        }
    }

    #[tokio::test]
    async fn a_preallocated_tail_is_cut_when_a_restart_starts_a_new_segment() {
        const SEG: u64 = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let (tail, last) = {
            let (log, _) = open(dir.path(), SEG);
            let last = append(&log, &entry("first", 20_000)).await;
            wait_spare(dir.path());
            let last = fill_to(&log, 2, last).await;
            (log.segments()[1].clone(), last)
        };
        assert_eq!(file_len(&tail.path), SEG);
        // A smaller segment_bytes: the tail is full now, so the restart starts segment 3.
        let (log, rec) = open(dir.path(), 1024);
        assert_eq!(rec.last_seq, last);
        assert_eq!(log.segments().len(), 3);
        assert_eq!(file_len(&tail.path), tail.bytes, "cut to its records");
        assert_eq!(append(&log, &entry("next", 100)).await, last + 1);
        let got = read_all(&log, 1);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            (1..=last + 1).collect::<Vec<_>>()
        );
    }

    /// A segment of zeros that is not the last (a roll-over failed after its spare was renamed
    /// and the clean-up was lost too): readers pass it instead of waiting there for ever.
    #[tokio::test]
    async fn a_reader_passes_a_segment_of_zeros_that_is_not_the_last() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), 1 << 20));
        {
            let (log, _) = open(dir.path(), 1 << 20);
            for i in 0..3 {
                append(&log, &entry(&format!("a{i}"), 100)).await;
            }
        }
        fs::write(segment_path(dir.path(), 4), vec![0u8; 64 << 10]).unwrap();
        let later = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(
                later.path(),
                1 << 20,
                6,
                CommitDelay::never(),
                |_: Vec<Committed<()>>| {},
            )
            .unwrap();
            append(&log, &entry("b6", 100)).await;
            append(&log, &entry("b7", 100)).await;
        }
        fs::copy(segment_path(later.path(), 6), segment_path(dir.path(), 6)).unwrap();
        let (log, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec.last_seq, 7);
        let got = read_all(&log, 1);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 6, 7]);
    }

    #[tokio::test]
    async fn a_spare_left_by_an_earlier_run_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SPARE), b"junk").unwrap();
        fs::write(dir.path().join(SPARE_TMP), b"junk").unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        assert!(!dir.path().join(SPARE).exists());
        assert!(!dir.path().join(SPARE_TMP).exists());
        append(&log, &entry("a", 10)).await;
        assert_eq!(read_all(&log, 1).len(), 1);
    }

    /// A log whose commits' sizes are collected, in order.
    fn counting_commits(dir: &Path, delay: CommitDelay) -> (TestLog, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let (log, _) = Log::open(dir, 1 << 20, 1, delay, move |b: Vec<Committed<()>>| {
            lock(&seen).push(b.len())
        })
        .unwrap();
        (log, sizes)
    }

    /// The commit sizes once `n` commits have been handed on: waiters are released before
    /// `on_commit` runs, so `durable` returning does not mean the callback has run yet.
    fn commit_sizes(sizes: &Mutex<Vec<usize>>, n: usize) -> Vec<usize> {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while lock(sizes).len() < n && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        lock(sizes).clone()
    }

    #[tokio::test]
    async fn a_commit_delay_gathers_the_records_that_arrive_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        // A delay far longer than the 30 ms between the appends: a test thread stalled for
        // half a second (a loaded CI machine) still appends b before the commit goes.
        let (log, sizes) = counting_commits(dir.path(), CommitDelay::fixed(Duration::from_secs(1)));
        let started = std::time::Instant::now();
        log.append(&entry("a", 10), ()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let b = log.append(&entry("b", 10), ()).unwrap();
        log.durable(b).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(commit_sizes(&sizes, 1), vec![2], "one commit for both");
        // Without a delay the first goes alone.
        let dir = tempfile::tempdir().unwrap();
        let (log, sizes) = counting_commits(dir.path(), CommitDelay::never());
        let a = log.append(&entry("a", 10), ()).unwrap();
        log.durable(a).await.unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let b = log.append(&entry("b", 10), ()).unwrap();
        log.durable(b).await.unwrap();
        assert_eq!(commit_sizes(&sizes, 2), vec![1, 1]);
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_keep_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        let log = Arc::new(log);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..25 {
                    seqs.push(append(&log, &entry(&format!("t{t}-{i}"), 200)).await);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (1..=200).collect::<Vec<_>>());
        let got = read_all(&log, 1);
        assert!(got.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(Default::default()));
        (c.clone(), Waker::from(c))
    }

    /// One poll of a wait, with `waker`.
    fn poll(
        wait: std::pin::Pin<&mut DurableWait<'_>>,
        waker: &Waker,
    ) -> Poll<Result<(), LogClosed>> {
        wait.poll(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn a_waiter_is_woken_once_by_the_commit_of_its_record_not_by_the_ones_before() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        let (count, waker) = counting();
        let mut later = std::pin::pin!(log.durable(11));
        assert!(poll(later.as_mut(), &waker).is_pending());
        // Ten commits of the records before it: one each.
        for i in 1..=10 {
            assert_eq!(append(&log, &entry(&format!("e{i}"), 100)).await, i);
        }
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "woken by others' commits"
        );
        assert!(poll(later.as_mut(), &waker).is_pending());
        log.append(&entry("e11", 100), ()).unwrap();
        for _ in 0..500 {
            if count.0.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(later.as_mut(), &waker), Poll::Ready(Ok(()))));
    }

    #[tokio::test]
    async fn waiters_learn_when_the_log_closes() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        let (count, waker) = counting();
        let mut never = std::pin::pin!(log.durable(5));
        assert!(poll(never.as_mut(), &waker).is_pending());
        log.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            poll(never.as_mut(), &waker),
            Poll::Ready(Err(LogClosed))
        ));
        // A wait that starts after the close ends at once.
        assert!(log.durable(6).await.is_err());
    }

    #[tokio::test]
    async fn a_wait_for_a_failed_record_is_told_so_after_later_records_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        assert_eq!(append(&log, &entry("a", 100)).await, 1);
        log.shared.fail_commits.store(1, Ordering::SeqCst);
        let failed = log.append(&entry("b", 100), ()).unwrap();
        assert!(log.durable(failed).await.is_err());
        assert_eq!(append(&log, &entry("c", 100)).await, 3);
        assert!(log.durable_state().upto > failed, "passed by a good commit");
        // A wait that starts only now: a request that joined record 2 through the in-flight
        // map before the indexer took it out.
        assert!(log.durable(failed).await.is_err());
        assert!(log.durable(1).await.is_ok());
        assert!(log.durable(3).await.is_ok());
        // Failed commits in a row are one range.
        log.shared.fail_commits.store(2, Ordering::SeqCst);
        let x = log.append(&entry("x", 100), ()).unwrap();
        assert!(log.durable(x).await.is_err());
        let y = log.append(&entry("y", 100), ()).unwrap();
        assert!(log.durable(y).await.is_err());
        assert_eq!(append(&log, &entry("z", 100)).await, y + 1);
        let ranges: Vec<_> = lock(&log.shared.settled).failed.iter().copied().collect();
        assert_eq!(ranges, vec![(2, 2), (x, y)]);
        assert!(log.durable(x).await.is_err() && log.durable(y).await.is_err());
        let got: Vec<u64> = read_all(&log, 1).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, vec![1, 3, y + 1], "failed records are not in the log");
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_no_entry_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        let (_, waker) = counting();
        for seq in [5, 6, 7] {
            let mut wait = std::pin::pin!(log.durable(seq));
            assert!(poll(wait.as_mut(), &waker).is_pending());
            assert!(
                poll(wait.as_mut(), &waker).is_pending(),
                "polled twice, one entry"
            );
            assert_eq!(lock(&log.shared.settled).waiters.len(), 1);
        }
        assert!(lock(&log.shared.settled).waiters.is_empty());
        // A timed-out wait (a request's deadline) too.
        let timed_out = tokio::time::timeout(Duration::from_millis(20), log.durable(9)).await;
        assert!(timed_out.is_err());
        assert!(lock(&log.shared.settled).waiters.is_empty());
    }

    #[tokio::test]
    async fn min_next_seq_keeps_numbers_growing_after_an_emptied_log() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(
            dir.path(),
            1 << 20,
            42,
            CommitDelay::never(),
            |_: Vec<Committed<()>>| {},
        )
        .unwrap();
        assert_eq!(append(&log, &entry("a", 1)).await, 42);
    }
}
