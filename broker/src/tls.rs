//! TLS for the listeners (wss:// and STOMP over TLS), with rustls.
//!
//! The certificate and key are read from PEM files. Handshakes ask a resolver for the
//! current pair, and `reload` swaps in a freshly read pair (on SIGHUP), so certificates can
//! be renewed without a restart: connections already established keep their session, new
//! ones get the new certificate. A reload that fails (a missing file, a key that does not
//! match) keeps the old pair and reports why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, version};

use crate::config::TlsConfig;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("tls.cert_file {path}: {reason}")]
    Cert {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The key file is unreadable, holds no key, or the key does not fit the certificate.
    #[error("tls.key_file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// The TLS side of the listeners.
#[derive(Clone)]
pub struct Tls {
    /// For the HTTP listener: ALPN `http/1.1`.
    http: TlsAcceptor,
    /// For raw STOMP: no ALPN (a client offering its own protocol name is not refused).
    stream: TlsAcceptor,
    for_http: bool,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.resolver.cert_file)
            .finish()
    }
}

#[derive(Debug)]
struct Resolver {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A read lock held for one Arc clone, never across an await.
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

impl Tls {
    /// Reads the certificate and key.
    pub fn load(cfg: &TlsConfig) -> Result<Self, TlsError> {
        let key = read_pair(&cfg.cert_file, &cfg.key_file)?;
        let resolver = Arc::new(Resolver {
            cert_file: cfg.cert_file.clone(),
            key_file: cfg.key_file.clone(),
            current: RwLock::new(Arc::new(key)),
        });
        let build = |alpn: bool| -> Result<TlsAcceptor, TlsError> {
            let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
                .with_protocol_versions(&[&version::TLS13, &version::TLS12])
                .map_err(|e| TlsError::Cert {
                    path: cfg.cert_file.display().to_string(),
                    reason: e.to_string(),
                })?
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
            if alpn {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
            }
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        Ok(Self {
            http: build(true)?,
            stream: build(false)?,
            for_http: true,
            resolver,
        })
    }

    /// Re-reads the files; on failure the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_pair(&self.resolver.cert_file, &self.resolver.key_file)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The same certificate, for the raw STOMP listener (no ALPN).
    pub fn for_stream(&self) -> Self {
        Self {
            for_http: false,
            ..self.clone()
        }
    }

    /// The acceptor for new connections on this listener.
    pub fn acceptor(&self) -> &TlsAcceptor {
        if self.for_http {
            &self.http
        } else {
            &self.stream
        }
    }
}

fn provider() -> CryptoProvider {
    ring::default_provider()
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert_file.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key_file.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no certificate in the file".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| key_err(e.to_string()))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| key_err(e.to_string()))
}
