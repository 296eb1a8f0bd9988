//! Questions about kept events, answered from the store: list (newest first, filtered), show
//! one, replay, forget. The admin API ([`crate::admin`]) runs them inside the gateway; the
//! command line ([`crate::inspect_cli`]) runs them on a stopped gateway's store, or asks the
//! admin API when the store is locked — both print the same rows.
//!
//! Status of a record: at or above the relay's cursor it is `pending`; below, `dead` when the
//! dead list holds it, `replayed` when it was a dead letter that has been replayed, else
//! `published`. Dead letters outlive their segment (the store keeps a copy), so they are
//! listed after the oldest record still in the log.
//!
//! Listings are newest first by accept time. Memory stays bounded by `limit`: segments are
//! read newest first, each one front to back, keeping only the `limit` newest matches (a
//! replay's copy keeps its event's time, so a segment's matches are ranked, not just taken). Replay streams the log oldest first and appends in
//! batches; it reads no further than the log's end when it started, so it never meets its own
//! replayed records.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::PoisonError;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::store::{DeadInfo, Entry, Store, StoreError};

/// Rows listed when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most rows one listing returns.
pub const MAX_LIMIT: usize = 10_000;
/// Records appended per group commit by a replay.
const REPLAY_BATCH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Published,
    Dead,
    /// A dead letter that has since been replayed (the replayed record has its own status).
    Replayed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Published => "published",
            Status::Dead => "dead",
            Status::Replayed => "replayed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Status::Pending),
            "published" => Ok(Status::Published),
            "dead" => Ok(Status::Dead),
            "replayed" => Ok(Status::Replayed),
            _ => Err(format!(
                "status {s:?}: expected pending, published, dead or replayed"
            )),
        }
    }
}

/// Filters as they come from the command line, query parameters or a JSON body; `since` and
/// `until` are still text (see [`parse_when`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only records after this seq, oldest first ([`follow`]): what `hookgate tail` follows (a
    /// published event is shown there for a minute even when `retain_secs = 0` takes it out of
    /// the listings at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// With `after`: each row also carries its envelope (`tail --json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelopes: Option<bool>,
}

impl Query {
    /// Resolves `since`/`until` against `now_secs` and bounds `limit`.
    pub fn resolve(&self, now_secs: u64) -> Result<Filter, String> {
        let when = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| parse_when(s, now_secs).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let limit = limit_of(self.limit)?;
        Ok(Filter {
            source: self.source.clone(),
            kind: self.kind.clone(),
            status: self.status,
            since: when("since", &self.since)?,
            until: when("until", &self.until)?,
            limit,
            after: self.after,
            envelopes: self.envelopes.unwrap_or(false),
        })
    }
}

/// A resolved [`Query`]: times in Unix seconds, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub status: Option<Status>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: usize,
    /// See [`Query::after`].
    pub after: Option<u64>,
    /// See [`Query::envelopes`].
    pub envelopes: bool,
}

impl Filter {
    /// Everything but the status, which costs a lookup.
    fn matches_entry(&self, e: &Entry) -> bool {
        self.source.as_ref().is_none_or(|s| *s == e.source)
            && self.kind.as_ref().is_none_or(|k| *k == e.kind)
            && self.since.is_none_or(|t| e.timestamp >= t)
            && self.until.is_none_or(|t| e.timestamp <= t)
    }

    fn matches(&self, e: &Entry, status: Status) -> bool {
        self.matches_entry(e) && self.status.is_none_or(|s| s == status)
    }
}

/// A listing's `limit` (events and rejections alike): [`DEFAULT_LIMIT`] when not given,
/// else 1 to [`MAX_LIMIT`].
pub fn limit_of(limit: Option<usize>) -> Result<usize, String> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(format!("limit: must be between 1 and {MAX_LIMIT}")),
    }
}

/// `WHEN`: RFC 3339, or a duration back from `now_secs` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_when(s: &str, now_secs: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return u64::try_from(t.timestamp()).map_err(|_| format!("{s:?}: before 1970"));
    }
    let unit_at = s.len().saturating_sub(1);
    let (n, unit) = (s.get(..unit_at), s.get(unit_at..));
    let secs_per = match unit {
        Some("s") => 1,
        Some("m") => 60,
        Some("h") => 3600,
        Some("d") => 86_400,
        _ => 0,
    };
    match n.and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if secs_per > 0 && !s.starts_with('+') => {
            Ok(now_secs.saturating_sub(n.saturating_mul(secs_per)))
        }
        _ => Err(format!(
            "{s:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or a duration back from now (90s, 15m, 2h, 7d)"
        )),
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// One listed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub seq: u64,
    /// Accept time, RFC 3339.
    pub received: String,
    pub source: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    /// Bytes of the envelope.
    pub size: usize,
    /// A record re-enqueued by a replay.
    pub replay: bool,
}

impl EventRow {
    fn new(seq: u64, e: &Entry, status: Status) -> EventRow {
        EventRow {
            seq,
            received: rfc3339(e.timestamp),
            source: e.source.clone(),
            id: e.message_id.clone(),
            kind: e.kind.clone(),
            status,
            size: e.body.len(),
            replay: e.replay,
        }
    }
}

/// One event in full: `hookgate events show`, `GET /events/{source}/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub row: EventRow,
    pub provider: String,
    pub routing_key: String,
    /// Refusals by the broker: a dead letter's, or those of a pending event so far (known to
    /// the running gateway; none on a stopped store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<String>,
    /// When the broker had confirmed it, at the latest (RFC 3339; published events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// Later records of the same event re-enqueued by replays, newest first.
    #[serde(default)]
    pub replays: Vec<EventRow>,
    /// The CloudEvents envelope as published, byte for byte ([`envelope_of`]). Not read back
    /// here: beside a flattened field serde buffers it, and cannot keep it raw (the command
    /// line takes it out of the answer's members first).
    #[serde(skip_deserializing, default = "no_envelope")]
    pub envelope: Box<RawValue>,
    /// The envelope indented as text ([`pretty_raw`]), on request (`?text=true`): the console
    /// shows it as sent, where a browser's JSON parse rounds numbers past 2^53 and drops a
    /// repeated key.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub envelope_text: Option<String>,
}

fn no_envelope() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// What the status of a record depends on, read once per query.
struct Statuses {
    cursor: u64,
    /// Confirmed past the cursor (an earlier record waits for a retry): published.
    published_ahead: std::collections::BTreeSet<u64>,
    dead: HashMap<u64, DeadInfo>,
    replayed: HashMap<u64, u64>,
    /// Published records below this are past `store.retain_secs`.
    expired_below: u64,
}

impl Statuses {
    fn load(store: &Store) -> Result<Statuses, StoreError> {
        Ok(Statuses {
            // Before the cursor: a record the cursor passes meanwhile is then below it.
            published_ahead: store.published_past_cursor(),
            cursor: store.cursor(),
            dead: store.dead_infos()?,
            replayed: store.replayed_dead()?,
            expired_below: store.published_expired_below(crate::now_secs()),
        })
    }

    /// Whether record `seq` is still kept: a published one only for `store.retain_secs`
    /// (retention deletes whole segments, so its file may outlive that; it is not listed,
    /// shown or replayed then). Pending, dead and replayed records always are.
    fn kept(&self, seq: u64) -> bool {
        match self.of(seq) {
            Status::Published => seq >= self.expired_below,
            // A dead letter replayed since is, once its copy went out, the published event it
            // became: kept as long as that copy is.
            Status::Replayed => {
                let last = self.last_copy(seq);
                self.of(last) != Status::Published || last >= self.expired_below
            }
            Status::Pending | Status::Dead => true,
        }
    }

    /// Where a replayed dead letter ended: the status of the last copy in its chain of
    /// replays.
    fn settled(&self, seq: u64) -> Status {
        self.of(self.last_copy(seq))
    }

    /// The last copy in `seq`'s chain of replays (`seq` itself when it was never replayed;
    /// each copy is a later record, so the chain ends).
    fn last_copy(&self, mut seq: u64) -> u64 {
        while let Some(&copy) = self.replayed.get(&seq).filter(|&&c| c > seq) {
            seq = copy;
        }
        seq
    }

    fn of(&self, seq: u64) -> Status {
        if seq >= self.cursor && !self.published_ahead.contains(&seq) {
            Status::Pending
        } else if self.dead.contains_key(&seq) {
            Status::Dead
        } else if self.replayed.contains_key(&seq) {
            Status::Replayed
        } else {
            Status::Published
        }
    }
}

/// The log's segments as `[first, end)` ranges of seqs, oldest first, ending at what is on disk.
fn segment_ranges(store: &Store) -> Vec<(u64, u64)> {
    let end = store.durable_upto().saturating_add(1);
    let starts = store.segment_starts();
    let mut out = Vec::with_capacity(starts.len());
    for (i, &first) in starts.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(u64::MAX).min(end);
        if first < next {
            out.push((first, next));
        }
    }
    out
}

/// Reads the records of `[first, end)` in order.
fn scan_segment(
    store: &Store,
    (first, end): (u64, u64),
    mut each: impl FnMut(u64, Entry) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut r = store.reader(first)?;
    while let Some((seq, _, e)) = r.next_record()? {
        if seq >= end {
            break;
        }
        if seq >= first {
            each(seq, e)?;
        }
    }
    Ok(())
}

/// Events matching `filter`, newest first, at most `filter.limit` (`filter.after` is
/// [`follow`]'s).
pub fn list(store: &Store, filter: &Filter) -> Result<Vec<EventRow>, StoreError> {
    let statuses = Statuses::load(store)?;
    let ranges = segment_ranges(store);
    // Newest first by accept time. The log is in accept order but for a replay's copies,
    // which keep their event's time at a later record. Every record before an original, its
    // copies included (a copy comes after its event's original), was accepted no later than
    // that original: once the `limit`-th row is at least as new as the oldest original read,
    // nothing further back can rank above it.
    let limit = filter.limit;
    let mut out: Vec<(u64, EventRow)> = Vec::new();
    let by_time = |rows: &mut Vec<(u64, EventRow)>| {
        rows.sort_by(|(ta, a), (tb, b)| tb.cmp(ta).then(b.seq.cmp(&a.seq)));
        rows.truncate(limit);
    };
    let done = |out: &Vec<(u64, EventRow)>, oldest: Option<u64>| {
        limit > 0 && out.len() >= limit && oldest.is_some_and(|oldest| out[limit - 1].0 >= oldest)
    };
    // Memory bounded by `limit`: only the newest `limit` can be in the answer.
    let keep = |out: &mut Vec<(u64, EventRow)>, row: (u64, EventRow)| {
        out.push(row);
        if out.len() >= 2 * limit.max(1) {
            by_time(out);
        }
    };
    let rows = |out: Vec<(u64, EventRow)>| out.into_iter().map(|(_, r)| r).collect();
    for &range in ranges.iter().rev() {
        // Newest and oldest accept times of an original in this segment.
        let (mut newest, mut oldest): (Option<u64>, Option<u64>) = (None, None);
        scan_segment(store, range, |seq, e| {
            if !e.replay {
                newest = newest.max(Some(e.timestamp));
                oldest = Some(oldest.map_or(e.timestamp, |o| o.min(e.timestamp)));
            }
            let status = statuses.of(seq);
            if statuses.kept(seq) && filter.matches(&e, status) {
                keep(&mut out, (e.timestamp, EventRow::new(seq, &e, status)));
            }
            Ok(())
        })?;
        by_time(&mut out);
        if done(&out, oldest) {
            return Ok(rows(out));
        }
        // Accept times grow with the log: older segments hold nothing newer than `since`.
        if let (Some(since), Some(newest)) = (filter.since, newest) {
            if newest < since {
                return Ok(rows(out));
            }
        }
    }
    // Dead letters whose segment is gone, newest record first (a copy among them keeps its
    // event's time): all of them are read, the list is small.
    let log_first = ranges.first().map_or(u64::MAX, |r| r.0);
    for dead in store.dead_letters_before(log_first).rev() {
        let (seq, e, _) = dead?;
        if filter.matches(&e, Status::Dead) {
            keep(
                &mut out,
                (e.timestamp, EventRow::new(seq, &e, Status::Dead)),
            );
        }
    }
    by_time(&mut out);
    Ok(rows(out))
}

/// A record [`follow`] found, with its envelope (`tail --json` prints it; a published event
/// may already be out of the listings and `GET /events/{source}/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowedRow {
    #[serde(flatten)]
    pub row: EventRow,
    /// As in [`EventDetail::envelope`], when asked for ([`Query::envelopes`]).
    #[serde(skip_deserializing, default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Box<RawValue>>,
}

/// How long after it was published [`follow`] gives a record that retention no longer keeps
/// (with `retain_secs = 0`, one published at once, a replayed copy too): what a live follower
/// needs, not a way around retention for every record still in a segment file.
const FOLLOW_RECENT_SECS: u64 = 60;

/// The envelope bytes after which a [`follow`] page ends (it always has one record): a page of
/// large events (GitLab's reach megabytes) must not be built whole in the gateway.
const FOLLOW_PAGE_BYTES: usize = 4 << 20;

/// What [`follow`] found.
pub struct Followed {
    pub rows: Vec<FollowedRow>,
    /// The last seq it looked at: the next look starts after it (`after` when nothing is new).
    /// A page cut short (by `filter.limit` or [`FOLLOW_PAGE_BYTES`]) ends at its last row.
    pub upto: u64,
}

/// Records after `after` matching `filter`, oldest first, at most `filter.limit` (and about
/// [`FOLLOW_PAGE_BYTES`] of envelopes): what was accepted since, for `tail`, including a
/// record retention no longer keeps if it was published within [`FOLLOW_RECENT_SECS`] of
/// `now_secs`.
pub fn follow(
    store: &Store,
    filter: &Filter,
    after: u64,
    now_secs: u64,
) -> Result<Followed, StoreError> {
    let end = store.durable_upto().saturating_add(1);
    let first = after.saturating_add(1);
    let mut out = Followed {
        rows: Vec::new(),
        upto: after,
    };
    if first >= end {
        // Nothing new (a follower's every idle look): no status is read.
        return Ok(out);
    }
    let statuses = Statuses::load(store)?;
    let recent_from = store.published_before(now_secs.saturating_sub(FOLLOW_RECENT_SECS));
    let mut bytes = 0;
    let mut r = store.reader(first)?;
    while let Some((seq, _, e)) = r.next_record()? {
        if seq >= end {
            break;
        }
        if seq < first {
            continue;
        }
        out.upto = seq;
        let status = statuses.of(seq);
        if (seq >= recent_from || statuses.kept(seq)) && filter.matches(&e, status) {
            bytes += e.body.len();
            out.rows.push(FollowedRow {
                row: EventRow::new(seq, &e, status),
                envelope: filter.envelopes.then(|| envelope_of(&e.body)),
            });
            if out.rows.len() >= filter.limit || (filter.envelopes && bytes >= FOLLOW_PAGE_BYTES) {
                return Ok(out);
            }
        }
    }
    // Every record before `end` was looked at (some may have been failed commits' numbers).
    out.upto = end - 1;
    Ok(out)
}

/// A record's envelope exactly as it was kept and published (as a JSON string if it is not
/// JSON, which hookgate never writes). Parsed and written again, big numbers were rounded,
/// duplicate keys dropped and keys sorted: the operator saw another envelope than the
/// consumers got (found by a review).
fn envelope_of(body: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
        .unwrap_or_else(|| {
            let text =
                serde_json::to_string(&String::from_utf8_lossy(body)).expect("a string is JSON");
            RawValue::from_string(text).expect("a JSON string is JSON")
        })
}

/// A character that changes how the text around it reads without showing itself: bidi
/// marks, overrides and isolates (U+061C, U+200E/F, U+202A–E, U+2066–9), zero-width
/// characters, and the line and paragraph separators U+2028/9. An id with one looks like another id on a
/// terminal or in the console; both show it escaped.
pub fn misleading(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Raw JSON `text` indented by two spaces, its tokens untouched (numbers, escapes, key order
/// and duplicates as they are; in strings, control characters JSON lets through, as C1, and
/// [`misleading`] ones written as `\uXXXX`, the same string): `events show` prints an
/// envelope so.
pub fn pretty_raw(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    // Past this depth lines are not broken: a body nested half a million deep (ingest takes
    // any depth) would otherwise be indented quadratically, hundreds of gigabytes.
    const MAX_INDENT: usize = 32;
    let newline = |out: &mut String, depth: usize| {
        if depth <= MAX_INDENT {
            out.push('\n');
            out.extend(std::iter::repeat_n("  ", depth));
        }
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            if !escaped && (c.is_control() || misleading(c)) {
                out.push_str(&format!("\\u{:04x}", c as u32));
                continue;
            }
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on its line.
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    out.push(chars.next().expect("peeked"));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// A record found by [`find`]: seq, entry, status, and the replays after it.
type Found = (u64, Entry, Status, Vec<EventRow>);

/// The newest original record of `(source, id)` (a replayed copy only when no original is
/// kept), its status, and the replays that came after it.
fn find(
    store: &Store,
    statuses: &Statuses,
    source: &str,
    id: &str,
) -> Result<Option<Found>, StoreError> {
    let is_it =
        |seq: u64, e: &Entry| e.source == source && e.message_id == id && statuses.kept(seq);
    let ranges = segment_ranges(store);
    let mut replays = Vec::new();
    let mut newest_copy: Option<(u64, Entry)> = None;
    for &range in ranges.iter().rev() {
        let mut replays_here = Vec::new();
        let mut original = None;
        scan_segment(store, range, |seq, e| {
            if is_it(seq, &e) {
                if e.replay {
                    replays_here.push(EventRow::new(seq, &e, statuses.of(seq)));
                    newest_copy = Some((seq, e));
                } else {
                    // Only replays after the original belong to it.
                    replays_here.clear();
                    original = Some((seq, e));
                }
            }
            Ok(())
        })?;
        replays.extend(replays_here.into_iter().rev());
        if let Some((seq, e)) = original {
            return Ok(Some((seq, e, statuses.of(seq), replays)));
        }
    }
    let log_first = ranges.first().map_or(u64::MAX, |r| r.0);
    for dead in store.dead_letters_before(log_first).rev() {
        let (seq, e, _) = dead?;
        if is_it(seq, &e) {
            return Ok(Some((seq, e, Status::Dead, replays)));
        }
    }
    Ok(newest_copy.map(|(seq, e)| {
        let status = statuses.of(seq);
        (seq, e, status, replays)
    }))
}

/// `(source, id)` in full, if it is kept.
pub fn show(store: &Store, source: &str, id: &str) -> Result<Option<EventDetail>, StoreError> {
    let statuses = Statuses::load(store)?;
    let Some((seq, e, status, replays)) = find(store, &statuses, source, id)? else {
        return Ok(None);
    };
    // A dead letter replayed since: what its last copy died of, while that copy is dead.
    let dead = statuses
        .dead
        .get(&seq)
        .or_else(|| statuses.dead.get(&statuses.last_copy(seq)));
    // A pending event the broker has refused so far (a running gateway's relay knows).
    let refused = match status {
        Status::Pending => store.refusals(seq),
        _ => None,
    };
    let envelope = envelope_of(&e.body);
    Ok(Some(EventDetail {
        row: EventRow::new(seq, &e, status),
        provider: e.provider,
        routing_key: e.routing_key,
        attempts: dead
            .map(|d| d.attempts)
            .or(refused.as_ref().map(|r| r.count)),
        last_error: dead
            .map(|d| d.reason.clone())
            .or(refused.map(|r| r.last_error)),
        dead_at: dead.map(|d| rfc3339(d.dead_at)),
        published_at: match status {
            Status::Published => store.published_at(seq).map(rfc3339),
            _ => None,
        },
        replays,
        envelope,
        envelope_text: None,
    }))
}

/// What [`forget`] removed from this node's dedup index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The id (or one of its content keys) was indexed.
    pub was: bool,
    /// The event's content keys, also removed: the shared dedup store holds them too.
    pub content_keys: Vec<String>,
}

/// `hookgate forget` and `POST /forget` on this store: the id, and for a source whose
/// provider signs parameters (`provider`'s `sets_content_key`: Alipay, WeChat Pay v2; `None`
/// for a source no longer configured, which may have been one) the event's content keys. Those events are deduplicated on the signed string
/// too (docs/security.md): without it, the provider's redelivery (the same signed string)
/// would still be a duplicate. The keys are read from the event's newest kept records, once
/// the index has settled; an event that retention has dropped keeps its content key in the
/// index until the dedup window ends, and a log that cannot be read costs only the content
/// key (a warning), not the forget.
pub fn forget(
    store: &Store,
    source: &str,
    id: &str,
    provider: Option<providers::ProviderKind>,
) -> Result<Forgotten, StoreError> {
    store.settle_for_forget()?;
    let content_keys = match provider.is_none_or(providers::ProviderKind::sets_content_key) {
        true => content_keys(store, source, id).unwrap_or_else(|e| {
            tracing::warn!(source, id, error = %e, "forget: the log could not be read for the event's content key; the id is forgotten without it");
            Vec::new()
        }),
        false => Vec::new(),
    };
    let was = store.forget_settled(source, id, &content_keys)?.is_some();
    Ok(Forgotten { was, content_keys })
}

/// The distinct content keys of the kept records of `(source, id)` in the newest segment
/// that holds any (a replay carries its original's), else of its dead letters whose
/// segment is gone.
fn content_keys(store: &Store, source: &str, id: &str) -> Result<Vec<String>, StoreError> {
    let is_it = |e: &Entry| e.source == source && e.message_id == id;
    let mut keys: Vec<String> = Vec::new();
    let mut add = |e: Entry| {
        if let Some(c) = e.content_key {
            if !keys.contains(&c) {
                keys.push(c);
            }
        }
    };
    let ranges = segment_ranges(store);
    for &range in ranges.iter().rev() {
        let mut found = false;
        scan_segment(store, range, |_, e| {
            if is_it(&e) {
                found = true;
                add(e);
            }
            Ok(())
        })?;
        if found {
            return Ok(keys);
        }
    }
    let log_first = ranges.first().map_or(u64::MAX, |r| r.0);
    for dead in store.dead_letters_before(log_first) {
        let (_, e, _) = dead?;
        if is_it(&e) {
            add(e);
        }
    }
    Ok(keys)
}

/// `POST /replay` and `hookgate replay`: one event by `source` + `id`, or the events a filter
/// selects (`source` and `since` required, or `status = dead`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// By filter: at most this many, the newest of what the filter selects for a replay
    /// (published originals and dead letters; a listing also shows pending events and
    /// copies); they go out in log order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Count only.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a replay selects, checked before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    One { source: String, id: String },
    Many(Filter),
}

impl ReplayRequest {
    pub fn selection(&self, now_secs: u64) -> Result<Selection, String> {
        if let Some(id) = &self.id {
            let source = self.source.clone().ok_or("id: needs source")?;
            if self.kind.is_some()
                || self.status.is_some()
                || self.since.is_some()
                || self.limit.is_some()
            {
                return Err("id: give either source + id, or a filter".into());
            }
            return Ok(Selection::One {
                source,
                id: id.clone(),
            });
        }
        if self.source.is_none() {
            return Err("source: required (with id, or with since)".into());
        }
        if self.since.is_none() && self.status != Some(Status::Dead) {
            return Err("since: required to replay by filter (or status = dead)".into());
        }
        if matches!(self.status, Some(Status::Pending | Status::Replayed)) {
            return Err("status: replay takes published or dead events".into());
        }
        let q = Query {
            source: self.source.clone(),
            kind: self.kind.clone(),
            status: self.status,
            since: self.since.clone(),
            until: self.until.clone(),
            limit: None,
            after: None,
            envelopes: None,
        };
        let mut filter = q.resolve(now_secs)?;
        filter.limit = match self.limit {
            None => usize::MAX,
            Some(0) => return Err("limit: at least 1".into()),
            Some(n) => n,
        };
        Ok(Selection::Many(filter))
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Invalid(String),
    #[error("no event {0} of source {1} is kept")]
    NotFound(String, String),
    /// The backlog would pass `store.max_outbox_entries`: `replayed` went out before it did
    /// (0 when refused up front).
    #[error("{message}")]
    Full { replayed: usize, message: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Held by the replay running in this process (a store is open in one process at a time).
static REPLAYING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Re-enqueues the selected envelopes unchanged with `replay = true` (AMQP header
/// `x-hookgate-replay: true`) through the log and the relay, in their original order; dead
/// letters leave the dead list. Returns how many (or would, with `dry_run`). Blocking: run it
/// off the async workers; `rt` awaits the appends.
///
/// By filter: published and dead records, originals only (a replayed copy is replayed again
/// only while it is dead); pending ones are on their way already.
pub fn replay(
    store: &Store,
    req: &ReplayRequest,
    now_secs: u64,
    rt: &tokio::runtime::Handle,
) -> Result<usize, ReplayError> {
    let selection = req.selection(now_secs).map_err(ReplayError::Invalid)?;
    // One replay at a time: two at once (a double click, the console and the CLI through the
    // admin listener) would each see the same dead letters and enqueue them twice.
    let _one_at_a_time = REPLAYING.lock().unwrap_or_else(PoisonError::into_inner);
    let statuses = Statuses::load(store)?;
    if !req.dry_run {
        // Refused whole rather than cut short: counted first (a second read of what it
        // selects; replays are rare, and a half-done replay by filter is hard to finish).
        let wanted = select(
            store,
            &statuses,
            &selection,
            &mut Batch::counting(store, rt),
        )?;
        let (pending, max) = (store.pending(), store.max_pending());
        if pending.saturating_add(wanted as u64) > max {
            return Err(ReplayError::Full {
                replayed: 0,
                message: format!(
                    "nothing replayed: {wanted} events selected and {pending} already waiting for the broker would pass store.max_outbox_entries ({max}); replay fewer (a narrower --since/--until, --type or --status) or once the backlog has drained"
                ),
            });
        }
    }
    let mut batch = Batch {
        dry_run: req.dry_run,
        ..Batch::counting(store, rt)
    };
    match select(store, &statuses, &selection, &mut batch) {
        Ok(n) => Ok(n),
        // Ingest filled the backlog meanwhile.
        Err(ReplayError::Store(StoreError::Full(_))) => Err(ReplayError::Full {
            replayed: batch.done,
            message: format!(
                "the backlog reached store.max_outbox_entries ({}) after {} of the selected events were replayed; replay the rest once it has drained",
                store.max_pending(),
                batch.done
            ),
        }),
        Err(e) => Err(e),
    }
}

/// Feeds the records `selection` picks to `batch`, flushes it, and returns how many it took.
fn select(
    store: &Store,
    statuses: &Statuses,
    selection: &Selection,
    batch: &mut Batch<'_>,
) -> Result<usize, ReplayError> {
    match selection {
        Selection::One { source, id } => {
            let Some((seq, e, status, _)) = find(store, statuses, source, id)? else {
                return Err(ReplayError::NotFound(id.clone(), source.clone()));
            };
            if status == Status::Pending {
                // Its copy and the original would both go out.
                return Err(ReplayError::Invalid(format!(
                    "{id} of source {source} is still pending: the relay will publish it"
                )));
            }
            // A dead letter replayed before: what its last copy became decides, as a replay by
            // filter sees it. A copy still pending is on its way; a dead one is the dead
            // letter to take off the list (replaying the original beside it left the copy
            // dead, to go out again with the next `--status dead`).
            let (seq, status) = match status {
                Status::Replayed => {
                    let last = statuses.last_copy(seq);
                    (last, statuses.of(last))
                }
                s => (seq, s),
            };
            match status {
                Status::Pending => {
                    return Err(ReplayError::Invalid(format!(
                        "{id} of source {source} was replayed and its copy is still pending: the relay will publish it"
                    )))
                }
                // Its copy went out: the event is replayed again as the published event it
                // became (a new copy of the original's envelope).
                Status::Published | Status::Replayed => batch.push(seq, e, false)?,
                Status::Dead => batch.push(seq, e, true)?,
            }
        }
        Selection::Many(filter) => {
            let ranges = segment_ranges(store);
            let log_first = ranges.first().map_or(u64::MAX, |r| r.0);
            let wanted = |seq: u64, e: &Entry, status: Status| {
                let status = match status {
                    // A dead letter since replayed: once its copy went out it is replayed as
                    // the published event it became (the original, not the copy); while the
                    // copy is pending or dead, the copy is the one (or none) to pick.
                    Status::Replayed if !e.replay => match statuses.settled(seq) {
                        Status::Published => Status::Published,
                        _ => return false,
                    },
                    s => s,
                };
                let replayable = match status {
                    Status::Published => !e.replay,
                    Status::Dead => true,
                    Status::Pending | Status::Replayed => false,
                };
                replayable && filter.matches(e, status)
            };
            // Every selected record in log order: `(seq, entry, dead)`.
            let each = |f: &mut dyn FnMut(u64, Entry, bool) -> Result<(), StoreError>| {
                for dead in store.dead_letters_before(log_first) {
                    let (seq, e, _) = dead?;
                    if wanted(seq, &e, Status::Dead) {
                        f(seq, e, true)?;
                    }
                }
                for &range in &ranges {
                    scan_segment(store, range, |seq, e| {
                        let status = statuses.of(seq);
                        if statuses.kept(seq) && wanted(seq, &e, status) {
                            f(seq, e, status == Status::Dead)?;
                        }
                        Ok(())
                    })?;
                }
                Ok::<(), StoreError>(())
            };
            // `limit`: the newest N of what is selected (counted first), sent in log order.
            let mut skip = 0;
            if filter.limit != usize::MAX {
                let mut total = 0usize;
                each(&mut |_, _, _| {
                    total += 1;
                    Ok(())
                })?;
                skip = total.saturating_sub(filter.limit);
            }
            each(&mut |seq, e, dead| match skip {
                0 => batch.push(seq, e, dead),
                _ => {
                    skip -= 1;
                    Ok(())
                }
            })?;
        }
    }
    batch.flush()?;
    Ok(batch.done)
}

/// Appends replayed records in groups (one fsync each), in order.
struct Batch<'a> {
    store: &'a Store,
    rt: &'a tokio::runtime::Handle,
    dry_run: bool,
    /// `(original seq, entry, was dead)`.
    items: Vec<(u64, Entry, bool)>,
    done: usize,
}

impl<'a> Batch<'a> {
    /// A batch that only counts (a dry run).
    fn counting(store: &'a Store, rt: &'a tokio::runtime::Handle) -> Batch<'a> {
        Batch {
            store,
            rt,
            dry_run: true,
            items: Vec::new(),
            done: 0,
        }
    }

    fn push(&mut self, seq: u64, mut e: Entry, dead: bool) -> Result<(), StoreError> {
        if self.dry_run {
            self.done += 1;
            return Ok(());
        }
        e.replay = true;
        self.items.push((seq, e, dead));
        if self.items.len() >= REPLAY_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let items = std::mem::take(&mut self.items);
        if items.is_empty() {
            return Ok(());
        }
        // The batch's room in the backlog at once: a full backlog cuts a replay between two
        // batches, never inside one.
        self.store.reserve(items.len() as u64)?;
        // join_all polls in order, and an append takes its seq on the first poll: the
        // replayed records keep their order in the log.
        let appended = self.rt.block_on(futures_util::future::join_all(
            items.iter().map(|(_, e, _)| self.store.append_reserved(e)),
        ));
        // Every copy that is on disk goes out: its dead letter leaves the dead list and it is
        // counted, whatever failed beside it.
        let mut failed = None;
        for ((seq, _, dead), new_seq) in items.iter().zip(appended) {
            match new_seq {
                Ok(new_seq) => {
                    if *dead {
                        if let Err(e) = self.store.remove_dead(*seq, new_seq) {
                            failed.get_or_insert(e);
                        }
                    }
                    self.done += 1;
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn when_is_rfc3339_or_a_duration_back_from_now() {
        assert_eq!(parse_when("90s", NOW), Ok(NOW - 90));
        assert_eq!(parse_when("15m", NOW), Ok(NOW - 900));
        assert_eq!(parse_when("2h", NOW), Ok(NOW - 7200));
        assert_eq!(parse_when("7d", NOW), Ok(NOW - 7 * 86_400));
        assert_eq!(parse_when("0s", NOW), Ok(NOW));
        assert_eq!(parse_when("2023-11-14T22:13:20Z", NOW), Ok(1_700_000_000));
        assert_eq!(
            parse_when("2023-11-14T23:13:20+01:00", NOW),
            Ok(1_700_000_000)
        );
        assert_eq!(parse_when("99999999999d", NOW), Ok(0), "saturates");
        for bad in [
            "",
            "s",
            "15",
            "15x",
            "-5m",
            "+5m",
            "1.5h",
            "yesterday",
            "2023-11-14",
        ] {
            assert!(parse_when(bad, NOW).is_err(), "{bad:?}");
        }
    }

    fn entry(source: &str, kind: &str, ts: u64) -> Entry {
        Entry {
            routing_key: "rk".into(),
            message_id: "id".into(),
            kind: kind.into(),
            source: source.into(),
            provider: "github".into(),
            content_key: None,
            timestamp: ts,
            replay: false,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn filters_match_source_type_time_and_status() {
        let q = Query {
            source: Some("gh".into()),
            kind: Some("github.push".into()),
            status: Some(Status::Published),
            since: Some("1h".into()),
            until: Some("2023-11-14T22:13:20Z".into()),
            limit: None,
            after: None,
            envelopes: None,
        };
        let f = q.resolve(NOW).unwrap();
        assert_eq!(f.limit, DEFAULT_LIMIT);
        assert_eq!((f.since, f.until), (Some(NOW - 3600), Some(NOW)));
        let e = entry("gh", "github.push", NOW - 10);
        assert!(f.matches(&e, Status::Published));
        assert!(!f.matches(&e, Status::Pending));
        assert!(!f.matches(&entry("other", "github.push", NOW - 10), Status::Published));
        assert!(!f.matches(&entry("gh", "github.issues", NOW - 10), Status::Published));
        assert!(!f.matches(&entry("gh", "github.push", NOW - 3601), Status::Published));
        assert!(f.matches(&entry("gh", "github.push", NOW - 3600), Status::Published));
        assert!(!f.matches(&entry("gh", "github.push", NOW + 1), Status::Published));
        assert!(Query::default()
            .resolve(NOW)
            .unwrap()
            .matches(&e, Status::Dead));
        for limit in [0, MAX_LIMIT + 1] {
            let q = Query {
                limit: Some(limit),
                ..Query::default()
            };
            assert!(q.resolve(NOW).is_err());
        }
        let q: Query = serde_json::from_str(r#"{"status":"dead","type":"t"}"#).unwrap();
        assert_eq!(
            (q.status, q.kind.as_deref()),
            (Some(Status::Dead), Some("t"))
        );
        assert!(serde_json::from_str::<Query>(r#"{"statu":"dead"}"#).is_err());
        assert!(serde_json::from_str::<Query>(r#"{"status":"gone"}"#).is_err());
    }

    #[test]
    fn a_replay_selects_one_event_or_a_bounded_filter() {
        let one = ReplayRequest {
            source: Some("gh".into()),
            id: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            one.selection(NOW),
            Ok(Selection::One {
                source: "gh".into(),
                id: "x".into()
            })
        );
        let no_source = ReplayRequest {
            id: Some("x".into()),
            ..Default::default()
        };
        assert!(no_source.selection(NOW).is_err());
        let everything = ReplayRequest {
            source: Some("gh".into()),
            ..Default::default()
        };
        assert!(everything.selection(NOW).is_err(), "needs since or dead");
        let dead = ReplayRequest {
            source: Some("gh".into()),
            status: Some(Status::Dead),
            ..Default::default()
        };
        assert!(matches!(dead.selection(NOW), Ok(Selection::Many(_))));
        let pending = ReplayRequest {
            source: Some("gh".into()),
            since: Some("1h".into()),
            status: Some(Status::Pending),
            ..Default::default()
        };
        assert!(pending.selection(NOW).is_err());
        let since = ReplayRequest {
            source: Some("gh".into()),
            since: Some("1h".into()),
            ..Default::default()
        };
        let Ok(Selection::Many(f)) = since.selection(NOW) else {
            panic!()
        };
        assert_eq!((f.since, f.limit), (Some(NOW - 3600), usize::MAX));
        let limited = ReplayRequest {
            limit: Some(5),
            ..since.clone()
        };
        let Ok(Selection::Many(f)) = limited.selection(NOW) else {
            panic!()
        };
        assert_eq!(f.limit, 5);
        for bad in [
            ReplayRequest {
                limit: Some(0),
                ..since.clone()
            },
            ReplayRequest {
                limit: Some(1),
                ..one.clone()
            },
        ] {
            assert!(bad.selection(NOW).is_err(), "{bad:?}");
        }
    }

    fn config(dir: &std::path::Path) -> crate::config::StoreConfig {
        crate::config::StoreConfig {
            path: dir.join("store"),
            dedup_window_secs: 100,
            max_outbox_entries: 1000,
            retain_secs: 3600,
            retain_max_bytes: 1 << 30,
            segment_bytes: 2048,
            commit_delay_us: 0,
        }
    }

    fn event(id: &str, kind: &str, ts: u64) -> Entry {
        Entry {
            message_id: id.into(),
            body: format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "p".repeat(300)).into_bytes(),
            ..entry("gh", kind, ts)
        }
    }

    /// `follow` (what `tail` reads) gives a published event retention no longer keeps only if
    /// it was published within the last minute: with `retain_secs = 0` tail sees what was just
    /// published, but the admin API does not serve every envelope still in a segment file.
    #[tokio::test(flavor = "multi_thread")]
    async fn follow_passes_retention_only_for_what_was_just_published() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::StoreConfig {
            retain_secs: 0,
            ..config(dir.path())
        };
        let store = std::sync::Arc::new(Store::open(&config).unwrap());
        let now = crate::now_secs();
        let t = std::time::Duration::from_secs(5);
        store
            .accept(&event("old", "github.push", now - 3600), now - 3600, t)
            .await
            .unwrap();
        store
            .accept(&event("new", "github.push", now), now, t)
            .await
            .unwrap();
        let last = store.durable_upto();
        store.advance(last + 1, 2, 0).unwrap();
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            let f = Query::default().resolve(now).unwrap();
            assert!(list(&s, &f).unwrap().is_empty(), "published, not kept");
            // Both were just published: a follower sees them...
            let followed = follow(&s, &f, 0, now).unwrap();
            let ids: Vec<_> = followed.rows.iter().map(|r| r.row.id.as_str()).collect();
            assert_eq!(ids, ["old", "new"]);
            assert_eq!(followed.upto, last, "both looked at");
            // ...but not two minutes after their publication.
            let later = follow(&s, &f, 0, now + 120).unwrap();
            assert!(later.rows.is_empty(), "past retention and not recent");
            assert_eq!(later.upto, last);
            let none = follow(&s, &f, last, now).unwrap();
            assert!(none.rows.is_empty(), "nothing after the last");
            assert_eq!(none.upto, last);
        })
        .await
        .unwrap();
        store.close();
    }

    /// `show` and `follow` give the envelope as it was kept and published, byte for byte: a
    /// parse rounded big numbers, dropped a duplicate key and sorted the keys (found by a
    /// review: the operator saw another envelope than the consumers got).
    #[tokio::test(flavor = "multi_thread")]
    async fn the_envelope_shown_is_the_one_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&config(dir.path())).unwrap());
        let body = r#"{"id":"big","data":{"z":123456789012345678901234567890,"a":0.10000000000000000555,"k":"first","k":"second"}}"#;
        let e = Entry {
            body: body.as_bytes().to_vec(),
            ..event("big", "github.push", NOW)
        };
        let t = std::time::Duration::from_secs(5);
        store.accept(&e, NOW, t).await.unwrap();
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            let d = show(&s, "gh", "big").unwrap().unwrap();
            assert_eq!(d.envelope.get(), body);
            let text = serde_json::to_string(&d).unwrap();
            assert!(text.contains(body), "{text}");
            // And read back by the command line, as it does.
            let back: std::collections::BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(&text).unwrap();
            assert_eq!(back["envelope"].get(), body);
            let with = Query {
                envelopes: Some(true),
                ..Query::default()
            };
            let rows = follow(&s, &with.resolve(NOW).unwrap(), 0, NOW)
                .unwrap()
                .rows;
            assert_eq!(rows[0].envelope.as_ref().unwrap().get(), body);
            let rows = follow(&s, &Query::default().resolve(NOW).unwrap(), 0, NOW)
                .unwrap()
                .rows;
            assert!(rows[0].envelope.is_none(), "only when asked for");
        })
        .await
        .unwrap();
        store.close();
    }

    #[test]
    fn raw_envelopes_are_indented_token_for_token() {
        let raw = r#"{"a":[1,{"b":"x,\"y\":{z}"}],"e":{},"f":[ ],"n":123456789012345678901234567890,"k":1,"k":2}"#;
        assert_eq!(
            pretty_raw(raw),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x,\\\"y\\\":{z}\"\n    }\n  ],\n  \"e\": {},\n  \"f\": [],\n  \"n\": 123456789012345678901234567890,\n  \"k\": 1,\n  \"k\": 2\n}"
        );
        // The indented text is the same JSON.
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty_raw(raw)).unwrap();
        assert_eq!(a, b);
        // A right-to-left override or a C1 control in a string is written escaped (still the
        // same string): "\u{202e}1001-yap" looked like "pay-1001" on a terminal.
        let sly = "{\"id\":\"\u{202e}1001-yap\u{200b}\u{9b}\"}";
        assert_eq!(
            pretty_raw(sly),
            "{\n  \"id\": \"\\u202e1001-yap\\u200b\\u009b\"\n}"
        );
        let a: serde_json::Value = serde_json::from_str(sly).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty_raw(sly)).unwrap();
        assert_eq!(a, b);
        assert!(pretty_raw("[\"\u{61c}\u{2028}\"]").contains("\\u061c\\u2028"));
        // Nested deeper than anyone reads, lines are no longer broken: the text grows with
        // the input, not with its square (5,000 levels were 50 MB, 500,000 some terabytes).
        let deep = "[".repeat(5_000) + &"]".repeat(5_000);
        assert!(pretty_raw(&deep).len() < 4 * deep.len());
    }

    /// Alipay and WeChat Pay v2 events are indexed by their content key beside the id: a
    /// forget that left it would still call the provider's redelivery a duplicate.
    #[tokio::test]
    async fn forget_removes_the_content_key_with_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&config(dir.path())).unwrap();
        let t = std::time::Duration::from_secs(5);
        let paid = |id: &str| Entry {
            content_key: Some(format!("sha256:{}", "ab".repeat(32))),
            ..event(id, "alipay.trade.success", NOW)
        };
        let new = crate::store::Accepted::New;
        let duplicate = crate::store::Accepted::Duplicate;
        assert_eq!(store.accept(&paid("n1"), NOW, t).await.unwrap(), new);
        assert_eq!(
            store.accept(&event("n2", "x", NOW), NOW, t).await.unwrap(),
            new
        );
        assert_eq!(
            store.accept(&paid("n1"), NOW + 1, t).await.unwrap(),
            duplicate
        );
        assert_eq!(
            store.accept(&paid("n9"), NOW + 1, t).await.unwrap(),
            duplicate,
            "the same signed content under another id"
        );
        let f = forget(&store, "gh", "n1", None).unwrap();
        assert_eq!(f.content_keys, vec![format!("sha256:{}", "ab".repeat(32))]);
        assert!(f.was);
        assert_eq!(store.accept(&paid("n1"), NOW + 2, t).await.unwrap(), new);
        assert_eq!(
            store.accept(&paid("n1"), NOW + 3, t).await.unwrap(),
            duplicate
        );
        store.close();
    }

    /// A replay takes room in the backlog as ingest does: refused whole when it would pass
    /// `store.max_outbox_entries`, accepted once the backlog drained, never past the bound.
    /// Found by a black-box review: an event the broker confirmed while an earlier one waited
    /// for a retry was listed pending (the cursor stays at the earlier one), and a replay of it
    /// was refused as "still pending".
    #[tokio::test(flavor = "multi_thread")]
    async fn an_event_confirmed_past_the_cursor_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&config(dir.path())).unwrap());
        let t = std::time::Duration::from_secs(5);
        let mut seqs = Vec::new();
        for id in ["waits", "went"] {
            store
                .accept(&event(id, "github.push", NOW), NOW, t)
                .await
                .unwrap();
            seqs.push(store.durable_upto());
        }
        store.published_ahead(seqs[1]);
        let s = store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let rows = list(&s, &Query::default().resolve(NOW).unwrap()).unwrap();
            let ids: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.status)).collect();
            assert_eq!(
                ids,
                [("went", Status::Published), ("waits", Status::Pending)]
            );
            let by_id = ReplayRequest {
                source: Some("gh".into()),
                id: Some("went".into()),
                dry_run: true,
                ..ReplayRequest::default()
            };
            assert!(
                replay(&s, &by_id, NOW, &rt).is_ok(),
                "not refused as pending"
            );
            // The cursor passes both: the set is emptied.
            s.advance(seqs[1] + 1, 2, NOW).unwrap();
            assert!(s.published_past_cursor().is_empty());
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_never_grows_the_backlog_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.max_outbox_entries = 3;
        let store = std::sync::Arc::new(Store::open(&c).unwrap());
        let t = std::time::Duration::from_secs(5);
        for id in ["p0", "p1", "p2"] {
            store
                .accept(&event(id, "github.push", NOW), NOW, t)
                .await
                .unwrap();
        }
        // Published, then one more waits for the broker.
        store.advance(store.cursor() + 3, 3, NOW).unwrap();
        store
            .accept(&event("w0", "github.issues", NOW), NOW, t)
            .await
            .unwrap();
        assert_eq!(store.pending(), 1);
        let s = store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut req = ReplayRequest {
                source: Some("gh".into()),
                since: Some("7d".into()),
                kind: Some("github.push".into()),
                status: Some(Status::Published),
                ..Default::default()
            };
            // 1 pending + 3 replayed > 3: refused whole, nothing appended.
            let Err(ReplayError::Full { replayed, message }) = replay(&s, &req, NOW + 100, &rt)
            else {
                panic!("refused")
            };
            assert_eq!(replayed, 0);
            assert!(
                message.contains("store.max_outbox_entries (3)"),
                "{message}"
            );
            assert_eq!(s.pending(), 1);
            req.dry_run = true;
            assert_eq!(
                replay(&s, &req, NOW + 100, &rt).unwrap(),
                3,
                "a dry run counts"
            );
            req.limit = Some(2);
            assert_eq!(
                replay(&s, &req, NOW + 100, &rt).unwrap(),
                2,
                "at most limit"
            );
            req.limit = None;
            req.dry_run = false;
            // Once the backlog drained, the same replay goes through, up to the bound.
            s.advance(s.cursor() + 1, 1, NOW).unwrap();
            assert_eq!(replay(&s, &req, NOW + 100, &rt).unwrap(), 3);
            assert_eq!(s.pending(), 3);
            let more = s.reserve(1);
            assert!(matches!(more, Err(StoreError::Full(3))), "{more:?}");
        })
        .await
        .unwrap();
    }

    /// A dead letter replayed and then published is, for a later replay by filter, the
    /// published event it became: picked once (the original), not skipped for good; while
    /// its copy is dead, the copy alone is picked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replayed_dead_letter_is_replayed_again_by_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&config(dir.path())).unwrap());
        let t = std::time::Duration::from_secs(5);
        store
            .accept(&event("d0", "github.push", NOW), NOW, t)
            .await
            .unwrap();
        let info = DeadInfo {
            attempts: 3,
            reason: "NO_ROUTE".into(),
            dead_at: NOW,
        };
        let seq0 = store.cursor();
        let e0 = store
            .reader(seq0)
            .unwrap()
            .next_record()
            .unwrap()
            .unwrap()
            .2;
        store.mark_dead(seq0, &e0, &info).unwrap();
        store.advance(seq0 + 1, 1, NOW).unwrap();
        let s = store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let count = |status: Option<Status>| {
                let req = ReplayRequest {
                    source: Some("gh".into()),
                    status,
                    since: Some("7d".into()),
                    dry_run: true,
                    ..Default::default()
                };
                replay(&s, &req, NOW + 100, &rt).unwrap()
            };
            assert_eq!(count(None), 1, "the dead letter");
            let dead = ReplayRequest {
                source: Some("gh".into()),
                status: Some(Status::Dead),
                ..Default::default()
            };
            assert_eq!(replay(&s, &dead, NOW + 100, &rt).unwrap(), 1);
            assert_eq!(count(None), 0, "its copy is on its way");
            // The copy is dead too: only the copy.
            let copy = s.cursor();
            let e1 = s.reader(copy).unwrap().next_record().unwrap().unwrap().2;
            assert!(e1.replay);
            s.mark_dead(copy, &e1, &info).unwrap();
            s.advance(copy + 1, 1, NOW).unwrap();
            assert_eq!((count(None), count(Some(Status::Published))), (1, 0));
            assert_eq!(replay(&s, &dead, NOW + 100, &rt).unwrap(), 1);
            // The second copy went out: the original is the published event it became.
            let last = s.cursor();
            s.advance(last + 1, 1, NOW).unwrap();
            assert_eq!(count(None), 1);
            assert_eq!(count(Some(Status::Published)), 1);
            assert_eq!(count(Some(Status::Dead)), 0);
        })
        .await
        .unwrap();
        store.close();
    }

    /// A replay by filter with `limit` takes the newest events the filter selects (here,
    /// published ones only: the same as the listing shows), and sends them in log order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_limit_takes_the_newest_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&config(dir.path())).unwrap());
        for (i, id) in ["e0", "e1", "e2", "e3"].iter().enumerate() {
            let e = event(id, "github.push", NOW + i as u64);
            let t = std::time::Duration::from_secs(5);
            store.accept(&e, NOW + i as u64, t).await.unwrap();
        }
        let end = store.durable_upto() + 1;
        store.advance(end, 4, NOW).unwrap();
        let s = store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let req = ReplayRequest {
                source: Some("gh".into()),
                since: Some("1h".into()),
                limit: Some(2),
                ..ReplayRequest::default()
            };
            let listed = list(
                &s,
                &Query {
                    limit: Some(2),
                    ..Query::default()
                }
                .resolve(NOW + 10)
                .unwrap(),
            )
            .unwrap();
            let listed: Vec<_> = listed.iter().map(|r| r.id.clone()).collect();
            assert_eq!(listed, ["e3", "e2"]);
            assert_eq!(replay(&s, &req, NOW + 10, &rt).unwrap(), 2);
            let mut r = s.reader(end).unwrap();
            let mut copies = Vec::new();
            while let Some((_, _, e)) = r.next_record().unwrap() {
                assert!(e.replay);
                copies.push(e.message_id);
            }
            assert_eq!(copies, ["e2", "e3"]);
        })
        .await
        .unwrap();
        store.close();
    }

    /// `retain_secs = 0`: a published event is gone for inspection and replay at once, though
    /// its segment's file is deleted only when retention drops the whole segment (found by a
    /// black-box review: they stayed listable, showable and replayable).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_no_retention_a_published_event_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StoreConfig {
            retain_secs: 0,
            segment_bytes: 1 << 20,
            ..config(dir.path())
        };
        let store = std::sync::Arc::new(Store::open(&cfg).unwrap());
        let mut seqs = Vec::new();
        for id in ["p1", "d1", "p2"] {
            let e = event(id, "github.push", NOW);
            store
                .accept(&e, NOW, std::time::Duration::from_secs(5))
                .await
                .unwrap();
            seqs.push((store.durable_upto(), e));
        }
        let (dead_seq, dead) = &seqs[1];
        let info = DeadInfo {
            attempts: 2,
            reason: "NO_ROUTE".into(),
            dead_at: NOW,
        };
        store.mark_dead(*dead_seq, dead, &info).unwrap();
        store.advance(seqs[2].0 + 1, 3, NOW).unwrap();
        let s = store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let rows = list(&s, &Query::default().resolve(NOW).unwrap()).unwrap();
            let ids: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.status)).collect();
            assert_eq!(ids, [("d1", Status::Dead)], "only the dead letter is kept");
            assert!(show(&s, "gh", "p1").unwrap().is_none());
            assert!(show(&s, "gh", "d1").unwrap().is_some());
            let by_id = |id: &str| ReplayRequest {
                source: Some("gh".into()),
                id: Some(id.into()),
                dry_run: true,
                ..ReplayRequest::default()
            };
            assert!(matches!(
                replay(&s, &by_id("p2"), NOW, &rt),
                Err(ReplayError::NotFound(..))
            ));
            assert_eq!(replay(&s, &by_id("d1"), NOW, &rt).unwrap(), 1);
            // Replayed for real, and its copy published: the published event it became is
            // not kept either.
            let req = ReplayRequest {
                dry_run: false,
                ..by_id("d1")
            };
            assert_eq!(replay(&s, &req, NOW, &rt).unwrap(), 1);
            assert_eq!(s.pending(), 1);
            s.advance(s.durable_upto() + 1, 1, NOW).unwrap();
            let rows = list(&s, &Query::default().resolve(NOW).unwrap()).unwrap();
            assert!(
                rows.is_empty(),
                "{:?}",
                rows.iter().map(|r| &r.id).collect::<Vec<_>>()
            );
            assert!(show(&s, "gh", "d1").unwrap().is_none());
        })
        .await
        .unwrap();
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_show_replay_and_forget_on_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&config(dir.path())).unwrap());
        for i in 0..20u64 {
            let kind = ["github.push", "github.issues"][i as usize % 2];
            let e = event(&format!("e{i}"), kind, NOW + i);
            store
                .accept(&e, NOW + i, std::time::Duration::from_secs(5))
                .await
                .unwrap();
        }
        assert!(store.segment_starts().len() > 2, "several segments");
        // e0..e9 published, e3 dead; the rest pending.
        let (seq3, e3) = {
            let mut r = store.reader(1).unwrap();
            let mut found = None;
            while let Some((seq, _, e)) = r.next_record().unwrap() {
                if e.message_id == "e3" {
                    found = Some((seq, e));
                }
            }
            found.unwrap()
        };
        store
            .mark_dead(
                seq3,
                &e3,
                &DeadInfo {
                    attempts: 3,
                    reason: "NO_ROUTE".into(),
                    dead_at: NOW,
                },
            )
            .unwrap();
        let first = store.segment_starts()[0];
        store.advance(first + 10, 10, NOW).unwrap();

        let s = store.clone();
        let rows = tokio::task::spawn_blocking(move || {
            let q = |q: Query| list(&s, &q.resolve(NOW + 100).unwrap()).unwrap();
            let ids = |rows: Vec<EventRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
            assert_eq!(
                ids(q(Query {
                    limit: Some(3),
                    ..Query::default()
                })),
                ["e19", "e18", "e17"],
                "newest first"
            );
            assert_eq!(
                ids(q(Query {
                    kind: Some("github.issues".into()),
                    status: Some(Status::Published),
                    ..Query::default()
                })),
                ["e9", "e7", "e5", "e1"]
            );
            assert_eq!(
                ids(q(Query {
                    status: Some(Status::Dead),
                    ..Query::default()
                })),
                ["e3"]
            );
            assert_eq!(
                ids(q(Query {
                    since: Some("2023-11-14T22:13:35Z".into()),
                    until: Some("2023-11-14T22:13:37Z".into()),
                    ..Query::default()
                })),
                ["e17", "e16", "e15"]
            );
            q(Query::default())
        })
        .await
        .unwrap();
        assert_eq!(rows.len(), 20);
        assert_eq!(rows[19].status, Status::Published);
        assert_eq!(rows[0].status, Status::Pending);

        let s = store.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let d = show(&s, "gh", "e3").unwrap().unwrap();
            assert_eq!(d.row.status, Status::Dead);
            assert_eq!(d.attempts, Some(3));
            assert_eq!(d.last_error.as_deref(), Some("NO_ROUTE"));
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(d.envelope.get()).unwrap()["id"],
                "e3"
            );
            assert!(show(&s, "gh", "nope").unwrap().is_none());

            let by_filter = ReplayRequest {
                source: Some("gh".into()),
                kind: Some("github.push".into()),
                since: Some("7d".into()),
                ..Default::default()
            };
            let dry = ReplayRequest {
                dry_run: true,
                ..by_filter.clone()
            };
            // Published pushes: e0 e2 e4 e6 e8.
            assert_eq!(replay(&s, &dry, NOW + 100, &rt).unwrap(), 5);
            assert_eq!(s.pending(), 10, "a dry run appends nothing");
            assert_eq!(replay(&s, &by_filter, NOW + 100, &rt).unwrap(), 5);
            assert_eq!(s.pending(), 15);
            let dead = ReplayRequest {
                source: Some("gh".into()),
                status: Some(Status::Dead),
                ..Default::default()
            };
            assert_eq!(replay(&s, &dead, NOW + 100, &rt).unwrap(), 1);
            assert_eq!(s.dead_count(), 0, "off the dead list");
            assert_eq!(replay(&s, &dead, NOW + 100, &rt).unwrap(), 0);
            let d = show(&s, "gh", "e3").unwrap().unwrap();
            assert_eq!(d.row.status, Status::Replayed);
            assert_eq!(d.replays.len(), 1);
            assert!(d.replays[0].replay);
            // The replayed records are pending, same ids, listed by their events' accept
            // times (newest first) among the originals accepted later, which are pending too.
            let rows = list(
                &s,
                &Query {
                    status: Some(Status::Pending),
                    limit: Some(16),
                    ..Query::default()
                }
                .resolve(NOW)
                .unwrap(),
            )
            .unwrap();
            let got: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.replay)).collect();
            let later: Vec<_> = (10..20).rev().map(|i| format!("e{i}")).collect();
            assert!(
                got[..10]
                    .iter()
                    .zip(&later)
                    .all(|((id, replay), want)| id == want && !replay),
                "{got:?}"
            );
            assert_eq!(
                got[10..],
                [
                    ("e8", true),
                    ("e6", true),
                    ("e4", true),
                    ("e3", true),
                    ("e2", true),
                    ("e0", true)
                ]
            );
            // Cut between the copies: the newest by accept time, whatever their records.
            let cut = list(
                &s,
                &Query {
                    status: Some(Status::Pending),
                    limit: Some(12),
                    ..Query::default()
                }
                .resolve(NOW)
                .unwrap(),
            )
            .unwrap();
            let ids: Vec<_> = cut.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(&ids[10..], ["e8", "e6"], "{ids:?}");
            // Replaying again by filter replays the originals, not the copies.
            assert_eq!(
                replay(
                    &s,
                    &ReplayRequest {
                        dry_run: true,
                        ..by_filter
                    },
                    NOW + 100,
                    &rt
                )
                .unwrap(),
                5
            );
            let one = ReplayRequest {
                source: Some("gh".into()),
                id: Some("missing".into()),
                ..Default::default()
            };
            assert!(matches!(
                replay(&s, &one, NOW, &rt),
                Err(ReplayError::NotFound(..))
            ));
        })
        .await
        .unwrap();

        // Forget: the same id is accepted again.
        let again = event("e5", "github.issues", NOW + 50);
        let t = std::time::Duration::from_secs(5);
        assert_eq!(
            store.accept(&again, NOW + 50, t).await.unwrap(),
            crate::store::Accepted::Duplicate
        );
        let forgotten = |was| Forgotten {
            was,
            content_keys: vec![],
        };
        assert_eq!(
            forget(&store, "gh", "e5", Some(providers::ProviderKind::Github)).unwrap(),
            forgotten(true)
        );
        assert_eq!(forget(&store, "gh", "e5", None).unwrap(), forgotten(false));
        assert_eq!(
            store.accept(&again, NOW + 50, t).await.unwrap(),
            crate::store::Accepted::New
        );
        store.close();
    }
}
