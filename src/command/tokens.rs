//! Apply logic of token revocation and signing-key commands.

use super::{not_found, Outcome};
use crate::model::cluster::SigningKeyRecord;
use crate::store::auth_state::KEY_ROTATION_KEY;
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

pub(super) fn global_sign_out(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    at: i64,
) -> Result<Outcome, StoreError> {
    let Some(mut user) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    user.tokens_revoked_before_ms = user.tokens_revoked_before_ms.max(at);
    batch.put(Table::Users, &pool_key(pool_id, sub.as_bytes()), &codec::encode(&user)?)?;
    Ok(Outcome::User(user))
}

pub(super) fn revoke(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    origin_jti: &str,
    expires_at: i64,
) -> Result<Outcome, StoreError> {
    if store.pool(pool_id)?.is_none() {
        return Ok(not_found("user pool", pool_id));
    }
    batch.put(
        Table::RevokedTokens,
        &pool_key(pool_id, origin_jti.as_bytes()),
        &codec::encode(&expires_at)?,
    )?;
    Ok(Outcome::Done)
}

pub(super) fn register_key(
    store: &Store,
    batch: &mut SmBatch<'_>,
    rec: &SigningKeyRecord,
) -> Result<Outcome, StoreError> {
    if store.sm_get(Table::SigningKeys, rec.kid.as_bytes())?.is_none() {
        batch.put(Table::SigningKeys, rec.kid.as_bytes(), &codec::encode(rec)?)?;
    }
    Ok(Outcome::Done)
}

pub(super) fn retire_key(store: &Store, batch: &mut SmBatch<'_>, kid: &str, at: i64) -> Result<Outcome, StoreError> {
    let Some(bytes) = store.sm_get(Table::SigningKeys, kid.as_bytes())? else {
        return Ok(not_found("signing key", kid));
    };
    let mut rec: SigningKeyRecord = codec::decode(&bytes)?;
    if rec.retired_at.is_none() {
        rec.retired_at = Some(at);
        batch.put(Table::SigningKeys, kid.as_bytes(), &codec::encode(&rec)?)?;
    }
    Ok(Outcome::Done)
}

pub(super) fn request_rotation(store: &Store, batch: &mut SmBatch<'_>, at: i64) -> Result<Outcome, StoreError> {
    let current = store.key_rotation_requested_at()?.unwrap_or(i64::MIN);
    batch.put(Table::Cluster, KEY_ROTATION_KEY, &codec::encode(&current.max(at))?)?;
    Ok(Outcome::Done)
}
