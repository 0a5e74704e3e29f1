//! Reads of passkey state: a pool's WebAuthn setting, a user's
//! credentials and the registration waiting for its completion.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::webauthn::{PendingRegistration, WebAuthnConfig, WebAuthnCredential, MAX_CREDENTIALS_PER_USER};

/// `pool_id | 0 | sub | 0`: the prefix of a user's credentials.
pub fn user_credentials_prefix(pool_id: &str, sub: &str) -> Vec<u8> {
    let mut rest = sub.as_bytes().to_vec();
    rest.push(0);
    pool_key(pool_id, &rest)
}

/// The key of one credential of a user.
pub fn credential_key(pool_id: &str, sub: &str, credential_id: &str) -> Vec<u8> {
    let mut k = user_credentials_prefix(pool_id, sub);
    k.extend_from_slice(credential_id.as_bytes());
    k
}

/// The key of a user's pending registration.
pub fn pending_key(pool_id: &str, sub: &str) -> Vec<u8> {
    pool_key(pool_id, sub.as_bytes())
}

/// The key of a spent challenge: ordered by expiry, then id.
pub fn spent_challenge_key(pool_id: &str, expires_at: i64, id: &str) -> Vec<u8> {
    let mut rest = u64::try_from(expires_at).unwrap_or(0).to_be_bytes().to_vec();
    rest.extend_from_slice(id.as_bytes());
    pool_key(pool_id, &rest)
}

impl Store {
    /// A pool's passkey setting (the default when none was set).
    pub fn pool_web_authn(&self, pool_id: &str) -> Result<WebAuthnConfig, StoreError> {
        match self.sm_get(Table::PoolWebAuthn, pool_id.as_bytes())? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(WebAuthnConfig::default()),
        }
    }

    /// Every credential of a user (at most [`MAX_CREDENTIALS_PER_USER`]),
    /// in credential-id order.
    pub fn web_authn_credentials(&self, pool_id: &str, sub: &str) -> Result<Vec<WebAuthnCredential>, StoreError> {
        let prefix = user_credentials_prefix(pool_id, sub);
        self.sm_scan_prefix(Table::WebAuthnCredentials, &prefix, None, MAX_CREDENTIALS_PER_USER + 1)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// One credential of a user.
    pub fn web_authn_credential(
        &self,
        pool_id: &str,
        sub: &str,
        credential_id: &str,
    ) -> Result<Option<WebAuthnCredential>, StoreError> {
        match self.sm_get(Table::WebAuthnCredentials, &credential_key(pool_id, sub, credential_id))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Whether a user has at least one credential.
    pub fn has_web_authn_credential(&self, pool_id: &str, sub: &str) -> Result<bool, StoreError> {
        let prefix = user_credentials_prefix(pool_id, sub);
        Ok(!self
            .sm_scan_prefix(Table::WebAuthnCredentials, &prefix, None, 1)?
            .is_empty())
    }

    /// A user's registration waiting for its completion, if any.
    pub fn web_authn_pending(&self, pool_id: &str, sub: &str) -> Result<Option<PendingRegistration>, StoreError> {
        match self.sm_get(Table::WebAuthnPending, &pending_key(pool_id, sub))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Whether a sign-in challenge was spent.
    pub fn challenge_spent(&self, pool_id: &str, expires_at: i64, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .sm_get(Table::SpentChallenges, &spent_challenge_key(pool_id, expires_at, id))?
            .is_some())
    }
}
