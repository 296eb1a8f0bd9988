//! The relay's bookkeeping as a pure state machine: which records are in flight, what a
//! confirm or a refusal means for them, where the cursor is. No broker, no store, no clock:
//! [`super::Drain`] reports events (a record read, sent, confirmed, refused, a channel
//! closed) and does what the returned decision says, so every rule here is tested without
//! RabbitMQ (see `tests.rs`).
//!
//! The rules (the module doc of [`super`] says why):
//! - records are sent in log order, up to `max_in_flight` at once; after a refusal one at a
//!   time (`single`) until the backlog is empty, so retries keep their order and a refusal
//!   can be charged to the one record that caused it;
//! - a record returned as unroutable is charged an attempt and is dead at `max_attempts`; a
//!   plain nack is back-pressure: retried, never charged; a channel closed by the broker is
//!   charged only when the record was alone in flight; an unpublishable record is dead at
//!   once;
//! - after a refusal the rest of the window is settled: what the broker confirmed there is
//!   skipped when the log is read again (`done_ahead`), the rest is sent again; each record
//!   finishes (published or dead) once per connection, so the backlog count stays right;
//! - the cursor is the first record neither published nor dead: the front of the window, or
//!   the next record to read when nothing is in flight;
//! - attempts and `single` survive a reconnect; the window, `done_ahead` and the retry
//!   back-off belong to one connection.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use crate::log::Position;

/// The first retry delay after a refusal, and what a confirm resets it to.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Save the cursor at least every this many finished records, even while a window is full.
const SAVE_EVERY: u64 = 256;

/// Plain nacks in a row after which a record is dead: with the retry delay doubling from
/// 100 ms to `amqp.reconnect_max_secs` (5 s by default), about 4.5 minutes of refusals.
pub const NACKS_BEFORE_DEAD: u32 = 60;

/// The limits the state machine follows (from `[amqp]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_in_flight: usize,
    pub max_attempts: u32,
    /// The cap of the retry back-off (`amqp.reconnect_max_secs`, at least 1 s).
    pub max_delay: Duration,
}

/// A record sent and not yet confirmed, with what the caller carries for it (`T`).
struct Flight<T> {
    front: Front,
    payload: T,
}

/// The record whose confirm the caller awaits (taken off the window by [`Window::pop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Front {
    pub seq: u64,
    pub pos: Position,
    /// Accept time (Unix secs): the oldest pending timestamp while it heads the window.
    pub at: u64,
    /// Nothing else was in flight behind it when it was taken.
    pub alone: bool,
}

/// Save the cursor now: everything below `cursor` is published or dead, `finished`
/// records left the backlog since the last save, `oldest_at` is the accept time of the
/// record at the cursor when it is in flight (0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Save {
    pub cursor: u64,
    pub finished: u64,
    pub oldest_at: u64,
}

/// What to do with a record just read from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Send it, then report [`Window::sent`] (or [`Window::unpublishable`], [`Window::send_failed`]).
    Publish,
    /// Already finished: the broker confirmed it while a refused record before it was
    /// settled, or it was made dead (unpublishable) while that record was in flight.
    Skip,
}

/// A record is dead: move it to the dead-letter list, before applying any `Save` that
/// comes with it (the cursor must never pass a record that is in neither place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dead {
    pub seq: u64,
    pub attempts: u32,
}

/// How the broker refused the record at the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Returned as unroutable (`mandatory`): the record's fault, charged an attempt.
    Returned,
    /// A plain nack: a queue's back-pressure (reject-publish), retried, never charged.
    Nack,
}

/// After a confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub save: Option<Save>,
    /// The first confirm after a refusal: clear the reported error.
    pub recovered: bool,
}

/// After a refusal, once the rest of the window is settled ([`Window::settled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Read the log again from `pos` (record `seq`), one at a time, after `delay`.
    Retry {
        seq: u64,
        pos: Position,
        delay: Duration,
        save: Option<Save>,
    },
    /// The refused record is dead; read on from `from` when records were in flight behind
    /// it (those the broker did not confirm are sent again), else where the reader is.
    Next {
        from: Option<Position>,
        save: Option<Save>,
    },
}

/// The channel is gone: apply `dead` (if any) and `save`, then reconnect; the log is read
/// again from `from` (the saved cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub from: u64,
    /// The record alone in flight was charged an attempt for the closed channel.
    pub charged: bool,
    pub dead: Option<Dead>,
    pub save: Option<Save>,
}

/// The window is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub save: Option<Save>,
    /// Nothing more to read for now: wait for new records. `false` right after the backlog
    /// of a one-at-a-time stretch is done (read again at once, with a full window).
    pub idle: bool,
}

/// The in-flight window and confirm bookkeeping; `T` is what the caller keeps per record
/// in flight (the entry and its pending confirm).
pub struct Window<T> {
    limits: Limits,
    /// Refusals per record, until it is published or dead (kept across reconnects).
    attempts: HashMap<u64, u32>,
    /// Plain nacks in a row per record: back-pressure, retried, until [`NACKS_BEFORE_DEAD`].
    nacks: HashMap<u64, u32>,
    /// One publish at a time, after a refusal until the backlog is empty (kept across
    /// reconnects).
    single: bool,
    flights: VecDeque<Flight<T>>,
    /// Records after a refused one that the broker confirmed meanwhile: skipped on the re-read.
    done_ahead: BTreeSet<u64>,
    /// Unpublishable records made dead behind records in flight: skipped (not dead again)
    /// when a refusal of one of those reads the log again.
    dead_ahead: BTreeSet<u64>,
    /// The seq the reader returns next (at least): the cursor when nothing is in flight.
    read_next: u64,
    /// The cursor last saved.
    saved: u64,
    /// Records finished since the cursor was last saved.
    finished: u64,
    retry_delay: Duration,
    /// A refusal is being reported; the next confirm clears it.
    erred: bool,
    /// The record that was in flight right behind a refused one that is now dead: where
    /// the log is read again once the window is settled.
    behind: Option<(u64, Position)>,
}

impl<T> Window<T> {
    pub fn new(limits: Limits) -> Self {
        Window {
            limits,
            attempts: HashMap::new(),
            nacks: HashMap::new(),
            single: false,
            flights: VecDeque::new(),
            done_ahead: BTreeSet::new(),
            dead_ahead: BTreeSet::new(),
            read_next: 0,
            saved: 0,
            finished: 0,
            retry_delay: FIRST_RETRY,
            erred: false,
            behind: None,
        }
    }

    /// A new connection reads from the saved `cursor`: what was in flight on the last one
    /// is forgotten (sent again); attempts, one-at-a-time mode and what is known finished
    /// ahead of the cursor (confirmed while a refusal was settled, or dead) are kept, so
    /// those are neither sent nor counted again.
    pub fn connect(&mut self, cursor: u64) {
        self.flights.clear();
        self.done_ahead = self.done_ahead.split_off(&cursor);
        self.dead_ahead = self.dead_ahead.split_off(&cursor);
        self.read_next = cursor;
        self.saved = cursor;
        self.finished = 0;
        self.retry_delay = FIRST_RETRY;
        self.erred = false;
    }

    /// The seq the reader is at (where a new connection's reader starts).
    pub fn read_next(&self) -> u64 {
        self.read_next
    }

    /// One publish at a time (the relay reports `retrying`).
    pub fn single(&self) -> bool {
        self.single
    }

    /// Refusals counted so far for `seq`.
    #[cfg(test)]
    pub fn attempts(&self, seq: u64) -> u32 {
        self.attempts.get(&seq).copied().unwrap_or(0)
    }

    /// Whether another record may be sent before awaiting a confirm.
    #[cfg(test)]
    pub fn room(&self) -> bool {
        self.room_for(0)
    }

    /// Whether one more record may be sent when `queued` more are about to be.
    pub fn room_for(&self, queued: usize) -> bool {
        self.flights.len() + queued < self.limit()
    }

    /// How many records may be in flight now (1 while retrying one at a time).
    pub fn limit(&self) -> usize {
        match self.single {
            true => 1,
            false => self.limits.max_in_flight,
        }
    }

    /// How many more records may be sent now.
    pub fn free(&self) -> usize {
        self.limit().saturating_sub(self.flights.len())
    }

    /// Record `seq` was read (durable, in log order).
    pub fn read(&mut self, seq: u64) -> Read {
        self.read_next = seq + 1;
        if self.done_ahead.remove(&seq) {
            self.finished += 1;
            return Read::Skip;
        }
        if self.dead_ahead.remove(&seq) {
            // Counted when it died.
            return Read::Skip;
        }
        Read::Publish
    }

    /// Record `seq` (read at `pos`, accepted at `at`) was handed to the channel.
    pub fn sent(&mut self, seq: u64, pos: Position, at: u64, payload: T) {
        let front = Front {
            seq,
            pos,
            at,
            alone: false,
        };
        self.flights.push_back(Flight { front, payload });
    }

    /// Record `seq` can never be sent as it is (a field over AMQP's limits): dead at once.
    pub fn unpublishable(&mut self, seq: u64) -> Dead {
        if !self.flights.is_empty() {
            self.dead_ahead.insert(seq);
        }
        self.attempts.remove(&seq);
        self.finished += 1;
        Dead { seq, attempts: 1 }
    }

    /// Sending record `seq` failed on the channel (not the record's fault): reconnect and
    /// read it again, with everything still in flight.
    pub fn send_failed(&mut self, seq: u64) -> Reconnect {
        // Others were in flight: their confirms are lost, so the retries go one at a time.
        self.single |= !self.flights.is_empty();
        let from = self.flights.front().map_or(seq, |f| f.front.seq);
        self.reconnect_from(from)
    }

    /// Takes the oldest record in flight, whose confirm the caller awaits next.
    pub fn pop(&mut self) -> Option<(Front, T)> {
        let Flight { mut front, payload } = self.flights.pop_front()?;
        front.alone = self.flights.is_empty();
        Some((front, payload))
    }

    /// What is carried for each record in flight, oldest first.
    pub fn payloads_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.flights.iter_mut().map(|f| &mut f.payload)
    }

    /// Puts back a record taken by [`Window::pop`] whose confirm will not be awaited (the
    /// relay is stopping): the cursor stays at it, so it is published again at the next start.
    pub fn unpop(&mut self, front: Front, payload: T) {
        self.flights.push_front(Flight { front, payload });
    }

    /// [`Window::pop`] found nothing in flight and nothing more could be read.
    pub fn drained(&mut self) -> Drained {
        let save = self.save();
        // The backlog is empty: back to a full window.
        let idle = !std::mem::take(&mut self.single);
        Drained { save, idle }
    }

    /// The broker confirmed `f`.
    pub fn confirmed(&mut self, f: Front) -> Confirmed {
        self.attempts.remove(&f.seq);
        self.nacks.remove(&f.seq);
        let save = self.finish();
        let recovered = std::mem::take(&mut self.erred);
        if recovered {
            self.retry_delay = FIRST_RETRY;
        }
        Confirmed { save, recovered }
    }

    /// The broker refused `f`. Returns the record's death if this was its last attempt.
    /// Then the caller settles the rest of the window ([`Window::pop`] until empty,
    /// [`Window::confirmed_ahead`] for each the broker took) and calls [`Window::settled`].
    pub fn refused(&mut self, f: Front, how: Refusal) -> Option<Dead> {
        let dead = match how {
            Refusal::Nack => self.charge_nack(f.seq),
            Refusal::Returned => self.charge(f.seq),
        };
        self.behind = self.flights.front().map(|n| (n.front.seq, n.front.pos));
        dead
    }

    /// While settling after a refusal: the broker confirmed `f`, behind the refused record.
    pub fn confirmed_ahead(&mut self, f: Front) {
        self.attempts.remove(&f.seq);
        self.nacks.remove(&f.seq);
        self.done_ahead.insert(f.seq);
    }

    /// The window behind refused record `f` is settled (the caller popped every flight);
    /// `dead` is what [`Window::refused`] returned for it.
    pub fn settled(&mut self, f: Front, dead: Option<Dead>) -> Resume {
        self.single = true;
        let behind = self.behind.take();
        if dead.is_some() {
            // Records that were in flight behind it and not confirmed must be read again
            // (the confirmed ones are skipped by `done_ahead`); else the reader goes on.
            let from = behind.map(|(seq, pos)| {
                self.read_next = seq;
                pos
            });
            return Resume::Next {
                from,
                save: self.finish_dead(),
            };
        }
        self.read_next = f.seq;
        self.erred = true;
        let delay = self.retry_delay;
        self.retry_delay = (self.retry_delay * 2).min(self.limits.max_delay);
        Resume::Retry {
            seq: f.seq,
            pos: f.pos,
            delay,
            save: self.save(),
        }
    }

    /// The channel failed while the window behind refused record `f` was being settled
    /// (`dead` is what [`Window::refused`] returned, already applied): what was still in
    /// flight is sent again on the next channel, one at a time, from `f` or, if it is dead,
    /// from the record that was behind it.
    pub fn settle_failed(&mut self, f: Front, dead: Option<Dead>) -> Reconnect {
        self.single = true;
        let behind = self.behind.take();
        let from = match dead {
            Some(_) => behind.map_or(self.read_next.max(f.seq + 1), |(seq, _)| seq),
            None => f.seq,
        };
        self.reconnect_from(from)
    }

    /// Forgets what is in flight: the next channel reads again from `from`, and nobody is
    /// charged for it.
    fn reconnect_from(&mut self, from: u64) -> Reconnect {
        self.read_next = from;
        self.flights.clear();
        Reconnect {
            from,
            charged: false,
            dead: None,
            save: self.save(),
        }
    }

    /// The broker closed the channel while `f` was awaited: `refused` when it did so over a
    /// message (a protocol error: too large, a policy) rather than a lost connection. Only
    /// a record alone in flight can be blamed.
    pub fn closed(&mut self, f: Front, refused: bool) -> Reconnect {
        let charged = refused && f.alone;
        let dead = if charged { self.charge(f.seq) } else { None };
        self.read_next = match dead {
            Some(_) => self.flights.front().map_or(f.seq + 1, |n| n.front.seq),
            None => f.seq,
        };
        self.flights.clear();
        self.single = true;
        Reconnect {
            from: self.read_next,
            charged,
            dead,
            save: self.save(),
        }
    }

    /// Saves the cursor if it moved or records finished (on shutdown, a lost connection).
    pub fn save(&mut self) -> Option<Save> {
        let (cursor, oldest_at) = match self.flights.front() {
            Some(f) => (f.front.seq, f.front.at),
            None => (self.read_next, 0),
        };
        if cursor == self.saved && self.finished == 0 {
            return None;
        }
        let save = Save {
            cursor,
            finished: std::mem::take(&mut self.finished),
            oldest_at,
        };
        self.saved = cursor;
        // What the cursor passed is never read again on this connection.
        self.dead_ahead = self.dead_ahead.split_off(&cursor);
        Some(save)
    }

    /// Counts a refusal of `seq`; at `max_attempts` it is dead.
    /// A plain nack (a queue at its `max-length` with `reject-publish`) is back-pressure: the
    /// record is retried in order, never charged an attempt. But a record the queue can never
    /// take (larger than its `max-length-bytes`) would be nacked for ever, with every other
    /// event waiting behind it: after [`NACKS_BEFORE_DEAD`] nacks in a row it is dead (found
    /// by a review). A consumer that makes room lets the next retry through long before.
    fn charge_nack(&mut self, seq: u64) -> Option<Dead> {
        let n = self.nacks.entry(seq).or_insert(0);
        *n += 1;
        let nacks = *n;
        if nacks < NACKS_BEFORE_DEAD {
            return None;
        }
        self.nacks.remove(&seq);
        self.attempts.remove(&seq);
        self.finished += 1;
        Some(Dead {
            seq,
            attempts: nacks,
        })
    }

    fn charge(&mut self, seq: u64) -> Option<Dead> {
        let n = self.attempts.entry(seq).or_insert(0);
        *n += 1;
        let attempts = *n;
        if attempts < self.limits.max_attempts {
            return None;
        }
        self.attempts.remove(&seq);
        self.nacks.remove(&seq);
        self.finished += 1;
        Some(Dead { seq, attempts })
    }

    fn finish(&mut self) -> Option<Save> {
        self.finished += 1;
        self.finish_dead()
    }

    /// A record finished (already counted): save every [`SAVE_EVERY`] or when nothing is
    /// in flight.
    fn finish_dead(&mut self) -> Option<Save> {
        if self.finished >= SAVE_EVERY || self.flights.is_empty() {
            return self.save();
        }
        None
    }
}

#[cfg(test)]
mod tests;
