//! Typed reads of MFA state: a pool's MFA setting, its sign-in policy
//! (`USER_AUTH` first factors) and a user's MFA state;
//! shared by `apply` and the read paths.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::mfa::{PoolMfaConfig, PoolMfaConfigV1, UserMfa};
use crate::model::passwordless::SignInPolicy;

/// `pool_id | 0 | sub`: the key of a user's MFA state.
pub fn user_mfa_key(pool_id: &str, sub: &str) -> Vec<u8> {
    pool_key(pool_id, sub.as_bytes())
}

/// Decodes a stored MFA setting, written by this release or by the first
/// MFA release ([`PoolMfaConfigV1`], without message templates).
pub fn decode_pool_mfa(bytes: &[u8]) -> Result<PoolMfaConfig, codec::CodecError> {
    match codec::decode::<PoolMfaConfig>(bytes) {
        Ok(c) => Ok(c),
        Err(e) => codec::decode::<PoolMfaConfigV1>(bytes).map(Into::into).map_err(|_| e),
    }
}

impl Store {
    /// A pool's MFA setting; the default (OFF) when it was never set.
    pub fn pool_mfa(&self, pool_id: &str) -> Result<PoolMfaConfig, StoreError> {
        match self.sm_get(Table::PoolMfa, pool_id.as_bytes())? {
            Some(v) => Ok(decode_pool_mfa(&v)?),
            None => Ok(PoolMfaConfig::default()),
        }
    }

    /// A pool's `SignInPolicy`; the default (`PASSWORD` only) when it was
    /// never set.
    pub fn pool_sign_in(&self, pool_id: &str) -> Result<SignInPolicy, StoreError> {
        match self.sm_get(Table::PoolSignIn, pool_id.as_bytes())? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(SignInPolicy::default()),
        }
    }

    /// A user's MFA state, if the user ever set any up.
    pub fn user_mfa(&self, pool_id: &str, sub: &str) -> Result<Option<UserMfa>, StoreError> {
        match self.sm_get(Table::UserMfa, &user_mfa_key(pool_id, sub))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mfa::MfaConfiguration;

    #[test]
    fn first_release_settings_still_decode() {
        let old = PoolMfaConfigV1 {
            mfa_configuration: MfaConfiguration::Optional,
            software_token_enabled: true,
            sms_enabled: false,
            email_enabled: false,
            session_validity_secs: 180,
            modified_at: 7,
        };
        let bytes = codec::encode(&old).unwrap();
        let read = decode_pool_mfa(&bytes).unwrap();
        assert_eq!(read.mfa_configuration, MfaConfiguration::Optional);
        assert!(read.software_token_enabled);
        assert_eq!(read.modified_at, 7);
        let new = PoolMfaConfig {
            email_enabled: true,
            email_subject: "s".into(),
            ..PoolMfaConfig::default()
        };
        assert_eq!(decode_pool_mfa(&codec::encode(&new).unwrap()).unwrap(), new);
    }
}
