//! Conversions of `AdminImportUsers` and `AdminExportUsers` (issue 12):
//! bounds on each imported user's fields at the edge, and the wire form
//! of an exported user.

use super::convert::attributes;
use crate::auth::foreign_hash::MAX_HASH_LEN;
use crate::model::group::MAX_GROUPS_PER_USER;
use crate::proto::{AttributeValue, ExportedUserType, ImportUserType};
use crate::service::export::ExportedUser;
use crate::service::import::ImportUser;
use crate::service::ServiceError;

/// One imported user from the wire. Sizes are checked here (a request
/// that breaks them is refused whole); what the values mean is checked
/// per user by the service, which reports a bad user and imports the rest.
pub fn import_user(i: usize, u: ImportUserType) -> Result<ImportUser, ServiceError> {
    if u.password_hash.len() > MAX_HASH_LEN {
        return Err(ServiceError::invalid(format!(
            "users[{i}].password_hash: at most {MAX_HASH_LEN} characters"
        )));
    }
    if u.groups.len() > MAX_GROUPS_PER_USER {
        return Err(ServiceError::invalid(format!(
            "users[{i}].groups: at most {MAX_GROUPS_PER_USER}"
        )));
    }
    if u.user_status.len() > 32 {
        return Err(ServiceError::invalid(format!("users[{i}].user_status: unknown status")));
    }
    Ok(ImportUser {
        username: u.username,
        attributes: attributes("users.attributes", &u.attributes)?,
        password_hash: Some(u.password_hash).filter(|h| !h.is_empty()),
        groups: u.groups,
        email_verified: u.email_verified,
        phone_number_verified: u.phone_number_verified,
        enabled: u.enabled,
        status: Some(u.user_status).filter(|s| !s.is_empty()),
    })
}

/// The wire form of an exported user.
pub fn exported_user_type(e: ExportedUser) -> ExportedUserType {
    let ExportedUser { user, groups, mfa } = e;
    ExportedUserType {
        username: user.username,
        attributes: user
            .attributes
            .into_iter()
            .map(|(name, value)| AttributeValue { name, value })
            .collect(),
        user_status: user.status.as_cognito().into(),
        enabled: user.enabled,
        groups,
        email_verified: user.email_verified,
        phone_number_verified: user.phone_number_verified,
        password_hash: user.password_phc.unwrap_or_default(),
        user_mfa_setting_list: mfa.setting_list,
        preferred_mfa_setting: mfa.preferred.unwrap_or_default(),
        sub: user.sub,
        user_create_date: user.created_at,
    }
}
