//! Resource servers of a user pool (Cognito's `CreateResourceServer`): the
//! APIs that accept the pool's access tokens, each naming the custom
//! scopes (`identifier/scope`) an app client may be allowed and a
//! server-to-server token may carry.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most resource servers in one pool (Cognito's quota is 25).
pub const MAX_RESOURCE_SERVERS_PER_POOL: usize = 25;
/// Most scopes of one resource server (Cognito's quota is 100).
pub const MAX_SCOPES_PER_SERVER: usize = 100;
/// Longest identifier, name, scope name or description (Cognito: 256).
pub const MAX_TEXT: usize = 256;

/// One custom scope of a resource server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceServerScope {
    /// `ScopeName`: the part after `identifier/`.
    pub name: String,
    /// `ScopeDescription`.
    pub description: String,
}

/// A resource server as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceServer {
    /// The user pool.
    pub pool_id: String,
    /// `Identifier`, usually the API's URL; the prefix of its scopes.
    pub identifier: String,
    /// `Name`, for people.
    pub name: String,
    /// Its custom scopes, in the order given.
    pub scopes: Vec<ResourceServerScope>,
}

impl ResourceServer {
    /// The full scope names (`identifier/name`) this server defines.
    pub fn full_scopes(&self) -> impl Iterator<Item = String> + '_ {
        self.scopes.iter().map(|s| format!("{}/{}", self.identifier, s.name))
    }

    /// Whether `scope` (`identifier/name`) is one of this server's.
    pub fn defines(&self, scope: &str) -> bool {
        scope
            .strip_prefix(self.identifier.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| self.scopes.iter().any(|s| s.name == name))
    }

    /// Checks every field against Cognito's rules; deterministic, so
    /// `apply` runs it on a peer's entry too.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_identifier(&self.identifier)?;
        let n = self.name.chars().count();
        if n == 0 || n > MAX_TEXT || self.name.trim().is_empty() {
            return Err(ValidationError::new(
                "name",
                format!("must be 1 to {MAX_TEXT} characters"),
            ));
        }
        if let Some(bad) = self
            .name
            .chars()
            .find(|c| !(c.is_alphanumeric() || c.is_whitespace() || "_+=,.@-".contains(*c)))
        {
            return Err(ValidationError::new(
                "name",
                format!("character {bad:?} is not allowed; use letters, digits, spaces and _+=,.@-"),
            ));
        }
        if self.scopes.len() > MAX_SCOPES_PER_SERVER {
            return Err(ValidationError::new(
                "scopes",
                format!("at most {MAX_SCOPES_PER_SERVER} scopes per resource server"),
            ));
        }
        for (i, s) in self.scopes.iter().enumerate() {
            validate_scope_name(&s.name)?;
            let d = s.description.chars().count();
            if d == 0 || d > MAX_TEXT {
                return Err(ValidationError::new(
                    "scopes",
                    format!("scope {:?}: the description must be 1 to {MAX_TEXT} characters", s.name),
                ));
            }
            if self.scopes[..i].iter().any(|o| o.name == s.name) {
                return Err(ValidationError::new(
                    "scopes",
                    format!("scope {:?} is listed twice", s.name),
                ));
            }
        }
        if self.identifier.len() + 1 + self.scopes.iter().map(|s| s.name.len()).max().unwrap_or(0) > 2 * MAX_TEXT {
            return Err(ValidationError::new("scopes", "a full scope name is too long"));
        }
        Ok(())
    }
}

/// Cognito's identifier rule: 1..=256 printable ASCII characters without
/// space, `"` or `\` (`[\x21\x23-\x5B\x5D-\x7E]+`).
pub fn validate_identifier(identifier: &str) -> Result<(), ValidationError> {
    if identifier.is_empty() || identifier.len() > MAX_TEXT {
        return Err(ValidationError::new(
            "identifier",
            format!("must be 1 to {MAX_TEXT} characters, such as https://api.example.com"),
        ));
    }
    if let Some(bad) = identifier
        .chars()
        .find(|c| !matches!(*c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'))
    {
        return Err(ValidationError::new(
            "identifier",
            format!("character {bad:?} is not allowed; use printable ASCII without spaces, quotes or backslashes"),
        ));
    }
    Ok(())
}

/// Cognito's scope-name rule: 1..=256 printable ASCII characters without
/// space, `"`, `/` or `\` (`[\x21\x23-\x2E\x30-\x5B\x5D-\x7E]+`).
pub fn validate_scope_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_TEXT {
        return Err(ValidationError::new(
            "scopes",
            format!("a scope name must be 1 to {MAX_TEXT} characters"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !matches!(*c, '\x21' | '\x23'..='\x2e' | '\x30'..='\x5b' | '\x5d'..='\x7e'))
    {
        return Err(ValidationError::new(
            "scopes",
            format!("scope {name:?}: character {bad:?} is not allowed; use printable ASCII without spaces, quotes, slashes or backslashes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(identifier: &str, scopes: &[&str]) -> ResourceServer {
        ResourceServer {
            pool_id: "p".into(),
            identifier: identifier.into(),
            name: "Orders API".into(),
            scopes: scopes
                .iter()
                .map(|s| ResourceServerScope {
                    name: (*s).into(),
                    description: "d".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn rules_and_scope_names() {
        let s = server("https://orders.example.com", &["read", "write"]);
        assert!(s.validate().is_ok());
        assert!(s.defines("https://orders.example.com/read"));
        assert!(!s.defines("https://orders.example.com/delete"));
        assert!(!s.defines("https://orders.example.comread"));
        assert!(!s.defines("https://orders.example.com/read/x"));
        assert_eq!(
            s.full_scopes().collect::<Vec<_>>(),
            ["https://orders.example.com/read", "https://orders.example.com/write"]
        );
        assert!(server("has space", &[]).validate().is_err());
        assert!(server("", &[]).validate().is_err());
        assert!(server("api", &["a/b"]).validate().is_err());
        assert!(server("api", &["dup", "dup"]).validate().is_err());
        assert!(server("api", &[""]).validate().is_err());
        let many: Vec<String> = (0..=MAX_SCOPES_PER_SERVER).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(server("api", &refs).validate().is_err());
    }
}
