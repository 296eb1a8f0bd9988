//! Standard Webhooks (standardwebhooks.com; Svix and others): `webhook-id`,
//! `webhook-timestamp` and a space-separated `webhook-signature` list of `v1,` (HMAC-SHA256
//! with a `whsec_` secret) and `v1a,` (Ed25519, `whpk_` public key) entries over
//! `id.timestamp.body`; ±`tolerance_secs` around `now`. Svix's `svix-*` header names are
//! accepted as aliases. Protocol and vectors: docs/providers/standard.md.

#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use ring::signature::{UnparsedPublicKey, ED25519};
use serde::Deserialize;

use crate::crypto::{self, b64, b64_lenient, ct_eq, MacAlg};
use crate::registry::ConfigKeys;
use crate::shared::{digits, dotted_type, rfc3339_millis, unix_secs, within_window, Object};
use crate::{
    Admission, ConfigError, Data, Event, ProviderKind, RawRequest, Rejection, Reply, Secret,
};

#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;
#[cfg(any(test, feature = "sign"))]
pub use sample::sign_v1;

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["secrets"],
    public: &[],
};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";
const SVIX_ID: &str = "svix-id";
const SVIX_TIMESTAMP: &str = "svix-timestamp";
const SVIX_SIGNATURE: &str = "svix-signature";

const HMAC_PREFIX: &str = "whsec_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";
const SIGNING_KEY_PREFIX: &str = "whsk_";

/// A sender signs once per active secret, so a handful of entries is normal; a header with
/// more is refused before any crypto runs (each `v1a` entry costs an Ed25519 verification).
const MAX_SIGNATURES: usize = 32;
/// Shorter decoded `whsec_` keys are refused: the spec generates 24–64 bytes, and a few bytes
/// usually mean a plain password was pasted where a base64 key belongs.
const MIN_HMAC_KEY_BYTES: usize = 16;
/// Caps the sanitized part of a CloudEvents type so `{source}.{type}` fits an AMQP routing key.
#[cfg(test)]
const MAX_TYPE_LEN: usize = 128;

fn default_tolerance() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `whsec_…` secrets (v1, HMAC-SHA256; the prefix is optional) and `whpk_…` Ed25519 public
    /// keys (v1a). Every one is tried (rotation).
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Allowed distance between `webhook-timestamp` and now, either way.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

/// One trusted key from `secrets`.
enum Key {
    /// v1: the base64-decoded `whsec_` secret.
    Hmac(Vec<u8>),
    /// v1a: the 32 raw bytes of an Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl Key {
    /// The error message never repeats the secret.
    fn parse(secret: &Secret) -> Result<Key, String> {
        let text = secret.expose().trim();
        if text.starts_with(SIGNING_KEY_PREFIX) {
            return Err(
                "is a whsk_ signing (private) key; configure the sender's whpk_ public key".into(),
            );
        }
        if let Some(rest) = text.strip_prefix(PUBLIC_KEY_PREFIX) {
            let key = b64_lenient(rest).ok_or("whpk_ key is not base64")?;
            if key.len() != 32 {
                return Err(format!(
                    "whpk_ key decodes to {} bytes, an Ed25519 public key has 32",
                    key.len()
                ));
            }
            return Ok(Key::Ed25519(key));
        }
        let rest = text.strip_prefix(HMAC_PREFIX).unwrap_or(text);
        let key = b64_lenient(rest).ok_or("whsec_ secret is not base64")?;
        if key.len() < MIN_HMAC_KEY_BYTES {
            return Err(format!(
                "whsec_ secret decodes to {} bytes; Standard Webhooks secrets are 24 to 64 bytes",
                key.len()
            ));
        }
        Ok(Key::Hmac(key))
    }
}

/// The `standard` adapter: trusted keys and the timestamp window.
pub(crate) struct Standard {
    keys: Vec<Key>,
    tolerance_secs: i64,
}

impl Standard {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if c.secrets.is_empty() {
            errors.push(ConfigError::new("secrets", "at least one is required"));
        }
        let mut keys = Vec::new();
        for (i, s) in c.secrets.iter().enumerate() {
            if s.expose().trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("secrets[{i}]"),
                    "must not be empty",
                ));
                continue;
            }
            match Key::parse(s) {
                Ok(k) => keys.push(k),
                Err(e) => errors.push(ConfigError::new(format!("secrets[{i}]"), e)),
            }
        }
        if c.tolerance_secs == 0 {
            errors.push(ConfigError::new("tolerance_secs", "must be at least 1"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Standard {
            keys,
            tolerance_secs: i64::try_from(c.tolerance_secs).unwrap_or(i64::MAX),
        })
    }

    /// Checks headers, window and signatures; returns the message id.
    fn verify<'r>(&self, req: &RawRequest<'r>, now: SystemTime) -> Result<&'r str, Rejection> {
        let id = header(req, ID, SVIX_ID)?;
        let timestamp = header(req, TIMESTAMP, SVIX_TIMESTAMP)?;
        let signatures = header(req, SIGNATURE, SVIX_SIGNATURE)?;
        // A timestamp that is not an integer cannot come from a conforming sender: treated as
        // a failed authentication (401), as the reference libraries do.
        let ts = digits(timestamp).ok_or(Rejection::BadSignature)?;
        if !within_window(ts, unix_secs(now), self.tolerance_secs) {
            return Err(Rejection::StaleTimestamp);
        }
        let entries = parse_signatures(signatures)?;
        let content = signed_content(id, timestamp, req.body);
        self.any_matches(&content, &entries)
            .then_some(id)
            .ok_or(Rejection::BadSignature)
    }

    /// True when any `v1` entry matches any HMAC key or any `v1a` entry verifies with any
    /// public key. Unknown versions are skipped; undecodable signatures simply do not match.
    fn any_matches(&self, content: &[u8], entries: &[(&str, &str)]) -> bool {
        // The MAC depends on the key only, not on the entry: compute it once per key.
        let macs: Vec<Vec<u8>> = if entries.iter().any(|(v, _)| *v == "v1") {
            self.keys
                .iter()
                .filter_map(|k| match k {
                    Key::Hmac(key) => Some(hmac_sha256(key, content)),
                    Key::Ed25519(_) => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        entries.iter().any(|&(version, sig)| match version {
            "v1" => b64(sig).is_some_and(|sig| macs.iter().any(|mac| ct_eq(mac, &sig))),
            "v1a" => b64(sig).is_some_and(|sig| {
                self.keys.iter().any(|k| match k {
                    Key::Ed25519(pk) => UnparsedPublicKey::new(&ED25519, pk)
                        .verify(content, &sig)
                        .is_ok(),
                    Key::Hmac(_) => false,
                })
            }),
            _ => false,
        })
    }
}

/// A `webhook-*` header, or its `svix-*` alias; the rejection names the standard header.
fn header<'r>(
    req: &RawRequest<'r>,
    name: &'static str,
    alias: &'static str,
) -> Result<&'r str, Rejection> {
    [name, alias]
        .into_iter()
        .filter_map(|n| req.header(n).map(str::trim))
        .find(|v| !v.is_empty())
        .ok_or(Rejection::missing(name))
}

/// Splits `v1,sig v1a,sig …` into `(version, signature)` pairs. Every entry is checked before
/// any is used, so the answer does not depend on entry order: an entry without a comma (the
/// reference Python library raises on it) or too many entries refuse the whole header.
fn parse_signatures(header: &str) -> Result<Vec<(&str, &str)>, Rejection> {
    let entries: Vec<(&str, &str)> = header
        .split_ascii_whitespace()
        .map(|e| e.split_once(','))
        .collect::<Option<_>>()
        .ok_or(Rejection::BadSignature)?;
    if entries.is_empty() || entries.len() > MAX_SIGNATURES {
        return Err(Rejection::BadSignature);
    }
    Ok(entries)
}

/// `id || "." || timestamp || "." || body`, header strings verbatim.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn hmac_sha256(key: &[u8], content: &[u8]) -> Vec<u8> {
    crypto::hmac(MacAlg::Sha256, key, &[content])
}

/// The body fields the envelope needs; `data` stays in the payload untouched. Values are
/// taken loosely so that an odd `type` does not hide a good `timestamp`, and vice versa.
#[derive(Deserialize, Default)]
struct Peek {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
}

impl Peek {
    fn of(body: &[u8]) -> Peek {
        // Only a JSON object carries these fields.
        serde_json::from_slice::<Object<Peek>>(body).map_or_else(|_| Peek::default(), |o| o.0)
    }
}

/// RFC 3339 (UTC, milliseconds) for an ISO 8601 / RFC 3339 date-time with an offset.
fn normalize_time(s: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .and_then(|t| rfc3339_millis(t.timestamp_millis()))
}

impl crate::Provider for Standard {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Standard
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        let id = self.verify(req, now)?;
        // Any content type may be signed, but hookgate's `data` is JSON.
        let data = Data::json(req.body)?;
        let peek = Peek::of(req.body);
        let raw_type = match peek.kind {
            Some(serde_json::Value::String(t)) => Some(t),
            _ => None,
        };
        let kind = raw_type
            .as_deref()
            .and_then(|t| dotted_type("standard", t))
            .unwrap_or_else(|| "standard.message".to_owned());
        let time = match peek.timestamp {
            Some(serde_json::Value::String(t)) => normalize_time(&t),
            _ => None,
        };
        let event = Event {
            id: id.to_owned(),
            kind,
            provider_event: raw_type.unwrap_or_else(|| "message".to_owned()),
            time,
            // The spec defines no natural key and payload shapes vary per sender.
            subject: None,
            data,
            content_key: None,
        };
        Ok(Admission::Event {
            ack: Reply::accepted_id(id),
            event,
        })
    }
}
