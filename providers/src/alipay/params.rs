//! The form body: decoded once, in the sender's charset, and the string Alipay signs.

use std::collections::BTreeMap;

use crate::crypto::RsaDigest;
use crate::{form, Rejection};

/// Decoded parameters in received order, values as bytes in the sender's charset.
pub(super) type Params = Vec<(Vec<u8>, Vec<u8>)>;

pub(super) fn param<'p>(params: &'p Params, name: &str) -> Option<&'p [u8]> {
    params
        .iter()
        .find(|(k, _)| k.as_slice() == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// Decodes the body exactly once. A repeated name is refused: the signed content and the
/// delivered data could otherwise disagree about which value counts.
pub(super) fn parse_params(body: &[u8]) -> Result<Params, Rejection> {
    let params: Params = form::pairs(body).collect();
    if params.is_empty() {
        return Err(Rejection::Malformed("empty form body"));
    }
    let mut names: Vec<&[u8]> = params.iter().map(|(k, _)| k.as_slice()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Rejection::Malformed("repeated form parameter"));
    }
    Ok(params)
}

/// The signed string : parameters except `sign` (and `sign_type` unless
/// `keep_sign_type`), without empty names or values, sorted bytewise, `k=v` joined by `&`.
pub(super) fn sign_content(params: &Params, keep_sign_type: bool) -> Vec<u8> {
    content_of(&signed_pairs(params, keep_sign_type))
}

/// The signed string of [`signed_pairs`] (sorted): `k=v` joined by `&`.
pub(super) fn content_of(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
    out
}

/// The parameter names Alipay's notifications use (PROVIDERS.md §2.1, and the gateway
/// messages'), for [`crate::shared::swallowed`]; not `sign_type`, which the trade notifications'
/// signed content leaves out (a value that takes it in changes the content).
pub(super) const NAMES: &[&str] = &[
    "app_id",
    "auth_app_id",
    "biz_content",
    "body",
    "buyer_id",
    "buyer_logon_id",
    "buyer_pay_amount",
    "charset",
    "fund_bill_list",
    "gmt_close",
    "gmt_create",
    "gmt_payment",
    "gmt_refund",
    "invoice_amount",
    "method",
    "msg_method",
    "notify_id",
    "notify_time",
    "notify_type",
    "out_biz_no",
    "out_trade_no",
    "passback_params",
    "point_amount",
    "receipt_amount",
    "refund_fee",
    "seller_email",
    "seller_id",
    "subject",
    "total_amount",
    "trade_no",
    "trade_status",
    "utc_timestamp",
    "version",
    "voucher_detail_list",
];

/// The parameters Alipay's events are made of (type, id, subject, time, recipient): none of
/// their values holds `&` ([`crate::shared::regrouped`]).
pub(super) const SHAPED: &[&str] = &[
    "app_id",
    "auth_app_id",
    "charset",
    "gmt_payment",
    "gmt_refund",
    "method",
    "msg_method",
    "notify_id",
    "notify_time",
    "notify_type",
    "out_trade_no",
    "trade_no",
    "trade_status",
    "version",
];

/// The pairs the signed content is made of, sorted by name ([`content_of`] joins them).
pub(super) fn signed_pairs(params: &Params, keep_sign_type: bool) -> Vec<(&[u8], &[u8])> {
    let mut pairs: Vec<(&[u8], &[u8])> = params
        .iter()
        .filter(|(k, v)| {
            !k.is_empty()
                && !v.is_empty()
                && k.as_slice() != b"sign"
                && (keep_sign_type || k.as_slice() != b"sign_type")
        })
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
}

/// `sign_type` picks the digest; Alipay omits it nowhere in practice, RSA2 is the default.
pub(super) fn digest_of(sign_type: Option<&[u8]>) -> Option<RsaDigest> {
    match sign_type {
        None => Some(RsaDigest::Sha256),
        Some(t) if t.eq_ignore_ascii_case(b"RSA2") => Some(RsaDigest::Sha256),
        Some(t) if t.eq_ignore_ascii_case(b"RSA") => Some(RsaDigest::Sha1),
        Some(_) => None,
    }
}

/// The `charset` parameter's encoding: UTF-8 (default) or the GBK family.
pub(super) fn charset(label: Option<&[u8]>) -> Option<&'static encoding_rs::Encoding> {
    let Some(label) = label else {
        return Some(encoding_rs::UTF_8);
    };
    let enc = encoding_rs::Encoding::for_label(label)?;
    [encoding_rs::UTF_8, encoding_rs::GBK, encoding_rs::GB18030]
        .contains(&enc)
        .then_some(enc)
}

/// The verified parameters as UTF-8 text, `sign` left out, and so is every parameter with an
/// empty name or value: the signed content skips those, so they are not Alipay's.
pub(super) fn decode_fields(
    params: &Params,
    enc: &'static encoding_rs::Encoding,
) -> Result<BTreeMap<String, String>, Rejection> {
    let text = |bytes: &[u8]| {
        enc.decode_without_bom_handling_and_without_replacement(bytes)
            .map(|s| s.into_owned())
            .ok_or(Rejection::Malformed(
                "parameter is not valid in its charset",
            ))
    };
    let mut fields = BTreeMap::new();
    for (k, v) in params {
        if k.as_slice() != b"sign" && !k.is_empty() && !v.is_empty() {
            fields.insert(text(k)?, text(v)?);
        }
    }
    Ok(fields)
}
