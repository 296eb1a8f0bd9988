//! Secrets: kept out of `Debug` output, logs and envelopes.

use serde::Deserialize;

/// A secret string (HMAC key, token, PEM key). `Debug` prints `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used as key material.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret (a bearer token, say), in constant time. The SHA-256
    /// digests are compared, so not even the length of the secret shows in the timing.
    pub fn matches(&self, given: &str) -> bool {
        use crate::crypto::{ct_eq, sha256};
        ct_eq(&sha256(&[self.0.as_bytes()]), &sha256(&[given.as_bytes()]))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_is_redacted() {
        let s = super::Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches("hunter22"));
    }
}
