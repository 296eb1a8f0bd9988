//! DingTalk (钉钉): two kinds of callback under one provider id, chosen by `mode`.
//!
//! - `mode = "event"` (default): event subscription HTTP push. The query
//!   carries `msg_signature` (or `signature`), `timeStamp` (or `timestamp`) and `nonce`; the
//!   body is `{"encrypt":"…"}`. The signature is SHA-1 over the sorted strings (token,
//!   timestamp, nonce, encrypt); the payload is AES-256-CBC with a 32-byte PKCS#7 block and
//!   ends with the owner key (appKey / corpId / suiteKey). DingTalk wants an encrypted
//!   `success` back within 1.5 s; `check_url` gets the same answer and is not published.
//!   DingTalk sends no event id, so the id is `sha256:` + hex SHA-256 of the decrypted
//!   message: a retry is re-encrypted with a new random prefix but maps to the same id.
//!   No timestamp window is enforced (the official SDK enforces none).
//! - `mode = "robot"`: robot message callback, the robot section. Headers `timestamp` (ms) and `sign` =
//!   b64(HMAC-SHA256(appSecret, timestamp + "\n" + appSecret)), accepted within ±1 h. The
//!   body is not signed, so a captured request replays within the hour: dedup on `msgId`
//!   catches a plain replay, not one with another body or `msgId` (`hookgate check` warns).
//!   `msgId`, `msgtype` and `conversationId` are taken only in DingTalk's shape (issue 11).
//!
//! Refusals in event mode: a missing query parameter is `MissingHeader(<parameter>)`; a
//! signature mismatch is `BadSignature`; a ciphertext that does not decrypt (base64, length,
//! padding, length prefix) after a valid signature is `Malformed` (400): the sender proved
//! it knows the token, so this is a wrong `aes_key` or a broken sender, not a forgery; an
//! owner trailer that is not `owner_key` is `WrongRecipient("owner_key")`.

//!
//! Protocol and vectors: docs/providers/dingtalk.md. `event.rs` and `robot.rs` verify one mode
//! each; `sample.rs` signs (and encrypts) as DingTalk does.

mod event;
mod robot;
#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use serde::Deserialize;

use crate::registry::ConfigKeys;
use crate::shared::require_secrets;
use crate::{Admission, ConfigError, ProviderKind, RawRequest, Rejection, Secret};

use event::aes_key_bytes;
#[cfg(any(test, feature = "sign"))]
pub use sample::decrypt_reply;
#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
/// `owner_key` (appKey, corpId or suiteKey) is no secret; it may come from a file with the rest.
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["token", "aes_key", "app_secrets"],
    public: &["owner_key"],
};

/// Which DingTalk callback a source terminates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Event subscription (事件订阅), encrypted HTTP push.
    #[default]
    Event,
    /// Robot message callback (机器人接收消息), HMAC-signed headers.
    Robot,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    /// Event mode: the Token of the event subscription page.
    pub token: Option<Secret>,
    /// Event mode: the 43-character `aes_key` of the event subscription page.
    pub aes_key: Option<Secret>,
    /// Event mode: appKey (internal app), corpId (legacy 注册回调) or suiteKey (ISV app).
    pub owner_key: Option<String>,
    /// Robot mode: the app secrets of the robot's app; every one is tried (rotation).
    pub app_secrets: Option<Vec<Secret>>,
}

pub(crate) struct DingTalk {
    mode: Keys,
}

enum Keys {
    Event(EventKeys),
    Robot(Vec<Secret>),
}

/// Event-mode key material, decoded once at start-up.
struct EventKeys {
    token: Secret,
    key: AesKey,
    owner_key: String,
}

/// The decoded 32-byte AES key; `Debug` never prints it.
struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl DingTalk {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let misplaced = |errors: &mut Vec<ConfigError>, key: &'static str, present: bool| {
            if present {
                let other = match c.mode {
                    Mode::Event => "robot",
                    Mode::Robot => "event",
                };
                errors.push(ConfigError::new(
                    key,
                    format!("only used with mode = \"{other}\""),
                ));
            }
        };
        match c.mode {
            Mode::Event => {
                misplaced(&mut errors, "app_secrets", c.app_secrets.is_some());
                let token = match &c.token {
                    Some(t) if !t.expose().trim().is_empty() => Some(t.clone()),
                    Some(_) => {
                        errors.push(ConfigError::new("token", "must not be empty"));
                        None
                    }
                    None => {
                        errors.push(ConfigError::new("token", "required in mode = \"event\""));
                        None
                    }
                };
                let key = match &c.aes_key {
                    Some(k) => match aes_key_bytes(k.expose()) {
                        Ok(k) => Some(AesKey(k)),
                        Err(e) => {
                            errors.push(ConfigError::new("aes_key", e));
                            None
                        }
                    },
                    None => {
                        errors.push(ConfigError::new("aes_key", "required in mode = \"event\""));
                        None
                    }
                };
                let owner_key = match c.owner_key.as_deref().map(str::trim) {
                    Some(o) if !o.is_empty() => Some(o.to_owned()),
                    Some(_) => {
                        errors.push(ConfigError::new("owner_key", "must not be empty"));
                        None
                    }
                    None => {
                        errors.push(ConfigError::new(
                            "owner_key",
                            "required in mode = \"event\" (appKey, corpId or suiteKey)",
                        ));
                        None
                    }
                };
                match (token, key, owner_key) {
                    (Some(token), Some(key), Some(owner_key)) if errors.is_empty() => {
                        Ok(DingTalk {
                            mode: Keys::Event(EventKeys {
                                token,
                                key,
                                owner_key,
                            }),
                        })
                    }
                    _ => Err(errors),
                }
            }
            Mode::Robot => {
                misplaced(&mut errors, "token", c.token.is_some());
                misplaced(&mut errors, "aes_key", c.aes_key.is_some());
                misplaced(&mut errors, "owner_key", c.owner_key.is_some());
                let secrets = match &c.app_secrets {
                    Some(s) => match require_secrets("app_secrets", s) {
                        Ok(()) => Some(s.clone()),
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    },
                    None => {
                        errors.push(ConfigError::new(
                            "app_secrets",
                            "required in mode = \"robot\"",
                        ));
                        None
                    }
                };
                match secrets {
                    Some(s) if errors.is_empty() => Ok(DingTalk {
                        mode: Keys::Robot(s),
                    }),
                    _ => Err(errors),
                }
            }
        }
    }
}

impl Config {
    /// Human warnings for `hookgate check`.
    pub fn warnings(&self) -> Vec<String> {
        match self.mode {
            Mode::Robot => vec![
                "robot mode: DingTalk signs only the timestamp, not the body; a captured request can be replayed for an hour with another body and a fresh msgId (each a new event)".to_owned(),
            ],
            Mode::Event => Vec::new(),
        }
    }
}

impl crate::Provider for DingTalk {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Dingtalk
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        match &self.mode {
            Keys::Event(k) => self.admit_event(k, req),
            Keys::Robot(secrets) => self.admit_robot(secrets, req, now),
        }
    }
}
