//! Provider adapters for hookgate: pure functions from a raw HTTP request to a verified event.
//!
//! # Layout
//! - `contract` — the types the gateway and the adapters agree on: the
//!   [`Provider`] trait (`admit` gets the headers, the raw query string, the exact body bytes
//!   and `now`; it returns an [`Admission`] — an [`Event`] to publish with the provider's
//!   success [`Reply`], or a control probe answered without publishing — or a typed
//!   [`Rejection`]), and [`admit`], the gateway's entry point, `Provider::admit` plus a
//!   backstop on every event's id and type ([`MAX_UNSIGNED_BYTES`], shape). Adapters never read
//!   the clock, the network or disk.
//! - `registry` — [`ProviderKind`] with the facts each provider owns (its id,
//!   its secret and `file:` keys, its default body limit), and [`ProviderConfig`], the
//!   `provider = "…"` part of a `[[sources]]` table, whose `build` is the one `match` that
//!   registers the adapters. `match`es on the kind are exhaustive, so a new provider does not
//!   compile until every fact is given (docs/providers/README.md has the checklist).
//! - [`Envelope`]: the CloudEvents 1.0 structured-mode message built from an [`Event`].
//! - one folder a provider: [`github`], [`alipay`], [`wechatpay`], [`dingtalk`], [`feishu`],
//!   [`standard`], [`hmac`] (with its sender presets), [`token`], [`gitlab`], [`gitee`],
//!   [`wecom`]. Each holds its config, its verification per mode, its sample
//!   signer and, in `tests.rs`, its known-answer vectors and negative tests. Only the config
//!   types (and, with `sign`, a few sender-side helpers) are public.
//! - private: `crypto` (constant-time compare, HMAC, base64, RSA, AES, randomness), `shared`
//!   (bounded values, type names, time, header names and JSON pointers), `form` (form
//!   decoding that keeps bytes), `msgcrypt` (WeCom's message crypto, shared by [`wecom`] and
//!   DingTalk's event mode).
//! - `sign` (feature `sign`, on by default): correctly signed sample requests, for
//!   `hookgate sign`, the load generator and the tests.
//! - `testkit` (feature `testkit`): one test source per provider mode, shared by the flip
//!   property test, the fuzz targets and the benches.

mod contract;
mod crypto;
mod envelope;
mod form;
mod msgcrypt;
mod registry;
mod secret;
mod shared;

pub mod alipay;
pub mod dingtalk;
pub mod feishu;
pub mod gitee;
pub mod github;
pub mod gitlab;
pub mod hmac;
pub mod standard;
pub mod token;
pub mod wechatpay;
pub mod wecom;

#[cfg(any(test, feature = "sign"))]
pub mod sign;
#[cfg(test)]
mod testing;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use contract::{
    admit, Admission, ConfigError, Data, Event, Headers, JsonText, Provider, RawRequest, Rejection,
    Reply, MAX_UNSIGNED_BYTES,
};
pub use envelope::Envelope;
pub use registry::{file_keys, ConfigKeys, ProviderConfig, ProviderKind};
pub use secret::Secret;
// `bounded`: the gateway shapes the unverified id it logs for a refusal the same way.
pub use shared::{bounded, unix_secs};
// One SHA-256 (ring's) for the gateway too: dedup fingerprints, refused bodies, config digests;
// and its HMAC and random bytes for the keyed config fingerprints.
pub use crypto::{random_array, sha256};

/// HMAC-SHA-256 of `parts` under `key` (ring's, as every provider's).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    crypto::hmac(crypto::MacAlg::Sha256, key, parts)
}
