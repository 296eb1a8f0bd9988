//! Configurable HMAC: any sender that signs with a shared secret in its own way (Stripe,
//! Shopify, Slack, …). The signature header, algorithm, encoding, prefix, signed-payload
//! template, timestamp, and the event id and type locations all come from the source's
//! config (CONTRACT.md "Provider keys", `hmac`).
//!
//! Stripe-style senders put the timestamp and one or more signatures in one header
//! (`Stripe-Signature: t=…,v1=…,v1=…`): `signature_param` names the signature key of that
//! comma-separated `k=v` list, `timestamp_param` the timestamp key.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use ::hmac::digest::KeyInit;
use ::hmac::Mac;
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use crate::crypto::{b64_encode, b64_lenient, ct_eq};
use crate::sign::{SampleOptions, SampleRequest};
use crate::standard::dotted_type;
use crate::{
    require_secrets, unix_secs, within_window, Admission, ConfigError, Data, Event, ProviderKind,
    RawRequest, Rejection, Reply, Secret,
};

/// More candidate signatures than this refuse the request before any MAC is compared.
const MAX_SIGNATURES: usize = 32;
/// A timestamp above this is taken as milliseconds: Unix seconds reach it in the year 33658.
const MILLIS_THRESHOLD: i64 = 1_000_000_000_000;
const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Every key is optional at the serde level so that `Hmac::new` can report all problems at
/// once; `secrets` and `signature_header` are required there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shared secrets, used as key bytes exactly as written (UTF-8); every one is tried.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// The header carrying the signature (`X-Hub-Signature-256`, `Stripe-Signature`, …).
    pub signature_header: Option<String>,
    /// `sha1`, `sha256` (default) or `sha512`.
    pub algorithm: Option<String>,
    /// `hex` (default; compared case-insensitively, by decoding) or `base64`.
    pub encoding: Option<String>,
    /// Text before the encoded MAC (`sha256=`, `v0=`), stripped before decoding.
    #[serde(default)]
    pub prefix: String,
    /// What is signed: a template over `{body}`, `{timestamp}` and `{id}`; default `{body}`.
    pub signed_payload: Option<String>,
    /// The signature header is a comma-separated `k=v` list; every value of this key is a
    /// candidate signature (Stripe: `v1`).
    pub signature_param: Option<String>,
    /// The header carrying the signed timestamp (integer seconds, or milliseconds).
    pub timestamp_header: Option<String>,
    /// The key of the timestamp in the `signature_param` list (Stripe: `t`).
    pub timestamp_param: Option<String>,
    /// Allowed distance between the signed timestamp and now, either way; default 300.
    pub tolerance_secs: Option<u64>,
    /// The header carrying the event id.
    pub id_header: Option<String>,
    /// JSON pointer to the event id in the body (`/id`).
    pub id_pointer: Option<String>,
    /// The header carrying the event name.
    pub type_header: Option<String>,
    /// JSON pointer to the event name in the body (`/type`).
    pub type_pointer: Option<String>,
    /// JSON pointer to a handshake challenge (Slack `url_verification`: `/challenge`). A
    /// verified body with a string there is answered `200 {"challenge": …}` and not published.
    pub challenge_pointer: Option<String>,
}

impl Config {
    /// Human warnings for `hookgate check`: values this config takes from outside the
    /// signature.
    pub fn warnings(&self) -> Vec<String> {
        let template = self.signed_payload.as_deref().unwrap_or("{body}");
        let mut w = Vec::new();
        if let Some(h) = &self.id_header {
            if !template.contains("{id}") {
                w.push(format!(
                    "id comes from an unsigned header (`id_header = \"{h}\"` is not in `signed_payload`): a replay with a fresh id bypasses dedup"
                ));
            }
        }
        if let Some(h) = &self.type_header {
            w.push(format!(
                "type comes from an unsigned header (`type_header = \"{h}\"`): a replay can give a captured body another type and routing key"
            ));
        }
        w
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

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

/// Where a value is read from.
enum Locator {
    Header(&'static str),
    Pointer(String),
}

enum TimestampSource {
    Header(&'static str),
    Param(String),
}

/// The `hmac` adapter, built from a validated [`Config`].
pub struct Hmac {
    secrets: Vec<Secret>,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    signature_header: &'static str,
    signature_param: Option<String>,
    timestamp: Option<TimestampSource>,
    tolerance_secs: i64,
    template: Vec<Part>,
    id: Option<Locator>,
    kind: Option<Locator>,
    challenge_pointer: Option<String>,
}

impl Hmac {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if let Err(e) = require_secrets("secrets", &c.secrets) {
            errors.push(e);
        }
        let signature_header = keep(
            &mut errors,
            match &c.signature_header {
                None => Err(ConfigError::new("signature_header", "is required")),
                Some(h) => header_name("signature_header", h),
            },
        );
        let algorithm = keep(
            &mut errors,
            match c
                .algorithm
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("sha256") => Ok(Algorithm::Sha256),
                Some("sha1") => Ok(Algorithm::Sha1),
                Some("sha512") => Ok(Algorithm::Sha512),
                Some(_) => Err(ConfigError::new(
                    "algorithm",
                    "must be sha1, sha256 or sha512",
                )),
            },
        );
        let encoding = keep(
            &mut errors,
            match c
                .encoding
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("hex") => Ok(Encoding::Hex),
                Some("base64") => Ok(Encoding::Base64),
                Some(_) => Err(ConfigError::new("encoding", "must be hex or base64")),
            },
        );
        let signature_param = keep(
            &mut errors,
            optional(&c.signature_param, |v| param_name("signature_param", v)),
        )
        .flatten();
        let timestamp_header = keep(
            &mut errors,
            optional(&c.timestamp_header, |v| header_name("timestamp_header", v)),
        )
        .flatten();
        let timestamp_param = keep(
            &mut errors,
            optional(&c.timestamp_param, |v| param_name("timestamp_param", v)),
        )
        .flatten();
        let timestamp = match (timestamp_header, timestamp_param) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    "timestamp_param",
                    "set timestamp_header or timestamp_param, not both",
                ));
                None
            }
            (Some(h), None) => Some(TimestampSource::Header(h)),
            (None, Some(p)) => {
                if c.signature_param.is_none() {
                    errors.push(ConfigError::new(
                        "timestamp_param",
                        "needs signature_param: it is read from the signature header's k=v list",
                    ));
                }
                Some(TimestampSource::Param(p))
            }
            (None, None) => None,
        };
        let has_timestamp = c.timestamp_header.is_some() || c.timestamp_param.is_some();
        match c.tolerance_secs {
            Some(_) if !has_timestamp => errors.push(ConfigError::new(
                "tolerance_secs",
                "needs timestamp_header or timestamp_param: nothing signed to check it against",
            )),
            Some(0) => errors.push(ConfigError::new("tolerance_secs", "must be at least 1")),
            _ => {}
        }
        let id = keep(
            &mut errors,
            locator(
                ("id_header", c.id_header.as_deref()),
                ("id_pointer", c.id_pointer.as_deref()),
            ),
        )
        .flatten();
        let kind = keep(
            &mut errors,
            locator(
                ("type_header", c.type_header.as_deref()),
                ("type_pointer", c.type_pointer.as_deref()),
            ),
        )
        .flatten();
        let challenge_pointer = keep(
            &mut errors,
            optional(&c.challenge_pointer, |v| pointer("challenge_pointer", v)),
        )
        .flatten();
        let template = keep(
            &mut errors,
            parse_template(c.signed_payload.as_deref().unwrap_or("{body}"))
                .map_err(|e| ConfigError::new("signed_payload", e)),
        )
        .unwrap_or_default();
        if template.contains(&Part::Timestamp) && !has_timestamp {
            errors.push(ConfigError::new(
                "signed_payload",
                "uses {timestamp}: set timestamp_header or timestamp_param",
            ));
        }
        // A timestamp that is not signed proves nothing about freshness: a replay sends a new
        // one. Its window would guard nothing, so such a config is refused, not run.
        if has_timestamp && !template.is_empty() && !template.contains(&Part::Timestamp) {
            let key = if c.timestamp_header.is_some() {
                "timestamp_header"
            } else {
                "timestamp_param"
            };
            errors.push(ConfigError::new(
                key,
                "is not part of signed_payload, so its window would guard nothing: add {timestamp} to signed_payload (as the sender signs it) or remove the timestamp",
            ));
        }
        if template.contains(&Part::Id) && c.id_header.is_none() {
            errors.push(ConfigError::new(
                "signed_payload",
                "uses {id}: set id_header (an id inside the body cannot be part of what is verified before parsing)",
            ));
        }
        let (Some(signature_header), Some(algorithm), Some(encoding), true) =
            (signature_header, algorithm, encoding, errors.is_empty())
        else {
            return Err(errors);
        };
        Ok(Hmac {
            secrets: c.secrets.clone(),
            algorithm,
            encoding,
            prefix: c.prefix.clone(),
            signature_header,
            signature_param,
            timestamp,
            tolerance_secs: i64::try_from(c.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS))
                .unwrap_or(i64::MAX),
            template,
            id,
            kind,
            challenge_pointer,
        })
    }

    /// Checks the signature (and the timestamp window) over the exact bytes received.
    fn verify(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<(), Rejection> {
        let header = req.require_header(self.signature_header)?;
        let (candidates, param_ts) = self.split_signature_header(header)?;
        let timestamp = match &self.timestamp {
            None => None,
            Some(TimestampSource::Header(h)) => Some(req.require_header(h)?),
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
                Some(req.require_header(h)?)
            }
            _ => None,
        };
        let payload = self.expand(req.body, timestamp, id);
        let expected: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .map(|s| mac(self.algorithm, s.expose().as_bytes(), &payload))
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
        for item in header.split(',').map(str::trim).filter(|s| !s.is_empty()) {
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

    /// The encoded signature of `payload` under `secret`, with the prefix.
    fn signature(&self, secret: &str, payload: &[u8]) -> String {
        let raw = mac(self.algorithm, secret.as_bytes(), payload);
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(raw),
            Encoding::Base64 => b64_encode(&raw),
        };
        format!("{}{encoded}", self.prefix)
    }
}

impl crate::Provider for Hmac {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Hmac
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
        let id = match &self.id {
            // No id anywhere: the body's hash, so a resend of the same bytes deduplicates.
            None => crate::sha256_key(req.body),
            // Unsigned unless the template has {id}: taken only as an opaque visible token.
            Some(Locator::Header(h)) => crate::bounded(
                req.header(h)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or(Rejection::Malformed("the event id header is missing"))?,
                crate::shape::visible,
                "the event id header is too long or not a visible token",
            )?
            .to_owned(),
            Some(Locator::Pointer(p)) => value
                .pointer(p)
                .and_then(scalar)
                .ok_or(Rejection::Malformed("the event id is not in the body"))?,
        };
        let raw_type = match &self.kind {
            None => None,
            // Never signed: bounded and free of control characters before it is sanitized.
            Some(Locator::Header(h)) => req
                .header(h)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    crate::bounded(
                        v,
                        crate::shape::text,
                        "the event type header is too long or has control characters",
                    )
                })
                .transpose()?
                .map(str::to_owned),
            Some(Locator::Pointer(p)) => value.pointer(p).and_then(scalar),
        };
        let kind = raw_type
            .as_deref()
            .and_then(|t| dotted_type("hmac", t))
            .unwrap_or_else(|| "hmac.event".to_owned());
        let event = Event {
            id: id.clone(),
            kind,
            provider_event: raw_type.unwrap_or_else(|| "event".to_owned()),
            // Senders disagree on where (and whether) they say when an event happened; the
            // signed timestamp is the time of this attempt, not of the event.
            time: None,
            subject: None,
            data,
            content_key: None,
        };
        Ok(Admission::Event {
            ack: Reply::accepted_id(&id),
            event,
        })
    }
}

/// Records a config error and keeps going, so that every problem is reported at once.
fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn optional<T>(
    value: &Option<String>,
    check: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    value.as_deref().map(check).transpose()
}

/// A header name (RFC 9110 token), lowercased and interned.
fn header_name(key: &'static str, name: &str) -> Result<&'static str, ConfigError> {
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ConfigError::new(key, "must be an HTTP header name"));
    }
    Ok(intern(name.to_ascii_lowercase()))
}

/// `Rejection::MissingHeader` takes a `&'static str`, so configured header names are leaked,
/// each distinct name once (sources are built at start, but `sample` builds one per call).
fn intern(name: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// A key of the signature header's `k=v` list.
fn param_name(key: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty() || name.contains([',', '=']) || name.contains(char::is_whitespace) {
        return Err(ConfigError::new(
            key,
            "must be a non-empty key without ',', '=' or spaces",
        ));
    }
    Ok(name.to_owned())
}

/// An RFC 6901 JSON pointer to a member (so not the empty whole-document pointer).
fn pointer(key: &'static str, p: &str) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(
            key,
            "must be a JSON pointer starting with '/', e.g. \"/id\"",
        ));
    }
    Ok(p.to_owned())
}

/// A value read from a header or from a JSON pointer into the body: at most one of the two.
fn locator(
    (header_key, header): (&'static str, Option<&str>),
    (pointer_key, ptr): (&'static str, Option<&str>),
) -> Result<Option<Locator>, ConfigError> {
    match (header, ptr) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            pointer_key,
            format!("set {header_key} or {pointer_key}, not both"),
        )),
        (Some(h), None) => header_name(header_key, h).map(|h| Some(Locator::Header(h))),
        (None, Some(p)) => pointer(pointer_key, p).map(|p| Some(Locator::Pointer(p))),
        (None, None) => Ok(None),
    }
}

/// Splits a `signed_payload` template into literals and `{body}` / `{timestamp}` / `{id}`.
/// `{body}` is required: a template without it would authenticate nothing of the body.
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("has an unclosed '{'")?;
        parts.push(match &after[..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}}; use {{body}}, {{timestamp}} or {{id}}"
                ))
            }
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    if !parts.contains(&Part::Body) {
        return Err("must contain {body}: otherwise the body is not authenticated".into());
    }
    Ok(parts)
}

/// Integer Unix seconds; values above 10^12 are taken as milliseconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    Some(if n > MILLIS_THRESHOLD { n / 1000 } else { n })
}

fn mac(algorithm: Algorithm, key: &[u8], payload: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(payload);
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<::hmac::Hmac<Sha1>>(key, payload),
        Algorithm::Sha256 => run::<::hmac::Hmac<Sha256>>(key, payload),
        Algorithm::Sha512 => run::<::hmac::Hmac<Sha512>>(key, payload),
    }
}

/// A non-empty string, or a number as written (numeric ids such as Shopify's).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Sets `value` at `pointer`, creating objects on the way (for sample bodies).
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = tokens.split_last() else {
        return;
    };
    let mut cur = root;
    for token in path {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        cur = cur
            .as_object_mut()
            .expect("made an object just above")
            .entry(token.clone())
            .or_insert(Value::Null);
    }
    if !cur.is_object() {
        *cur = Value::Object(Default::default());
    }
    cur.as_object_mut()
        .expect("made an object just above")
        .insert(last.clone(), value);
}

/// A request signed as the configured sender would sign it, with the first secret:
/// timestamp, id and type where the config reads them, and a Stripe-style `k=v` header in
/// `signature_param` mode.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = Hmac::new(c).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let secret = p.secrets.first().ok_or("no secret configured")?;
    let id = o.id_or_random("evt_");
    let event = o.event.as_deref().unwrap_or("ping");
    let timestamp = unix_secs(o.now).to_string();
    let body = match &o.payload {
        Some(b) => b.clone(),
        None => {
            let mut v = serde_json::json!({
                "id": id,
                "type": event,
                "created": unix_secs(o.now),
                "data": { "object": { "id": format!("obj_{}", crate::crypto::random_alnum(12)), "status": "ok" } },
            });
            if let Some(Locator::Pointer(ptr)) = &p.id {
                set_pointer(&mut v, ptr, Value::String(id.clone()));
            }
            if let Some(Locator::Pointer(ptr)) = &p.kind {
                set_pointer(&mut v, ptr, Value::String(event.to_owned()));
            }
            v.to_string().into_bytes()
        }
    };
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(Locator::Header(h)) = &p.id {
        headers.push((h.to_string(), id.clone()));
    }
    if let Some(Locator::Header(h)) = &p.kind {
        headers.push((h.to_string(), event.to_owned()));
    }
    let signed_ts = p.timestamp.as_ref().map(|_| timestamp.as_str());
    let payload = p.expand(&body, signed_ts, Some(&id));
    let signature = p.signature(secret.expose(), &payload);
    let signature_value = match (&p.signature_param, &p.timestamp) {
        (Some(param), Some(TimestampSource::Param(t))) => {
            format!("{t}={timestamp},{param}={signature}")
        }
        (Some(param), _) => format!("{param}={signature}"),
        (None, _) => signature,
    };
    if let Some(TimestampSource::Header(h)) = &p.timestamp {
        headers.push((h.to_string(), timestamp.clone()));
    }
    headers.push((p.signature_header.to_string(), signature_value));
    Ok(SampleRequest {
        query: String::new(),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests;
