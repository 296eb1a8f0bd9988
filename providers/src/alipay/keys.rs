//! The configured keys: Alipay's public keys (base64 SPKI or PEM) and public-key certificates.

use crate::crypto::{self, RsaPublicKey};

use super::MIN_KEY_BITS;

/// A configured public key: bare base64 SPKI (the console's form) or PEM (`PUBLIC KEY`,
/// `RSA PUBLIC KEY` or a `CERTIFICATE`).
pub(super) fn public_key(text: &str) -> Result<RsaPublicKey, String> {
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

pub(super) fn key_from_spki(spki: &[u8]) -> Result<RsaPublicKey, String> {
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

pub(super) fn spki_of_certificate(der: &[u8]) -> Result<Vec<u8>, String> {
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

/// Alipay's certificate SN, `md5_hex(issuer DN || decimal serial)`. Notifications do not
/// use it; it tells an operator which `alipayCertPublicKey_RSA2.crt` a response's
/// `alipay_cert_sn` refers to.
#[cfg(test)]
pub(super) fn cert_sn(pem: &str) -> Result<String, String> {
    let der = crypto::pem_blocks(pem, "CERTIFICATE")
        .into_iter()
        .next()
        .ok_or("no PEM CERTIFICATE block")?;
    sn_of(&parse_certificate(&der)?)
}

/// The SN of a root bundle (`alipayRootCert.crt`): the SNs of its RSA-signed certificates
/// joined by `_`; SM2 and ECDSA certificates are skipped.
#[cfg(test)]
pub(super) fn root_cert_sn(pem: &str) -> Result<String, String> {
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

#[cfg(test)]
fn parse_certificate(der: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))
}

#[cfg(test)]
fn sn_of(cert: &x509_cert::Certificate) -> Result<String, String> {
    use md5::{Digest, Md5};
    let tbs = &cert.tbs_certificate;
    // RFC 2253 order (last RDN first), `SHORTNAME=value`, as Java's X500Principal prints it.
    let issuer = tbs.issuer.to_string();
    let serial = rsa::BigUint::from_bytes_be(tbs.serial_number.as_bytes()).to_string();
    Ok(hex::encode(Md5::digest(format!("{issuer}{serial}"))))
}
