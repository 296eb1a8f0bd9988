//! DingTalk (钉钉): two kinds of callback under one provider id, chosen by `mode`.
//!
//! - `mode = "event"` (default): event subscription HTTP push, PROVIDERS.md §4b. The query
//!   carries `msg_signature` (or `signature`), `timeStamp` (or `timestamp`) and `nonce`; the
//!   body is `{"encrypt":"…"}`. The signature is SHA-1 over the sorted strings (token,
//!   timestamp, nonce, encrypt); the payload is AES-256-CBC with a 32-byte PKCS#7 block and
//!   ends with the owner key (appKey / corpId / suiteKey). DingTalk wants an encrypted
//!   `success` back within 1.5 s; `check_url` gets the same answer and is not published.
//!   DingTalk sends no event id, so the id is `sha256:` + hex SHA-256 of the decrypted
//!   message: a retry is re-encrypted with a new random prefix but maps to the same id.
//!   No timestamp window is enforced (the official SDK enforces none, §4b "Freshness").
//! - `mode = "robot"`: robot message callback, §4a. Headers `timestamp` (ms) and `sign` =
//!   b64(HMAC-SHA256(appSecret, timestamp + "\n" + appSecret)), accepted within ±1 h. The
//!   body is not signed, so a captured request replays within the hour: dedup on `msgId`
//!   catches a plain replay, not one with another body or `msgId` (`hookgate check` warns).
//!   `msgId`, `msgtype` and `conversationId` are taken only in DingTalk's shape (issue 11).
//!
//! Refusals in event mode: a missing query parameter is `MissingHeader(<parameter>)`; a
//! signature mismatch is `BadSignature`; a ciphertext that does not decrypt (base64, length,
//! padding, length prefix) after a valid signature is `Malformed` (400): the sender proved
//! it knows the token, so this is a wrong `aes_key` or a broken sender, not a forgery; an
//! owner trailer that is not `owner_key` is `WrongRecipient("owner_key")`.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::crypto;
use crate::msgcrypt;
use crate::sign::{SampleOptions, SampleRequest};
use crate::{
    form, require_secrets, rfc3339_millis, unix_millis, within_window, Admission, ConfigError,
    Data, Event, ProviderKind, RawRequest, Rejection, Reply, Secret,
};

// Event mode: query parameters. The official SDK reads the first name, then the second.
const MSG_SIGNATURE: &str = "msg_signature";
const SIGNATURE: &str = "signature";
const TIME_STAMP: &str = "timeStamp";
const TIMESTAMP: &str = "timestamp";
const NONCE: &str = "nonce";
// Robot mode: headers.
const ROBOT_TIMESTAMP: &str = "timestamp";
const ROBOT_SIGN: &str = "sign";

/// "相差1小时以上，则认为是非法的请求" (§4a).
const ROBOT_TOLERANCE_MS: i64 = 3_600_000;
const CHECK_URL: &str = "check_url";

/// Which DingTalk callback a source terminates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Event subscription (事件订阅), encrypted HTTP push.
    #[default]
    Event,
    /// Robot message callback (机器人接收消息), HMAC-signed headers.
    Robot,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    /// Event mode: the Token of the event subscription page.
    pub token: Option<Secret>,
    /// Event mode: the 43-character `aes_key` of the event subscription page.
    pub aes_key: Option<Secret>,
    /// Event mode: appKey (internal app), corpId (legacy 注册回调) or suiteKey (ISV app).
    pub owner_key: Option<String>,
    /// Robot mode: the app secrets of the robot's app; every one is tried (rotation).
    pub app_secrets: Option<Vec<Secret>>,
}

pub struct DingTalk {
    mode: Keys,
}

enum Keys {
    Event(EventKeys),
    Robot(Vec<Secret>),
}

/// Event-mode key material, decoded once at start-up.
struct EventKeys {
    token: Secret,
    key: AesKey,
    owner_key: String,
}

/// The decoded 32-byte AES key; `Debug` never prints it.
struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl DingTalk {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let misplaced = |errors: &mut Vec<ConfigError>, key: &'static str, present: bool| {
            if present {
                let other = match c.mode {
                    Mode::Event => "robot",
                    Mode::Robot => "event",
                };
                errors.push(ConfigError::new(
                    key,
                    format!("only used with mode = \"{other}\""),
                ));
            }
        };
        match c.mode {
            Mode::Event => {
                misplaced(&mut errors, "app_secrets", c.app_secrets.is_some());
                let token = match &c.token {
                    Some(t) if !t.expose().trim().is_empty() => Some(t.clone()),
                    Some(_) => {
                        errors.push(ConfigError::new("token", "must not be empty"));
                        None
                    }
                    None => {
                        errors.push(ConfigError::new("token", "required in mode = \"event\""));
                        None
                    }
                };
                let key = match &c.aes_key {
                    Some(k) => match aes_key_bytes(k.expose()) {
                        Ok(k) => Some(AesKey(k)),
                        Err(e) => {
                            errors.push(ConfigError::new("aes_key", e));
                            None
                        }
                    },
                    None => {
                        errors.push(ConfigError::new("aes_key", "required in mode = \"event\""));
                        None
                    }
                };
                let owner_key = match c.owner_key.as_deref().map(str::trim) {
                    Some(o) if !o.is_empty() => Some(o.to_owned()),
                    Some(_) => {
                        errors.push(ConfigError::new("owner_key", "must not be empty"));
                        None
                    }
                    None => {
                        errors.push(ConfigError::new(
                            "owner_key",
                            "required in mode = \"event\" (appKey, corpId or suiteKey)",
                        ));
                        None
                    }
                };
                match (token, key, owner_key) {
                    (Some(token), Some(key), Some(owner_key)) if errors.is_empty() => {
                        Ok(DingTalk {
                            mode: Keys::Event(EventKeys {
                                token,
                                key,
                                owner_key,
                            }),
                        })
                    }
                    _ => Err(errors),
                }
            }
            Mode::Robot => {
                misplaced(&mut errors, "token", c.token.is_some());
                misplaced(&mut errors, "aes_key", c.aes_key.is_some());
                misplaced(&mut errors, "owner_key", c.owner_key.is_some());
                let secrets = match &c.app_secrets {
                    Some(s) => match require_secrets("app_secrets", s) {
                        Ok(()) => Some(s.clone()),
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    },
                    None => {
                        errors.push(ConfigError::new(
                            "app_secrets",
                            "required in mode = \"robot\"",
                        ));
                        None
                    }
                };
                match secrets {
                    Some(s) if errors.is_empty() => Ok(DingTalk {
                        mode: Keys::Robot(s),
                    }),
                    _ => Err(errors),
                }
            }
        }
    }
}

/// Decodes the console's 43-character `aes_key` (`[A-Za-z0-9]`) to its 32 bytes. The last
/// character carries non-zero trailing bits, so this needs lenient base64 (PROVIDERS.md §0).
pub fn aes_key_bytes(aes_key: &str) -> Result<[u8; 32], String> {
    msgcrypt::aes_key_bytes(aes_key)
}

/// `hex(SHA1(concat(sort([token, timestamp, nonce, encrypt]))))`: signs both the push and
/// the reply.
pub fn event_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    msgcrypt::signature(token, timestamp, nonce, encrypt)
}

/// `b64(AES-256-CBC(key, iv = key[..16], random16 ‖ u32be(len) ‖ msg ‖ owner_key ‖ PKCS#7/32))`.
///
/// # Panics
/// If `msg` is 4 GiB or longer (its length must fit the u32 prefix).
pub fn encrypt(key: &[u8; 32], random16: &[u8; 16], msg: &[u8], owner_key: &str) -> String {
    msgcrypt::seal(key, random16, msg, owner_key)
}

/// Decrypts and checks the owner trailer: the message bytes.
fn decrypt(key: &[u8; 32], owner_key: &str, encrypt: &str) -> Result<Vec<u8>, Rejection> {
    msgcrypt::open_for(key, owner_key, encrypt, "owner_key")
}

/// The JSON body of the encrypted `success` reply (§4b "Required reply"), fields in the
/// documented order. `random16` and `nonce` are arguments so the reply is a known-answer
/// test; `admit` passes fresh random values.
pub fn success_reply_body(
    token: &str,
    key: &[u8; 32],
    owner_key: &str,
    timestamp: &str,
    nonce: &str,
    random16: &[u8; 16],
) -> String {
    let encrypt = encrypt(key, random16, b"success", owner_key);
    let msg_signature = event_signature(token, timestamp, nonce, &encrypt);
    format!(
        r#"{{"msg_signature":{},"timeStamp":{},"nonce":{},"encrypt":{}}}"#,
        json_string(&msg_signature),
        json_string(timestamp),
        json_string(nonce),
        json_string(&encrypt)
    )
}

fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// Checks a reply as DingTalk does (signature over its own `timeStamp`/`nonce`/`encrypt`,
/// decryption, owner trailer) and returns the decrypted text, which must be `success`.
/// For tests of a deployed gateway: hookgate's own replies go through it.
pub fn decrypt_reply(
    token: &str,
    aes_key: &str,
    owner_key: &str,
    reply_json: &[u8],
) -> Result<String, Rejection> {
    #[derive(Deserialize)]
    struct ReplyBody {
        msg_signature: String,
        #[serde(rename = "timeStamp")]
        time_stamp: String,
        nonce: String,
        encrypt: String,
    }
    let key = aes_key_bytes(aes_key).map_err(|_| Rejection::Malformed("aes_key is invalid"))?;
    let r: ReplyBody = serde_json::from_slice(reply_json)
        .map_err(|_| Rejection::Malformed("reply is not the encrypted reply JSON"))?;
    let expected = event_signature(token, &r.time_stamp, &r.nonce, &r.encrypt);
    if !crypto::ct_eq(expected.as_bytes(), r.msg_signature.as_bytes()) {
        return Err(Rejection::BadSignature);
    }
    let msg = decrypt(&key, owner_key, &r.encrypt)?;
    String::from_utf8(msg).map_err(|_| Rejection::Malformed("reply is not UTF-8"))
}

/// `b64(HMAC-SHA256(key = appSecret, msg = timestamp + "\n" + appSecret))`: the robot `sign`.
pub fn robot_sign(timestamp: &str, app_secret: &str) -> String {
    crypto::b64_encode(&robot_mac(timestamp, app_secret).finalize().into_bytes())
}

fn robot_mac(timestamp: &str, app_secret: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(app_secret.as_bytes());
    mac
}

/// A query parameter that must be present and non-empty.
fn param(req: &RawRequest<'_>, name: &str) -> Option<String> {
    req.query_param(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `name` from a JSON object as an integer, whether sent as a number or a decimal string.
fn int_field(obj: &Map<String, Value>, name: &str) -> Option<i64> {
    match obj.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// RFC 3339 of a Unix time that may be seconds or milliseconds (§8: both eras exist).
/// Below 10^11 it is seconds: as milliseconds that would be 1973.
fn time_secs_or_millis(t: i64) -> Option<String> {
    if t <= 0 {
        return None;
    }
    rfc3339_millis(if t < 100_000_000_000 {
        t.saturating_mul(1000)
    } else {
        t
    })
}

fn non_empty_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl DingTalk {
    fn admit_event(&self, k: &EventKeys, req: &RawRequest<'_>) -> Result<Admission, Rejection> {
        let signature = param(req, MSG_SIGNATURE)
            .or_else(|| param(req, SIGNATURE))
            .ok_or(Rejection::MissingHeader(SIGNATURE))?;
        let timestamp = param(req, TIME_STAMP)
            .or_else(|| param(req, TIMESTAMP))
            .ok_or(Rejection::MissingHeader(TIMESTAMP))?;
        let nonce = param(req, NONCE).ok_or(Rejection::MissingHeader(NONCE))?;

        // The signature covers the `encrypt` text, which only the body can give us.
        #[derive(Deserialize)]
        struct Encrypted {
            encrypt: String,
        }
        let body: Encrypted = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not {\"encrypt\":…}"))?;
        let expected = event_signature(k.token.expose(), &timestamp, &nonce, &body.encrypt);
        if !crypto::ct_eq(
            expected.as_bytes(),
            signature.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(Rejection::BadSignature);
        }

        let msg = decrypt(&k.key.0, &k.owner_key, &body.encrypt)?;
        let plain: Map<String, Value> = serde_json::from_slice(&msg)
            .map_err(|_| Rejection::Malformed("decrypted message is not a JSON object"))?;
        let event_type = non_empty_str(&plain, "EventType")
            .ok_or(Rejection::Malformed("decrypted message has no EventType"))?;

        let random16: [u8; 16] = crypto::random_bytes(16)
            .try_into()
            .expect("random_bytes(16) returns 16 bytes");
        let ack = Reply {
            status: 200,
            content_type: Some(Reply::JSON),
            body: success_reply_body(
                k.token.expose(),
                &k.key.0,
                &k.owner_key,
                &timestamp,
                &crypto::random_alnum(8),
                &random16,
            )
            .into_bytes(),
        };
        if event_type == CHECK_URL {
            return Ok(Admission::Control(ack));
        }

        // The approval instance is the most specific key; otherwise the tenant.
        let subject = ["processInstanceId", "CorpId", "corpId"]
            .iter()
            .find_map(|name| non_empty_str(&plain, name))
            .map(str::to_owned);
        let event = Event {
            id: crate::sha256_key(&msg),
            // EventType is one segment of the type: a dot in it must not add a level.
            kind: format!(
                "dingtalk.{}",
                crate::type_name_or_unknown(&event_type.replace('.', "_"))
            ),
            provider_event: event_type.to_owned(),
            time: int_field(&plain, "TimeStamp").and_then(time_secs_or_millis),
            subject,
            data: Data::json(&msg)?,
            content_key: None,
        };
        Ok(Admission::Event { event, ack })
    }

    fn admit_robot(
        &self,
        secrets: &[Secret],
        req: &RawRequest<'_>,
        now: SystemTime,
    ) -> Result<Admission, Rejection> {
        let timestamp = req.require_header(ROBOT_TIMESTAMP)?;
        let sign = req.require_header(ROBOT_SIGN)?;
        // A timestamp that is not a number is not inside the window either.
        let ts: i64 = timestamp.parse().map_err(|_| Rejection::StaleTimestamp)?;
        if !within_window(ts, unix_millis(now), ROBOT_TOLERANCE_MS) {
            return Err(Rejection::StaleTimestamp);
        }
        let mac = crypto::b64(sign).ok_or(Rejection::BadSignature)?;
        if !secrets
            .iter()
            .any(|s| robot_mac(timestamp, s.expose()).verify_slice(&mac).is_ok())
        {
            return Err(Rejection::BadSignature);
        }

        // DingTalk signs the timestamp only: everything below comes from an unsigned body, so
        // it is taken only in the shape DingTalk sends (msgId `msg…=` base64-ish, msgtype a
        // name such as `text` or `richText`, conversationId `cid…==`).
        let body: Map<String, Value> = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not a JSON object"))?;
        let msg_id =
            non_empty_str(&body, "msgId").ok_or(Rejection::Malformed("body has no msgId"))?;
        let msg_id = crate::bounded(msg_id, crate::shape::visible, "msgId is not a message id")?;
        let msgtype =
            non_empty_str(&body, "msgtype").ok_or(Rejection::Malformed("body has no msgtype"))?;
        let msgtype = crate::bounded(msgtype, is_msgtype_char, "msgtype is not a message type")?;
        let conversation = non_empty_str(&body, "conversationId")
            .map(|c| crate::bounded(c, crate::shape::visible, "conversationId is not an id"))
            .transpose()?;
        let event = Event {
            id: msg_id.to_owned(),
            kind: format!(
                "dingtalk.robot.{}",
                crate::type_name_or_unknown(&msgtype.replace('.', "_"))
            ),
            provider_event: msgtype.to_owned(),
            time: int_field(&body, "createAt")
                .filter(|t| *t > 0)
                .and_then(rfc3339_millis),
            subject: conversation.map(str::to_owned),
            data: Data::json(req.body)?,
            content_key: None,
        };
        Ok(Admission::Event {
            event,
            ack: Reply::json(200, &serde_json::json!({})),
        })
    }
}

/// A robot `msgtype`: `text`, `picture`, `richText`, … (`[A-Za-z0-9_]`).
fn is_msgtype_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Config {
    /// Human warnings for `hookgate check`.
    pub fn warnings(&self) -> Vec<String> {
        match self.mode {
            Mode::Robot => vec![
                "robot mode: DingTalk signs only the timestamp, not the body; a captured request can be replayed for an hour with another body and a fresh msgId (each a new event)".to_owned(),
            ],
            Mode::Event => Vec::new(),
        }
    }
}

impl crate::Provider for DingTalk {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Dingtalk
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        match &self.mode {
            Keys::Event(k) => self.admit_event(k, req),
            Keys::Robot(secrets) => self.admit_robot(secrets, req, now),
        }
    }
}

/// A request as DingTalk sends it to this source: an encrypted, signed event push (event
/// mode; `o.payload` is the plaintext JSON, `o.event` the `EventType` of the default one) or
/// a signed robot message (robot mode; `o.payload` is the body, `o.event` the `msgtype`,
/// `o.id` the `msgId`). Event pushes carry no id, so `o.id` is not used there.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = DingTalk::new(c).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let now_ms = unix_millis(o.now);
    match &p.mode {
        Keys::Event(k) => {
            let msg = o.payload.clone().unwrap_or_else(|| {
                let event_type = o.event.as_deref().unwrap_or("user_add_org");
                format!(
                    r#"{{"EventType":{},"TimeStamp":"{now_ms}","CorpId":"ding9f50b15bccd16741","UserId":["manager7675"]}}"#,
                    json_string(event_type)
                )
                .into_bytes()
            });
            let random16: [u8; 16] = crypto::random_bytes(16)
                .try_into()
                .expect("random_bytes(16) returns 16 bytes");
            Ok(event_push(
                k.token.expose(),
                &k.key.0,
                &k.owner_key,
                &now_ms.to_string(),
                &crypto::random_alnum(8),
                &random16,
                &msg,
            ))
        }
        Keys::Robot(secrets) => {
            let secret = secrets.first().ok_or("no app secret configured")?;
            let body = o.payload.clone().unwrap_or_else(|| {
                let msgtype = o.event.as_deref().unwrap_or("text");
                let msg_id = o.id_or_random("msg");
                let conversation = "cidk8Pr1AsvVzJ4w9Aay2qdGA==";
                format!(
                    concat!(
                        r#"{{"conversationId":{conv},"atUsers":[{{"dingtalkId":"$:LWCP_v1:$rdbQ3pZ1r8ZsJH8r6Vfltw=="}}],"#,
                        r#""chatbotCorpId":"ding9f50b15bccd16741","chatbotUserId":"$:LWCP_v1:$rdbQ3pZ1r8ZsJH8r6Vfltw==","#,
                        r#""msgId":{id},"senderNick":"Zhang San","isAdmin":false,"senderStaffId":"manager7675","#,
                        r#""sessionWebhookExpiredTime":{expires},"createAt":{now},"senderCorpId":"ding9f50b15bccd16741","#,
                        r#""conversationType":"2","senderId":"$:LWCP_v1:$Wk1mZmJ4K2h6aVpPRkE9PQ==","#,
                        r#""conversationTitle":"hookgate test","isInAtList":true,"#,
                        r#""sessionWebhook":"https://oapi.dingtalk.com/robot/sendBySession?session=5f2c8b0e1d3a4f6e9b7c0a1d2e3f4a5b","#,
                        r#""text":{{"content":" hello hookgate"}},"robotCode":"dingrobot7c1f0e2d","msgtype":{msgtype}}}"#
                    ),
                    conv = json_string(conversation),
                    id = json_string(&msg_id),
                    expires = now_ms.saturating_add(5_400_000),
                    now = now_ms,
                    msgtype = json_string(msgtype),
                )
                .into_bytes()
            });
            let ts = now_ms.to_string();
            Ok(SampleRequest {
                query: String::new(),
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/json; charset=utf-8".into(),
                    ),
                    ("timestamp".into(), ts.clone()),
                    ("sign".into(), robot_sign(&ts, secret.expose())),
                ],
                body,
            })
        }
    }
}

/// An event push as DingTalk sends it: `msg` encrypted with `random16`, signed over
/// `timestamp` and `nonce`, with the current query names (`signature`, `timestamp`).
pub fn event_push(
    token: &str,
    key: &[u8; 32],
    owner_key: &str,
    timestamp: &str,
    nonce: &str,
    random16: &[u8; 16],
    msg: &[u8],
) -> SampleRequest {
    let encrypt = encrypt(key, random16, msg, owner_key);
    let signature = event_signature(token, timestamp, nonce, &encrypt);
    SampleRequest {
        query: format!(
            "signature={}&timestamp={}&nonce={}",
            form::encode(signature.as_bytes()),
            form::encode(timestamp.as_bytes()),
            form::encode(nonce.as_bytes())
        ),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: format!(r#"{{"encrypt":{}}}"#, json_string(&encrypt)).into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Provider;
    use sha2::Digest;
    use std::time::{Duration, UNIX_EPOCH};

    // PROVIDERS.md §4c (open-dingtalk/DingTalk-Callback-Crypto DingCallbackCrypto3.py).
    const TOKEN: &str = "mryue";
    const AES_KEY: &str = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7";
    const OWNER: &str = "ding6ccabc44d2c8d38b";
    const TS: &str = "1608001896814";
    const NONCE_V: &str = "WL4PK6yA";
    const ENCRYPT: &str = "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3";
    const SIG: &str = "03044561471240d4a14bb09372dfcfd4fd0e40cb";

    fn event_config(token: &str, aes_key: &str, owner: &str) -> Config {
        Config {
            mode: Mode::Event,
            token: Some(Secret::from(token)),
            aes_key: Some(Secret::from(aes_key)),
            owner_key: Some(owner.into()),
            app_secrets: None,
        }
    }

    fn official() -> DingTalk {
        DingTalk::new(&event_config(TOKEN, AES_KEY, OWNER)).unwrap()
    }

    fn robot(secrets: &[&str]) -> DingTalk {
        DingTalk::new(&robot_config(secrets)).unwrap()
    }

    fn robot_config(secrets: &[&str]) -> Config {
        Config {
            mode: Mode::Robot,
            token: None,
            aes_key: None,
            owner_key: None,
            app_secrets: Some(secrets.iter().map(|s| Secret::from(*s)).collect()),
        }
    }

    fn key() -> [u8; 32] {
        aes_key_bytes(AES_KEY).unwrap()
    }

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn admit_q(p: &DingTalk, query: &str, body: &[u8]) -> Result<Admission, Rejection> {
        let headers: Vec<(String, String)> = vec![];
        p.admit(
            &RawRequest {
                headers: &headers,
                query,
                body,
            },
            at_ms(1_608_001_896_814),
        )
    }

    fn admit_sample(
        p: &DingTalk,
        r: &SampleRequest,
        now: SystemTime,
    ) -> Result<Admission, Rejection> {
        p.admit(
            &RawRequest {
                headers: &r.headers,
                query: &r.query,
                body: &r.body,
            },
            now,
        )
    }

    fn body_of(encrypt: &str) -> Vec<u8> {
        format!(r#"{{"encrypt":"{encrypt}"}}"#).into_bytes()
    }

    fn signed_query(token: &str, encrypt: &str) -> String {
        format!(
            "msg_signature={}&timeStamp={TS}&nonce={NONCE_V}",
            event_signature(token, TS, NONCE_V, encrypt)
        )
    }

    /// Raw AES over an already padded buffer: for ciphertexts with broken padding.
    fn encrypt_raw(plain: &[u8]) -> String {
        let k = key();
        crypto::b64_encode(&crypto::aes_cbc_encrypt(&k, &k[..16], plain).unwrap())
    }

    // OFFICIAL: msg_signature of the SDK self-test.
    #[test]
    fn official_signature_vector() {
        assert_eq!(event_signature(TOKEN, TS, NONCE_V, ENCRYPT), SIG);
        assert_ne!(event_signature("other", TS, NONCE_V, ENCRYPT), SIG);
    }

    // OFFICIAL: decryption gives check_url, L = 25, pad = 31, owner trailer.
    #[test]
    fn official_decrypt_vector() {
        let k = key();
        let raw = crypto::aes_cbc_decrypt(&k, &k[..16], &crypto::b64(ENCRYPT).unwrap()).unwrap();
        assert_eq!(*raw.last().unwrap(), 31, "pad value");
        assert_eq!(&raw[16..20], &25u32.to_be_bytes());
        let (msg, owner) = msgcrypt::open(&k, ENCRYPT).unwrap();
        assert_eq!(msg, br#"{"EventType":"check_url"}"#);
        assert_eq!(owner, OWNER.as_bytes());
        assert_eq!(decrypt(&k, OWNER, ENCRYPT).unwrap(), msg);
        assert_eq!(
            decrypt(&k, "dingother", ENCRYPT).unwrap_err(),
            Rejection::WrongRecipient("owner_key")
        );
    }

    // NEGATIVE: a strict decoder rejects the console key; ours does not.
    #[test]
    fn negative_vector_strict_base64_rejects_key() {
        assert!(crypto::b64(&format!("{AES_KEY}=")).is_none());
        assert_eq!(aes_key_bytes(AES_KEY).unwrap().len(), 32);
    }

    // SELF: the encrypted success reply with a fixed prefix and nonce.
    #[test]
    fn self_vector_reply() {
        let body = success_reply_body(TOKEN, &key(), OWNER, TS, "abcdefgh", b"0123456789abcdef");
        assert_eq!(
            body,
            r#"{"msg_signature":"942f3b998eb2a6186991a5267e9ed762c15c0dfa","timeStamp":"1608001896814","nonce":"abcdefgh","encrypt":"IJtyRhe3IwDdDbVy9KT2PQsXn9Di6CEK7IwoL8L4CQ+xgriQ8Y0sMuvHw0Vv9Ce+6cMGlc1MMsHA2a+tCiq9IA=="}"#
        );
        assert_eq!(
            decrypt_reply(TOKEN, AES_KEY, OWNER, body.as_bytes()).unwrap(),
            "success"
        );
    }

    // SELF: robot sign.
    #[test]
    fn self_vector_robot_sign() {
        assert_eq!(
            robot_sign("1577262236757", "testAppSecret"),
            "Dc2jA7l8d6QkQ44GaOlQvDzR5W1cS7UBLolNXURn+v4="
        );
    }

    #[test]
    fn official_check_url_push_is_answered_not_published() {
        let query = format!("msg_signature={SIG}&timeStamp={TS}&nonce={NONCE_V}");
        let Admission::Control(reply) = admit_q(&official(), &query, &body_of(ENCRYPT)).unwrap()
        else {
            panic!("check_url must be a control probe")
        };
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, Some("application/json"));
        // DingTalk's side: verify msg_signature and decrypt the reply.
        assert_eq!(
            decrypt_reply(TOKEN, AES_KEY, OWNER, &reply.body).unwrap(),
            "success"
        );
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["timeStamp"], TS);
        assert_eq!(v["nonce"].as_str().unwrap().len(), 8);
        // The current query names are accepted too.
        let query = format!("signature={SIG}&timestamp={TS}&nonce={NONCE_V}");
        assert!(matches!(
            admit_q(&official(), &query, &body_of(ENCRYPT)).unwrap(),
            Admission::Control(_)
        ));
    }

    // Plays DingTalk: encrypts, signs, pushes, then checks the reply as DingTalk would.
    #[test]
    fn event_round_trip_and_retry_keeps_the_id() {
        let msg = br#"{"EventType":"bpms_instance_change","processInstanceId":"a171de6c-8bd6-4d3d","corpId":"ding9f50b15bccd16741","TimeStamp":"1608001896814","type":"start"}"#;
        let p = official();
        let first = event_push(
            TOKEN,
            &key(),
            OWNER,
            TS,
            "n0nce001",
            b"AAAAAAAAAAAAAAAA",
            msg,
        );
        let retry = event_push(
            TOKEN,
            &key(),
            OWNER,
            "1608001899000",
            "n0nce002",
            b"BBBBBBBBBBBBBBBB",
            msg,
        );
        assert_ne!(first.body, retry.body, "a retry is encrypted afresh");
        let now = at_ms(1_608_001_900_000);
        let Admission::Event { event, ack } = admit_sample(&p, &first, now).unwrap() else {
            panic!("expected an event")
        };
        let expected_id = format!("sha256:{}", hex::encode(Sha256::digest(msg)));
        assert_eq!(event.id, expected_id);
        assert_eq!(event.kind, "dingtalk.bpms_instance_change");
        assert_eq!(event.provider_event, "bpms_instance_change");
        assert_eq!(event.subject.as_deref(), Some("a171de6c-8bd6-4d3d"));
        assert_eq!(event.time.as_deref(), Some("2020-12-15T03:11:36.814Z"));
        assert_eq!(serde_json::to_string(&event.data).unwrap().as_bytes(), msg);
        assert_eq!(ack.status, 200);
        assert_eq!(
            decrypt_reply(TOKEN, AES_KEY, OWNER, &ack.body).unwrap(),
            "success"
        );
        let v: Value = serde_json::from_slice(&ack.body).unwrap();
        assert_eq!(
            v["timeStamp"], TS,
            "the reply echoes the request's timestamp"
        );

        let Admission::Event {
            event: again,
            ack: ack2,
        } = admit_sample(&p, &retry, now).unwrap()
        else {
            panic!("expected an event")
        };
        assert_eq!(again.id, expected_id, "a retry is the same event");
        assert_ne!(
            ack.body, ack2.body,
            "every reply has a fresh prefix and nonce"
        );
    }

    #[test]
    fn event_fields_corp_and_seconds() {
        let msg = br#"{"EventType":"user_add_org","TimeStamp":1608001896,"CorpId":"dingcorp","UserId":["u1"]}"#;
        let r = event_push(
            TOKEN,
            &key(),
            OWNER,
            "1608001896",
            "abc",
            b"0123456789abcdef",
            msg,
        );
        let Admission::Event { event, .. } = admit_sample(&official(), &r, at_ms(0)).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.kind, "dingtalk.user_add_org");
        assert_eq!(event.subject.as_deref(), Some("dingcorp"));
        assert_eq!(event.time.as_deref(), Some("2020-12-15T03:11:36.000Z"));
        // An odd EventType stays a single type segment.
        let msg = br#"{"EventType":"Chat.Add-Member"}"#;
        let r = event_push(TOKEN, &key(), OWNER, TS, "abc", b"0123456789abcdef", msg);
        let Admission::Event { event, .. } = admit_sample(&official(), &r, at_ms(0)).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.kind, "dingtalk.chat_add_member");
        assert_eq!(event.provider_event, "Chat.Add-Member");
        assert_eq!(event.subject, None);
        assert_eq!(event.time, None);
    }

    #[test]
    fn event_refusals() {
        let good_query = format!("msg_signature={SIG}&timeStamp={TS}&nonce={NONCE_V}");
        let body = body_of(ENCRYPT);
        // bad signature
        let q = good_query.replace(SIG, "03044561471240d4a14bb09372dfcfd4fd0e40cc");
        assert_eq!(
            admit_q(&official(), &q, &body).unwrap_err(),
            Rejection::BadSignature
        );
        // wrong token configured: the signature no longer matches
        let p = DingTalk::new(&event_config("other", AES_KEY, OWNER)).unwrap();
        assert_eq!(
            admit_q(&p, &good_query, &body).unwrap_err(),
            Rejection::BadSignature
        );
        // tampered timestamp or ciphertext without re-signing
        let q = good_query.replace(TS, "1608001896815");
        assert_eq!(
            admit_q(&official(), &q, &body).unwrap_err(),
            Rejection::BadSignature
        );
        let tampered = body_of(&ENCRYPT.replace("0vJi", "0vJj"));
        assert_eq!(
            admit_q(&official(), &good_query, &tampered).unwrap_err(),
            Rejection::BadSignature
        );
        // wrong owner key configured
        let p = DingTalk::new(&event_config(TOKEN, AES_KEY, "dingAnotherApp")).unwrap();
        assert_eq!(
            admit_q(&p, &good_query, &body).unwrap_err(),
            Rejection::WrongRecipient("owner_key")
        );
        // wrong aes_key configured: signature fine, ciphertext does not decrypt
        let p = DingTalk::new(&event_config(
            TOKEN,
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            OWNER,
        ))
        .unwrap();
        assert!(matches!(
            admit_q(&p, &good_query, &body).unwrap_err(),
            Rejection::Malformed(_)
        ));
        // corrupted ciphertext, re-signed (first byte flips the length prefix)
        let mut ct = crypto::b64(ENCRYPT).unwrap();
        ct[0] ^= 0x80;
        let corrupt = crypto::b64_encode(&ct);
        assert_eq!(
            admit_q(
                &official(),
                &signed_query(TOKEN, &corrupt),
                &body_of(&corrupt)
            )
            .unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
        // bad padding, re-signed: pad byte 33 > 32, and inconsistent pad bytes
        for pad in [[33u8; 32], {
            let mut p = [4u8; 32];
            p[29] = 3;
            p
        }] {
            let mut plain = Vec::new();
            plain.extend_from_slice(b"0123456789abcdef");
            plain.extend_from_slice(&2u32.to_be_bytes());
            plain.extend_from_slice(b"{}");
            plain.extend_from_slice(b"ding6ccabc");
            plain.extend_from_slice(&pad);
            let enc = encrypt_raw(&plain);
            assert_eq!(
                admit_q(&official(), &signed_query(TOKEN, &enc), &body_of(&enc)).unwrap_err(),
                Rejection::Malformed("encrypt does not decrypt")
            );
        }
        // length prefix beyond the buffer, re-signed
        let mut plain = b"0123456789abcdef".to_vec();
        plain.extend_from_slice(&1000u32.to_be_bytes());
        let enc = encrypt_raw(&crypto::pkcs7_pad(&plain, 32));
        assert_eq!(
            admit_q(&official(), &signed_query(TOKEN, &enc), &body_of(&enc)).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
        // truncated base64, re-signed
        let truncated = &ENCRYPT[..ENCRYPT.len() - 3];
        assert_eq!(
            admit_q(
                &official(),
                &signed_query(TOKEN, truncated),
                &body_of(truncated)
            )
            .unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
        // truncated to whole blocks (valid base64, 2 of 4 blocks): padding no longer matches
        let ct = crypto::b64(ENCRYPT).unwrap();
        let short = crypto::b64_encode(&ct[..32]);
        assert_eq!(
            admit_q(&official(), &signed_query(TOKEN, &short), &body_of(&short)).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
        // missing query parameters, each one
        for (drop, name) in [
            (format!("msg_signature={SIG}&"), "signature"),
            (format!("timeStamp={TS}&"), "timestamp"),
            (format!("&nonce={NONCE_V}"), "nonce"),
        ] {
            let q = good_query.replace(&drop, "");
            assert_eq!(
                admit_q(&official(), &q, &body).unwrap_err(),
                Rejection::MissingHeader(name),
                "{q}"
            );
        }
        let q = good_query.replace(NONCE_V, "");
        assert_eq!(
            admit_q(&official(), &q, &body).unwrap_err(),
            Rejection::MissingHeader("nonce"),
            "empty counts as missing"
        );
        // not the encrypted body
        for bad in [&b"not json"[..], br#"{"foo":"bar"}"#, br#"{"encrypt":1}"#] {
            assert!(matches!(
                admit_q(&official(), &good_query, bad).unwrap_err(),
                Rejection::Malformed(_)
            ));
        }
        // verified and decrypted, but not a DingTalk event
        for msg in [&b"[1,2]"[..], br#"{"foo":1}"#, br#"{"EventType":""}"#] {
            let r = event_push(TOKEN, &key(), OWNER, TS, "abc", b"0123456789abcdef", msg);
            assert!(matches!(
                admit_sample(&official(), &r, at_ms(0)).unwrap_err(),
                Rejection::Malformed(_)
            ));
        }
    }

    #[test]
    fn decrypt_reply_checks_like_dingtalk() {
        let body = success_reply_body(TOKEN, &key(), OWNER, TS, "abcdefgh", b"0123456789abcdef");
        let tampered = body.replace("\"abcdefgh\"", "\"abcdefgi\"");
        assert_eq!(
            decrypt_reply(TOKEN, AES_KEY, OWNER, tampered.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            decrypt_reply("other", AES_KEY, OWNER, body.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            decrypt_reply(TOKEN, AES_KEY, "dingother", body.as_bytes()).unwrap_err(),
            Rejection::WrongRecipient("owner_key")
        );
        assert!(decrypt_reply(TOKEN, AES_KEY, OWNER, b"{}").is_err());
    }

    fn robot_headers(ts: &str, sign: Option<String>) -> Vec<(String, String)> {
        let mut h = vec![(
            "Content-Type".to_string(),
            "application/json; charset=utf-8".to_string(),
        )];
        h.push(("timestamp".into(), ts.into()));
        if let Some(s) = sign {
            h.push(("sign".into(), s));
        }
        h
    }

    fn admit_robot(
        p: &DingTalk,
        headers: Vec<(String, String)>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Admission, Rejection> {
        p.admit(
            &RawRequest {
                headers: &headers,
                query: "",
                body,
            },
            at_ms(now_ms),
        )
    }

    const ROBOT_BODY: &[u8] = br#"{"conversationId":"cid123==","msgId":"msgABC","createAt":1577262236000,"conversationType":"2","senderNick":"Zhang San","text":{"content":"hi"},"msgtype":"richText"}"#;

    #[test]
    fn robot_accepts_signed_message() {
        let ts = "1577262236757";
        let p = robot(&["old-secret", "testAppSecret"]);
        let h = robot_headers(ts, Some(robot_sign(ts, "testAppSecret")));
        let Admission::Event { event, ack } =
            admit_robot(&p, h, ROBOT_BODY, 1_577_262_236_757).unwrap()
        else {
            panic!("expected an event")
        };
        assert_eq!(event.id, "msgABC");
        assert_eq!(event.kind, "dingtalk.robot.richtext");
        assert_eq!(event.provider_event, "richText");
        assert_eq!(event.subject.as_deref(), Some("cid123=="));
        assert_eq!(event.time.as_deref(), Some("2019-12-25T08:23:56.000Z"));
        assert_eq!(
            serde_json::to_string(&event.data).unwrap().as_bytes(),
            ROBOT_BODY
        );
        assert_eq!(ack, Reply::json(200, &serde_json::json!({})));
        assert_eq!(ack.body, b"{}");
    }

    #[test]
    fn robot_refusals() {
        let ts = "1577262236757";
        let t: u64 = 1_577_262_236_757;
        let p = robot(&["testAppSecret"]);
        let good = || robot_headers(ts, Some(robot_sign(ts, "testAppSecret")));
        // SELF vector value accepted as is
        let h = robot_headers(
            ts,
            Some("Dc2jA7l8d6QkQ44GaOlQvDzR5W1cS7UBLolNXURn+v4=".into()),
        );
        assert!(admit_robot(&p, h, ROBOT_BODY, t).is_ok());
        // window edges: exactly 1 h either way is fine, 1 ms more is not
        assert!(admit_robot(&p, good(), ROBOT_BODY, t + 3_600_000).is_ok());
        assert!(admit_robot(&p, good(), ROBOT_BODY, t - 3_600_000).is_ok());
        assert_eq!(
            admit_robot(&p, good(), ROBOT_BODY, t + 3_600_001).unwrap_err(),
            Rejection::StaleTimestamp,
            "stale"
        );
        assert_eq!(
            admit_robot(&p, good(), ROBOT_BODY, t - 3_600_001).unwrap_err(),
            Rejection::StaleTimestamp,
            "future"
        );
        // wrong secret
        let h = robot_headers(ts, Some(robot_sign(ts, "otherSecret")));
        assert_eq!(
            admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
            Rejection::BadSignature
        );
        // sign made for another timestamp
        let h = robot_headers(ts, Some(robot_sign("1577262236758", "testAppSecret")));
        assert_eq!(
            admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
            Rejection::BadSignature
        );
        // bad and truncated base64
        for bad in [
            "not base64!",
            "Dc2jA7l8d6QkQ44GaOlQvDzR5W1cS7UBLolNXURn+v4",
            "Dc2jA7l8",
        ] {
            let h = robot_headers(ts, Some(bad.into()));
            assert_eq!(
                admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
                Rejection::BadSignature,
                "{bad}"
            );
        }
        // missing headers
        assert_eq!(
            admit_robot(&p, robot_headers(ts, None), ROBOT_BODY, t).unwrap_err(),
            Rejection::MissingHeader("sign")
        );
        let mut h = good();
        h.retain(|(k, _)| k != "timestamp");
        assert_eq!(
            admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
            Rejection::MissingHeader("timestamp")
        );
        // a timestamp that is no number
        let h = robot_headers("yesterday", Some(robot_sign("yesterday", "testAppSecret")));
        assert_eq!(
            admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
            Rejection::StaleTimestamp
        );
        // signed headers, body not a robot message
        for bad in [&b"nope"[..], br#"{"msgtype":"text"}"#, br#"{"msgId":"m"}"#] {
            assert!(matches!(
                admit_robot(&p, good(), bad, t).unwrap_err(),
                Rejection::Malformed(_)
            ));
        }
    }

    #[test]
    fn samples_are_accepted() {
        let now = SystemTime::now();
        // event mode, default plaintext
        let c = event_config(TOKEN, AES_KEY, OWNER);
        let p = DingTalk::new(&c).unwrap();
        let r = sample(&c, &SampleOptions::new(now)).unwrap();
        assert!(r.query.starts_with("signature="));
        let Admission::Event { event, ack } = admit_sample(&p, &r, now).unwrap() else {
            panic!("expected an event")
        };
        assert_eq!(event.kind, "dingtalk.user_add_org");
        assert_eq!(event.subject.as_deref(), Some("ding9f50b15bccd16741"));
        assert!(event.time.is_some());
        assert_eq!(
            decrypt_reply(TOKEN, AES_KEY, OWNER, &ack.body).unwrap(),
            "success"
        );
        // event mode, check_url and a given payload
        let mut o = SampleOptions::new(now);
        o.event = Some("check_url".into());
        let r = sample(&c, &o).unwrap();
        assert!(matches!(
            admit_sample(&p, &r, now).unwrap(),
            Admission::Control(_)
        ));
        o.payload = Some(br#"{"EventType":"org_dept_create","DeptId":[1]}"#.to_vec());
        let r = sample(&c, &o).unwrap();
        let Admission::Event { event, .. } = admit_sample(&p, &r, now).unwrap() else {
            panic!()
        };
        assert_eq!(event.kind, "dingtalk.org_dept_create");
        // robot mode
        let c = robot_config(&["s3cr3t"]);
        let p = DingTalk::new(&c).unwrap();
        let mut o = SampleOptions::new(now);
        o.id = Some("msg42".into());
        let r = sample(&c, &o).unwrap();
        let Admission::Event { event, .. } = admit_sample(&p, &r, now).unwrap() else {
            panic!()
        };
        assert_eq!(event.id, "msg42");
        assert_eq!(event.kind, "dingtalk.robot.text");
        assert!(event.subject.is_some() && event.time.is_some());
        // a config error is reported by sample too
        assert!(sample(&robot_config(&[]), &o).is_err());
    }

    #[test]
    fn config_errors_are_all_reported() {
        let none = Config {
            mode: Mode::Event,
            token: None,
            aes_key: None,
            owner_key: None,
            app_secrets: Some(vec![Secret::from("x")]),
        };
        let keys: Vec<_> = DingTalk::new(&none)
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["app_secrets", "token", "aes_key", "owner_key"]);
        // empty values fail closed
        let keys: Vec<_> = DingTalk::new(&event_config(" ", AES_KEY, ""))
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["token", "owner_key"]);
        // aes_key shape
        for bad in [
            "",
            &AES_KEY[..42],
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7=",
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ec+/",
        ] {
            assert_eq!(
                DingTalk::new(&event_config(TOKEN, bad, OWNER))
                    .err()
                    .unwrap()[0]
                    .key,
                "aes_key",
                "{bad}"
            );
        }
        // robot mode
        let mut c = robot_config(&[]);
        assert_eq!(DingTalk::new(&c).err().unwrap()[0].key, "app_secrets");
        c.app_secrets = Some(vec![Secret::from("")]);
        assert_eq!(DingTalk::new(&c).err().unwrap()[0].key, "app_secrets");
        c.app_secrets = None;
        c.token = Some(Secret::from(TOKEN));
        let keys: Vec<_> = DingTalk::new(&c)
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["token", "app_secrets"]);
    }

    #[test]
    fn config_deserializes_with_default_mode_and_denies_unknown_keys() {
        let c: Config = serde_json::from_str(&format!(
            r#"{{"token":"{TOKEN}","aes_key":"{AES_KEY}","owner_key":"{OWNER}"}}"#
        ))
        .unwrap();
        assert_eq!(c.mode, Mode::Event);
        assert!(DingTalk::new(&c).is_ok());
        let c: Config =
            serde_json::from_str(r#"{"mode":"robot","app_secrets":["a","b"]}"#).unwrap();
        assert!(DingTalk::new(&c).is_ok());
        assert!(serde_json::from_str::<Config>(r#"{"mode":"robot","app_secret":["a"]}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"mode":"stream"}"#).is_err());
        assert_eq!(
            format!("{:?}", c.app_secrets),
            "Some([[redacted], [redacted]])"
        );
    }

    // Issue 11, class 1: DingTalk does not sign the robot body, so msgId (the dedup key),
    // msgtype (the type) and conversationId are taken only in the shape DingTalk sends.
    #[test]
    fn class1_unsigned_robot_body_values_are_bounded() {
        let ts = "1577262236757";
        let p = robot(&["testAppSecret"]);
        let send = |body: &serde_json::Value| {
            let h = robot_headers(ts, Some(robot_sign(ts, "testAppSecret")));
            admit_robot(&p, h, body.to_string().as_bytes(), 1_577_262_236_757)
        };
        let good: Value = serde_json::from_slice(ROBOT_BODY).unwrap();
        assert!(send(&good).is_ok());
        let long = "m".repeat(crate::MAX_UNSIGNED_BYTES + 1);
        for (field, value) in [
            ("msgId", long.as_str()),
            ("msgId", "msg\nABC"),
            ("msgId", "msg ABC"),
            ("msgtype", "text.x"),
            ("msgtype", "Text\u{7f}"),
            ("msgtype", long.as_str()),
            ("conversationId", long.as_str()),
            ("conversationId", "cid\r\n1"),
        ] {
            let mut b = good.clone();
            b[field] = Value::from(value);
            let r = send(&b).unwrap_err();
            assert!(
                matches!(r, Rejection::Malformed(_)),
                "{field}={value:?}: {r:?}"
            );
            assert_eq!(r.status(), 400);
        }
        let mut b = good.clone();
        b["msgId"] = Value::from("m".repeat(crate::MAX_UNSIGNED_BYTES));
        assert!(send(&b).is_ok(), "200 bytes is still an id");
    }
}
