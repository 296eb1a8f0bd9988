//! Feishu / Lark event subscription and callbacks, PROVIDERS.md §5.
//!
//! With an `encrypt_key` the body is `{"encrypt":"…"}` and `X-Lark-Signature` =
//! hex(SHA-256(timestamp ‖ nonce ‖ encrypt_key ‖ raw body)) is required; the payload is
//! AES-256-CBC under SHA-256(encrypt_key) with the IV in front (§5.3). Without one the body is
//! plain JSON and the Verification Token inside it is the only check (§5.2). The token is
//! checked after decryption in both cases and removed from the published data: it is a secret.
//!
//! `url_verification` is answered with `{"challenge":…}` and not published. The signature is
//! not applied to it (§5.2; larksuite/oapi-sdk-go's dispatcher skips `VerifySign` for it), so
//! an unsigned or badly signed url_verification is accepted when its token matches: the token
//! is its authentication. Every other request without a valid signature is refused with the
//! signature's rejection, whatever its ciphertext holds, so an unsigned request cannot probe
//! the padding of a ciphertext (no CBC padding oracle). A plain url_verification is accepted
//! with an `encrypt_key` too: the message-card request URL may check that way, and answering
//! it publishes nothing.
//!
//! Schema 2.0 events (and `card.action.trigger` callbacks) use `header.event_id`; schema 1.0
//! events use `uuid`. Legacy message-card callbacks are signed with
//! hex(SHA-1(timestamp ‖ nonce ‖ verification_token ‖ raw body)), 40 hex digits (§5.6); they
//! carry no id, so theirs is `sha256:` of the signed timestamp, nonce and body: a replay maps
//! to the same id, two clicks do not. Feishu defines no timestamp window and retries for
//! about 7 h, so none is enforced; dedup on the event id catches replays.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::crypto;
use crate::sign::{SampleOptions, SampleRequest};
use crate::{
    rfc3339_millis, unix_millis, unix_secs, Admission, ConfigError, Data, Event, ProviderKind,
    RawRequest, Rejection, Reply, Secret,
};

const TIMESTAMP: &str = "x-lark-request-timestamp";
const NONCE: &str = "x-lark-request-nonce";
const SIGNATURE: &str = "x-lark-signature";

const URL_VERIFICATION: &str = "url_verification";
const LEGACY_CARD: &str = "card.action.trigger_v1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Verification Token of 事件与回调 → 加密策略 (Events & Callbacks → Encryption strategy).
    pub verification_token: Secret,
    /// The Encrypt Key of the same page; when set, bodies are encrypted and signed.
    #[serde(default)]
    pub encrypt_key: Option<Secret>,
    /// Accept legacy message-card callbacks (`card.action.trigger_v1`), which are signed with
    /// SHA-1 over the Verification Token, not with the Encrypt Key. Without an `encrypt_key`
    /// they are always accepted (the token is then the only secret anyway); with one, only
    /// when this is true, so a source that has an Encrypt Key is not weakened by default.
    #[serde(default)]
    pub legacy_card_callbacks: bool,
}

impl Config {
    /// Human warnings for `hookgate check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.encrypt_key.is_none() {
            w.push(
                "no encrypt_key: requests are authenticated only by the Verification Token inside the body, which every event carries; set an Encrypt Key so that requests are signed".to_owned(),
            );
        } else if self.legacy_card_callbacks {
            w.push(
                "legacy_card_callbacks = true: legacy card callbacks are checked with SHA-1 over the Verification Token instead of the Encrypt Key signature".to_owned(),
            );
        }
        w
    }
}

pub struct Feishu {
    token: Secret,
    encrypt: Option<EncryptKey>,
    /// Legacy card callbacks are taken (no Encrypt Key, or `legacy_card_callbacks = true`).
    legacy_cards: bool,
}

struct EncryptKey {
    /// The key text: it is part of the signed string.
    text: Secret,
    /// SHA-256 of the text: the AES-256 key.
    aes: [u8; 32],
}

impl Feishu {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if c.verification_token.expose().trim().is_empty() {
            errors.push(ConfigError::new("verification_token", "must not be empty"));
        }
        if c.encrypt_key
            .as_ref()
            .is_some_and(|k| k.expose().trim().is_empty())
        {
            errors.push(ConfigError::new(
                "encrypt_key",
                "must not be empty (leave the key out when no Encrypt Key is set)",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Feishu {
            legacy_cards: c.encrypt_key.is_none() || c.legacy_card_callbacks,
            token: c.verification_token.clone(),
            encrypt: c.encrypt_key.as_ref().map(|k| EncryptKey {
                aes: aes_key(k.expose()),
                text: k.clone(),
            }),
        })
    }
}

/// The AES-256 key: SHA-256 of the Encrypt Key text.
pub fn aes_key(encrypt_key: &str) -> [u8; 32] {
    Sha256::digest(encrypt_key.as_bytes()).into()
}

/// `hex(SHA-256(timestamp ‖ nonce ‖ encrypt_key ‖ body))`: the `X-Lark-Signature` of events.
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(encrypt_key.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// `hex(SHA-1(timestamp ‖ nonce ‖ verification_token ‖ body))`: legacy message-card callbacks.
pub fn legacy_card_signature(
    timestamp: &str,
    nonce: &str,
    verification_token: &str,
    body: &[u8],
) -> String {
    let mut h = Sha1::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(verification_token.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Decrypts an `encrypt` value (§5.3): `None` for bad base64, a short or ragged buffer, or
/// padding that is not strict PKCS#7/16.
pub fn decrypt(encrypt_key: &str, encrypt: &str) -> Option<Vec<u8>> {
    decrypt_with(&aes_key(encrypt_key), encrypt)
}

fn decrypt_with(key: &[u8; 32], encrypt: &str) -> Option<Vec<u8>> {
    let buf = crypto::b64(encrypt)?;
    if buf.len() < 32 {
        return None;
    }
    let (iv, ct) = buf.split_at(16);
    let plain = crypto::aes_cbc_decrypt(key, iv, ct)?;
    crypto::pkcs7_unpad(&plain, 16).map(<[u8]>::to_vec)
}

/// `b64(iv ‖ AES-256-CBC(SHA-256(encrypt_key), iv, PKCS#7/16(plain)))`, as Feishu encrypts.
pub fn encrypt(encrypt_key: &str, iv: &[u8; 16], plain: &[u8]) -> String {
    let ct = crypto::aes_cbc_encrypt(&aes_key(encrypt_key), iv, &crypto::pkcs7_pad(plain, 16))
        .expect("32-byte key, 16-byte iv and padded input are valid");
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    crypto::b64_encode(&out)
}

/// Compares a received hex digest with the expected bytes in constant time.
fn hex_matches(received: &str, expected: &[u8]) -> bool {
    hex::decode(received).is_ok_and(|got| crypto::ct_eq(&got, expected))
}

/// The `encrypt` text of an encrypted body.
fn encrypted_field(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Encrypted {
        encrypt: String,
    }
    serde_json::from_slice::<Encrypted>(body)
        .ok()
        .map(|e| e.encrypt)
}

fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice(bytes).ok()
}

fn is_url_verification(v: &Map<String, Value>) -> bool {
    v.get("type").and_then(Value::as_str) == Some(URL_VERIFICATION)
}

fn non_empty_str<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Milliseconds since the epoch from a decimal string or a number (schema 2.0 `create_time`).
fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Milliseconds from seconds that may have a fraction (schema 1.0 `ts`, "1502199207.7171419").
fn fractional_secs_to_millis(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => {
            let (secs, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
            if secs.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let ms: String = frac.chars().chain("000".chars()).take(3).collect();
            let secs: i64 = secs.parse().ok()?;
            Some(secs.saturating_mul(1000).saturating_add(ms.parse().ok()?))
        }
        Value::Number(n) => n
            .as_i64()
            .map(|s| s.saturating_mul(1000))
            .or_else(|| n.as_f64().map(|f| (f * 1000.0).round() as i64)),
        _ => None,
    }
}

fn time_from_millis(ms: Option<i64>) -> Option<String> {
    ms.filter(|t| *t > 0).and_then(rfc3339_millis)
}

/// The chat an event belongs to: message events (`event.message.chat_id`), card actions
/// (`event.context.open_chat_id`), chat events (`event.chat_id`), schema 1.0 and legacy
/// cards (`open_chat_id`). Other events have no natural subject.
fn chat_id(event: Option<&Value>) -> Option<String> {
    let event = event?;
    [
        "/message/chat_id",
        "/context/open_chat_id",
        "/chat_id",
        "/open_chat_id",
    ]
    .iter()
    .find_map(|p| non_empty_str(event, p))
    .map(str::to_owned)
}

fn ack() -> Reply {
    Reply::json(200, &serde_json::json!({}))
}

impl Feishu {
    fn token_matches(&self, token: Option<&Value>) -> Result<(), Rejection> {
        let ok = token
            .and_then(Value::as_str)
            .is_some_and(|t| crypto::ct_eq(t.as_bytes(), self.token.expose().as_bytes()));
        ok.then_some(()).ok_or(Rejection::BadToken)
    }

    /// `Ok` when the event signature verifies; the rejection to give otherwise.
    fn verify_event_signature(
        &self,
        key: &EncryptKey,
        req: &RawRequest<'_>,
        signature: Option<&str>,
    ) -> Result<(), Rejection> {
        let signature = signature.ok_or(Rejection::MissingHeader(SIGNATURE))?;
        let ts = req.require_header(TIMESTAMP)?;
        let nonce = req.require_header(NONCE)?;
        let mut h = Sha256::new();
        h.update(ts.as_bytes());
        h.update(nonce.as_bytes());
        h.update(key.text.expose().as_bytes());
        h.update(req.body);
        if hex_matches(signature, &h.finalize()) {
            Ok(())
        } else {
            Err(Rejection::BadSignature)
        }
    }

    fn admit_encrypted(
        &self,
        key: &EncryptKey,
        req: &RawRequest<'_>,
        signature: Option<&str>,
    ) -> Result<Admission, Rejection> {
        let auth = self.verify_event_signature(key, req, signature);
        let encrypt = encrypted_field(req.body);
        let plain = encrypt.as_deref().and_then(|e| decrypt_with(&key.aes, e));
        match auth {
            Ok(()) => {
                // Signed by someone holding the Encrypt Key: tell them precisely what is wrong.
                if encrypt.is_none() {
                    return Err(Rejection::Malformed("body is not {\"encrypt\":…}"));
                }
                let plain = plain.ok_or(Rejection::Malformed("encrypt does not decrypt"))?;
                let v = json_object(&plain)
                    .ok_or(Rejection::Malformed("decrypted body is not a JSON object"))?;
                self.dispatch(v)
            }
            Err(refused) => {
                // Only a url_verification passes without a signature, encrypted or plain;
                // anything else gets the same refusal whatever it decrypts to.
                let v = match plain {
                    Some(p) => json_object(&p),
                    None if encrypt.is_none() => json_object(req.body),
                    None => None,
                };
                match v {
                    Some(v) if is_url_verification(&v) => self.challenge(&v),
                    _ => Err(refused),
                }
            }
        }
    }

    fn admit_plain(&self, req: &RawRequest<'_>) -> Result<Admission, Rejection> {
        let v = json_object(req.body).ok_or(Rejection::Malformed("body is not a JSON object"))?;
        if v.contains_key("encrypt") {
            return Err(Rejection::Malformed(
                "body is encrypted but this source has no encrypt_key",
            ));
        }
        self.dispatch(v)
    }

    fn challenge(&self, v: &Map<String, Value>) -> Result<Admission, Rejection> {
        self.token_matches(v.get("token"))?;
        let challenge = v
            .get("challenge")
            .and_then(Value::as_str)
            .ok_or(Rejection::Malformed("url_verification without challenge"))?;
        Ok(Admission::Control(Reply::json(
            200,
            &serde_json::json!({ "challenge": challenge }),
        )))
    }

    /// A verified (or token-only, plain mode) payload: url_verification, schema 2.0 or 1.0.
    fn dispatch(&self, mut v: Map<String, Value>) -> Result<Admission, Rejection> {
        if is_url_verification(&v) {
            return self.challenge(&v);
        }
        if let Some(schema) = v.get("schema") {
            if schema.as_str() != Some("2.0") {
                return Err(Rejection::Malformed("unknown event schema"));
            }
            let header = v
                .get_mut("header")
                .and_then(Value::as_object_mut)
                .ok_or(Rejection::Malformed("schema 2.0 event without header"))?;
            self.token_matches(header.get("token"))?;
            header.remove("token");
            let field = |name: &str| {
                header
                    .get(name)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let id =
                field("event_id").ok_or(Rejection::Malformed("event without header.event_id"))?;
            let event_type = field("event_type")
                .ok_or(Rejection::Malformed("event without header.event_type"))?;
            let time = time_from_millis(header.get("create_time").and_then(millis));
            let subject = chat_id(v.get("event"));
            return Ok(Admission::Event {
                event: Event {
                    id,
                    kind: format!("feishu.{}", crate::type_name_or_unknown(&event_type)),
                    provider_event: event_type,
                    time,
                    subject,
                    data: Data::Value(Value::Object(v)),
                    content_key: None,
                },
                ack: ack(),
            });
        }
        if v.contains_key("uuid") || v.get("type").and_then(Value::as_str) == Some("event_callback")
        {
            self.token_matches(v.get("token"))?;
            v.remove("token");
            let v = Value::Object(v);
            let id = non_empty_str(&v, "/uuid")
                .ok_or(Rejection::Malformed("schema 1.0 event without uuid"))?
                .to_owned();
            let event_type = non_empty_str(&v, "/event/type")
                .ok_or(Rejection::Malformed("schema 1.0 event without event.type"))?
                .to_owned();
            return Ok(Admission::Event {
                event: Event {
                    id,
                    kind: format!("feishu.{}", crate::type_name_or_unknown(&event_type)),
                    provider_event: event_type,
                    time: time_from_millis(v.get("ts").and_then(fractional_secs_to_millis)),
                    subject: chat_id(v.get("event")),
                    data: Data::Value(v),
                    content_key: None,
                },
                ack: ack(),
            });
        }
        Err(Rejection::Malformed("not a Feishu event"))
    }

    /// Legacy message-card callback (`card.action.trigger_v1`), signed with the token.
    fn admit_legacy_card(
        &self,
        req: &RawRequest<'_>,
        signature: &str,
    ) -> Result<Admission, Rejection> {
        let ts = req.require_header(TIMESTAMP)?;
        let nonce = req.require_header(NONCE)?;
        let mut h = Sha1::new();
        h.update(ts.as_bytes());
        h.update(nonce.as_bytes());
        h.update(self.token.expose().as_bytes());
        h.update(req.body);
        if !hex_matches(signature, &h.finalize()) {
            return Err(Rejection::BadSignature);
        }
        // The SDK decrypts card bodies that come as {"encrypt":…} (oapi-sdk-go card/card.go).
        let plain = match encrypted_field(req.body) {
            Some(e) => {
                let key = self.encrypt.as_ref().ok_or(Rejection::Malformed(
                    "body is encrypted but this source has no encrypt_key",
                ))?;
                decrypt_with(&key.aes, &e)
                    .ok_or(Rejection::Malformed("encrypt does not decrypt"))?
            }
            None => req.body.to_vec(),
        };
        let mut v = json_object(&plain)
            .ok_or(Rejection::Malformed("card callback is not a JSON object"))?;
        if is_url_verification(&v) {
            return self.challenge(&v);
        }
        if !v.get("action").is_some_and(Value::is_object) {
            return Err(Rejection::Malformed("card callback without action"));
        }
        // Here `token` is the card's update token, not the Verification Token; drop it only
        // if it is the secret after all.
        if self.token_matches(v.get("token")).is_ok() {
            v.remove("token");
        }
        let mut id = Sha256::new();
        id.update(ts.as_bytes());
        id.update(b"\n");
        id.update(nonce.as_bytes());
        id.update(b"\n");
        id.update(req.body);
        let v = Value::Object(v);
        let subject = ["/open_chat_id", "/open_message_id"]
            .iter()
            .find_map(|p| non_empty_str(&v, p))
            .map(str::to_owned);
        let event = Event {
            id: format!("sha256:{}", hex::encode(id.finalize())),
            kind: format!("feishu.{LEGACY_CARD}"),
            provider_event: LEGACY_CARD.to_owned(),
            time: ts
                .parse::<i64>()
                .ok()
                .and_then(|s| time_from_millis(Some(s.saturating_mul(1000)))),
            subject,
            data: Data::Value(v),
            content_key: None,
        };
        Ok(Admission::Event { event, ack: ack() })
    }
}

impl crate::Provider for Feishu {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Feishu
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        let signature = req
            .header(SIGNATURE)
            .map(str::trim)
            .filter(|s| !s.is_empty());
        // SHA-1 (40 hex digits) is the legacy card signature; events use SHA-256 (64). With
        // an Encrypt Key and no opt-in, a 40-digit signature is just a wrong event signature.
        if let Some(sig) = signature.filter(|s| s.len() == 40 && self.legacy_cards) {
            return self.admit_legacy_card(req, sig);
        }
        match &self.encrypt {
            Some(key) => self.admit_encrypted(key, req, signature),
            None => self.admit_plain(req),
        }
    }
}

/// A request as Feishu sends it to this source, encrypted and signed when the source has an
/// `encrypt_key`. `o.event` is the schema 2.0 `event_type` (default `im.message.receive_v1`)
/// or `url_verification` for the challenge request; `o.payload` is the `event` object;
/// `o.id` the `event_id`.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    Feishu::new(c).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let token = c.verification_token.expose();
    let now_ms = unix_millis(o.now);
    let event_type = o.event.as_deref().unwrap_or("im.message.receive_v1");
    let plain = if event_type == URL_VERIFICATION {
        serde_json::json!({
            "challenge": crypto::random_alnum(15),
            "token": token,
            "type": URL_VERIFICATION,
        })
    } else {
        let event = match &o.payload {
            Some(p) => serde_json::from_slice::<Value>(p)
                .map_err(|e| format!("payload is not JSON: {e}"))?,
            None => default_event(event_type, now_ms),
        };
        serde_json::json!({
            "schema": "2.0",
            "header": {
                "event_id": o.id.clone().unwrap_or_else(|| hex::encode(crypto::random_bytes(16))),
                "event_type": event_type,
                "create_time": now_ms.to_string(),
                "token": token,
                "app_id": "cli_a1b2c3d4e5f60789",
                "tenant_key": "2ca1d211f64f6438",
            },
            "event": event,
        })
    };
    let plain = plain.to_string().into_bytes();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let body = match &c.encrypt_key {
        None => plain,
        Some(key) => {
            let iv: [u8; 16] = crypto::random_bytes(16)
                .try_into()
                .expect("random_bytes(16) returns 16 bytes");
            let body = serde_json::json!({ "encrypt": encrypt(key.expose(), &iv, &plain) })
                .to_string()
                .into_bytes();
            let ts = unix_secs(o.now).to_string();
            let nonce = crypto::random_alnum(16);
            let sig = signature(&ts, &nonce, key.expose(), &body);
            headers.push(("X-Lark-Request-Timestamp".into(), ts));
            headers.push(("X-Lark-Request-Nonce".into(), nonce));
            headers.push(("X-Lark-Signature".into(), sig));
            body
        }
    };
    Ok(SampleRequest {
        query: String::new(),
        headers,
        body,
    })
}

/// A realistic `event` object for the sample's event type.
fn default_event(event_type: &str, now_ms: i64) -> Value {
    let sender = serde_json::json!({
        "sender_id": {
            "union_id": "on_8ed6aa67826108097d9ee143816345",
            "user_id": "e33ggbyz",
            "open_id": "ou_84aad35d084aa403a838cf73ee18467",
        },
        "sender_type": "user",
        "tenant_key": "2ca1d211f64f6438",
    });
    match event_type {
        "card.action.trigger" => serde_json::json!({
            "operator": sender["sender_id"],
            "token": "c-295ee57fe7ec4d9a4bd8b5ea7ab1c0ee6ac7e4b2",
            "action": { "value": { "key": "value" }, "tag": "button" },
            "context": {
                "open_message_id": "om_a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "open_chat_id": "oc_5ad11d72b830411d72b836c20",
            },
        }),
        _ => serde_json::json!({
            "sender": sender,
            "message": {
                "message_id": "om_5ce6d572455d361153b7cb51da133945",
                "create_time": now_ms.to_string(),
                "chat_id": "oc_5ad11d72b830411d72b836c20",
                "chat_type": "group",
                "message_type": "text",
                "content": "{\"text\":\"@_user_1 hello hookgate\"}",
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const KEY: &str = "test key";
    const HELLO: &str = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=";
    const URL_CHECK_ENC: &str = "AAECAwQFBgcICQoLDA0ODw9mLTIAZS9jAmGTQ1wAhHpnBHVL2wRjH9rPunQdQC1vLjsckayA10kZ8cPwtb62F8rC7JprUPR/4S2aZihfR+p8npX7UzWPithZmfKIPZgE";
    const URL_CHECK_PLAIN: &str =
        r#"{"challenge":"ajls384kdjx98XX","token":"xxxxxx","type":"url_verification"}"#;
    const TOKEN: &str = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV";
    const IV: &[u8; 16] = b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f";

    const EVENT_V2: &str = r#"{"schema":"2.0","header":{"event_id":"5e3702a84e847582be8db7fb73283c02","event_type":"im.message.receive_v1","create_time":"1608725989000","token":"rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV","app_id":"cli_9e28cb7ba56a100e","tenant_key":"2ca1d211f64f6438"},"event":{"message":{"chat_id":"oc_5ad11d72b830411d72b836c20","message_id":"om_1"}}}"#;

    fn feishu(token: &str, key: Option<&str>) -> Feishu {
        feishu_cards(token, key, false)
    }

    fn feishu_cards(token: &str, key: Option<&str>, legacy_card_callbacks: bool) -> Feishu {
        Feishu::new(&Config {
            verification_token: Secret::from(token),
            encrypt_key: key.map(Secret::from),
            legacy_card_callbacks,
        })
        .unwrap()
    }

    fn admit(
        p: &Feishu,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Admission, Rejection> {
        crate::testing::admit(
            p,
            headers,
            body,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
    }

    fn signed(key: &str, body: &[u8]) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Lark-Request-Timestamp".into(), "1700000000".into()),
            ("X-Lark-Request-Nonce".into(), "nonce-abc".into()),
            (
                "X-Lark-Signature".into(),
                signature("1700000000", "nonce-abc", key, body),
            ),
        ]
    }

    fn enc_body(key: &str, plain: &[u8]) -> Vec<u8> {
        format!(r#"{{"encrypt":"{}"}}"#, encrypt(key, IV, plain)).into_bytes()
    }

    fn event(a: Admission) -> (Event, Reply) {
        match a {
            Admission::Event { event, ack } => (event, ack),
            Admission::Control(r) => panic!("expected an event, got control {r:?}"),
        }
    }

    fn control(a: Admission) -> Reply {
        match a {
            Admission::Control(r) => r,
            Admission::Event { event, .. } => panic!("expected control, got {event:?}"),
        }
    }

    // OFFICIAL: Encrypt Key "test key" → "hello world" (pad 5).
    #[test]
    fn official_decrypt_vector() {
        assert_eq!(decrypt(KEY, HELLO).unwrap(), b"hello world");
        let buf = crypto::b64(HELLO).unwrap();
        let raw = crypto::aes_cbc_decrypt(&aes_key(KEY), &buf[..16], &buf[16..]).unwrap();
        assert_eq!(&raw[11..], &[5u8; 5]);
    }

    // NEGATIVE: another key does not give "hello world".
    #[test]
    fn negative_vector_other_key() {
        assert_ne!(
            decrypt("other key", HELLO).as_deref(),
            Some(&b"hello world"[..])
        );
    }

    // SELF: X-Lark-Signature.
    #[test]
    fn self_vector_signature() {
        let body = format!(r#"{{"encrypt":"{HELLO}"}}"#);
        assert_eq!(
            signature("1700000000", "nonce-abc", KEY, body.as_bytes()),
            "651c41e37268e4e00e77ccde1b4b9d16e624029b82bafa51660c3a382d4f0588"
        );
    }

    // SELF: legacy card signature.
    #[test]
    fn self_vector_legacy_card_signature() {
        assert_eq!(
            legacy_card_signature(
                "1700000000",
                "nonce-abc",
                "verification-token-xyz",
                br#"{"open_id":"ou_x","action":{"tag":"button","value":{"k":"v"}}}"#
            ),
            "6eea715e0225c13a9ca60a3090c30d39ea2052d5"
        );
    }

    // SELF: encrypted url_verification with IV 00..0f, decrypted, encrypted back, answered.
    #[test]
    fn self_vector_encrypted_url_verification() {
        assert_eq!(
            decrypt(KEY, URL_CHECK_ENC).unwrap(),
            URL_CHECK_PLAIN.as_bytes()
        );
        assert_eq!(encrypt(KEY, IV, URL_CHECK_PLAIN.as_bytes()), URL_CHECK_ENC);
        let body = format!(r#"{{"encrypt":"{URL_CHECK_ENC}"}}"#);
        let expected = Reply {
            status: 200,
            content_type: Some("application/json"),
            body: br#"{"challenge":"ajls384kdjx98XX"}"#.to_vec(),
        };
        let p = feishu("xxxxxx", Some(KEY));
        // without signature headers: the token authenticates it
        let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        assert_eq!(
            control(admit(&p, &headers, body.as_bytes()).unwrap()),
            expected
        );
        // signed
        let headers = signed(KEY, body.as_bytes());
        assert_eq!(
            control(admit(&p, &headers, body.as_bytes()).unwrap()),
            expected
        );
        // wrong token, signed or not
        let p = feishu("yyyyyy", Some(KEY));
        assert_eq!(
            admit(&p, &headers, body.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
        assert_eq!(
            admit(&p, &[], body.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
        // wrong Encrypt Key: not a url_verification we can read, and unsigned
        let p = feishu("xxxxxx", Some("other key"));
        assert_eq!(
            admit(&p, &[], body.as_bytes()).unwrap_err(),
            Rejection::MissingHeader(SIGNATURE)
        );
    }

    #[test]
    fn plain_url_verification() {
        let p = feishu("xxxxxx", None);
        let reply = control(admit(&p, &[], URL_CHECK_PLAIN.as_bytes()).unwrap());
        assert_eq!(reply.body, br#"{"challenge":"ajls384kdjx98XX"}"#);
        assert_eq!(reply.status, 200);
        assert_eq!(
            admit(&feishu("other", None), &[], URL_CHECK_PLAIN.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
        // a plain one on an encrypted source (card request URL) still needs the token
        assert!(admit(
            &feishu("xxxxxx", Some(KEY)),
            &[],
            URL_CHECK_PLAIN.as_bytes()
        )
        .is_ok());
        assert_eq!(
            admit(&feishu("other", Some(KEY)), &[], URL_CHECK_PLAIN.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
        let no_token = br#"{"challenge":"c","type":"url_verification"}"#;
        assert_eq!(
            admit(&feishu("xxxxxx", None), &[], no_token).unwrap_err(),
            Rejection::BadToken
        );
    }

    fn check_v2(event: &Event) {
        assert_eq!(event.id, "5e3702a84e847582be8db7fb73283c02");
        assert_eq!(event.kind, "feishu.im.message.receive_v1");
        assert_eq!(event.provider_event, "im.message.receive_v1");
        assert_eq!(event.time.as_deref(), Some("2020-12-23T12:19:49.000Z"));
        assert_eq!(
            event.subject.as_deref(),
            Some("oc_5ad11d72b830411d72b836c20")
        );
        let data = serde_json::to_string(&event.data).unwrap();
        assert!(!data.contains(TOKEN), "the token is a secret");
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["header"]["app_id"], "cli_9e28cb7ba56a100e");
        assert!(v["header"].get("token").is_none());
        assert_eq!(v["event"]["message"]["message_id"], "om_1");
    }

    #[test]
    fn schema_2_plain_and_encrypted() {
        let (e, ack) = event(admit(&feishu(TOKEN, None), &[], EVENT_V2.as_bytes()).unwrap());
        check_v2(&e);
        assert_eq!(ack, Reply::json(200, &serde_json::json!({})));
        assert_eq!(ack.body, b"{}");

        // plays Feishu: encrypt, sign, send
        let body = enc_body("my encrypt key", EVENT_V2.as_bytes());
        let p = feishu(TOKEN, Some("my encrypt key"));
        let (e, ack) = event(admit(&p, &signed("my encrypt key", &body), &body).unwrap());
        check_v2(&e);
        assert_eq!(ack.body, b"{}");
    }

    #[test]
    fn schema_1_event() {
        let body = format!(
            r#"{{"uuid":"41b5f371157e3d5341b38b20396e77a3","token":"{TOKEN}","ts":"1502199207.7171419","type":"event_callback","event":{{"type":"message","app_id":"cli_x","tenant_key":"t","open_chat_id":"oc_abc","text":"hi"}}}}"#
        );
        let (e, _) = event(admit(&feishu(TOKEN, None), &[], body.as_bytes()).unwrap());
        assert_eq!(e.id, "41b5f371157e3d5341b38b20396e77a3");
        assert_eq!(e.kind, "feishu.message");
        assert_eq!(e.provider_event, "message");
        assert_eq!(e.time.as_deref(), Some("2017-08-08T13:33:27.717Z"));
        assert_eq!(e.subject.as_deref(), Some("oc_abc"));
        let v: Value = serde_json::to_value(&e.data).unwrap();
        assert!(v.get("token").is_none());
        assert_eq!(v["event"]["text"], "hi");
        // wrong token
        let bad = body.replace(TOKEN, "nope");
        assert_eq!(
            admit(&feishu(TOKEN, None), &[], bad.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
    }

    #[test]
    fn card_action_trigger_is_published() {
        let plain = format!(
            r#"{{"schema":"2.0","header":{{"event_id":"f7984f25108f8137722bb63cee927e66","token":"{TOKEN}","create_time":"1700000000123","event_type":"card.action.trigger","tenant_key":"t","app_id":"cli_x"}},"event":{{"operator":{{"open_id":"ou_x"}},"token":"c-295ee57fe7ec4d9a4bd8b5ea7ab1c0ee6ac7e4b2","action":{{"value":{{"k":"v"}},"tag":"button"}},"context":{{"open_message_id":"om_x","open_chat_id":"oc_card"}}}}}}"#
        );
        let body = enc_body(KEY, plain.as_bytes());
        let p = feishu(TOKEN, Some(KEY));
        let (e, ack) = event(admit(&p, &signed(KEY, &body), &body).unwrap());
        assert_eq!(e.kind, "feishu.card.action.trigger");
        assert_eq!(e.id, "f7984f25108f8137722bb63cee927e66");
        assert_eq!(e.subject.as_deref(), Some("oc_card"));
        assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(ack.body, b"{}");
        let v: Value = serde_json::to_value(&e.data).unwrap();
        assert_eq!(
            v["event"]["token"], "c-295ee57fe7ec4d9a4bd8b5ea7ab1c0ee6ac7e4b2",
            "the card update token is the consumer's"
        );
    }

    #[test]
    fn legacy_card_callback() {
        let body = br#"{"open_id":"ou_x","open_message_id":"om_y","token":"c-upd","action":{"tag":"button","value":{"k":"v"}}}"#;
        let headers = vec![
            (
                "X-Lark-Request-Timestamp".to_string(),
                "1700000000".to_string(),
            ),
            ("X-Lark-Request-Nonce".to_string(), "nonce-abc".to_string()),
            (
                "X-Lark-Signature".to_string(),
                legacy_card_signature("1700000000", "nonce-abc", "verification-token-xyz", body),
            ),
        ];
        for (key, opt_in) in [(None, false), (Some(KEY), true)] {
            let p = feishu_cards("verification-token-xyz", key, opt_in);
            let (e, ack) = event(admit(&p, &headers, body).unwrap());
            assert_eq!(e.kind, "feishu.card.action.trigger_v1");
            assert_eq!(e.subject.as_deref(), Some("om_y"));
            assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20.000Z"));
            assert!(e.id.starts_with("sha256:") && e.id.len() == 71);
            assert_eq!(ack.body, b"{}");
            let v: Value = serde_json::to_value(&e.data).unwrap();
            assert_eq!(v["token"], "c-upd");
        }
        // another token, or a changed body
        let p = feishu("other", None);
        assert_eq!(
            admit(&p, &headers, body).unwrap_err(),
            Rejection::BadSignature
        );
        let p = feishu("verification-token-xyz", None);
        assert_eq!(
            admit(&p, &headers, br#"{"open_id":"ou_z","action":{}}"#).unwrap_err(),
            Rejection::BadSignature
        );
        let mut h = headers.clone();
        h.remove(1);
        assert_eq!(
            admit(&p, &h, body).unwrap_err(),
            Rejection::MissingHeader(NONCE)
        );
    }

    #[test]
    fn encrypted_refusals() {
        let p = feishu(TOKEN, Some(KEY));
        let body = enc_body(KEY, EVENT_V2.as_bytes());
        let good = signed(KEY, &body);
        assert!(admit(&p, &good, &body).is_ok());
        // no signature: an event needs one
        let unsigned = vec![good[0].clone()];
        assert_eq!(
            admit(&p, &unsigned, &body).unwrap_err(),
            Rejection::MissingHeader(SIGNATURE)
        );
        // missing timestamp or nonce next to a signature
        for (i, name) in [(1, TIMESTAMP), (2, NONCE)] {
            let mut h = good.clone();
            h.remove(i);
            assert_eq!(
                admit(&p, &h, &body).unwrap_err(),
                Rejection::MissingHeader(name)
            );
        }
        // bad signature, signature under another key, tampered body, other timestamp
        let mut h = good.clone();
        h[3].1 = "00".repeat(32);
        assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
        let h = signed("other key", &body);
        assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
        let mut tampered = body.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 1;
        assert_eq!(
            admit(&p, &good, &tampered).unwrap_err(),
            Rejection::BadSignature
        );
        let mut h = good.clone();
        h[1].1 = "1700000001".into();
        assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
        let mut h = good.clone();
        h[3].1 = "not hex".into();
        assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
        // signed, wrong Verification Token inside
        let other = EVENT_V2.replace(TOKEN, "another-token");
        let b = enc_body(KEY, other.as_bytes());
        assert_eq!(
            admit(&p, &signed(KEY, &b), &b).unwrap_err(),
            Rejection::BadToken
        );
        // signed with the Encrypt Key, but encrypted under another key (bad padding)
        let b = enc_body("other key", EVENT_V2.as_bytes());
        assert_eq!(
            admit(&p, &signed(KEY, &b), &b).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
        // signed, corrupted ciphertext: last block flipped, padding breaks
        let mut raw = crypto::b64(&encrypted_field(&body).unwrap()).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        let b = format!(r#"{{"encrypt":"{}"}}"#, crypto::b64_encode(&raw)).into_bytes();
        assert_eq!(
            admit(&p, &signed(KEY, &b), &b).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
        // signed, bad padding made on purpose (pad byte 0, pad byte 17, mixed)
        for pad in [
            [0u8; 16],
            [17u8; 16],
            *b"\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x02\x03\x03",
        ] {
            let mut plain = b"{\"a\":1234567890}".to_vec();
            plain.extend_from_slice(&pad);
            let ct = crypto::aes_cbc_encrypt(&aes_key(KEY), IV, &plain).unwrap();
            let mut buf = IV.to_vec();
            buf.extend_from_slice(&ct);
            let b = format!(r#"{{"encrypt":"{}"}}"#, crypto::b64_encode(&buf)).into_bytes();
            assert_eq!(
                admit(&p, &signed(KEY, &b), &b).unwrap_err(),
                Rejection::Malformed("encrypt does not decrypt")
            );
        }
        // signed, truncated base64 and truncated ciphertext
        let enc = encrypted_field(&body).unwrap();
        for bad in [&enc[..enc.len() - 2], &enc[..20], ""] {
            let b = format!(r#"{{"encrypt":"{bad}"}}"#).into_bytes();
            assert_eq!(
                admit(&p, &signed(KEY, &b), &b).unwrap_err(),
                Rejection::Malformed("encrypt does not decrypt"),
                "{bad}"
            );
        }
        // signed, but a plain body
        assert_eq!(
            admit(&p, &signed(KEY, EVENT_V2.as_bytes()), EVENT_V2.as_bytes()).unwrap_err(),
            Rejection::Malformed("body is not {\"encrypt\":…}")
        );
        // unsigned: the same refusal whatever the ciphertext holds (no padding oracle)
        for b in [
            enc_body(KEY, EVENT_V2.as_bytes()),
            enc_body("other key", EVENT_V2.as_bytes()),
            b"{\"encrypt\":\"AAAA\"}".to_vec(),
            EVENT_V2.as_bytes().to_vec(),
            b"garbage".to_vec(),
        ] {
            assert_eq!(
                admit(&p, &unsigned, &b).unwrap_err(),
                Rejection::MissingHeader(SIGNATURE)
            );
        }
        // a wrong signature does not open the url_verification path to events either
        let mut h = good.clone();
        h[3].1 = "11".repeat(32);
        assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
    }

    #[test]
    fn plain_refusals() {
        let p = feishu(TOKEN, None);
        // an encrypted body needs an encrypt_key
        let body = enc_body(KEY, EVENT_V2.as_bytes());
        assert!(matches!(
            admit(&p, &signed(KEY, &body), &body).unwrap_err(),
            Rejection::Malformed(_)
        ));
        // wrong or missing token
        let other = EVENT_V2.replace(TOKEN, "another-token");
        assert_eq!(
            admit(&p, &[], other.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
        let no_token = EVENT_V2.replace(&format!(r#""token":"{TOKEN}","#), "");
        assert_eq!(
            admit(&p, &[], no_token.as_bytes()).unwrap_err(),
            Rejection::BadToken
        );
        // not an event
        for bad in [
            "nope",
            "[]",
            r#"{"foo":1}"#,
            r#"{"schema":"3.0","header":{}}"#,
            r#"{"schema":"2.0"}"#,
        ] {
            assert!(
                matches!(
                    admit(&p, &[], bad.as_bytes()).unwrap_err(),
                    Rejection::Malformed(_)
                ),
                "{bad}"
            );
        }
        // token fine, id missing
        let no_id = EVENT_V2.replace(r#""event_id":"5e3702a84e847582be8db7fb73283c02","#, "");
        assert!(matches!(
            admit(&p, &[], no_id.as_bytes()).unwrap_err(),
            Rejection::Malformed(_)
        ));
    }

    #[test]
    fn samples_are_accepted() {
        let now = SystemTime::now();
        for key in [None, Some("sample encrypt key")] {
            let c = Config {
                verification_token: Secret::from(TOKEN),
                encrypt_key: key.map(Secret::from),
                legacy_card_callbacks: false,
            };
            let p = Feishu::new(&c).unwrap();
            let mut o = SampleOptions::new(now);
            o.id = Some("evt-1".into());
            let r = sample(&c, &o).unwrap();
            assert_eq!(r.headers.len(), if key.is_some() { 4 } else { 1 });
            let (e, _) = event(admit(&p, &r.headers, &r.body).unwrap());
            assert_eq!(e.id, "evt-1");
            assert_eq!(e.kind, "feishu.im.message.receive_v1");
            assert_eq!(e.subject.as_deref(), Some("oc_5ad11d72b830411d72b836c20"));
            assert!(!serde_json::to_string(&e.data).unwrap().contains(TOKEN));

            o.event = Some("card.action.trigger".into());
            let r = sample(&c, &o).unwrap();
            let (e, _) = event(admit(&p, &r.headers, &r.body).unwrap());
            assert_eq!(e.kind, "feishu.card.action.trigger");

            o.event = Some("contact.user.created_v3".into());
            o.payload = Some(br#"{"object":{"open_id":"ou_new"}}"#.to_vec());
            let r = sample(&c, &o).unwrap();
            let (e, _) = event(admit(&p, &r.headers, &r.body).unwrap());
            assert_eq!(e.kind, "feishu.contact.user.created_v3");
            assert_eq!(e.subject, None);

            o.event = Some("url_verification".into());
            let r = sample(&c, &o).unwrap();
            let reply = control(admit(&p, &r.headers, &r.body).unwrap());
            assert!(reply.body.starts_with(br#"{"challenge":""#));
        }
    }

    #[test]
    fn config_errors() {
        let errs = Feishu::new(&Config {
            verification_token: Secret::from(" "),
            encrypt_key: Some(Secret::from("")),
            legacy_card_callbacks: false,
        })
        .err()
        .unwrap();
        let keys: Vec<_> = errs.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, ["verification_token", "encrypt_key"]);
        assert!(serde_json::from_str::<Config>(r#"{"encrypt_key":"k"}"#).is_err());
        assert!(
            serde_json::from_str::<Config>(r#"{"verification_token":"t","encryptKey":"k"}"#)
                .is_err()
        );
        let c: Config =
            serde_json::from_str(r#"{"verification_token":"tok-9f8e","encrypt_key":"key-7d6c"}"#)
                .unwrap();
        assert!(Feishu::new(&c).is_ok());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("tok-9f8e") && !debug.contains("key-7d6c"),
            "{debug}"
        );
        assert!(sample(
            &Config {
                verification_token: Secret::from(""),
                encrypt_key: None,
                legacy_card_callbacks: false,
            },
            &SampleOptions::new(SystemTime::now())
        )
        .is_err());
    }

    // Issue 11, class 3: with an Encrypt Key, a 40-digit signature is not a way around the
    // Encrypt Key signature: the SHA-1 card check over the Verification Token (which every
    // plain event carries) is taken only when asked for.
    #[test]
    fn class3_encrypt_key_does_not_fall_back_to_legacy_cards() {
        let body = br#"{"open_id":"ou_x","open_message_id":"om_y","action":{"tag":"button","value":{"k":"v"}}}"#;
        let headers = vec![
            (TIMESTAMP.to_string(), "1700000000".to_string()),
            (NONCE.to_string(), "nonce-abc".to_string()),
            (
                SIGNATURE.to_string(),
                legacy_card_signature("1700000000", "nonce-abc", "verification-token-xyz", body),
            ),
        ];
        let strict = feishu("verification-token-xyz", Some(KEY));
        assert_eq!(
            admit(&strict, &headers, body).unwrap_err(),
            Rejection::BadSignature
        );
        let opted_in = feishu_cards("verification-token-xyz", Some(KEY), true);
        assert!(admit(&opted_in, &headers, body).is_ok());
        let plain = feishu("verification-token-xyz", None);
        assert!(admit(&plain, &headers, body).is_ok());
        let c: Config = serde_json::from_str(
            r#"{"verification_token":"t","encrypt_key":"k","legacy_card_callbacks":true}"#,
        )
        .unwrap();
        assert!(c.legacy_card_callbacks);
    }
}
