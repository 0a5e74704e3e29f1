//! Identities of an identity pool: the unique id that every login of one
//! person maps to, and the logins linked to it.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most logins linked to one identity.
pub const MAX_LOGINS: usize = 10;
/// Longest subject (a provider's `sub`, a developer's user identifier).
pub const MAX_SUBJECT_CHARS: usize = 1024;

/// One login linked to an identity: a provider and the subject it vouches for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Login {
    /// The provider name (without scheme), as a key of `logins`.
    pub provider: String,
    /// The subject at that provider (a user pool's `sub`, an OIDC `sub`,
    /// a developer user identifier).
    pub subject: String,
}

impl Login {
    /// Checks the bounds of a login before it reaches a command.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let n = self.provider.chars().count();
        if n == 0 || n > 128 || self.provider.contains('\0') {
            return Err(ValidationError::new("logins", "provider names are 1 to 128 characters"));
        }
        let n = self.subject.chars().count();
        if n == 0 || n > MAX_SUBJECT_CHARS || self.subject.contains('\0') {
            return Err(ValidationError::new(
                "logins",
                format!("subjects are 1 to {MAX_SUBJECT_CHARS} characters without NUL"),
            ));
        }
        Ok(())
    }
}

/// An identity as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `local:<uuid>`, unique in the cluster.
    pub id: String,
    /// The identity pool it belongs to.
    pub pool_id: String,
    /// Linked logins, ordered; empty for a guest. At most one per provider.
    pub logins: Vec<Login>,
    /// Unix milliseconds.
    pub creation_date: i64,
    /// Unix milliseconds of the latest change.
    pub last_modified_date: i64,
    /// Set when the identity was merged into another: it is disabled, and
    /// callers that still hold its id are sent to the survivor.
    pub merged_into: Option<String>,
}

impl Identity {
    /// Whether no login is linked (a guest).
    pub fn is_guest(&self) -> bool {
        self.logins.is_empty()
    }

    /// The subject linked for `provider`, if any.
    pub fn subject_for(&self, provider: &str) -> Option<&str> {
        self.logins
            .iter()
            .find(|l| l.provider == provider)
            .map(|l| l.subject.as_str())
    }

    /// The distinct provider names of its logins, for `DescribeIdentity`.
    pub fn provider_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.logins.iter().map(|l| l.provider.clone()).collect();
        names.dedup();
        names
    }
}
