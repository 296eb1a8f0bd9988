//! Shared primitives. Everything here is RustCrypto or ring; comparisons are constant time.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::KeyInit;
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use rsa::pkcs1::EncodeRsaPublicKey;
use subtle::ConstantTimeEq;

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The digests HMAC is used with (GitHub, Standard Webhooks, DingTalk robots, WeChat Pay v2,
/// `hmac` sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlg {
    Sha1,
    Sha256,
    Sha512,
}

/// HMAC of the concatenation of `parts` under `key` (any length). Compare the result with
/// [`ct_eq`].
///
/// ring, not RustCrypto's `hmac`/`sha2`: ring's SHA-2 is the hand-tuned assembly (AVX2, SHA
/// extensions where the CPU has them). On a Xeon without SHA extensions RustCrypto's portable
/// SHA-256 took 40 % of the gateway's CPU at flat-out ingest of 7 KB deliveries, about twice
/// ring's time for the same bytes (docs/benchmarks.md, session 11).
pub fn hmac(alg: MacAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let alg = match alg {
        MacAlg::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        MacAlg::Sha256 => ring::hmac::HMAC_SHA256,
        MacAlg::Sha512 => ring::hmac::HMAC_SHA512,
    };
    let mut m = ring::hmac::Context::with_key(&ring::hmac::Key::new(alg, key));
    for p in parts {
        m.update(p);
    }
    m.sign().as_ref().to_vec()
}

/// SHA-256 of the concatenation of `parts` (ring, for the reason given at [`hmac`]).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    digest(&ring::digest::SHA256, parts)
}

/// SHA-1 of the concatenation of `parts`: WeCom/DingTalk message signatures and Feishu's
/// legacy card signatures are defined with it.
pub fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, parts)
}

/// `N` must be `alg`'s output length. Straight into an array: the dedup fingerprint takes one
/// per request.
fn digest<const N: usize>(alg: &'static ring::digest::Algorithm, parts: &[&[u8]]) -> [u8; N] {
    let mut h = ring::digest::Context::new(alg);
    for p in parts {
        h.update(p);
    }
    h.finish().as_ref().try_into().expect("the digest's length")
}

/// Strict RFC 4648 base64 with padding.
pub fn b64(s: &str) -> Option<Vec<u8>> {
    general_purpose::STANDARD.decode(s.trim()).ok()
}

pub fn b64_encode(bytes: &[u8]) -> String {
    general_purpose::STANDARD.encode(bytes)
}

/// Base64 that accepts missing padding and non-zero trailing bits: DingTalk's 43-character
/// AES key and unpadded Standard Webhooks secrets need it (docs/providers/dingtalk.md, standard.md).
pub fn b64_lenient(s: &str) -> Option<Vec<u8>> {
    const LENIENT: general_purpose::GeneralPurpose = general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(s.trim()).ok()
}

/// An RSA public key ready for PKCS#1 v1.5 verification (ring).
#[derive(Clone)]
pub struct RsaPublicKey {
    /// PKCS#1 `RSAPublicKey` DER, the form ring takes.
    pkcs1: Vec<u8>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPublicKey")
    }
}

/// Digest of an RSA PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaDigest {
    Sha1,
    Sha256,
}

impl RsaPublicKey {
    /// Accepts a PEM `PUBLIC KEY` (SPKI), a PEM `CERTIFICATE`, a PEM `RSA PUBLIC KEY`, or the
    /// bare base64 SPKI that the Alipay console shows.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains("-----BEGIN CERTIFICATE-----") {
            return Certificate::parse_pem(text).map(|c| c.key);
        }
        let der = if text.contains("-----BEGIN") {
            let (label, der) = pem_decode(text)?;
            if label == "RSA PUBLIC KEY" {
                return Self::from_pkcs1_der(&der);
            }
            der
        } else {
            let compact: String = text.split_whitespace().collect();
            b64(&compact).ok_or("not base64")?
        };
        Self::from_spki_der(&der)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        use rsa::pkcs8::DecodePublicKey;
        let key = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|e| format!("not an RSA public key: {e}"))?;
        let pkcs1 = key.to_pkcs1_der().map_err(|e| e.to_string())?;
        Ok(RsaPublicKey {
            pkcs1: pkcs1.as_bytes().to_vec(),
        })
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        rsa::RsaPublicKey::from_pkcs1_der(der)
            .map_err(|e| format!("not an RSA public key: {e}"))?;
        Ok(RsaPublicKey {
            pkcs1: der.to_vec(),
        })
    }

    /// RSASSA-PKCS1-v1_5 verification of `sig` over `msg`.
    pub fn verify(&self, digest: RsaDigest, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match digest {
            RsaDigest::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaDigest::Sha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        };
        UnparsedPublicKey::new(alg, &self.pkcs1)
            .verify(msg, sig)
            .is_ok()
    }
}

/// An X.509 certificate reduced to what verification needs.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Serial number as uppercase hex without leading zeros (WeChat Pay's `Wechatpay-Serial`).
    pub serial_hex: String,
    pub key: RsaPublicKey,
}

impl Certificate {
    pub fn parse_pem(text: &str) -> Result<Self, String> {
        let (label, der) = pem_decode(text)?;
        if label != "CERTIFICATE" {
            return Err(format!("expected a CERTIFICATE, found {label}"));
        }
        Self::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        use x509_cert::der::{Decode, Encode};
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        let key = RsaPublicKey::from_spki_der(&spki)?;
        Ok(Certificate {
            serial_hex: normalize_serial(&hex::encode_upper(
                cert.tbs_certificate.serial_number.as_bytes(),
            )),
            key,
        })
    }
}

/// Uppercase, without leading zeros: serials are compared in this form.
pub fn normalize_serial(serial: &str) -> String {
    let s = serial.trim().trim_start_matches("0x").to_ascii_uppercase();
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// Decodes the first PEM block of `text`: (label, DER bytes).
pub fn pem_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    let start = text.find("-----BEGIN ").ok_or("no PEM block")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----").ok_or("bad PEM header")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let end = rest.find(&end_marker).ok_or("PEM block not terminated")?;
    let b64body: String = rest[body_start..end].split_whitespace().collect();
    let der = b64(&b64body).ok_or("PEM body is not base64")?;
    Ok((label, der))
}

/// Every PEM block of `text` with the given label, as DER.
pub fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&begin) {
        match pem_decode(&rest[i..]) {
            Ok((_, der)) => out.push(der),
            Err(_) => break,
        }
        rest = &rest[i + begin.len()..];
    }
    out
}

#[cfg(any(test, feature = "sign"))]
/// RSA private key for signing sample requests (`hookgate sign`, tests). PKCS#8 or PKCS#1 PEM.
pub struct RsaSigner(rsa::RsaPrivateKey);

#[cfg(any(test, feature = "sign"))]
impl RsaSigner {
    pub fn parse_pem(text: &str) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        rsa::RsaPrivateKey::from_pkcs8_pem(text.trim())
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(text.trim()))
            .map(RsaSigner)
            .map_err(|e| format!("not an RSA private key: {e}"))
    }

    pub fn sign(&self, digest: RsaDigest, msg: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let result = match digest {
            RsaDigest::Sha256 => self.0.sign(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(msg),
            ),
            RsaDigest::Sha1 => self.0.sign(
                rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(msg),
            ),
        };
        result.expect("PKCS#1 v1.5 signing with a valid key cannot fail")
    }

    /// The matching public key as base64 SPKI DER (Alipay console form).
    #[cfg(any(test, feature = "testkit"))]
    pub fn public_spki_b64(&self) -> String {
        use rsa::pkcs8::EncodePublicKey;
        let der = self
            .0
            .to_public_key()
            .to_public_key_der()
            .expect("encode public key");
        b64_encode(der.as_bytes())
    }
}

/// AES-CBC without cipher padding (callers pad and unpad: DingTalk uses a 32-byte PKCS#7 block).
/// `key` is 16, 24 or 32 bytes; `None` if the lengths are wrong.
pub fn aes_cbc_decrypt(key: &[u8], iv: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    if ct.is_empty() || !ct.len().is_multiple_of(16) || iv.len() != 16 {
        return None;
    }
    let mut buf = ct.to_vec();
    match key.len() {
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .ok()?,
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .ok()?,
        _ => return None,
    };
    Some(buf)
}

/// AES-CBC without cipher padding; `pt` must already be a multiple of 16 bytes.
pub fn aes_cbc_encrypt(key: &[u8], iv: &[u8], pt: &[u8]) -> Option<Vec<u8>> {
    if !pt.len().is_multiple_of(16) || iv.len() != 16 {
        return None;
    }
    let mut buf = pt.to_vec();
    let n = buf.len();
    match key.len() {
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .encrypt_padded_mut::<NoPadding>(&mut buf, n)
            .ok()?,
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .encrypt_padded_mut::<NoPadding>(&mut buf, n)
            .ok()?,
        _ => return None,
    };
    Some(buf)
}

/// PKCS#7 padding to `block` bytes (1..=255).
pub fn pkcs7_pad(data: &[u8], block: usize) -> Vec<u8> {
    let n = block - data.len() % block;
    let mut out = Vec::with_capacity(data.len() + n);
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(n as u8, n));
    out
}

/// Strict PKCS#7 unpadding: the pad value is 1..=`block` and every pad byte equals it.
pub fn pkcs7_unpad(data: &[u8], block: usize) -> Option<&[u8]> {
    let n = *data.last()? as usize;
    if n == 0 || n > block || n > data.len() {
        return None;
    }
    let (body, pad) = data.split_at(data.len() - n);
    pad.iter().all(|&b| b as usize == n).then_some(body)
}

/// AES-GCM with a 12-byte nonce; `ct_tag` ends with the 16-byte tag. The key length picks
/// AES-128 or AES-256 (WeChat Pay's published vector uses a 16-byte key).
pub fn aes_gcm_decrypt(key: &[u8], nonce: &[u8], aad: &[u8], ct_tag: &[u8]) -> Option<Vec<u8>> {
    if nonce.len() != 12 || ct_tag.len() < 16 {
        return None;
    }
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let payload = Payload { msg: ct_tag, aad };
    match key.len() {
        32 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce, payload)
            .ok(),
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce, payload)
            .ok(),
        _ => None,
    }
}

#[cfg(any(test, feature = "sign"))]
pub fn aes_gcm_encrypt(key: &[u8], nonce: &[u8], aad: &[u8], pt: &[u8]) -> Option<Vec<u8>> {
    if nonce.len() != 12 {
        return None;
    }
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let payload = Payload { msg: pt, aad };
    match key.len() {
        32 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .encrypt(nonce, payload)
            .ok(),
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .encrypt(nonce, payload)
            .ok(),
        _ => None,
    }
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).expect("the OS random source is available");
    buf
}

/// `N` random bytes as an array (AES IVs, DingTalk's random prefix).
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).expect("the OS random source is available");
    buf
}

/// A random alphanumeric string (nonces, DingTalk's reply prefix).
pub fn random_alnum(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(n)
        .iter()
        .map(|b| CHARS[*b as usize % CHARS.len()] as char)
        .collect()
}

#[cfg(any(test, feature = "sign"))]
/// `n` random decimal digits (sample trade numbers and notify ids).
pub fn random_digits(n: usize) -> String {
    random_bytes(n)
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect()
}

#[cfg(any(test, feature = "sign"))]
/// A random version-4-shaped UUID, `8-4-4-4-12` lowercase hex (sample delivery and request
/// ids).
pub fn random_uuid() -> String {
    let b = hex::encode(random_bytes(16));
    format!(
        "{}-{}-4{}-a{}-{}",
        &b[0..8],
        &b[8..12],
        &b[13..16],
        &b[17..20],
        &b[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ring's HMAC and digests against RustCrypto's, an independent implementation: every
    /// algorithm, keys shorter and longer than a block, messages split across parts.
    #[test]
    fn ring_agrees_with_rustcrypto() {
        use ::hmac::{Hmac, Mac};
        use sha2::Digest;
        fn rc<M: Mac + ::hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut m = <M as Mac>::new_from_slice(key).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        for len in [0usize, 1, 55, 56, 64, 127, 128, 129, 7168] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (a, b) = msg.split_at(len / 3);
            for key in [&b""[..], b"k", &[7u8; 64], &[9u8; 200]] {
                assert_eq!(
                    hmac(MacAlg::Sha1, key, &[a, b]),
                    rc::<Hmac<sha1::Sha1>>(key, &msg)
                );
                assert_eq!(
                    hmac(MacAlg::Sha256, key, &[a, b]),
                    rc::<Hmac<sha2::Sha256>>(key, &msg)
                );
                assert_eq!(
                    hmac(MacAlg::Sha512, key, &[a, b]),
                    rc::<Hmac<sha2::Sha512>>(key, &msg)
                );
            }
            assert_eq!(sha256(&[a, b])[..], sha2::Sha256::digest(&msg)[..]);
            assert_eq!(sha1(&[a, b])[..], sha1::Sha1::digest(&msg)[..]);
        }
    }

    #[test]
    fn lenient_base64_takes_dingtalk_key() {
        let key = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7";
        assert!(
            b64(&format!("{key}=")).is_none(),
            "strict decoder rejects trailing bits"
        );
        assert_eq!(b64_lenient(&format!("{key}=")).unwrap().len(), 32);
        assert_eq!(b64_lenient(key).unwrap().len(), 32);
    }

    #[test]
    fn pkcs7_is_strict() {
        assert_eq!(pkcs7_unpad(&pkcs7_pad(b"abc", 32), 32).unwrap(), b"abc");
        assert!(pkcs7_unpad(b"abc\x02\x03", 32).is_none());
        assert!(pkcs7_unpad(b"abc\x00", 32).is_none());
        assert!(pkcs7_unpad(&[33u8; 33], 32).is_none());
    }

    #[test]
    fn ct_eq_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn hmac_joins_parts() {
        // RFC 4231 test case 2 ("Jefe"), split in two parts.
        assert_eq!(
            hex::encode(hmac(
                MacAlg::Sha256,
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(random_uuid().len(), 36);
        assert!(random_digits(30).bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("00d7ce59"), "D7CE59");
        assert_eq!(normalize_serial("0x0A"), "A");
    }
}
