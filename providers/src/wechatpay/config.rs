//! The keys of a `wechatpay` source, checked all at once: API v3 (APIv3 keys and platform
//! keys by serial) or legacy API v2 (API keys and the signature algorithm).

use serde::Deserialize;

use super::{Api, WechatPay, V2, V3};
use crate::crypto::{self, Certificate, RsaPublicKey};
use crate::{ConfigError, Secret};

const APIV3_KEY_BYTES: usize = 32;
const API_KEY_CHARS: usize = 32;

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
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }

    #[cfg(any(test, feature = "sign"))]
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }
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
pub(super) fn platform_key(serial: &str, pem: &str) -> Result<RsaPublicKey, String> {
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
