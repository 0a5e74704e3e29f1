//! The JSONL user format of `tessera user import` and `tessera user
//! export`: one JSON object per line, which `export` writes and `import`
//! reads back unchanged.
//!
//! ```text
//! {"username":"ann","attributes":{"email":"ann@example.com","name":"Ann"},
//!  "groups":["staff"],"password_hash":"$2b$10$...","email_verified":true,
//!  "phone_number_verified":false,"enabled":true,"status":"CONFIRMED",
//!  "mfa":{"enabled":["SMS_MFA"],"preferred":"SMS_MFA"}}
//! ```
//!
//! (on one line). Only `username` is required. `password_hash` takes any
//! format the server accepts (bcrypt, scrypt, PBKDF2, argon2, Firebase
//! scrypt). `mfa` is what `export` reports of the user's MFA settings; an
//! import reads it but does not restore it (an exported software token has
//! no secret, so the user enrolls again). An unknown field is refused, so
//! that a misspelt one is not silently dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto::{AttributeValue, ExportedUserType, ImportUserType};

/// One user of a JSONL file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The username.
    pub username: String,
    /// Attributes other than `sub` and the verification flags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Group names; a group the pool lacks is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// An existing password hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Whether the email is verified (absent: `--mark-verified` decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Whether the phone number is verified (likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
    /// Absent: enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Cognito's status name (absent: CONFIRMED with a password, else
    /// RESET_REQUIRED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// MFA settings as exported; not restored by an import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaRecord>,
}

/// A user's MFA settings, without secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaRecord {
    /// Cognito's `UserMFASettingList` (`SOFTWARE_TOKEN_MFA`, `SMS_MFA`, `EMAIL_OTP`).
    #[serde(default)]
    pub enabled: Vec<String>,
    /// Cognito's `PreferredMfaSetting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<String>,
}

impl UserRecord {
    /// Parses one line; the reason is for a person (serde's, with the column).
    pub fn parse(line: &str) -> Result<UserRecord, String> {
        let r: UserRecord = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if r.username.is_empty() {
            return Err("empty username".into());
        }
        Ok(r)
    }

    /// What `AdminImportUsers` takes.
    pub fn into_import(self) -> ImportUserType {
        ImportUserType {
            username: self.username,
            attributes: self
                .attributes
                .into_iter()
                .map(|(name, value)| AttributeValue { name, value })
                .collect(),
            password_hash: self.password_hash.unwrap_or_default(),
            groups: self.groups,
            email_verified: self.email_verified,
            phone_number_verified: self.phone_number_verified,
            enabled: self.enabled,
            user_status: self.status.unwrap_or_default(),
        }
    }

    /// The record of an exported user.
    pub fn from_export(u: ExportedUserType) -> UserRecord {
        let mfa = (!u.user_mfa_setting_list.is_empty() || !u.preferred_mfa_setting.is_empty()).then(|| MfaRecord {
            enabled: u.user_mfa_setting_list,
            preferred: Some(u.preferred_mfa_setting).filter(|p| !p.is_empty()),
        });
        UserRecord {
            username: u.username,
            attributes: u.attributes.into_iter().map(|a| (a.name, a.value)).collect(),
            groups: u.groups,
            password_hash: Some(u.password_hash).filter(|h| !h.is_empty()),
            email_verified: Some(u.email_verified),
            phone_number_verified: Some(u.phone_number_verified),
            enabled: Some(u.enabled),
            status: Some(u.user_status),
            mfa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_unknown_fields_are_refused() {
        let line = r#"{"username":"ann","attributes":{"email":"a@x.io"},"groups":["g"],"password_hash":"$2b$04$x","email_verified":true,"status":"CONFIRMED","mfa":{"enabled":["SMS_MFA"],"preferred":"SMS_MFA"}}"#;
        let r = UserRecord::parse(line).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        let u = r.into_import();
        assert_eq!(
            (u.username.as_str(), u.groups.len(), u.email_verified),
            ("ann", 1, Some(true))
        );
        for (bad, why) in [
            (r#"{"username":"ann","pasword_hash":"x"}"#, "unknown field"),
            (r#"{"username":""}"#, "empty username"),
            (r#"{"attributes":{}}"#, "missing field"),
            ("not json", "expected"),
        ] {
            let err = UserRecord::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
