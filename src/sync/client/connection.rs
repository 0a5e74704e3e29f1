//! QUIC connections to the nodes: the TLS trust (a pinned SHA-256
//! certificate fingerprint, or a CA), ALPN `tessera-sync/1`, and transport
//! settings for a long-lived, mostly idle session (keepalive, idle
//! timeout, no streams from the server).
//!
//! One UDP endpoint per address family serves every connection of the
//! client, one at a time. 0-RTT is not used: a session always starts with a
//! full handshake, so no write can ever ride in early data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::config::{SyncConfig, Trust};
use super::SyncClientError;
use crate::sync::frame::ALPN;

/// Opens QUIC connections with the client's TLS and transport settings.
pub(crate) struct Connector {
    config: quinn::ClientConfig,
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
    /// An endpoint the application shares between clients: used for its
    /// address family, never closed here.
    shared: Option<quinn::Endpoint>,
}

impl Connector {
    /// Checks the trust settings and builds the configuration; opens no
    /// socket yet.
    pub fn new(cfg: &SyncConfig) -> Result<Self, SyncClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SyncClientError::Config(format!("tls: {e}")))?;
        let mut tls = match &cfg.trust {
            Trust::Fingerprints(pins) => {
                if pins.is_empty() {
                    return Err(SyncClientError::Config("no certificate fingerprint to pin".into()));
                }
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                        pins: pins.clone(),
                        provider,
                    }))
                    .with_no_client_auth()
            }
            Trust::CaPem(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                let mut found = 0usize;
                for cert in pem_certs(pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| SyncClientError::Config(format!("CA certificate: {e}")))?;
                    found += 1;
                }
                if found == 0 {
                    return Err(SyncClientError::Config("the CA file holds no certificate".into()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.enable_early_data = false;
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| SyncClientError::Config(format!("quic tls: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(cfg.timing.keepalive));
        let idle = quinn::IdleTimeout::try_from(cfg.timing.idle_timeout.max(Duration::from_millis(100)))
            .map_err(|e| SyncClientError::Config(format!("idle timeout: {e}")))?;
        transport.max_idle_timeout(Some(idle));
        // The protocol has one stream, opened by the device: the server may
        // open none.
        transport.max_concurrent_bidi_streams(0u8.into());
        transport.max_concurrent_uni_streams(0u8.into());
        config.transport_config(Arc::new(transport));
        Ok(Connector {
            config,
            v4: None,
            v6: None,
            shared: cfg.endpoint.clone(),
        })
    }

    fn endpoint(&mut self, to: SocketAddr) -> std::io::Result<&quinn::Endpoint> {
        if let Some(shared) = &self.shared {
            if shared.local_addr()?.is_ipv4() == to.is_ipv4() {
                return Ok(shared);
            }
        }
        let (slot, bind): (&mut Option<quinn::Endpoint>, SocketAddr) = if to.is_ipv4() {
            (&mut self.v4, SocketAddr::from(([0, 0, 0, 0], 0)))
        } else {
            (&mut self.v6, SocketAddr::from(([0u16; 8], 0)))
        };
        if slot.is_none() {
            *slot = Some(quinn::Endpoint::client(bind)?);
        }
        slot.as_ref().ok_or_else(|| std::io::Error::other("no endpoint"))
    }

    /// Connects to `addr`, completing the handshake within `timeout`.
    pub async fn connect(
        &mut self,
        addr: SocketAddr,
        server_name: &str,
        timeout: Duration,
    ) -> Result<quinn::Connection, String> {
        let config = self.config.clone();
        let endpoint = self.endpoint(addr).map_err(|e| format!("opening a UDP socket: {e}"))?;
        let connecting = endpoint
            .connect_with(config, addr, server_name)
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("connecting to {addr}: {e}")),
            Err(_) => Err(format!("connecting to {addr}: no handshake within {timeout:?}")),
        }
    }

    /// Closes the endpoints it opened, giving the last close a moment to go
    /// out.
    pub async fn close(&mut self) {
        for e in [self.v4.take(), self.v6.take()].into_iter().flatten() {
            e.close(0u8.into(), b"client stopped");
            let _ = tokio::time::timeout(Duration::from_millis(500), e.wait_idle()).await;
        }
    }
}

/// The certificates of a PEM bundle.
fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, SyncClientError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SyncClientError::Config(format!("CA file: {e}")))
}

/// Trusts exactly the certificates whose SHA-256 is pinned; names and
/// dates are not checked (a self-signed certificate has nobody to vouch
/// for them). The handshake signature is still verified, so the server
/// must hold the pinned certificate's private key.
/// Public so that other pinning devices (the `bench sync` driver) share it.
#[derive(Debug)]
pub struct PinnedCertificate {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCertificate {
    /// Trusts the certificates whose SHA-256 is one of `pins`, checking
    /// handshake signatures with `provider`'s algorithms.
    pub fn new(pins: Vec<[u8; 32]>, provider: Arc<CryptoProvider>) -> Self {
        PinnedCertificate { pins, provider }
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.pins.contains(&digest) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server certificate's SHA-256 {} is not a pinned fingerprint",
                hex::encode(digest)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::client::Credential;
    use rustls::pki_types::PrivateKeyDer;

    /// A QUIC server with `cert` that accepts connections and holds them.
    fn server(cert: CertificateDer<'static>, key: &rcgen::KeyPair) -> quinn::Endpoint {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let ep = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(crypto)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let accepting = ep.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    if let Ok(c) = incoming.await {
                        c.closed().await;
                    }
                });
            }
        });
        ep
    }

    fn config(trust: Trust) -> SyncConfig {
        SyncConfig::new(vec![], trust, "local:p", Credential::Credentials("t".into()), "d")
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_pinned_fingerprint_is_the_whole_trust() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pin: [u8; 32] = Sha256::digest(cert.der().as_ref()).into();
        let ep = server(cert.der().clone(), &key);
        let addr = ep.local_addr().unwrap();

        let mut pinned = Connector::new(&config(Trust::Fingerprints(vec![[1; 32], pin]))).unwrap();
        let c = pinned.connect(addr, "any.name", T).await.unwrap();
        assert_eq!(
            c.handshake_data()
                .unwrap()
                .downcast::<quinn::crypto::rustls::HandshakeData>()
                .unwrap()
                .protocol,
            Some(ALPN.to_vec())
        );
        c.close(0u8.into(), b"");

        let mut other = Connector::new(&config(Trust::Fingerprints(vec![[1; 32]]))).unwrap();
        let e = other.connect(addr, "localhost", T).await.unwrap_err();
        assert!(e.contains("not a pinned fingerprint"), "{e}");

        // A CA does not vouch for a self-signed certificate.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let mut by_ca = Connector::new(&config(Trust::CaPem(ca.pem().into_bytes()))).unwrap();
        assert!(by_ca.connect(addr, "localhost", T).await.is_err());
        pinned.close().await;
        other.close().await;
        by_ca.close().await;
    }

    #[tokio::test]
    async fn a_ca_vouches_for_the_names_it_signed() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["sync.example".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let ep = server(leaf.der().clone(), &key);
        let addr = ep.local_addr().unwrap();

        let mut c = Connector::new(&config(Trust::CaPem(ca.pem().into_bytes()))).unwrap();
        c.connect(addr, "sync.example", T).await.unwrap();
        let e = c.connect(addr, "other.example", T).await.unwrap_err();
        assert!(e.contains("connecting"), "{e}");
        c.close().await;

        assert!(Connector::new(&config(Trust::CaPem(b"not a certificate".to_vec()))).is_err());
        assert!(Connector::new(&config(Trust::Fingerprints(vec![]))).is_err());
    }
}
