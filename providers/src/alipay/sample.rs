//! Notifications as Alipay sends them, signed with a test setup's Alipay private key, for
//! `hookgate sign` and the tests.

use std::collections::BTreeMap;

use super::params::{charset, digest_of, sign_content, Params};
use super::{Config, TIME_FORMAT};
use crate::crypto::{self, random_digits, RsaSigner};
use crate::form;
use crate::shared::{beijing, unix_secs};
use crate::sign::{SampleOptions, SampleRequest};

/// A `trade_status_sync` notification as Alipay sends it, signed (V1) with `o.private_key`
/// (Alipay's key in a test setup, whose public half is in the config). `o.event` is the
/// `trade_status`; `o.payload`, a JSON object, adds or overrides parameters (`null` removes
/// one); `charset` `gbk` encodes the body in GBK.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let pem = o.private_key.as_deref().ok_or(
        "alipay samples need a private key: the one whose public half is in alipay_public_keys",
    )?;
    let signer = RsaSigner::parse_pem(pem)?;
    let mut params = default_params(c, o);
    if let Some(payload) = &o.payload {
        let overrides: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
        for (k, v) in overrides {
            match v {
                serde_json::Value::Null => params.remove(&k),
                serde_json::Value::String(s) => params.insert(k, s),
                other => params.insert(k, other.to_string()),
            };
        }
    }
    let enc = charset(params.get("charset").map(|s| s.as_bytes()))
        .ok_or("payload: charset must be utf-8 or gbk")?;
    let digest = digest_of(params.get("sign_type").map(|s| s.as_bytes()))
        .ok_or("payload: sign_type must be RSA2 or RSA")?;
    let mut encoded: Params = Vec::new();
    for (k, v) in &params {
        let (bytes, _, unmappable) = enc.encode(v);
        if unmappable {
            return Err(format!("{k}: not representable in {}", enc.name()));
        }
        encoded.push((k.as_bytes().to_vec(), bytes.into_owned()));
    }
    let sig = signer.sign(digest, &sign_content(&encoded, false));
    encoded.push((b"sign".to_vec(), crypto::b64_encode(&sig).into_bytes()));
    let body = encoded
        .iter()
        .map(|(k, v)| format!("{}={}", form::encode(k), form::encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(SampleRequest {
        query: String::new(),
        headers: vec![(
            "Content-Type".into(),
            format!(
                "application/x-www-form-urlencoded; charset={}",
                enc.name().to_ascii_lowercase()
            ),
        )],
        body: body.into_bytes(),
    })
}

fn default_params(c: &Config, o: &SampleOptions) -> BTreeMap<String, String> {
    let now = unix_secs(o.now);
    let at = |offset: i64| beijing(now.saturating_add(offset), TIME_FORMAT);
    let date = at(0).replace('-', "").chars().take(8).collect::<String>();
    let notify_id =
        o.id.clone()
            .unwrap_or_else(|| format!("{date}0022{}", random_digits(22)));
    let trade_status = o.event.clone().unwrap_or_else(|| "TRADE_SUCCESS".into());
    let pairs = [
        ("app_id", c.app_id.as_str()),
        ("auth_app_id", c.app_id.as_str()),
        ("buyer_id", "2088102177846880"),
        ("buyer_logon_id", "159****5620"),
        ("buyer_pay_amount", "88.88"),
        ("charset", "utf-8"),
        (
            "fund_bill_list",
            r#"[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]"#,
        ),
        ("gmt_create", &at(-5)),
        ("gmt_payment", &at(-2)),
        ("invoice_amount", "88.88"),
        ("notify_id", &notify_id),
        ("notify_time", &at(0)),
        ("notify_type", "trade_status_sync"),
        ("out_trade_no", &format!("hookgate-{}", random_digits(12))),
        ("point_amount", "0.00"),
        ("receipt_amount", "88.88"),
        ("seller_id", "2088101106499364"),
        ("sign_type", "RSA2"),
        ("subject", "hookgate 测试订单"),
        ("total_amount", "88.88"),
        ("trade_no", &format!("{date}22001{}", random_digits(15))),
        ("trade_status", &trade_status),
        ("version", "1.0"),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
