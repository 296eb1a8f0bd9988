//! API v3: RSA-SHA256 over `timestamp\nnonce\nbody\n` by the platform key the serial names,
//! a 5-minute window, then the AEAD_AES_256_GCM `resource`.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::{WechatPay, V3};
use crate::crypto::{self, RsaDigest, RsaPublicKey};
use crate::shared::{
    non_empty, raw_members, raw_object_data, raw_value, type_name_or_unknown, unix_secs,
    within_window,
};
use crate::{Admission, Event, RawRequest, Rejection, Reply, Secret};

pub(super) const TIMESTAMP: &str = "Wechatpay-Timestamp";
pub(super) const NONCE: &str = "Wechatpay-Nonce";
pub(super) const SIGNATURE: &str = "Wechatpay-Signature";
pub(super) const SERIAL: &str = "Wechatpay-Serial";
pub(super) const SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";
pub(super) const RSA_SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";
/// WeChat Pay now and then sends a deliberately wrong signature to see that merchants check
/// it; it must be refused like any other bad signature.
const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";
/// wechatpay-go refuses `|now − ts| >= 300 s`; `within_window` accepts `<= tolerance`.
const TOLERANCE_SECS: i64 = 299;
pub(super) const AEAD: &str = "AEAD_AES_256_GCM";

impl WechatPay {
    pub(super) fn admit_v3(
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

        let body: Map<String, Value> = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not a JSON object"))?;
        let text = |name: &str| non_empty(body.get(name)).map(str::to_owned);
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
        let field = |name: &str| non_empty(plain.get(name));
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
        // The notification with its resource decrypted, every other value as sent.
        let mut members =
            raw_members(req.body).ok_or(Rejection::Malformed("body is not a JSON object"))?;
        let resource = raw_value(&plaintext).ok_or(Rejection::Malformed(
            "resource plaintext is not a JSON object",
        ))?;
        members.insert("resource".into(), resource);
        let event = Event {
            kind: format!("wechatpay.{}", type_name_or_unknown(&event_type)),
            id,
            provider_event: event_type,
            time,
            subject,
            data: raw_object_data(&members),
            content_key: None,
        };
        Ok(Admission::Event {
            event,
            ack: Reply::empty(204),
        })
    }

    /// With `mch_id` set, a notification that names merchants must name this one. One that
    /// names none (a complaint notification's plaintext has no merchant id) is ours: only our
    /// APIv3 key decrypted it.
    pub(super) fn check_recipient(&self, candidates: &[Option<&str>]) -> Result<(), Rejection> {
        let mut named = candidates.iter().flatten().peekable();
        match &self.mch_id {
            Some(mine) if named.peek().is_some() && !named.any(|id| id == mine) => {
                Err(Rejection::WrongRecipient("mchid"))
            }
            _ => Ok(()),
        }
    }
}

/// Unix seconds. A number in another unit (milliseconds) or before 1970 is a time outside the
/// window, refused as such (401), not as a malformed header.
pub(super) fn parse_timestamp(s: &str) -> Result<i64, Rejection> {
    const BAD: Rejection = Rejection::Malformed("Wechatpay-Timestamp is not Unix seconds");
    let (negative, abs) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if abs.is_empty() || abs.len() > 40 || !abs.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    // Past i64 (40 digits at most): as far outside the window as can be.
    let n = abs.parse::<i64>().unwrap_or(i64::MAX);
    Ok(if negative { -n } else { n })
}

/// The v3 signed message, `timestamp\nnonce\nbody\n` .
pub(super) fn v3_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(nonce.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(body);
    msg.push(b'\n');
    msg
}

pub(super) fn verify_v3(
    key: &RsaPublicKey,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    sig: &[u8],
) -> bool {
    key.verify(RsaDigest::Sha256, &v3_message(timestamp, nonce, body), sig)
}

/// Decrypts `resource` with each APIv3 key in turn .
pub(super) fn decrypt_resource(
    keys: &[Secret],
    resource: &Map<String, Value>,
) -> Result<Vec<u8>, Rejection> {
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
