//! Legacy API v2: a flat XML body signed with MD5 or HMAC-SHA256 over its sorted parameters
//! and the API key; answered with a `return_code` XML.

use md5::{Digest, Md5};
use serde_json::Value;

use super::{SignType, WechatPay, V2};
use crate::crypto::{self, MacAlg};
use crate::shared::{beijing_rfc3339, bounded, sha256_key};
use crate::{Admission, Data, Event, RawRequest, Rejection, Reply};

pub(super) const V2_SUCCESS: &str =
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
/// v2 times are Beijing time without an offset, written like this.
pub(super) const TIME_FORMAT: &str = "%Y%m%d%H%M%S";

impl WechatPay {
    pub(super) fn admit_v2(&self, v2: &V2, req: &RawRequest<'_>) -> Result<Admission, Rejection> {
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
        // Only WeChat Pay's own grouping of the signed content makes the event: a copy
        // regrouped under the same signature is refused ([`crate::shared::swallowed`]).
        let pairs: Vec<(&[u8], &[u8])> = params
            .iter()
            .filter(|(k, v)| k != "sign" && !v.is_empty())
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        if let Some(why) = crate::shared::regrouped(&pairs, NAMES, SHAPED) {
            return Err(Rejection::Malformed(why));
        }

        self.check_recipient(&[get("mch_id"), get("sub_mch_id")])?;
        let id = get("transaction_id")
            .or_else(|| get("out_trade_no"))
            .ok_or(Rejection::Malformed("no transaction_id or out_trade_no"))?;
        // Values are signed unescaped (`k=v&k=v`), so one element can swallow the next under
        // the same signature: an id is only what WeChat Pay sends (digits for
        // `transaction_id`; `[0-9A-Za-z_-|*@]` for `out_trade_no`), never `&` or `=`.
        let id = bounded(id, is_v2_id_char, "transaction_id is not a WeChat Pay id")?;
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
            time: get("time_end").and_then(|t| beijing_rfc3339(t, TIME_FORMAT)),
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
            content_key: Some(sha256_key(content.as_bytes())),
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

/// The names of WeChat Pay v2 payment notifications' elements, for
/// [`crate::shared::swallowed`].
const NAMES: &[&str] = &[
    "appid",
    "attach",
    "bank_type",
    "cash_fee",
    "cash_fee_type",
    "coupon_count",
    "coupon_fee",
    "device_info",
    "err_code",
    "err_code_des",
    "fee_type",
    "is_subscribe",
    "mch_id",
    "nonce_str",
    "openid",
    "out_trade_no",
    "promotion_detail",
    "result_code",
    "return_code",
    "return_msg",
    "settlement_total_fee",
    "sign_type",
    "sub_appid",
    "sub_is_subscribe",
    "sub_mch_id",
    "sub_openid",
    "time_end",
    "total_fee",
    "trade_type",
    "transaction_id",
    "version",
];

/// The elements WeChat Pay v2 events are made of (type, id, subject, time, recipient): none
/// of their values holds `&` ([`crate::shared::regrouped`]).
const SHAPED: &[&str] = &[
    "appid",
    "mch_id",
    "out_trade_no",
    "result_code",
    "return_code",
    "sub_mch_id",
    "time_end",
    "transaction_id",
];

/// A v2 `transaction_id` (digits) or `out_trade_no` (`[0-9A-Za-z_-|*@]`, at most 32).
fn is_v2_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*' | '@')
}

/// The v2 parameters of a flat `<xml>` document, text and CDATA alike. A DOCTYPE is refused
/// (no entity can be declared), as are nesting and repeated names.
pub(super) fn parse_xml(body: &[u8]) -> Result<Vec<(String, String)>, Rejection> {
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

/// `k=v&…` of the non-empty parameters except `sign`, sorted by name .
pub(super) fn v2_content(params: &[(String, String)]) -> String {
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
        SignType::HmacSha256 => crypto::hmac(MacAlg::Sha256, key.as_bytes(), &[msg.as_bytes()]),
    }
}

/// The v2 `sign` of `params` (uppercase hex), as WeChat Pay computes it.
#[cfg(any(test, feature = "sign"))]
pub(super) fn v2_signature(sign_type: SignType, params: &[(String, String)], key: &str) -> String {
    hex::encode_upper(v2_digest(sign_type, &v2_content(params), key))
}

/// A flat `<xml>` document with every value in CDATA.
pub(super) fn xml(params: &[(&str, &str)]) -> String {
    let mut out = String::from("<xml>");
    for (k, v) in params {
        // `]]>` cannot appear inside CDATA: close the section and reopen it around `>`.
        let v = v.replace("]]>", "]]]]><![CDATA[>");
        out.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
    }
    out.push_str("</xml>");
    out
}
