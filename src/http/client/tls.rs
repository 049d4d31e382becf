//! The client's TLS trust: rustls with the ring provider, the webpki roots,
//! plus an optional extra PEM bundle (`SSL_CERT_FILE`, or a test CA), read
//! with a size bound.
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::ClientError;

/// Largest CA bundle we read from `extra_ca_file`.
const MAX_CA_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// rustls client config: ring provider, webpki roots + optional PEM bundle.
pub(super) fn build_tls_config(
    extra_ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca_file {
        let pem = read_bounded(path)?;
        let mut certs = Vec::new();
        for item in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                item.map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
            certs.push(cert);
        }
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ClientError::Tls(format!(
                "CA file {} holds no usable certificate",
                path.display()
            )));
        }
        tracing::debug!(path = %path.display(), added, ignored, "loaded extra CA certificates");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(ClientError::Tls(format!(
            "CA file {} is larger than 8 MiB",
            path.display()
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use crate::http::client::{Client, ClientError, ClientOptions};

    #[test]
    fn missing_or_empty_ca_file_is_a_tls_error() {
        let opts = ClientOptions {
            extra_ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientOptions::default()
        };
        assert!(matches!(Client::new(opts), Err(ClientError::Tls(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, b"not a pem").unwrap();
        let opts = ClientOptions {
            extra_ca_file: Some(path),
            ..ClientOptions::default()
        };
        assert!(matches!(Client::new(opts), Err(ClientError::Tls(_))));
    }
}
