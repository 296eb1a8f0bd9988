//! Gitee (码云) webhooks (docs/providers/gitee.md).
//!
//! `X-Gitee-Token` carries, depending on how the hook was set up in Gitee's console, either
//! - the hook's **password** itself (password mode), or
//! - in **signature mode**, `b64(HMAC-SHA256(key = secret, "{X-Gitee-Timestamp}\n{secret}"))`
//!   with the timestamp in milliseconds, accepted within `tolerance_secs` (default 3600, Gitee's
//!   "与请求调用时间误差不能超过1小时"). Gitee's help describes the value URL-encoded; a
//!   percent-encoded header is decoded first.
//!
//! Both are accepted for every configured token. Neither covers the body: the signature signs
//! only the time, so the body is as trustworthy as in password mode (`hookgate check` says so).
//!
//! Gitee repeats `password`, `sign` and `timestamp` inside the JSON body. They are removed from
//! `data` (a secret never reaches the envelope), and the id is `sha256:` of the body without
//! them, written canonically (see [`canonical`]), so a redelivery (a new timestamp and sign,
//! the same event) maps to the same id.
//!
//! The type is `gitee.<hook_name>[.<action>]` from the body's `hook_name` (`push_hooks`,
//! `merge_request_hooks`, …) and `action`; `providerevent` is `X-Gitee-Event` (`Push Hook`).

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::crypto::{self, b64_encode, b64_lenient, ct_eq, MacAlg};
use crate::registry::ConfigKeys;
#[cfg(any(test, feature = "sign"))]
use crate::shared::joined;
use crate::shared::unix_millis;
#[cfg(any(test, feature = "sign"))]
use crate::sign::{SampleOptions, SampleRequest};
use crate::token::Tokens;
use crate::{Admission, ConfigError, Event, ProviderKind, RawRequest, Rejection, Reply, Secret};

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["tokens"],
    public: &[],
};

const TOKEN: &str = "x-gitee-token";
const TIMESTAMP: &str = "x-gitee-timestamp";
const EVENT: &str = "x-gitee-event";
const DEFAULT_TOLERANCE_SECS: u64 = 3600;
/// Fields of the body that repeat the secret or the signature: never in `data` or the id.
pub const REDACTED_FIELDS: [&str; 3] = ["password", "sign", "timestamp"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The hook's password or signing secret; every one is tried (rotation).
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// Signature mode: allowed distance between `X-Gitee-Timestamp` and now; default 3600.
    pub tolerance_secs: Option<u64>,
}

impl Config {
    pub fn warnings(&self) -> Vec<String> {
        vec!["Gitee's X-Gitee-Token (password or timestamp signature) proves the sender, not the body: the body is not authenticated".to_owned()]
    }
}

/// The `gitee` adapter.
pub struct Gitee {
    tokens: Tokens,
    secrets: Vec<Secret>,
    tolerance_ms: i64,
}

impl Gitee {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let tokens = Tokens::new("tokens", &c.tokens)
            .map_err(|e| errors.push(e))
            .ok();
        if c.tolerance_secs == Some(0) {
            errors.push(ConfigError::new("tolerance_secs", "must be at least 1"));
        }
        let tolerance_ms = c
            .tolerance_secs
            .unwrap_or(DEFAULT_TOLERANCE_SECS)
            .saturating_mul(1000)
            .min(i64::MAX as u64) as i64;
        match tokens {
            Some(tokens) if errors.is_empty() => Ok(Gitee {
                tokens,
                secrets: c.tokens.clone(),
                tolerance_ms,
            }),
            _ => Err(errors),
        }
    }

    /// Password mode, else signature mode within the window.
    fn verify(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<(), Rejection> {
        // Missing or wrong, the token is what failed (`token` in the rejections, not `signature`).
        let given = req.require_header(TOKEN).map_err(|_| Rejection::BadToken)?;
        if self.tokens.matches(given) {
            return Ok(());
        }
        let Some(ts) = req.header(TIMESTAMP).map(str::trim) else {
            return Err(Rejection::BadToken);
        };
        if ts.is_empty() || ts.len() > 19 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::BadToken);
        }
        let decoded;
        let given = if given.contains('%') {
            decoded = percent_encoding::percent_decode_str(given)
                .decode_utf8()
                .map_err(|_| Rejection::BadToken)?;
            decoded.as_ref()
        } else {
            given
        };
        let sig = b64_lenient(given).ok_or(Rejection::BadToken)?;
        let matched = self
            .secrets
            .iter()
            .fold(false, |found, s| found | ct_eq(&mac(s.expose(), ts), &sig));
        if !matched {
            return Err(Rejection::BadToken);
        }
        let ts: i64 = ts.parse().map_err(|_| Rejection::BadToken)?;
        if unix_millis(now).saturating_sub(ts).saturating_abs() > self.tolerance_ms {
            return Err(Rejection::StaleTimestamp);
        }
        Ok(())
    }
}

/// `HMAC-SHA256(key = secret, "{timestamp}\n{secret}")`.
fn mac(secret: &str, timestamp: &str) -> Vec<u8> {
    crypto::hmac(
        MacAlg::Sha256,
        secret.as_bytes(),
        &[timestamp.as_bytes(), b"\n", secret.as_bytes()],
    )
}

/// Gitee's signature-mode `X-Gitee-Token` for `timestamp` (milliseconds) under `secret`.
pub fn sign(secret: &str, timestamp: &str) -> String {
    b64_encode(&mac(secret, timestamp))
}

/// The canonical text of a JSON value the id is computed over: compact, object keys sorted by
/// their UTF-8 bytes at every level, arrays in order, strings and numbers as `serde_json`
/// writes them. Two bodies that differ only in key order, whitespace or escaping get one id.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A name in the body held to the `[a-z0-9_]` shape Gitee's names have.
fn name_of<'v>(
    m: &'v Map<String, Value>,
    key: &str,
    why: &'static str,
) -> Result<Option<&'v str>, Rejection> {
    crate::shared::lower_name_value(m.get(key), why)
}

impl crate::Provider for Gitee {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gitee
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        self.verify(req, now)?;
        let mut body: Map<String, Value> = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not a JSON object"))?;
        // `data`: the body without them, every other value as sent.
        let mut members = crate::shared::raw_members(req.body)
            .ok_or(Rejection::Malformed("body is not a JSON object"))?;
        for field in REDACTED_FIELDS {
            body.remove(field);
            members.remove(field);
        }
        // Neither the token nor the body covers `X-Gitee-Event`, and the token does not
        // cover the body: what becomes the type or `providerevent` is held to what Gitee sends
        // (`Push Hook`; `push_hooks`, `merge_request_hooks`; actions `open`, `state_change`).
        let header_name = match req.header(EVENT).map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) => {
                let why = "X-Gitee-Event is not a hook's name";
                let e = crate::shared::bounded(
                    e,
                    |c| c.is_ascii_alphanumeric() || c == ' ' || c == '_',
                    why,
                )?;
                let name = e.to_ascii_lowercase().replace(' ', "_");
                crate::shared::bounded(&name, crate::shared::shape::lower_name, why)?;
                Some((e.to_owned(), name))
            }
            None => None,
        };
        let hook_name = match name_of(&body, "hook_name", "hook_name is not a lowercase name")? {
            Some(name) => name.to_owned(),
            None => header_name
                .as_ref()
                .map(|(_, name)| name.clone())
                .ok_or(Rejection::Malformed("body has no hook_name"))?,
        };
        let mut kind = format!("gitee.{hook_name}");
        if let Some(action) = name_of(&body, "action", "action is not a lowercase name")? {
            kind.push('.');
            kind.push_str(action);
        }
        let provider_event = header_name.map_or_else(|| hook_name.clone(), |(sent, _)| sent);
        let subject = body
            .get("repository")
            .and_then(|r| r.get("full_name"))
            .or_else(|| {
                body.get("project")
                    .and_then(|p| p.get("path_with_namespace"))
            })
            .and_then(Value::as_str)
            .map(str::to_owned);
        let value = Value::Object(body);
        let id = crate::shared::sha256_key(canonical(&value).as_bytes());
        let event = Event {
            id: id.clone(),
            kind,
            provider_event,
            time: None,
            subject,
            data: crate::shared::raw_object_data(&members),
            content_key: None,
        };
        Ok(Admission::Event {
            ack: Reply::accepted_id(&id),
            event,
        })
    }
}

/// A signature-mode request as Gitee sends it (the first token as the signing secret), the
/// body repeating the timestamp and signature as Gitee's does. `o.event` is the `hook_name`
/// (default `push_hooks`); `o.payload` replaces the body.
#[cfg(any(test, feature = "sign"))]
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = Gitee::new(c).map_err(joined)?;
    let secret = p.tokens.first();
    let ts = unix_millis(o.now).to_string();
    let sig = sign(secret, &ts);
    // `--event` as the body names it (`merge_request_hooks`) or as the header does ("Merge
    // Request Hook").
    let event = o.event.as_deref().map(|e| {
        let e = e.trim().to_ascii_lowercase().replace(' ', "_");
        match e.strip_suffix("_hook") {
            Some(stem) => format!("{stem}_hooks"),
            None => e,
        }
    });
    let hook = event.as_deref().unwrap_or("push_hooks");
    let body = match &o.payload {
        Some(b) => b.clone(),
        None => {
            let mut v = serde_json::json!({
                "hook_name": hook,
                "hook_id": 1,
                "timestamp": ts,
                "sign": sig,
                "ref": "refs/heads/master",
                "after": o.id_or_random(""),
                "repository": {"full_name": "oschina/gitee"},
            });
            if hook != "push_hooks" && hook != "tag_push_hooks" {
                v["action"] = Value::from("open");
            }
            v.to_string().into_bytes()
        }
    };
    let event = match hook {
        "push_hooks" => "Push Hook".to_owned(),
        "tag_push_hooks" => "Tag Push Hook".to_owned(),
        "merge_request_hooks" => "Merge Request Hook".to_owned(),
        "issue_hooks" => "Issue Hook".to_owned(),
        "note_hooks" => "Note Hook".to_owned(),
        other => other.to_owned(),
    };
    Ok(SampleRequest {
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "git-oschina-hook".into()),
            ("X-Gitee-Token".into(), sig),
            ("X-Gitee-Timestamp".into(), ts),
            ("X-Gitee-Event".into(), event),
        ],
        body,
    })
}
