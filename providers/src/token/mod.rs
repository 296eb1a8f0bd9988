//! Token: senders that authenticate with a shared token instead of a signature (Alertmanager
//! and Grafana with HTTP Basic or a bearer header, streaming-media servers with a query
//! token, any sender with a static secret header). docs/providers/token.md.
//!
//! A token proves only **who** sent a request, not **what** it contains: anyone who sees one
//! request (a proxy log, a misdirected delivery) can send any body with it. Nothing in the body
//! is authenticated, so the id and type are as trustworthy as the sender's TLS path; where no
//! id is configured the id is `sha256:` of the body (a resend of the same bytes deduplicates,
//! an altered body is a new event), and `hookgate check` says so.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the content nor the
//! length of a configured token leaks through timing; every configured token is tried
//! (rotation).

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use crate::crypto::{b64, ct_eq};
use crate::registry::ConfigKeys;
use crate::shared::{
    event_id, event_name, generic_event, header_name, keep, locator, require_secrets, Locator,
};
#[cfg(any(test, feature = "sign"))]
use crate::shared::{joined, set_pointer};
#[cfg(any(test, feature = "sign"))]
use crate::sign::{SampleOptions, SampleRequest};
use crate::{form, Admission, ConfigError, Data, ProviderKind, RawRequest, Rejection, Secret};

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["tokens"],
    public: &[],
};

const AUTHORIZATION: &str = "authorization";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Accepted tokens, compared byte for byte; every one is tried (rotation).
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// The header carrying the token (`X-Gitlab-Token`, `Authorization`: a `Bearer ` scheme
    /// is stripped there).
    pub header: Option<String>,
    /// The query parameter carrying the token (`?token=…`).
    pub query: Option<String>,
    /// The token is the password of HTTP Basic authentication (the user name is ignored).
    #[serde(default)]
    pub basic: bool,
    /// The header carrying the event id.
    pub id_header: Option<String>,
    /// JSON pointer to the event id in the body.
    pub id_pointer: Option<String>,
    /// The header carrying the event name.
    pub type_header: Option<String>,
    /// JSON pointer to the event name in the body (Alertmanager: `/status`).
    pub type_pointer: Option<String>,
}

impl Config {
    /// Human warnings for `hookgate check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = vec![
            "a token proves who sent a request, not what it contains: the body, id and type are not authenticated (prefer a signing provider where the sender offers one)".to_owned(),
        ];
        if self.id_header.is_none() && self.id_pointer.is_none() {
            w.push("no id_header or id_pointer: the event id is sha256 of the body, so a retry deduplicates only if its bytes are identical".to_owned());
        }
        w
    }
}

/// Where the token is read from.
#[derive(Debug, Clone)]
enum Place {
    Header(String),
    Query(String),
    Basic,
}

/// The accepted tokens as SHA-256 digests: compared in constant time whatever their length.
#[derive(Clone)]
pub(crate) struct Tokens {
    digests: Vec<[u8; 32]>,
    /// Kept for `sample` (the first one signs sample requests).
    #[cfg(any(test, feature = "sign"))]
    first: Secret,
}

impl Tokens {
    /// Checks `tokens` under the config key `key`.
    pub(crate) fn new(key: &'static str, tokens: &[Secret]) -> Result<Self, ConfigError> {
        require_secrets(key, tokens)?;
        Ok(Tokens {
            digests: tokens.iter().map(|t| digest(t.expose())).collect(),
            #[cfg(any(test, feature = "sign"))]
            first: tokens[0].clone(),
        })
    }

    /// Whether `given` is one of the tokens; every token is compared.
    pub(crate) fn matches(&self, given: &str) -> bool {
        let d = digest(given);
        self.digests
            .iter()
            .fold(false, |found, t| found | ct_eq(t, &d))
    }

    #[cfg(any(test, feature = "sign"))]
    pub(crate) fn first(&self) -> &str {
        self.first.expose()
    }
}

fn digest(s: &str) -> [u8; 32] {
    crate::crypto::sha256(&[s.as_bytes()])
}

/// The `token` adapter.
pub struct Token {
    tokens: Tokens,
    place: Place,
    id: Option<Locator>,
    kind: Option<Locator>,
}

impl Token {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let tokens = keep(&mut errors, Tokens::new("tokens", &c.tokens));
        let place = match (&c.header, &c.query, c.basic) {
            (Some(h), None, false) => {
                keep(&mut errors, header_name("header", h).map(Place::Header))
            }
            (None, Some(q), false) => {
                let q = q.trim();
                if q.is_empty() || q.contains(['&', '=', '#', ' ']) {
                    errors.push(ConfigError::new(
                        "query",
                        "must be a query parameter name (no '&', '=', '#' or spaces)",
                    ));
                    None
                } else {
                    Some(Place::Query(q.to_owned()))
                }
            }
            (None, None, true) => Some(Place::Basic),
            (None, None, false) => {
                errors.push(ConfigError::new(
                    "header",
                    "set one of header, query or basic = true: where the sender puts the token",
                ));
                None
            }
            _ => {
                errors.push(ConfigError::new(
                    "header",
                    "set only one of header, query or basic = true",
                ));
                None
            }
        };
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
        match (tokens, place, errors.is_empty()) {
            (Some(tokens), Some(place), true) => Ok(Token {
                tokens,
                place,
                id,
                kind,
            }),
            _ => Err(errors),
        }
    }

    /// The token as sent (a query value in both its readings), or the refusal for a request
    /// without one: missing or wrong, the token is what failed (`Rejection::BadToken`).
    fn presented(&self, req: &RawRequest<'_>) -> Result<Vec<String>, Rejection> {
        let header = |name: &str| {
            req.header(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(Rejection::BadToken)
        };
        match &self.place {
            Place::Header(h) => {
                let v = header(h)?;
                Ok(vec![match h.as_str() {
                    AUTHORIZATION => strip_scheme(v, "bearer").unwrap_or(v),
                    _ => v,
                }
                .to_owned()])
            }
            Place::Query(q) => {
                let readings = query_readings(req.query, q);
                match readings.is_empty() {
                    true => Err(Rejection::BadToken),
                    false => Ok(readings),
                }
            }
            Place::Basic => {
                let creds = strip_scheme(header(AUTHORIZATION)?, "basic")
                    .and_then(b64)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(Rejection::BadToken)?;
                let (_user, password) = creds.split_once(':').ok_or(Rejection::BadToken)?;
                Ok(vec![password.to_owned()])
            }
        }
    }
}

/// The first non-empty value of `name` in `query`, read both ways a sender may mean it: as a
/// form (`+` a space, what `RawRequest::query_param` reads) and percent-decoded only (a token
/// with a `+` pasted into the sender's URL as it is). One reading when the two agree.
fn query_readings(query: &str, name: &str) -> Vec<String> {
    let percent = |v: &str| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned()
    };
    let form = |v: &str| String::from_utf8_lossy(&crate::form::decode(v.as_bytes())).into_owned();
    let Some(raw) = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (form(k) == name && !v.is_empty()).then_some(v)
    }) else {
        return Vec::new();
    };
    let mut readings = vec![form(raw)];
    let kept = percent(raw);
    if kept != readings[0] {
        readings.push(kept);
    }
    readings
}

/// `value` without the auth scheme `scheme` (case-insensitive) and the blanks after it.
fn strip_scheme<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The body as `data`: JSON as received, a form body as an object of strings (first value of
/// a repeated name), an empty body as `null`. Anything else is not what these senders send.
pub(crate) fn body_data(req: &RawRequest<'_>) -> Result<(Data, Value), Rejection> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok((Data::Value(Value::Null), Value::Null));
    }
    let form = req
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().contains("x-www-form-urlencoded"));
    if form {
        let mut obj = serde_json::Map::new();
        for (k, v) in form::pairs(req.body) {
            let k = String::from_utf8(k).map_err(|_| Rejection::Malformed("form is not UTF-8"))?;
            let v = String::from_utf8(v).map_err(|_| Rejection::Malformed("form is not UTF-8"))?;
            obj.entry(k).or_insert(Value::String(v));
        }
        let v = Value::Object(obj);
        return Ok((Data::Value(v.clone()), v));
    }
    let data = Data::json(req.body)?;
    let value = serde_json::from_slice(req.body)
        .map_err(|_| Rejection::Malformed("body is not valid JSON"))?;
    Ok((data, value))
}

impl crate::Provider for Token {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Token
    }

    fn id_header(&self) -> Option<&str> {
        self.id.as_ref().and_then(Locator::header)
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        let given = self.presented(req)?;
        // Every reading is compared (`|`, not `||`).
        if !given
            .iter()
            .fold(false, |ok, g| ok | self.tokens.matches(g))
        {
            return Err(Rejection::BadToken);
        }
        let (data, value) = body_data(req)?;
        let id = event_id(self.id.as_ref(), req, &value)?;
        let raw_type = event_name(self.kind.as_ref(), req, &value)?;
        Ok(generic_event("token", id, raw_type, data))
    }
}

/// A request carrying the first token where the config expects it, with the id and type
/// where the config reads them.
#[cfg(any(test, feature = "sign"))]
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = Token::new(c).map_err(joined)?;
    let id = o.id_or_random("evt_");
    let event = o.event.as_deref().unwrap_or("alert");
    let body = match &o.payload {
        Some(b) => b.clone(),
        None => {
            let mut v = serde_json::json!({
                "id": id,
                "status": event,
                "receiver": "hookgate",
                "alerts": [{"labels": {"alertname": "HookgateSample"}, "status": "firing"}],
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
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if let Some(Locator::Header(h)) = &p.id {
        headers.push((h.to_string(), id.clone()));
    }
    if let Some(Locator::Header(h)) = &p.kind {
        headers.push((h.to_string(), event.to_owned()));
    }
    let token = p.tokens.first();
    let mut query = String::new();
    match &p.place {
        Place::Header(h) => headers.push((h.to_string(), token.to_owned())),
        Place::Query(q) => query = format!("{q}={}", form::encode(token.as_bytes())),
        Place::Basic => headers.push((
            "Authorization".to_owned(),
            format!(
                "Basic {}",
                crate::crypto::b64_encode(format!("hookgate:{token}").as_bytes())
            ),
        )),
    }
    Ok(SampleRequest {
        query,
        headers,
        body,
    })
}
