//! The TLS listener's server configuration, from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("smpp.tls.cert: cannot read {path}: {source}")]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("smpp.tls.key: cannot read {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("smpp.tls.cert: {path} holds no PEM certificate")]
    NoCert { path: PathBuf },
    #[error("smpp.tls.key: {path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("smpp.tls: certificate and key do not make a usable server identity: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("smpp.tls.generate: {0} exists but {1} does not; give both or neither")]
    HalfPair(PathBuf, PathBuf),
    #[error("smpp.tls.generate: cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("smpp.tls.generate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Writes a self-signed certificate (for `localhost`) and its key to `cert` and
/// `key` unless both exist; returns whether it did. The key file is private to
/// the broker's user.
pub fn ensure_self_signed(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (true, false) => return Err(TlsError::HalfPair(cert.to_owned(), key.to_owned())),
        (false, true) => return Err(TlsError::HalfPair(key.to_owned(), cert.to_owned())),
        (false, false) => {}
    }
    let identity = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let write = |path: &Path, text: String, private: bool| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = private;
        std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())
    };
    write(key, identity.key_pair.serialize_pem(), true).map_err(|source| TlsError::Write {
        path: key.to_owned(),
        source,
    })?;
    write(cert, identity.cert.pem(), false).map_err(|source| TlsError::Write {
        path: cert.to_owned(),
        source,
    })?;
    Ok(true)
}

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
        path: cert.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::ReadCert {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_owned(),
        });
    }
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::ReadKey {
            path: key.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: key.to_owned(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pair_is_generated_once_and_serves() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("tls/cert.pem"),
            dir.path().join("tls/key.pem"),
        );
        assert!(ensure_self_signed(&cert, &key).unwrap());
        assert!(acceptor(&cert, &key).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key is private");
        }
        let first = std::fs::read(&cert).unwrap();
        assert!(!ensure_self_signed(&cert, &key).unwrap(), "kept");
        assert_eq!(std::fs::read(&cert).unwrap(), first);
    }

    #[test]
    fn half_a_pair_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "not used").unwrap();
        let err = ensure_self_signed(&cert, &key).unwrap_err().to_string();
        assert!(
            err.contains("key.pem") && err.contains("smpp.tls.generate"),
            "{err}"
        );
        assert!(!key.exists());
    }
}
