//! The message crypto WeCom (企业微信) publishes as `WXBizMsgCrypt`, shared by the `wecom`
//! provider and DingTalk's event mode, which took it over unchanged:
//!
//! - the signature is `hex(SHA-1(concat(sort([token, timestamp, nonce, encrypt]))))`;
//! - the key is the 43-character EncodingAESKey + `=` decoded as base64 (32 bytes);
//! - `encrypt` is `b64(AES-256-CBC(key, iv = key[..16], random16 ‖ u32be(len) ‖ msg ‖
//!   receive_id ‖ PKCS#7 padding to 32 bytes))`. The receive id is WeCom's corp id (or suite
//!   id) and DingTalk's owner key (appKey / corpId / suiteKey).
//!
//! Where the two differ (what carries `encrypt`, the reply, the query names), each provider
//! keeps its own code.

use crate::{crypto, Rejection};

/// Both pad to 32 bytes, not to the AES block (`PKCS7Encoder` BLOCK_SIZE = 32 in the SDKs).
pub const PAD_BLOCK: usize = 32;

/// Decodes a 43-character EncodingAESKey (`[A-Za-z0-9]`) to its 32 bytes. The last character
/// carries non-zero trailing bits, so this needs lenient base64.
pub fn aes_key_bytes(encoding_aes_key: &str) -> Result<[u8; 32], String> {
    if encoding_aes_key.len() != 43 || !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err("must be exactly 43 characters of [A-Za-z0-9]".into());
    }
    crypto::b64_lenient(&format!("{encoding_aes_key}="))
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| "does not decode to 32 bytes".into())
}

/// `hex(SHA1(concat(sort([token, timestamp, nonce, encrypt]))))`.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    hex::encode(crypto::sha1(&parts.map(str::as_bytes)))
}

/// Whether `given` (hex, either case) is the signature of these four strings; constant time.
pub fn signature_matches(
    given: &str,
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
) -> bool {
    let expected = signature(token, timestamp, nonce, encrypt);
    crypto::ct_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes())
}

/// `b64(AES-256-CBC(key, iv = key[..16], random16 ‖ u32be(len) ‖ msg ‖ receive_id ‖ PKCS#7/32))`.
///
/// # Panics
/// If `msg` is 4 GiB or longer (its length must fit the u32 prefix).
pub fn seal(key: &[u8; 32], random16: &[u8; 16], msg: &[u8], receive_id: &str) -> String {
    let len = u32::try_from(msg.len()).expect("a message is shorter than 4 GiB");
    let mut plain = Vec::with_capacity(20 + msg.len() + receive_id.len() + PAD_BLOCK);
    plain.extend_from_slice(random16);
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(msg);
    plain.extend_from_slice(receive_id.as_bytes());
    let padded = crypto::pkcs7_pad(&plain, PAD_BLOCK);
    let ct = crypto::aes_cbc_encrypt(key, &key[..16], &padded)
        .expect("32-byte key, 16-byte iv and padded input are valid");
    crypto::b64_encode(&ct)
}

/// The decrypted message and the receive-id trailer. `None` for anything that is not a
/// well-formed ciphertext (base64, block length, strict PKCS#7/32, length prefix).
pub fn open(key: &[u8; 32], encrypt: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let ct = crypto::b64(encrypt)?;
    let plain = crypto::aes_cbc_decrypt(key, &key[..16], &ct)?;
    let plain = crypto::pkcs7_unpad(&plain, PAD_BLOCK)?;
    let len_bytes: [u8; 4] = plain.get(16..20)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let rest = &plain[20..];
    if len > rest.len() {
        return None;
    }
    let (msg, receive_id) = rest.split_at(len);
    Some((msg.to_vec(), receive_id.to_vec()))
}

/// Decrypts and checks the receive-id trailer: the message bytes. A ciphertext that does not
/// open is `Malformed` (its signature was already checked, so the sender knows the token:
/// a wrong key or a broken sender, not a forgery); another receive id is
/// `WrongRecipient(key_name)`.
pub fn open_for(
    key: &[u8; 32],
    receive_id: &str,
    encrypt: &str,
    key_name: &'static str,
) -> Result<Vec<u8>, Rejection> {
    let (msg, trailer) =
        open(key, encrypt).ok_or(Rejection::Malformed("encrypt does not decrypt"))?;
    if !crypto::ct_eq(&trailer, receive_id.as_bytes()) {
        return Err(Rejection::WrongRecipient(key_name));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let key = aes_key_bytes("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").unwrap();
        let sealed = seal(&key, &[7; 16], "消息".as_bytes(), "wx5823bf96d3bd56c7");
        assert_eq!(
            open_for(&key, "wx5823bf96d3bd56c7", &sealed, "corp_id").unwrap(),
            "消息".as_bytes()
        );
        assert_eq!(
            open_for(&key, "other", &sealed, "corp_id").unwrap_err(),
            Rejection::WrongRecipient("corp_id")
        );
        // Tampered ciphertext: CBC garbles the padding or the length prefix.
        let mut ct = crypto::b64(&sealed).unwrap();
        let last = ct.len() - 1;
        ct[last] ^= 1;
        assert!(open(&key, &crypto::b64_encode(&ct)).is_none());
        assert!(open(&key, "not base64!").is_none());
        assert!(aes_key_bytes("short").is_err());
        assert!(signature_matches(
            &signature("a", "b", "c", "d").to_ascii_uppercase(),
            "a",
            "b",
            "c",
            "d"
        ));
        assert!(!signature_matches("00", "a", "b", "c", "d"));
    }
}
