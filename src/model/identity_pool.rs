//! Identity pools (Cognito's `cognito-identity`): which logins a pool
//! accepts, whether it admits guests, and how it chooses a role for an
//! identity.
//!
//! An identity pool is cluster-wide, not part of a user pool: it may
//! accept logins from several user pools, from external OpenID Connect
//! providers and from a developer's own back end. Only plain data and its
//! validation live here; verifying tokens is `auth::oidc`'s and
//! `service::identity`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Prefix of generated identity-pool and identity ids, in the place of
/// Cognito's region (`us-east-1:...`).
pub const IDENTITY_ID_PREFIX: &str = "local";
/// Most login providers of each kind in one pool (Cognito's bound on
/// `SupportedLoginProviders` and `CognitoIdentityProviders`).
pub const MAX_PROVIDERS: usize = 10;
/// Most tags on a pool.
pub const MAX_TAGS: usize = 50;
/// Most rules in one role mapping (Cognito's bound).
pub const MAX_RULES: usize = 25;
/// Most role mappings in one pool (one per provider).
pub const MAX_ROLE_MAPPINGS: usize = 10;

/// One of this cluster's user pools as a login provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CognitoProvider {
    /// `{public_url}/{user_pool_id}` without its scheme: the key of its
    /// logins, and (with the scheme) the `iss` of its tokens.
    pub provider_name: String,
    /// The app client whose id tokens are accepted (their `aud`).
    pub client_id: String,
    /// Also check on each use that the user is enabled and the token not
    /// revoked, at the price of a store read.
    pub server_side_token_check: bool,
}

impl CognitoProvider {
    /// The user pool this provider names: the last path segment.
    pub fn user_pool_id(&self) -> &str {
        self.provider_name.rsplit('/').next().unwrap_or("")
    }
}

/// An external OpenID Connect provider, defined in the pool (Cognito keeps
/// these as IAM objects and names them by ARN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcProviderConfig {
    /// The key of its logins: the issuer without its scheme.
    pub provider_name: String,
    /// The exact `iss` of its id tokens.
    pub issuer: String,
    /// Accepted `aud` values.
    pub client_ids: Vec<String>,
    /// Where its keys are, when not found through discovery.
    pub jwks_uri: Option<String>,
    /// Its discovery document, when not at the issuer's well-known path.
    pub discovery_url: Option<String>,
}

/// The built-in issuers of the Facebook-style providers that
/// `SupportedLoginProviders` names, and that a pool can override with an
/// [`OidcProviderConfig`] of the same name (tests play Google that way).
pub const WELL_KNOWN_ISSUERS: &[(&str, &str)] = &[
    ("accounts.google.com", "https://accounts.google.com"),
    ("appleid.apple.com", "https://appleid.apple.com"),
    // Facebook Limited Login: an OIDC id token from this issuer.
    ("graph.facebook.com", "https://www.facebook.com"),
];

/// How a role is chosen when a mapping finds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmbiguousRoleResolution {
    /// Fall back to the pool's authenticated role.
    AuthenticatedRole,
    /// Refuse credentials.
    Deny,
}

impl AmbiguousRoleResolution {
    /// Cognito's string.
    pub fn as_str(self) -> &'static str {
        match self {
            AmbiguousRoleResolution::AuthenticatedRole => "AuthenticatedRole",
            AmbiguousRoleResolution::Deny => "Deny",
        }
    }

    /// Parses Cognito's string.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "AuthenticatedRole" => Ok(Self::AuthenticatedRole),
            "Deny" => Ok(Self::Deny),
            other => Err(ValidationError::new(
                "ambiguous_role_resolution",
                format!("{other:?}: use AuthenticatedRole or Deny"),
            )),
        }
    }
}

/// How a rule compares a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchType {
    /// The claim equals the value.
    Equals,
    /// The claim contains the value (a list claim: one of its items equals it).
    Contains,
    /// The claim starts with the value.
    StartsWith,
    /// The claim is present and differs from the value.
    NotEqual,
}

impl MatchType {
    /// Cognito's string.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equals => "Equals",
            MatchType::Contains => "Contains",
            MatchType::StartsWith => "StartsWith",
            MatchType::NotEqual => "NotEqual",
        }
    }

    /// Parses Cognito's string.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "Equals" => Ok(Self::Equals),
            "Contains" => Ok(Self::Contains),
            "StartsWith" => Ok(Self::StartsWith),
            "NotEqual" => Ok(Self::NotEqual),
            other => Err(ValidationError::new(
                "match_type",
                format!("{other:?}: use Equals, Contains, StartsWith or NotEqual"),
            )),
        }
    }

    /// Whether `claim` (a string, or a list of strings) matches `value`.
    pub fn matches(self, claim: &ClaimValue<'_>, value: &str) -> bool {
        match (self, claim) {
            (MatchType::Equals, ClaimValue::One(c)) => *c == value,
            (MatchType::NotEqual, ClaimValue::One(c)) => *c != value,
            (MatchType::StartsWith, ClaimValue::One(c)) => c.starts_with(value),
            (MatchType::Contains, ClaimValue::One(c)) => c.contains(value),
            (MatchType::Contains, ClaimValue::Many(items)) => items.contains(&value),
            (MatchType::Equals, ClaimValue::Many(items)) => items.len() == 1 && items[0] == value,
            (MatchType::NotEqual, ClaimValue::Many(items)) => !items.contains(&value),
            (MatchType::StartsWith, ClaimValue::Many(items)) => items.iter().any(|i| i.starts_with(value)),
        }
    }
}

/// A claim's value as rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue<'a> {
    /// A string (numbers and booleans in their JSON text).
    One(&'a str),
    /// A list of strings (`cognito:groups`).
    Many(Vec<&'a str>),
}

/// One rule of a `Rules` mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRule {
    /// The claim to compare.
    pub claim: String,
    /// How to compare it.
    pub match_type: MatchType,
    /// What to compare it with.
    pub value: String,
    /// The role it selects, by name.
    pub role: String,
}

/// How a role is chosen for logins of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleMappingKind {
    /// From the token: the role of the user-pool group with the best
    /// precedence that has one (`cognito:preferred_role`).
    Token,
    /// The first of the rules whose claim matches.
    Rules(Vec<MappingRule>),
}

/// A provider's role mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleMapping {
    /// Token or rules.
    pub kind: RoleMappingKind,
    /// What happens when the mapping finds no role.
    pub ambiguous_role_resolution: AmbiguousRoleResolution,
}

/// The pool's default roles, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRoles {
    /// For identities with a login.
    pub authenticated: Option<String>,
    /// For guests.
    pub unauthenticated: Option<String>,
}

/// An identity pool as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityPool {
    /// `local:<uuid>`; never changes.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Guests may get identities and the unauthenticated role.
    pub allow_unauthenticated: bool,
    /// `GetOpenIdToken` for use elsewhere (Cognito's basic flow).
    pub allow_classic_flow: bool,
    /// Facebook-style providers: name -> the app's client id.
    pub supported_login_providers: BTreeMap<String, String>,
    /// The developer's own provider name, once set never changed.
    pub developer_provider_name: String,
    /// This cluster's user pools.
    pub cognito_providers: Vec<CognitoProvider>,
    /// External OpenID Connect providers.
    pub oidc_providers: Vec<OidcProviderConfig>,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// Default roles.
    pub roles: PoolRoles,
    /// Provider name -> role mapping.
    pub role_mappings: BTreeMap<String, RoleMapping>,
    /// Unix milliseconds.
    pub creation_date: i64,
    /// Unix milliseconds of the latest change.
    pub last_modified_date: i64,
}

/// Where a login provider's name points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind<'a> {
    /// A user pool of this cluster.
    Cognito(&'a CognitoProvider),
    /// An OIDC issuer, defined in the pool or well known: the issuer and
    /// the accepted audiences.
    Oidc(OidcProviderConfig),
    /// The developer's back end (never a token: only admin calls use it).
    Developer,
}

impl IdentityPool {
    /// What `provider` (a key of `logins`) names in this pool, if the pool
    /// accepts it. Names are compared without a scheme.
    pub fn provider(&self, provider: &str) -> Option<ProviderKind<'_>> {
        let name = strip_scheme(provider);
        if let Some(c) = self
            .cognito_providers
            .iter()
            .find(|c| same_cognito_provider(&c.provider_name, name))
        {
            return Some(ProviderKind::Cognito(c));
        }
        if let Some(o) = self.oidc_providers.iter().find(|o| o.provider_name == name) {
            let mut o = o.clone();
            // A supported login provider's client id is accepted too when a
            // definition of the same name overrides where its keys are.
            if let Some(id) = self.supported_login_providers.get(name) {
                if !o.client_ids.contains(id) {
                    o.client_ids.push(id.clone());
                }
            }
            return Some(ProviderKind::Oidc(o));
        }
        if let Some(client_id) = self.supported_login_providers.get(name) {
            let issuer = WELL_KNOWN_ISSUERS.iter().find(|(n, _)| *n == name)?.1;
            return Some(ProviderKind::Oidc(OidcProviderConfig {
                provider_name: name.to_string(),
                issuer: issuer.to_string(),
                client_ids: vec![client_id.clone()],
                jwks_uri: None,
                discovery_url: None,
            }));
        }
        if !self.developer_provider_name.is_empty() && self.developer_provider_name == name {
            return Some(ProviderKind::Developer);
        }
        None
    }

    /// Every provider name the pool accepts, for messages.
    pub fn provider_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .cognito_providers
            .iter()
            .map(|c| c.provider_name.clone())
            .chain(self.oidc_providers.iter().map(|o| o.provider_name.clone()))
            .chain(self.supported_login_providers.keys().cloned())
            .collect();
        if !self.developer_provider_name.is_empty() {
            names.push(self.developer_provider_name.clone());
        }
        names.sort();
        names.dedup();
        names
    }

    /// Every role name the pool refers to (defaults and mappings).
    pub fn role_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = [&self.roles.authenticated, &self.roles.unauthenticated]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for m in self.role_mappings.values() {
            if let RoleMappingKind::Rules(rules) = &m.kind {
                names.extend(rules.iter().map(|r| r.role.as_str()));
            }
        }
        names
    }

    /// Checks every field, as the edge does before a command is proposed
    /// and `apply` does before it writes.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_identity_id("identity_pool_id", &self.id)?;
        validate_identity_pool_name(&self.name)?;
        if self.supported_login_providers.len() > MAX_PROVIDERS {
            return Err(ValidationError::new(
                "supported_login_providers",
                format!("at most {MAX_PROVIDERS} providers"),
            ));
        }
        for (name, client_id) in &self.supported_login_providers {
            bounded("supported_login_providers", name, 1, 128)?;
            bounded("supported_login_providers", client_id, 1, 128)?;
            let overridden = self.oidc_providers.iter().any(|o| o.provider_name == *name);
            if !overridden && !WELL_KNOWN_ISSUERS.iter().any(|(n, _)| n == name) {
                return Err(ValidationError::new(
                    "supported_login_providers",
                    format!(
                        "{name:?} is not a provider Tessera knows ({}); define it in open_id_connect_providers",
                        WELL_KNOWN_ISSUERS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if !self.developer_provider_name.is_empty() {
            bounded("developer_provider_name", &self.developer_provider_name, 1, 128)?;
            if !self
                .developer_provider_name
                .chars()
                .all(|c| c.is_alphanumeric() || "_.-".contains(c))
            {
                return Err(ValidationError::new(
                    "developer_provider_name",
                    "use letters, digits and _ . - only",
                ));
            }
        }
        if self.cognito_providers.len() > MAX_PROVIDERS {
            return Err(ValidationError::new(
                "cognito_identity_providers",
                format!("at most {MAX_PROVIDERS} providers"),
            ));
        }
        for c in &self.cognito_providers {
            bounded("cognito_identity_providers.provider_name", &c.provider_name, 1, 128)?;
            if c.provider_name.contains("://") {
                return Err(ValidationError::new(
                    "cognito_identity_providers.provider_name",
                    "internal error: stored with its scheme",
                ));
            }
            if super::pool::validate_pool_id(c.user_pool_id()).is_err() || !c.provider_name.contains('/') {
                return Err(ValidationError::new(
                    "cognito_identity_providers.provider_name",
                    format!("{:?} is not {{public_url}}/{{user_pool_id}}", c.provider_name),
                ));
            }
            bounded("cognito_identity_providers.client_id", &c.client_id, 1, 128)?;
        }
        if self.oidc_providers.len() > MAX_PROVIDERS {
            return Err(ValidationError::new(
                "open_id_connect_providers",
                format!("at most {MAX_PROVIDERS} providers"),
            ));
        }
        for o in &self.oidc_providers {
            o.validate()?;
        }
        let names = self
            .cognito_providers
            .iter()
            .map(|c| &c.provider_name)
            .chain(self.oidc_providers.iter().map(|o| &o.provider_name));
        let mut seen = std::collections::BTreeSet::new();
        for n in names {
            if !seen.insert(n) || *n == self.developer_provider_name {
                return Err(ValidationError::new(
                    "providers",
                    format!("provider {n:?} is configured twice"),
                ));
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(ValidationError::new(
                "identity_pool_tags",
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        for (k, v) in &self.tags {
            bounded("identity_pool_tags", k, 1, 128)?;
            bounded("identity_pool_tags", v, 0, 256)?;
        }
        for r in [&self.roles.authenticated, &self.roles.unauthenticated]
            .into_iter()
            .flatten()
        {
            super::role::validate_role_name("roles", r)?;
        }
        if self.role_mappings.len() > MAX_ROLE_MAPPINGS {
            return Err(ValidationError::new(
                "role_mappings",
                format!("at most {MAX_ROLE_MAPPINGS} mappings"),
            ));
        }
        for (provider, m) in &self.role_mappings {
            if self.provider(provider).is_none() {
                return Err(ValidationError::new(
                    "role_mappings",
                    format!("{provider:?} is not a login provider of this pool"),
                ));
            }
            if let RoleMappingKind::Rules(rules) = &m.kind {
                if rules.is_empty() || rules.len() > MAX_RULES {
                    return Err(ValidationError::new(
                        "role_mappings.rules_configuration.rules",
                        format!("1 to {MAX_RULES} rules"),
                    ));
                }
                for r in rules {
                    bounded("role_mappings.rules_configuration.rules.claim", &r.claim, 1, 64)?;
                    bounded("role_mappings.rules_configuration.rules.value", &r.value, 1, 128)?;
                    super::role::validate_role_name("role_mappings.rules_configuration.rules.role_arn", &r.role)?;
                }
            }
        }
        Ok(())
    }
}

impl OidcProviderConfig {
    /// Checks the definition's fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        bounded("open_id_connect_providers.provider_name", &self.provider_name, 1, 128)?;
        if self.provider_name.contains("://") || self.provider_name.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(
                "open_id_connect_providers.provider_name",
                "the issuer without its scheme, e.g. accounts.google.com",
            ));
        }
        bounded("open_id_connect_providers.issuer", &self.issuer, 1, 512)?;
        check_url("open_id_connect_providers.issuer", &self.issuer)?;
        if strip_scheme(&self.issuer) != self.provider_name {
            return Err(ValidationError::new(
                "open_id_connect_providers.provider_name",
                format!(
                    "{:?} must be the issuer {:?} without its scheme",
                    self.provider_name, self.issuer
                ),
            ));
        }
        if self.client_ids.is_empty() || self.client_ids.len() > 100 {
            return Err(ValidationError::new(
                "open_id_connect_providers.client_ids",
                "1 to 100 client ids (the accepted audiences)",
            ));
        }
        for c in &self.client_ids {
            bounded("open_id_connect_providers.client_ids", c, 1, 255)?;
        }
        if self.jwks_uri.is_some() && self.discovery_url.is_some() {
            return Err(ValidationError::new(
                "open_id_connect_providers",
                "give jwks_uri or discovery_url, not both",
            ));
        }
        for (field, u) in [
            ("open_id_connect_providers.jwks_uri", &self.jwks_uri),
            ("open_id_connect_providers.discovery_url", &self.discovery_url),
        ] {
            if let Some(u) = u {
                bounded(field, u, 1, 2048)?;
                check_url(field, u)?;
            }
        }
        Ok(())
    }
}

/// The user pool id of a Cognito provider name in AWS's form,
/// `cognito-idp.{region}.amazonaws.com/{region}_{id}`: the key an app
/// written for Amazon Cognito puts in `Logins`, which it keeps when only
/// its endpoint changes.
pub fn aws_form_pool_id(name: &str) -> Option<&str> {
    let rest = strip_scheme(name).strip_prefix("cognito-idp.")?;
    let (host, pool_id) = rest.split_once('/')?;
    let region = host.strip_suffix(".amazonaws.com")?;
    pool_id.strip_prefix(region)?.strip_prefix('_')?;
    Some(pool_id)
}

/// Whether two Cognito provider names (without schemes) name the same
/// user pool: equal, or one in AWS's form and both ending in the same pool
/// id. The token is still checked against this cluster's keys and its
/// issuer's pool, so AWS's spelling names nothing beyond this cluster.
pub fn same_cognito_provider(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let pool = |s: &str| s.rsplit_once('/').map(|(_, p)| p.to_string());
    (aws_form_pool_id(a).is_some() || aws_form_pool_id(b).is_some()) && pool(a).is_some() && pool(a) == pool(b)
}

/// A provider name or issuer without `https://` or `http://`.
pub fn strip_scheme(s: &str) -> &str {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
}

fn check_url(field: &'static str, u: &str) -> Result<(), ValidationError> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| ValidationError::new(field, format!("{u:?} is not an http:// or https:// URL")))?;
    if rest.is_empty() || rest.starts_with('/') || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(field, format!("{u:?} has no host")));
    }
    Ok(())
}

fn bounded(field: &'static str, v: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ValidationError::new(
            field,
            format!("must be {min} to {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// Cognito's identity pool name: 1..=128 of `[\w ]`.
pub fn validate_identity_pool_name(name: &str) -> Result<(), ValidationError> {
    bounded("identity_pool_name", name, 1, 128)?;
    if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ' ') || name.trim().is_empty() {
        return Err(ValidationError::new(
            "identity_pool_name",
            "use letters, digits, _ and spaces only",
        ));
    }
    Ok(())
}

/// Cognito's identity (and identity pool) id: `[\w-]+:[0-9a-f-]+`, at
/// most 55 characters.
pub fn validate_identity_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    let shape = || ValidationError::new(field, format!("{id:?} is not an id like \"local:0b7c...-...\""));
    if id.is_empty() || id.len() > 55 {
        return Err(shape());
    }
    let (prefix, suffix) = id.split_once(':').ok_or_else(shape)?;
    let prefix_ok = !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    let suffix_ok = !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if prefix_ok && suffix_ok {
        Ok(())
    } else {
        Err(shape())
    }
}

/// An identity or identity-pool id from 16 random bytes chosen by the
/// proposer: the region (an identity's is its pool's), `:` and a UUID
/// (version 4 form).
pub fn identity_id_from_random(region: &str, random: [u8; 16]) -> String {
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("{region}:{}", uuid::Uuid::from_bytes(b).hyphenated())
}

#[cfg(test)]
mod tests {
    #[test]
    fn aws_spelling_of_a_user_pool_names_the_same_pool() {
        assert_eq!(
            aws_form_pool_id("cognito-idp.local.amazonaws.com/local_Ab12"),
            Some("local_Ab12")
        );
        assert_eq!(aws_form_pool_id("cognito-idp.local.amazonaws.com/eu_Ab12"), None);
        assert_eq!(aws_form_pool_id("127.0.0.1:7700/local_Ab12"), None);
        assert!(same_cognito_provider(
            "127.0.0.1:7700/local_Ab12",
            "cognito-idp.local.amazonaws.com/local_Ab12"
        ));
        assert!(same_cognito_provider(
            "cognito-idp.local.amazonaws.com/local_Ab12",
            "id.example.com/local_Ab12"
        ));
        assert!(!same_cognito_provider(
            "127.0.0.1:7700/local_Ab12",
            "cognito-idp.local.amazonaws.com/local_Xy34"
        ));
        // Two non-AWS names are the same only when equal.
        assert!(!same_cognito_provider("a.example/local_Ab12", "b.example/local_Ab12"));
    }

    use super::*;

    pub(crate) fn pool() -> IdentityPool {
        IdentityPool {
            id: identity_id_from_random(crate::model::identity_pool::IDENTITY_ID_PREFIX, [7; 16]),
            name: "Kids app".into(),
            allow_unauthenticated: true,
            allow_classic_flow: false,
            supported_login_providers: BTreeMap::new(),
            developer_provider_name: String::new(),
            cognito_providers: vec![CognitoProvider {
                provider_name: "id.example.com/local_AbC123".into(),
                client_id: "client1".into(),
                server_side_token_check: false,
            }],
            oidc_providers: vec![],
            tags: BTreeMap::new(),
            roles: PoolRoles::default(),
            role_mappings: BTreeMap::new(),
            creation_date: 1,
            last_modified_date: 1,
        }
    }

    #[test]
    fn ids_have_cognitos_shape() {
        let id = identity_id_from_random(crate::model::identity_pool::IDENTITY_ID_PREFIX, [0xab; 16]);
        assert!(id.starts_with("local:"), "{id}");
        assert_eq!(id.len(), "local:".len() + 36);
        validate_identity_id("identity_id", &id).unwrap();
        assert!(validate_identity_id("identity_id", "local_abc").is_err());
        assert!(validate_identity_id("identity_id", "local:xyz").is_err());
        assert!(validate_identity_id("identity_id", ":abc").is_err());
    }

    #[test]
    fn providers_resolve_by_name_without_scheme() {
        let mut p = pool();
        assert!(matches!(
            p.provider("https://id.example.com/local_AbC123"),
            Some(ProviderKind::Cognito(_))
        ));
        assert!(p.provider("accounts.google.com").is_none());
        p.supported_login_providers
            .insert("accounts.google.com".into(), "google-client".into());
        match p.provider("accounts.google.com") {
            Some(ProviderKind::Oidc(o)) => {
                assert_eq!(o.issuer, "https://accounts.google.com");
                assert_eq!(o.client_ids, vec!["google-client".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        p.validate().unwrap();
        // An in-pool definition overrides where a well-known provider's keys are.
        p.oidc_providers.push(OidcProviderConfig {
            provider_name: "127.0.0.1:9999".into(),
            issuer: "http://127.0.0.1:9999".into(),
            client_ids: vec!["a".into()],
            jwks_uri: None,
            discovery_url: None,
        });
        p.validate().unwrap();
        p.developer_provider_name = "login.kids".into();
        assert_eq!(p.provider("login.kids"), Some(ProviderKind::Developer));
        assert_eq!(p.provider_names().len(), 4);
    }

    #[test]
    fn validation_names_the_field() {
        let mut p = pool();
        p.supported_login_providers.insert("www.amazon.com".into(), "x".into());
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "supported_login_providers");
        let mut p = pool();
        p.name = "bad/name".into();
        assert_eq!(p.validate().unwrap_err().field, "identity_pool_name");
        let mut p = pool();
        p.cognito_providers[0].provider_name = "id.example.com/notapool".into();
        assert!(p.validate().is_err());
        let mut p = pool();
        p.role_mappings.insert(
            "unknown.example.com".into(),
            RoleMapping {
                kind: RoleMappingKind::Token,
                ambiguous_role_resolution: AmbiguousRoleResolution::Deny,
            },
        );
        assert_eq!(p.validate().unwrap_err().field, "role_mappings");
        let mut p = pool();
        let rule = MappingRule {
            claim: "dept".into(),
            match_type: MatchType::Equals,
            value: "x".into(),
            role: "r".into(),
        };
        p.role_mappings.insert(
            "id.example.com/local_AbC123".into(),
            RoleMapping {
                kind: RoleMappingKind::Rules(vec![rule; MAX_RULES + 1]),
                ambiguous_role_resolution: AmbiguousRoleResolution::Deny,
            },
        );
        assert!(p.validate().unwrap_err().reason.contains("25"));
        let o = OidcProviderConfig {
            provider_name: "accounts.google.com".into(),
            issuer: "https://evil.example.com".into(),
            client_ids: vec!["a".into()],
            jwks_uri: None,
            discovery_url: None,
        };
        assert!(o.validate().is_err(), "the name must be the issuer's");
    }

    #[test]
    fn rules_compare_strings_and_lists() {
        let one = ClaimValue::One("teachers-east");
        assert!(MatchType::StartsWith.matches(&one, "teachers"));
        assert!(MatchType::Contains.matches(&one, "east"));
        assert!(!MatchType::Equals.matches(&one, "teachers"));
        assert!(MatchType::NotEqual.matches(&one, "teachers"));
        let many = ClaimValue::Many(vec!["a", "b"]);
        assert!(MatchType::Contains.matches(&many, "b"));
        assert!(!MatchType::Contains.matches(&many, "c"));
        assert!(MatchType::NotEqual.matches(&many, "c"));
        assert!(!MatchType::Equals.matches(&many, "a"));
    }
}
