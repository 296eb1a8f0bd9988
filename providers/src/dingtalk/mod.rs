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
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::crypto;
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
/// DingTalk pads to 32 bytes, not to the AES block (`PKCS7Padding` BLOCK_SIZE = 32).
const PAD_BLOCK: usize = 32;
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
    if aes_key.len() != 43 || !aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("must be exactly 43 characters of [A-Za-z0-9]".into());
    }
    crypto::b64_lenient(&format!("{aes_key}="))
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| "does not decode to 32 bytes".into())
}

/// `hex(SHA1(concat(sort([token, timestamp, nonce, encrypt]))))`: signs both the push and
/// the reply.
pub fn event_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `b64(AES-256-CBC(key, iv = key[..16], random16 ‖ u32be(len) ‖ msg ‖ owner_key ‖ PKCS#7/32))`.
///
/// # Panics
/// If `msg` is 4 GiB or longer (its length must fit the u32 prefix).
pub fn encrypt(key: &[u8; 32], random16: &[u8; 16], msg: &[u8], owner_key: &str) -> String {
    let len = u32::try_from(msg.len()).expect("a DingTalk message is shorter than 4 GiB");
    let mut plain = Vec::with_capacity(20 + msg.len() + owner_key.len() + PAD_BLOCK);
    plain.extend_from_slice(random16);
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(msg);
    plain.extend_from_slice(owner_key.as_bytes());
    let padded = crypto::pkcs7_pad(&plain, PAD_BLOCK);
    let ct = crypto::aes_cbc_encrypt(key, &key[..16], &padded)
        .expect("32-byte key, 16-byte iv and padded input are valid");
    crypto::b64_encode(&ct)
}

/// The decrypted payload: the message and the owner trailer. `None` for anything that is not
/// a well-formed ciphertext (base64, block length, strict PKCS#7/32, length prefix).
fn open(key: &[u8; 32], encrypt: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let ct = crypto::b64(encrypt)?;
    let plain = crypto::aes_cbc_decrypt(key, &key[..16], &ct)?;
    let plain = crypto::pkcs7_unpad(&plain, PAD_BLOCK)?;
    let len_bytes: [u8; 4] = plain.get(16..20)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let rest = &plain[20..];
    if len > rest.len() {
        return None;
    }
    let (msg, owner) = rest.split_at(len);
    Some((msg.to_vec(), owner.to_vec()))
}

/// Decrypts and checks the owner trailer: the message bytes.
fn decrypt(key: &[u8; 32], owner_key: &str, encrypt: &str) -> Result<Vec<u8>, Rejection> {
    let (msg, owner) =
        open(key, encrypt).ok_or(Rejection::Malformed("encrypt does not decrypt"))?;
    if !crypto::ct_eq(&owner, owner_key.as_bytes()) {
        return Err(Rejection::WrongRecipient("owner_key"));
    }
    Ok(msg)
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
            .ok_or(Rejection::missing(SIGNATURE))?;
        let timestamp = param(req, TIME_STAMP)
            .or_else(|| param(req, TIMESTAMP))
            .ok_or(Rejection::missing(TIMESTAMP))?;
        let nonce = param(req, NONCE).ok_or(Rejection::missing(NONCE))?;

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
mod tests;
