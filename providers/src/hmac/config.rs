//! The keys of an `hmac` source, checked all at once, and the adapter built from them.

use serde::Deserialize;

use super::{Encoding, HmacSource, Part, TimestampSource, DEFAULT_TOLERANCE_SECS};
use crate::crypto::MacAlg;
use crate::shared::{header_name, keep, locator, pointer, require_secrets};
use crate::{ConfigError, Secret};

/// Every key is optional at the serde level so that `HmacSource::new` can report all problems at
/// once; `secrets` and `signature_header` are required there.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A sender's known scheme (`stripe`, `slack`, …, see [`super::presets`]) filling in
    /// every key below that is not set by hand.
    pub preset: Option<String>,
    /// Shared secrets, used as key bytes exactly as written (UTF-8); every one is tried.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// The header carrying the signature (`X-Hub-Signature-256`, `Stripe-Signature`, …).
    pub signature_header: Option<String>,
    /// `sha1`, `sha256` (default) or `sha512`.
    pub algorithm: Option<String>,
    /// `hex` (default; compared case-insensitively, by decoding) or `base64`.
    pub encoding: Option<String>,
    /// Text before the encoded MAC (`sha256=`, `v0=`), stripped before decoding; none when
    /// unset. An `Option`, so that `prefix = ""` set by hand can override a preset's.
    pub prefix: Option<String>,
    /// What is signed: a template over `{body}`, `{timestamp}` and `{id}`; default `{body}`.
    pub signed_payload: Option<String>,
    /// The signature header is a `k=v` list; every value of this key is a candidate signature
    /// (Stripe: `v1`).
    pub signature_param: Option<String>,
    /// What separates the items of that list: `,` (default, Stripe) or `;` (Paddle). Only
    /// this one is accepted, as the sender's own SDK reads it.
    pub param_separator: Option<String>,
    /// The header carrying the signed timestamp (integer seconds, or milliseconds).
    pub timestamp_header: Option<String>,
    /// The key of the timestamp in the `signature_param` list (Stripe: `t`).
    pub timestamp_param: Option<String>,
    /// Allowed distance between the signed timestamp and now, either way; default 300.
    pub tolerance_secs: Option<u64>,
    /// The header carrying the event id.
    pub id_header: Option<String>,
    /// JSON pointer to the event id in the body (`/id`).
    pub id_pointer: Option<String>,
    /// The header carrying the event name.
    pub type_header: Option<String>,
    /// JSON pointer to the event name in the body (`/type`).
    pub type_pointer: Option<String>,
    /// JSON pointer to a handshake challenge (Slack `url_verification`: `/challenge`). A
    /// verified body with a string there is answered `200 {"challenge": …}` and not published.
    pub challenge_pointer: Option<String>,
}

impl Config {
    /// Human warnings for `hookgate check`: values this config takes from outside the
    /// signature.
    pub fn warnings(&self) -> Vec<String> {
        // An unknown preset is an error of `new`, reported there.
        super::presets::resolve(self)
            .map(|c| c.warnings_resolved())
            .unwrap_or_default()
    }

    fn warnings_resolved(&self) -> Vec<String> {
        let template = self.signed_payload.as_deref().unwrap_or("{body}");
        let mut w = Vec::new();
        if let Some(h) = &self.id_header {
            if !template.contains("{id}") {
                w.push(format!(
                    "id comes from an unsigned header (`id_header = \"{h}\"` is not in `signed_payload`): a replay with a fresh id bypasses dedup"
                ));
            }
        }
        if let Some(h) = &self.type_header {
            w.push(format!(
                "type comes from an unsigned header (`type_header = \"{h}\"`): a replay can give a captured body another type and routing key"
            ));
        }
        w
    }
}

impl HmacSource {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        let resolved = super::presets::resolve(c).map_err(|e| vec![e])?;
        let c = &resolved;
        let mut errors = Vec::new();
        if let Err(e) = require_secrets("secrets", &c.secrets) {
            errors.push(e);
        }
        let signature_header = keep(
            &mut errors,
            match &c.signature_header {
                None => Err(ConfigError::new("signature_header", "is required")),
                Some(h) => header_name("signature_header", h),
            },
        );
        let algorithm = keep(
            &mut errors,
            match c
                .algorithm
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("sha256") => Ok(MacAlg::Sha256),
                Some("sha1") => Ok(MacAlg::Sha1),
                Some("sha512") => Ok(MacAlg::Sha512),
                Some(_) => Err(ConfigError::new(
                    "algorithm",
                    "must be sha1, sha256 or sha512",
                )),
            },
        );
        let encoding = keep(
            &mut errors,
            match c
                .encoding
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("hex") => Ok(Encoding::Hex),
                Some("base64") => Ok(Encoding::Base64),
                Some(_) => Err(ConfigError::new("encoding", "must be hex or base64")),
            },
        );
        let signature_param = keep(
            &mut errors,
            optional(&c.signature_param, |v| param_name("signature_param", v)),
        )
        .flatten();
        let separator = keep(
            &mut errors,
            match c.param_separator.as_deref() {
                None | Some(",") => Ok(','),
                Some(";") => Ok(';'),
                Some(_) => Err(ConfigError::new(
                    "param_separator",
                    "must be \",\" or \";\"",
                )),
            },
        );
        if c.param_separator.is_some() && c.signature_param.is_none() {
            errors.push(ConfigError::new(
                "param_separator",
                "needs signature_param: it separates the signature header's k=v list",
            ));
        }
        let timestamp_header = keep(
            &mut errors,
            optional(&c.timestamp_header, |v| header_name("timestamp_header", v)),
        )
        .flatten();
        let timestamp_param = keep(
            &mut errors,
            optional(&c.timestamp_param, |v| param_name("timestamp_param", v)),
        )
        .flatten();
        let timestamp = match (timestamp_header, timestamp_param) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    "timestamp_param",
                    "set timestamp_header or timestamp_param, not both",
                ));
                None
            }
            (Some(h), None) => Some(TimestampSource::Header(h)),
            (None, Some(p)) => {
                if c.signature_param.is_none() {
                    errors.push(ConfigError::new(
                        "timestamp_param",
                        "needs signature_param: it is read from the signature header's k=v list",
                    ));
                }
                Some(TimestampSource::Param(p))
            }
            (None, None) => None,
        };
        let has_timestamp = c.timestamp_header.is_some() || c.timestamp_param.is_some();
        match c.tolerance_secs {
            Some(_) if !has_timestamp => errors.push(ConfigError::new(
                "tolerance_secs",
                "needs timestamp_header or timestamp_param: nothing signed to check it against",
            )),
            Some(0) => errors.push(ConfigError::new("tolerance_secs", "must be at least 1")),
            _ => {}
        }
        let id = keep(
            &mut errors,
            locator(
                ("id_header", c.id_header.as_deref()),
                ("id_pointer", c.id_pointer.as_deref()),
            ),
        )
        .flatten();
        let kind = keep(
            &mut errors,
            locator(
                ("type_header", c.type_header.as_deref()),
                ("type_pointer", c.type_pointer.as_deref()),
            ),
        )
        .flatten();
        let challenge_pointer = keep(
            &mut errors,
            optional(&c.challenge_pointer, |v| pointer("challenge_pointer", v)),
        )
        .flatten();
        let template = keep(
            &mut errors,
            parse_template(c.signed_payload.as_deref().unwrap_or("{body}"))
                .map_err(|e| ConfigError::new("signed_payload", e)),
        )
        .unwrap_or_default();
        if template.contains(&Part::Timestamp) && !has_timestamp {
            errors.push(ConfigError::new(
                "signed_payload",
                "uses {timestamp}: set timestamp_header or timestamp_param",
            ));
        }
        // A timestamp that is not signed proves nothing about freshness: a replay sends a new
        // one. Its window would guard nothing, so such a config is refused, not run.
        if has_timestamp && !template.is_empty() && !template.contains(&Part::Timestamp) {
            let key = if c.timestamp_header.is_some() {
                "timestamp_header"
            } else {
                "timestamp_param"
            };
            errors.push(ConfigError::new(
                key,
                "is not part of signed_payload, so its window would guard nothing: add {timestamp} to signed_payload (as the sender signs it) or remove the timestamp",
            ));
        }
        if template.contains(&Part::Id) && c.id_header.is_none() {
            errors.push(ConfigError::new(
                "signed_payload",
                "uses {id}: set id_header (an id inside the body cannot be part of what is verified before parsing)",
            ));
        }
        let (Some(signature_header), Some(algorithm), Some(encoding), Some(separator), true) = (
            signature_header,
            algorithm,
            encoding,
            separator,
            errors.is_empty(),
        ) else {
            return Err(errors);
        };
        Ok(HmacSource {
            secrets: c.secrets.clone(),
            algorithm,
            encoding,
            prefix: c.prefix.clone().unwrap_or_default(),
            signature_header,
            signature_param,
            separator,
            timestamp,
            tolerance_secs: i64::try_from(c.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS))
                .unwrap_or(i64::MAX),
            template,
            id,
            kind,
            challenge_pointer,
        })
    }
}

fn optional<T>(
    value: &Option<String>,
    check: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    value.as_deref().map(check).transpose()
}

/// A key of the signature header's `k=v` list.
fn param_name(key: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty() || name.contains([',', '=']) || name.contains(char::is_whitespace) {
        return Err(ConfigError::new(
            key,
            "must be a non-empty key without ',', '=' or spaces",
        ));
    }
    Ok(name.to_owned())
}

/// Splits a `signed_payload` template into literals and `{body}` / `{timestamp}` / `{id}`.
/// `{body}` is required: a template without it would authenticate nothing of the body.
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("has an unclosed '{'")?;
        parts.push(match &after[..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}}; use {{body}}, {{timestamp}} or {{id}}"
                ))
            }
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    if !parts.contains(&Part::Body) {
        return Err("must contain {body}: otherwise the body is not authenticated".into());
    }
    Ok(parts)
}
