//! Notifications as WeChat Pay sends them, for `hookgate sign` and the tests: v3 encrypted
//! and signed with a test setup's platform key, v2 signed with the API key.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::v2::{v2_signature, xml, TIME_FORMAT};
use super::v3::{
    v3_message, AEAD, NONCE, RSA_SIGNATURE_TYPE, SERIAL, SIGNATURE, SIGNATURE_TYPE, TIMESTAMP,
};
use super::{Config, SignType};
use crate::crypto::{self, random_digits, random_uuid, RsaDigest, RsaSigner};
use crate::shared::{beijing, unix_secs};
use crate::sign::{SampleOptions, SampleRequest};

/// v3 times, written in Beijing time with their offset.
const V3_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S+08:00";

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
        "create_time": beijing(now, V3_TIME_FORMAT),
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
    let success_time = beijing(now.saturating_sub(2), V3_TIME_FORMAT);
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
        ("time_end", beijing(now.saturating_sub(2), TIME_FORMAT)),
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
