//! The claim sets of Cognito's id and access tokens, built from a user and
//! the context of a sign-in. Keeping Cognito's claim names means code
//! written against Cognito tokens keeps working.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::jwt::Claims;
use crate::model::user::User;

/// Everything about a sign-in that the claims need besides the user.
#[derive(Debug, Clone)]
pub struct TokenContext<'a> {
    /// `{public_url}/{pool_id}`.
    pub issuer: &'a str,
    /// The app client signing in: the id token's `aud` and the access token's `client_id`.
    pub client_id: &'a str,
    /// When the user authenticated (seconds); kept across refreshes.
    pub auth_time: i64,
    /// Now, in seconds.
    pub now: i64,
    /// Lifetime of the id token from `now`.
    pub id_token_secs: u32,
    /// Lifetime of the access token from `now`.
    pub access_token_secs: u32,
    /// Fresh ids of the two tokens, drawn while preparing.
    pub id_jti: &'a str,
    /// The access token's `jti` (`id_jti` is the id token's).
    pub access_jti: &'a str,
    /// Id of the refresh-token family these tokens descend from.
    pub origin_jti: &'a str,
    /// Group names in precedence order (`cognito:groups`).
    pub groups: &'a [String],
    /// The role ARNs of those groups that have one, in the same order
    /// (`cognito:roles`; the first is `cognito:preferred_role`).
    pub roles: &'a [String],
    /// The union of the groups' permissions, sorted; they join the access
    /// token's `scope`.
    pub permissions: &'a [String],
    /// Attributes the app client may read; `None` means all.
    pub readable: Option<&'a BTreeSet<String>>,
}

fn readable(ctx: &TokenContext<'_>, name: &str) -> bool {
    ctx.readable.is_none_or(|r| r.contains(name))
}

/// Claims of the id token.
pub fn id_token_claims(user: &User, ctx: &TokenContext<'_>) -> Claims {
    let mut c = Claims::new();
    c.insert("sub".into(), json!(user.sub));
    c.insert("aud".into(), json!(ctx.client_id));
    c.insert("iss".into(), json!(ctx.issuer));
    c.insert("token_use".into(), json!("id"));
    c.insert("auth_time".into(), json!(ctx.auth_time));
    c.insert("iat".into(), json!(ctx.now));
    c.insert("exp".into(), json!(ctx.now + i64::from(ctx.id_token_secs)));
    c.insert("jti".into(), json!(ctx.id_jti));
    c.insert("origin_jti".into(), json!(ctx.origin_jti));
    c.insert("cognito:username".into(), json!(user.username));
    if !ctx.groups.is_empty() {
        c.insert("cognito:groups".into(), json!(ctx.groups));
    }
    // As Cognito: the roles of the user's groups, and the one of the group
    // with the best precedence, which identity pools' Token mapping picks.
    if let Some(preferred) = ctx.roles.first() {
        c.insert("cognito:roles".into(), json!(ctx.roles));
        c.insert("cognito:preferred_role".into(), json!(preferred));
    }
    for (name, value) in &user.attributes {
        if readable(ctx, name) {
            // Custom attributes travel as strings, as Cognito sends them.
            c.insert(name.clone(), Value::String(value.clone()));
        }
    }
    if user.attributes.contains_key("email") && readable(ctx, "email_verified") {
        c.insert("email_verified".into(), json!(user.email_verified));
    }
    if user.attributes.contains_key("phone_number") && readable(ctx, "phone_number_verified") {
        c.insert("phone_number_verified".into(), json!(user.phone_number_verified));
    }
    c
}

/// The scope every access token grants: the user-pool API itself.
pub const USER_POOL_SCOPE: &str = "aws.cognito.signin.user.admin";

/// The access token's `scope`: [`USER_POOL_SCOPE`] and then the group
/// permissions, space-separated (RFC 6749 §3.3), so that ordinary OAuth
/// scope checks in resource servers work on them unchanged.
pub fn scope(permissions: &[String]) -> String {
    let mut out = USER_POOL_SCOPE.to_string();
    for p in permissions {
        out.push(' ');
        out.push_str(p);
    }
    out
}

/// Whether access-token `claims` grant `permission` through their `scope`;
/// a granted `x:*` covers every `x:...`.
pub fn scope_grants(claims: &Claims, permission: &str) -> bool {
    claims
        .get("scope")
        .and_then(Value::as_str)
        .is_some_and(|s| s.split(' ').any(|held| crate::model::group::grants(held, permission)))
}

/// Claims of the access token.
pub fn access_token_claims(user: &User, ctx: &TokenContext<'_>) -> Claims {
    let mut c = Claims::new();
    c.insert("sub".into(), json!(user.sub));
    c.insert("iss".into(), json!(ctx.issuer));
    c.insert("client_id".into(), json!(ctx.client_id));
    c.insert("token_use".into(), json!("access"));
    c.insert("scope".into(), json!(scope(ctx.permissions)));
    c.insert("auth_time".into(), json!(ctx.auth_time));
    c.insert("iat".into(), json!(ctx.now));
    c.insert("exp".into(), json!(ctx.now + i64::from(ctx.access_token_secs)));
    c.insert("jti".into(), json!(ctx.access_jti));
    c.insert("origin_jti".into(), json!(ctx.origin_jti));
    c.insert("username".into(), json!(user.username));
    if !ctx.groups.is_empty() {
        c.insert("cognito:groups".into(), json!(ctx.groups));
    }
    c
}

/// Claims no trigger may add, override or suppress: what makes a token
/// this cluster's, for this user, client and time. Group claims change
/// only through a group override; `cognito:*` as a whole is reserved.
pub const PROTECTED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "iat_ms",
    "nbf",
    "jti",
    "auth_time",
    "token_use",
    "origin_jti",
    "event_id",
    "client_id",
    "azp",
    "nonce",
    "at_hash",
    "acr",
    "amr",
    "username",
    "device_key",
    "scope",
    "identities",
];

/// Whether a trigger may not touch `claim`.
pub fn is_protected(claim: &str) -> bool {
    PROTECTED_CLAIMS.contains(&claim) || claim.starts_with("cognito:")
}

/// What `PreTokenGeneration` changes in the tokens about to be minted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimOverrides {
    /// Claims added to (or replacing ones in) the id token.
    pub id_add: serde_json::Map<String, Value>,
    /// Claims removed from the id token.
    pub id_suppress: Vec<String>,
    /// Claims added to (or replacing ones in) the access token (V2).
    pub access_add: serde_json::Map<String, Value>,
    /// Claims removed from the access token (V2).
    pub access_suppress: Vec<String>,
    /// Scopes added to the access token (V2).
    pub scopes_add: Vec<String>,
    /// Scopes removed from the access token (V2).
    pub scopes_suppress: Vec<String>,
    /// Replaces `cognito:groups` in both tokens; empty removes it.
    pub groups: Option<Vec<String>>,
    /// Replaces `cognito:roles`; empty removes it.
    pub roles: Option<Vec<String>>,
    /// Replaces `cognito:preferred_role`.
    pub preferred_role: Option<String>,
}

impl ClaimOverrides {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == ClaimOverrides::default()
    }

    /// Refuses a change to a protected claim, naming it.
    pub fn check(&self) -> Result<(), String> {
        let named = self
            .id_add
            .keys()
            .chain(self.access_add.keys())
            .chain(self.id_suppress.iter())
            .chain(self.access_suppress.iter());
        for claim in named {
            if is_protected(claim) {
                return Err(format!("the claim {claim:?} cannot be added, overridden or suppressed"));
            }
        }
        Ok(())
    }

    /// Applies the changes to freshly built claim sets (checked first, so
    /// a protected claim is never touched even if `check` was skipped).
    pub fn apply(&self, id: &mut Claims, access: &mut Claims) -> Result<(), String> {
        self.check()?;
        for (k, v) in &self.id_add {
            id.insert(k.clone(), v.clone());
        }
        for k in &self.id_suppress {
            id.remove(k);
        }
        for (k, v) in &self.access_add {
            access.insert(k.clone(), v.clone());
        }
        for k in &self.access_suppress {
            access.remove(k);
        }
        if let Some(groups) = &self.groups {
            for c in [&mut *id, &mut *access] {
                if groups.is_empty() {
                    c.remove("cognito:groups");
                } else {
                    c.insert("cognito:groups".into(), json!(groups));
                }
            }
        }
        if let Some(roles) = &self.roles {
            if roles.is_empty() {
                id.remove("cognito:roles");
            } else {
                id.insert("cognito:roles".into(), json!(roles));
            }
        }
        if let Some(preferred) = &self.preferred_role {
            id.insert("cognito:preferred_role".into(), json!(preferred));
        }
        if !self.scopes_add.is_empty() || !self.scopes_suppress.is_empty() {
            let current = access.get("scope").and_then(Value::as_str).unwrap_or("");
            let mut scopes: Vec<String> = current
                .split(' ')
                .filter(|s| !s.is_empty() && !self.scopes_suppress.iter().any(|x| x == s))
                .map(str::to_string)
                .collect();
            for s in &self.scopes_add {
                if !scopes.contains(s) && !self.scopes_suppress.contains(s) {
                    scopes.push(s.clone());
                }
            }
            access.insert("scope".into(), json!(scopes.join(" ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwks::{Jwk, Jwks};
    use crate::auth::jwt::{mint, verify, Expect};
    use crate::auth::signing_key::NodeSigningKey;
    use crate::model::user::UserStatus;

    fn user() -> User {
        User {
            pool_id: "local_P".into(),
            sub: "7d3c0b1e-0000-4000-8000-000000000001".into(),
            username: "Alice".into(),
            attributes: [
                ("email".to_string(), "alice@example.com".to_string()),
                ("custom:tier".to_string(), "7".to_string()),
                ("name".to_string(), "Alice A.".to_string()),
            ]
            .into_iter()
            .collect(),
            status: UserStatus::Confirmed,
            enabled: true,
            password_phc: None,
            email_verified: true,
            phone_number_verified: false,
            created_at: 0,
            modified_at: 0,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: Default::default(),
        }
    }

    #[test]
    fn cognito_claims_sign_and_verify() {
        let groups = vec!["admins".to_string()];
        let ctx = TokenContext {
            issuer: "http://127.0.0.1:7700/local_P",
            client_id: "client1",
            auth_time: 1_000,
            now: 1_010,
            id_token_secs: 3600,
            access_token_secs: 3600,
            id_jti: "j-id",
            access_jti: "j-acc",
            origin_jti: "j-origin",
            groups: &groups,
            roles: &[],
            permissions: &["course:read".to_string()],
            readable: None,
        };
        let id = id_token_claims(&user(), &ctx);
        assert_eq!(id["token_use"], "id");
        assert_eq!(id["aud"], "client1");
        assert_eq!(id["cognito:username"], "Alice");
        assert_eq!(id["email_verified"], true);
        assert_eq!(id["custom:tier"], "7", "custom attributes are strings");
        assert_eq!(id["cognito:groups"][0], "admins");
        assert_eq!(id["exp"], 4_610);
        assert!(id.get("phone_number_verified").is_none());
        let access = access_token_claims(&user(), &ctx);
        assert_eq!(access["token_use"], "access");
        assert_eq!(access["client_id"], "client1");
        assert_eq!(access["username"], "Alice");
        assert!(access.get("email").is_none(), "attributes stay out of access tokens");
        assert_eq!(access["scope"], "aws.cognito.signin.user.admin course:read");
        assert!(scope_grants(&access, "course:read"));
        assert!(!scope_grants(&access, "course:create"));

        let key = NodeSigningKey::from_seed(1, [3; 32]);
        let jwks = Jwks {
            keys: vec![Jwk::ed25519(key.kid(), &key.public())],
        };
        let token = mint(&access, &key);
        let expect = Expect {
            issuer: ctx.issuer,
            token_use: Some("access"),
            now: 1_020,
            leeway: 0,
        };
        assert_eq!(verify(&token, &jwks, &expect).unwrap(), access);

        // An app client that may not read `name` does not get it.
        let readable: BTreeSet<String> = ["email".to_string(), "email_verified".to_string()]
            .into_iter()
            .collect();
        let limited = TokenContext {
            readable: Some(&readable),
            ..ctx
        };
        let id = id_token_claims(&user(), &limited);
        assert!(id.get("name").is_none() && id.get("custom:tier").is_none());
        assert_eq!(id["email"], "alice@example.com");
    }
}
