//! User pools: the first replicated entity.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// The region of a node that configures none: the prefix of its pool and
/// identity ids, and the region its SigV4 signatures must be scoped to.
pub const POOL_ID_PREFIX: &str = "local";

/// A user pool as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPool {
    /// Generated id, `{POOL_ID_PREFIX}_...`; never changes.
    pub id: String,
    /// Display name chosen by the admin.
    pub name: String,
    /// Unix milliseconds.
    pub creation_date: i64,
    /// Unix milliseconds of the latest update.
    pub last_modified_date: i64,
    /// While set, `DeleteUserPool` is refused.
    pub deletion_protection: bool,
    /// Policies, aliases, schema, token validity, hashing cost.
    pub settings: super::pool_settings::PoolSettings,
}

/// Cognito's pool-name rule: 1..=128 characters of `[\w\s+=,.@-]`.
pub fn validate_pool_name(name: &str) -> Result<(), ValidationError> {
    let len = name.chars().count();
    if len == 0 || len > 128 {
        return Err(ValidationError::new("pool_name", "must be 1 to 128 characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || c.is_whitespace() || "_+=,.@-".contains(*c)))
    {
        return Err(ValidationError::new(
            "pool_name",
            format!("character {bad:?} is not allowed; use letters, digits, spaces and _+=,.@-"),
        ));
    }
    if name.trim().is_empty() {
        return Err(ValidationError::new("pool_name", "must not be blank"));
    }
    Ok(())
}

/// Cognito's pool-id rule: `[\w-]+_[0-9a-zA-Z]+`, at most 55 characters.
pub fn validate_pool_id(id: &str) -> Result<(), ValidationError> {
    let shape = || {
        ValidationError::new(
            "user_pool_id",
            format!("{id:?} is not a user pool id like \"local_AbC123xyz\""),
        )
    };
    if id.is_empty() || id.len() > 55 {
        return Err(shape());
    }
    let (prefix, suffix) = id.rsplit_once('_').ok_or_else(shape)?;
    let prefix_ok = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let suffix_ok = !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_alphanumeric());
    if prefix_ok && suffix_ok {
        Ok(())
    } else {
        Err(shape())
    }
}

/// Builds a pool id, `{region}_` and 9 random alphanumerics chosen by the
/// proposer, as Cognito's ids lead with their region.
pub fn pool_id_from_random(region: &str, random: &[u8; 9]) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let suffix: String = random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{region}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names() {
        assert!(validate_pool_name("My App users").is_ok());
        assert!(validate_pool_name("a.b@c-d_e+f=g,h").is_ok());
        assert!(validate_pool_name("").is_err());
        assert!(validate_pool_name("   ").is_err());
        assert!(validate_pool_name(&"x".repeat(129)).is_err());
        assert!(validate_pool_name("bad/name").is_err());
    }

    #[test]
    fn pool_ids() {
        let id = pool_id_from_random(POOL_ID_PREFIX, &[0, 1, 2, 3, 4, 5, 6, 7, 200]);
        assert!(validate_pool_id(&id).is_ok(), "{id}");
        assert!(validate_pool_id("us-east-1_AbC123").is_ok());
        assert!(validate_pool_id("nounderscore").is_err());
        assert!(validate_pool_id("local_").is_err());
        assert!(validate_pool_id("local_abc!").is_err());
        assert!(validate_pool_id("../etc_x").is_err());
    }
}
