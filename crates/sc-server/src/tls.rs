//! TLS on the server's own port, with rustls (no OpenSSL): HTTPS for static files, WSS for the
//! SocketCluster path.
//!
//! TLS is one step of the accept loop (`listen.rs`): each connection's handshake runs in that
//! connection's own task (a slow client never holds up the others), bounded by
//! `httpHeaderTimeout`, and counts against `maxPendingConnections` like any connection that has
//! not upgraded yet. [`TlsSettings`] holds the certificate; its
//! [`reload`](TlsSettings::reload) swaps in new files for *new* connections while open ones keep
//! theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate or key could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("cannot read TLS {what} file {path}: {source}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("TLS {what} file {path} holds no PEM {what}: {reason}")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The key does not belong to the certificate (or rustls refuses the pair).
    #[error("TLS private key {key} does not match the certificate {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// A certificate and key from PEM files, reloadable while the server runs.
pub struct TlsSettings {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Loaded>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamp: Option<(SystemTime, SystemTime)>,
}

impl TlsSettings {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or SEC1) and checks that
    /// they belong together.
    pub fn load(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<TlsSettings, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let loaded = load(&cert, &key)?;
        Ok(TlsSettings {
            cert,
            key,
            current: RwLock::new(loaded),
        })
    }

    /// Reads the files again; new connections use the new certificate, open ones keep theirs.
    /// On error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.cert, &self.key)?;
        *self.current.write() = loaded;
        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads if either file changed since the last load (by modification time). Returns whether
    /// a new certificate is in use.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = stamps(&self.cert, &self.key);
        if stamp.is_none() || stamp == self.current.read().stamp {
            return false;
        }
        match self.reload() {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "TLS files changed but cannot be loaded; keeping the old certificate");
                // Remember the broken stamp: one warning per change, not one per poll.
                self.current.write().stamp = stamp;
                false
            }
        }
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().acceptor.clone()
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(cert)?, modified(key)?))
}

fn load(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let stamp = stamps(cert, key);
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("private key", key)?;
    let pem_error = |what, path: &Path, reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(
            "certificate",
            cert,
            "no CERTIFICATE block".into(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error("private key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        stamp,
    })
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").finish_non_exhaustive()
    }
}
