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
mod tests {
    use super::*;
    use crate::Provider;

    const KEY_V1_B64: &str = include_str!("../tests/fixtures/alipay/notify_public_key_v1.b64");
    const KEY_V2_PEM: &str =
        include_str!("../tests/fixtures/alipay/alipay-notify-sign-public-key-v2.pem");
    const ALIPAY_PUBLIC_CERT: &str =
        include_str!("../tests/fixtures/alipay/alipayCertPublicKey_RSA2.crt");
    const APP_CERT: &str =
        include_str!("../tests/fixtures/alipay/appCertPublicKey_2021001161683774.crt");
    const ROOT_CERT: &str = include_str!("../tests/fixtures/alipay/alipayRootCert.crt");
    /// alipay-sdk-nodejs-all test/alipay.test.ts notifications, form-encoded as sent.
    const TRADE_NOTIFY: &[u8] = include_bytes!("../tests/fixtures/alipay/trade_status_sync.form");
    const SERVICEMARKET: &[u8] =
        include_bytes!("../tests/fixtures/alipay/servicemarket_order_notify.form");
    const VERIFY_FAIL: &[u8] = include_bytes!("../tests/fixtures/alipay/verify_fail.form");
    /// Test-only keys (openssl genpkey, 2048 bits) and a self-signed certificate of the first.
    const PRIVATE_KEY: &str = include_str!("../tests/fixtures/alipay/alipay_private_key.pem");
    const PRIVATE_KEY_2: &str = include_str!("../tests/fixtures/alipay/alipay_private_key_2.pem");
    const TEST_CERT: &str = include_str!("../tests/fixtures/alipay/alipay_cert.pem");

    const APP_ID: &str = "2021000000000001";

    fn config(app_id: &str, keys: &[&str]) -> Config {
        Config {
            app_id: app_id.into(),
            alipay_public_keys: keys.iter().map(|k| k.to_string()).collect(),
            alipay_cert: None,
        }
    }

    fn alipay(app_id: &str, keys: &[&str]) -> Alipay {
        Alipay::new(&config(app_id, keys)).unwrap()
    }

    fn public_of(pem: &str) -> String {
        RsaSigner::parse_pem(pem).unwrap().public_spki_b64()
    }

    fn admit(p: &Alipay, body: &[u8]) -> Result<Admission, Rejection> {
        let headers: Vec<(String, String)> = vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        )];
        crate::testing::admit(p, &headers, body, SystemTime::UNIX_EPOCH)
    }

    use crate::testing::event;

    /// A form body of `params` (in order) signed V1 with `pem`, values encoded with `enc`.
    fn signed_body(
        pem: &str,
        digest: RsaDigest,
        enc: &'static encoding_rs::Encoding,
        params: &[(&str, &str)],
    ) -> Vec<u8> {
        let encoded: Params = params
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), enc.encode(v).0.into_owned()))
            .collect();
        let sig = RsaSigner::parse_pem(pem)
            .unwrap()
            .sign(digest, &sign_content(&encoded, false));
        let mut body: Vec<String> = encoded
            .iter()
            .map(|(k, v)| format!("{}={}", form::encode(k), form::encode(v)))
            .collect();
        body.push(format!(
            "sign={}",
            form::encode(crypto::b64_encode(&sig).as_bytes())
        ));
        body.join("&").into_bytes()
    }

    fn trade(app_id: &str, amount: &str) -> Vec<(&'static str, String)> {
        vec![
            ("notify_time", "2024-03-01 10:00:05".into()),
            ("notify_type", "trade_status_sync".into()),
            ("notify_id", "2024030100222100005012345678901234".into()),
            ("app_id", app_id.into()),
            ("charset", "utf-8".into()),
            ("version", "1.0".into()),
            ("sign_type", "RSA2".into()),
            ("trade_no", "2024030122001400000000000001".into()),
            ("out_trade_no", "order-1".into()),
            ("trade_status", "TRADE_SUCCESS".into()),
            ("total_amount", amount.into()),
            ("gmt_payment", "2024-03-01 10:00:03".into()),
            ("passback_params", "a%20b+c".into()),
            ("body", "".into()),
        ]
    }

    fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    // PROVIDERS.md §2.7: the trade_status_sync notification, V1 content.
    #[test]
    fn official_trade_notify_verifies_v1() {
        let params = parse_params(TRADE_NOTIFY).unwrap();
        let v1 = sign_content(&params, false);
        let text = String::from_utf8(v1.clone()).unwrap();
        assert!(text.starts_with("app_id=2019073166072302&auth_app_id=2019073166072302&buyer_id="));
        assert!(!text.contains("sign_type"));
        assert!(
            text.contains(r#"&fund_bill_list=[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]&"#)
        );
        let key = public_key(KEY_V1_B64).unwrap();
        let sig =
            crypto::b64(std::str::from_utf8(param(&params, "sign").unwrap()).unwrap()).unwrap();
        assert!(key.verify(RsaDigest::Sha256, &v1, &sig));
        // NEGATIVE: the same notification with sign_type kept (V2 content) fails.
        assert!(!key.verify(RsaDigest::Sha256, &sign_content(&params, true), &sig));

        let (e, ack) = event(admit(
            &alipay("2019073166072302", &[KEY_V1_B64]),
            TRADE_NOTIFY,
        ));
        assert_eq!(e.id, "2019081500222155624068450559358070");
        assert_eq!(e.kind, "alipay.trade.success");
        assert_eq!(e.provider_event, "TRADE_SUCCESS");
        assert_eq!(e.subject.as_deref(), Some("20190815155618536-564-57"));
        assert_eq!(e.time.as_deref(), Some("2019-08-15T15:56:24+08:00"));
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["subject"], "语雀空间 500人规模");
        assert_eq!(data["gmt_create"], "2019-08-15 15:56:22");
        assert_eq!(data["sign_type"], "RSA2");
        assert_eq!(
            data["fund_bill_list"],
            r#"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#
        );
        assert!(data.get("sign").is_none());
        assert_eq!(
            data.as_object().unwrap().len(),
            24,
            "all 25 parameters but sign"
        );
        assert_eq!(ack, Reply::text(200, "success"));
        assert_eq!(ack.body, b"success");
    }

    // §2.7: servicemarket_order_notify, V2 content (sign_type included).
    #[test]
    fn official_servicemarket_verifies_v2_only() {
        let params = parse_params(SERVICEMARKET).unwrap();
        let key = public_key(KEY_V2_PEM).unwrap();
        let sig =
            crypto::b64(std::str::from_utf8(param(&params, "sign").unwrap()).unwrap()).unwrap();
        assert!(key.verify(RsaDigest::Sha256, &sign_content(&params, true), &sig));
        assert!(!key.verify(RsaDigest::Sha256, &sign_content(&params, false), &sig));

        let (e, _) = event(admit(
            &alipay("2017122801303261", &[KEY_V2_PEM]),
            SERVICEMARKET,
        ));
        assert_eq!(e.id, "2019030800222102023008121054923345");
        assert_eq!(e.kind, "alipay.open.servicemarket.order.notify");
        assert_eq!(e.provider_event, "alipay.open.servicemarket.order.notify");
        assert_eq!(e.subject, None);
        assert_eq!(e.time.as_deref(), Some("2019-03-08T10:20:23+08:00"));
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["title"], "麦禾商城模版");
        assert_eq!(data["charset"], "UTF-8");
    }

    // §2.7 NEGATIVE: "verify fail" fails with both rules; and each official notification
    // under the other official key fails.
    #[test]
    fn official_negative_vectors() {
        let both = alipay("2018121762595097", &[KEY_V1_B64, KEY_V2_PEM]);
        assert_eq!(
            admit(&both, VERIFY_FAIL).unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            admit(&alipay("2019073166072302", &[KEY_V2_PEM]), TRADE_NOTIFY).unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            admit(&alipay("2017122801303261", &[KEY_V1_B64]), SERVICEMARKET).unwrap_err(),
            Rejection::BadSignature
        );
    }

    // §2.7 certificate SNs (informational: not used by notify verification).
    #[test]
    fn official_cert_sns_and_cert_key() {
        assert_eq!(
            cert_sn(APP_CERT).unwrap(),
            "866efef280dec9137a87d047ac446315"
        );
        assert_eq!(
            cert_sn(ALIPAY_PUBLIC_CERT).unwrap(),
            "7513daaaa48aa3ba2e4018d84402479c"
        );
        assert_eq!(
            root_cert_sn(ROOT_CERT).unwrap(),
            "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
        );
        let (_, der) = crypto::pem_decode(ALIPAY_PUBLIC_CERT).unwrap();
        let spki = crypto::b64_encode(&spki_of_certificate(&der).unwrap());
        assert!(spki.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhoVesfcG"));
        assert!(spki.ends_with("IDAQAB"));
        assert!(Alipay::new(&Config {
            app_id: APP_ID.into(),
            alipay_public_keys: vec![],
            alipay_cert: Some(ALIPAY_PUBLIC_CERT.into()),
        })
        .is_ok());
    }

    #[test]
    fn accepts_signed_trade_and_keeps_values_verbatim() {
        let t = trade(APP_ID, "88.88");
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&t),
        );
        let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
        let (e, ack) = event(admit(&p, &body));
        assert_eq!(e.kind, "alipay.trade.success");
        assert_eq!(e.id, "2024030100222100005012345678901234");
        assert_eq!(e.subject.as_deref(), Some("order-1"));
        assert_eq!(e.time.as_deref(), Some("2024-03-01T10:00:03+08:00"));
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["passback_params"], "a%20b+c", "decoded exactly once");
        assert_eq!(
            data.get("body"),
            None,
            "empty values are outside the signature: not delivered"
        );
        assert_eq!(ack.status, 200);
    }

    #[test]
    fn refusals() {
        let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
        let good = trade(APP_ID, "88.88");
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&good),
        );
        let text = String::from_utf8(body.clone()).unwrap();

        // tampered amount
        let tampered = text.replace("total_amount=88.88", "total_amount=0.01");
        assert_ne!(tampered, text);
        assert_eq!(
            admit(&p, tampered.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        // an added parameter is signed too
        let added = format!("{text}&extra=1");
        assert_eq!(
            admit(&p, added.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        // wrong key
        let other = alipay(APP_ID, &[&public_of(PRIVATE_KEY_2)]);
        assert_eq!(admit(&other, &body).unwrap_err(), Rejection::BadSignature);
        // wrong app_id, correctly signed
        let foreign = trade("2021000000000002", "88.88");
        let foreign = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&foreign),
        );
        assert_eq!(
            admit(&p, &foreign).unwrap_err(),
            Rejection::WrongRecipient("app_id")
        );
        // missing sign, empty sign, bad base64 sign
        let (unsigned, _) = text.split_once("&sign=").unwrap();
        assert_eq!(
            admit(&p, unsigned.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        let empty = format!("{unsigned}&sign=");
        assert_eq!(
            admit(&p, empty.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        let bad = format!("{unsigned}&sign=%%%not*base64");
        assert_eq!(
            admit(&p, bad.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        // truncated body (the signature loses its tail)
        assert_eq!(
            admit(&p, &body[..body.len() - 10]).unwrap_err(),
            Rejection::BadSignature
        );
        // unsupported sign_type
        let sm2 = text.replace("sign_type=RSA2", "sign_type=SM2");
        assert_eq!(
            admit(&p, sm2.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        // repeated parameter, empty body, JSON body
        let repeated = format!("{text}&total_amount=0.01");
        assert!(matches!(
            admit(&p, repeated.as_bytes()).unwrap_err(),
            Rejection::Malformed(_)
        ));
        assert!(matches!(
            admit(&p, b"").unwrap_err(),
            Rejection::Malformed(_)
        ));
        assert_eq!(
            admit(&p, br#"{"sign":"x"}"#).unwrap_err(),
            Rejection::BadSignature
        );
        // signed, but without notify_id
        let no_id: Vec<_> = good
            .iter()
            .filter(|(k, _)| *k != "notify_id")
            .cloned()
            .collect();
        let no_id = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&no_id),
        );
        assert_eq!(
            admit(&p, &no_id).unwrap_err(),
            Rejection::Malformed("no notify_id")
        );
    }

    #[test]
    fn gbk_body_is_verified_over_gbk_bytes() {
        let mut t = trade(APP_ID, "1.00");
        t.retain(|(k, _)| *k != "charset");
        t.push(("charset", "gbk".into()));
        t.push(("subject", "语雀空间 500人规模".into()));
        let body = signed_body(PRIVATE_KEY, RsaDigest::Sha256, encoding_rs::GBK, &pairs(&t));
        // 语雀 is D3EF C8B8 in GBK: the body carries GBK bytes, percent-encoded.
        assert!(String::from_utf8(body.clone())
            .unwrap()
            .contains("subject=%D3%EF%C8%B8"));
        let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
        let (e, _) = event(admit(&p, &body));
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["subject"], "语雀空间 500人规模");
        assert_eq!(data["charset"], "gbk");
        // The same GBK body read as UTF-8 is not text: verified, then refused as malformed.
        let as_utf8 = String::from_utf8(body)
            .unwrap()
            .replace("charset=gbk", "charset=utf-8");
        let mut t2 = t.clone();
        t2.retain(|(k, _)| *k != "charset");
        t2.push(("charset", "utf-8".into()));
        let mislabelled = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::GBK,
            &pairs(&t2),
        );
        assert_eq!(
            admit(&p, as_utf8.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
        assert_eq!(
            admit(&p, &mislabelled).unwrap_err(),
            Rejection::Malformed("parameter is not valid in its charset")
        );
    }

    #[test]
    fn legacy_rsa_sha1_and_rotation() {
        let mut t = trade(APP_ID, "5.00");
        t.retain(|(k, _)| *k != "sign_type");
        t.push(("sign_type", "RSA".into()));
        let body = signed_body(
            PRIVATE_KEY_2,
            RsaDigest::Sha1,
            encoding_rs::UTF_8,
            &pairs(&t),
        );
        // the second configured key verifies
        let p = alipay(
            APP_ID,
            &[&public_of(PRIVATE_KEY), &public_of(PRIVATE_KEY_2)],
        );
        assert_eq!(event(admit(&p, &body)).0.kind, "alipay.trade.success");
        // SHA-1 content claimed as RSA2 does not verify
        let as_rsa2 = String::from_utf8(body)
            .unwrap()
            .replace("sign_type=RSA&", "sign_type=RSA2&");
        assert_eq!(
            admit(&p, as_rsa2.as_bytes()).unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn certificate_mode_accepts() {
        let c = Config {
            app_id: APP_ID.into(),
            alipay_public_keys: vec![],
            alipay_cert: Some(format!("{ALIPAY_PUBLIC_CERT}\n{TEST_CERT}")),
        };
        let p = Alipay::new(&c).unwrap();
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&trade(APP_ID, "1.00")),
        );
        assert!(admit(&p, &body).is_ok());
        // a certificate also works as an alipay_public_keys entry
        assert!(admit(&alipay(APP_ID, &[TEST_CERT]), &body).is_ok());
    }

    #[test]
    fn event_types() {
        let t = |pairs: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let get = |n: &str| m.get(n).map(String::as_str).filter(|v| !v.is_empty());
            event_type(&get)
        };
        let sync = "trade_status_sync";
        for (status, kind) in [
            ("TRADE_SUCCESS", "alipay.trade.success"),
            ("TRADE_FINISHED", "alipay.trade.finished"),
            ("TRADE_CLOSED", "alipay.trade.closed"),
            ("WAIT_BUYER_PAY", "alipay.trade.wait_buyer_pay"),
        ] {
            let (k, p) = t(&[("notify_type", sync), ("trade_status", status)]).unwrap();
            assert_eq!((k.as_str(), p.as_str()), (kind, status));
        }
        assert_eq!(
            t(&[
                ("msg_method", "alipay.fund.trans.order.changed"),
                ("notify_type", "x")
            ])
            .unwrap(),
            (
                "alipay.fund.trans.order.changed".into(),
                "alipay.fund.trans.order.changed".into()
            )
        );
        assert_eq!(
            t(&[("method", "Open.Mini/Version Audit")]).unwrap().0,
            "alipay.open.mini_version_audit"
        );
        assert_eq!(
            t(&[("notify_type", "Batch Trans..Notify")]).unwrap(),
            (
                "alipay.batch_trans.notify".into(),
                "Batch Trans..Notify".into()
            )
        );
        assert_eq!(
            t(&[("notify_type", sync)]).unwrap().0,
            "alipay.trade_status_sync"
        );
        assert_eq!(t(&[]).unwrap_err(), Rejection::Malformed("no notify_type"));
    }

    #[test]
    fn beijing_times() {
        assert_eq!(
            beijing_rfc3339("2019-08-15 15:56:22").as_deref(),
            Some("2019-08-15T15:56:22+08:00")
        );
        assert_eq!(beijing_rfc3339("2019-08-15T15:56:22"), None);
        assert_eq!(beijing_rfc3339(""), None);
    }

    #[test]
    fn sample_is_accepted() {
        let c = config(APP_ID, &[&public_of(PRIVATE_KEY)]);
        let mut o = SampleOptions::new(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        );
        o.private_key = Some(PRIVATE_KEY.into());
        let r = sample(&c, &o).unwrap();
        let p = Alipay::new(&c).unwrap();
        let (e, _) = event(admit(&p, &r.body));
        assert_eq!(e.kind, "alipay.trade.success");
        assert_eq!(e.time.as_deref(), Some("2023-11-15T06:13:18+08:00"));
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["app_id"], APP_ID);
        assert_eq!(data["notify_time"], "2023-11-15 06:13:20");
        assert_eq!(data["subject"], "hookgate 测试订单");

        // overrides, GBK and an id/event of our choosing
        o.id = Some("notify1".into());
        o.event = Some("TRADE_CLOSED".into());
        o.payload =
            Some(br#"{"charset":"gbk","total_amount":"1.00","gmt_payment":null,"n":1}"#.to_vec());
        let r = sample(&c, &o).unwrap();
        assert!(r.headers[0].1.ends_with("charset=gbk"));
        let (e, _) = event(admit(&p, &r.body));
        assert_eq!(
            (e.id.as_str(), e.kind.as_str()),
            ("notify1", "alipay.trade.closed")
        );
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["subject"], "hookgate 测试订单");
        assert_eq!(data["n"], "1");
        assert!(data.get("gmt_payment").is_none());

        o.private_key = None;
        assert!(sample(&c, &o).is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let keys = |c: &Config| -> Vec<String> {
            Alipay::new(c)
                .err()
                .unwrap()
                .into_iter()
                .map(|e| e.key.into_owned())
                .collect()
        };
        assert_eq!(keys(&config("", &[])), ["app_id", "alipay_public_keys"]);
        assert_eq!(
            keys(&config(APP_ID, &[KEY_V1_B64, "not a key", ""])),
            ["alipay_public_keys[1]", "alipay_public_keys[2]"]
        );
        let c = Config {
            app_id: APP_ID.into(),
            alipay_public_keys: vec![],
            alipay_cert: Some(KEY_V2_PEM.into()),
        };
        assert_eq!(keys(&c), ["alipay_cert"]);
        // a 1024-bit key could never verify with ring: refused at start-up
        let short = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDQVoVS9z6QpcV2kYcIyR2AlX+1Wm+DvPyrUSnTqqIihbOzLz+67dFeQSelaraHJYU2wnL1hXtOJUOQe2XPjLpMKdMiggC/zc36+a7HxiVLHi5OAHI12Zo4YaVFW3EXtmkR5zQWGl2Et15gjzTbi44dHnwbXOUA3ThsPxKIBiOUzQIDAQAB";
        let errs = Alipay::new(&config(APP_ID, &[short])).err().unwrap();
        assert!(errs[0].message.contains("1024 bits"), "{}", errs[0].message);
        // unknown keys are refused by serde
        assert!(
            serde_json::from_str::<Config>(r#"{"app_id":"1","alipay_public_key":"x"}"#).is_err()
        );
        let c: Config =
            serde_json::from_str(r#"{"app_id":"1","alipay_public_keys":["k"]}"#).unwrap();
        assert_eq!(c.alipay_public_keys, ["k"]);
    }

    #[test]
    fn failure_body_is_fail() {
        let p = alipay(APP_ID, &[KEY_V1_B64]);
        assert_eq!(
            p.failure(401, "signature does not verify"),
            Reply::text(401, "fail")
        );
    }

    /// `swallower`'s value takes `&swallowed=value` of the next parameter (in sorted order),
    /// which disappears: the signed string is the same, so the signature still verifies.
    fn regroup(
        params: &[(&'static str, String)],
        swallower: &str,
        swallowed: &str,
    ) -> Vec<(&'static str, String)> {
        let taken = params
            .iter()
            .find(|(k, _)| *k == swallowed)
            .unwrap()
            .1
            .clone();
        params
            .iter()
            .filter(|(k, _)| *k != swallowed)
            .map(|(k, v)| match *k == swallower {
                true => (*k, format!("{v}&{swallowed}={taken}")),
                false => (*k, v.clone()),
            })
            .collect()
    }

    // Issue 11, class 2: `k=v&k=v` with unescaped values is ambiguous; a regrouped request
    // must not become a second event.
    #[test]
    fn class2_regrouped_params_are_refused_or_keep_the_content_key() {
        let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
        let t = trade(APP_ID, "88.88");
        let key = |params: &[(&'static str, String)]| {
            let encoded: Params = pairs(params)
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            crate::sha256_key(&sign_content(&encoded, false))
        };
        let original = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&t),
        );
        let (e, _) = event(admit(&p, &original));
        assert_eq!(e.content_key.as_deref(), Some(key(&t).as_str()));
        assert!(e.content_key.as_deref().unwrap().starts_with("sha256:"));
        assert_eq!(e.content_key.as_ref().unwrap().len(), 7 + 64);

        // notify_id swallows notify_time: same signature, and an id that is not Alipay's.
        let r = regroup(&t, "notify_id", "notify_time");
        assert_eq!(key(&r), key(&t), "the signed string is unchanged");
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&r),
        );
        assert_eq!(
            admit(&p, &body).unwrap_err(),
            Rejection::Malformed("notify_id is not an Alipay notify id")
        );
        // gmt_payment swallows notify_id: no id at all.
        let r = regroup(&t, "gmt_payment", "notify_id");
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&r),
        );
        assert_eq!(
            admit(&p, &body).unwrap_err(),
            Rejection::Malformed("no notify_id")
        );
        // trade_no swallows trade_status: accepted (another type), but the same id and the
        // same content key, so the gateway sees a duplicate.
        let r = regroup(&t, "trade_no", "trade_status");
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&r),
        );
        let (again, _) = event(admit(&p, &body));
        assert_ne!(again.kind, e.kind);
        assert_eq!((&again.id, &again.content_key), (&e.id, &e.content_key));
    }

    // Issue 11, class 2: parameters with an empty name or value are not in the signed
    // string, so they are not Alipay's and stay out of `data`.
    #[test]
    fn class2_params_outside_the_signature_stay_out_of_data() {
        let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
        let t = trade(APP_ID, "88.88");
        let mut body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&t),
        );
        body.extend_from_slice(b"&=injected&injected=&flag");
        let (e, _) = event(admit(&p, &body));
        let data = serde_json::to_value(&e.data).unwrap();
        let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
        assert!(
            !keys
                .iter()
                .any(|k| k.is_empty() || *k == "injected" || *k == "flag" || *k == "body"),
            "{keys:?}"
        );
        assert!(!serde_json::to_string(&data).unwrap().contains("injected"));
    }
}
