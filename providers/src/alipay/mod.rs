//! Alipay asynchronous notifications (`notify_url`, 异步通知): a form body whose parameters,
//! sorted and joined, carry an RSA signature by Alipay's key in `sign` (RSA2 = SHA256withRSA,
//! legacy `RSA` = SHA1withRSA). The signature covers decoded parameters, not the body, so it
//! is checked over the decoded bytes in the sender's charset (UTF-8 or GBK), before anything is
//! transcoded. Acknowledged with the literal body `success`. Protocol: PROVIDERS.md §2.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Deserialize;

use crate::crypto::{self, RsaDigest, RsaPublicKey, RsaSigner};
use crate::sign::{SampleOptions, SampleRequest};
use crate::{
    form, Admission, ConfigError, Data, Event, ProviderKind, RawRequest, Rejection, Reply,
};

/// The only body Alipay takes as success; anything else makes it resend (§2.5).
const SUCCESS: &str = "success";
const FAIL: &str = "fail";

/// Alipay signs with 2048-bit keys; ring verifies 2048 to 8192 bits, so a shorter (legacy
/// 1024-bit) key could never verify and is refused at start-up instead.
const MIN_KEY_BITS: usize = 2048;

/// Notification times are Beijing time without an offset.
const BEIJING_SECS: i32 = 8 * 3600;

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

pub struct Alipay {
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
    /// Returns the content that verified: what [`Event::content_key`] is a digest of.
    fn verify(&self, params: &Params, digest: RsaDigest, sig: &[u8]) -> Result<Vec<u8>, Rejection> {
        for keep_sign_type in [false, true] {
            let content = sign_content(params, keep_sign_type);
            if self.keys.iter().any(|k| k.verify(digest, &content, sig)) {
                return Ok(content);
            }
        }
        Err(Rejection::BadSignature)
    }
}

/// Decoded parameters in received order, values as bytes in the sender's charset.
type Params = Vec<(Vec<u8>, Vec<u8>)>;

fn param<'p>(params: &'p Params, name: &str) -> Option<&'p [u8]> {
    params
        .iter()
        .find(|(k, _)| k.as_slice() == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// Decodes the body exactly once. A repeated name is refused: the signed content and the
/// delivered data could otherwise disagree about which value counts.
fn parse_params(body: &[u8]) -> Result<Params, Rejection> {
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

/// The signed string (§2.3): parameters except `sign` (and `sign_type` unless
/// `keep_sign_type`), without empty names or values, sorted bytewise, `k=v` joined by `&`.
fn sign_content(params: &Params, keep_sign_type: bool) -> Vec<u8> {
    let mut kept: Vec<&(Vec<u8>, Vec<u8>)> = params
        .iter()
        .filter(|(k, v)| {
            !k.is_empty()
                && !v.is_empty()
                && k.as_slice() != b"sign"
                && (keep_sign_type || k.as_slice() != b"sign_type")
        })
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (i, (k, v)) in kept.into_iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
    out
}

/// `sign_type` picks the digest; Alipay omits it nowhere in practice, RSA2 is the default.
fn digest_of(sign_type: Option<&[u8]>) -> Option<RsaDigest> {
    match sign_type {
        None => Some(RsaDigest::Sha256),
        Some(t) if t.eq_ignore_ascii_case(b"RSA2") => Some(RsaDigest::Sha256),
        Some(t) if t.eq_ignore_ascii_case(b"RSA") => Some(RsaDigest::Sha1),
        Some(_) => None,
    }
}

/// The `charset` parameter's encoding: UTF-8 (default) or the GBK family.
fn charset(label: Option<&[u8]>) -> Option<&'static encoding_rs::Encoding> {
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
fn decode_fields(
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
        let id = crate::bounded(
            id,
            is_notify_id_char,
            "notify_id is not an Alipay notify id",
        )?;
        let (kind, provider_event) = event_type(&get)?;
        // A refund is a trade_status_sync too; its own time is gmt_refund.
        let time = ["gmt_refund", "gmt_payment", "notify_time"]
            .iter()
            .find_map(|name| get(name).and_then(beijing_rfc3339));
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
            content_key: Some(crate::sha256_key(&signed)),
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
/// method, anything else by `notify_type` (§2.4).
fn event_type<'f>(get: &impl Fn(&str) -> Option<&'f str>) -> Result<(String, String), Rejection> {
    if get("notify_type") == Some("trade_status_sync") {
        if let Some(status) = get("trade_status") {
            let name = status.strip_prefix("TRADE_").unwrap_or(status);
            return Ok((
                format!("alipay.trade.{}", crate::type_name_or_unknown(name)),
                status.into(),
            ));
        }
    }
    if let Some(method) = get("msg_method").or_else(|| get("method")) {
        let name = crate::type_name_or_unknown(method);
        let kind = if name.starts_with("alipay.") {
            name
        } else {
            format!("alipay.{name}")
        };
        return Ok((kind, method.into()));
    }
    let notify_type = get("notify_type").ok_or(Rejection::Malformed("no notify_type"))?;
    Ok((
        format!("alipay.{}", crate::type_name_or_unknown(notify_type)),
        notify_type.into(),
    ))
}

/// `2019-08-15 15:56:22` (Beijing time) as RFC 3339 with its `+08:00` offset.
fn beijing_rfc3339(s: &str) -> Option<String> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    let t = naive
        .and_local_timezone(chrono::FixedOffset::east_opt(BEIJING_SECS)?)
        .single()?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

/// A configured public key: bare base64 SPKI (the console's form) or PEM (`PUBLIC KEY`,
/// `RSA PUBLIC KEY` or a `CERTIFICATE`).
fn public_key(text: &str) -> Result<RsaPublicKey, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    let spki = if text.contains("-----BEGIN") {
        let (label, der) = crypto::pem_decode(text)?;
        match label.as_str() {
            "CERTIFICATE" => spki_of_certificate(&der)?,
            "PUBLIC KEY" => der,
            "RSA PUBLIC KEY" => spki_of_pkcs1(&der)?,
            other => {
                return Err(format!(
                    "expected a PUBLIC KEY or CERTIFICATE, found {other}"
                ))
            }
        }
    } else {
        let compact: String = text.split_whitespace().collect();
        crypto::b64(&compact).ok_or("neither PEM nor base64")?
    };
    key_from_spki(&spki)
}

fn key_from_spki(spki: &[u8]) -> Result<RsaPublicKey, String> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPublicKey::from_public_key_der(spki)
        .map_err(|e| format!("not an RSA public key: {e}"))?;
    let bits = key.size() * 8;
    if bits < MIN_KEY_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_KEY_BITS} are required (use the RSA2 key)"
        ));
    }
    RsaPublicKey::from_spki_der(spki)
}

fn spki_of_certificate(der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_cert::der::{Decode, Encode};
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())
}

fn spki_of_pkcs1(der: &[u8]) -> Result<Vec<u8>, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::EncodePublicKey;
    rsa::RsaPublicKey::from_pkcs1_der(der)
        .map_err(|e| format!("not an RSA public key: {e}"))?
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| e.to_string())
}

/// Alipay's certificate SN, `md5_hex(issuer DN || decimal serial)` (§2.3). Notifications do not
/// use it; it tells an operator which `alipayCertPublicKey_RSA2.crt` a response's
/// `alipay_cert_sn` refers to.
pub fn cert_sn(pem: &str) -> Result<String, String> {
    let der = crypto::pem_blocks(pem, "CERTIFICATE")
        .into_iter()
        .next()
        .ok_or("no PEM CERTIFICATE block")?;
    sn_of(&parse_certificate(&der)?)
}

/// The SN of a root bundle (`alipayRootCert.crt`): the SNs of its RSA-signed certificates
/// joined by `_`; SM2 and ECDSA certificates are skipped.
pub fn root_cert_sn(pem: &str) -> Result<String, String> {
    const RSA_SIGNATURES: &str = "1.2.840.113549.1.1.";
    let mut sns = Vec::new();
    for der in crypto::pem_blocks(pem, "CERTIFICATE") {
        let cert = parse_certificate(&der)?;
        if cert
            .signature_algorithm
            .oid
            .to_string()
            .starts_with(RSA_SIGNATURES)
        {
            sns.push(sn_of(&cert)?);
        }
    }
    if sns.is_empty() {
        return Err("no RSA-signed certificate".into());
    }
    Ok(sns.join("_"))
}

fn parse_certificate(der: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))
}

fn sn_of(cert: &x509_cert::Certificate) -> Result<String, String> {
    use md5::{Digest, Md5};
    let tbs = &cert.tbs_certificate;
    // RFC 2253 order (last RDN first), `SHORTNAME=value`, as Java's X500Principal prints it.
    let issuer = tbs.issuer.to_string();
    let serial = rsa::BigUint::from_bytes_be(tbs.serial_number.as_bytes()).to_string();
    Ok(hex::encode(Md5::digest(format!("{issuer}{serial}"))))
}

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
    let now = unix_secs_beijing(o.now);
    let at = |offset: i64| {
        chrono::DateTime::from_timestamp(now + offset, 0)
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
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

/// Unix seconds shifted to Beijing wall-clock time (formatted as if UTC).
fn unix_secs_beijing(t: SystemTime) -> i64 {
    crate::unix_secs(t).saturating_add(i64::from(BEIJING_SECS))
}

fn random_digits(n: usize) -> String {
    crypto::random_bytes(n)
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect()
}

#[cfg(test)]
mod tests;
