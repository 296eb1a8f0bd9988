//! The dedup table: a disk-resident hash table of fingerprints in `seen.idx`, read with `pread`
//! into a stack buffer (no mmap: mapped pages would count in the RSS; the file's pages live in
//! the kernel's page cache), with a Bloom filter in memory in front of it (below).
//!
//! Layout: 4096-byte pages. Page 0 is the header (magic `HGSEEN01`, format version, page size,
//! the number of bucket pages, a power of two, the 32-byte random hash key, a crc32 of those).
//! Pages 1.. are buckets of 128 slots of 32 bytes: fingerprint u128, accepted-at u64, seq u64
//! (little endian). The fingerprint is the first 16 bytes of SHA-256(hash key ‖ dedup key),
//! never 0: a slot with fingerprint 0 was never used. A key's home bucket is its fingerprint
//! modulo the page count; a full page overflows into the next one (wrapping).
//!
//! - A lookup reads pages from the home bucket on, until it finds the fingerprint or a page
//!   with a never-used slot (the key would have been put there or before).
//! - An insert walks the same pages: it updates the key's own slot if there is one (keeping
//!   the later time), else takes the first reusable slot it met: never used, expired
//!   (`at + window <= the new at`) or forgotten (`at == 0`). Expired and forgotten slots keep
//!   their fingerprint, so the chains of keys behind them stay intact; only a rebuild makes
//!   never-used slots, and it swaps in a complete new file.
//! - Rebuild: when more than 3/4 of the slots are used, or when a sweep finds a quarter of
//!   them dead, the live slots are copied into `seen.idx.new` sized for a load of at most
//!   1/2 (never below the initial size), which is synced and renamed over `seen.idx`. Readers
//!   hold an `Arc` of the table they started with; both files answer for what they hold.
//! - One writer at a time (the indexer, a sweep's rebuild, `forget`), behind a mutex; lookups
//!   take no lock.
//!
//! - In memory, beside each file: a Bloom filter of every fingerprint the file holds (8 bits
//!   a slot, 4 bits a key: ~1 % false positives at the 3/4 load that triggers a rebuild).
//!   Most lookups are of new ids, and the filter answers those without a `pread` (measured:
//!   the table's `pread` was ~5 % of the request threads' CPU flat out; docs/event-log.md).
//!   A bit is set before its slot is written and never cleared: a filter can say "maybe"
//!   of a key that is not there (the page read then decides), never "no" of one that is.
//!   It is the one part that grows with the table: 1/32 of the file's size.
//!
//! Nothing here syncs on its own except rebuilds and `forget`: the store's checkpoint calls
//! [`Seen::sync`] before it records how far the log is indexed, and a start re-inserts the
//! keys of the records after it (see `super`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use providers::sha256;

use crate::log::{sync_range, WAIT};

pub(crate) const FILE: &str = "seen.idx";
pub(crate) const NEW_FILE: &str = "seen.idx.new";

const MAGIC: &[u8; 8] = b"HGSEEN01";
const VERSION: u32 = 1;
const PAGE: usize = 4096;
const SLOT: usize = 32;
const SLOTS: usize = PAGE / SLOT;
/// Header bytes covered by its crc (magic, version, page size, pages, hash key).
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 32;

/// Bucket pages of a new table: 256 KiB, 8,192 slots.
pub(crate) const INITIAL_PAGES: u64 = 64;
/// A sweep looks at the table at most this often (by the caller's clock).
const SWEEP_SCAN_SECS: u64 = 60;
/// Pages read at once by a scan (a transient 256 KiB buffer).
const SCAN_CHUNK: u64 = 64;

/// A key found within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub at: u64,
    pub seq: u64,
}

/// How [`Seen::open`] found the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    /// A valid table.
    Existing,
    /// There was none: a new, empty one.
    Created,
    /// There was one that did not validate (the reason): a new, empty one replaces it.
    Replaced(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    fp: u128,
    at: u64,
    seq: u64,
}

impl Slot {
    fn read(page: &[u8; PAGE], i: usize) -> Slot {
        let b = &page[i * SLOT..(i + 1) * SLOT];
        Slot {
            fp: u128::from_le_bytes(b[..16].try_into().expect("16")),
            at: u64::from_le_bytes(b[16..24].try_into().expect("8")),
            seq: u64::from_le_bytes(b[24..32].try_into().expect("8")),
        }
    }

    fn bytes(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[..16].copy_from_slice(&self.fp.to_le_bytes());
        b[16..24].copy_from_slice(&self.at.to_le_bytes());
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Holds a key accepted within the window at `now`.
    fn live(&self, now: u64, window: u64) -> bool {
        self.fp != 0 && self.at != 0 && self.at.saturating_add(window) > now
    }
}

/// A Bloom filter of fingerprints, sized for a table: [`FILTER_BITS_PER_SLOT`] bits per slot,
/// [`FILTER_PROBES`] bits per key taken straight from the fingerprint (already uniform: the
/// first bytes of a keyed SHA-256). Set bits are atomic, so lookups take no lock.
struct Filter {
    words: Box<[AtomicU64]>,
    /// Bits - 1 (a power of two).
    mask: u64,
}

const FILTER_BITS_PER_SLOT: u64 = 8;
const FILTER_PROBES: u32 = 4;

impl Filter {
    fn for_pages(pages: u64) -> Filter {
        // At least one page: 1,024 bits, whole words.
        let bits = pages * SLOTS as u64 * FILTER_BITS_PER_SLOT;
        Filter {
            words: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits - 1,
        }
    }

    /// The key's bits: 32-bit pieces of the fingerprint's upper 96 bits and lower 32 bits
    /// mixed (the low bits also choose the home page, so they are not used alone).
    fn bits(&self, fp: u128) -> impl Iterator<Item = u64> + '_ {
        (0..FILTER_PROBES).map(move |i| {
            let piece = (fp >> (32 * i)) as u32 as u64;
            piece
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(17 + i)
                & self.mask
        })
    }

    fn insert(&self, fp: u128) {
        for b in self.bits(fp) {
            self.words[(b / 64) as usize].fetch_or(1 << (b % 64), Ordering::Relaxed);
        }
    }

    fn may_contain(&self, fp: u128) -> bool {
        self.bits(fp)
            .all(|b| self.words[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) != 0)
    }
}

/// One file: its handle, its page count (fixed for the file's life) and the filter of its
/// fingerprints.
struct Table {
    file: File,
    pages: u64,
    filter: Filter,
    /// Test hook: pages read by lookups and inserts.
    #[cfg(test)]
    reads: AtomicU64,
}

impl Table {
    fn new(file: File, pages: u64) -> Table {
        Table {
            file,
            pages,
            filter: Filter::for_pages(pages),
            #[cfg(test)]
            reads: AtomicU64::new(0),
        }
    }

    fn read_page(&self, page: u64, buf: &mut [u8; PAGE]) -> io::Result<()> {
        #[cfg(test)]
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.file.read_exact_at(buf, (page + 1) * PAGE as u64)
    }

    /// Writes `slot`, its fingerprint into the filter first: a lookup that finds the slot
    /// (through the page cache) can never be told "no" by the filter.
    fn write_slot(&self, page: u64, i: usize, slot: &Slot) -> io::Result<()> {
        self.filter.insert(slot.fp);
        self.file
            .write_all_at(&slot.bytes(), (page + 1) * PAGE as u64 + (i * SLOT) as u64)
    }

    fn capacity(&self) -> u64 {
        self.pages * SLOTS as u64
    }

    /// Every slot, in file order, read in chunks.
    fn scan(&self, mut each: impl FnMut(Slot) -> io::Result<()>) -> io::Result<()> {
        let mut buf = vec![0u8; PAGE * SCAN_CHUNK as usize];
        let mut page = 0;
        while page < self.pages {
            let n = SCAN_CHUNK.min(self.pages - page) as usize;
            self.file
                .read_exact_at(&mut buf[..n * PAGE], (page + 1) * PAGE as u64)?;
            for p in buf[..n * PAGE].chunks_exact(PAGE) {
                let p: &[u8; PAGE] = p.try_into().expect("a page");
                for i in 0..SLOTS {
                    each(Slot::read(p, i))?;
                }
            }
            page += n as u64;
        }
        Ok(())
    }
}

/// Where a key is, or where it would go.
struct Probe {
    /// The key's own slot.
    found: Option<(u64, usize, Slot)>,
    /// The first reusable slot on the way.
    free: Option<(u64, usize, bool)>,
}

struct Writer {
    /// Slots with a fingerprint (live, expired or forgotten): what fills the table.
    used: u64,
    /// `now` of the last sweep that looked at the table.
    last_scan: Option<u64>,
    /// One bit per bucket page of the current table: written since the last write-back.
    dirty: Vec<u64>,
}

impl Writer {
    fn touched(&mut self, page: u64) {
        self.dirty[(page / 64) as usize] |= 1 << (page % 64);
    }
}

/// A clear [`Writer::dirty`] for a table of `pages`.
fn clean(pages: u64) -> Vec<u64> {
    vec![0; pages.div_ceil(64) as usize]
}

/// The least time between two write-backs of the table's dirty pages ([`Seen::write_back`]).
const WRITE_BACK_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// Dirty pages of the table (128 KiB) written back at a time; see [`Seen::write_back`].
const WRITE_BACK_CHUNK: usize = 32;

pub(crate) struct Seen {
    dir: PathBuf,
    hash_key: [u8; 32],
    window: u64,
    min_pages: u64,
    table: ArcSwap<Table>,
    writer: Mutex<Writer>,
    /// Dead slots (expired or forgotten) dropped by rebuilds since the last sweep reported.
    dropped: AtomicU64,
    /// When [`Seen::write_back`] last finished one, in ms since `opened_at`.
    written_back_ms: AtomicU64,
    /// Held by whatever waits for the table's writes to reach the disk (a write-back, `sync`,
    /// `forget`'s sync), and the first error one of them saw. Linux reports a failed
    /// write-back once per open file, to the first wait after it: recorded here under the
    /// lock, it stays visible to every later `sync` (none succeeds again until a restart,
    /// which re-indexes from the log what the last good checkpoint did not cover).
    lost: Mutex<Option<String>>,
    /// Whether `lost` holds an error, for readiness without waiting for a walk.
    failed: std::sync::atomic::AtomicBool,
    opened_at: std::time::Instant,
    /// Test hook: every key's home bucket is page 0 (to force overflow chains).
    #[cfg(test)]
    pub(crate) collide: std::sync::atomic::AtomicBool,
    /// Test hook: inserts fail as a failing disk would.
    #[cfg(test)]
    pub(crate) fail_inserts: std::sync::atomic::AtomicBool,
    /// Test hook: write-backs fail as a failing disk would.
    #[cfg(test)]
    pub(crate) fail_write_back: std::sync::atomic::AtomicBool,
    /// Test hook: rebuilds fail after their new file took the table's name.
    #[cfg(test)]
    pub(crate) fail_rebuild: std::sync::atomic::AtomicBool,
}

impl Seen {
    /// Opens `dir/seen.idx`, or makes a new one (see [`Opened`]); removes what a rebuild cut
    /// short. `min_pages` (a power of two) is the size of a new table and the least a rebuild
    /// shrinks to.
    pub(crate) fn open(dir: &Path, window: u64, min_pages: u64) -> io::Result<(Seen, Opened)> {
        assert!(min_pages.is_power_of_two());
        let new = dir.join(NEW_FILE);
        if new.exists() {
            tracing::warn!(path = %new.display(), "dedup table: removing an unfinished rebuild");
            fs::remove_file(&new)?;
            sync_dir(dir)?;
        }
        let path = dir.join(FILE);
        let existing = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Some(validate(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (table, hash_key, opened) = match existing {
            Some(Ok((table, key))) => (table, key, Opened::Existing),
            other => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                let table = create(dir, &key, min_pages, |_| Ok(()))?;
                let opened = match other {
                    Some(Err(why)) => Opened::Replaced(why),
                    _ => Opened::Created,
                };
                (table, key, opened)
            }
        };
        let mut used = 0;
        table.scan(|s| {
            if s.fp != 0 {
                used += 1;
                table.filter.insert(s.fp);
            }
            Ok(())
        })?;
        let dirty = clean(table.pages);
        let seen = Seen {
            dir: dir.to_owned(),
            hash_key,
            window,
            min_pages,
            table: ArcSwap::from_pointee(table),
            writer: Mutex::new(Writer {
                used,
                last_scan: None,
                dirty,
            }),
            dropped: AtomicU64::new(0),
            written_back_ms: AtomicU64::new(0),
            lost: Mutex::new(None),
            failed: std::sync::atomic::AtomicBool::new(false),
            opened_at: std::time::Instant::now(),
            #[cfg(test)]
            collide: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_inserts: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_write_back: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_rebuild: std::sync::atomic::AtomicBool::new(false),
        };
        Ok((seen, opened))
    }

    /// The fingerprint of a dedup key (never 0).
    pub(crate) fn fingerprint(&self, key: &[u8]) -> u128 {
        let d = sha256(&[&self.hash_key, key]);
        let fp = u128::from_le_bytes(d[..16].try_into().expect("16 bytes"));
        fp.max(1)
    }

    fn home(&self, fp: u128, pages: u64) -> u64 {
        #[cfg(test)]
        if self.collide.load(Ordering::Relaxed) {
            return 0;
        }
        (fp as u64) & (pages - 1)
    }

    /// The key with fingerprint `fp`, if it was accepted within the window at `now`.
    pub(crate) fn lookup(&self, fp: u128, now: u64) -> io::Result<Option<Hit>> {
        let table = self.table.load();
        if !table.filter.may_contain(fp) {
            return Ok(None);
        }
        Ok(self.probe(&table, fp, now)?.found.and_then(|(_, _, s)| {
            s.live(now, self.window).then_some(Hit {
                at: s.at,
                seq: s.seq,
            })
        }))
    }

    /// The key's slot, and the first reusable one on its way (for an insert at `now`).
    fn probe(&self, table: &Table, fp: u128, now: u64) -> io::Result<Probe> {
        let mut buf = [0u8; PAGE];
        let mut page = self.home(fp, table.pages);
        let mut free = None;
        for _ in 0..table.pages {
            table.read_page(page, &mut buf)?;
            let mut open_end = false;
            for i in 0..SLOTS {
                let s = Slot::read(&buf, i);
                if s.fp == fp {
                    return Ok(Probe {
                        found: Some((page, i, s)),
                        free,
                    });
                }
                let never_used = s.fp == 0;
                open_end |= never_used;
                if free.is_none() && (never_used || !s.live(now, self.window)) {
                    free = Some((page, i, never_used));
                }
            }
            if open_end {
                break;
            }
            page = (page + 1) & (table.pages - 1);
        }
        Ok(Probe { found: None, free })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records keys accepted at their `at` by record `seq` (`(fp, at, seq)`), in order.
    pub(crate) fn insert(&self, items: &[(u128, u64, u64)]) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_inserts.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected by a test"));
        }
        let mut w = self.writer();
        for &(fp, at, seq) in items {
            self.insert_one(&mut w, fp, at, seq)?;
        }
        Ok(())
    }

    fn insert_one(&self, w: &mut Writer, fp: u128, at: u64, seq: u64) -> io::Result<()> {
        if w.used * 4 >= self.table.load().capacity() * 3 {
            self.rebuild(w, at)?;
        }
        let table = self.table.load();
        let probe = self.probe(&table, fp, at)?;
        let new = Slot { fp, at, seq };
        match (probe.found, probe.free) {
            // Already there with a later (or the same) acceptance.
            (Some((_, _, s)), _) if s.at >= at => Ok(()),
            (Some((page, i, _)), _) => {
                w.touched(page);
                table.write_slot(page, i, &new)
            }
            (None, Some((page, i, never_used))) => {
                w.touched(page);
                table.write_slot(page, i, &new)?;
                w.used += never_used as u64;
                Ok(())
            }
            // Cannot happen below 3/4 load; a failed rebuild could leave it full.
            (None, None) => Err(io::Error::other("dedup table full")),
        }
    }

    /// Takes the key off the table (its acceptance time becomes 0) and syncs; returns the
    /// time it had.
    pub(crate) fn forget(&self, fp: u128) -> io::Result<Option<u64>> {
        let _w = self.writer();
        let table = self.table.load();
        let Some((page, i, s)) = self.probe(&table, fp, 0)?.found else {
            return Ok(None);
        };
        if s.at == 0 {
            return Ok(None);
        }
        table.write_slot(page, i, &Slot { at: 0, ..s })?;
        self.synced(&table)?;
        Ok(Some(s.at))
    }

    /// Writes the pages the inserts dirtied since the last call out to the disk (Linux
    /// `sync_file_range`), after a batch of inserts. Each insert dirties a whole 4 KiB page;
    /// left to the checkpoint's `fdatasync`, a few seconds of them leave as one burst of tens
    /// of MB that queues ahead of the log's own fsync (measured: p99 at 2 000 req/s).
    /// Trickled out, the checkpoint finds little left to sync.
    ///
    /// At most every [`WRITE_BACK_EVERY`]: a page dirtied again after its last write-back is
    /// written again, and in a table of a few thousand pages under thousands of inserts a
    /// second every 20 ms batch rewrote most of them (flat out: ~3.4 KB of table pages per
    /// 7 KB request, ~1.8 KB at most every 200 ms; docs/event-log.md).
    ///
    /// In file order, [`WRITE_BACK_CHUNK`] dirty pages at a time, each group started before
    /// the one before it is waited for: at most two groups (256 KiB) are on the device at
    /// once. Started all at once, some 350 pages (1.4 MB at 2,000 req/s) queued ahead of the
    /// log's next `fdatasync`, the stalls behind the p99 with the broker down
    /// (docs/benchmarks.md, session 16). The waits are the indexer's (a dozen device round
    /// trips at that rate): requests look in the in-flight map and never wait for it, but
    /// what settles the index (checkpoints, `forget`, `close`) waits for the walk to end.
    ///
    /// A wait takes a failed write-back's error from the file (Linux `errseq`): the walk runs
    /// under [`Seen::lost`] and records it there, so no later `sync` succeeds and no
    /// checkpoint can record pages that never reached the disk.
    pub(crate) fn write_back(&self) -> io::Result<()> {
        let now = self.opened_at.elapsed().as_millis() as u64;
        let last = self.written_back_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < WRITE_BACK_EVERY.as_millis() as u64 {
            return Ok(());
        }
        // The pages and the table they belong to, together (a rebuild swaps both).
        let (dirty, table) = {
            let mut w = self.writer();
            let table = self.table.load_full();
            (std::mem::replace(&mut w.dirty, clean(table.pages)), table)
        };
        let mut lost = self.lost();
        if let Some(e) = lost.as_ref() {
            return Err(lost_error(e));
        }
        let walked = Self::walk(&table, &dirty, || Arc::ptr_eq(&table, &self.table.load()));
        #[cfg(test)]
        let walked = match self.fail_write_back.load(Ordering::Relaxed) {
            true => Err(io::Error::other("injected by a test")),
            false => walked,
        };
        if let Err(e) = &walked {
            self.record(&mut lost, e);
        }
        drop(lost);
        // From the end: a walk longer than the interval must not start the next one at once.
        let done = self.opened_at.elapsed().as_millis() as u64;
        self.written_back_ms.store(done, Ordering::Relaxed);
        walked
    }

    /// [`Seen::write_back`]'s groups, while `current` (the table was not swapped).
    fn walk(table: &Table, dirty: &[u64], current: impl Fn() -> bool) -> io::Result<()> {
        let mut pages = dirty.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                let bit = rest.trailing_zeros();
                rest &= rest.checked_sub(1)?;
                Some(i as u64 * 64 + bit as u64)
            })
        });
        let mut started: Option<(u64, u64)> = None;
        while let Some(first) = pages.next() {
            // A rebuild synced its new file whole; the old one's pages can go with it.
            if !current() {
                break;
            }
            let last = pages
                .by_ref()
                .take(WRITE_BACK_CHUNK - 1)
                .last()
                .unwrap_or(first);
            // File offsets: bucket page p is at (p + 1) pages.
            let span = ((first + 1) * PAGE as u64, (last - first + 1) * PAGE as u64);
            sync_range(&table.file, span, libc::SYNC_FILE_RANGE_WRITE)?;
            if let Some(before) = started.replace(span) {
                sync_range(&table.file, before, WAIT)?;
            }
        }
        if let Some(last) = started {
            sync_range(&table.file, last, WAIT)?;
        }
        Ok(())
    }

    /// `fdatasync` of the table: every insert before it is on disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let _w = self.writer();
        self.synced(&self.table.load())
    }

    /// `fdatasync` of `table` under [`Seen::lost`]: fails for good once any wait failed.
    fn synced(&self, table: &Table) -> io::Result<()> {
        let mut lost = self.lost();
        if let Some(e) = lost.as_ref() {
            return Err(lost_error(e));
        }
        table
            .file
            .sync_data()
            .inspect_err(|e| self.record(&mut lost, e))
    }

    fn record(&self, lost: &mut Option<String>, e: &io::Error) {
        *lost = Some(e.to_string());
        self.failed.store(true, Ordering::Release);
    }

    fn lost(&self) -> MutexGuard<'_, Option<String>> {
        self.lost.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a write of the table failed to reach the disk (until a restart).
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Whether the file answers (readiness).
    pub(crate) fn check(&self) -> io::Result<()> {
        let mut magic = [0u8; 8];
        self.table.load().file.read_exact_at(&mut magic, 0)?;
        match &magic == MAGIC {
            true => Ok(()),
            false => Err(io::Error::other("dedup table header changed")),
        }
    }

    /// At most every minute (of `now`): counts the dead slots and rebuilds the table without
    /// them when they are a quarter of it or more. Returns the dead slots dropped by every
    /// rebuild since the last call (growing ones included).
    pub(crate) fn sweep(&self, now: u64) -> io::Result<usize> {
        let due = {
            let mut w = self.writer();
            let due = w
                .last_scan
                .is_none_or(|t| now.abs_diff(t) >= SWEEP_SCAN_SECS);
            if due {
                w.last_scan = Some(now);
            }
            due
        };
        if due {
            // Counted without the writer lock (the indexer goes on); only a rebuild takes it.
            let table = self.table.load_full();
            let mut dead = 0u64;
            table.scan(|s| {
                dead += (s.fp != 0 && !s.live(now, self.window)) as u64;
                Ok(())
            })?;
            if dead * 4 >= table.capacity() {
                let mut w = self.writer();
                self.rebuild(&mut w, now)?;
            }
        }
        Ok(self.dropped.swap(0, Ordering::Relaxed) as usize)
    }

    /// Copies the live slots at `now` into a new file sized for a load of at most 1/2,
    /// syncs it, renames it over the table and swaps it in.
    /// A failure is kept in [`Seen::lost`]: it may come after the rename (the directory's
    /// sync), when `seen.idx` is already the new file while the old one stays in use, or from
    /// the old file's own writes, which the sync below collects.
    fn rebuild(&self, w: &mut Writer, now: u64) -> io::Result<()> {
        let rebuilt = self.rebuild_once(w, now);
        #[cfg(test)]
        let rebuilt = match self.fail_rebuild.load(Ordering::Relaxed) {
            true => Err(io::Error::other("injected by a test")),
            false => rebuilt,
        };
        rebuilt.inspect_err(|e| {
            let mut lost = self.lost();
            if lost.is_none() {
                self.record(&mut lost, e);
            }
        })
    }

    fn rebuild_once(&self, w: &mut Writer, now: u64) -> io::Result<()> {
        let old = self.table.load_full();
        // Errors of the old file's write-backs since the last wait: after the swap no walk
        // or sync of it would see them.
        self.synced(&old)?;
        let mut live = 0u64;
        old.scan(|s| {
            live += s.live(now, self.window) as u64;
            Ok(())
        })?;
        let pages = self
            .min_pages
            .max((live * 2).div_ceil(SLOTS as u64).next_power_of_two());
        let started = std::time::Instant::now();
        let table = create(&self.dir, &self.hash_key, pages, |new| {
            // Slots taken per new page, 1 byte a page (the only memory that grows with the
            // table, and only during a rebuild).
            let mut filled = vec![0u8; pages as usize];
            old.scan(|s| {
                if !s.live(now, self.window) {
                    return Ok(());
                }
                let mut page = self.home(s.fp, pages);
                while filled[page as usize] as usize == SLOTS {
                    page = (page + 1) & (pages - 1);
                }
                new.write_slot(page, filled[page as usize] as usize, &s)?;
                filled[page as usize] += 1;
                Ok(())
            })
        })?;
        let dropped = w.used - live;
        tracing::info!(
            from_pages = old.pages,
            to_pages = pages,
            live,
            dropped,
            ms = started.elapsed().as_millis() as u64,
            "dedup table rebuilt"
        );
        self.table.store(Arc::new(table));
        w.used = live;
        // The new file was synced whole.
        w.dirty = clean(pages);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        Ok(())
    }

    /// Bucket pages and used slots.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.table.load().pages, self.writer().used)
    }

    /// Pages read by lookups and inserts from the current file.
    #[cfg(test)]
    pub(crate) fn page_reads(&self) -> u64 {
        self.table.load().reads.load(Ordering::Relaxed)
    }
}

/// Writes a table of `pages` empty buckets to `seen.idx.new`, lets `fill` put slots in it,
/// syncs it and renames it over `seen.idx`.
fn create(
    dir: &Path,
    key: &[u8; 32],
    pages: u64,
    fill: impl FnOnce(&Table) -> io::Result<()>,
) -> io::Result<Table> {
    let new = dir.join(NEW_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)?;
    file.set_len((pages + 1) * PAGE as u64)?;
    let mut header = [0u8; PAGE];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
    header[16..24].copy_from_slice(&pages.to_le_bytes());
    header[24..56].copy_from_slice(key);
    let crc = crc32fast::hash(&header[..HEADER_LEN]);
    header[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&header, 0)?;
    let table = Table::new(file, pages);
    fill(&table)?;
    table.file.sync_all()?;
    fs::rename(&new, dir.join(FILE))?;
    sync_dir(dir)?;
    Ok(table)
}

/// The table in `file` and its hash key, or why not.
fn validate(file: File) -> Result<(Table, [u8; 32]), String> {
    let mut header = [0u8; PAGE];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| format!("header unreadable: {e}"))?;
    if &header[..8] != MAGIC {
        return Err("not a dedup table (magic)".into());
    }
    let crc = u32::from_le_bytes(header[HEADER_LEN..HEADER_LEN + 4].try_into().expect("4"));
    if crc != crc32fast::hash(&header[..HEADER_LEN]) {
        return Err("header checksum".into());
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4"));
    let page = u32::from_le_bytes(header[12..16].try_into().expect("4"));
    if version != VERSION || page as usize != PAGE {
        return Err(format!("format version {version}, page size {page}"));
    }
    let pages = u64::from_le_bytes(header[16..24].try_into().expect("8"));
    if !pages.is_power_of_two() {
        return Err(format!("{pages} pages, not a power of two"));
    }
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if Some(len)
        != pages
            .checked_add(1)
            .and_then(|p| p.checked_mul(PAGE as u64))
    {
        return Err(format!("{len} bytes for {pages} pages"));
    }
    let key = header[24..56].try_into().expect("32");
    Ok((Table::new(file, pages), key))
}

fn lost_error(e: &str) -> io::Error {
    io::Error::other(format!(
        "an earlier write of the dedup table failed ({e}); restart once the disk is fixed"
    ))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
