//! A throw-away certificate authority for tests: a CA and a `localhost` /
//! `127.0.0.1` server certificate made with rcgen at test time, the CA written
//! as PEM to a temporary directory so the client can trust it through
//! `extra_ca_file` (exactly as `SSL_CERT_FILE` works in production).
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// A test CA and a server TLS acceptor whose certificate it signed.
pub struct TestTls {
    /// Keeps the CA file alive for the test's duration.
    _dir: tempfile::TempDir,
    /// PEM file holding the CA certificate: pass it as `extra_ca_file`.
    pub ca_file: PathBuf,
    /// Server side: terminates TLS for `localhost` and `127.0.0.1`.
    pub acceptor: TlsAcceptor,
}

/// Make a fresh CA + server certificate. Panics only on test-setup failure.
pub fn make_test_tls() -> TestTls {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "drone-discord test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "fake discord");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf cert");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("test-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA PEM");

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .expect("server config");
    TestTls {
        _dir: dir,
        ca_file,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}
