//! Optional TLS on the public listener (`[server.tls] cert, key`), with rustls.
//!
//! The certificate sits behind a lock that rustls asks on every handshake, so `hookgate serve`
//! can swap it on SIGHUP without dropping a connection: a renewed certificate (certbot, cert-manager)
//! is picked up by the next handshake. A reload that fails (unreadable file, a key that does not
//! match the certificate) keeps the certificate in use.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsConfig};

/// The certificate the public listener serves, reloadable while running.
pub struct TlsCerts {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for TlsCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCerts")
            .field("cert", &self.config.cert)
            .field("key", &self.config.key)
            .finish_non_exhaustive()
    }
}

impl TlsCerts {
    /// Reads and checks the certificate chain and key; an error names `server.tls.cert` or
    /// `server.tls.key`, so a bad file stops the start like any other config error.
    pub fn load(config: &TlsConfig) -> Result<TlsCerts, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read(config, &provider)?;
        Ok(TlsCerts {
            config: config.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Reads the files again and serves them from the next handshake on; `true` when they
    /// hold another certificate chain than the one served. On error the certificate in use
    /// stays.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let key = Arc::new(read(&self.config, &self.provider)?);
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let changed = current.cert != key.cert;
        *current = key;
        Ok(changed)
    }

    /// The rustls configuration for the listener, resolving through `self`.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        Ok(
            rustls::ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        )
    }

    /// The paths being served (for log lines).
    pub fn paths(&self) -> (&Path, &Path) {
        (&self.config.cert, &self.config.key)
    }
}

impl ResolvesServerCert for TlsCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read(config: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
    let err = |key: &str, path: &Path, what: String| {
        ConfigError(vec![format!(
            "server.tls.{key}: {}: {what}",
            path.display()
        )])
    };
    let cert_pem = std::fs::read(&config.cert)
        .map_err(|e| err("cert", &config.cert, format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("cert", &config.cert, format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err(
            "cert",
            &config.cert,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key_pem = std::fs::read(&config.key)
        .map_err(|e| err("key", &config.key, format!("cannot read: {e}")))?;
    // The error text of a key parse never quotes the key material.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        err(
            "key",
            &config.key,
            format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err("key", &config.key, format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key type whose public half the provider cannot derive: nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(err(
            "key",
            &config.key,
            format!("does not match server.tls.cert: {e}"),
        )),
    }
}
