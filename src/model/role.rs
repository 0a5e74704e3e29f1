//! Roles: a name and a policy document (IAM's shape) that credentials of
//! an identity carry and that `Authorize` evaluates.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// The prefix of a role's canonical ARN; the name follows.
pub const ROLE_ARN_PREFIX: &str = "arn:tessera:iam:::role/";
/// Longest role name (IAM's bound).
pub const MAX_ROLE_NAME: usize = 64;
/// Longest role description (IAM's bound).
pub const MAX_DESCRIPTION: usize = 1000;

/// A role as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Unique name, `[\w+=,.@-]{1,64}`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The policy document in canonical JSON (validated when written).
    pub policy_document: String,
    /// Unix milliseconds.
    pub create_date: i64,
    /// Unix milliseconds of the latest change.
    pub last_modified_date: i64,
}

impl Role {
    /// `arn:tessera:iam:::role/{name}`.
    pub fn arn(&self) -> String {
        role_arn(&self.name)
    }
}

/// The canonical ARN of the role `name`.
pub fn role_arn(name: &str) -> String {
    format!("{ROLE_ARN_PREFIX}{name}")
}

/// The role name an ARN (or a bare name) refers to: whatever follows
/// `:role/`, so that `arn:aws:iam::123456789012:role/Teachers`, carried over
/// from AWS, names the role `Teachers`. A role path (`role/path/Name`)
/// keeps its last segment, as IAM names a role by it.
pub fn role_name_of(arn_or_name: &str) -> Result<&str, ValidationError> {
    let name = match arn_or_name.strip_prefix("arn:") {
        Some(rest) => {
            let (_, tail) = rest.split_once(":role/").ok_or_else(|| {
                ValidationError::new(
                    "role_arn",
                    format!("{arn_or_name:?} is not a role ARN like {ROLE_ARN_PREFIX}Name"),
                )
            })?;
            tail.rsplit('/').next().unwrap_or(tail)
        }
        None => arn_or_name,
    };
    validate_role_name("role_arn", name)?;
    Ok(name)
}

/// IAM's role-name rule: 1..=64 of `[\w+=,.@-]`.
pub fn validate_role_name(field: &'static str, name: &str) -> Result<(), ValidationError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_ROLE_NAME {
        return Err(ValidationError::new(
            field,
            format!("role names are 1 to {MAX_ROLE_NAME} characters"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c)))
    {
        return Err(ValidationError::new(
            field,
            format!("character {bad:?} is not allowed in a role name; use letters, digits and _+=,.@-"),
        ));
    }
    Ok(())
}

/// Checks a description's bound.
pub fn validate_description(description: &str) -> Result<(), ValidationError> {
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ValidationError::new(
            "description",
            format!("at most {MAX_DESCRIPTION} characters, no control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_from_aws_resolve_by_name() {
        assert_eq!(
            role_name_of("arn:aws:iam::123456789012:role/Teachers").unwrap(),
            "Teachers"
        );
        assert_eq!(role_name_of("arn:tessera:iam:::role/Students").unwrap(), "Students");
        assert_eq!(role_name_of("arn:aws:iam::1:role/app/Readers").unwrap(), "Readers");
        assert_eq!(role_name_of("Plain").unwrap(), "Plain");
        assert!(role_name_of("arn:aws:s3:::bucket").is_err());
        assert!(role_name_of("bad name").is_err());
        assert!(role_name_of("").is_err());
        assert_eq!(role_arn("Teachers"), "arn:tessera:iam:::role/Teachers");
    }
}
