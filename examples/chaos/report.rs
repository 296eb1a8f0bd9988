//! The report: what the clients were told against what the queue received (lost, duplicates,
//! reordering), the scenarios' own checks, and the table every scenario prints.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use crate::load::{Ledger, Seen};

/// One line of the report.
pub struct Row {
    pub scenario: String,
    pub sent: usize,
    pub acked: usize,
    pub attempts: u64,
    /// Non-2xx replies and transport errors, e.g. `503:120 conn:16`.
    pub refusals: String,
    /// Distinct events that reached the queue.
    pub delivered: usize,
    /// Deliveries beyond the first of an outbox entry (at-least-once republishing).
    pub duplicates: usize,
    /// An id accepted again (a new outbox entry): wrong within the dedup window, expected after.
    pub reaccepted: usize,
    /// Acknowledged (2xx) events that never reached the queue. Must be 0.
    pub lost: usize,
    /// Delivered although no 2xx was seen (written, reply lost in a crash); not an error.
    pub unacked_delivered: usize,
    /// First deliveries that came before an event its source had sent (and got acked) earlier.
    pub reordered: usize,
    /// Re-acceptances the scenario provokes on purpose (dedup window expiry).
    pub expect_reaccepted: usize,
    /// Scenario checks: `(what, passed)`.
    pub checks: Vec<(String, bool)>,
}

impl Row {
    /// No loss, no reordering, no unexpected re-acceptance, and every scenario check held.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.reordered == 0
            && self.reaccepted == self.expect_reaccepted
            && self.checks.iter().all(|(_, ok)| *ok)
    }

    pub fn check(&mut self, what: impl Into<String>, ok: bool) {
        self.checks.push((what.into(), ok));
    }
}

/// Compares what the clients were told with what the queue received.
pub fn analyse(scenario: &str, ledger: &Ledger, seen: &[Seen]) -> Row {
    let sources = ledger.sources.lock().unwrap();
    let mut position: HashMap<&str, (&str, usize)> = HashMap::new();
    let (mut sent, mut acked) = (0, 0);
    for (name, log) in sources.iter() {
        sent += log.sent.len();
        acked += log.acked.len();
        for (i, id) in log.sent.iter().enumerate() {
            position.insert(id.as_str(), (name.as_str(), i));
        }
    }
    let mut first: HashSet<&str> = HashSet::new();
    let mut entries: HashSet<(&str, &str)> = HashSet::new();
    let (mut duplicates, mut reaccepted, mut reordered) = (0, 0, 0);
    let mut last: HashMap<&str, usize> = HashMap::new();
    for m in seen {
        let Some(&(source, i)) = position.get(m.id.as_str()) else {
            continue; // not ours (another run on the same queue)
        };
        if !entries.insert((m.id.as_str(), m.received.as_str())) {
            duplicates += 1;
            continue;
        }
        if !first.insert(m.id.as_str()) {
            reaccepted += 1;
            continue;
        }
        match last.get(source) {
            Some(&prev) if i < prev => reordered += 1,
            _ => {
                last.insert(source, i);
            }
        }
    }
    let mut lost = 0;
    let mut unacked_delivered = 0;
    for log in sources.values() {
        for id in &log.sent {
            let acked = log.acked.contains(id);
            let delivered = first.contains(id.as_str());
            if acked && !delivered {
                lost += 1;
            }
            if !acked && delivered {
                unacked_delivered += 1;
            }
        }
    }
    let refusals = ledger
        .refusals
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ");
    Row {
        scenario: scenario.to_string(),
        sent,
        acked,
        attempts: ledger.attempts.load(Ordering::Relaxed),
        refusals: if refusals.is_empty() {
            "-".into()
        } else {
            refusals
        },
        delivered: first.len(),
        duplicates,
        reaccepted,
        lost,
        unacked_delivered,
        reordered,
        expect_reaccepted: 0,
        checks: Vec::new(),
    }
}

/// Prints rows as a table.
pub fn print_table(title: &str, rows: &[Row]) {
    println!("\n== {title}");
    println!(
        "{:<36} {:>6} {:>6} {:>8} {:>9} {:>5} {:>5} {:>5} {:>8} {:>5}  {:<22} result",
        "scenario",
        "sent",
        "2xx",
        "attempts",
        "delivered",
        "dups",
        "reacc",
        "lost",
        "unacked+",
        "reord",
        "refusals"
    );
    for r in rows {
        println!(
            "{:<36} {:>6} {:>6} {:>8} {:>9} {:>5} {:>5} {:>5} {:>8} {:>5}  {:<22} {}",
            r.scenario,
            r.sent,
            r.acked,
            r.attempts,
            r.delivered,
            r.duplicates,
            r.reaccepted,
            r.lost,
            r.unacked_delivered,
            r.reordered,
            r.refusals,
            if r.passed() { "PASS" } else { "FAIL" }
        );
        for (what, ok) in &r.checks {
            println!("    [{}] {what}", if *ok { "ok" } else { "FAILED" });
        }
    }
}

/// A row for a scenario that could not run to its end.
pub fn failed_row(name: &str, why: String) -> Row {
    let mut r = analyse(name, &Ledger::default(), &[]);
    r.check(why, false);
    r
}
