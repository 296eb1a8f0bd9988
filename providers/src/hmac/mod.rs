//! Configurable HMAC: any sender that signs with a shared secret in its own way (Stripe,
//! Shopify, Slack, …). The signature header, algorithm, encoding, prefix, signed-payload
//! template, timestamp, and the event id and type locations all come from the source's
//! config (docs/providers/hmac.md).
//!
//! Stripe-style senders put the timestamp and one or more signatures in one header
//! (`Stripe-Signature: t=…,v1=…,v1=…`): `signature_param` names the signature key of that
//! comma-separated `k=v` list, `timestamp_param` the timestamp key.
//!
//! `preset = "stripe"` (and the others of [`presets`]) fills in the keys of a known sender;
//! keys set by hand override it.
//!
//! `config.rs` checks a source's keys and builds the adapter; this file verifies and
//! normalizes; `sample.rs` signs as the configured sender would; `presets.rs` knows the
//! schemes of named senders.

mod config;
pub mod presets;
#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde_json::Value;

use crate::crypto::{self, b64_lenient, ct_eq, MacAlg};
use crate::registry::ConfigKeys;
use crate::shared::{
    digits, event_id, event_name, generic_event, unix_secs, within_window, Locator,
};
use crate::{Admission, Data, ProviderKind, RawRequest, Rejection, Reply, Secret};

pub use config::Config;
#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["secrets"],
    public: &[],
};

/// More candidate signatures than this refuse the request before any MAC is compared.
const MAX_SIGNATURES: usize = 32;
/// A timestamp above this is taken as milliseconds: Unix seconds reach it in the year 33658.
const MILLIS_THRESHOLD: i64 = 1_000_000_000_000;
const DEFAULT_TOLERANCE_SECS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Hex,
    Base64,
}

/// One piece of the signed-payload template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    Id,
}

enum TimestampSource {
    /// A lowercase header name.
    Header(String),
    Param(String),
}

/// The `hmac` adapter, built from a validated [`Config`] (named so that it does not shadow
/// RustCrypto's `Hmac`).
pub(crate) struct HmacSource {
    secrets: Vec<Secret>,
    algorithm: MacAlg,
    encoding: Encoding,
    prefix: String,
    /// Lowercase.
    signature_header: String,
    signature_param: Option<String>,
    /// Between the items of the `signature_param` list.
    separator: char,
    timestamp: Option<TimestampSource>,
    tolerance_secs: i64,
    template: Vec<Part>,
    id: Option<Locator>,
    kind: Option<Locator>,
    challenge_pointer: Option<String>,
}

impl HmacSource {
    /// Checks the signature (and the timestamp window) over the exact bytes received.
    fn verify(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<(), Rejection> {
        let header = req.require_configured_header(&self.signature_header)?;
        let (candidates, param_ts) = self.split_signature_header(header)?;
        let timestamp = match &self.timestamp {
            None => None,
            Some(TimestampSource::Header(h)) => Some(req.require_configured_header(h)?),
            Some(TimestampSource::Param(_)) => Some(param_ts.ok_or(Rejection::BadSignature)?),
        };
        if let Some(ts) = timestamp {
            // A timestamp that is not an integer cannot be from the sender: 401, like a bad MAC.
            let secs = parse_timestamp(ts).ok_or(Rejection::BadSignature)?;
            if !within_window(secs, unix_secs(now), self.tolerance_secs) {
                return Err(Rejection::StaleTimestamp);
            }
        }
        let id = match &self.id {
            Some(Locator::Header(h)) if self.template.contains(&Part::Id) => {
                Some(req.require_configured_header(h)?)
            }
            _ => None,
        };
        let payload = self.expand(req.body, timestamp, id);
        let expected: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .map(|s| crypto::hmac(self.algorithm, s.expose().as_bytes(), &[&payload]))
            .collect();
        candidates
            .iter()
            .filter_map(|c| self.decode(c))
            .any(|sig| expected.iter().any(|mac| ct_eq(mac, &sig)))
            .then_some(())
            .ok_or(Rejection::BadSignature)
    }

    /// The candidate signatures of the header and, in `k=v` mode, the timestamp parameter.
    fn split_signature_header<'h>(
        &self,
        header: &'h str,
    ) -> Result<(Vec<&'h str>, Option<&'h str>), Rejection> {
        let Some(param) = &self.signature_param else {
            return Ok((vec![header], None));
        };
        let ts_param = match &self.timestamp {
            Some(TimestampSource::Param(p)) => Some(p.as_str()),
            _ => None,
        };
        let mut signatures = Vec::new();
        let mut timestamp = None;
        // Only the sender's separator: its SDK reads `ts=1,h1=…` as one item, not two.
        for item in header
            .split(self.separator)
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, v) = item.split_once('=').ok_or(Rejection::BadSignature)?;
            let (k, v) = (k.trim(), v.trim());
            if k == param {
                signatures.push(v);
            } else if Some(k) == ts_param && timestamp.replace(v).is_some() {
                // Two timestamps: which one was signed is ambiguous.
                return Err(Rejection::BadSignature);
            }
        }
        if signatures.is_empty() || signatures.len() > MAX_SIGNATURES {
            return Err(Rejection::BadSignature);
        }
        Ok((signatures, timestamp))
    }

    /// The MAC bytes of one candidate; `None` (no match) without the prefix or undecodable.
    fn decode(&self, candidate: &str) -> Option<Vec<u8>> {
        let encoded = candidate.strip_prefix(self.prefix.as_str())?;
        match self.encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            Encoding::Base64 => b64_lenient(encoded),
        }
    }

    /// The signed payload: the template with the placeholders filled in, byte for byte.
    /// `timestamp` and `id` are present whenever the template uses them (checked in `new`).
    fn expand(&self, body: &[u8], timestamp: Option<&str>, id: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 64);
        for part in &self.template {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Body => out.extend_from_slice(body),
                Part::Timestamp => out.extend_from_slice(timestamp.unwrap_or("").as_bytes()),
                Part::Id => out.extend_from_slice(id.unwrap_or("").as_bytes()),
            }
        }
        out
    }
}

impl crate::Provider for HmacSource {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Hmac
    }

    fn id_header(&self) -> Option<&str> {
        self.id.as_ref().and_then(Locator::header)
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        self.verify(req, now)?;
        let data = Data::json(req.body)?;
        let needs_value = matches!(self.id, Some(Locator::Pointer(_)))
            || matches!(self.kind, Some(Locator::Pointer(_)))
            || self.challenge_pointer.is_some();
        let value: Value = if needs_value {
            serde_json::from_slice(req.body)
                .map_err(|_| Rejection::Malformed("body is not valid JSON"))?
        } else {
            Value::Null
        };
        if let Some(challenge) = self
            .challenge_pointer
            .as_deref()
            .and_then(|p| value.pointer(p))
            .and_then(Value::as_str)
        {
            return Ok(Admission::Control(Reply::json(
                200,
                &serde_json::json!({ "challenge": challenge }),
            )));
        }
        // Unsigned unless the template has {id}.
        let id = event_id(self.id.as_ref(), req, &value)?;
        let raw_type = event_name(self.kind.as_ref(), req, &value)?;
        Ok(generic_event("hmac", id, raw_type, data))
    }
}

/// Integer Unix seconds; values above 10^12 are taken as milliseconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    let n = digits(s)?;
    Some(if n > MILLIS_THRESHOLD { n / 1000 } else { n })
}
