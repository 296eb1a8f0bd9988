//! Provider adapters for hookgate: pure functions from a raw HTTP request to a verified event.
//!
//! # Layout
//! - [`Provider`]: the one trait every adapter implements. `admit` gets the headers, the raw
//!   query string, the exact body bytes and `now`; it returns an [`Admission`] (an [`Event`] to
//!   publish with the provider's success [`Reply`], or a control probe answered without
//!   publishing) or a typed [`Rejection`]. Adapters never read the clock, the network or disk.
//! - [`admit`]: the gateway's entry point, `Provider::admit` plus a backstop on every event's
//!   id and type ([`MAX_UNSIGNED_BYTES`], shape); [`bounded`] and [`shape`] are what adapters
//!   use on each value from outside a signature (issue 11).
//! - [`ProviderConfig`]: the `provider = "…"` part of a `[[sources]]` table, one variant a
//!   provider, and [`ProviderConfig::build`], the one `match` that registers them.
//! - [`Envelope`]: the CloudEvents 1.0 structured-mode message built from an [`Event`].
//! - [`crypto`]: shared primitives (constant-time compare, lenient base64, RSA and AES helpers).
//! - one module a provider: [`github`], [`alipay`], [`wechatpay`], [`dingtalk`], [`feishu`],
//!   [`standard`], [`hmac`] (with [`hmac_presets`]), [`token`], [`gitlab`], [`gitee`],
//!   [`wecom`]. Each ends with its known-answer vectors and negative tests.
//! - [`msgcrypt`]: WeCom's message crypto, shared by [`wecom`] and DingTalk's event mode.
//! - [`sign`]: builds correctly signed sample requests (for `hookgate sign` and the tests).

pub mod alipay;
pub mod crypto;
pub mod dingtalk;
mod envelope;
pub mod feishu;
pub mod gitee;
pub mod github;
pub mod gitlab;
pub mod hmac;
pub mod hmac_presets;
pub mod msgcrypt;
pub mod secret;
pub mod sign;
pub mod standard;
pub mod token;
pub mod wechatpay;
pub mod wecom;

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use envelope::Envelope;
pub use secret::Secret;

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
        match self.headers.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Rejection::MissingHeader(name)),
        }
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
    Json(Box<RawValue>),
    /// A value the adapter built (form bodies, decrypted resources, redacted tokens).
    Value(serde_json::Value),
}

impl Data {
    /// Validates `bytes` as JSON and keeps them verbatim.
    pub fn json(bytes: &[u8]) -> Result<Self, Rejection> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| Rejection::Malformed("body is not UTF-8"))?;
        RawValue::from_string(text.to_owned())
            .map(Data::Json)
            .map_err(|_| Rejection::Malformed("body is not valid JSON"))
    }
}

impl serde::Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Json(raw) => raw.serialize(s),
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
        Self::json(202, &serde_json::json!({ "id": id }))
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
    #[error("missing or empty header {0}")]
    MissingHeader(&'static str),
    #[error("signature does not verify")]
    BadSignature,
    #[error("timestamp outside the allowed window")]
    StaleTimestamp,
    #[error("verification token does not match")]
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
    /// 401 for authentication failures, 400 for a body that is not what the provider sends.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Malformed(_) => 400,
            _ => 401,
        }
    }
}

/// The provider ids of CONTRACT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Github,
    Alipay,
    Wechatpay,
    Dingtalk,
    Feishu,
    Standard,
    Hmac,
    Token,
    Gitlab,
    Gitee,
    Wecom,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Github => "github",
            ProviderKind::Alipay => "alipay",
            ProviderKind::Wechatpay => "wechatpay",
            ProviderKind::Dingtalk => "dingtalk",
            ProviderKind::Feishu => "feishu",
            ProviderKind::Standard => "standard",
            ProviderKind::Hmac => "hmac",
            ProviderKind::Token => "token",
            ProviderKind::Gitlab => "gitlab",
            ProviderKind::Gitee => "gitee",
            ProviderKind::Wecom => "wecom",
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

/// The provider part of a `[[sources]]` table, selected by its `provider` key.
/// Every variant denies unknown keys, so a misspelt key stops start-up.
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ProviderConfig {
    Github(github::Config),
    Alipay(alipay::Config),
    Wechatpay(wechatpay::Config),
    Dingtalk(dingtalk::Config),
    Feishu(feishu::Config),
    Standard(standard::Config),
    Hmac(Box<hmac::Config>),
    Token(token::Config),
    Gitlab(gitlab::Config),
    Gitee(gitee::Config),
    Wecom(wecom::Config),
}

impl ProviderConfig {
    /// Builds the adapter; every problem is reported, not just the first. A source that would
    /// verify nothing (no secret, empty secret, no key) is an error: hookgate fails closed.
    pub fn build(&self) -> Result<Box<dyn Provider>, Vec<ConfigError>> {
        match self {
            ProviderConfig::Github(c) => github::Github::new(c).map(boxed),
            ProviderConfig::Alipay(c) => alipay::Alipay::new(c).map(boxed),
            ProviderConfig::Wechatpay(c) => wechatpay::WechatPay::new(c).map(boxed),
            ProviderConfig::Dingtalk(c) => dingtalk::DingTalk::new(c).map(boxed),
            ProviderConfig::Feishu(c) => feishu::Feishu::new(c).map(boxed),
            ProviderConfig::Standard(c) => standard::Standard::new(c).map(boxed),
            ProviderConfig::Hmac(c) => hmac::Hmac::new(c).map(boxed),
            ProviderConfig::Token(c) => token::Token::new(c).map(boxed),
            ProviderConfig::Gitlab(c) => gitlab::Gitlab::new(c).map(boxed),
            ProviderConfig::Gitee(c) => gitee::Gitee::new(c).map(boxed),
            ProviderConfig::Wecom(c) => wecom::Wecom::new(c).map(boxed),
        }
    }

    /// A correctly signed (and, where the provider encrypts, encrypted) sample request that
    /// this source accepts: `hookgate sign`, the load generator and the tests use it.
    pub fn sample(&self, o: &sign::SampleOptions) -> Result<sign::SampleRequest, String> {
        match self {
            ProviderConfig::Github(c) => github::sample(c, o),
            ProviderConfig::Alipay(c) => alipay::sample(c, o),
            ProviderConfig::Wechatpay(c) => wechatpay::sample(c, o),
            ProviderConfig::Dingtalk(c) => dingtalk::sample(c, o),
            ProviderConfig::Feishu(c) => feishu::sample(c, o),
            ProviderConfig::Standard(c) => standard::sample(c, o),
            ProviderConfig::Hmac(c) => hmac::sample(c, o),
            ProviderConfig::Token(c) => token::sample(c, o),
            ProviderConfig::Gitlab(c) => gitlab::sample(c, o),
            ProviderConfig::Gitee(c) => gitee::sample(c, o),
            ProviderConfig::Wecom(c) => wecom::sample(c, o),
        }
    }

    /// Human warnings for `hookgate check` (a source that works, but where something the
    /// operator may not expect is outside a signature). Not errors: `build` refuses those.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            ProviderConfig::Github(c) => c.warnings(),
            ProviderConfig::Dingtalk(c) => c.warnings(),
            ProviderConfig::Feishu(c) => c.warnings(),
            ProviderConfig::Hmac(c) => c.warnings(),
            ProviderConfig::Token(c) => c.warnings(),
            ProviderConfig::Gitlab(c) => c.warnings(),
            ProviderConfig::Gitee(c) => c.warnings(),
            ProviderConfig::Alipay(_)
            | ProviderConfig::Wechatpay(_)
            | ProviderConfig::Standard(_)
            | ProviderConfig::Wecom(_) => Vec::new(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Github(_) => ProviderKind::Github,
            ProviderConfig::Alipay(_) => ProviderKind::Alipay,
            ProviderConfig::Wechatpay(_) => ProviderKind::Wechatpay,
            ProviderConfig::Dingtalk(_) => ProviderKind::Dingtalk,
            ProviderConfig::Feishu(_) => ProviderKind::Feishu,
            ProviderConfig::Standard(_) => ProviderKind::Standard,
            ProviderConfig::Hmac(_) => ProviderKind::Hmac,
            ProviderConfig::Token(_) => ProviderKind::Token,
            ProviderConfig::Gitlab(_) => ProviderKind::Gitlab,
            ProviderConfig::Gitee(_) => ProviderKind::Gitee,
            ProviderConfig::Wecom(_) => ProviderKind::Wecom,
        }
    }
}

fn boxed<P: Provider + 'static>(p: P) -> Box<dyn Provider> {
    Box::new(p)
}

/// The most bytes hookgate takes from a value outside a signature (an id, an event name, a
/// routing-key part), and from any event id or type (CONTRACT.md "Unsigned input decides
/// nothing dangerous"): well inside AMQP's 255-byte short strings (`message_id`, `type`,
/// and the routing key `{source}.{type}`).
pub const MAX_UNSIGNED_BYTES: usize = 200;

/// A value hookgate cannot trust (unsigned, or signed but used as an id or a type) checked for
/// the shape the provider sends: non-empty, at most [`MAX_UNSIGNED_BYTES`], no control
/// character, and every character accepted by `shape`. Otherwise `Rejection::Malformed(why)`
/// (400).
pub fn bounded<'a>(
    value: &'a str,
    shape: impl Fn(char) -> bool,
    why: &'static str,
) -> Result<&'a str, Rejection> {
    let ok = !value.is_empty()
        && value.len() <= MAX_UNSIGNED_BYTES
        && value.chars().all(|c| !c.is_control() && shape(c));
    ok.then_some(value).ok_or(Rejection::Malformed(why))
}

/// Character classes for [`bounded`].
pub mod shape {
    /// Any character that is not a control character (the check `bounded` always makes).
    pub fn text(_: char) -> bool {
        true
    }
    /// Visible ASCII, no space: what a header token or an opaque id looks like.
    pub fn visible(c: char) -> bool {
        c.is_ascii_graphic()
    }
    /// `[0-9A-Za-z]`.
    pub fn alnum(c: char) -> bool {
        c.is_ascii_alphanumeric()
    }
    /// `[0-9A-Za-z-]`: a GUID or a similar token.
    pub fn guid(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '-'
    }
    /// `[a-z0-9_]`: a lowercase event or action name.
    pub fn lower_name(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    }
    /// `[a-z0-9_.-]`: a CloudEvents type as hookgate builds it.
    pub fn dotted(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
    }
}

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

/// `sha256:` + lowercase hex SHA-256 of `content`: a content-derived id or [`Event::content_key`].
pub fn sha256_key(content: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(content)))
}

/// Checks that a list of secrets is non-empty and has no empty entry.
pub fn require_secrets(key: &'static str, secrets: &[Secret]) -> Result<(), ConfigError> {
    if secrets.is_empty() {
        return Err(ConfigError::new(key, "at least one is required"));
    }
    if secrets.iter().any(|s| s.expose().trim().is_empty()) {
        return Err(ConfigError::new(key, "must not contain an empty value"));
    }
    Ok(())
}

/// A provider's event name made safe for a CloudEvents type and an AMQP routing key:
/// lowercase `[a-z0-9_.]` (every other character becomes `_`), empty dot-segments dropped,
/// at most 128 characters. `None` when nothing remains.
pub fn type_name(raw: &str) -> Option<String> {
    const MAX: usize = 128;
    let mapped: String = raw
        .chars()
        .take(MAX)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '.') => c,
            _ => '_',
        })
        .collect();
    let joined = mapped
        .split('.')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    (!joined.is_empty()).then_some(joined)
}

/// [`type_name`], or `unknown` when the provider sent nothing usable.
pub fn type_name_or_unknown(raw: &str) -> String {
    type_name(raw).unwrap_or_else(|| "unknown".into())
}

/// Seconds since the Unix epoch; times before it count as 0.
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch; times before it count as 0.
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC, seconds) for a Unix time in milliseconds.
pub fn rfc3339_millis(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// `true` when `ts` (seconds) lies within `tolerance` of `now`, either way; saturating.
pub fn within_window(ts: i64, now: i64, tolerance: i64) -> bool {
    now.saturating_sub(ts).abs() <= tolerance
}

/// Form (`application/x-www-form-urlencoded`) decoding that keeps bytes: values stay in the
/// sender's charset (Alipay may send GBK), decoded exactly once, `+` as space.
pub mod form {
    use percent_encoding::percent_decode;

    fn decode(part: &[u8]) -> Vec<u8> {
        let plus: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&plus).collect()
    }

    /// `(key, value)` pairs in order; empty segments are skipped, a pair without `=` has an
    /// empty value.
    pub fn pairs(body: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
        body.split(|&b| b == b'&')
            .filter(|s| !s.is_empty())
            .map(|seg| match seg.iter().position(|&b| b == b'=') {
                Some(i) => (decode(&seg[..i]), decode(&seg[i + 1..])),
                None => (decode(seg), Vec::new()),
            })
    }

    /// Encodes one component for a form body (the inverse of `pairs`, used to build samples).
    pub fn encode(value: &[u8]) -> String {
        const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'*')
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b' ');
        percent_encoding::percent_encode(value, SET)
            .to_string()
            .replace(' ', "+")
    }
}

/// Helpers shared by the provider modules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::SystemTime;

    use crate::{Admission, Event, Provider, RawRequest, Rejection, Reply};

    /// `admit` on a request with these headers and body and no query string.
    pub fn admit(
        p: &dyn Provider,
        headers: &[(String, String)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<Admission, Rejection> {
        let headers = headers.to_vec();
        p.admit(
            &RawRequest {
                headers: &headers,
                query: "",
                body,
            },
            now,
        )
    }

    /// The event of an admission that must be one.
    pub fn event(r: Result<Admission, Rejection>) -> (Event, Reply) {
        match r {
            Ok(Admission::Event { event, ack }) => (event, ack),
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode_once_and_keep_bytes() {
        let pairs: Vec<_> =
            form::pairs(b"gmt_create=2019-08-15+15%3A56%3A22&a=%2541&flag&x=%C4%E3").collect();
        assert_eq!(
            pairs[0],
            (b"gmt_create".to_vec(), b"2019-08-15 15:56:22".to_vec())
        );
        assert_eq!(pairs[1].1, b"%41".to_vec(), "decoded exactly once");
        assert_eq!(pairs[2], (b"flag".to_vec(), Vec::new()));
        assert_eq!(pairs[3].1, vec![0xC4, 0xE3], "GBK bytes survive");
        assert_eq!(form::encode(b"a b&c=%"), "a+b%26c%3D%25");
    }

    #[test]
    fn window_is_symmetric_and_saturating() {
        assert!(within_window(1000, 1300, 300));
        assert!(!within_window(1000, 1301, 300));
        assert!(!within_window(1301, 1000, 300));
        assert!(!within_window(i64::MIN, i64::MAX, 300));
    }

    #[test]
    fn type_names() {
        assert_eq!(
            type_name("TRANSACTION.SUCCESS").unwrap(),
            "transaction.success"
        );
        assert_eq!(
            type_name("MCHTRANSFER.BILL.FINISHED").unwrap(),
            "mchtransfer.bill.finished"
        );
        assert_eq!(type_name("A..B/C ").unwrap(), "a.b_c_");
        assert_eq!(type_name("orders/create").unwrap(), "orders_create");
        assert_eq!(type_name("..."), None);
        assert_eq!(type_name(""), None);
        assert_eq!(type_name(&"x".repeat(300)).unwrap().len(), 128);
    }

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

    #[test]
    fn bounded_values() {
        assert_eq!(bounded("abc", shape::alnum, "x"), Ok("abc"));
        assert_eq!(
            bounded("", shape::text, "x"),
            Err(Rejection::Malformed("x"))
        );
        assert!(bounded("a\tb", shape::text, "x").is_err());
        assert!(bounded("ü", shape::text, "x").is_ok());
        assert!(bounded("ü", shape::visible, "x").is_err());
        assert!(bounded(&"é".repeat(100), shape::text, "x").is_ok());
        assert!(
            bounded(&"é".repeat(101), shape::text, "x").is_err(),
            "bytes, not chars"
        );
        assert_eq!(
            sha256_key(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    // Issue 11, class 3: `check` tells the operator what a config leaves outside a signature.
    #[test]
    fn class3_warnings_name_what_is_unsigned() {
        let cfg = |v: serde_json::Value| serde_json::from_value::<ProviderConfig>(v).unwrap();
        let shopify = cfg(serde_json::json!({"provider": "hmac", "secrets": ["s"],
            "signature_header": "X-Shopify-Hmac-Sha256", "encoding": "base64",
            "id_header": "X-Shopify-Webhook-Id", "type_header": "X-Shopify-Topic"}));
        let w = shopify.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            w[0],
            "id comes from an unsigned header (`id_header = \"X-Shopify-Webhook-Id\"` is not in `signed_payload`): a replay with a fresh id bypasses dedup"
        );
        assert!(w[1].contains("type_header"));
        let signed_id = cfg(serde_json::json!({"provider": "hmac", "secrets": ["s"],
            "signature_header": "X-Sig", "signed_payload": "{id}.{body}", "id_header": "X-Id"}));
        assert!(signed_id.warnings().is_empty());
        let stripe = cfg(serde_json::json!({"provider": "hmac", "secrets": ["s"],
            "signature_header": "Stripe-Signature", "signature_param": "v1", "timestamp_param": "t",
            "signed_payload": "{timestamp}.{body}", "id_pointer": "/id", "type_pointer": "/type"}));
        assert!(stripe.warnings().is_empty());
        let github = cfg(serde_json::json!({"provider": "github", "secrets": ["s"]}));
        assert!(github.warnings().is_empty());
        let robot =
            cfg(serde_json::json!({"provider": "dingtalk", "mode": "robot", "app_secrets": ["s"]}));
        assert_eq!(robot.warnings().len(), 1);
        let plain = cfg(serde_json::json!({"provider": "feishu", "verification_token": "t"}));
        assert!(plain.warnings()[0].contains("no encrypt_key"));
        let encrypted = cfg(
            serde_json::json!({"provider": "feishu", "verification_token": "t", "encrypt_key": "k"}),
        );
        assert!(encrypted.warnings().is_empty());
        let cards = cfg(
            serde_json::json!({"provider": "feishu", "verification_token": "t",
            "encrypt_key": "k", "legacy_card_callbacks": true}),
        );
        assert!(cards.warnings()[0].contains("legacy_card_callbacks"));
    }
}
