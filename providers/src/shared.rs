//! Helpers the adapters share, each in one place: checks on values from outside a signature,
//! CloudEvents type names, time conversions and config checks.

use std::time::SystemTime;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::contract::{ConfigError, Rejection, MAX_UNSIGNED_BYTES};
use crate::Secret;

/// `T` read from a JSON object only: serde reads a struct from an array too, by position, so
/// without this `["opened",{"full_name":"a/b"}]` would fill a struct's first two fields.
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
            .map(Object)
    }
}

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

/// `sha256:` + lowercase hex SHA-256 of `content`: a content-derived id or [`Event::content_key`].
pub fn sha256_key(content: &[u8]) -> String {
    format!("sha256:{}", hex::encode(crate::crypto::sha256(&[content])))
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

/// A name in a body the signature does not cover (GitLab's `object_kind`, Gitee's `hook_name`)
/// that becomes part of a type: absent, null or empty is `None`; a string is held to the
/// `[a-z0-9_]` shape those providers send, never mapped into it; a value of another JSON type
/// is not what they send either, and is refused rather than left out of the type.
pub fn lower_name_value<'v>(
    v: Option<&'v Value>,
    why: &'static str,
) -> Result<Option<&'v str>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => bounded(s, shape::lower_name, why).map(Some),
        Some(_) => Err(Rejection::Malformed(why)),
    }
}

/// A JSON object's members with their values as their raw text, by key (sorted, a repeated key
/// keeping its last value, as serde_json's `Map`). An adapter that edits a verified or
/// decrypted payload (drops a token, puts a decrypted resource in) edits these, so every other
/// value is delivered as sent: through `Value`, integers past 64 bits and long fractions were
/// rounded (found by a review). `None` if `text` is not an object.
pub fn raw_members(text: &[u8]) -> Option<std::collections::BTreeMap<String, Box<RawValue>>> {
    serde_json::from_slice(text).ok()
}

/// The object of `members`, each value written as its raw text, as `data`.
pub fn raw_object_data(members: &std::collections::BTreeMap<String, Box<RawValue>>) -> crate::Data {
    crate::Data::parsed(&serde_json::to_string(members).expect("raw members are JSON"))
}

/// `text` (JSON) as a raw value, its whitespace around trimmed.
pub fn raw_value(text: &[u8]) -> Option<Box<RawValue>> {
    let text = std::str::from_utf8(text).ok()?;
    RawValue::from_string(text.trim_matches([' ', '\t', '\n', '\r']).to_owned()).ok()
}

/// The name of a parameter swallowed by another one's value, if any, in a signed `k=v&k=v`
/// content (Alipay, WeChat Pay v2: values signed unescaped). `signed` are the pairs the
/// content was made of. A copy of a notification can be regrouped under the same signature,
/// one value taking in the next parameter (`trade_status=TRADE_SUCCESS&version=1.0`), and a
/// copy that arrived before the genuine one decided the event's type, id or data (found by a
/// review). Exactly such a swallow is a value holding `&N=` where `N` is one of the
/// provider's parameter names (`known`), absent from the request, and sorting strictly
/// between the value's own name and the next one sent: only there could the signed content
/// hold `N` as a parameter of its own. A merchant's free text that merely holds `&` (or a name
/// that sorts elsewhere, or one the request sends) is not one.
pub fn swallowed<'k>(signed: &[(&[u8], &[u8])], known: &[&'k str]) -> Option<&'k str> {
    // Every known name is shorter: the `=` is looked for this far only, so a value of a
    // megabyte of `&` costs a linear scan, not a quadratic one.
    const LONGEST_NAME: usize = 64;
    let mut sorted = signed.to_vec();
    sorted.sort_unstable();
    for (i, &(name, value)) in sorted.iter().enumerate() {
        let next = sorted.get(i + 1).map(|&(n, _)| n);
        for (at, _) in value.iter().enumerate().filter(|&(_, &b)| b == b'&') {
            let rest = &value[at + 1..];
            let window = &rest[..rest.len().min(LONGEST_NAME + 1)];
            let Some(eq) = window.iter().position(|&b| b == b'=' || b == b'&') else {
                continue;
            };
            if window[eq] != b'=' {
                continue;
            }
            let inner = &rest[..eq];
            let Some(&known_name) = known.iter().find(|k| k.as_bytes() == inner) else {
                continue;
            };
            let between = inner > name && next.is_none_or(|n| inner < n);
            if between && !sorted.iter().any(|&(n, _)| n == inner) {
                return Some(known_name);
            }
        }
    }
    None
}

/// Why a verified `k=v&k=v` request (Alipay, WeChat Pay v2) is not in the provider's own
/// grouping of its signed content, if it is not: a name that is not `[A-Za-z0-9_]` (a name
/// sent percent-encoded, or an XML element named so, can hold `&` and `=`, and so the pairs
/// before it: `trade_no=T&trade_status` with the value `TRADE_SUCCESS`); a value the event
/// is made of (`shaped`: type, id, subject, time, recipient) holding `&`, which none of them
/// does; or a value swallowing a known parameter ([`swallowed`]). Found by reviews: a copy
/// regrouped so, arriving before the genuine notification, decided the event's type, id,
/// subject or time, and the genuine one was its duplicate. What is left to a regrouping is
/// the text of other values (`data`), which a merchant's free text makes ambiguous anyway.
pub fn regrouped(
    signed: &[(&[u8], &[u8])],
    known: &[&str],
    shaped: &[&str],
) -> Option<&'static str> {
    if signed
        .iter()
        .any(|(k, _)| k.is_empty() || !k.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
    {
        return Some("a parameter name is not one the provider sends (regrouped)");
    }
    if signed
        .iter()
        .any(|(k, v)| shaped.iter().any(|s| s.as_bytes() == *k) && v.contains(&b'&'))
    {
        return Some("a value the event is made of holds '&' (regrouped)");
    }
    swallowed(signed, known).map(|_| "a parameter's value holds another parameter (regrouped)")
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

/// RFC 3339 (UTC, milliseconds) for a Unix time in milliseconds; `None` outside the years
/// 0000–9999 that RFC 3339 can write (chrono would write `+55840-11-08T…` for a time sent in
/// milliseconds where seconds belong), so the caller falls back to the receive time.
pub fn rfc3339_millis(ms: i64) -> Option<String> {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_millis(ms)
        .filter(|t| (0..=9999).contains(&t.year()))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// `true` when `ts` (seconds) lies within `tolerance` of `now`, either way; saturating.
pub fn within_window(ts: i64, now: i64, tolerance: i64) -> bool {
    now.saturating_sub(ts).abs() <= tolerance
}

/// A non-negative integer written as ASCII digits only: no sign, no fraction, no blanks
/// (signed timestamps: Standard Webhooks, WeChat Pay, `hmac` sources).
pub fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An integer sent as a JSON number or as a decimal string (Feishu `create_time`, DingTalk
/// `TimeStamp` and `createAt`).
pub fn json_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON string that is not empty.
pub fn non_empty(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The `encrypt` text of an encrypted body, `{"encrypt":"…"}` (DingTalk events, Feishu).
pub fn encrypt_field(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Encrypted {
        encrypt: String,
    }
    serde_json::from_slice::<Encrypted>(body)
        .ok()
        .map(|e| e.encrypt)
}

/// `{provider}.{raw}` as a CloudEvents type (see [`type_name`]); `None` if nothing remains
/// of `raw` (Standard Webhooks and `hmac` sources, whose senders name their own types).
pub fn dotted_type(provider: &str, raw: &str) -> Option<String> {
    type_name(raw).map(|t| format!("{provider}.{t}"))
}

/// China Standard Time, UTC+8: Alipay and WeChat Pay v2 write times in it without an offset.
const BEIJING_SECS: i32 = 8 * 3600;

/// A Beijing wall-clock time in `format` (`%Y-%m-%d %H:%M:%S` for Alipay, `%Y%m%d%H%M%S` for
/// The event of a generic sender (`hmac`, `token`): type `{provider}.{raw}` (or
/// `{provider}.event` without one), no time or subject (such senders disagree on where, and
/// whether, they say when an event happened), acknowledged with `202 {"id":…}`.
pub fn generic_event(
    provider: &str,
    id: String,
    raw_type: Option<String>,
    data: crate::Data,
) -> crate::Admission {
    let kind = raw_type
        .as_deref()
        .and_then(|t| dotted_type(provider, t))
        .unwrap_or_else(|| format!("{provider}.event"));
    crate::Admission::Event {
        ack: crate::Reply::accepted_id(&id),
        event: crate::Event {
            id,
            kind,
            provider_event: raw_type.unwrap_or_else(|| "event".to_owned()),
            time: None,
            subject: None,
            data,
            content_key: None,
        },
    }
}

/// WeChat Pay v2) as RFC 3339 with its `+08:00` offset.
pub fn beijing_rfc3339(s: &str, format: &str) -> Option<String> {
    use chrono::Datelike;
    let naive = chrono::NaiveDateTime::parse_from_str(s, format)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))?;
    let t = naive
        .and_local_timezone(chrono::FixedOffset::east_opt(BEIJING_SECS)?)
        .single()?;
    // A fraction only when one was sent.
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
}

/// Unix seconds as Beijing wall-clock time in `format` (what the samples write).
#[cfg(any(test, feature = "sign"))]
pub fn beijing(secs: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(secs.saturating_add(i64::from(BEIJING_SECS)), 0)
        .map(|t| t.naive_utc().format(format).to_string())
        .unwrap_or_default()
}

/// Every problem of a config as one line (samples report a source that does not build).
#[cfg(any(test, feature = "sign"))]
pub fn joined(errors: Vec<ConfigError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
// Config and body locators shared by `hmac` and `token`.

/// Records a config error and keeps going, so that every problem is reported at once.
pub fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// Where a source reads a value (an event id, a type) from.
#[derive(Debug, Clone)]
pub enum Locator {
    /// A lowercase header name.
    Header(String),
    /// A JSON pointer into the body.
    Pointer(String),
}

impl Locator {
    /// The header name, when the value is read from a header.
    pub fn header(&self) -> Option<&str> {
        match self {
            Locator::Header(h) => Some(h),
            Locator::Pointer(_) => None,
        }
    }
}

/// A value read from a header or from a JSON pointer into the body: at most one of the two.
pub fn locator(
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

/// A header name (RFC 9110 token), lowercased.
pub fn header_name(key: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ConfigError::new(key, "must be an HTTP header name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// An RFC 6901 JSON pointer to a member (so not the empty whole-document pointer).
pub fn pointer(key: &'static str, p: &str) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(
            key,
            "must be a JSON pointer starting with '/', e.g. \"/id\"",
        ));
    }
    Ok(p.to_owned())
}

/// The event id of a generic sender (`hmac`, `token`): from the configured header or pointer,
/// else `sha256:` of the body. Unsigned where the scheme does not sign it, so only an opaque
/// visible token is taken.
pub fn event_id(
    loc: Option<&Locator>,
    req: &crate::RawRequest<'_>,
    value: &Value,
) -> Result<String, Rejection> {
    Ok(match loc {
        None => sha256_key(req.body),
        Some(Locator::Header(h)) => bounded(
            req.header(h)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(Rejection::Malformed("the event id header is missing"))?,
            shape::visible,
            "the event id header is too long or not a visible token",
        )?
        .to_owned(),
        Some(Locator::Pointer(p)) => match value.pointer(p) {
            // A fraction, or an integer past 64 bits, is read as a double: two events whose
            // ids differ past its precision would share one id, the second dropped as a
            // duplicate. Refused rather than rounded.
            Some(Value::Number(n)) if !(n.is_i64() || n.is_u64()) => {
                return Err(Rejection::Malformed(
                    "the event id is a number that is not a 64-bit integer (send it as a string)",
                ))
            }
            v => v
                .and_then(scalar)
                .ok_or(Rejection::Malformed("the event id is not in the body"))?,
        },
    })
}

/// The event name of a generic sender, from the configured header or pointer. Unsigned (a
/// header, or a `token` source's body): bounded and free of control characters before it is
/// sanitized into a type, wherever it comes from.
pub fn event_name(
    loc: Option<&Locator>,
    req: &crate::RawRequest<'_>,
    value: &Value,
) -> Result<Option<String>, Rejection> {
    Ok(match loc {
        None => None,
        Some(Locator::Header(h)) => req
            .header(h)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                bounded(
                    v,
                    shape::text,
                    "the event type header is too long or has control characters",
                )
            })
            .transpose()?
            .map(str::to_owned),
        Some(Locator::Pointer(p)) => value
            .pointer(p)
            .and_then(scalar)
            .map(|v| {
                bounded(
                    &v,
                    shape::text,
                    "the event type in the body is too long or has control characters",
                )?;
                Ok(v)
            })
            .transpose()?,
    })
}

/// A non-empty string, or a number as written (numeric ids such as Shopify's).
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Sets `value` at `pointer`, creating objects on the way (for sample bodies).
#[cfg(any(test, feature = "sign"))]
pub fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swallowed_parameter_is_one_that_could_stand_on_its_own() {
        const KNOWN: &[&str] = &["a_id", "b_type", "c_no", "d_status"];
        let p = |pairs: &[(&'static str, &'static str)]| -> Vec<(&'static [u8], &'static [u8])> {
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect()
        };
        // b_type took in c_no (absent, between b_type and d_status): a swallow.
        let r = p(&[("a_id", "1"), ("b_type", "x&c_no=7"), ("d_status", "ok")]);
        assert_eq!(swallowed(&r, KNOWN), Some("c_no"));
        // The last value takes in what sorts after it.
        let r = p(&[("a_id", "1"), ("b_type", "x"), ("c_no", "7&d_status=ok")]);
        assert_eq!(swallowed(&r, KNOWN), Some("d_status"));
        // Received in any order: the signed order is by name.
        let r = p(&[("d_status", "ok"), ("b_type", "x&c_no=7"), ("a_id", "1")]);
        assert_eq!(swallowed(&r, KNOWN), Some("c_no"));
        for fine in [
            // a name the request sends, one that sorts before the value's own, an unknown one,
            // `&` without `=`, nothing after `&`
            p(&[("a_id", "1"), ("b_type", "x&c_no=7"), ("c_no", "7")]),
            p(&[("b_type", "x&a_id=1"), ("c_no", "7")]),
            p(&[("a_id", "1"), ("b_type", "x&zz=1&c_n=2")]),
            p(&[("a_id", "1&"), ("b_type", "x&y")]),
            p(&[("a_id", "1&&c_no"), ("b_type", "x&&=")]),
            // one that sorts past the next name sent
            p(&[("a_id", "x&c_no=7"), ("b_type", "y")]),
        ] {
            assert_eq!(swallowed(&fine, KNOWN), None, "{fine:?}");
        }
        // A megabyte of `&` is one linear scan (it was a quadratic one: hours).
        let amps = vec![b'&'; 1 << 20];
        assert_eq!(swallowed(&[(b"b_type", &amps)], KNOWN), None);
    }

    #[test]
    fn rfc3339_only_for_years_it_can_write() {
        assert_eq!(
            rfc3339_millis(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        assert_eq!(rfc3339_millis(253_402_300_800_000), None, "year 10000");
        assert_eq!(rfc3339_millis(1_700_000_000_000 * 1000), None);
        assert_eq!(rfc3339_millis(-62_167_219_200_001), None, "year -1");
    }

    #[test]
    fn window_is_symmetric_and_saturating() {
        assert!(within_window(1000, 1300, 300));
        assert!(!within_window(1000, 1301, 300));
        assert!(!within_window(1301, 1000, 300));
        assert!(!within_window(i64::MIN, i64::MAX, 300));
    }

    #[test]
    fn digits_json_ints_and_beijing_times() {
        assert_eq!(digits("1700000000"), Some(1_700_000_000));
        for bad in ["", "+1", "-1", " 1", "1.5", "1e3", "99999999999999999999"] {
            assert_eq!(digits(bad), None, "{bad:?}");
        }
        assert_eq!(json_int(&serde_json::json!(" 12 ")), Some(12));
        assert_eq!(json_int(&serde_json::json!(12)), Some(12));
        assert_eq!(json_int(&serde_json::json!(1.5)), None);
        assert_eq!(non_empty(Some(&serde_json::json!(""))), None);
        assert_eq!(
            beijing_rfc3339("20141030133525", "%Y%m%d%H%M%S").as_deref(),
            Some("2014-10-30T13:35:25+08:00")
        );
        assert_eq!(beijing(1_414_647_325, "%Y%m%d%H%M%S"), "20141030133525");
        assert_eq!(
            encrypt_field(br#"{"encrypt":"abc","x":1}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(encrypt_field(br#"{"encrypt":1}"#), None);
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
    fn bounded_values() {
        assert_eq!(bounded("abc", shape::guid, "x"), Ok("abc"));
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
}
