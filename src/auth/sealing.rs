//! Sealing of secrets that a node must be able to read back: app-client
//! secrets, users' TOTP secrets (software-token MFA), and the codes and
//! temporary passwords waiting in the courier's outbox. `SECRET_HASH` is an HMAC keyed by the client secret, so a hash
//! of the secret would not let a node check it; instead the secret is
//! encrypted (ChaCha20-Poly1305) under the cluster sealing key, which every
//! node holds in a local file and which never enters the Raft log,
//! snapshots or the state machine. A copy of a data dir or a snapshot
//! therefore reveals no client secret.
//!
//! The additional data binds a sealed secret to what it belongs to (a
//! client secret to its pool and client, an outbox message to its pool,
//! user, destination and time), so a ciphertext copied elsewhere does not
//! open.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::AuthError;
use crate::model::app_client::SealedSecret;
use crate::model::outbox::{MessageContent, MessageDraft};

/// The cluster sealing key. Identical on every node.
pub struct SealingKey {
    cipher: ChaCha20Poly1305,
    /// Kept to hand the key to a joining node over the authenticated,
    /// encrypted join handshake; never logged or stored elsewhere.
    raw: [u8; 32],
}

impl std::fmt::Debug for SealingKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

fn aad(pool_id: &str, client_id: &str) -> Vec<u8> {
    format!("tessera client secret\0{pool_id}\0{client_id}").into_bytes()
}

fn totp_context(pool_id: &str, sub: &str, id: &str) -> Vec<u8> {
    format!("tessera totp secret\0{pool_id}\0{sub}\0{id}").into_bytes()
}

impl SealingKey {
    /// A sealing key from its 32 raw bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        SealingKey {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            raw: key,
        }
    }

    /// The key itself, for the join handshake only.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// Reads a key file holding 64 hex characters.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError::Key(format!("reading sealing key {}: {e}", path.display())))?;
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AuthError::Key(format!("{} must hold 64 hex characters (32 bytes)", path.display())))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Loads `path`, creating it with a fresh random key (mode 0600) if it
    /// does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        if path.exists() {
            return Self::load(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let key = crate::clock::random_bytes::<32>();
        let mut opts = std::fs::OpenOptions::new();
        opts.create_new(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path)?;
        f.write_all(hex::encode(key).as_bytes())?;
        f.sync_all()?;
        Ok(Self::from_bytes(key))
    }

    /// Encrypts `secret` for client `client_id` of `pool_id` under `nonce`
    /// (12 random bytes drawn by the caller; never reused with one key).
    pub fn seal(&self, pool_id: &str, client_id: &str, secret: &str, nonce: [u8; 12]) -> SealedSecret {
        self.seal_bytes(&aad(pool_id, client_id), secret.as_bytes(), nonce)
    }

    /// Decrypts a sealed secret; fails if the key differs or the record was
    /// moved to another client.
    pub fn open(&self, pool_id: &str, client_id: &str, sealed: &SealedSecret) -> Result<String, AuthError> {
        let plain = self.open_bytes(&aad(pool_id, client_id), sealed).ok_or_else(|| {
            AuthError::Key("the client secret does not open with this node's sealing key; every node needs the same sealing_key_file".into())
        })?;
        String::from_utf8(plain).map_err(|_| AuthError::Key("sealed secret is not UTF-8".into()))
    }

    /// Encrypts a user's TOTP secret, bound to its pool, user and secret id,
    /// under `nonce` (12 random bytes never reused with one key).
    pub fn seal_totp(&self, pool_id: &str, sub: &str, id: &str, secret: &[u8], nonce: [u8; 12]) -> SealedSecret {
        self.seal_bytes(&totp_context(pool_id, sub, id), secret, nonce)
    }

    /// Decrypts what [`seal_totp`](Self::seal_totp) sealed for the same
    /// pool, user and id; fails if the key differs or the record moved.
    pub fn open_totp(&self, pool_id: &str, sub: &str, id: &str, sealed: &SealedSecret) -> Result<Vec<u8>, AuthError> {
        self.open_bytes(&totp_context(pool_id, sub, id), sealed).ok_or_else(|| {
            AuthError::Key(
                "a TOTP secret does not open with this node's sealing key; every node needs the cluster's key".into(),
            )
        })
    }

    /// Encrypts `plain`, bound to `context` (the additional data: what the
    /// secret belongs to), under `nonce`, 12 random bytes never reused
    /// with one key.
    pub fn seal_bytes(&self, context: &[u8], plain: &[u8], nonce: [u8; 12]) -> SealedSecret {
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            // Encryption fails only beyond 256 GiB of input.
            .unwrap_or_default();
        SealedSecret { nonce, ciphertext }
    }

    /// Decrypts what [`seal_bytes`](Self::seal_bytes) sealed with the same
    /// `context`; `None` if the key, the context or the bytes differ.
    pub fn open_bytes(&self, context: &[u8], sealed: &SealedSecret) -> Option<Vec<u8>> {
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: context,
                },
            )
            .ok()
    }
}

/// Seals `content` into `draft`, bound to the draft's pool, user,
/// destination and time. The nonce is random: one key seals many
/// messages, and a nonce must never repeat under it.
pub fn seal_message(key: &SealingKey, draft: &mut MessageDraft, content: &MessageContent) {
    // code length (4 bytes, big-endian), code, body.
    let mut plain = Vec::with_capacity(4 + content.code.len() + content.body.len());
    plain.extend_from_slice(&u32::try_from(content.code.len()).unwrap_or(u32::MAX).to_be_bytes());
    plain.extend_from_slice(content.code.as_bytes());
    plain.extend_from_slice(content.body.as_bytes());
    draft.sealed = Some(key.seal_bytes(&draft.seal_context(), &plain, crate::clock::random_bytes::<12>()));
}

/// The body and code sealed into `draft`, or `None` once they were erased.
pub fn open_message(key: &SealingKey, draft: &MessageDraft) -> Result<Option<MessageContent>, AuthError> {
    let Some(sealed) = &draft.sealed else {
        return Ok(None);
    };
    let bad = |why: &str| AuthError::Key(format!("outbox message {why}"));
    let plain = key
        .open_bytes(&draft.seal_context(), sealed)
        .ok_or_else(|| bad("does not open with this node's sealing key; every node needs the cluster's key"))?;
    let (len, rest) = plain.split_at_checked(4).ok_or_else(|| bad("is malformed"))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (code, body) = rest.split_at_checked(len).ok_or_else(|| bad("is malformed"))?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad("is not UTF-8"));
    Ok(Some(MessageContent {
        code: text(code)?,
        body: text(body)?,
    }))
}

/// The node's sealing key, which may arrive after start-up: the node that
/// forms a cluster creates it at `cluster init`, and a joining node receives
/// it in the join handshake. Services read it through this cell.
pub struct SealingCell {
    key: std::sync::RwLock<Option<std::sync::Arc<SealingKey>>>,
    /// Where a created or received key is written (`keys/sealing.key` in
    /// the data dir), unless the operator configured a file.
    path: std::path::PathBuf,
}

impl SealingCell {
    /// A cell holding `key`, writing new keys to `path`.
    pub fn new(key: Option<SealingKey>, path: std::path::PathBuf) -> Self {
        SealingCell {
            key: std::sync::RwLock::new(key.map(std::sync::Arc::new)),
            path,
        }
    }

    /// The key, once the node has one.
    pub fn get(&self) -> Option<std::sync::Arc<SealingKey>> {
        self.key.read().ok().and_then(|k| k.clone())
    }

    /// Makes sure the node has a key: keeps the one it has, or creates one
    /// (cluster init).
    pub fn ensure(&self) -> Result<std::sync::Arc<SealingKey>, AuthError> {
        if let Some(k) = self.get() {
            return Ok(k);
        }
        let key = std::sync::Arc::new(SealingKey::load_or_create(&self.path)?);
        if let Ok(mut slot) = self.key.write() {
            *slot = Some(key.clone());
        }
        Ok(key)
    }

    /// Installs the cluster's key received in a join. A node that already
    /// has a key (a configured file) must have this one: two keys would
    /// leave client secrets unreadable on some nodes.
    pub fn install(&self, raw: &[u8; 32]) -> Result<(), AuthError> {
        use subtle::ConstantTimeEq;
        if let Some(k) = self.get() {
            return if bool::from(k.raw().ct_eq(raw)) {
                Ok(())
            } else {
                Err(AuthError::Key(
                    "this node's sealing_key_file differs from the cluster's sealing key; remove it from the config (the join hands the key over) or copy the cluster's".into(),
                ))
            };
        }
        if self.path.exists() {
            let existing = SealingKey::load(&self.path)?;
            if !bool::from(existing.raw().ct_eq(raw)) {
                return Err(AuthError::Key(format!(
                    "{} holds a different sealing key than the cluster's",
                    self.path.display()
                )));
            }
        } else {
            crate::auth::write_private_file(&self.path, hex::encode(raw).as_bytes())?;
        }
        if let Ok(mut slot) = self.key.write() {
            *slot = Some(std::sync::Arc::new(SealingKey::from_bytes(*raw)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = SealingKey::from_bytes([9; 32]);
        let sealed = key.seal("local_A", "client1", "s3cret", [1; 12]);
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(key.open("local_A", "client1", &sealed).unwrap(), "s3cret");
        assert!(key.open("local_A", "client2", &sealed).is_err(), "bound to its client");
        assert!(SealingKey::from_bytes([8; 32])
            .open("local_A", "client1", &sealed)
            .is_err());
    }

    #[test]
    fn totp_secrets_open_only_for_their_user_and_id() {
        let key = SealingKey::from_bytes([5; 32]);
        let sealed = key.seal_totp("local_A", "sub-1", "id1", &[42; 20], [3; 12]);
        assert!(!sealed.ciphertext.windows(20).any(|w| w == [42; 20]));
        assert_eq!(key.open_totp("local_A", "sub-1", "id1", &sealed).unwrap(), vec![42; 20]);
        assert!(
            key.open_totp("local_A", "sub-2", "id1", &sealed).is_err(),
            "another user"
        );
        assert!(
            key.open_totp("local_A", "sub-1", "id2", &sealed).is_err(),
            "another secret"
        );
        assert!(SealingKey::from_bytes([4; 32])
            .open_totp("local_A", "sub-1", "id1", &sealed)
            .is_err());
    }

    #[test]
    fn messages_open_only_where_they_were_sealed() {
        use crate::model::outbox::{DeliveryMedium, MessageKind};
        let key = SealingKey::from_bytes([7; 32]);
        let mut draft = MessageDraft {
            pool_id: "local_A".into(),
            username: "alice".into(),
            medium: DeliveryMedium::Email,
            destination: "alice@example.com".into(),
            kind: MessageKind::ForgotPassword,
            subject: "s".into(),
            sealed: None,
            created_at: 1,
            deliver: false,
        };
        let content = MessageContent {
            body: "Your code is 123456.".into(),
            code: "123456".into(),
        };
        seal_message(&key, &mut draft, &content);
        let sealed = draft.sealed.clone().unwrap();
        assert!(
            !sealed.ciphertext.windows(6).any(|w| w == b"123456"),
            "no code in clear"
        );
        assert_eq!(open_message(&key, &draft).unwrap(), Some(content));
        // Moved onto another destination, the content does not open.
        let mut moved = draft.clone();
        moved.destination = "mallory@example.com".into();
        assert!(open_message(&key, &moved).is_err());
        assert!(open_message(&SealingKey::from_bytes([6; 32]), &draft).is_err());
        draft.sealed = None;
        assert_eq!(open_message(&key, &draft).unwrap(), None, "erased");
    }

    #[test]
    fn key_files_are_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/sealing.key");
        let a = SealingKey::load_or_create(&path).unwrap();
        let sealed = a.seal("p", "c", "x", [0; 12]);
        let b = SealingKey::load(&path).unwrap();
        assert_eq!(b.open("p", "c", &sealed).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("bad"), "zz").unwrap();
        assert!(SealingKey::load(&dir.path().join("bad")).is_err());
    }
}
