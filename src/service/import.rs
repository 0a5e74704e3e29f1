//! `AdminImportUsers`: bulk creation of users with their attributes,
//! groups, verification flags, status and password: one shared password
//! (hashed once for the call) or each user's existing hash in a format
//! another system exported (`auth::foreign_hash`), which is stored as it
//! is and replaced by the pool's argon2id at the first sign-in
//! (`flows::rehash`). Hashes are parsed and their costs bounded here, never
//! recomputed, so an import of bcrypt users costs no hashing at all.
//!
//! Every user is checked on its own: one that is malformed is reported
//! with the reason and the rest go in, in one replicated
//! `ImportUserRecords` entry per call (at most 1,000 users).

use std::collections::BTreeMap;

use super::directory::{DirectoryService, MAX_IMPORT};
use super::{admin_event, submit_audited, Origin, ServiceError};
use crate::auth::foreign_hash;
use crate::command::{ImportUserRecords, ImportedUser};
use crate::model::auth_event::AuthEventType;
use crate::model::group::{validate_group_name, MAX_GROUPS_PER_USER};
use crate::model::pool::UserPool;
use crate::model::user::{validate_new_attributes, validate_username_for_pool, User, UserStatus};

/// One user to import.
#[derive(Debug, Clone, Default)]
pub struct ImportUser {
    /// The username to create.
    pub username: String,
    /// Its attributes, validated against the pool schema.
    pub attributes: BTreeMap<String, String>,
    /// An existing password hash (any format `foreign_hash` accepts).
    pub password_hash: Option<String>,
    /// Groups it joins (created when missing).
    pub groups: Vec<String>,
    /// Whether its email is verified; `None`: the call's `mark_verified`.
    pub email_verified: Option<bool>,
    /// Whether its phone number is verified; `None`: likewise.
    pub phone_number_verified: Option<bool>,
    /// `None`: enabled.
    pub enabled: Option<bool>,
    /// Cognito's status name; `None`: `CONFIRMED` with a password, else
    /// `RESET_REQUIRED`.
    pub status: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportResult {
    /// Users created.
    pub imported: u32,
    /// `(username, reason)` of each user not created.
    pub failures: Vec<(String, String)>,
}

/// A user checked against the pool, ready to be made a record.
struct Checked {
    user: ImportUser,
    hash: Option<String>,
    status: UserStatus,
    email_verified: bool,
    phone_number_verified: bool,
}

/// The statuses an import may set.
fn status_of(name: &str) -> Result<UserStatus, String> {
    Ok(match name {
        "CONFIRMED" => UserStatus::Confirmed,
        "UNCONFIRMED" => UserStatus::Unconfirmed,
        "FORCE_CHANGE_PASSWORD" => UserStatus::ForceChangePassword,
        "RESET_REQUIRED" => UserStatus::ResetRequired,
        other => {
            return Err(format!(
                "user_status {other:?}: expected CONFIRMED, UNCONFIRMED, FORCE_CHANGE_PASSWORD or RESET_REQUIRED"
            ))
        }
    })
}

/// Checks one user; the reason is for a person and names the field.
fn check(pool: &UserPool, mut u: ImportUser, shared: Option<&str>, mark_verified: bool) -> Result<Checked, String> {
    validate_username_for_pool(&pool.settings, &u.username).map_err(|e| e.to_string())?;
    validate_new_attributes(&pool.settings, &u.attributes).map_err(|e| e.to_string())?;
    let hash = match u.password_hash.take().filter(|h| !h.is_empty()) {
        Some(h) => {
            foreign_hash::check_import(&h).map_err(|e| format!("password_hash: {e}"))?;
            Some(h)
        }
        None => shared.map(str::to_string),
    };
    let status = match u.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => status_of(s)?,
        None if hash.is_some() => UserStatus::Confirmed,
        None => UserStatus::ResetRequired,
    };
    if hash.is_none() && status != UserStatus::ResetRequired {
        return Err(format!(
            "user_status {} needs a password_hash (or the call's password)",
            status.as_cognito()
        ));
    }
    if u.groups.len() > MAX_GROUPS_PER_USER {
        return Err(format!("groups: at most {MAX_GROUPS_PER_USER}"));
    }
    for g in &u.groups {
        validate_group_name(g).map_err(|e| format!("groups: {g:?}: {e}"))?;
    }
    u.groups.sort();
    u.groups.dedup();
    let flag = |given: Option<bool>, attribute: &str| -> Result<bool, String> {
        let has = u.attributes.contains_key(attribute);
        match given {
            Some(true) if !has => Err(format!("{attribute}_verified is true but there is no {attribute}")),
            Some(v) => Ok(v),
            None => Ok(mark_verified && has),
        }
    };
    let email_verified = flag(u.email_verified, "email")?;
    let phone_number_verified = flag(u.phone_number_verified, "phone_number")?;
    Ok(Checked {
        user: u,
        hash,
        status,
        email_verified,
        phone_number_verified,
    })
}

impl DirectoryService {
    /// `AdminImportUsers`: validates every user, hashes the shared
    /// `password` (if any) once for the call, keeps each user's own hash
    /// as given, and creates them with their groups in one replicated
    /// command.
    pub async fn import(
        &self,
        pool_id: &str,
        users: Vec<ImportUser>,
        password: &str,
        mark_verified: bool,
        origin: &Origin,
    ) -> Result<ImportResult, ServiceError> {
        if users.is_empty() || users.len() > MAX_IMPORT {
            return Err(ServiceError::invalid(format!("users: 1 to {MAX_IMPORT} per call")));
        }
        let pool = super::pools::existing_pool(&self.node, pool_id).await?;
        let shared = if password.is_empty() {
            None
        } else {
            pool.settings.password_policy.check(password).map_err(|e| {
                ServiceError::invalid_password(format!("Password does not conform to policy: {}", e.reason))
            })?;
            let phc = self
                .hasher
                .hash(password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
                .await?;
            Some(phc)
        };
        let mut result = ImportResult::default();
        let now = crate::clock::now_millis();
        let mut records = Vec::with_capacity(users.len());
        for u in users {
            let username = u.username.clone();
            match check(&pool, u, shared.as_deref(), mark_verified) {
                Ok(c) => records.push(record(&pool, c, now)),
                Err(reason) => result.failures.push((username, reason)),
            }
        }
        if records.is_empty() {
            return Ok(result);
        }
        let n = records.len();
        let event = admin_event(
            &pool.id,
            AuthEventType::AdminAction,
            origin,
            &format!("AdminImportUsers: {n} users submitted"),
        );
        let cmd = ImportUserRecords {
            pool_id: pool.id.clone(),
            users: records,
            now,
        };
        let report = submit_audited(&self.node, cmd, event).await?;
        result.imported = report.imported;
        result.failures.extend(report.failures);
        Ok(result)
    }
}

/// The record of a checked user, with a fresh sub.
fn record(pool: &UserPool, c: Checked, now: i64) -> ImportedUser {
    let Checked {
        user,
        hash,
        status,
        email_verified,
        phone_number_verified,
    } = c;
    ImportedUser {
        user: User {
            pool_id: pool.id.clone(),
            sub: crate::clock::new_uuid().to_string(),
            username: user.username,
            attributes: user.attributes,
            status,
            enabled: user.enabled.unwrap_or(true),
            password_phc: hash,
            email_verified,
            phone_number_verified,
            created_at: now,
            modified_at: now,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: BTreeMap::new(),
        },
        groups: user.groups,
    }
}
