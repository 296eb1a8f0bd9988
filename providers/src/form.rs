//! Form (`application/x-www-form-urlencoded`) decoding that keeps bytes: values stay in the
//! sender's charset (Alipay may send GBK), decoded exactly once, `+` as space.

use percent_encoding::percent_decode;

/// One component (`+` a space, then percent-decoded once).
pub(crate) fn decode(part: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = part
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus).collect()
}

/// `(key, value)` pairs in order; empty segments are skipped, a pair without `=` has an
/// empty value.
pub fn pairs(body: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    body.split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&seg[..i]), decode(&seg[i + 1..])),
            None => (decode(seg), Vec::new()),
        })
}

#[cfg(any(test, feature = "sign"))]
/// Encodes one component for a form body (the inverse of `pairs`, used to build samples).
pub fn encode(value: &[u8]) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b' ');
    percent_encoding::percent_encode(value, SET)
        .to_string()
        .replace(' ', "+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode_once_and_keep_bytes() {
        let pairs: Vec<_> =
            pairs(b"gmt_create=2019-08-15+15%3A56%3A22&a=%2541&flag&x=%C4%E3").collect();
        assert_eq!(
            pairs[0],
            (b"gmt_create".to_vec(), b"2019-08-15 15:56:22".to_vec())
        );
        assert_eq!(pairs[1].1, b"%41".to_vec(), "decoded exactly once");
        assert_eq!(pairs[2], (b"flag".to_vec(), Vec::new()));
        assert_eq!(pairs[3].1, vec![0xC4, 0xE3], "GBK bytes survive");
        assert_eq!(encode(b"a b&c=%"), "a+b%26c%3D%25");
    }
}
