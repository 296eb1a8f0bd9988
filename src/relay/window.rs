//! The relay's bookkeeping as a pure state machine: which records are in flight, what a
//! confirm or a refusal means for them, where the cursor is. No broker, no store, no clock:
//! [`super::Drain`] reports events (a record read, sent, confirmed, refused, a channel
//! closed) and does what the returned decision says, so every rule here is tested without
//! RabbitMQ (see `tests.rs`).
//!
//! The rules (the module doc of [`super`] says why):
//! - records are sent in log order, up to `max_in_flight` at once;
//! - a record returned as unroutable is charged an attempt and is dead at `max_attempts`;
//!   until then it is *parked*: kept aside, out of order, and sent again when its back-off
//!   (100 ms doubling per attempt, capped) is due, while the records behind it go on (a
//!   return names its record, so nothing else need wait: one unroutable event used to hold
//!   every other one for its whole retry schedule, and an attacker replaying a signed body
//!   under a made-up unsigned event type could keep the relay there);
//! - a plain nack is back-pressure: the rest of the window is settled, and the log is read
//!   again from the first unfinished record one at a time (`single`), so retries keep their
//!   order, until `max_in_flight` confirms in a row or an empty backlog, then with the full
//!   window again; a nack is never charged an attempt (but [`NACKS_BEFORE_DEAD`] in a row
//!   make a record dead);
//! - a channel closed by the broker is charged only to a record alone in flight, so after
//!   one with several in flight the log is read again one at a time the same way; an
//!   unpublishable record is dead at once;
//! - what the broker confirmed while an earlier record was unfinished is skipped when the
//!   log is read again (`done_ahead`), as is what died there (`dead_ahead`); each record
//!   finishes (published or dead) once per connection, so the backlog count stays right;
//! - the cursor is the first record neither published nor dead: the oldest in flight or
//!   parked, or the next record to read;
//! - attempts, `single` and what is known finished ahead of the cursor survive a reconnect;
//!   the window, parked records (read from the log again) and the nack back-off belong to
//!   one connection.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

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

/// A record returned as unroutable, waiting for its next try ([`Window::due`]).
struct Parked<T> {
    front: Front,
    payload: T,
    due: Instant,
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

/// After a return ([`Window::returned`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Returned<T> {
    /// Parked until `delay` has passed; the rest goes on.
    Parked { delay: Duration },
    /// That was its last attempt: move it to the dead-letter list, then apply `save`.
    Dead {
        dead: Dead,
        payload: T,
        save: Option<Save>,
    },
}

/// After a confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub save: Option<Save>,
    /// The first confirm after a refusal: clear the reported error.
    pub recovered: bool,
    /// Confirmed past an unfinished record: published, though the cursor stays before it.
    pub ahead: bool,
}

/// After a nack, once the rest of the window is settled ([`Window::settled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Read the log again from `pos` (record `seq`: the refused one, or a parked record
    /// before it), one at a time, after `delay`.
    Retry {
        seq: u64,
        pos: Position,
        delay: Duration,
        save: Option<Save>,
    },
    /// The refused record is dead; read on from `from` when records were in flight behind
    /// it or parked (those the broker did not confirm are sent again), else where the
    /// reader is.
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
    /// One publish at a time after a nack or a closed channel, until `max_in_flight`
    /// confirms in a row (every record that was in flight then has gone through alone) or
    /// the backlog is empty (kept across reconnects).
    single: bool,
    /// Confirms in a row while `single`.
    streak: usize,
    flights: VecDeque<Flight<T>>,
    /// Returned records waiting for their next try.
    parked: Vec<Parked<T>>,
    /// Records out of log order, parked or sent again: seq → (position, accept time).
    held: BTreeMap<u64, (Position, u64)>,
    /// Records the broker confirmed while an earlier one was unfinished: skipped when the
    /// log is read again; `true` once counted as finished (confirmed in turn), `false` when
    /// settled behind a nack (counted when skipped: the re-read always comes).
    done_ahead: BTreeMap<u64, bool>,
    /// Unpublishable records made dead behind records in flight: skipped (not dead again)
    /// when a refusal of one of those reads the log again.
    dead_ahead: BTreeSet<u64>,
    /// The seq the reader returns next (at least): the cursor when nothing is in flight.
    read_next: u64,
    /// The cursor last saved.
    saved: u64,
    /// Records finished since the cursor was last saved.
    finished: u64,
    /// The back-off after a nack.
    retry_delay: Duration,
    /// A refusal is being reported; the next confirm with nothing parked clears it.
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
            streak: 0,
            flights: VecDeque::new(),
            parked: Vec::new(),
            held: BTreeMap::new(),
            done_ahead: BTreeMap::new(),
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
        self.parked.clear();
        self.held.clear();
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

    /// Returned records waiting for their next try.
    pub fn parked(&self) -> usize {
        self.parked.len()
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

    /// Whether one more record may be sent when `queued` more are about to be. Parked
    /// records take room in the window (their entries are kept) but do not stop the one
    /// publish of `single`.
    pub fn room_for(&self, queued: usize) -> bool {
        let n = self.flights.len() + queued;
        n < self.limit() && n + self.parked.len() < self.limits.max_in_flight
    }

    /// How many records may be in flight now (1 while retrying one at a time).
    pub fn limit(&self) -> usize {
        match self.single {
            true => 1,
            false => self.limits.max_in_flight,
        }
    }

    /// The most records that could be in flight now with the window empty: the limit, less
    /// the slots parked records keep (what a batch waits for, so it never waits for more).
    pub fn room_when_empty(&self) -> usize {
        self.limit()
            .min(self.limits.max_in_flight.saturating_sub(self.parked.len()))
    }

    /// How many more records may be sent now.
    pub fn free(&self) -> usize {
        let held = self.flights.len() + self.parked.len();
        (self.limit().saturating_sub(self.flights.len()))
            .min(self.limits.max_in_flight.saturating_sub(held))
    }

    /// Record `seq` was read (durable, in log order).
    pub fn read(&mut self, seq: u64) -> Read {
        self.read_next = seq + 1;
        // Kept until the cursor passes them: a parked record before them can make the log
        // be read here again.
        if let Some(counted) = self.done_ahead.get_mut(&seq) {
            self.finished += u64::from(!*counted);
            *counted = true;
            return Read::Skip;
        }
        if self.dead_ahead.contains(&seq) {
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

    /// A parked record taken by [`Window::due`] was handed to the channel again.
    pub fn sent_again(&mut self, front: Front, payload: T) {
        self.flights.push_back(Flight { front, payload });
    }

    /// A parked record whose retry is due at `now` (the oldest first): send it again and
    /// report [`Window::sent_again`] (or [`Window::send_failed`]).
    pub fn due(&mut self, now: Instant) -> Option<(Front, T)> {
        if self.single && !self.flights.is_empty() {
            // One at a time holds for retries too: a closed channel must be chargeable.
            return None;
        }
        let i = (0..self.parked.len())
            .filter(|&i| self.parked[i].due <= now)
            .min_by_key(|&i| self.parked[i].front.seq)?;
        let p = self.parked.swap_remove(i);
        Some((p.front, p.payload))
    }

    /// When the next parked record is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.parked.iter().map(|p| p.due).min()
    }

    /// Record `seq`, just made dead, could not be put on the dead-letter list (the caller
    /// stops this connection): it is not skipped when the log is read again from the saved
    /// cursor, which has not passed it.
    pub fn revive(&mut self, seq: u64) {
        self.dead_ahead.remove(&seq);
    }

    /// A parked record taken by [`Window::due`] can no longer be sent: dead at once.
    pub fn unpublishable_again(&mut self, f: Front) -> (Dead, Option<Save>) {
        self.held.remove(&f.seq);
        let dead = self.unpublishable(f.seq);
        (dead, self.finish_dead())
    }

    /// Record `seq` can never be sent as it is (a field over AMQP's limits): dead at once.
    pub fn unpublishable(&mut self, seq: u64) -> Dead {
        self.dead_behind_unfinished(seq);
        self.attempts.remove(&seq);
        self.finished += 1;
        Dead { seq, attempts: 1 }
    }

    /// Sending record `seq` failed on the channel (not the record's fault): reconnect and
    /// read it again, with everything still in flight.
    pub fn send_failed(&mut self, seq: u64) -> Reconnect {
        // Others were in flight: their confirms are lost, so the retries go one at a time.
        if !self.flights.is_empty() {
            self.one_at_a_time();
        }
        let from = self.flights.front().map_or(seq, |f| f.front.seq).min(seq);
        self.reconnect_from(from, None)
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
        self.streak = 0;
        Drained { save, idle }
    }

    /// The broker confirmed `f`.
    pub fn confirmed(&mut self, f: Front) -> Confirmed {
        self.attempts.remove(&f.seq);
        self.nacks.remove(&f.seq);
        self.held.remove(&f.seq);
        let ahead = f.seq > self.first_unfinished().0;
        if ahead {
            self.done_ahead.insert(f.seq, true);
        }
        let save = self.finish();
        self.retry_delay = FIRST_RETRY;
        if self.single {
            // A queue that still refuses (a slow consumer behind `reject-publish`) nacks
            // again long before this: one at a time keeps its order. Under a steady load the
            // backlog may never empty, so a refusal that has passed must not keep the relay
            // at one publish per round trip for good.
            self.streak += 1;
            if self.streak >= self.limits.max_in_flight {
                self.single = false;
                self.streak = 0;
            }
        }
        let recovered = self.held.is_empty() && std::mem::take(&mut self.erred);
        Confirmed {
            save,
            recovered,
            ahead,
        }
    }

    /// The broker returned `f` as unroutable: charged an attempt, and parked until its retry
    /// is due at `now` + its back-off, or dead if that was its last attempt.
    pub fn returned(&mut self, f: Front, payload: T, now: Instant) -> Returned<T> {
        self.held.remove(&f.seq);
        self.erred = true;
        match self.charge(f.seq) {
            Some(dead) => {
                self.dead_behind_unfinished(f.seq);
                Returned::Dead {
                    dead,
                    payload,
                    save: self.finish_dead(),
                }
            }
            None => {
                let attempts = self.attempts.get(&f.seq).copied().unwrap_or(1);
                let delay = FIRST_RETRY
                    .saturating_mul(1u32 << (attempts - 1).min(16))
                    .min(self.limits.max_delay);
                self.held.insert(f.seq, (f.pos, f.at));
                self.parked.push(Parked {
                    front: f,
                    payload,
                    due: now + delay,
                });
                Returned::Parked { delay }
            }
        }
    }

    /// The broker nacked `f`. Returns the record's death if it was nacked
    /// [`NACKS_BEFORE_DEAD`] times in a row. Then the caller settles the rest of the window
    /// ([`Window::pop`] until empty, [`Window::confirmed_ahead`] for each the broker took)
    /// and calls [`Window::settled`].
    pub fn nacked(&mut self, f: Front) -> Option<Dead> {
        let dead = self.charge_nack(f.seq);
        self.behind = self.flights.front().map(|n| (n.front.seq, n.front.pos));
        dead
    }

    /// While settling after a nack: the broker confirmed `f`, behind the refused record.
    pub fn confirmed_ahead(&mut self, f: Front) {
        self.attempts.remove(&f.seq);
        self.nacks.remove(&f.seq);
        // One sent again is behind the re-read's start when it was the first unfinished:
        // counted now. The others are counted when the re-read skips them.
        let counted = self.held.remove(&f.seq).is_some();
        self.finished += u64::from(counted);
        self.done_ahead.insert(f.seq, counted);
    }

    /// The window behind nacked record `f` is settled (the caller popped every flight);
    /// `dead` is what [`Window::nacked`] returned for it. The log is read again from the
    /// first unfinished record: `f`, a parked record, or the first unconfirmed one behind.
    pub fn settled(&mut self, f: Front, dead: Option<Dead>) -> Resume {
        self.one_at_a_time();
        let behind = self.behind.take();
        self.held.remove(&f.seq);
        let mine = dead.is_none().then_some((f.seq, f.pos));
        let first = self.reread_from([mine, behind]);
        if dead.is_some() {
            if first.is_some_and(|(seq, _)| seq < f.seq) {
                self.dead_ahead.insert(f.seq);
            }
            // Records that were in flight behind it and not confirmed (or parked) must be
            // read again (the confirmed ones are skipped by `done_ahead`); else the reader
            // goes on.
            return Resume::Next {
                from: first.map(|(_, pos)| pos),
                save: self.finish_dead(),
            };
        }
        let (seq, pos) = first.expect("the nacked record itself");
        self.erred = true;
        let delay = self.retry_delay;
        self.retry_delay = (self.retry_delay * 2).min(self.limits.max_delay);
        Resume::Retry {
            seq,
            pos,
            delay,
            save: self.save(),
        }
    }

    /// The channel failed while the window behind nacked record `f` was being settled
    /// (`dead` is what [`Window::nacked`] returned, already applied): what was still in
    /// flight is sent again on the next channel, one at a time, from `f` or, if it is dead,
    /// from the record that was behind it (or a parked one before either).
    pub fn settle_failed(&mut self, f: Front, dead: Option<Dead>) -> Reconnect {
        self.one_at_a_time();
        let behind = self.behind.take();
        self.held.remove(&f.seq);
        let from = match dead {
            Some(_) => behind.map_or(self.read_next.max(f.seq + 1), |(seq, _)| seq),
            None => f.seq,
        };
        self.reconnect_from(from, dead)
    }

    /// Forgets what is in flight and parked: the next channel reads again from `from` (or
    /// the first parked record before it), and nobody is charged for it. A record that just
    /// died (`dead`) and lies past where the reading starts is skipped there.
    fn reconnect_from(&mut self, from: u64, dead: Option<Dead>) -> Reconnect {
        let from = self.held.keys().next().map_or(from, |&h| h.min(from));
        if let Some(d) = dead.filter(|d| d.seq > from) {
            self.dead_ahead.insert(d.seq);
        }
        self.read_next = from;
        self.flights.clear();
        self.parked.clear();
        self.held.clear();
        Reconnect {
            from,
            charged: false,
            dead: None,
            save: self.save(),
        }
    }

    /// After a nack (settled), the first of `candidates` and the parked records: the
    /// reader goes back there; parked records are read from the log again.
    fn reread_from(&mut self, candidates: [Option<(u64, Position)>; 2]) -> Option<(u64, Position)> {
        let held = self.held.iter().next().map(|(&seq, &(pos, _))| (seq, pos));
        let first = candidates.into_iter().chain([held]).flatten().min();
        self.parked.clear();
        self.held.clear();
        if let Some((seq, _)) = first {
            self.read_next = seq;
        }
        first
    }

    /// Record `seq` just died: skipped when the log is read again if an earlier record is
    /// unfinished (else the cursor passes it at the next save).
    fn dead_behind_unfinished(&mut self, seq: u64) {
        if seq > self.first_unfinished().0 {
            self.dead_ahead.insert(seq);
        }
    }

    /// One publish at a time, for a window's worth of confirms in a row.
    fn one_at_a_time(&mut self) {
        self.single = true;
        self.streak = 0;
    }

    /// The first record neither published nor dead, with its position and accept time
    /// when it is in flight or parked (else it is the next one to read).
    fn first_unfinished(&self) -> (u64, Option<u64>) {
        let mut first = (self.read_next, None);
        if let Some(f) = self.flights.front() {
            if f.front.seq < first.0 {
                first = (f.front.seq, Some(f.front.at));
            }
        }
        // Out of order: a parked record, or one sent again (in flight behind later ones).
        if let Some((&seq, &(_, at))) = self.held.iter().next() {
            if seq < first.0 {
                first = (seq, Some(at));
            }
        }
        first
    }

    /// The broker closed the channel while `f` was awaited: `refused` when it did so over a
    /// message (a protocol error: too large, a policy) rather than a lost connection. Only
    /// a record alone in flight can be blamed.
    pub fn closed(&mut self, f: Front, refused: bool) -> Reconnect {
        let charged = refused && f.alone;
        self.held.remove(&f.seq);
        let dead = if charged { self.charge(f.seq) } else { None };
        let from = match dead {
            Some(_) => self.flights.front().map_or(f.seq + 1, |n| n.front.seq),
            None => f.seq,
        };
        self.one_at_a_time();
        Reconnect {
            charged,
            dead,
            ..self.reconnect_from(from, dead)
        }
    }

    /// Saves the cursor if it moved or records finished (on shutdown, a lost connection).
    pub fn save(&mut self) -> Option<Save> {
        let (cursor, at) = self.first_unfinished();
        let oldest_at = at.unwrap_or(0);
        if cursor == self.saved && self.finished == 0 {
            return None;
        }
        let save = Save {
            cursor,
            finished: std::mem::take(&mut self.finished),
            oldest_at,
        };
        self.saved = cursor;
        // What the cursor passed is never read again.
        self.dead_ahead = self.dead_ahead.split_off(&cursor);
        self.done_ahead = self.done_ahead.split_off(&cursor);
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
