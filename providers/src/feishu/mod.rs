//! Feishu / Lark event subscription and callbacks (docs/providers/feishu.md).
//!
//! With an `encrypt_key` the body is `{"encrypt":"…"}` and `X-Lark-Signature` =
//! hex(SHA-256(timestamp ‖ nonce ‖ encrypt_key ‖ raw body)) is required; the payload is
//! AES-256-CBC under SHA-256(encrypt_key) with the IV in front. Without one the body is
//! plain JSON and the Verification Token inside it is the only check. The token is
//! checked after decryption in both cases and removed from the published data: it is a secret.
//!
//! `url_verification` is answered with `{"challenge":…}` and not published. The signature is
//! not applied to it (larksuite/oapi-sdk-go's dispatcher skips `VerifySign` for it), so
//! an unsigned or badly signed url_verification is accepted when its token matches: the token
//! is its authentication. Every other request without a valid signature is refused with the
//! signature's rejection, whatever its ciphertext holds, so an unsigned request cannot probe
//! the padding of a ciphertext (no CBC padding oracle). A plain url_verification is accepted
//! with an `encrypt_key` too: the message-card request URL may check that way, and answering
//! it publishes nothing.
//!
//! Schema 2.0 events (and `card.action.trigger` callbacks) use `header.event_id`; schema 1.0
//! events use `uuid`. Legacy message-card callbacks are signed with
//! hex(SHA-1(timestamp ‖ nonce ‖ verification_token ‖ raw body)), 40 hex digits; they
//! carry no id, so theirs is `sha256:` of the signed timestamp, nonce and body: a replay maps
//! to the same id, two clicks do not. Feishu defines no timestamp window and retries for
//! about 7 h, so none is enforced; dedup on the event id catches replays.

//!
//! `card.rs` takes the legacy card callbacks; `sample.rs` signs (and encrypts) as Feishu does.

mod card;
#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::crypto;
use crate::registry::ConfigKeys;
use crate::shared::{
    encrypt_field, json_int, non_empty, raw_members, raw_object_data, raw_value, rfc3339_millis,
    type_name_or_unknown,
};
use crate::{Admission, ConfigError, Event, ProviderKind, RawRequest, Rejection, Reply, Secret};

#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;
#[cfg(any(test, feature = "sign"))]
pub use sample::{decrypt, signature};

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["verification_token", "encrypt_key"],
    public: &[],
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

pub(crate) struct Feishu {
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
fn aes_key(encrypt_key: &str) -> [u8; 32] {
    crypto::sha256(&[encrypt_key.as_bytes()])
}

pub(super) fn decrypt_with(key: &[u8; 32], encrypt: &str) -> Option<Vec<u8>> {
    let buf = crypto::b64(encrypt)?;
    if buf.len() < 32 {
        return None;
    }
    let (iv, ct) = buf.split_at(16);
    let plain = crypto::aes_cbc_decrypt(key, iv, ct)?;
    crypto::pkcs7_unpad(&plain, 16).map(<[u8]>::to_vec)
}

/// Compares a received hex digest with the expected bytes in constant time.
fn hex_matches(received: &str, expected: &[u8]) -> bool {
    hex::decode(received).is_ok_and(|got| crypto::ct_eq(&got, expected))
}

fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice(bytes).ok()
}

fn is_url_verification(v: &Map<String, Value>) -> bool {
    v.get("type").and_then(Value::as_str) == Some(URL_VERIFICATION)
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
    .find_map(|p| non_empty(event.pointer(p)))
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
        let signature = signature.ok_or(Rejection::missing(SIGNATURE))?;
        let ts = req.require_header(TIMESTAMP)?;
        let nonce = req.require_header(NONCE)?;
        let parts = [
            ts.as_bytes(),
            nonce.as_bytes(),
            key.text.expose().as_bytes(),
            req.body,
        ];
        if hex_matches(signature, &crypto::sha256(&parts)) {
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
        let encrypt = encrypt_field(req.body);
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
                self.dispatch(&plain, v)
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
        self.dispatch(req.body, v)
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

    /// A verified (or token-only, plain mode) payload `text`, parsed as `v`: url_verification,
    /// schema 2.0 or 1.0. `data` is `text` without the token, every other value as sent.
    fn dispatch(&self, text: &[u8], mut v: Map<String, Value>) -> Result<Admission, Rejection> {
        let not_object = Rejection::Malformed("body is not a JSON object");
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
            let field = |name: &str| non_empty(header.get(name)).map(str::to_owned);
            let id =
                field("event_id").ok_or(Rejection::Malformed("event without header.event_id"))?;
            let event_type = field("event_type")
                .ok_or(Rejection::Malformed("event without header.event_type"))?;
            let time = time_from_millis(header.get("create_time").and_then(json_int));
            let subject = chat_id(v.get("event"));
            let mut members = raw_members(text).ok_or(not_object.clone())?;
            let mut header = members
                .get("header")
                .and_then(|h| raw_members(h.get().as_bytes()))
                .ok_or(not_object)?;
            header.remove("token");
            let header = serde_json::to_string(&header).expect("raw members are JSON");
            members.insert(
                "header".into(),
                raw_value(header.as_bytes()).expect("an object is JSON"),
            );
            return Ok(Admission::Event {
                event: Event {
                    id,
                    kind: format!("feishu.{}", type_name_or_unknown(&event_type)),
                    provider_event: event_type,
                    time,
                    subject,
                    data: raw_object_data(&members),
                    content_key: None,
                },
                ack: ack(),
            });
        }
        if v.contains_key("uuid") || v.get("type").and_then(Value::as_str) == Some("event_callback")
        {
            self.token_matches(v.get("token"))?;
            let mut members = raw_members(text).ok_or(not_object)?;
            members.remove("token");
            let v = Value::Object(v);
            let id = non_empty(v.get("uuid"))
                .ok_or(Rejection::Malformed("schema 1.0 event without uuid"))?
                .to_owned();
            let event_type = non_empty(v.pointer("/event/type"))
                .ok_or(Rejection::Malformed("schema 1.0 event without event.type"))?
                .to_owned();
            return Ok(Admission::Event {
                event: Event {
                    id,
                    kind: format!("feishu.{}", type_name_or_unknown(&event_type)),
                    provider_event: event_type,
                    time: time_from_millis(v.get("ts").and_then(fractional_secs_to_millis)),
                    subject: chat_id(v.get("event")),
                    data: raw_object_data(&members),
                    content_key: None,
                },
                ack: ack(),
            });
        }
        Err(Rejection::Malformed("not a Feishu event"))
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
