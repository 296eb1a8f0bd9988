//! WeCom (WeChat Work, 企业微信) callbacks: the app / contact / customer-contact callback
//! protocol of WeCom's developer documentation ("回调配置", "加解密方案说明"); docs/providers/wecom.md.
//!
//! - **URL verification** (`GET`): the query carries `msg_signature`, `timestamp`, `nonce` and
//!   `echostr`. The signature is SHA-1 over the sorted (token, timestamp, nonce, echostr);
//!   `echostr` decrypts to a random string, answered as the plain-text body, exactly (no
//!   quotes, BOM or newline); anything else (a message's XML: its signature is computed the
//!   same way, so a captured one verifies as an `echostr`) is a 400, never echoed. Nothing is
//!   published. The gateway routes `GET /hooks/{source}` here only without a body
//!   ([`crate::Provider::verifies_with_get`]); a request without a body but with `echostr` is
//!   taken as this probe whatever its method.
//! - **Events and messages** (`POST`): the body is `<xml><ToUserName/><AgentID/><Encrypt/>
//!   </xml>`; the signature covers `Encrypt`. The ciphertext is [`crate::msgcrypt`]'s
//!   (shared with DingTalk): AES-256-CBC with the 43-character EncodingAESKey, PKCS#7 to 32
//!   bytes, and the receive id (the corp id, or a suite id for third-party apps) after the
//!   message. Another receive id is a 401 (`WrongRecipient("corp_id")`).
//! - Acknowledgement: an empty `200` (WeCom retries up to three times otherwise, within 5 s).
//!
//! Event: id `MsgId` (messages), else `sha256:` of the decrypted XML (events have none; a
//! retry decrypts to the same XML, re-encrypted with a new random prefix); type
//! `wecom.<MsgType>[.<Event>]` lower-case; `time` from `CreateTime` (Unix seconds); `data` is the
//! decrypted XML's child elements as a JSON object of strings, nested elements as nested objects
//! and a name repeated at one level as an array. No timestamp window: WeCom's SDK enforces none,
//! and a replay maps to the same id.

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::msgcrypt;
use crate::registry::ConfigKeys;
#[cfg(any(test, feature = "sign"))]
use crate::shared::joined;
#[cfg(any(test, feature = "sign"))]
use crate::sign::{SampleOptions, SampleRequest};
use crate::{
    Admission, ConfigError, Data, Event, ProviderKind, RawRequest, Rejection, Reply, Secret,
};

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["token", "encoding_aes_key"],
    public: &[],
};

const MSG_SIGNATURE: &str = "msg_signature";
const TIMESTAMP: &str = "timestamp";
const NONCE: &str = "nonce";
const ECHOSTR: &str = "echostr";
/// Deeper XML than this is not what WeCom sends.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Token of the app's "接收消息" (receive messages) API settings.
    pub token: Secret,
    /// The 43-character EncodingAESKey of the same page.
    pub encoding_aes_key: Secret,
    /// The receive id inside every plaintext: the corp id (企业ID), or the suite id of a
    /// third-party app.
    pub corp_id: String,
}

/// The `wecom` adapter.
pub struct Wecom {
    token: Secret,
    key: [u8; 32],
    corp_id: String,
}

impl std::fmt::Debug for Wecom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wecom")
            .field("corp_id", &self.corp_id)
            .finish_non_exhaustive()
    }
}

impl Wecom {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if c.token.expose().trim().is_empty() {
            errors.push(ConfigError::new("token", "must not be empty"));
        }
        let key = msgcrypt::aes_key_bytes(c.encoding_aes_key.expose())
            .map_err(|e| errors.push(ConfigError::new("encoding_aes_key", e)))
            .ok();
        let corp_id = c.corp_id.trim();
        if corp_id.is_empty() {
            errors.push(ConfigError::new("corp_id", "must not be empty"));
        }
        match key {
            Some(key) if errors.is_empty() => Ok(Wecom {
                token: c.token.clone(),
                key,
                corp_id: corp_id.to_owned(),
            }),
            _ => Err(errors),
        }
    }

    /// The checked signature parameters: `(timestamp, nonce)`.
    fn check(&self, req: &RawRequest<'_>, encrypt: &str) -> Result<(String, String), Rejection> {
        let param = |name: &'static str| {
            req.query_param(name)
                .filter(|v| !v.is_empty())
                .ok_or(Rejection::missing(name))
        };
        let signature = param(MSG_SIGNATURE)?;
        let timestamp = param(TIMESTAMP)?;
        let nonce = param(NONCE)?;
        if !msgcrypt::signature_matches(
            &signature,
            self.token.expose(),
            &timestamp,
            &nonce,
            encrypt,
        ) {
            return Err(Rejection::BadSignature);
        }
        Ok((timestamp, nonce))
    }

    fn open(&self, encrypt: &str) -> Result<Vec<u8>, Rejection> {
        msgcrypt::open_for(&self.key, &self.corp_id, encrypt, "corp_id")
    }
}

impl crate::Provider for Wecom {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Wecom
    }

    fn verifies_with_get(&self) -> bool {
        true
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        if req.body.iter().all(u8::is_ascii_whitespace) {
            // URL verification: only `echostr` can be answered.
            let echostr = req
                .query_param(ECHOSTR)
                .filter(|v| !v.is_empty())
                .ok_or(Rejection::missing(ECHOSTR))?;
            self.check(req, &echostr)?;
            let plain = self.open(&echostr)?;
            return verification_answer(&plain)
                .map(|text| Admission::Control(Reply::text(200, text)));
        }
        let outer = parse_xml(req.body)?;
        let encrypt = outer
            .get("Encrypt")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Rejection::Malformed("body has no Encrypt element"))?;
        self.check(req, encrypt)?;
        let plain = self.open(encrypt)?;
        let fields = parse_xml(&plain)?;
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let msg_type =
            text("MsgType").ok_or(Rejection::Malformed("decrypted message has no MsgType"))?;
        let segment = |s: &str| crate::shared::type_name_or_unknown(&s.replace('.', "_"));
        let mut kind = format!("wecom.{}", segment(msg_type));
        let mut provider_event = msg_type.to_owned();
        if let Some(ev) = text("Event") {
            kind.push('.');
            kind.push_str(&segment(ev));
            provider_event = format!("{msg_type}.{ev}");
        }
        let id = match text("MsgId") {
            Some(id) => crate::shared::bounded(
                id,
                crate::shared::shape::visible,
                "MsgId is not a visible token",
            )?
            .to_owned(),
            None => crate::shared::sha256_key(&plain),
        };
        let time = text("CreateTime")
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|secs| crate::shared::rfc3339_millis(secs.saturating_mul(1000)));
        let event = Event {
            id,
            kind,
            provider_event,
            time,
            subject: None,
            data: Data::Value(Value::Object(fields)),
            content_key: None,
        };
        Ok(Admission::Event {
            event,
            ack: Reply::empty(200),
        })
    }
}

/// The longest plaintext a URL verification's `echostr` is answered with.
const MAX_ECHO: usize = 64;

/// The plaintext of a verified `echostr`, if it is what WeCom's URL verification sends: a short
/// random token (digits in WeCom's sample). A message's signature is computed the same way
/// over its `Encrypt`, so a captured message replayed as a verification GET verifies too;
/// echoing its plaintext would decrypt it for anyone. Its XML is refused here instead.
fn verification_answer(plain: &[u8]) -> Result<&str, Rejection> {
    let token = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    match plain.len() <= MAX_ECHO && !plain.is_empty() && plain.iter().all(token) {
        // ASCII only, so UTF-8.
        true => Ok(std::str::from_utf8(plain).unwrap_or_default()),
        false => Err(Rejection::Malformed(
            "echostr does not decrypt to a verification token",
        )),
    }
}
/// The children of a `<xml>` root as a JSON object: an element with text (or CDATA) is a
/// string, one with child elements an object, a name repeated at one level an array. A
/// DOCTYPE (entity declarations), processing instructions and mixed content are refused.
pub fn parse_xml(body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    use quick_xml::events::Event as X;
    const NOT_XML: Rejection = Rejection::Malformed("body is not a WeCom XML document");
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| NOT_XML);
    let mut reader = quick_xml::Reader::from_reader(body);
    // One frame per open element: name, child elements, text.
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        match reader.read_event().map_err(|_| NOT_XML)? {
            X::Start(e) => {
                let name = utf8(e.name().as_ref())?;
                if (stack.is_empty() && (root.is_some() || name != "xml"))
                    || stack.len() >= MAX_DEPTH
                {
                    return Err(NOT_XML);
                }
                stack.push((name, Map::new(), String::new()));
            }
            X::Empty(e) => {
                let name = utf8(e.name().as_ref())?;
                let (_, children, _) = stack.last_mut().ok_or(NOT_XML)?;
                insert(children, name, Value::String(String::new()));
            }
            X::End(_) => {
                let (name, children, text) = stack.pop().ok_or(NOT_XML)?;
                let value = match (children.is_empty(), text.trim().is_empty()) {
                    (true, _) => Value::String(text),
                    (false, true) => Value::Object(children),
                    (false, false) => return Err(NOT_XML),
                };
                match stack.last_mut() {
                    Some((_, parent, _)) => insert(parent, name, value),
                    None => match value {
                        Value::Object(m) => root = Some(m),
                        _ => return Err(NOT_XML),
                    },
                }
            }
            X::Text(t) => match stack.last_mut() {
                Some((_, _, text)) => text.push_str(&t.unescape().map_err(|_| NOT_XML)?),
                None if t.iter().all(u8::is_ascii_whitespace) => {}
                None => return Err(NOT_XML),
            },
            X::CData(c) => match stack.last_mut() {
                Some((_, _, text)) => text.push_str(&utf8(&c.into_inner())?),
                None => return Err(NOT_XML),
            },
            X::Decl(_) | X::Comment(_) => {}
            X::Eof => break,
            _ => return Err(NOT_XML),
        }
    }
    match root {
        Some(m) if stack.is_empty() => Ok(m),
        _ => Err(NOT_XML),
    }
}

/// Adds `value` under `name`; a repeated name becomes an array of its values, in order.
fn insert(map: &mut Map<String, Value>, name: String, value: Value) {
    match map.get_mut(&name) {
        None => {
            map.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// An element with its text in CDATA (`]]>` split across two sections).
#[cfg(any(test, feature = "sign"))]
fn cdata(name: &str, value: &str) -> String {
    let v = value.replace("]]>", "]]]]><![CDATA[>");
    format!("<{name}><![CDATA[{v}]]></{name}>")
}

/// The plaintext of a sample: a text message (`MsgType` `text`, with `MsgId` = the id) or,
/// when `o.event` names an event (`change_contact`, `enter_agent`, …), that event.
#[cfg(any(test, feature = "sign"))]
fn sample_plaintext(corp_id: &str, o: &SampleOptions) -> String {
    let created = crate::unix_secs(o.now);
    let mut x = String::from("<xml>");
    x.push_str(&cdata("ToUserName", corp_id));
    x.push_str(&cdata("FromUserName", "zhangsan"));
    x.push_str(&format!("<CreateTime>{created}</CreateTime>"));
    match o.event.as_deref() {
        None | Some("text") => {
            x.push_str(&cdata("MsgType", "text"));
            x.push_str(&cdata("Content", "hello from hookgate sign"));
            let id = o.id.clone().unwrap_or_else(|| {
                (u64::from_be_bytes(crate::crypto::random_array()) >> 1).to_string()
            });
            x.push_str(&format!("<MsgId>{id}</MsgId>"));
        }
        Some(event) => {
            x.push_str(&cdata("MsgType", "event"));
            x.push_str(&cdata("Event", event));
            x.push_str(&cdata("ChangeType", "create_user"));
            x.push_str(&cdata(
                "UserID",
                o.id.as_deref().unwrap_or(&crate::crypto::random_alnum(8)),
            ));
        }
    }
    x.push_str("<AgentID>1000002</AgentID></xml>");
    x
}

/// A POST as WeCom sends it: the plaintext (`o.payload` as is, or [`sample_plaintext`])
/// encrypted for the configured corp id, the signature in the query.
#[cfg(any(test, feature = "sign"))]
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = Wecom::new(c).map_err(joined)?;
    let plain = match &o.payload {
        Some(b) => b.clone(),
        None => sample_plaintext(&p.corp_id, o).into_bytes(),
    };
    let encrypt = msgcrypt::seal(&p.key, &crate::crypto::random_array(), &plain, &p.corp_id);
    let timestamp = crate::unix_secs(o.now).to_string();
    let nonce = crate::crypto::random_alnum(10);
    let signature = msgcrypt::signature(p.token.expose(), &timestamp, &nonce, &encrypt);
    let body = format!(
        "<xml>{}<AgentID><![CDATA[1000002]]></AgentID>{}</xml>",
        cdata("ToUserName", &p.corp_id),
        cdata("Encrypt", &encrypt)
    );
    Ok(SampleRequest {
        query: format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"),
        headers: vec![("Content-Type".into(), "text/xml".into())],
        body: body.into_bytes(),
    })
}

/// The URL verification GET WeCom sends when the callback URL is saved: the query of
/// `GET /hooks/{source}?…` whose answer must be `echo` exactly.
#[cfg(any(test, feature = "sign"))]
pub fn verification_query(c: &Config, now: SystemTime, echo: &str) -> Result<String, String> {
    let p = Wecom::new(c).map_err(joined)?;
    let echostr = msgcrypt::seal(
        &p.key,
        &crate::crypto::random_array(),
        echo.as_bytes(),
        &p.corp_id,
    );
    let timestamp = crate::unix_secs(now).to_string();
    let nonce = crate::crypto::random_alnum(10);
    let signature = msgcrypt::signature(p.token.expose(), &timestamp, &nonce, &echostr);
    Ok(format!(
        "msg_signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr={}",
        crate::form::encode(echostr.as_bytes())
    ))
}
