//! Refused requests, kept for "why was my delivery rejected?": per configured source, a ring
//! of the most recent [`PER_SOURCE`] in memory (`GET /rejections`, `hookgate rejections`).
//!
//! A record holds the time, client IP, status, a reason from a fixed list, the body's size and
//! SHA-256 when it was read, and the names of the headers present. Never a body, a signature
//! or a header value: the names tell "no signature header" from "signature did not verify",
//! the digest lets the operator match the provider's copy of the delivery.
//!
//! Unknown sources are not recorded (anyone can make up names; the rings are bounded by the
//! config).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use providers::sha256;
use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// Refusals kept per source.
pub const PER_SOURCE: usize = 100;
/// Header names kept per refusal, and their length: names come from the client.
const MAX_HEADER_NAMES: usize = 32;
const MAX_HEADER_NAME_LEN: usize = 64;

/// Why a request was refused: the fixed list of docs/inspect.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Missing signature headers, or a signature that does not verify.
    Signature,
    /// A signed timestamp outside the provider's window.
    Timestamp,
    /// A verification token that does not match.
    Token,
    /// Not what the provider sends.
    Malformed,
    TooLarge,
    /// Client not in `allow_ips`, or verified but addressed to another recipient.
    Forbidden,
    RateLimited,
    /// The body did not arrive in time.
    Timeout,
    /// 503: the store is full or failing.
    Unavailable,
    /// 503: another replica holds the shared dedup claim on this id (`[dedup] shared`): the
    /// provider's retry gets the event's fate. A race between replicas, not an outage.
    Claimed,
    /// A provider's own verification probe (expected traffic).
    Probe,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Signature => "signature",
            Reason::Timestamp => "timestamp",
            Reason::Token => "token",
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too_large",
            Reason::Forbidden => "forbidden",
            Reason::RateLimited => "rate_limited",
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
            Reason::Claimed => "claimed",
            Reason::Probe => "probe",
        }
    }

    /// The reason of a refusing outcome; `None` for the others.
    pub fn of(outcome: &Outcome) -> Option<(Reason, u16)> {
        let (reason, status) = match outcome {
            Outcome::Rejected { refusal, reply, .. } => (refusal.reason(), reply.status),
            Outcome::Probe(reply) => (Reason::Probe, reply.status),
            Outcome::RateLimited { reply, .. } => (Reason::RateLimited, reply.status),
            Outcome::Unavailable { reply, .. } => (Reason::Unavailable, reply.status),
            Outcome::Claimed { reply, .. } => (Reason::Claimed, reply.status),
            Outcome::Accepted { .. }
            | Outcome::Duplicate { .. }
            | Outcome::Control(_)
            | Outcome::UnknownSource
            | Outcome::NotFound
            | Outcome::MethodNotAllowed { .. } => return None,
        };
        Some((reason, status))
    }
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// RFC 3339, milliseconds.
    pub time: String,
    pub source: String,
    pub client_ip: String,
    pub status: u16,
    pub reason: Reason,
    /// Bytes of the body, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<usize>,
    /// Hex SHA-256 of the body, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// Names (lower-case) of the headers present, never their values.
    pub headers: Vec<String>,
}

/// The rings, shared by the public listener (writes) and the admin API (reads).
#[derive(Default)]
pub struct Rejections {
    rings: Mutex<HashMap<String, VecDeque<Rejection>>>,
    /// Set by `record`, cleared by `save`: the store is written only when something changed.
    dirty: std::sync::atomic::AtomicBool,
}

impl Rejections {
    /// Fills the rings from what the store kept (at start).
    pub fn load(&self, store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        for (source, json) in store.rejections()? {
            if let Ok(ring) = serde_json::from_slice::<VecDeque<Rejection>>(&json) {
                rings.insert(source, ring);
            }
        }
        Ok(())
    }

    /// Writes the rings that changed to the store (bounded: one ring per source). Runs off
    /// the request path, every few seconds and at shutdown, so a flood of refusals costs no
    /// disk write per request.
    pub fn save(&self, store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
        use std::sync::atomic::Ordering;
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot: Vec<(String, Vec<u8>)> = {
            let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
            rings
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_vec(v).unwrap_or_default()))
                .collect()
        };
        for (source, json) in snapshot {
            store.put_rejections(&source, &json)?;
        }
        Ok(())
    }

    /// Records `outcome` if it refuses the request; `headers` are the request's header names.
    pub fn record<'h>(
        &self,
        source: &str,
        client_ip: IpAddr,
        outcome: &Outcome,
        headers: impl Iterator<Item = &'h str>,
        body: Option<&[u8]>,
    ) {
        let Some((reason, status)) = Reason::of(outcome) else {
            return;
        };
        let mut names: Vec<String> = headers
            .take(MAX_HEADER_NAMES)
            .map(|n| n.chars().take(MAX_HEADER_NAME_LEN).collect::<String>())
            .map(|n| n.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        let r = Rejection {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            source: source.to_string(),
            client_ip: client_ip.to_string(),
            status,
            reason,
            body_bytes: body.map(<[u8]>::len),
            body_sha256: body.map(|b| hex::encode(sha256(&[b]))),
            headers: names,
        };
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = rings.entry(source.to_string()).or_default();
        if ring.len() >= PER_SOURCE {
            ring.pop_front();
        }
        ring.push_back(r);
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The most recent refusals, newest first, of `source` or of all sources.
    pub fn recent(&self, source: Option<&str>, limit: usize) -> Vec<Rejection> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Rejection> = rings
            .iter()
            .filter(|(name, _)| source.is_none_or(|s| s == name.as_str()))
            .flat_map(|(_, ring)| ring.iter().cloned())
            .collect();
        drop(rings);
        // RFC 3339 in UTC with fixed precision sorts as text.
        out.sort_by(|a, b| b.time.cmp(&a.time));
        out.truncate(limit);
        out
    }
}

/// Records the request if `outcome` refuses it, with the size and digest of the `body` the
/// pipeline read (hashed only then); called by [`crate::pipeline::process`].
pub fn record_request(
    gw: &crate::pipeline::Gateway,
    source: &str,
    client: IpAddr,
    req: &actix_web::HttpRequest,
    outcome: &Outcome,
    body: Option<&[u8]>,
) {
    if Reason::of(outcome).is_none() {
        return;
    }
    gw.rejections.record(
        source,
        client,
        outcome,
        req.headers().keys().map(|k| k.as_str()),
        body,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Refusal;
    use providers::{Rejection as R, Reply};

    fn rejected(refusal: Refusal) -> Outcome {
        Outcome::Rejected {
            refusal,
            detail: "why".into(),
            reply: Reply {
                status: refusal.status(),
                content_type: None,
                body: Vec::new(),
            },
        }
    }

    /// Every adapter refusal maps to its reason and its status by type, not by its text.
    #[test]
    fn reasons_come_from_the_fixed_list() {
        let cases = [
            (R::BadSignature, Reason::Signature),
            (R::missing("x-hub-signature-256"), Reason::Signature),
            (R::StaleTimestamp, Reason::Timestamp),
            (R::BadToken, Reason::Token),
            (R::WrongRecipient("app_id"), Reason::Forbidden),
            (R::Malformed("json"), Reason::Malformed),
        ];
        for (rejection, want) in cases {
            let refusal = Refusal::of(&rejection);
            assert_eq!(refusal.status(), rejection.status(), "{rejection:?}");
            let outcome = rejected(refusal);
            assert_eq!(Reason::of(&outcome).map(|r| r.0), Some(want), "{outcome:?}");
        }
        for (refusal, want) in [
            (Refusal::Forbidden, Reason::Forbidden),
            (Refusal::Timeout, Reason::Timeout),
            (Refusal::TooLarge, Reason::TooLarge),
        ] {
            assert_eq!(
                Reason::of(&rejected(refusal)),
                Some((want, refusal.status()))
            );
        }
        assert_eq!(Reason::of(&Outcome::UnknownSource), None);
    }

    /// Kept in the store: a stopped gateway's refusals are still there for `hookgate rejections`.
    #[tokio::test]
    async fn rings_survive_a_restart_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StoreConfig {
            path: dir.path().join("store"),
            dedup_window_secs: 100,
            max_outbox_entries: 10,
            retain_secs: 100,
            retain_max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
            commit_delay_us: 0,
        };
        let store = crate::store::Store::open(&cfg).unwrap();
        let r = Rejections::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        r.record(
            "gh",
            ip,
            &rejected(Refusal::Signature),
            ["x-hub-signature-256"].into_iter(),
            Some(b"body"),
        );
        r.save(&store).unwrap();
        store.close();
        drop(store);
        let store =
            crate::store::Store::open_waiting(&cfg, std::time::Duration::from_secs(5)).unwrap();
        let again = Rejections::default();
        again.load(&store).unwrap();
        let got = again.recent(Some("gh"), 10);
        assert_eq!(got, r.recent(Some("gh"), 10));
        assert_eq!(got[0].client_ip, "192.0.2.7");
        assert!(!serde_json::to_string(&got).unwrap().contains("body\""));
    }

    #[test]
    fn rings_are_bounded_per_source_and_keep_no_values() {
        let rs = Rejections::default();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let body = b"BODY-MARKER secret payload";
        for i in 0..(PER_SOURCE + 20) {
            let source = if i % 2 == 0 { "a" } else { "b" };
            rs.record(
                source,
                ip,
                &rejected(Refusal::Signature),
                ["X-Hub-Signature-256", "Content-Type"].into_iter(),
                Some(body),
            );
        }
        assert_eq!(rs.recent(Some("a"), 1000).len(), (PER_SOURCE + 20) / 2);
        for _ in 0..200 {
            rs.record(
                "a",
                ip,
                &rejected(Refusal::TooLarge),
                std::iter::empty(),
                None,
            );
        }
        let a = rs.recent(Some("a"), 1000);
        assert_eq!(a.len(), PER_SOURCE);
        assert!(a.iter().all(|r| r.reason == Reason::TooLarge));
        assert_eq!(rs.recent(None, 5).len(), 5);
        let b = &rs.recent(Some("b"), 1)[0];
        assert_eq!(b.headers, ["content-type", "x-hub-signature-256"]);
        assert_eq!(b.body_bytes, Some(body.len()));
        assert_eq!(
            b.body_sha256.as_deref(),
            Some(hex::encode(sha256(&[body])).as_str())
        );
        let text = serde_json::to_string(&rs.recent(None, 1000)).unwrap();
        assert!(!text.contains("MARKER"), "{text}");
        assert!(text.contains(r#""reason":"too_large""#), "{text}");
    }
}
