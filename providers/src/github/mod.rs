//! GitHub: HMAC-SHA256 of the raw body in `X-Hub-Signature-256`, delivery id in
//! `X-GitHub-Delivery`. GitHub signs no timestamp, so replays are caught by dedup, and signs
//! neither the delivery id nor the event name: a replay with a new delivery id is a new event.
//! Both headers are therefore taken only in the shape GitHub sends (issue 11).
//! Protocol and vectors: docs/providers/github.md.

#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;

use crate::crypto::{self, MacAlg};
use crate::registry::ConfigKeys;
use crate::shared::{bounded, require_secrets, shape, Object};
use crate::{
    form, Admission, ConfigError, Data, Event, ProviderKind, RawRequest, Rejection, Reply, Secret,
};

#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;
#[cfg(any(test, feature = "sign"))]
pub use sample::{delivery, signature_256};

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["secrets"],
    public: &[],
};

/// GitHub caps payloads at 25 MB: a source's default body limit is raised to this, or a
/// smaller server default would refuse real pushes.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 26_214_400;

const SIGNATURE_256: &str = "x-hub-signature-256";
const SIGNATURE_SHA1: &str = "x-hub-signature";
const EVENT: &str = "x-github-event";
const DELIVERY: &str = "x-github-delivery";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Webhook secrets; every one is tried (rotation).
    pub secrets: Vec<Secret>,
    /// Accept the legacy `X-Hub-Signature` (HMAC-SHA1) when no SHA-256 header is sent.
    #[serde(default)]
    pub accept_sha1: bool,
}

impl Config {
    /// Human warnings for `hookgate check`. The unsigned `X-GitHub-Delivery` is GitHub's
    /// design, not a choice of this config, so it is documented (docs/security.md), not warned.
    pub fn warnings(&self) -> Vec<String> {
        if self.accept_sha1 {
            vec!["accept_sha1 = true: deliveries without X-Hub-Signature-256 are checked with HMAC-SHA1".to_owned()]
        } else {
            Vec::new()
        }
    }
}

pub(crate) struct Github {
    secrets: Vec<Secret>,
    accept_sha1: bool,
}

impl Github {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        require_secrets("secrets", &c.secrets).map_err(|e| vec![e])?;
        Ok(Github {
            secrets: c.secrets.clone(),
            accept_sha1: c.accept_sha1,
        })
    }

    fn verify(&self, req: &RawRequest<'_>) -> Result<(), Rejection> {
        // The SHA-256 header wins whenever it is present; no fallback to SHA-1 then.
        if let Some(sig) = req.header(SIGNATURE_256) {
            let mac = sig
                .trim()
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .ok_or(Rejection::BadSignature)?;
            return self
                .secrets
                .iter()
                .any(|s| mac_ok(MacAlg::Sha256, s, req.body, &mac))
                .then_some(())
                .ok_or(Rejection::BadSignature);
        }
        if self.accept_sha1 {
            if let Some(sig) = req.header(SIGNATURE_SHA1) {
                let mac = sig
                    .trim()
                    .strip_prefix("sha1=")
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or(Rejection::BadSignature)?;
                return self
                    .secrets
                    .iter()
                    .any(|s| mac_ok(MacAlg::Sha1, s, req.body, &mac))
                    .then_some(())
                    .ok_or(Rejection::BadSignature);
            }
        }
        Err(Rejection::missing("X-Hub-Signature-256"))
    }
}

fn mac_ok(alg: MacAlg, secret: &Secret, body: &[u8], expected: &[u8]) -> bool {
    crypto::ct_eq(
        &crypto::hmac(alg, secret.expose().as_bytes(), &[body]),
        expected,
    )
}

/// The fields of a payload that the envelope needs; everything else stays in `data` untouched.
#[derive(Deserialize)]
struct Peek {
    action: Option<String>,
    repository: Option<Object<Repository>>,
    organization: Option<Object<Organization>>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Organization {
    login: Option<String>,
}

impl crate::Provider for Github {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Github
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        self.verify(req)?;
        // Neither header is signed: a captured delivery can be replayed with other values, so
        // they are taken only in the shape GitHub sends (a GUID; a lowercase event name).
        // Verified, a request without one is malformed (400), not unauthorized: the secret is
        // right (docs/providers/README.md).
        let event_name = bounded(
            req.header(EVENT).unwrap_or_default().trim(),
            shape::lower_name,
            "X-GitHub-Event is missing or not an event name",
        )?;
        let delivery = bounded(
            req.header(DELIVERY).unwrap_or_default().trim(),
            shape::guid,
            "X-GitHub-Delivery is missing or not a delivery GUID",
        )?;
        let json = json_payload(req)?;
        let text =
            std::str::from_utf8(&json).map_err(|_| Rejection::Malformed("body is not UTF-8"))?;
        // The one parse of the payload: it checks all of it, so `data` keeps it unscanned.
        let Object(peek) = serde_json::from_str::<Object<Peek>>(text)
            .map_err(|_| Rejection::Malformed("payload is not a JSON object"))?;
        let mut kind = format!("github.{event_name}");
        if let Some(action) = peek.action.as_deref().filter(|a| is_action(a)) {
            kind.push('.');
            kind.push_str(action);
        }
        let subject = peek
            .repository
            .and_then(|Object(r)| r.full_name)
            .or_else(|| peek.organization.and_then(|Object(o)| o.login));
        let event = Event {
            id: delivery.to_owned(),
            kind,
            provider_event: event_name.to_owned(),
            time: None,
            subject,
            data: Data::parsed(text),
            content_key: None,
        };
        Ok(Admission::Event {
            ack: Reply::accepted_id(delivery),
            event,
        })
    }
}

/// The JSON text of a delivery: the body itself, or the `payload` field of a form body.
/// Borrowed in JSON mode: the body is copied once, into the event's data.
///
/// `Content-Type` is not signed, so the same signed bytes must not read as two payloads: a
/// form body is exactly `payload=<encoded JSON>` (all GitHub sends), never a JSON body that
/// happens to hold `&payload=…` in a string (an issue comment can).
fn json_payload<'a>(req: &RawRequest<'a>) -> Result<Cow<'a, [u8]>, Rejection> {
    let form = req.header("content-type").is_some_and(|ct| {
        ct.trim_start()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !form {
        return Ok(Cow::Borrowed(req.body));
    }
    req.body
        .strip_prefix(b"payload=")
        .filter(|rest| !rest.contains(&b'&'))
        .and_then(|_| form::pairs(req.body).next())
        .map(|(_, v)| Cow::Owned(v))
        .ok_or(Rejection::Malformed(
            "form body is not a single payload field",
        ))
}

/// An `action` (signed, in the body) becomes a type segment only as GitHub writes it:
/// `[a-z0-9_]`, at most 64 bytes; anything else is left out of the type.
fn is_action(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(shape::lower_name)
}
