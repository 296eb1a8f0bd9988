//! Alipay asynchronous notifications (`notify_url`, 异步通知): a form body whose parameters,
//! sorted and joined, carry an RSA signature by Alipay's key in `sign` (RSA2 = SHA256withRSA,
//! legacy `RSA` = SHA1withRSA). The signature covers decoded parameters, not the body, so it
//! is checked over the decoded bytes in the sender's charset (UTF-8 or GBK), before anything is
//! transcoded. Acknowledged with the literal body `success`.
//! Protocol and vectors: docs/providers/alipay.md.

//!
//! `params.rs` decodes the form and builds the signed string; `keys.rs` reads the configured
//! keys and certificates; `sample.rs` signs as Alipay does.

mod keys;
mod params;
#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;

use crate::crypto::{self, RsaDigest, RsaPublicKey};
use crate::registry::ConfigKeys;
use crate::shared::{beijing_rfc3339, bounded, sha256_key, type_name_or_unknown};
use crate::{Admission, ConfigError, Data, Event, ProviderKind, RawRequest, Rejection, Reply};

use keys::{key_from_spki, public_key, spki_of_certificate};
use params::{
    charset, content_of, decode_fields, digest_of, param, parse_params, signed_pairs, Params,
    NAMES, SHAPED,
};
#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
/// Alipay's public keys and certificates are not secret, but long: they may come from files.
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &[],
    public: &["alipay_public_keys", "alipay_cert"],
};

/// The only body Alipay takes as success; anything else makes it resend.
const SUCCESS: &str = "success";
const FAIL: &str = "fail";

/// Alipay signs with 2048-bit keys; ring verifies 2048 to 8192 bits, so a shorter (legacy
/// 1024-bit) key could never verify and is refused at start-up instead.
const MIN_KEY_BITS: usize = 2048;

/// Notification times are Beijing time without an offset, written like this.
/// Seconds, or milliseconds after a dot (refund notifications' `gmt_refund`).
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The application's APPID: a notification for another app is refused.
    pub app_id: String,
    /// "支付宝公钥" (Alipay's public key, not the app's): the console's base64 SPKI
    /// (`MIIBIjANBg…`) or PEM. Every one is tried (rotation).
    #[serde(default)]
    pub alipay_public_keys: Vec<String>,
    /// Public-key-certificate mode: `alipayCertPublicKey_RSA2.crt` (PEM; several
    /// certificates may be concatenated during rotation).
    #[serde(default)]
    pub alipay_cert: Option<String>,
}

pub(crate) struct Alipay {
    app_id: String,
    keys: Vec<RsaPublicKey>,
}

impl Alipay {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if c.app_id.trim().is_empty() {
            errors.push(ConfigError::new("app_id", "must not be empty"));
        }
        let mut keys = Vec::new();
        for (i, text) in c.alipay_public_keys.iter().enumerate() {
            match public_key(text) {
                Ok(k) => keys.push(k),
                Err(e) => errors.push(ConfigError::new(format!("alipay_public_keys[{i}]"), e)),
            }
        }
        if let Some(pem) = &c.alipay_cert {
            let certs = crypto::pem_blocks(pem, "CERTIFICATE");
            if certs.is_empty() {
                errors.push(ConfigError::new(
                    "alipay_cert",
                    "no PEM CERTIFICATE block (expected alipayCertPublicKey_RSA2.crt)",
                ));
            }
            for der in certs {
                match spki_of_certificate(&der).and_then(|spki| key_from_spki(&spki)) {
                    Ok(k) => keys.push(k),
                    Err(e) => errors.push(ConfigError::new("alipay_cert", e)),
                }
            }
        }
        if c.alipay_public_keys.is_empty() && c.alipay_cert.is_none() {
            errors.push(ConfigError::new(
                "alipay_public_keys",
                "alipay_public_keys or alipay_cert is required",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Alipay {
            app_id: c.app_id.trim().to_owned(),
            keys,
        })
    }

    /// Tries every key with the V1 content (without `sign_type`, trade notifications), then
    /// the V2 content (with it, gateway messages); Alipay signs both forms, so either is proof.
    /// Returns the content that verified (what [`Event::content_key`] is a digest of). A
    /// request whose grouping of that content is a regrouping (a value swallowing a parameter,
    /// [`crate::shared::swallowed`]) is refused: only Alipay's own grouping makes the event.
    fn verify(&self, params: &Params, digest: RsaDigest, sig: &[u8]) -> Result<Vec<u8>, Rejection> {
        for keep_sign_type in [false, true] {
            let pairs = signed_pairs(params, keep_sign_type);
            let content = content_of(&pairs);
            if self.keys.iter().any(|k| k.verify(digest, &content, sig)) {
                if let Some(why) = crate::shared::regrouped(&pairs, NAMES, SHAPED) {
                    return Err(Rejection::Malformed(why));
                }
                return Ok(content);
            }
        }
        Err(Rejection::BadSignature)
    }
}

impl crate::Provider for Alipay {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Alipay
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        let params = parse_params(req.body)?;
        let sig = param(&params, "sign")
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(crypto::b64)
            .ok_or(Rejection::BadSignature)?;
        let digest = digest_of(param(&params, "sign_type")).ok_or(Rejection::BadSignature)?;
        let signed = self.verify(&params, digest, &sig)?;

        let enc = charset(param(&params, "charset"))
            .ok_or(Rejection::Malformed("unsupported charset"))?;
        let fields = decode_fields(&params, enc)?;
        let get = |name: &str| {
            fields
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };

        // `auth_app_id` is the merchant's app when an ISV's app receives the notification;
        // the notification is addressed by `app_id` whenever it is present.
        let recipient = get("app_id").or_else(|| get("auth_app_id"));
        if recipient != Some(self.app_id.as_str()) {
            return Err(Rejection::WrongRecipient("app_id"));
        }
        let id = get("notify_id").ok_or(Rejection::Malformed("no notify_id"))?;
        // Values are signed unescaped, so `notify_id=X&notify_time=T` can arrive as one
        // (percent-encoded) value under the same signature: an id is only what Alipay sends,
        // digits today, base64 in the older gateway's examples, never `&`.
        let id = bounded(
            id,
            is_notify_id_char,
            "notify_id is not an Alipay notify id",
        )?;
        let (kind, provider_event) = event_type(&get)?;
        // A refund is a trade_status_sync too; its own time is gmt_refund.
        let time = ["gmt_refund", "gmt_payment", "notify_time"]
            .iter()
            .find_map(|name| get(name).and_then(|t| beijing_rfc3339(t, TIME_FORMAT)));
        let event = Event {
            id: id.to_owned(),
            kind,
            provider_event,
            time,
            subject: get("out_trade_no").map(str::to_owned),
            data: Data::Value(serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
            )),
            // A regrouped request (same signed string, other parameter boundaries) gets the
            // same key, so the gateway's dedup on it makes the regrouping a duplicate.
            content_key: Some(sha256_key(&signed)),
        };
        Ok(Admission::Event {
            event,
            ack: Reply::text(200, SUCCESS),
        })
    }

    /// Alipay reads only the body: anything but `success` means "send again".
    fn failure(&self, status: u16, _message: &str) -> Reply {
        Reply::text(status, FAIL)
    }
}

/// `notify_id`: digits (open platform, e.g. `2019081500222155624068450559358070`) or base64
/// (the older gateway's `RqPnCoPT3K9/vwbh3I+Fio…`).
fn is_notify_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')
}

/// `(type, providerevent)`: trade notifications by `trade_status`, gateway messages by their
/// method, anything else by `notify_type`.
fn event_type<'f>(get: &impl Fn(&str) -> Option<&'f str>) -> Result<(String, String), Rejection> {
    if get("notify_type") == Some("trade_status_sync") {
        if let Some(status) = get("trade_status") {
            let name = status.strip_prefix("TRADE_").unwrap_or(status);
            return Ok((
                format!("alipay.trade.{}", type_name_or_unknown(name)),
                status.into(),
            ));
        }
    }
    if let Some(method) = get("msg_method").or_else(|| get("method")) {
        let name = type_name_or_unknown(method);
        let kind = if name.starts_with("alipay.") {
            name
        } else {
            format!("alipay.{name}")
        };
        return Ok((kind, method.into()));
    }
    let notify_type = get("notify_type").ok_or(Rejection::Malformed("no notify_type"))?;
    Ok((
        format!("alipay.{}", type_name_or_unknown(notify_type)),
        notify_type.into(),
    ))
}
