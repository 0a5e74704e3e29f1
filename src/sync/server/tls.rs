//! TLS of the sync listener: the node's certificate (configured, or a
//! self-signed one the node makes once and keeps), its SHA-256 fingerprint
//! that a device may pin, and the rustls server configuration QUIC runs on.
//!
//! The self-signed certificate and its key live in `data_dir/keys`
//! (`sync-cert.pem`, `sync-key.pem`, the key readable by the owner only),
//! so the fingerprint a device pinned stays valid across restarts. It is
//! never sent to another node: each node has its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::{chacha_suite, SyncServerError};
use crate::sync::frame::ALPN;

/// File name of the generated certificate in `data_dir/keys`.
pub const GENERATED_CERT: &str = "sync-cert.pem";
/// File name of the generated certificate's private key in `data_dir/keys`.
pub const GENERATED_KEY: &str = "sync-key.pem";
/// TLS sessions kept for resumption (and so 0-RTT). Each ticket is used
/// once (rustls takes it out of the cache), which is what keeps a
/// captured 0-RTT flight from being replayed; at a few hundred bytes an
/// entry, the cache costs at most a few MiB.
const RESUMPTION_CACHE_ENTRIES: usize = 8192;

/// A certificate chain and its key, as the listener serves them.
pub struct ServerIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Lowercase hex SHA-256 of the leaf certificate's DER bytes.
    pub fingerprint_sha256: String,
    /// Where the certificate came from, for the start-up log.
    pub source: PathBuf,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServerIdentity")
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256 of `der`: what `/sync-info` and `tessera dev`
/// announce, and what a pinning device compares with the certificate the
/// handshake presents.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn tls_err(what: impl std::fmt::Display) -> SyncServerError {
    SyncServerError::Tls(what.to_string())
}

/// The configured certificate and key (both or neither), or the node's
/// own self-signed pair from `keys_dir`, made on first start with
/// `names` as its subject alternative names.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    keys_dir: &Path,
    names: &[String],
) -> Result<ServerIdentity, SyncServerError> {
    match (cert, key) {
        (Some(c), Some(k)) => load(c, k),
        (None, None) => {
            let c = keys_dir.join(GENERATED_CERT);
            let k = keys_dir.join(GENERATED_KEY);
            if c.exists() && k.exists() {
                load(&c, &k)
            } else {
                generate(&c, &k, names)?;
                let id = load(&c, &k)?;
                tracing::info!(
                    cert = %c.display(),
                    fingerprint_sha256 = %id.fingerprint_sha256,
                    "made a self-signed certificate for the sync listener"
                );
                Ok(id)
            }
        }
        _ => Err(tls_err(
            "sync TLS needs both sync.cert and sync.key (or neither, for a self-signed certificate)",
        )),
    }
}

fn load(cert: &Path, key: &Path) -> Result<ServerIdentity, SyncServerError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(format!("reading {}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("reading {}: {e}", cert.display())))?;
    let Some(leaf) = chain.first() else {
        return Err(tls_err(format!("{} holds no certificate", cert.display())));
    };
    let fingerprint_sha256 = fingerprint_sha256(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(format!("reading {}: {e}", key.display())))?;
    Ok(ServerIdentity {
        chain,
        key,
        fingerprint_sha256,
        source: cert.to_path_buf(),
    })
}

/// Writes a new self-signed pair: the key first, then the certificate,
/// each through a temporary file and a rename, so that a crash leaves
/// either no certificate (and the next start makes a new pair) or a
/// complete pair.
fn generate(cert: &Path, key: &Path, names: &[String]) -> Result<(), SyncServerError> {
    let mut sans: Vec<String> = vec!["localhost".into()];
    for n in names {
        if !n.is_empty() && !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let made = rcgen::generate_simple_self_signed(sans).map_err(|e| tls_err(format!("making a certificate: {e}")))?;
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir).map_err(|e| tls_err(format!("creating {}: {e}", dir.display())))?;
    }
    write_file(key, made.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert, made.cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SyncServerError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let err = |e: std::io::Error| tls_err(format!("writing {}: {e}", path.display()));
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The QUIC server crypto: TLS 1.3 only, ALPN `tessera-sync/1`, no client
/// certificates (devices prove themselves in `DeviceHello`), and 0-RTT
/// accepted from resumed sessions. 0-RTT data may be replayed by whoever
/// captured it, so a session never proposes a write before the handshake
/// is complete (`session.rs`); a Hello and a Subscribe only read, and
/// tickets are single-use.
pub fn server_crypto(identity: &ServerIdentity) -> Result<Arc<QuicServerConfig>, SyncServerError> {
    let mut provider = rustls::crypto::ring::default_provider();
    // ChaCha20-Poly1305 first, with keys a tenth the size of ring's
    // (`chacha_suite`); then ring's AES-GCM suites for a device without it.
    let chacha = chacha_suite::suite();
    provider
        .cipher_suites
        .retain(|s| s.suite() != chacha.suite() && s.version() == &rustls::version::TLS13);
    provider.cipher_suites.insert(0, chacha);
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| tls_err(format!("{}: {e}", identity.source.display())))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // The listener's order, not the device's: rustls clients list AES
    // first, and AES keys cost a connection ~3 KiB more for its lifetime.
    cfg.ignore_client_order = true;
    cfg.max_early_data_size = u32::MAX;
    // One ticket per connection: a device resumes once per reconnect, and
    // each resumed connection gets a fresh ticket (each costs the cache
    // an entry while it lives).
    cfg.send_tls13_tickets = 1;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(RESUMPTION_CACHE_ENTRIES);
    let quic = QuicServerConfig::try_from(cfg).map_err(tls_err)?;
    Ok(Arc::new(quic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let first = load_or_generate(None, None, &keys, &["127.0.0.1".into(), "node1.internal".into()]).unwrap();
        assert_eq!(first.fingerprint_sha256.len(), 64);
        assert_eq!(
            first.fingerprint_sha256,
            fingerprint_sha256(first.chain[0].as_ref()),
            "the fingerprint is of the leaf's DER"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join(GENERATED_KEY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "the key is the owner's only");
        }
        let again = load_or_generate(None, None, &keys, &[]).unwrap();
        assert_eq!(again.fingerprint_sha256, first.fingerprint_sha256, "reused, not remade");
        assert!(server_crypto(&again).is_ok());

        // Configured files are used as they are; half a configuration is refused.
        let c = keys.join(GENERATED_CERT);
        let k = keys.join(GENERATED_KEY);
        let configured = load_or_generate(Some(&c), Some(&k), &dir.path().join("elsewhere"), &[]).unwrap();
        assert_eq!(configured.fingerprint_sha256, first.fingerprint_sha256);
        let err = load_or_generate(Some(&c), None, &keys, &[]).unwrap_err().to_string();
        assert!(err.contains("both sync.cert and sync.key"), "{err}");
        let err = load_or_generate(Some(&dir.path().join("missing.pem")), Some(&k), &keys, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
