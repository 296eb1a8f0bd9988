//! GitLab webhooks: project, group and system hooks (docs/providers/gitlab.md).
//!
//! GitLab signs nothing: the hook's secret token comes back verbatim in `X-Gitlab-Token`, so
//! it proves the sender, not the body (see [`crate::token`]). Tokens are compared as SHA-256
//! digests in constant time; every configured token is tried (rotation).
//!
//! The event id is, in order:
//! 1. `Idempotency-Key`: the same on every retry of one event (GitLab 17.4+);
//! 2. `X-Gitlab-Event-UUID`: one event, but older GitLab versions give a retry a new one;
//! 3. `sha256:` + hex SHA-256 of the body, so a resend of the same bytes deduplicates.
//!
//! `X-Gitlab-Webhook-UUID` names the hook, not the event, and is never the id.
//!
//! The type is `gitlab.<object_kind>[.<object_attributes.action>]`. System hooks and group
//! hooks for projects, members and subgroups send no `object_kind` but an `event_name`
//! (`project_create`, `user_add_to_group`), which takes its place.

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use crate::registry::ConfigKeys;
#[cfg(any(test, feature = "sign"))]
use crate::shared::joined;
#[cfg(any(test, feature = "sign"))]
use crate::sign::{SampleOptions, SampleRequest};
use crate::token::Tokens;
use crate::{
    Admission, ConfigError, Data, Event, ProviderKind, RawRequest, Rejection, Reply, Secret,
};

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["tokens"],
    public: &[],
};

const TOKEN: &str = "x-gitlab-token";
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const EVENT_UUID: &str = "x-gitlab-event-uuid";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The hook's secret tokens; every one is tried (rotation).
    #[serde(default)]
    pub tokens: Vec<Secret>,
}

impl Config {
    pub fn warnings(&self) -> Vec<String> {
        vec!["GitLab's X-Gitlab-Token is a shared token, not a signature: it proves the sender, the body is not authenticated".to_owned()]
    }
}

/// The `gitlab` adapter.
pub struct Gitlab {
    tokens: Tokens,
}

impl Gitlab {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        Tokens::new("tokens", &c.tokens)
            .map(|tokens| Gitlab { tokens })
            .map_err(|e| vec![e])
    }
}

/// A header that is present and non-empty after trimming.
fn header<'r>(req: &RawRequest<'r>, name: &str) -> Option<&'r str> {
    req.header(name).map(str::trim).filter(|v| !v.is_empty())
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A name in the body held to the `[a-z0-9_]` shape GitLab's names have.
fn name_at<'v>(
    v: &'v Value,
    pointer: &str,
    why: &'static str,
) -> Result<Option<&'v str>, Rejection> {
    crate::shared::lower_name_value(v.pointer(pointer), why)
}

impl crate::Provider for Gitlab {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gitlab
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        // Missing or wrong, the token is what failed (`token` in the rejections, not `signature`).
        let token = req.require_header(TOKEN).map_err(|_| Rejection::BadToken)?;
        if !self.tokens.matches(token) {
            return Err(Rejection::BadToken);
        }
        let data = Data::json(req.body)?;
        let value: Value = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not valid JSON"))?;
        let id = match (header(req, IDEMPOTENCY_KEY), header(req, EVENT_UUID)) {
            // GitLab sends a UUID; held to that shape like the event UUID, so a token holder
            // cannot pick an id in the `sha256:` space of body-derived ids.
            (Some(key), _) => crate::shared::bounded(
                key,
                crate::shared::shape::guid,
                "Idempotency-Key is not a UUID",
            )?
            .to_owned(),
            (None, Some(uuid)) => crate::shared::bounded(
                uuid,
                crate::shared::shape::guid,
                "X-Gitlab-Event-UUID is not a UUID",
            )?
            .to_owned(),
            (None, None) => crate::shared::sha256_key(req.body),
        };
        // The token does not cover the body: what becomes the type is held to what GitLab
        // sends (`merge_request`, `project_create`; actions `open`, `approved`), never mapped.
        let why = "object_kind or event_name is not a lowercase name";
        let name = match name_at(&value, "/object_kind", why)? {
            Some(name) => name,
            None => name_at(&value, "/event_name", why)?.ok_or(Rejection::Malformed(
                "body has neither object_kind nor event_name",
            ))?,
        };
        let mut kind = format!("gitlab.{name}");
        if !matches!(
            value.get("object_attributes"),
            None | Some(Value::Null | Value::Object(_))
        ) {
            return Err(Rejection::Malformed("object_attributes is not an object"));
        }
        let why = "object_attributes.action is not a lowercase name";
        if let Some(action) = name_at(&value, "/object_attributes/action", why)? {
            kind.push('.');
            kind.push_str(action);
        }
        let subject = str_at(&value, "/project/path_with_namespace")
            .or_else(|| str_at(&value, "/path_with_namespace"))
            .or_else(|| str_at(&value, "/full_path"))
            .map(str::to_owned);
        let event = Event {
            id: id.clone(),
            kind,
            provider_event: name.to_owned(),
            time: None,
            subject,
            data,
            content_key: None,
        };
        Ok(Admission::Event {
            ack: Reply::accepted_id(&id),
            event,
        })
    }
}

/// A request as GitLab sends it: `X-Gitlab-Token` with the first token, `X-Gitlab-Event`,
/// a fresh `X-Gitlab-Event-UUID` and the given id as `Idempotency-Key`.
#[cfg(any(test, feature = "sign"))]
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = Gitlab::new(c).map_err(joined)?;
    let id = o.id_or_random("");
    // `--event` as the body names it (`merge_request`) or as the header does ("Merge Request
    // Hook").
    let event = o.event.as_deref().map(|e| {
        let e = e.trim().to_ascii_lowercase();
        e.strip_suffix(" hook").unwrap_or(&e).replace(' ', "_")
    });
    let body = match &o.payload {
        Some(b) => b.clone(),
        None => {
            let kind = event.as_deref().unwrap_or("push");
            let mut v = serde_json::json!({
                "object_kind": kind,
                "event_name": kind,
                "ref": "refs/heads/main",
                "project": {"id": 15, "path_with_namespace": "mike/diaspora"},
            });
            if kind != "push" && kind != "tag_push" {
                v["object_attributes"] = serde_json::json!({"id": 301, "action": "open"});
            }
            v.to_string().into_bytes()
        }
    };
    let hook = match event.as_deref().unwrap_or("push") {
        "push" => "Push Hook".to_owned(),
        "tag_push" => "Tag Push Hook".to_owned(),
        "merge_request" => "Merge Request Hook".to_owned(),
        other => format!("{} Hook", other.replace('_', " ")),
    };
    let uuid = crate::crypto::random_uuid();
    Ok(SampleRequest {
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Gitlab-Event".into(), hook),
            ("X-Gitlab-Token".into(), p.tokens.first().to_owned()),
            ("X-Gitlab-Event-UUID".into(), uuid),
            ("Idempotency-Key".into(), id),
        ],
        body,
    })
}
