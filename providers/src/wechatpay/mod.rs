//! WeChat Pay (微信支付) notifications. API v3 (the default): an RSA-SHA256 signature over
//! `timestamp\nnonce\nbody\n` by the platform key that `Wechatpay-Serial` names, a 5-minute
//! window, then the `resource` decrypted with AEAD_AES_256_GCM under the APIv3 key; answered
//! 204. Legacy API v2 (`version = 2`): an XML body signed with MD5 or HMAC-SHA256 over its
//! sorted parameters and the API key; answered with a `return_code` SUCCESS XML.
//! Protocol: PROVIDERS.md §3.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::crypto::{self, Certificate, RsaDigest, RsaPublicKey, RsaSigner};
use crate::sign::{SampleOptions, SampleRequest};
use crate::{
    unix_secs, within_window, Admission, ConfigError, Data, Event, ProviderKind, RawRequest,
    Rejection, Reply, Secret,
};

const TIMESTAMP: &str = "Wechatpay-Timestamp";
const NONCE: &str = "Wechatpay-Nonce";
const SIGNATURE: &str = "Wechatpay-Signature";
const SERIAL: &str = "Wechatpay-Serial";
const SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";
const RSA_SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";
/// WeChat Pay now and then sends a deliberately wrong signature to see that merchants check
/// it (§3.2); it must be refused like any other bad signature.
const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";
/// wechatpay-go refuses `|now − ts| >= 300 s`; `within_window` accepts `<= tolerance`.
const TOLERANCE_SECS: i64 = 299;
const AEAD: &str = "AEAD_AES_256_GCM";
const APIV3_KEY_BYTES: usize = 32;
const API_KEY_CHARS: usize = 32;
/// v2 times are Beijing time without an offset; v3 samples are written in it too.
const BEIJING_SECS: i32 = 8 * 3600;
/// WeChat Pay takes a failure `message` of 1 to 64 characters (§3.4).
const MAX_MESSAGE_CHARS: usize = 64;

const V2_SUCCESS: &str =
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

fn default_version() -> u8 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// 3 (default): API v3 JSON notifications; 2: legacy XML notifications.
    #[serde(default = "default_version")]
    pub version: u8,
    /// The merchant id (商户号): when set, a notification for another merchant is refused.
    #[serde(default)]
    pub mch_id: Option<String>,
    /// v3: APIv3 keys, the 32-character strings set in the merchant portal; all are tried.
    #[serde(default)]
    pub apiv3_keys: Vec<Secret>,
    /// v3: `Wechatpay-Serial` value → PEM: a platform certificate (its serial must be the
    /// table key) or a WeChat Pay public key (`PUB_KEY_ID_…`). Both kinds may be listed.
    #[serde(default)]
    pub platform_keys: PlatformKeys,
    /// v2: API keys (32 characters, not the APIv3 key); all are tried.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// v2: the signature algorithm; by default the message's `sign_type`, else the length
    /// of its signature.
    #[serde(default)]
    pub sign_type: Option<SignType>,
}

/// The `platform_keys` table in the order written (the first entry signs samples).
#[derive(Debug, Default)]
pub struct PlatformKeys(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for PlatformKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PlatformKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of serial = PEM")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<PlatformKeys, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = m.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(PlatformKeys(entries))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// API v2 signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SignType {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }
}

pub struct WechatPay {
    mch_id: Option<String>,
    api: Api,
}

enum Api {
    V3(V3),
    V2(V2),
}

struct V3 {
    apiv3_keys: Vec<Secret>,
    /// Normalized serial → key.
    platform_keys: Vec<(String, RsaPublicKey)>,
}

struct V2 {
    api_keys: Vec<Secret>,
    sign_type: Option<SignType>,
}

impl WechatPay {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if c.mch_id.as_deref().is_some_and(|m| m.trim().is_empty()) {
            errors.push(ConfigError::new(
                "mch_id",
                "must not be empty (leave it out to skip the check)",
            ));
        }
        let api = match c.version {
            3 => {
                if !c.api_keys.is_empty() {
                    errors.push(ConfigError::new("api_keys", "only used with version = 2"));
                }
                if c.sign_type.is_some() {
                    errors.push(ConfigError::new("sign_type", "only used with version = 2"));
                }
                v3_keys(c, &mut errors).map(Api::V3)
            }
            2 => {
                if !c.apiv3_keys.is_empty() {
                    errors.push(ConfigError::new("apiv3_keys", "only used with version = 3"));
                }
                if !c.platform_keys.0.is_empty() {
                    errors.push(ConfigError::new(
                        "platform_keys",
                        "only used with version = 3",
                    ));
                }
                v2_keys(c, &mut errors).map(Api::V2)
            }
            _ => {
                errors.push(ConfigError::new("version", "must be 2 or 3"));
                None
            }
        };
        match api {
            Some(api) if errors.is_empty() => Ok(WechatPay {
                mch_id: c.mch_id.as_ref().map(|m| m.trim().to_owned()),
                api,
            }),
            _ => Err(errors),
        }
    }
}

fn v3_keys(c: &Config, errors: &mut Vec<ConfigError>) -> Option<V3> {
    let before = errors.len();
    if c.apiv3_keys.is_empty() {
        errors.push(ConfigError::new("apiv3_keys", "at least one is required"));
    }
    for (i, key) in c.apiv3_keys.iter().enumerate() {
        let n = key.expose().len();
        if n != APIV3_KEY_BYTES {
            errors.push(ConfigError::new(
                format!("apiv3_keys[{i}]"),
                format!("must be the {APIV3_KEY_BYTES}-character APIv3 key, found {n} bytes"),
            ));
        }
    }
    if c.platform_keys.0.is_empty() {
        errors.push(ConfigError::new(
            "platform_keys",
            "at least one platform certificate or WeChat Pay public key is required",
        ));
    }
    let mut platform_keys: Vec<(String, RsaPublicKey)> = Vec::new();
    for (serial, pem) in &c.platform_keys.0 {
        let name = format!("platform_keys.{serial}");
        let normalized = crypto::normalize_serial(serial);
        if serial.trim().is_empty() {
            errors.push(ConfigError::new(name, "the serial must not be empty"));
            continue;
        }
        if platform_keys.iter().any(|(s, _)| *s == normalized) {
            errors.push(ConfigError::new(name, "the same serial is listed twice"));
            continue;
        }
        match platform_key(&normalized, pem) {
            Ok(key) => platform_keys.push((normalized, key)),
            Err(e) => errors.push(ConfigError::new(name, e)),
        }
    }
    (errors.len() == before).then(|| V3 {
        apiv3_keys: c.apiv3_keys.clone(),
        platform_keys,
    })
}

/// A certificate must carry the serial it is listed under: WeChat Pay names the key by it.
fn platform_key(serial: &str, pem: &str) -> Result<RsaPublicKey, String> {
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        let cert = Certificate::parse_pem(pem)?;
        if cert.serial_hex != serial {
            return Err(format!(
                "the certificate's serial is {}, not the table key",
                cert.serial_hex
            ));
        }
        return Ok(cert.key);
    }
    RsaPublicKey::parse(pem)
}

fn v2_keys(c: &Config, errors: &mut Vec<ConfigError>) -> Option<V2> {
    let before = errors.len();
    if c.api_keys.is_empty() {
        errors.push(ConfigError::new("api_keys", "at least one is required"));
    }
    for (i, key) in c.api_keys.iter().enumerate() {
        let n = key.expose().chars().count();
        if n != API_KEY_CHARS {
            errors.push(ConfigError::new(
                format!("api_keys[{i}]"),
                format!("must be the {API_KEY_CHARS}-character API key, found {n} characters"),
            ));
        }
    }
    (errors.len() == before).then(|| V2 {
        api_keys: c.api_keys.clone(),
        sign_type: c.sign_type,
    })
}

impl crate::Provider for WechatPay {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Wechatpay
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        match &self.api {
            Api::V3(v3) => self.admit_v3(v3, req, now),
            Api::V2(v2) => self.admit_v2(v2, req),
        }
    }

    /// v3: `{"code":"FAIL","message":…}` with the status; v2: a `return_code` FAIL XML.
    fn failure(&self, status: u16, message: &str) -> Reply {
        let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        let message = if message.is_empty() {
            "FAIL".into()
        } else {
            message
        };
        match self.api {
            Api::V3(_) => Reply::json(
                status,
                &serde_json::json!({ "code": "FAIL", "message": message }),
            ),
            Api::V2(_) => Reply {
                status,
                content_type: Some(Reply::XML),
                body: xml(&[("return_code", "FAIL"), ("return_msg", &message)]).into_bytes(),
            },
        }
    }
}

// ----------------------------------------------------------------------------- API v3

impl WechatPay {
    fn admit_v3(
        &self,
        v3: &V3,
        req: &RawRequest<'_>,
        now: SystemTime,
    ) -> Result<Admission, Rejection> {
        let timestamp = req.require_header(TIMESTAMP)?;
        let nonce = req.require_header(NONCE)?;
        let signature = req.require_header(SIGNATURE)?;
        let serial = req.require_header(SERIAL)?;
        if req
            .header(SIGNATURE_TYPE)
            .is_some_and(|t| t.trim() != RSA_SIGNATURE_TYPE)
        {
            return Err(Rejection::BadSignature);
        }
        // Refused outright, whatever follows the prefix: a probe is never an event.
        if signature.starts_with(SIGNTEST_PREFIX) {
            return Err(Rejection::Probe);
        }
        let ts = parse_timestamp(timestamp)?;
        if !within_window(ts, unix_secs(now), TOLERANCE_SECS) {
            return Err(Rejection::StaleTimestamp);
        }
        let serial = crypto::normalize_serial(serial);
        let key = v3
            .platform_keys
            .iter()
            .find(|(s, _)| *s == serial)
            .map(|(_, k)| k)
            .ok_or(Rejection::BadSignature)?;
        let sig = crypto::b64(signature).ok_or(Rejection::BadSignature)?;
        if !verify_v3(key, timestamp, nonce, req.body, &sig) {
            return Err(Rejection::BadSignature);
        }

        let mut body: Map<String, Value> = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not a JSON object"))?;
        let text = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let id = text("id").ok_or(Rejection::Malformed("no id"))?;
        let event_type = text("event_type").ok_or(Rejection::Malformed("no event_type"))?;
        let time = text("create_time").filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok());
        let resource = body
            .get("resource")
            .and_then(Value::as_object)
            .ok_or(Rejection::Malformed("no resource object"))?;
        let plaintext = decrypt_resource(&v3.apiv3_keys, resource)?;
        let plain: Map<String, Value> = serde_json::from_slice(&plaintext)
            .map_err(|_| Rejection::Malformed("resource plaintext is not a JSON object"))?;
        let field = |name: &str| {
            plain
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        // Partner (服务商) notifications name the service provider and the sub-merchant;
        // merchant transfers say `mch_id`. Either of the merchant's ids addresses it.
        self.check_recipient(&["mchid", "sp_mchid", "sub_mchid", "mch_id"].map(field))?;
        let subject = [
            "out_trade_no",
            "out_refund_no",
            "out_bill_no",
            "out_contract_code",
        ]
        .iter()
        .find_map(|name| field(name))
        .map(str::to_owned);
        body.insert("resource".into(), Value::Object(plain));
        let event = Event {
            kind: format!("wechatpay.{}", crate::type_name_or_unknown(&event_type)),
            id,
            provider_event: event_type,
            time,
            subject,
            data: Data::Value(Value::Object(body)),
            content_key: None,
        };
        Ok(Admission::Event {
            event,
            ack: Reply::empty(204),
        })
    }

    fn check_recipient(&self, candidates: &[Option<&str>]) -> Result<(), Rejection> {
        match &self.mch_id {
            Some(mine) if !candidates.iter().flatten().any(|id| id == mine) => {
                Err(Rejection::WrongRecipient("mchid"))
            }
            _ => Ok(()),
        }
    }
}

fn parse_timestamp(s: &str) -> Result<i64, Rejection> {
    const BAD: Rejection = Rejection::Malformed("Wechatpay-Timestamp is not Unix seconds");
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    s.parse().map_err(|_| BAD)
}

/// The v3 signed message, `timestamp\nnonce\nbody\n` (§3.2).
pub fn v3_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(nonce.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(body);
    msg.push(b'\n');
    msg
}

fn verify_v3(key: &RsaPublicKey, timestamp: &str, nonce: &str, body: &[u8], sig: &[u8]) -> bool {
    key.verify(RsaDigest::Sha256, &v3_message(timestamp, nonce, body), sig)
}

/// Decrypts `resource` with each APIv3 key in turn (§3.3).
fn decrypt_resource(keys: &[Secret], resource: &Map<String, Value>) -> Result<Vec<u8>, Rejection> {
    let text = |name: &str| resource.get(name).and_then(Value::as_str);
    if text("algorithm") != Some(AEAD) {
        return Err(Rejection::Malformed(
            "resource algorithm is not AEAD_AES_256_GCM",
        ));
    }
    let nonce = text("nonce")
        .filter(|n| n.len() == 12)
        .ok_or(Rejection::Malformed("resource nonce is not 12 bytes"))?;
    let aad = text("associated_data").unwrap_or("");
    let ct = text("ciphertext")
        .and_then(crypto::b64)
        .ok_or(Rejection::Malformed("resource ciphertext is not base64"))?;
    if ct.len() < 16 {
        return Err(Rejection::Malformed("resource ciphertext is truncated"));
    }
    keys.iter()
        .find_map(|k| {
            crypto::aes_gcm_decrypt(k.expose().as_bytes(), nonce.as_bytes(), aad.as_bytes(), &ct)
        })
        .ok_or(Rejection::Malformed(
            "resource does not decrypt with any configured APIv3 key",
        ))
}

// ----------------------------------------------------------------------------- API v2

impl WechatPay {
    fn admit_v2(&self, v2: &V2, req: &RawRequest<'_>) -> Result<Admission, Rejection> {
        let params = parse_xml(req.body)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let sig = get("sign")
            .and_then(|s| hex::decode(s.trim()).ok())
            .ok_or(Rejection::BadSignature)?;
        let sent_type = match get("sign_type") {
            Some(t) => Some(SignType::parse(t).ok_or(Rejection::BadSignature)?),
            None => None,
        };
        let sign_type = match (v2.sign_type, sent_type) {
            (Some(pinned), Some(sent)) if pinned != sent => return Err(Rejection::BadSignature),
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => match sig.len() {
                16 => SignType::Md5,
                32 => SignType::HmacSha256,
                _ => return Err(Rejection::BadSignature),
            },
        };
        let content = v2_content(&params);
        if !v2
            .api_keys
            .iter()
            .any(|k| crypto::ct_eq(&v2_digest(sign_type, &content, k.expose()), &sig))
        {
            return Err(Rejection::BadSignature);
        }

        self.check_recipient(&[get("mch_id"), get("sub_mch_id")])?;
        let id = get("transaction_id")
            .or_else(|| get("out_trade_no"))
            .ok_or(Rejection::Malformed("no transaction_id or out_trade_no"))?;
        // Values are signed unescaped (`k=v&k=v`), so one element can swallow the next under
        // the same signature: an id is only what WeChat Pay sends (digits for
        // `transaction_id`; `[0-9A-Za-z_-|*@]` for `out_trade_no`), never `&` or `=`.
        let id = crate::bounded(id, is_v2_id_char, "transaction_id is not a WeChat Pay id")?;
        let result_code = get("result_code").unwrap_or("");
        let kind = if result_code == "SUCCESS" {
            "wechatpay.transaction.success"
        } else {
            "wechatpay.transaction.fail"
        };
        let event = Event {
            id: id.to_owned(),
            kind: kind.into(),
            provider_event: result_code.to_owned(),
            time: get("time_end").and_then(compact_beijing_rfc3339),
            subject: get("out_trade_no").map(str::to_owned),
            // Empty elements are outside the signature (the content skips them): not WeChat's.
            data: Data::Value(Value::Object(
                params
                    .iter()
                    .filter(|(k, v)| k != "sign" && !k.is_empty() && !v.is_empty())
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )),
            // The signed string is `content&key=<API key>`; the digest leaves the constant
            // secret suffix out, so it is the same under every configured key and no hash of
            // the key is stored. A regrouped request has the same content, hence the same key.
            content_key: Some(crate::sha256_key(content.as_bytes())),
        };
        Ok(Admission::Event {
            event,
            ack: Reply {
                status: 200,
                content_type: Some(Reply::XML),
                body: V2_SUCCESS.as_bytes().to_vec(),
            },
        })
    }
}

/// A v2 `transaction_id` (digits) or `out_trade_no` (`[0-9A-Za-z_-|*@]`, at most 32).
fn is_v2_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*' | '@')
}

/// The v2 parameters of a flat `<xml>` document, text and CDATA alike. A DOCTYPE is refused
/// (no entity can be declared), as are nesting and repeated names.
fn parse_xml(body: &[u8]) -> Result<Vec<(String, String)>, Rejection> {
    use quick_xml::events::Event as X;
    const NOT_XML: Rejection = Rejection::Malformed("body is not a WeChat Pay v2 XML document");
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| NOT_XML);
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut params: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut depth = 0usize;
    let mut root_seen = false;
    loop {
        match reader.read_event().map_err(|_| NOT_XML)? {
            X::Start(e) => {
                depth += 1;
                match depth {
                    1 if !root_seen && e.name().as_ref() == b"xml" => root_seen = true,
                    2 => current = Some((utf8(e.name().as_ref())?, String::new())),
                    _ => return Err(NOT_XML),
                }
            }
            X::Empty(e) if depth == 1 => params.push((utf8(e.name().as_ref())?, String::new())),
            X::End(_) => {
                if depth == 2 {
                    params.extend(current.take());
                }
                depth = depth.checked_sub(1).ok_or(NOT_XML)?;
            }
            X::Text(t) => match current.as_mut() {
                Some((_, value)) if depth == 2 => {
                    value.push_str(&t.unescape().map_err(|_| NOT_XML)?)
                }
                _ if t.iter().all(u8::is_ascii_whitespace) => {}
                _ => return Err(NOT_XML),
            },
            X::CData(c) => match current.as_mut() {
                Some((_, value)) if depth == 2 => value.push_str(&utf8(&c.into_inner())?),
                _ => return Err(NOT_XML),
            },
            X::Decl(_) | X::Comment(_) => {}
            X::Eof => break,
            _ => return Err(NOT_XML),
        }
    }
    if !root_seen || depth != 0 || params.is_empty() {
        return Err(NOT_XML);
    }
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Rejection::Malformed("repeated XML element"));
    }
    Ok(params)
}

/// `k=v&…` of the non-empty parameters except `sign`, sorted by name (§3.5).
fn v2_content(params: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && !v.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn v2_digest(sign_type: SignType, content: &str, key: &str) -> Vec<u8> {
    let msg = format!("{content}&key={key}");
    match sign_type {
        SignType::Md5 => Md5::digest(msg.as_bytes()).to_vec(),
        SignType::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
                .expect("HMAC takes any key length");
            mac.update(msg.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// The v2 `sign` of `params` (uppercase hex), as WeChat Pay computes it.
pub fn v2_signature(sign_type: SignType, params: &[(String, String)], key: &str) -> String {
    hex::encode_upper(v2_digest(sign_type, &v2_content(params), key))
}

/// `20141030133525` (Beijing time) as RFC 3339 with its `+08:00` offset.
fn compact_beijing_rfc3339(s: &str) -> Option<String> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()?;
    let t = naive
        .and_local_timezone(chrono::FixedOffset::east_opt(BEIJING_SECS)?)
        .single()?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

/// A flat `<xml>` document with every value in CDATA.
fn xml(params: &[(&str, &str)]) -> String {
    let mut out = String::from("<xml>");
    for (k, v) in params {
        // `]]>` cannot appear inside CDATA: close the section and reopen it around `>`.
        let v = v.replace("]]>", "]]]]><![CDATA[>");
        out.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
    }
    out.push_str("</xml>");
    out
}

// ----------------------------------------------------------------------------- samples

/// A notification as WeChat Pay sends it. v3: a transaction (or, for `REFUND.*` events, a
/// refund) plaintext, or `o.payload`, encrypted with the first APIv3 key and signed with
/// `o.private_key` as `o.key_id` (default: the first `platform_keys` entry). v2: the payment
/// result XML signed with the first API key; `o.payload`, a JSON object, adds or overrides
/// parameters (`null` removes one).
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    match c.version {
        2 => sample_v2(c, o),
        _ => sample_v3(c, o),
    }
}

fn sample_v3(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let pem = o.private_key.as_deref().ok_or(
        "wechatpay samples need a private key: the one whose public half is in platform_keys",
    )?;
    let signer = RsaSigner::parse_pem(pem)?;
    let apiv3_key = c.apiv3_keys.first().ok_or("no apiv3_keys configured")?;
    let serial = match &o.key_id {
        Some(id) => id.clone(),
        None => c
            .platform_keys
            .0
            .first()
            .map(|(s, _)| s.clone())
            .ok_or("no platform_keys configured")?,
    };
    let now = unix_secs(o.now);
    let event_type = o
        .event
        .clone()
        .unwrap_or_else(|| "TRANSACTION.SUCCESS".into());
    let refund = event_type.starts_with("REFUND.");
    let (original_type, summary) = if refund {
        ("refund", "退款成功")
    } else {
        ("transaction", "支付成功")
    };
    let plaintext = match &o.payload {
        Some(p) => p.clone(),
        None => default_resource(c, now, refund).to_string().into_bytes(),
    };
    let nonce = crypto::random_alnum(12);
    let ct = crypto::aes_gcm_encrypt(
        apiv3_key.expose().as_bytes(),
        nonce.as_bytes(),
        original_type.as_bytes(),
        &plaintext,
    )
    .ok_or("the first apiv3_keys entry is not a 32-byte APIv3 key")?;
    let body = serde_json::json!({
        "id": o.id.clone().unwrap_or_else(random_uuid),
        "create_time": beijing(now, "%Y-%m-%dT%H:%M:%S+08:00"),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": original_type,
            "algorithm": AEAD,
            "ciphertext": crypto::b64_encode(&ct),
            "associated_data": original_type,
            "nonce": nonce,
        },
    })
    .to_string()
    .into_bytes();
    let timestamp = now.to_string();
    let request_nonce = crypto::random_alnum(32);
    let sig = signer.sign(
        RsaDigest::Sha256,
        &v3_message(&timestamp, &request_nonce, &body),
    );
    Ok(SampleRequest {
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Request-ID".into(), random_uuid()),
            (TIMESTAMP.into(), timestamp),
            (NONCE.into(), request_nonce),
            (SIGNATURE.into(), crypto::b64_encode(&sig)),
            (SERIAL.into(), serial),
            (SIGNATURE_TYPE.into(), RSA_SIGNATURE_TYPE.into()),
        ],
        body,
    })
}

fn default_resource(c: &Config, now: i64, refund: bool) -> Value {
    let mchid = c.mch_id.clone().unwrap_or_else(|| "1230000109".into());
    let out_trade_no = format!("hookgate-{}", random_digits(12));
    let transaction_id = format!("42000{}", random_digits(23));
    let success_time = beijing(now.saturating_sub(2), "%Y-%m-%dT%H:%M:%S+08:00");
    if refund {
        return serde_json::json!({
            "mchid": mchid,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id,
            "out_refund_no": format!("refund-{}", random_digits(12)),
            "refund_id": format!("50000{}", random_digits(24)),
            "refund_status": "SUCCESS",
            "success_time": success_time,
            "user_received_account": "招商银行信用卡0403",
            "amount": {"total": 100, "refund": 100, "payer_total": 100, "payer_refund": 100},
        });
    }
    serde_json::json!({
        "mchid": mchid,
        "appid": "wxd678efh567hg6787",
        "out_trade_no": out_trade_no,
        "transaction_id": transaction_id,
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": success_time,
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
    })
}

fn sample_v2(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let key = c.api_keys.first().ok_or("no api_keys configured")?;
    let sign_type = c.sign_type.unwrap_or(SignType::Md5);
    let now = unix_secs(o.now);
    let mut params: BTreeMap<String, String> = [
        ("appid", "wx2421b1c4370ec43b".to_owned()),
        ("bank_type", "CFT".into()),
        ("cash_fee", "100".into()),
        ("fee_type", "CNY".into()),
        ("is_subscribe", "Y".into()),
        (
            "mch_id",
            c.mch_id.clone().unwrap_or_else(|| "10000100".into()),
        ),
        ("nonce_str", crypto::random_alnum(32)),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE".into()),
        ("out_trade_no", format!("hookgate-{}", random_digits(12))),
        (
            "result_code",
            o.event.clone().unwrap_or_else(|| "SUCCESS".into()),
        ),
        ("return_code", "SUCCESS".into()),
        ("time_end", beijing(now.saturating_sub(2), "%Y%m%d%H%M%S")),
        ("total_fee", "100".into()),
        ("trade_type", "JSAPI".into()),
        (
            "transaction_id",
            o.id.clone()
                .unwrap_or_else(|| format!("42000{}", random_digits(23))),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if sign_type == SignType::HmacSha256 {
        params.insert("sign_type".into(), sign_type.as_str().into());
    }
    if let Some(payload) = &o.payload {
        let overrides: Map<String, Value> =
            serde_json::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
        for (k, v) in overrides {
            match v {
                Value::Null => params.remove(&k),
                Value::String(s) => params.insert(k, s),
                other => params.insert(k, other.to_string()),
            };
        }
    }
    let list: Vec<(String, String)> = params.into_iter().collect();
    let sign = v2_signature(sign_type, &list, key.expose());
    let mut pairs: Vec<(&str, &str)> = list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("sign", &sign));
    Ok(SampleRequest {
        query: String::new(),
        headers: vec![("Content-Type".into(), "text/xml".into())],
        body: xml(&pairs).into_bytes(),
    })
}

/// Unix seconds formatted as Beijing wall-clock time.
fn beijing(secs: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(secs.saturating_add(i64::from(BEIJING_SECS)), 0)
        .map(|t| t.naive_utc().format(format).to_string())
        .unwrap_or_default()
}

fn random_digits(n: usize) -> String {
    crypto::random_bytes(n)
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect()
}

fn random_uuid() -> String {
    let b = hex::encode(crypto::random_bytes(16));
    format!(
        "{}-{}-{}-{}-{}",
        &b[0..8],
        &b[8..12],
        &b[12..16],
        &b[16..20],
        &b[20..32]
    )
}

#[cfg(test)]
mod tests;
