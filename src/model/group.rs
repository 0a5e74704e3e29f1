//! Groups of a user pool: named sets of users with a precedence, an
//! optional role reference (for identity pools) and the permission strings
//! their members hold.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Longest group name (Cognito: 128).
pub const MAX_GROUP_NAME_CHARS: usize = 128;
/// Longest description (Cognito: 2048).
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Longest role reference (Cognito's RoleArn: 2048).
pub const MAX_ROLE_CHARS: usize = 2048;
/// Longest permission string.
pub const MAX_PERMISSION_CHARS: usize = 128;
/// Most permissions one group grants: they all travel in every member's
/// access token, so the bound keeps tokens small.
pub const MAX_PERMISSIONS: usize = 100;
/// Most groups a user belongs to (Cognito: 100). Bounds token size and the
/// work of minting one.
pub const MAX_GROUPS_PER_USER: usize = 100;
/// Most groups in a pool (Cognito: 10,000).
pub const MAX_GROUPS_PER_POOL: usize = 10_000;

/// A group as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The pool the group belongs to.
    pub pool_id: String,
    /// Unique within the pool; at most [`MAX_GROUP_NAME_CHARS`].
    pub name: String,
    /// Free text for admins; empty when unset.
    pub description: String,
    /// Empty when unset.
    pub role_arn: String,
    /// Lower wins when a user's groups disagree; `None` ranks last.
    pub precedence: Option<i32>,
    /// Sorted and without duplicates.
    pub permissions: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the latest update.
    pub modified_at: i64,
}

/// The order of `cognito:groups`: precedence (unset last), then name.
pub fn precedence_order(a: &Group, b: &Group) -> Ordering {
    let rank = |g: &Group| g.precedence.map_or((1, 0), |p| (0, p));
    rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name))
}

/// Cognito's rule: 1..=128 letters, marks, symbols, digits or punctuation;
/// no whitespace or control characters (and so no zero byte, which the
/// store's keys rely on).
pub fn validate_group_name(name: &str) -> Result<(), ValidationError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_GROUP_NAME_CHARS {
        return Err(ValidationError::new(
            "group_name",
            format!("must be 1 to {MAX_GROUP_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            "group_name",
            format!("{name:?} contains spaces or control characters"),
        ));
    }
    Ok(())
}

/// A permission is `resource:action`-like text: 1..=128 of letters,
/// digits and `: _ - . / *`.
pub fn validate_permission(p: &str) -> Result<(), ValidationError> {
    let ok = !p.is_empty()
        && p.len() <= MAX_PERMISSION_CHARS
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.' | '/' | '*'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "permissions",
            format!(
                "{:?} must be 1 to {MAX_PERMISSION_CHARS} characters of letters, digits and : _ - . / *",
                p.chars().take(140).collect::<String>()
            ),
        ))
    }
}

/// Validates and normalizes (sorts, dedups) a permission list.
pub fn normalize_permissions(list: &[String]) -> Result<Vec<String>, ValidationError> {
    if list.len() > MAX_PERMISSIONS {
        return Err(ValidationError::new(
            "permissions",
            format!("at most {MAX_PERMISSIONS} per group"),
        ));
    }
    for p in list {
        validate_permission(p)?;
    }
    let mut out = list.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Checks description and role reference lengths.
pub fn validate_details(description: &str, role_arn: &str) -> Result<(), ValidationError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ValidationError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if role_arn.chars().count() > MAX_ROLE_CHARS || role_arn.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            "role_arn",
            format!("at most {MAX_ROLE_CHARS} characters, no control characters"),
        ));
    }
    Ok(())
}

/// Whether `held` (a user's permissions) grants `wanted`. A held `*`
/// suffix matches any completion (`course:*` grants `course:read`).
pub fn grants(held: &str, wanted: &str) -> bool {
    match held.strip_suffix('*') {
        Some(prefix) => wanted.starts_with(prefix),
        None => held == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str, p: Option<i32>) -> Group {
        Group {
            pool_id: "p".into(),
            name: name.into(),
            description: String::new(),
            role_arn: String::new(),
            precedence: p,
            permissions: vec![],
            created_at: 0,
            modified_at: 0,
        }
    }

    #[test]
    fn names_and_permissions() {
        assert!(validate_group_name("teachers").is_ok());
        assert!(validate_group_name("plan:advanced").is_ok());
        assert!(validate_group_name("").is_err());
        assert!(validate_group_name("two words").is_err());
        assert!(validate_group_name(&"g".repeat(129)).is_err());
        assert!(validate_group_name("a\0b").is_err());
        assert_eq!(
            normalize_permissions(&["b:r".into(), "a:w".into(), "b:r".into()]).unwrap(),
            vec!["a:w".to_string(), "b:r".to_string()]
        );
        assert!(normalize_permissions(&["has space".into()]).is_err());
        assert!(normalize_permissions(&["x".repeat(129)]).is_err());
        assert!(grants("course:*", "course:read"));
        assert!(!grants("course:read", "course:readx"));
        assert!(grants("*", "anything"));
    }

    #[test]
    fn precedence_orders_unset_last_then_by_name() {
        let mut v = [g("z", None), g("b", Some(5)), g("a", Some(5)), g("c", Some(1))];
        v.sort_by(precedence_order);
        let names: Vec<_> = v.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b", "z"]);
    }
}
