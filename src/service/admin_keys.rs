//! Admin access keys: creating, listing and deleting the key pairs that
//! sign admin calls with AWS Signature Version 4, and the secret lookup
//! the SigV4 verifier (`crate::auth::sigv4`) runs on every signed call.
//!
//! The secret is sealed under the cluster sealing key before it enters the
//! Raft log, bound to its key id; it is returned once, by `create`, and
//! never listed or logged.

use std::sync::Arc;

use crate::auth::sealing::{SealingCell, SealingKey};
use crate::command::{CreateAdminAccessKey, DeleteAdminAccessKey, Rejection};
use crate::model::admin_key::{secret_context, validate_description, validate_key_id, validate_secret, AdminAccessKey};
use crate::raft::RaftNode;

use super::{ErrorKind, ServiceError};

/// The prefix of generated key ids, as AWS's long-term keys have.
pub const KEY_ID_PREFIX: &str = "AKIA";
/// Random characters after [`KEY_ID_PREFIX`] (AWS: 16).
pub const KEY_ID_RANDOM_CHARS: usize = 16;
/// Characters of a generated secret (AWS: 40).
pub const SECRET_CHARS: usize = 40;

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKeySummary {
    /// The access key id.
    pub key_id: String,
    /// The operator's description.
    pub description: String,
    /// Unix ms of creation.
    pub created_at: i64,
}

impl From<&AdminAccessKey> for AdminKeySummary {
    fn from(k: &AdminAccessKey) -> Self {
        AdminKeySummary {
            key_id: k.key_id.clone(),
            description: k.description.clone(),
            created_at: k.created_at,
        }
    }
}

/// A key just created, with its secret: the only time it is shown.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedAdminKey {
    /// Id, description and creation time.
    pub summary: AdminKeySummary,
    /// The secret access key.
    pub secret: String,
}

impl std::fmt::Debug for CreatedAdminKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAdminKey")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Admin access key operations of one node.
#[derive(Clone)]
pub struct AdminKeyService {
    node: Arc<RaftNode>,
    sealing: Arc<SealingCell>,
}

impl AdminKeyService {
    /// The admin key service of `node`; `sealing` seals and opens secrets.
    pub fn new(node: Arc<RaftNode>, sealing: Arc<SealingCell>) -> Self {
        AdminKeyService { node, sealing }
    }

    fn sealing(&self) -> Result<Arc<SealingKey>, ServiceError> {
        super::sealing_key(&self.sealing)
    }

    /// Creates a key: with the operator's id and secret when `given` (for
    /// CI and for moving existing configurations), else with a random
    /// `AKIA...` id and a random 40-character secret. Returns the secret
    /// once.
    pub async fn create(
        &self,
        given: Option<(String, String)>,
        description: &str,
    ) -> Result<CreatedAdminKey, ServiceError> {
        validate_description(description)?;
        if let Some((id, secret)) = &given {
            validate_key_id(id)?;
            validate_secret(secret)?;
        }
        let sealing = self.sealing()?;
        // A random id that happens to be taken is drawn again; a given
        // one that is taken is the caller's error.
        for _ in 0..3 {
            let (key_id, secret) = match &given {
                Some((id, secret)) => (id.clone(), secret.clone()),
                None => (random_key_id(), random_secret()),
            };
            let sealed = sealing.seal_bytes(
                &secret_context(&key_id),
                secret.as_bytes(),
                crate::clock::random_bytes::<12>(),
            );
            let key = AdminAccessKey {
                key_id,
                secret: sealed,
                created_at: crate::clock::now_millis(),
                description: description.to_string(),
            };
            let summary = AdminKeySummary::from(&key);
            match super::try_submit(&self.node, CreateAdminAccessKey(key)).await? {
                Ok(()) => {
                    tracing::info!(key_id = %summary.key_id, "admin access key created");
                    return Ok(CreatedAdminKey { summary, secret });
                }
                Err(Rejection::AlreadyExists { .. }) if given.is_none() => continue,
                Err(Rejection::AlreadyExists { id, .. }) => {
                    return Err(ServiceError::new(
                        ErrorKind::AlreadyExists,
                        "ResourceExistsException",
                        format!("admin access key {id} already exists"),
                    ))
                }
                Err(r) => return Err(r.into()),
            }
        }
        Err(ServiceError::internal("could not draw a unique admin access key id"))
    }

    /// Every key, in id order, without secrets; after a read barrier, so
    /// a key just created on another node is listed.
    pub async fn list(&self) -> Result<Vec<AdminKeySummary>, ServiceError> {
        self.node.read_barrier().await?;
        Ok(self
            .node
            .store()
            .admin_access_keys()?
            .iter()
            .map(AdminKeySummary::from)
            .collect())
    }

    /// Deletes a key; signatures made with it are refused from then on.
    pub async fn delete(&self, key_id: &str) -> Result<(), ServiceError> {
        validate_key_id(key_id)?;
        super::submit(&self.node, DeleteAdminAccessKey { key_id: key_id.into() }).await?;
        tracing::info!(key_id, "admin access key deleted");
        Ok(())
    }

    /// The secret of `key_id` from the local state, `None` for an unknown
    /// key: the SigV4 verifier's lookup. Local on purpose (no read
    /// barrier): a signed call costs no Raft round trip, as sign-in does
    /// not, and a key deleted a moment ago on another node is refused once
    /// this node applies the deletion.
    pub fn secret_for(&self, key_id: &str) -> Result<Option<String>, ServiceError> {
        if validate_key_id(key_id).is_err() {
            return Ok(None);
        }
        let Some(key) = self.node.store().admin_access_key(key_id)? else {
            return Ok(None);
        };
        let plain = self
            .sealing()?
            .open_bytes(&secret_context(key_id), &key.secret)
            .ok_or_else(|| {
                ServiceError::internal(
                    "an admin access key does not open with this node's sealing key; every node needs the cluster's key",
                )
            })?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| ServiceError::internal("a sealed admin access key is not UTF-8"))
    }
}

/// `AKIA` and [`KEY_ID_RANDOM_CHARS`] random characters of `A-Z 0-9`.
pub fn random_key_id() -> String {
    const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut id = String::from(KEY_ID_PREFIX);
    while id.len() < KEY_ID_PREFIX.len() + KEY_ID_RANDOM_CHARS {
        // Bytes below 252 (= 7 * 36) map onto the alphabet without bias.
        for b in crate::clock::random_bytes::<32>() {
            if b < 252 && id.len() < KEY_ID_PREFIX.len() + KEY_ID_RANDOM_CHARS {
                id.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    id
}

/// [`SECRET_CHARS`] random characters of the base64 alphabet, like AWS's
/// secrets (240 bits).
pub fn random_secret() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    crate::clock::random_bytes::<SECRET_CHARS>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_and_secrets_are_valid_and_distinct() {
        let id = random_key_id();
        assert!(id.starts_with("AKIA") && id.len() == 20, "{id}");
        assert!(validate_key_id(&id).is_ok());
        assert_ne!(id, random_key_id());
        let secret = random_secret();
        assert_eq!(secret.len(), SECRET_CHARS);
        assert!(validate_secret(&secret).is_ok());
        assert_ne!(secret, random_secret());
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_key_id() {
        let key = SealingKey::from_bytes([9; 32]);
        let sealed = key.seal_bytes(&secret_context("AKIA0000000000000001"), b"s3cret", [1; 12]);
        assert_eq!(
            key.open_bytes(&secret_context("AKIA0000000000000001"), &sealed)
                .as_deref(),
            Some(&b"s3cret"[..])
        );
        assert_eq!(key.open_bytes(&secret_context("AKIA0000000000000002"), &sealed), None);
        assert_eq!(
            SealingKey::from_bytes([8; 32]).open_bytes(&secret_context("AKIA0000000000000001"), &sealed),
            None
        );
    }
}
