//! TLS for a secured swarm: every node's identity is derived from the swarm secret.
//!
//! Why this construction: the swarm has no CA and no per-node enrolment, only a shared secret.
//! Every node derives the same Ed25519 key from it ([`SwarmSecret::derive`]) and the same
//! self-signed certificate (rcgen with fixed parameters; Ed25519 signatures are deterministic,
//! so the certificate bytes are identical on every node). Both ends of every connection, control
//! channel and chunk transfer alike, present that certificate and accept only that certificate
//! (mutual TLS 1.3, pinned). A host without the secret cannot produce the key, so it can neither
//! join, nor serve as a master or source, nor fetch a chunk; a recorded handshake is useless
//! later (TLS 1.3 with fresh randomness both ways); the secret itself never crosses the wire.
//! TLS also encrypts and authenticates every byte, so a flipped bit fails the connection.
//!
//! rustls with the `ring` provider: pure Rust plus ring's C/asm, which cross-builds for Windows
//! with mingw and builds on macOS without system OpenSSL.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::secret::SwarmSecret;

/// The name every node's certificate carries (verification pins the whole certificate, so the
/// name only has to be valid).
const NAME: &str = "lanscatter-swarm";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the swarm's TLS identity: {0}")]
    Identity(String),
}

/// The TLS configuration of one secured node (cheap to clone).
#[derive(Clone)]
pub struct Tls {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(swarm identity)")
    }
}

/// PKCS#8 (v1) of an Ed25519 private key with this 32-byte seed (RFC 8410).
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(seed);
    der
}

/// The swarm's certificate and private key, derived from the secret.
fn identity(secret: &SwarmSecret) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let err = |e: rcgen::Error| TlsError::Identity(e.to_string());
    let pkcs8 = PrivatePkcs8KeyDer::from(ed25519_pkcs8(&secret.derive("tls identity v1")));
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).map_err(err)?;
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()]).map_err(err)?.self_signed(&key).map_err(err)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

impl Tls {
    pub fn new(secret: &SwarmSecret) -> Result<Tls, TlsError> {
        let (cert, key) = identity(secret)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pin = Arc::new(Pinned { cert: cert.clone(), provider: provider.clone() });
        let tls_err = |e: rustls::Error| TlsError::Identity(e.to_string());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(pin.clone())
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .map_err(tls_err)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .dangerous()
            .with_custom_certificate_verifier(pin)
            .with_client_auth_cert(vec![cert], key)
            .map_err(tls_err)?;
        Ok(Tls { server: Arc::new(server), client: Arc::new(client) })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }

    /// The name a client asks for (every node answers to it).
    pub fn server_name() -> ServerName<'static> {
        ServerName::DnsName(rustls::pki_types::DnsName::try_from(NAME).expect("a valid DNS name").to_owned())
    }
}

/// Accepts exactly the swarm's certificate, in both directions; signatures are checked with the
/// key in that certificate, so only a holder of the derived private key passes.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
}

/// The handshake-signature checks, the same in both directions: with the key of the (pinned)
/// certificate and the provider's algorithms.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn secret(s: &str) -> SwarmSecret {
        SwarmSecret::parse(s).unwrap()
    }

    #[test]
    fn every_node_derives_the_same_identity_and_other_secrets_another() {
        let a = identity(&secret("the swarm secret of test A")).unwrap();
        let a2 = identity(&secret("the swarm secret of test A")).unwrap();
        let b = identity(&secret("the swarm secret of test B")).unwrap();
        assert_eq!(a.0, a2.0, "certificates are byte-identical across nodes");
        assert_ne!(a.0, b.0);
    }

    /// A TLS handshake over loopback between a server with `srv` and a client with `cli`; Ok
    /// when both sides accept each other and a byte crosses.
    async fn handshake(srv: &Tls, cli: &Tls) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = srv.acceptor();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            s.write_all(&b).await.map_err(|e| e.to_string())
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let client = async {
            let mut c = cli.connector().connect(Tls::server_name(), tcp).await.map_err(|e| e.to_string())?;
            c.write_all(b"x").await.map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        let c = client.await;
        let s = server.await.unwrap();
        c.and(s)
    }

    #[tokio::test]
    async fn only_holders_of_the_same_secret_connect() {
        let a = Tls::new(&secret("the swarm secret of test A")).unwrap();
        let b = Tls::new(&secret("the swarm secret of test B")).unwrap();
        assert_eq!(handshake(&a, &a.clone()).await, Ok(()));
        assert!(handshake(&a, &b).await.is_err(), "a client with another secret is refused");
        assert!(handshake(&b, &a).await.is_err(), "a server with another secret is refused");
    }
}
