//! The contract between the gateway and the adapters: what an adapter is given ([`RawRequest`]),
//! what it answers ([`Admission`] with an [`Event`] and a [`Reply`], or a [`Rejection`]), the
//! [`Provider`] trait itself, and [`admit`], the gateway's one entry point with its backstop.

use std::borrow::Cow;
use std::time::SystemTime;

use serde_json::value::RawValue;

use crate::form;
use crate::registry::ProviderKind;
use crate::shared::{bounded, shape};

/// Read-only access to request headers. `name` is always lowercase.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

/// A plain list of `(name, value)` pairs; names are matched case-insensitively.
impl Headers for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }
}

/// What an adapter sees of a request: nothing has been parsed or trusted yet.
pub struct RawRequest<'a> {
    pub headers: &'a dyn Headers,
    /// The raw query string without `?` (DingTalk signs its parameters there).
    pub query: &'a str,
    /// The exact bytes received; every signature is checked over these.
    pub body: &'a [u8],
}

impl<'a> RawRequest<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name)
    }

    /// A header that must be present and non-empty.
    pub fn require_header(&self, name: &'static str) -> Result<&'a str, Rejection> {
        self.present(name).ok_or(Rejection::missing(name))
    }

    /// [`require_header`](Self::require_header) for a header named in a source's config:
    /// the name is copied into the rejection only when it is missing.
    pub fn require_configured_header(&self, name: &str) -> Result<&'a str, Rejection> {
        self.present(name)
            .ok_or_else(|| Rejection::MissingHeader(Cow::Owned(name.to_owned())))
    }

    fn present(&self, name: &str) -> Option<&'a str> {
        self.headers
            .get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form::pairs(self.query.as_bytes())
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
    }
}

/// The verified payload an event carries in the envelope's `data`.
#[derive(Debug)]
pub enum Data {
    /// JSON text received (and verified) as is: delivered byte-for-byte, never re-serialised.
    Json(JsonText),
    /// A value the adapter built (form bodies, decrypted resources, redacted tokens).
    Value(serde_json::Value),
}

/// Text that is one JSON value, without the whitespace around it (as serde_json's `RawValue`
/// keeps it). Only made from text that serde_json parsed whole.
#[derive(Debug)]
pub struct JsonText(Box<str>);

impl JsonText {
    pub fn get(&self) -> &str {
        &self.0
    }
}

/// JSON's whitespace (RFC 8259): what a parser skips around a value.
fn trim_json_whitespace(text: &str) -> &str {
    text.trim_matches([' ', '\t', '\n', '\r'])
}

impl Data {
    /// Validates `bytes` as JSON and keeps them verbatim.
    pub fn json(bytes: &[u8]) -> Result<Self, Rejection> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| Rejection::Malformed("body is not UTF-8"))?;
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|_| Rejection::Malformed("body is not valid JSON"))?;
        Ok(Data::parsed(text))
    }

    /// `text` kept verbatim, without a second scan: the caller has deserialized all of it with
    /// serde_json (`from_str` / `from_slice` into any type: that checks every byte's JSON syntax
    /// up to the end, and `text` being a `str` is its UTF-8). One full scan of a 7 KB body
    /// instead of two was ~3 % of the gateway's CPU per GitHub delivery (session 14).
    pub(crate) fn parsed(text: &str) -> Self {
        debug_assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
            "Data::parsed of text that is not JSON"
        );
        Data::Json(JsonText(trim_json_whitespace(text).into()))
    }
}

impl serde::Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Not the request path (the envelope writes `data` itself): tests, tools.
            Data::Json(text) => RawValue::from_string(text.get().to_owned())
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
            Data::Value(v) => v.serialize(s),
        }
    }
}

/// One verified, normalized provider event, before hookgate adds source and receive time.
#[derive(Debug)]
pub struct Event {
    /// The provider's event id as sent (dedup key, CloudEvents `id`, AMQP `message_id`).
    pub id: String,
    /// CloudEvents `type`: lowercase dotted `provider.noun[.verb]`.
    pub kind: String,
    /// The provider's own event name, unchanged (`pull_request`, `TRANSACTION.SUCCESS`).
    pub provider_event: String,
    /// When the provider says the event happened (RFC 3339), if it says.
    pub time: Option<String>,
    /// The natural key: repository, `out_trade_no`, chat id, …
    pub subject: Option<String>,
    pub data: Data,
    /// `sha256:` + lowercase hex SHA-256 of the exact string the signature covers, where the
    /// provider's scheme is ambiguous (Alipay, WeChat Pay v2 sign `k=v&k=v` with unescaped
    /// values, so parameters can be regrouped under one signature into a request with another
    /// id). Dedup on `(source, content_key)` as well as on `(source, id)` makes a regrouped
    /// request a duplicate. `None` where the signature covers the raw bytes.
    pub content_key: Option<String>,
}

/// The HTTP answer a provider expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Reply {
    pub const JSON: &'static str = "application/json";
    pub const TEXT: &'static str = "text/plain; charset=utf-8";
    pub const XML: &'static str = "application/xml; charset=utf-8";

    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            content_type: None,
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply {
            status,
            content_type: Some(Self::JSON),
            body: value.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Reply {
            status,
            content_type: Some(Self::TEXT),
            body: body.as_bytes().to_vec(),
        }
    }

    /// `202 {"id": …}`: the acknowledgement of GitHub, Standard Webhooks and HMAC sources.
    pub fn accepted_id(id: &str) -> Self {
        // Written straight from the id: through a `serde_json::Value` this was 1 % of the
        // gateway's CPU per accepted GitHub delivery (session 13's profile).
        #[derive(serde::Serialize)]
        struct Accepted<'a> {
            id: &'a str,
        }
        Reply {
            status: 202,
            content_type: Some(Self::JSON),
            body: serde_json::to_vec(&Accepted { id }).expect("a string serialises"),
        }
    }
}

/// What an adapter decided about a request that passed verification.
#[derive(Debug)]
pub enum Admission {
    /// A new or repeated event: store it (once) and answer with `ack`.
    Event { event: Event, ack: Reply },
    /// A control probe (Feishu url_verification, DingTalk check_url): answer, publish nothing.
    Control(Reply),
}

/// Why a request was refused. The `Display` text is safe to log and to send: it never
/// says anything about a secret beyond "did not match".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The header (or, for DingTalk events, the query parameter) a provider always sends.
    #[error("missing or empty header {0}")]
    MissingHeader(Cow<'static, str>),
    #[error("signature does not verify")]
    BadSignature,
    #[error("timestamp outside the allowed window")]
    StaleTimestamp,
    #[error("verification token missing or does not match")]
    BadToken,
    /// Verified, but addressed to someone else (Alipay app_id, WeChat mchid, DingTalk owner key).
    #[error("{0} does not match this source")]
    WrongRecipient(&'static str),
    /// A deliberate wrong signature the provider sends to check that we verify (WeChat Pay's
    /// `WECHATPAY/SIGNTEST/`): refused like a bad signature, but expected traffic, not an attack.
    #[error("provider's signature probe (refused as it expects)")]
    Probe,
    /// The bytes are not what the provider sends (after, or where no, signature applies).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl Rejection {
    /// `MissingHeader` for a header name known at compile time.
    pub const fn missing(name: &'static str) -> Self {
        Rejection::MissingHeader(Cow::Borrowed(name))
    }

    /// 401 for authentication failures, 400 for a body that is not what the provider sends.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Malformed(_) => 400,
            _ => 401,
        }
    }
}

/// One provider adapter, built once from its config and shared by all requests.
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Verifies (and decrypts) the request, then normalizes it. Only verified bytes are parsed.
    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection>;

    /// The provider-shaped failure answer for any non-2xx status hookgate sends on this
    /// source (401, 400, 403, 413, 429, 503). `message` is generic and safe to show.
    fn failure(&self, status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    /// The header a source configured for its event id (`id_header` of `hmac` and `token`),
    /// read, unverified, for the log line of a refused request; the providers with a fixed
    /// id header name it in [`ProviderKind::id_headers`].
    fn id_header(&self) -> Option<&str> {
        None
    }

    /// Whether the provider verifies its callback URL with a `GET` (WeCom's `echostr`): only
    /// then does the gateway serve `GET /hooks/{source}` (through `admit`, with an empty body).
    fn verifies_with_get(&self) -> bool {
        false
    }
}

/// A configuration problem, reported with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: Cow<'static, str>,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The most bytes hookgate takes from a value outside a signature (an id, an event name, a
/// routing-key part), and from any event id or type (docs/providers/README.md, "Unsigned input decides
/// nothing dangerous"): well inside AMQP's 255-byte short strings (`message_id`, `type`,
/// and the routing key `{source}.{type}`).
pub const MAX_UNSIGNED_BYTES: usize = 200;

/// `provider.admit` followed by the central backstop every event goes through, whatever the
/// adapter checked: the id must be non-empty, at most [`MAX_UNSIGNED_BYTES`] and free of
/// control characters; the type at most [`MAX_UNSIGNED_BYTES`] and lowercase dotted
/// `[a-z0-9_.-]`. Anything else is `Rejection::Malformed` (400), so no id or type can break
/// an AMQP short string, a routing key or a log line. The gateway calls this, never
/// `Provider::admit` directly.
pub fn admit(
    provider: &dyn Provider,
    req: &RawRequest<'_>,
    now: SystemTime,
) -> Result<Admission, Rejection> {
    let admission = provider.admit(req, now)?;
    if let Admission::Event { event, .. } = &admission {
        check_event(event)?;
    }
    Ok(admission)
}

/// The backstop of [`admit`] on one event.
fn check_event(event: &Event) -> Result<(), Rejection> {
    bounded(
        &event.id,
        shape::text,
        "event id is empty, too long or has control characters",
    )?;
    bounded(
        &event.kind,
        shape::dotted,
        "event type is too long or not lowercase dotted",
    )?;
    let dotted =
        !event.kind.starts_with('.') && !event.kind.ends_with('.') && !event.kind.contains("..");
    dotted
        .then_some(())
        .ok_or(Rejection::Malformed("event type is not lowercase dotted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_statuses() {
        assert_eq!(Rejection::BadSignature.status(), 401);
        assert_eq!(Rejection::Malformed("x").status(), 400);
        assert_eq!(Rejection::WrongRecipient("app_id").status(), 401);
    }

    /// A provider that admits whatever event it was built with.
    struct Fixed(&'static str, &'static str);

    impl Provider for Fixed {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Hmac
        }
        fn admit(&self, _: &RawRequest<'_>, _: SystemTime) -> Result<Admission, Rejection> {
            Ok(Admission::Event {
                event: Event {
                    id: self.0.into(),
                    kind: self.1.into(),
                    provider_event: String::new(),
                    time: None,
                    subject: None,
                    data: Data::Value(serde_json::Value::Null),
                    content_key: None,
                },
                ack: Reply::empty(202),
            })
        }
    }

    // Issue 11, class 1: whatever an adapter lets through, no id or type that could break an
    // AMQP short string, a routing key or a log line leaves `admit`.
    #[test]
    fn class1_backstop_refuses_ids_and_types_out_of_shape() {
        let headers: Vec<(String, String)> = Vec::new();
        let req = RawRequest {
            headers: &headers,
            query: "",
            body: b"",
        };
        let run = |id: &'static str, kind: &'static str| {
            admit(&Fixed(id, kind), &req, SystemTime::UNIX_EPOCH)
        };
        assert!(run("evt-1", "hmac.order.paid_v2").is_ok());
        assert!(run("sha256:ab", "x-y.z").is_ok());
        let id200: &'static str = Box::leak("i".repeat(MAX_UNSIGNED_BYTES).into_boxed_str());
        let id201: &'static str = Box::leak("i".repeat(MAX_UNSIGNED_BYTES + 1).into_boxed_str());
        let kind201: &'static str =
            Box::leak(format!("hmac.{}", "t".repeat(MAX_UNSIGNED_BYTES)).into_boxed_str());
        assert!(run(id200, "hmac.event").is_ok());
        for (id, kind) in [
            ("", "hmac.event"),
            (id201, "hmac.event"),
            ("a\nb", "hmac.event"),
            ("a\u{7f}", "hmac.event"),
            ("a\u{85}", "hmac.event"),
            ("ok", kind201),
            ("ok", ""),
            ("ok", "Hmac.Event"),
            ("ok", "hmac event"),
            ("ok", "hmac.*"),
            ("ok", "hmac.#"),
            ("ok", "hmac..event"),
            ("ok", ".hmac"),
            ("ok", "hmac."),
        ] {
            let r = run(id, kind).unwrap_err();
            assert!(matches!(r, Rejection::Malformed(_)), "{id:?} {kind:?}");
            assert_eq!(r.status(), 400);
        }
    }
}
