//! The relay's state machine without a broker: scripted scenarios for each rule, and a
//! proptest that drives it the way `Drain::run` does through random confirm outcomes.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use proptest::prelude::*;

use super::*;

fn limits(max_in_flight: usize, max_attempts: u32) -> Limits {
    Limits {
        max_in_flight,
        max_attempts,
        max_delay: Duration::from_secs(1),
    }
}

/// A window at cursor 0; the payload is the seq (to check what comes back out).
fn window(max_in_flight: usize, max_attempts: u32) -> Window<u64> {
    let mut w = Window::new(limits(max_in_flight, max_attempts));
    w.connect(0);
    w
}

fn pos(seq: u64) -> Position {
    (7, seq * 100)
}

/// Accept time of record `seq` (never 0, so "no oldest" is told apart).
fn at(seq: u64) -> u64 {
    1_000 + seq
}

/// Reads and sends `seqs` (each must be `Publish`).
fn send(w: &mut Window<u64>, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        assert!(w.room(), "no room for {seq}");
        assert_eq!(w.read(seq), Read::Publish, "seq {seq}");
        w.sent(seq, pos(seq), at(seq), seq);
    }
}

fn pop(w: &mut Window<u64>, seq: u64) -> Front {
    let (f, payload) = w.pop().expect("something in flight");
    assert_eq!((f.seq, payload, f.pos, f.at), (seq, seq, pos(seq), at(seq)));
    f
}

/// A nack with nothing behind: returns the retry delay, or `None` when it died.
fn nack_alone(w: &mut Window<u64>, seq: u64) -> Option<Duration> {
    let f = pop(w, seq);
    assert!(f.alone);
    let dead = w.nacked(f);
    match w.settled(f, dead) {
        Resume::Retry {
            seq: s,
            pos: p,
            delay,
            ..
        } => {
            assert_eq!((s, p), (seq, pos(seq)));
            assert_eq!(dead, None);
            Some(delay)
        }
        Resume::Next { .. } => {
            assert_eq!(dead.map(|d| d.seq), Some(seq));
            None
        }
    }
}

fn save(cursor: u64, finished: u64, oldest_at: u64) -> Option<Save> {
    Some(Save {
        cursor,
        finished,
        oldest_at,
    })
}

#[test]
fn sends_in_acceptance_order_up_to_the_window() {
    let mut w = window(3, 5);
    send(&mut w, 0..3);
    assert!(!w.room(), "max_in_flight is 3");
    for seq in 0..3 {
        let f = pop(&mut w, seq);
        assert_eq!(f.alone, seq == 2);
        let c = w.confirmed(f);
        assert!(!c.recovered);
        // Saved when nothing is left in flight (or every 256), not at every confirm.
        let want = if seq == 2 { save(3, 3, 0) } else { None };
        assert_eq!(c.save, want, "seq {seq}");
        assert!(w.room());
    }
    assert!(w.pop().is_none());
    assert_eq!(
        w.drained(),
        Drained {
            save: None,
            idle: true
        }
    );
}

#[test]
fn the_cursor_is_the_front_of_the_window_with_its_accept_time() {
    let mut w = window(8, 5);
    assert_eq!(w.save(), None, "nothing moved, nothing finished");
    send(&mut w, 0..4);
    let f = pop(&mut w, 0);
    assert_eq!(w.confirmed(f).save, None);
    // Record 1 is the oldest pending one.
    assert_eq!(w.save(), save(1, 1, at(1)));
    assert_eq!(w.save(), None);
    for seq in 1..4 {
        let f = pop(&mut w, seq);
        w.confirmed(f);
    }
    // Nothing in flight: the cursor is the next record to read, no oldest pending.
    assert_eq!(w.save(), None, "saved by the last confirm");
    assert_eq!(w.read(4), Read::Publish);
    assert_eq!(w.read_next(), 5);
}

/// A stopping relay confirms what it can and puts the first unconfirmed record back: the
/// cursor stops at it, never past it.
#[test]
fn a_record_put_back_at_shutdown_holds_the_cursor() {
    let mut w = window(8, 5);
    send(&mut w, 0..4);
    let f = pop(&mut w, 0);
    let _ = w.confirmed(f);
    let f = pop(&mut w, 1);
    w.unpop(f, 1);
    assert_eq!(w.save(), save(1, 1, at(1)));
    // Still first in line, with what is behind it.
    assert_eq!(pop(&mut w, 1).seq, 1);
    assert_eq!(pop(&mut w, 2).seq, 2);
}

#[test]
fn a_full_window_saves_every_256_finished() {
    let mut w = window(300, 5);
    send(&mut w, 0..300);
    for seq in 0..255 {
        let f = pop(&mut w, seq);
        assert_eq!(w.confirmed(f).save, None, "seq {seq}");
    }
    let f = pop(&mut w, 255);
    assert_eq!(w.confirmed(f).save, save(256, 256, at(256)));
}

/// Returns `f` as unroutable; `Some(delay)` when parked, `None` when dead (checked to be `f`).
fn return_(w: &mut Window<u64>, f: Front, now: Instant) -> Option<Duration> {
    match w.returned(f, f.seq, now) {
        Returned::Parked { delay } => Some(delay),
        Returned::Dead { dead, payload, .. } => {
            assert_eq!((dead.seq, payload), (f.seq, f.seq));
            None
        }
    }
}

/// Takes the parked record due at `now` (it must be `seq`) and sends it again.
fn send_again(w: &mut Window<u64>, seq: u64, now: Instant) {
    let (f, payload) = w.due(now).expect("a parked record is due");
    assert_eq!((f.seq, payload), (seq, seq));
    w.sent_again(f, payload);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn an_unroutable_record_is_parked_while_the_ones_behind_it_go_on_and_dead_at_max_attempts() {
    let t0 = Instant::now();
    let mut w = window(4, 3);
    send(&mut w, 0..4);
    let f = pop(&mut w, 0);
    assert!(!f.alone);
    assert_eq!(return_(&mut w, f, t0), Some(ms(100)));
    assert_eq!((w.attempts(0), w.parked()), (1, 1));
    assert!(!w.single(), "a return names its record: nothing else waits");
    assert!(!w.room(), "a parked record keeps its slot");
    // The ones behind it are confirmed meanwhile; the cursor stays at 0.
    for seq in 1..4 {
        let f = pop(&mut w, seq);
        let c = w.confirmed(f);
        assert!(!c.recovered, "0 is still parked");
        let want = if seq == 3 { save(0, 3, at(0)) } else { None };
        assert_eq!(c.save, want, "seq {seq}");
    }
    send(&mut w, 4..6);
    assert_eq!(w.due(t0 + ms(99)).map(|(f, _)| f.seq), None, "not yet");
    assert_eq!(w.next_due(), Some(t0 + ms(100)));
    send_again(&mut w, 0, t0 + ms(100));
    for seq in 4..6 {
        let f = pop(&mut w, seq);
        assert_eq!(w.confirmed(f).save, None);
    }
    let f = pop(&mut w, 0);
    assert!(f.alone);
    assert_eq!(return_(&mut w, f, t0 + ms(110)), Some(ms(200)), "doubled");
    assert_eq!(w.drained().save, save(0, 2, at(0)));
    send_again(&mut w, 0, t0 + ms(310));
    let f = pop(&mut w, 0);
    match w.returned(f, 0, t0 + ms(320)) {
        Returned::Dead { dead, save: s, .. } => {
            assert_eq!(
                dead,
                Dead {
                    seq: 0,
                    attempts: 3
                }
            );
            assert_eq!(
                s,
                save(6, 1, 0),
                "the cursor passes the dead one and those behind"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((w.attempts(0), w.parked()), (0, 0));
    let f = pop_none_then_send(&mut w, 6);
    assert!(w.confirmed(f).recovered);
}

/// Reads and sends `seq` alone and takes it back off the window (nothing else in flight).
fn pop_none_then_send(w: &mut Window<u64>, seq: u64) -> Front {
    assert!(w.pop().is_none());
    send(w, seq..seq + 1);
    pop(w, seq)
}

#[test]
fn what_was_confirmed_behind_a_parked_record_is_not_sent_again_after_a_reconnect() {
    let t0 = Instant::now();
    let mut w = window(8, 5);
    send(&mut w, 0..4);
    let f = pop(&mut w, 0);
    assert_eq!(return_(&mut w, f, t0), Some(ms(100)));
    for seq in 1..3 {
        let f = pop(&mut w, seq);
        w.confirmed(f);
    }
    // The connection is lost with 3 in flight and 0 parked: read again from 0.
    let f = pop(&mut w, 3);
    let r = w.closed(f, false);
    assert_eq!(r.from, 0);
    assert_eq!(r.save, save(0, 2, 0));
    w.connect(0);
    assert_eq!(w.parked(), 0, "read from the log again");
    assert_eq!(w.attempts(0), 1, "attempts survive");
    assert_eq!(w.read(0), Read::Publish);
    w.sent(0, pos(0), at(0), 0);
    assert_eq!(w.read(1), Read::Skip);
    assert_eq!(w.read(2), Read::Skip);
    assert_eq!(w.read(3), Read::Publish);
    w.sent(3, pos(3), at(3), 3);
    assert_eq!(w.save(), None, "1 and 2 were counted when confirmed");
}

#[test]
fn a_nack_of_a_record_sent_again_reads_the_log_again_from_it() {
    let t0 = Instant::now();
    let mut w = window(8, 2);
    send(&mut w, 0..2);
    for seq in 0..2 {
        let f = pop(&mut w, seq);
        assert_eq!(return_(&mut w, f, t0), Some(ms(100)));
    }
    // Both due at once: the older goes first.
    send_again(&mut w, 0, t0 + ms(100));
    send_again(&mut w, 1, t0 + ms(100));
    // 0 is nacked (back-pressure); 1, behind it, is left unsettled.
    let f0 = pop(&mut w, 0);
    assert_eq!(w.nacked(f0), None);
    pop(&mut w, 1);
    match w.settled(f0, None) {
        Resume::Retry { seq, pos: p, .. } => assert_eq!((seq, p), (0, pos(0))),
        other => panic!("{other:?}"),
    }
    assert!(w.single());
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    assert_eq!(w.confirmed(f).save, save(1, 1, 0));
    // 1 is read again and keeps its attempt: its second return is its last.
    send(&mut w, 1..2);
    let f = pop(&mut w, 1);
    match w.returned(f, 1, t0 + ms(200)) {
        Returned::Dead { dead, save: s, .. } => {
            assert_eq!(
                dead,
                Dead {
                    seq: 1,
                    attempts: 2
                }
            );
            assert_eq!(s, save(2, 1, 0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_nack_behind_a_parked_record_reads_the_log_again_from_the_parked_one() {
    let t0 = Instant::now();
    let mut w = window(4, 5);
    send(&mut w, 0..3);
    let f = pop(&mut w, 0);
    assert_eq!(return_(&mut w, f, t0), Some(ms(100)));
    let f = pop(&mut w, 1);
    assert_eq!(w.nacked(f), None);
    let two = pop(&mut w, 2);
    w.confirmed_ahead(two);
    assert_eq!(
        w.settled(f, None),
        Resume::Retry {
            seq: 0,
            pos: pos(0),
            delay: ms(100),
            save: None,
        },
        "from the parked record, one at a time"
    );
    assert_eq!(w.parked(), 0);
    assert!(w.single());
    for seq in 0..2 {
        send(&mut w, seq..seq + 1);
        assert!(!w.room(), "one at a time");
        let f = pop(&mut w, seq);
        w.confirmed(f);
    }
    assert_eq!(w.read(2), Read::Skip, "confirmed while it was settled");
    send(&mut w, 3..4);
    let f = pop(&mut w, 3);
    assert_eq!(
        w.confirmed(f).save,
        save(4, 2, 0),
        "2 counted once, when skipped"
    );
}

/// A record the queue can never take (larger than its max-length-bytes) is nacked for ever:
/// after `NACKS_BEFORE_DEAD` nacks in a row it is dead and the relay goes on (it stopped
/// there, every other event behind it; found by a review). A confirm in between starts over.
#[test]
fn a_record_nacked_again_and_again_is_dead_in_the_end() {
    let mut w = window(4, 1);
    for _ in 1..super::NACKS_BEFORE_DEAD {
        send(&mut w, 0..1);
        assert!(nack_alone(&mut w, 0).is_some());
    }
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    let dead = w.nacked(f);
    assert_eq!(
        dead,
        Some(Dead {
            seq: 0,
            attempts: super::NACKS_BEFORE_DEAD
        })
    );
    assert!(matches!(w.settled(f, dead), Resume::Next { .. }));
    // Record 1: nacked a while, then taken (a consumer made room): its count is gone.
    for _ in 1..super::NACKS_BEFORE_DEAD {
        send(&mut w, 1..2);
        assert!(nack_alone(&mut w, 1).is_some());
    }
    send(&mut w, 1..2);
    let f = pop(&mut w, 1);
    w.confirmed(f);
    assert!(w.nacks.is_empty());
}

#[test]
fn nacks_are_retried_in_order_and_never_charged_an_attempt() {
    let mut w = window(4, 1);
    send(&mut w, 0..2);
    let f = pop(&mut w, 0);
    assert_eq!(w.nacked(f), None);
    pop(&mut w, 1); // nacked too
    assert!(matches!(w.settled(f, None), Resume::Retry { seq: 0, .. }));
    for _ in 0..20 {
        send(&mut w, 0..1);
        assert!(nack_alone(&mut w, 0).is_some());
        assert_eq!(w.attempts(0), 0, "back-pressure is not charged");
    }
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    assert!(w.confirmed(f).recovered);
    send(&mut w, 1..2);
    let f = pop(&mut w, 1);
    assert_eq!(w.confirmed(f).save, save(2, 1, 0));
}

#[test]
fn a_channel_closed_with_several_in_flight_charges_nobody_and_rewinds() {
    let mut w = window(8, 1);
    send(&mut w, 0..5);
    let f = pop(&mut w, 0);
    w.confirmed(f);
    let f = pop(&mut w, 1);
    assert!(!f.alone);
    let r = w.closed(f, true);
    assert_eq!(
        r,
        Reconnect {
            from: 1,
            charged: false,
            dead: None,
            save: save(1, 1, 0),
        },
        "back to the oldest in flight"
    );
    assert_eq!(w.attempts(1), 0);
    assert!(w.single(), "the retries go one at a time");
    assert!(w.pop().is_none(), "the window is forgotten");
    w.connect(r.from);
    send(&mut w, 1..2);
    assert!(!w.room());
}

#[test]
fn a_channel_closed_over_the_one_record_in_flight_charges_it() {
    let mut w = window(8, 2);
    send(&mut w, 0..1);
    // A lost connection (not a refusal) is nobody's fault.
    let f = pop(&mut w, 0);
    let r = w.closed(f, false);
    assert_eq!((r.from, r.charged, r.dead, r.save), (0, false, None, None));
    w.connect(0);
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    let r = w.closed(f, true);
    assert_eq!((r.from, r.charged, r.dead), (0, true, None));
    assert_eq!(w.attempts(0), 1);
    w.connect(0);
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    let r = w.closed(f, true);
    assert_eq!(
        r,
        Reconnect {
            from: 1,
            charged: true,
            dead: Some(Dead {
                seq: 0,
                attempts: 2
            }),
            save: save(1, 1, 0),
        }
    );
}

#[test]
fn attempts_and_one_at_a_time_survive_a_reconnect() {
    let t0 = Instant::now();
    let mut w = window(8, 3);
    send(&mut w, 0..2);
    let f = pop(&mut w, 0);
    assert_eq!(return_(&mut w, f, t0), Some(ms(100)));
    let f = pop(&mut w, 1);
    assert!(nack_alone_front(&mut w, f).is_some());
    // The connection is lost while 0 is in flight again, one at a time.
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    let r = w.closed(f, false);
    assert_eq!(r.from, 0);
    w.connect(0);
    assert_eq!(w.attempts(0), 1);
    assert!(w.single());
    send(&mut w, 0..1);
    assert!(!w.room());
    let f = pop(&mut w, 0);
    assert_eq!(return_(&mut w, f, t0), Some(ms(200)), "its second attempt");
}

/// A nack of `f` (already popped, nothing else in flight): the retry delay, or `None` when
/// it died.
fn nack_alone_front(w: &mut Window<u64>, f: Front) -> Option<Duration> {
    let dead = w.nacked(f);
    match w.settled(f, dead) {
        Resume::Retry { delay, .. } => Some(delay),
        Resume::Next { .. } => None,
    }
}

#[test]
fn one_at_a_time_ends_after_a_window_of_confirms_in_a_row() {
    let mut w = window(4, 5);
    send(&mut w, 0..3);
    let f = pop(&mut w, 0);
    assert_eq!(w.nacked(f), None);
    pop(&mut w, 1);
    pop(&mut w, 2);
    assert!(matches!(w.settled(f, None), Resume::Retry { seq: 0, .. }));
    // Nacked again after two confirms: the count starts over.
    for seq in 0..2 {
        send(&mut w, seq..seq + 1);
        let f = pop(&mut w, seq);
        w.confirmed(f);
    }
    send(&mut w, 2..3);
    assert!(nack_alone(&mut w, 2).is_some());
    for seq in 2..6 {
        assert!(w.single(), "one at a time at {seq}");
        send(&mut w, seq..seq + 1);
        assert!(!w.room());
        let f = pop(&mut w, seq);
        w.confirmed(f);
    }
    assert!(
        !w.single(),
        "under load, not only once the backlog is empty"
    );
    send(&mut w, 6..10);
    assert!(!w.room());
}

#[test]
fn one_at_a_time_ends_when_the_backlog_is_empty() {
    let mut w = window(4, 5);
    send(&mut w, 0..1);
    nack_alone(&mut w, 0);
    assert!(w.single());
    assert!(w.pop().is_none());
    let d = w.drained();
    assert!(!d.idle, "read again at once with a full window");
    assert!(!w.single());
}

#[test]
fn a_returned_record_backs_off_doubling_up_to_the_cap_and_a_nack_on_its_own() {
    let t0 = Instant::now();
    let mut w = window(4, u32::MAX);
    let mut delays = Vec::new();
    let mut now = t0;
    send(&mut w, 0..1);
    for _ in 0..6 {
        let f = pop(&mut w, 0);
        let delay = return_(&mut w, f, now).unwrap();
        delays.push(delay.as_millis());
        now += delay;
        send_again(&mut w, 0, now);
    }
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    let f = pop(&mut w, 0);
    let c = w.confirmed(f);
    assert!(c.recovered, "the reported error is cleared");
    send(&mut w, 1..2);
    assert_eq!(nack_alone(&mut w, 1), Some(ms(100)));
    // The nack back-off doubles on its channel; a new connection starts over.
    send(&mut w, 1..2);
    assert_eq!(nack_alone(&mut w, 1), Some(ms(200)));
    w.connect(1);
    send(&mut w, 1..2);
    assert_eq!(nack_alone(&mut w, 1), Some(ms(100)));
}

#[test]
fn an_unpublishable_record_is_dead_at_once() {
    let mut w = window(4, 5);
    send(&mut w, 0..1);
    assert_eq!(w.read(1), Read::Publish);
    assert_eq!(
        w.unpublishable(1),
        Dead {
            seq: 1,
            attempts: 1
        }
    );
    send(&mut w, 2..3);
    // Counted as finished; the cursor waits for 0 in flight.
    assert_eq!(w.save(), save(0, 1, at(0)));
    let f = pop(&mut w, 0);
    w.confirmed(f);
    let f = pop(&mut w, 2);
    assert_eq!(w.confirmed(f).save, save(3, 2, 0));
}

#[test]
fn an_unpublishable_record_behind_a_refused_one_is_not_dead_twice() {
    // Found by the proptest: 1 died while 0 was in flight, 0 was refused and the log was
    // read again from 0.
    let mut w = window(4, 5);
    send(&mut w, 0..1);
    assert_eq!(w.read(1), Read::Publish);
    w.unpublishable(1);
    send(&mut w, 2..3);
    let f = pop(&mut w, 0);
    assert_eq!(w.nacked(f), None);
    pop(&mut w, 2);
    let r = w.settled(f, None);
    let dead_one = save(0, 1, 0);
    assert!(
        matches!(r, Resume::Retry { seq: 0, save, .. } if save == dead_one),
        "1 is counted: {r:?}"
    );
    send(&mut w, 0..1);
    let f = pop(&mut w, 0);
    assert_eq!(w.confirmed(f).save, save(1, 1, 0));
    assert_eq!(w.read(1), Read::Skip);
    send(&mut w, 2..3);
    let f = pop(&mut w, 2);
    assert_eq!(w.confirmed(f).save, save(3, 1, 0));
}

#[test]
fn a_failed_send_reads_the_window_again() {
    let mut w = window(4, 5);
    assert_eq!(w.read(0), Read::Publish);
    let r = w.send_failed(0);
    assert_eq!((r.from, r.dead, r.save), (0, None, None));
    assert!(!w.single(), "nothing else was in flight");
    send(&mut w, 0..3);
    assert_eq!(w.read(3), Read::Publish);
    let r = w.send_failed(3);
    assert_eq!((r.from, r.save), (0, None));
    assert!(w.single(), "three confirms were lost");
}

// ---- the proptest: Drain::run's loop over a simulated log and broker ----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Normal,
    /// Always returned (no binding matches).
    Unroutable,
    /// Returned twice, then routed (a binding appears): published, or dead at
    /// `max_attempts` <= 2.
    Flaky,
    /// A field over AMQP's limits.
    Unpublishable,
}

/// What the broker does with the record whose confirm is awaited.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Ack,
    Nack,
    /// The broker closes the channel over a message.
    ClosedRefused,
    /// The connection is lost.
    ClosedLost,
}

#[derive(Debug, Clone)]
struct Script {
    kinds: Vec<Kind>,
    max_in_flight: usize,
    max_attempts: u32,
    /// Outcomes of the confirms at the front, in turn; `Ack` once used up.
    fronts: Vec<Event>,
    /// Outcomes of the confirms settled behind a refusal (`true`: confirmed).
    ahead: Vec<bool>,
    /// Sends that fail on the channel (`true`), in turn.
    sends: Vec<bool>,
    /// Confirms settled behind a refusal that fail with the channel (`true`), in turn.
    ahead_fails: Vec<bool>,
}

#[derive(Default)]
struct Seen {
    published: Vec<u32>,
    dead: Vec<u32>,
    first_sends: Vec<u64>,
    sent: BTreeSet<u64>,
    /// The store's cursor: where a new connection reads from.
    stored: u64,
    finished: u64,
    saves: usize,
}

impl Seen {
    fn apply(&mut self, save: Option<Save>, at_of: impl Fn(u64) -> u64) {
        let Some(s) = save else { return };
        self.saves += 1;
        for seq in 0..s.cursor {
            let i = seq as usize;
            assert!(
                self.published[i] > 0 || self.dead[i] > 0,
                "cursor {} passed {seq}, neither published nor dead",
                s.cursor
            );
        }
        assert!(s.cursor >= self.stored, "the cursor went back");
        assert!(
            s.oldest_at == 0 || s.oldest_at == at_of(s.cursor),
            "oldest_at is the cursor record's"
        );
        self.stored = s.cursor;
        self.finished += s.finished;
    }
}

/// Runs `script` the way `Drain::run` does; returns what happened.
fn simulate(script: &Script) -> Seen {
    let n = script.kinds.len() as u64;
    let mut w: Window<u64> = Window::new(limits(script.max_in_flight, script.max_attempts));
    let mut seen = Seen {
        published: vec![0; n as usize],
        dead: vec![0; n as usize],
        ..Seen::default()
    };
    let (mut fronts, mut ahead, mut sends, mut ahead_fails) = (
        script.fronts.iter().copied(),
        script.ahead.iter().copied(),
        script.sends.iter().copied(),
        script.ahead_fails.iter().copied(),
    );
    w.connect(0);
    let mut reader = 0;
    let mut steps = 0;
    // Returns so far per record (for `Kind::Flaky`).
    let mut returns = vec![0u32; n as usize];
    // Virtual time: a millisecond per confirm; when only parked records are left, their
    // retry time.
    let mut now = Instant::now();
    'run: loop {
        steps += 1;
        assert!(steps < 100_000, "the relay does not get through the log");
        while let Some((f, payload)) = w.due(now) {
            assert_eq!(payload, f.seq);
            if sends.next() == Some(true) {
                let r = w.send_failed(f.seq);
                seen.apply(r.save, at);
                assert_eq!(r.from, seen.stored);
                w.connect(seen.stored);
                reader = seen.stored;
                continue 'run;
            }
            w.sent_again(f, payload);
        }
        while w.room() && reader < n {
            let seq = reader;
            reader += 1;
            if w.read(seq) == Read::Skip {
                continue;
            }
            if script.kinds[seq as usize] == Kind::Unpublishable {
                let d = w.unpublishable(seq);
                assert_eq!(d, Dead { seq, attempts: 1 });
                seen.dead[seq as usize] += 1;
                continue;
            }
            if sends.next() == Some(true) {
                let r = w.send_failed(seq);
                assert_eq!(r.dead, None);
                seen.apply(r.save, at);
                assert_eq!(r.from, seen.stored);
                w.connect(seen.stored);
                reader = seen.stored;
                continue 'run;
            }
            if seen.sent.insert(seq) {
                seen.first_sends.push(seq);
            }
            w.sent(seq, pos(seq), at(seq), seq);
        }
        let Some((front, payload)) = w.pop() else {
            let d = w.drained();
            seen.apply(d.save, at);
            if let Some(due) = w.next_due() {
                now = now.max(due);
                continue;
            }
            if d.idle && reader >= n {
                break;
            }
            continue;
        };
        now += Duration::from_millis(1);
        assert_eq!(payload, front.seq);
        let kind = script.kinds[front.seq as usize];
        match fronts.next().unwrap_or(Event::Ack) {
            Event::Ack
                if kind == Kind::Unroutable
                    || (kind == Kind::Flaky && returns[front.seq as usize] < 2) =>
            {
                returns[front.seq as usize] += 1;
                match w.returned(front, payload, now) {
                    Returned::Parked { .. } => {}
                    Returned::Dead {
                        dead,
                        payload,
                        save,
                    } => {
                        assert_eq!((dead.seq, payload), (front.seq, front.seq));
                        assert_eq!(dead.attempts, script.max_attempts);
                        seen.dead[dead.seq as usize] += 1;
                        seen.apply(save, at);
                    }
                }
                continue;
            }
            Event::Ack => {
                seen.published[front.seq as usize] += 1;
                let c = w.confirmed(front);
                seen.apply(c.save, at);
                continue;
            }
            Event::Nack => {}
            e @ (Event::ClosedRefused | Event::ClosedLost) => {
                let r = w.closed(front, e == Event::ClosedRefused);
                if let Some(d) = r.dead {
                    assert_eq!(d.seq, front.seq);
                    assert_eq!(d.attempts, script.max_attempts);
                    seen.dead[d.seq as usize] += 1;
                }
                seen.apply(r.save, at);
                assert_eq!(r.from, seen.stored);
                w.connect(seen.stored);
                reader = seen.stored;
                continue;
            }
        };
        let dead = w.nacked(front);
        if let Some(d) = dead {
            assert_eq!(d.attempts, super::NACKS_BEFORE_DEAD);
            seen.dead[d.seq as usize] += 1;
        }
        while let Some((f, _)) = w.pop() {
            if ahead_fails.next() == Some(true) {
                let r = w.settle_failed(front, dead);
                assert_eq!(r.dead, None, "already applied");
                seen.apply(r.save, at);
                assert_eq!(r.from, seen.stored);
                assert!(w.single());
                w.connect(seen.stored);
                reader = seen.stored;
                continue 'run;
            }
            let confirmed =
                ahead.next().unwrap_or(true) && script.kinds[f.seq as usize] != Kind::Unroutable;
            // A flaky record confirmed here was routed: its binding has appeared.
            if confirmed {
                returns[f.seq as usize] = 2;
            }
            if confirmed {
                seen.published[f.seq as usize] += 1;
                w.confirmed_ahead(f);
            }
        }
        match w.settled(front, dead) {
            Resume::Retry {
                seq, pos: p, save, ..
            } => {
                assert!(
                    seq <= front.seq,
                    "from the nacked record or one parked before it"
                );
                assert_eq!(p, pos(seq));
                reader = seq;
                seen.apply(save, at);
            }
            Resume::Next { from, save } => {
                if let Some(p) = from {
                    reader = p.1 / 100;
                }
                seen.apply(save, at);
            }
        }
    }
    assert_eq!(w.save(), None, "everything saved");
    assert_eq!(seen.stored, n, "the cursor ends past the log");
    seen
}

fn kinds() -> impl Strategy<Value = Vec<Kind>> {
    prop::collection::vec(
        prop_oneof![
            8 => Just(Kind::Normal),
            2 => Just(Kind::Unroutable),
            1 => Just(Kind::Flaky),
            1 => Just(Kind::Unpublishable),
        ],
        0..40,
    )
}

fn calm_script() -> impl Strategy<Value = Script> {
    (
        kinds(),
        1..6usize,
        1..4u32,
        prop::collection::vec(
            prop_oneof![3 => Just(Event::Ack), 1 => Just(Event::Nack)],
            0..80,
        ),
        prop::collection::vec(any::<bool>(), 0..80),
    )
        .prop_map(
            |(kinds, max_in_flight, max_attempts, fronts, ahead)| Script {
                kinds,
                max_in_flight,
                max_attempts,
                fronts,
                ahead,
                sends: Vec::new(),
                ahead_fails: Vec::new(),
            },
        )
}

fn stormy_script() -> impl Strategy<Value = Script> {
    (
        calm_script(),
        prop::collection::vec(
            prop_oneof![
                6 => Just(Event::Ack),
                2 => Just(Event::Nack),
                1 => Just(Event::ClosedRefused),
                1 => Just(Event::ClosedLost),
            ],
            0..80,
        ),
        prop::collection::vec(prop::bool::weighted(0.1), 0..80),
        prop::collection::vec(prop::bool::weighted(0.1), 0..80),
    )
        .prop_map(|(mut s, fronts, sends, ahead_fails)| {
            s.fronts = fronts;
            s.sends = sends;
            s.ahead_fails = ahead_fails;
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Confirms, returns and nacks on one connection: every record ends published or dead
    /// exactly once, and each leaves the backlog count once.
    #[test]
    fn every_record_ends_published_or_dead_exactly_once(script in calm_script()) {
        let seen = simulate(&script);
        for (seq, kind) in script.kinds.iter().enumerate() {
            let (p, d) = (seen.published[seq], seen.dead[seq]);
            prop_assert!((p, d) == (1, 0) || (p, d) == (0, 1), "seq {seq}: {p} publishes, {d} deaths");
            if matches!(kind, Kind::Unroutable | Kind::Unpublishable) {
                prop_assert_eq!((p, d), (0, 1), "seq {} is {:?}", seq, kind);
            }
        }
        prop_assert_eq!(seen.finished, script.kinds.len() as u64);
        let mut sorted = seen.first_sends.clone();
        sorted.sort();
        prop_assert_eq!(&sorted, &seen.first_sends, "first sends in acceptance order");
    }

    /// With channels closing (also while a refusal is settled) and connections lost too:
    /// at least once, in order, dead at most once, each record leaves the backlog count
    /// once, and the cursor never passes a record that is neither published nor dead
    /// (checked at every save by `simulate`).
    #[test]
    fn the_cursor_never_passes_an_unfinished_record(script in stormy_script()) {
        let seen = simulate(&script);
        prop_assert_eq!(seen.finished, script.kinds.len() as u64);
        for (seq, kind) in script.kinds.iter().enumerate() {
            let (p, d) = (seen.published[seq], seen.dead[seq]);
            prop_assert!(p + d >= 1, "seq {seq} never finished");
            prop_assert!(d <= 1, "seq {seq} died {d} times");
            if matches!(kind, Kind::Unroutable | Kind::Unpublishable) {
                prop_assert_eq!(p, 0, "seq {} is {:?}", seq, kind);
            }
        }
        let mut sorted = seen.first_sends.clone();
        sorted.sort();
        prop_assert_eq!(&sorted, &seen.first_sends, "first sends in acceptance order");
    }
}

/// Found by a review: record 1, nacked until it died, with the parked record 0 sent again
/// right behind it and confirmed while the nack was settled, then the channel failed: the
/// next connection reads again from 0, and 1 (already dead) must be skipped, not sent again.
#[test]
fn a_record_dead_by_nacks_is_skipped_after_a_settle_that_failed() {
    let t0 = Instant::now();
    let mut w = window(100, 100);
    send(&mut w, 0..3);
    let r = pop(&mut w, 0);
    assert!(return_(&mut w, r, t0).is_some());
    let f = pop(&mut w, 1);
    assert_eq!(w.nacked(f), None);
    let x = pop(&mut w, 2);
    w.confirmed_ahead(x);
    assert!(matches!(w.settled(f, None), Resume::Retry { seq: 0, .. }));
    // Each re-read (one at a time): 0 returned again, then 1 nacked again.
    for _ in 1..super::NACKS_BEFORE_DEAD - 1 {
        send(&mut w, 0..1);
        let r = pop(&mut w, 0);
        assert!(return_(&mut w, r, t0).is_some());
        send(&mut w, 1..2);
        let f = pop(&mut w, 1);
        assert_eq!(w.nacked(f), None);
        assert!(matches!(w.settled(f, None), Resume::Retry { seq: 0, .. }));
    }
    // Then both are returned (parked: 0 for 1 s, 1 for 100 ms), and the window is full again.
    let t1 = t0 + ms(10_000);
    send(&mut w, 0..1);
    let r = pop(&mut w, 0);
    assert_eq!(return_(&mut w, r, t1), Some(ms(1000)));
    send(&mut w, 1..2);
    let f = pop(&mut w, 1);
    assert_eq!(return_(&mut w, f, t1), Some(ms(100)));
    assert_eq!(w.read(2), Read::Skip);
    assert!(w.pop().is_none());
    assert!(!w.drained().idle);
    send(&mut w, 3..6);
    let x = pop(&mut w, 3);
    w.confirmed(x);
    send_again(&mut w, 1, t1 + ms(100));
    let x = pop(&mut w, 4);
    w.confirmed(x);
    send_again(&mut w, 0, t1 + ms(1000));
    send(&mut w, 6..7);
    let x = pop(&mut w, 5);
    w.confirmed(x);
    // 1's last nack: dead. 0 confirmed while that is settled; the channel fails on 6.
    let f = pop(&mut w, 1);
    let dead = w.nacked(f);
    assert_eq!(dead.map(|d| d.seq), Some(1));
    let r = pop(&mut w, 0);
    w.confirmed_ahead(r);
    pop(&mut w, 6);
    let rc = w.settle_failed(f, dead);
    assert_eq!(rc.from, 0);
    w.connect(0);
    assert_eq!(w.read(0), Read::Skip, "confirmed");
    assert_eq!(w.read(1), Read::Skip, "dead once, not sent again");
    assert_eq!(w.read(2), Read::Skip);
}

#[test]
fn parked_records_leave_a_small_window_room_for_what_is_behind_them() {
    let t0 = Instant::now();
    let mut w = window(8, 5);
    send(&mut w, 0..1);
    let r = pop(&mut w, 0);
    assert!(return_(&mut w, r, t0).is_some());
    // What a batch waits for is what it can get: the window less the parked slot.
    assert_eq!((w.free(), w.room_when_empty()), (7, 7));
    send(&mut w, 1..8);
    assert!(!w.room());
}

#[test]
fn one_at_a_time_holds_for_a_parked_record_s_retry_too() {
    let t0 = Instant::now();
    let mut w = window(8, 5);
    send(&mut w, 0..2);
    let r = pop(&mut w, 0);
    assert!(return_(&mut w, r, t0).is_some());
    let f = pop(&mut w, 1);
    assert!(nack_alone_front(&mut w, f).is_some());
    // Read again from the parked record, one at a time; a second return parks it again.
    send(&mut w, 0..1);
    let r = pop(&mut w, 0);
    assert_eq!(return_(&mut w, r, t0), Some(ms(200)));
    send(&mut w, 1..2);
    assert!(w.due(t0 + ms(500)).is_none(), "1 is in flight");
    let f = pop(&mut w, 1);
    w.confirmed(f);
    send_again(&mut w, 0, t0 + ms(500));
}

/// Found by a review: a record made dead behind an unfinished one is skipped when the log is
/// read again; if the dead-letter list could not take it, the relay reconnects from the saved
/// cursor and must send it again instead.
#[test]
fn a_dead_record_the_store_could_not_keep_is_sent_again() {
    let mut w = window(8, 5);
    send(&mut w, 0..1);
    assert_eq!(w.read(1), Read::Publish);
    // Dead behind 0, in flight: it would be skipped on a re-read from 0.
    w.unpublishable(1);
    w.revive(1);
    w.connect(0);
    assert_eq!(w.read(0), Read::Publish);
    assert_eq!(w.read(1), Read::Publish, "not skipped as dead");
}
