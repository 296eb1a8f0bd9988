//! TLS for `amqps://` broker nodes (`[amqp.tls] ca, cert, key`), with rustls on ring.
//!
//! Trust: `amqp.tls.ca` when set (only that CA: a private broker CA pins the cluster's
//! certificates, and a public CA that also signs other hosts cannot impersonate it), otherwise
//! the system's roots through rustls-native-certs. System roots rather than a bundle compiled
//! into the binary (webpki-roots) because operators already keep them current with the OS
//! (`ca-certificates`, a corporate CA added with `update-ca-certificates`, `SSL_CERT_FILE`),
//! and a CA change never needs a new hookgate build.
//!
//! The files are read when the config is checked (so `check` and `serve` refuse a missing or
//! unparsable file, a key that does not match its certificate) and again at every connect, so
//! a rotated client certificate (cert-manager, a renewed Secret) is used from the next
//! reconnect on without a restart.
//!
//! `[amqp.tls]` with a plain `amqp://` node is refused: the operator asked for TLS, and a
//! connection that silently goes out in clear text (the broker password with it) is the one
//! outcome that must not happen, also not after a failover to another node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::config::{redact_url, AmqpConfig};

/// `[amqp.tls]`: every key optional; paths are relative to the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AmqpTlsConfig {
    /// PEM file of the CA certificates that sign the broker's certificate; replaces the
    /// system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that verify peers (`fail_if_no_peer_cert`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl AmqpTlsConfig {
    /// Resolves paths against the config file's directory; `file:PATH` is taken as `PATH`
    /// (like secrets, these values name files).
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.ca, &mut self.cert, &mut self.key]
            .into_iter()
            .flatten()
        {
            let raw = p.to_string_lossy();
            let path = raw.strip_prefix("file:").map(PathBuf::from);
            *p = base.join(path.as_deref().unwrap_or(p));
        }
    }
}

/// Whether `url` is a TLS node.
pub fn is_amqps(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("amqps://"))
}

/// The rustls client configuration for the `amqps://` nodes, from the files of `tls` (or the
/// system roots). Errors name the key.
pub fn client_config(tls: Option<&AmqpTlsConfig>) -> Result<rustls::ClientConfig, String> {
    let tls = tls.cloned().unwrap_or_default();
    files_client_config(
        "amqp.tls",
        tls.ca.as_deref(),
        tls.cert.as_deref(),
        tls.key.as_deref(),
    )
}

/// A rustls client configuration from a CA file (else the system roots) and an optional client
/// certificate and key: every file read, parsed and checked against the others (a key that is
/// not the certificate's), errors naming `{section}.ca`, `.cert` or `.key`. `[amqp.tls]`, and
/// `[dedup.tls]` (whose Redis client reads the files itself, later: checked here first).
pub fn files_client_config(
    section: &str,
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<rustls::ClientConfig, String> {
    match (cert, key) {
        (Some(_), None) => return Err(format!("{section}.cert: set without {section}.key")),
        (None, Some(_)) => return Err(format!("{section}.key: set without {section}.cert")),
        _ => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match ca {
        Some(ca) => {
            let certs = read_certs(ca).map_err(|e| format!("{section}.ca: {e}"))?;
            let mut roots = RootCertStore::empty();
            for (i, c) in certs.into_iter().enumerate() {
                roots.add(c).map_err(|e| {
                    format!(
                        "{section}.ca: certificate {} of {} is not a usable CA certificate: {e}",
                        i + 1,
                        ca.display()
                    )
                })?;
            }
            roots
        }
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{section}: {e}"))?
        .with_root_certificates(roots);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert).map_err(|e| format!("{section}.cert: {e}"))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!(
                    "{section}.key: {}: no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "{section}.key: {} does not fit {section}.cert {}: {e}",
                    key.display(),
                    cert.display()
                )
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Every problem of the TLS setup of `amqp`, for `Config::validate` (files are read here).
pub fn problems(amqp: &AmqpConfig) -> Vec<String> {
    let tls_nodes = amqp.url.iter().filter(|u| is_amqps(u)).count();
    let mut out = Vec::new();
    if amqp.tls.is_some() {
        for (i, u) in amqp.url.iter().enumerate() {
            if !is_amqps(u) {
                out.push(format!(
                    "amqp.url[{i}]: {} is plain amqp:// while [amqp.tls] is set; use amqps:// for every node (or remove [amqp.tls]): TLS settings never apply to a clear-text connection",
                    redact_url(u)
                ));
            }
        }
    }
    if amqp.tls.is_some() || tls_nodes > 0 {
        if let Err(e) = client_config(amqp.tls.as_ref()) {
            out.push(e);
        }
    }
    out
}

/// PEM certificates of `path`, at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The OS trust store; none found is an error that says how to fix it.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |e| format!(" ({e})"));
        return Err(format!(
            "amqp.url: an amqps:// node needs trusted roots, and no system root certificates were found{why}: install the ca-certificates package or set amqp.tls.ca"
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqps_scheme_is_recognised_in_any_case() {
        assert!(is_amqps("amqps://h/v"));
        assert!(is_amqps("AMQPS://h"));
        assert!(!is_amqps("amqp://h"));
        assert!(!is_amqps("amqps:"));
    }

    #[test]
    fn paths_resolve_against_the_config_directory_with_or_without_file_prefix() {
        let mut t = AmqpTlsConfig {
            ca: Some("file:ca.pem".into()),
            cert: Some("/abs/c.pem".into()),
            key: Some("k.pem".into()),
        };
        t.resolve(Path::new("/etc/hookgate"));
        assert_eq!(t.ca.unwrap(), Path::new("/etc/hookgate/ca.pem"));
        assert_eq!(t.cert.unwrap(), Path::new("/abs/c.pem"));
        assert_eq!(t.key.unwrap(), Path::new("/etc/hookgate/k.pem"));
    }

    fn parse(amqp: &str, base: &Path) -> Result<crate::config::Config, String> {
        let text = format!(
            "[amqp]\n{amqp}\n[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"s\"]\n"
        );
        let vars = [("PW".to_string(), "pw".to_string())].into();
        crate::config::Config::parse(&text, &vars, base).map_err(|e| e.to_string())
    }

    #[test]
    fn url_may_be_a_list_with_file_entries_and_each_entry_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node2"), "amqp://u:from-file@n2:5672/%2f\n").unwrap();
        let c = parse(
            r#"url = ["amqp://u:${PW}@n1:5672/%2f", "file:node2"]"#,
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            c.amqp.url,
            ["amqp://u:pw@n1:5672/%2f", "amqp://u:from-file@n2:5672/%2f"]
        );
        let debug = format!("{:?}", c.amqp);
        assert!(
            !debug.contains("from-file") && !debug.contains(":pw@"),
            "{debug}"
        );
        let err = parse(r#"url = []"#, dir.path()).unwrap_err();
        assert!(err.contains("list of broker URLs is empty"), "{err}");
        let err = parse(r#"url = ["amqp://n1", "http://u:secret@n2"]"#, dir.path()).unwrap_err();
        assert!(err.contains("amqp.url[1]: not an AMQP URI"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = parse(r#"url = 5"#, dir.path()).unwrap_err();
        assert!(err.contains("a URL or a list of URLs"), "{err}");
    }

    #[test]
    fn tls_settings_with_a_plain_node_are_refused_and_amqps_alone_uses_system_roots() {
        let dir = tempfile::tempdir().unwrap();
        let err = parse(
            "url = [\"amqps://n1\", \"amqp://u:secret@n2\"]\n[amqp.tls]\nca = \"ca.pem\"\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(
            err.contains("amqp.url[1]: amqp://u:[redacted]@n2 is plain amqp://"),
            "{err}"
        );
        assert!(
            err.contains("amqp.tls.ca: "),
            "the missing CA file too: {err}"
        );
        let err = parse(
            "url = \"amqps://n1\"\n[amqp.tls]\nkey = \"k.pem\"\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(
            err.contains("amqp.tls.key: set without amqp.tls.cert"),
            "{err}"
        );
        let err = parse("[amqp.tls]\ncafile = \"x\"\n", dir.path()).unwrap_err();
        assert!(err.contains("cafile"), "unknown keys are errors: {err}");
        // This machine has a system trust store (ca-certificates).
        parse(r#"url = "amqps://n1""#, dir.path()).unwrap();
    }

    #[test]
    fn missing_and_malformed_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem").unwrap();
        let with = |ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>| {
            client_config(Some(&AmqpTlsConfig {
                ca: ca.map(Path::to_path_buf),
                cert: cert.map(Path::to_path_buf),
                key: key.map(Path::to_path_buf),
            }))
            .err()
            .unwrap_or_default()
        };
        let nope = dir.path().join("nope.pem");
        assert!(with(Some(&nope), None, None).starts_with("amqp.tls.ca: "));
        assert!(with(Some(&junk), None, None).contains("no PEM certificate"));
        assert!(with(None, Some(&junk), None).contains("without amqp.tls.key"));
        assert!(with(None, None, Some(&junk)).contains("without amqp.tls.cert"));
        assert!(with(None, Some(&junk), Some(&junk)).starts_with("amqp.tls.cert: "));
    }
}
