//! `tessera identity-pool create|get|update|delete|list|set-roles|get-roles`:
//! identity pools, their login providers, and the roles their identities
//! get (the admin half of `tessera.v1.Identity`).
//!
//! Flags take the providers and mappings in compact one-line forms; the
//! parsers here turn them into the proto's messages and refuse a malformed
//! value with the flag's name, before anything is sent. What the server
//! checks (provider names, role names, limits) it checks again, so the two
//! never disagree on what a pool may hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand};
use serde::Deserialize;
use tessera::client::Client;
use tessera::model::identity_pool::strip_scheme;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

/// How a rule may compare a claim (identity.proto's `MappingRule.match_type`).
const MATCH_TYPES: &[&str] = &["Equals", "Contains", "StartsWith", "NotEqual"];

/// What happens to a login no mapping decides for
/// (`RoleMapping.ambiguous_role_resolution`).
const RESOLUTIONS: &[&str] = &["AuthenticatedRole", "Deny"];

#[derive(Subcommand)]
pub enum IdentityPoolCmd {
    /// Create an identity pool; prints its id. Roles are set afterwards
    /// with set-roles.
    Create(CreateArgs),
    /// Show an identity pool with its providers.
    Get {
        #[arg(long)]
        identity_pool_id: String,
    },
    /// Change an identity pool. Only the settings given are replaced: the
    /// pool is read first, because UpdateIdentityPool replaces everything.
    /// A repeatable flag replaces its whole list (every --cognito-provider,
    /// say); a --clear-* flag empties one. Role mappings of providers that
    /// are removed go with them.
    Update(UpdateArgs),
    /// Delete an identity pool with every identity, login and role mapping
    /// in it.
    Delete {
        #[arg(long)]
        identity_pool_id: String,
    },
    /// List every identity pool.
    List,
    /// Set the pool's roles and role mappings (SetIdentityPoolRoles). This
    /// replaces all of them with exactly what is given: a role or mapping
    /// left out is removed.
    ///
    /// Mappings choose the role of a login by its provider. Either with
    /// flags: `--token-mapping PROVIDER[:Deny|AuthenticatedRole]` (the role
    /// of the user-pool group with the best precedence that has one), and
    /// `--rule PROVIDER:CLAIM:MATCH_TYPE:VALUE:ROLE` (repeatable; a
    /// provider's rules are tried in the order given, the first that
    /// matches decides), with `--ambiguous PROVIDER=Deny|AuthenticatedRole`
    /// for logins no rule matches (default AuthenticatedRole).
    /// PROVIDER is one of the pool's provider names (`get` lists them;
    /// the scheme may be left out), CLAIM may contain ':' (custom:dept),
    /// MATCH_TYPE is Equals, Contains, StartsWith or NotEqual, ROLE is a
    /// role name or ARN.
    ///
    /// Or with `--mappings-json FILE`, for anything the flags cannot say:
    /// the JSON object of provider -> {"type": "Token"|"Rules",
    /// "ambiguous_role_resolution": ..., "rules_configuration": {"rules":
    /// [{"claim", "match_type", "value", "role_arn"}]}}, or the whole output
    /// of `get-roles --output json` (its `roles` then apply too, unless a
    /// role flag is given). Cognito's PascalCase names (`RoleMappings`,
    /// `AmbiguousRoleResolution`, `RoleARN`, ...) are accepted as well, so
    /// the output of `aws cognito-identity get-identity-pool-roles` works
    /// unchanged.
    #[command(verbatim_doc_comment)]
    SetRoles(SetRolesArgs),
    /// Show the pool's roles and role mappings.
    GetRoles {
        #[arg(long)]
        identity_pool_id: String,
    },
}

// The settings `create` and `update` share (a plain comment: a doc comment
// would become help text).
#[derive(Args)]
pub struct SettingsArgs {
    /// Let GetId hand out guest identities (no logins). Alone it means
    /// true; `--allow-unauthenticated false` turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new())]
    pub allow_unauthenticated: Option<bool>,
    /// Allow the basic (classic) flow: GetId, then GetOpenIdToken. Alone it
    /// means true; `false` turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new())]
    pub allow_classic_flow: Option<bool>,
    /// The name under which your back end registers developer-authenticated
    /// identities (letters, digits, _ . -); an empty value removes it.
    #[arg(long, value_name = "NAME")]
    pub developer_provider_name: Option<String>,
    /// A user pool of this cluster as a login provider. PROVIDER_NAME is
    /// `{public_url}/{user_pool_id}` (the `iss` of its tokens; the scheme
    /// may be left out), CLIENT_ID one of its app clients;
    /// `server-side-check` also checks on every use that the token was not
    /// revoked and the user is enabled. Repeatable.
    #[arg(
        long = "cognito-provider",
        value_name = "PROVIDER_NAME,CLIENT_ID[,server-side-check]"
    )]
    pub cognito_providers: Vec<String>,
    /// An OpenID Connect provider: its exact issuer (`https://` is assumed
    /// when no scheme is given), the accepted audiences (repeat client-id),
    /// and optionally where its keys are (default: the discovery document
    /// at {issuer}/.well-known/openid-configuration). Its provider name, the
    /// key of its logins, is the issuer without the scheme. Values cannot
    /// contain ','. Repeatable.
    #[arg(
        long = "oidc-provider",
        value_name = "issuer=URL,client-id=ID[,client-id=ID2][,jwks-uri=URL|discovery-url=URL]"
    )]
    pub oidc_providers: Vec<String>,
    /// A provider by name and the app's client id there (Cognito's
    /// SupportedLoginProviders): accounts.google.com, appleid.apple.com,
    /// graph.facebook.com, or one defined by --oidc-provider. Repeatable.
    #[arg(long = "login-provider", value_name = "NAME=CLIENT_ID")]
    pub login_providers: Vec<String>,
    /// A tag on the pool. Repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

// The flags of `identity-pool create` (a plain comment: a doc comment
// would become the subcommand's help text).
#[derive(Args)]
pub struct CreateArgs {
    /// 1 to 128 of letters, digits, _ and spaces.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

// The flags of `identity-pool update` (a plain comment: a doc comment
// would become the subcommand's help text).
#[derive(Args)]
pub struct UpdateArgs {
    #[arg(long)]
    pub identity_pool_id: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Remove every Cognito (user pool) provider.
    #[arg(long, conflicts_with = "cognito_providers")]
    pub clear_cognito_providers: bool,
    /// Remove every OpenID Connect provider.
    #[arg(long, conflicts_with = "oidc_providers")]
    pub clear_oidc_providers: bool,
    /// Remove every supported login provider.
    #[arg(long, conflicts_with = "login_providers")]
    pub clear_login_providers: bool,
    /// Remove every tag.
    #[arg(long, conflicts_with = "tags")]
    pub clear_tags: bool,
}

// The flags of `identity-pool set-roles`; the subcommand's doc comment
// explains the mapping forms.
#[derive(Args)]
pub struct SetRolesArgs {
    #[arg(long)]
    pub identity_pool_id: String,
    /// The role of authenticated identities that no mapping decides for: a
    /// role name or ARN.
    #[arg(long, value_name = "ARN_OR_NAME")]
    pub authenticated_role: Option<String>,
    /// The role of guest identities: a role name or ARN.
    #[arg(long, value_name = "ARN_OR_NAME")]
    pub unauthenticated_role: Option<String>,
    /// Logins of PROVIDER get the role of their user-pool group with the
    /// best precedence that has one; the suffix says what happens when none
    /// has (default AuthenticatedRole). Repeatable.
    #[arg(long = "token-mapping", value_name = "PROVIDER[:Deny|AuthenticatedRole]")]
    pub token_mappings: Vec<String>,
    /// A rule for PROVIDER's logins, e.g.
    /// `accounts.google.com:email:Equals:ann@example.com:Admins`.
    /// Repeatable; grouped per provider in the order given.
    #[arg(long = "rule", value_name = "PROVIDER:CLAIM:MATCH_TYPE:VALUE:ROLE")]
    pub rules: Vec<String>,
    /// What happens to PROVIDER's logins that no rule matches. Repeatable.
    #[arg(long = "ambiguous", value_name = "PROVIDER=Deny|AuthenticatedRole")]
    pub ambiguous: Vec<String>,
    /// Role mappings (and roles) from a JSON file, instead of the mapping
    /// flags; see above for its shape.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["token_mappings", "rules", "ambiguous"])]
    pub mappings_json: Option<PathBuf>,
    /// Remove every role and role mapping (required to set nothing, so
    /// that a forgotten flag never wipes a pool's roles).
    #[arg(long, conflicts_with_all = ["authenticated_role", "unauthenticated_role", "token_mappings",
          "rules", "ambiguous", "mappings_json"])]
    pub clear: bool,
}

impl SettingsArgs {
    /// Whether no setting was given (an update that would change nothing).
    fn is_empty(&self) -> bool {
        self.allow_unauthenticated.is_none()
            && self.allow_classic_flow.is_none()
            && self.developer_provider_name.is_none()
            && self.cognito_providers.is_empty()
            && self.oidc_providers.is_empty()
            && self.login_providers.is_empty()
            && self.tags.is_empty()
    }

    /// Replaces in `pool` each setting that was given; a repeatable flag
    /// replaces its whole list.
    fn apply(self, pool: &mut IdentityPool) -> Result<()> {
        if let Some(b) = self.allow_unauthenticated {
            pool.allow_unauthenticated_identities = b;
        }
        if let Some(b) = self.allow_classic_flow {
            pool.allow_classic_flow = b;
        }
        if let Some(name) = self.developer_provider_name {
            pool.developer_provider_name = name;
        }
        if !self.cognito_providers.is_empty() {
            pool.cognito_identity_providers = self
                .cognito_providers
                .iter()
                .map(|s| parse_cognito_provider(s))
                .collect::<Result<_>>()?;
        }
        if !self.oidc_providers.is_empty() {
            pool.open_id_connect_providers = self
                .oidc_providers
                .iter()
                .map(|s| parse_oidc_provider(s))
                .collect::<Result<_>>()?;
        }
        if !self.login_providers.is_empty() {
            pool.supported_login_providers = parse_pairs("--login-provider", "NAME=CLIENT_ID", &self.login_providers)?;
        }
        if !self.tags.is_empty() {
            pool.identity_pool_tags = parse_pairs("--tag", "KEY=VALUE", &self.tags)?;
        }
        Ok(())
    }
}

/// `--cognito-provider PROVIDER_NAME,CLIENT_ID[,server-side-check]`.
fn parse_cognito_provider(s: &str) -> Result<CognitoIdentityProvider> {
    let usage = "use PROVIDER_NAME,CLIENT_ID[,server-side-check]";
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let (name, client_id, check) = match parts.as_slice() {
        [name, client_id] => (*name, *client_id, false),
        [name, client_id, "server-side-check"] => (*name, *client_id, true),
        [_, _, other] => bail!("--cognito-provider {s:?}: {other:?} is not server-side-check"),
        _ => bail!("--cognito-provider {s:?}: {usage}"),
    };
    if name.is_empty() || client_id.is_empty() {
        bail!("--cognito-provider {s:?}: {usage}");
    }
    Ok(CognitoIdentityProvider {
        provider_name: name.to_string(),
        client_id: client_id.to_string(),
        server_side_token_check: check,
    })
}

/// `--oidc-provider issuer=URL,client-id=ID[,client-id=ID2][,jwks-uri=URL|discovery-url=URL]`.
fn parse_oidc_provider(s: &str) -> Result<OpenIdConnectProvider> {
    let usage = "use issuer=URL,client-id=ID[,client-id=ID2][,jwks-uri=URL|discovery-url=URL]";
    let mut issuer: Option<String> = None;
    let mut client_ids = Vec::new();
    let mut jwks_uri: Option<String> = None;
    let mut discovery_url: Option<String> = None;
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--oidc-provider {s:?}: {item:?} is not KEY=VALUE; {usage}");
        };
        let value = value.trim();
        if value.is_empty() {
            bail!("--oidc-provider {s:?}: {key} is empty");
        }
        let once = |slot: &mut Option<String>| -> Result<()> {
            if slot.replace(value.to_string()).is_some() {
                bail!("--oidc-provider {s:?}: {key} given twice");
            }
            Ok(())
        };
        match key.trim() {
            "issuer" => once(&mut issuer)?,
            "client-id" => client_ids.push(value.to_string()),
            "jwks-uri" => once(&mut jwks_uri)?,
            "discovery-url" => once(&mut discovery_url)?,
            other => bail!("--oidc-provider {s:?}: unknown key {other:?}; {usage}"),
        }
    }
    let Some(issuer) = issuer else {
        bail!("--oidc-provider {s:?}: issuer is required; {usage}");
    };
    if client_ids.is_empty() {
        bail!("--oidc-provider {s:?}: at least one client-id (an accepted audience) is required");
    }
    if jwks_uri.is_some() && discovery_url.is_some() {
        bail!("--oidc-provider {s:?}: give jwks-uri or discovery-url, not both");
    }
    // The issuer must be exact (it is compared with the tokens' `iss`), so
    // only a missing scheme is filled in.
    let issuer = if issuer.contains("://") {
        issuer
    } else {
        format!("https://{issuer}")
    };
    Ok(OpenIdConnectProvider {
        provider_name: strip_scheme(&issuer).to_string(),
        issuer,
        client_ids,
        jwks_uri: jwks_uri.unwrap_or_default(),
        discovery_url: discovery_url.unwrap_or_default(),
    })
}

/// Repeated `KEY=VALUE` flags as a map; a key given twice is refused
/// rather than silently keeping one of the two.
pub(super) fn parse_pairs(flag: &str, shape: &str, values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((key, value)) = v.split_once('=') else {
            bail!("{flag} {v:?}: use {shape}");
        };
        let key = key.trim();
        if key.is_empty() {
            bail!("{flag} {v:?}: use {shape}");
        }
        if out.insert(key.to_string(), value.trim().to_string()).is_some() {
            bail!("{flag}: {key:?} given twice");
        }
    }
    Ok(out)
}

/// Every provider name the pool accepts in `logins`, as role mappings key
/// them (without a scheme).
fn provider_names(p: &IdentityPool) -> Vec<String> {
    let mut names: Vec<String> = p
        .cognito_identity_providers
        .iter()
        .map(|c| c.provider_name.clone())
        .chain(p.open_id_connect_providers.iter().map(|o| o.provider_name.clone()))
        .chain(p.supported_login_providers.keys().cloned())
        .collect();
    if !p.developer_provider_name.is_empty() {
        names.push(p.developer_provider_name.clone());
    }
    names.sort();
    names.dedup();
    names
}

/// `provider` (scheme optional) as one of `providers`, or an error naming
/// `flag` and listing what the pool has.
fn known_provider(flag: &str, value: &str, provider: &str, providers: &[String]) -> Result<String> {
    let name = strip_scheme(provider);
    if providers.iter().any(|p| p == name) {
        return Ok(name.to_string());
    }
    Err(not_a_provider(flag, value, providers))
}

fn not_a_provider(flag: &str, value: &str, providers: &[String]) -> anyhow::Error {
    if providers.is_empty() {
        anyhow!("{flag} {value:?}: the pool has no login providers; add them with `identity-pool update`")
    } else {
        anyhow!(
            "{flag} {value:?}: does not name a login provider of the pool (it has: {})",
            providers.join(", ")
        )
    }
}

/// `--token-mapping PROVIDER[:Deny|AuthenticatedRole]`: the provider and
/// the resolution (empty: the server's default, AuthenticatedRole).
/// Provider names may hold a ':' (a port), so the suffix is only taken
/// when it is a resolution.
fn parse_token_mapping(s: &str, providers: &[String]) -> Result<(String, String)> {
    if let Some((provider, last)) = s.rsplit_once(':') {
        if let Some(r) = RESOLUTIONS.iter().find(|r| r.eq_ignore_ascii_case(last)) {
            if *r != last {
                bail!("--token-mapping {s:?}: write {r}, as Cognito spells it");
            }
            return Ok((
                known_provider("--token-mapping", s, provider, providers)?,
                last.to_string(),
            ));
        }
    }
    Ok((known_provider("--token-mapping", s, s, providers)?, String::new()))
}

/// `--rule PROVIDER:CLAIM:MATCH_TYPE:VALUE:ROLE`. Every part but the match
/// type may hold a ':' (a port, `custom:dept`, a value, a role ARN), so the
/// parts are found by what they must be, not by counting colons:
/// - PROVIDER is the longest of the pool's provider names that the value
///   starts with (scheme optional), followed by ':';
/// - MATCH_TYPE is the first `:Equals:`, `:Contains:`, `:StartsWith:` or
///   `:NotEqual:` after it, and CLAIM what lies between;
/// - ROLE is the last part, or, when that is `role/Name`, the ARN that
///   starts at the last `:arn:`; VALUE is what lies between.
fn parse_rule(s: &str, providers: &[String]) -> Result<(String, MappingRule)> {
    let usage = "use PROVIDER:CLAIM:MATCH_TYPE:VALUE:ROLE";
    let body = strip_scheme(s);
    let provider = providers
        .iter()
        .filter(|p| body.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with(':')))
        .max_by_key(|p| p.len())
        .ok_or_else(|| not_a_provider("--rule", s, providers))?;
    let rest = &body[provider.len() + 1..];
    let (at, match_type) = MATCH_TYPES
        .iter()
        .filter_map(|m| rest.find(&format!(":{m}:")).map(|i| (i, *m)))
        .min_by_key(|(i, _)| *i)
        .ok_or_else(|| anyhow!("--rule {s:?}: no MATCH_TYPE (Equals, Contains, StartsWith or NotEqual); {usage}"))?;
    let claim = &rest[..at];
    if claim.is_empty() {
        bail!("--rule {s:?}: CLAIM is empty; {usage}");
    }
    let tail = &rest[at + match_type.len() + 2..];
    let (value, role) = split_value_role(tail)
        .ok_or_else(|| anyhow!("--rule {s:?}: VALUE:ROLE expected after {match_type}; {usage}"))?;
    if value.is_empty() || role.is_empty() {
        bail!("--rule {s:?}: VALUE and ROLE must not be empty; {usage}");
    }
    Ok((
        provider.clone(),
        MappingRule {
            claim: claim.to_string(),
            match_type: match_type.to_string(),
            value: value.to_string(),
            role_arn: role.to_string(),
        },
    ))
}

/// `VALUE:ROLE`, ROLE being a name (no ':') or a role ARN
/// (`arn:...:role/Name`).
fn split_value_role(tail: &str) -> Option<(&str, &str)> {
    let (head, last) = tail.rsplit_once(':')?;
    if last.starts_with("role/") {
        let at = tail.rfind(":arn:")?;
        Some((&tail[..at], &tail[at + 1..]))
    } else {
        Some((head, last))
    }
}

/// The role mappings the flags describe, keyed by provider name.
fn mappings_from_flags(
    token_mappings: &[String],
    rules: &[String],
    ambiguous: &[String],
    providers: &[String],
) -> Result<BTreeMap<String, RoleMapping>> {
    let mut out: BTreeMap<String, RoleMapping> = BTreeMap::new();
    for t in token_mappings {
        let (provider, resolution) = parse_token_mapping(t, providers)?;
        if out.contains_key(&provider) {
            bail!("--token-mapping {t:?}: {provider} is mapped twice");
        }
        out.insert(
            provider,
            RoleMapping {
                r#type: "Token".into(),
                ambiguous_role_resolution: resolution,
                rules_configuration: None,
            },
        );
    }
    for r in rules {
        let (provider, rule) = parse_rule(r, providers)?;
        let mapping = out.entry(provider.clone()).or_insert_with(|| RoleMapping {
            r#type: "Rules".into(),
            ambiguous_role_resolution: String::new(),
            rules_configuration: Some(RulesConfigurationType::default()),
        });
        match (mapping.r#type.as_str(), mapping.rules_configuration.as_mut()) {
            ("Rules", Some(c)) => c.rules.push(rule),
            _ => bail!(
                "--rule {r:?}: {provider} already has a --token-mapping; a provider is mapped by token or by rules"
            ),
        }
    }
    for a in ambiguous {
        let Some((provider, resolution)) = a.rsplit_once('=') else {
            bail!("--ambiguous {a:?}: use PROVIDER=Deny|AuthenticatedRole");
        };
        if !RESOLUTIONS.contains(&resolution) {
            bail!("--ambiguous {a:?}: {resolution:?} is not Deny or AuthenticatedRole");
        }
        let provider = known_provider("--ambiguous", a, provider, providers)?;
        let Some(mapping) = out.get_mut(&provider) else {
            bail!("--ambiguous {a:?}: no --token-mapping or --rule for {provider}");
        };
        if !mapping.ambiguous_role_resolution.is_empty() && mapping.ambiguous_role_resolution != resolution {
            bail!(
                "--ambiguous {a:?}: {provider} already resolves to {}",
                mapping.ambiguous_role_resolution
            );
        }
        mapping.ambiguous_role_resolution = resolution.to_string();
    }
    Ok(out)
}

/// One mapping in a `--mappings-json` file: the proto's field names as
/// `--output json` prints them, or Cognito's PascalCase ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingJson {
    #[serde(rename = "type", alias = "Type")]
    kind: String,
    #[serde(default, alias = "AmbiguousRoleResolution")]
    ambiguous_role_resolution: Option<String>,
    #[serde(default, alias = "RulesConfiguration")]
    rules_configuration: Option<RulesJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesJson {
    #[serde(alias = "Rules")]
    rules: Vec<RuleJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    #[serde(alias = "Claim")]
    claim: String,
    #[serde(alias = "MatchType")]
    match_type: String,
    #[serde(alias = "Value")]
    value: String,
    #[serde(alias = "RoleARN", alias = "RoleArn")]
    role_arn: String,
}

/// What a `--mappings-json` file sets: mappings always, roles when the
/// file is a whole get-roles output that has them.
#[derive(Debug, Default, PartialEq)]
struct RolesFile {
    roles: Option<BTreeMap<String, String>>,
    role_mappings: BTreeMap<String, RoleMapping>,
}

/// Parses a `--mappings-json` file's text (see `set-roles --help`).
fn parse_mappings_json(text: &str) -> Result<RolesFile> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let serde_json::Value::Object(mut top) = value else {
        bail!("expected a JSON object of provider -> mapping");
    };
    // A whole GetIdentityPoolRoles output (ours or Cognito's) holds the
    // mappings under a key; a bare mapping object is keyed by provider.
    let whole = ["role_mappings", "RoleMappings"].iter().find(|k| top.contains_key(**k));
    let (mappings, roles) = match whole {
        Some(key) => {
            let mappings = top.remove(*key).unwrap_or_default();
            let roles = ["roles", "Roles"].iter().find_map(|k| top.remove(*k));
            (mappings, roles)
        }
        None => (serde_json::Value::Object(top), None),
    };
    let mappings: BTreeMap<String, MappingJson> = serde_json::from_value(mappings).context("role mappings")?;
    let roles: Option<BTreeMap<String, String>> = roles.map(serde_json::from_value).transpose().context("roles")?;
    let role_mappings = mappings
        .into_iter()
        .map(|(provider, m)| {
            let mapping = RoleMapping {
                r#type: m.kind,
                ambiguous_role_resolution: m.ambiguous_role_resolution.unwrap_or_default(),
                rules_configuration: m.rules_configuration.map(|c| RulesConfigurationType {
                    rules: c
                        .rules
                        .into_iter()
                        .map(|r| MappingRule {
                            claim: r.claim,
                            match_type: r.match_type,
                            value: r.value,
                            role_arn: r.role_arn,
                        })
                        .collect(),
                }),
            };
            (provider, mapping)
        })
        .collect();
    Ok(RolesFile { roles, role_mappings })
}

fn read_mappings_json(path: &Path) -> Result<RolesFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --mappings-json {}", path.display()))?;
    parse_mappings_json(&text).with_context(|| format!("--mappings-json {}", path.display()))
}

fn show(p: &IdentityPool) {
    println!("id:                      {}", p.identity_pool_id);
    println!("name:                    {}", p.identity_pool_name);
    println!("allow_unauthenticated:   {}", p.allow_unauthenticated_identities);
    println!("allow_classic_flow:      {}", p.allow_classic_flow);
    println!("developer_provider_name: {}", p.developer_provider_name);
    println!("cognito_providers:");
    for c in &p.cognito_identity_providers {
        let check = if c.server_side_token_check {
            "  server-side-check"
        } else {
            ""
        };
        println!("  {}  client-id={}{check}", c.provider_name, c.client_id);
    }
    println!("oidc_providers:");
    for o in &p.open_id_connect_providers {
        let keys = match (o.jwks_uri.as_str(), o.discovery_url.as_str()) {
            ("", "") => String::new(),
            ("", d) => format!("  discovery-url={d}"),
            (j, _) => format!("  jwks-uri={j}"),
        };
        println!(
            "  {}  issuer={}  client-ids={}{keys}",
            o.provider_name,
            o.issuer,
            o.client_ids.join(",")
        );
    }
    let pairs = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    println!("login_providers:         {}", pairs(&p.supported_login_providers));
    println!("tags:                    {}", pairs(&p.identity_pool_tags));
    println!("created:                 {}", p.creation_date);
    println!("modified:                {}", p.last_modified_date);
}

fn show_roles(r: &GetIdentityPoolRolesResponse) {
    let role = |k: &str| r.roles.get(k).map(String::as_str).unwrap_or("-").to_string();
    println!("identity_pool_id: {}", r.identity_pool_id);
    println!("authenticated:    {}", role("authenticated"));
    println!("unauthenticated:  {}", role("unauthenticated"));
    println!("role_mappings:{}", if r.role_mappings.is_empty() { " -" } else { "" });
    for (provider, m) in &r.role_mappings {
        println!("  {provider}  {}  ambiguous={}", m.r#type, m.ambiguous_role_resolution);
        for (i, rule) in m.rules_configuration.iter().flat_map(|c| &c.rules).enumerate() {
            println!(
                "    {}. {} {} {:?} -> {}",
                i + 1,
                rule.claim,
                rule.match_type,
                rule.value,
                rule.role_arn
            );
        }
    }
}

/// Runs one `tessera identity-pool` command.
pub async fn run(g: &Global, cmd: IdentityPoolCmd) -> Result<()> {
    // Read before connecting, so a bad file fails without a round trip.
    let roles_file = match &cmd {
        IdentityPoolCmd::SetRoles(SetRolesArgs {
            mappings_json: Some(path),
            ..
        }) => Some(read_mappings_json(path)?),
        _ => None,
    };
    let client = admin_client(g).await?;
    match cmd {
        IdentityPoolCmd::Create(args) => create(g, &client, args).await,
        IdentityPoolCmd::Get { identity_pool_id } => {
            let p = client
                .describe_identity_pool(&identity_pool_id)
                .await
                .map_err(status_err)?;
            print(g, &p, || show(&p))
        }
        IdentityPoolCmd::Update(args) => update(g, &client, args).await,
        IdentityPoolCmd::Delete { identity_pool_id } => {
            client
                .identity()
                .delete_identity_pool(client.req(DeleteIdentityPoolRequest {
                    identity_pool_id: identity_pool_id.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "deleted": identity_pool_id }), || {
                println!("deleted {identity_pool_id}")
            })
        }
        IdentityPoolCmd::List => {
            let pools = client.list_all_identity_pools().await.map_err(status_err)?;
            print(g, &serde_json::json!({ "identity_pools": pools }), || {
                println!("{:<56} NAME", "ID");
                for p in &pools {
                    println!("{:<56} {}", p.identity_pool_id, p.identity_pool_name);
                }
            })
        }
        IdentityPoolCmd::SetRoles(args) => set_roles(g, &client, args, roles_file).await,
        IdentityPoolCmd::GetRoles { identity_pool_id } => get_roles(g, &client, identity_pool_id).await,
    }
}

/// `identity-pool create`: the flags onto an empty pool; prints the id (or
/// the pool as JSON).
async fn create(g: &Global, client: &Client, args: CreateArgs) -> Result<()> {
    let mut p = IdentityPool {
        identity_pool_name: args.name,
        ..Default::default()
    };
    args.settings.apply(&mut p)?;
    let p = client
        .identity()
        .create_identity_pool(client.req(CreateIdentityPoolRequest {
            identity_pool_name: p.identity_pool_name,
            allow_unauthenticated_identities: p.allow_unauthenticated_identities,
            allow_classic_flow: p.allow_classic_flow,
            supported_login_providers: p.supported_login_providers,
            developer_provider_name: p.developer_provider_name,
            cognito_identity_providers: p.cognito_identity_providers,
            identity_pool_tags: p.identity_pool_tags,
            open_id_connect_providers: p.open_id_connect_providers,
        }))
        .await
        .map_err(status_err)?
        .into_inner();
    print(g, &p, || println!("{}", p.identity_pool_id))
}

/// `identity-pool update`: UpdateIdentityPool replaces every setting, so
/// the pool is read first and only what the flags name is changed;
/// `update --allow-unauthenticated false` keeps the providers.
async fn update(g: &Global, client: &Client, args: UpdateArgs) -> Result<()> {
    let UpdateArgs {
        identity_pool_id,
        name,
        settings,
        clear_cognito_providers,
        clear_oidc_providers,
        clear_login_providers,
        clear_tags,
    } = args;
    let clears = clear_cognito_providers || clear_oidc_providers || clear_login_providers || clear_tags;
    if name.is_none() && settings.is_empty() && !clears {
        bail!(
            "nothing to update: give --name, --allow-unauthenticated, --allow-classic-flow, \
             --developer-provider-name, a provider, --tag or a --clear-* flag"
        );
    }
    let mut p = client
        .describe_identity_pool(&identity_pool_id)
        .await
        .map_err(status_err)?;
    if let Some(name) = name {
        p.identity_pool_name = name;
    }
    settings.apply(&mut p)?;
    if clear_cognito_providers {
        p.cognito_identity_providers.clear();
    }
    if clear_oidc_providers {
        p.open_id_connect_providers.clear();
    }
    if clear_login_providers {
        p.supported_login_providers.clear();
    }
    if clear_tags {
        p.identity_pool_tags.clear();
    }
    let p = client
        .identity()
        .update_identity_pool(client.req(p))
        .await
        .map_err(status_err)?
        .into_inner();
    print(g, &p, || show(&p))
}

/// `identity-pool set-roles`: builds the whole role set (the call replaces
/// it), sets it, and prints it as get-roles does.
async fn set_roles(g: &Global, client: &Client, args: SetRolesArgs, file: Option<RolesFile>) -> Result<()> {
    let SetRolesArgs {
        identity_pool_id,
        authenticated_role,
        unauthenticated_role,
        token_mappings,
        rules,
        ambiguous,
        mappings_json: _,
        clear,
    } = args;
    let any_mapping_flag = !token_mappings.is_empty() || !rules.is_empty() || !ambiguous.is_empty();
    if !clear && authenticated_role.is_none() && unauthenticated_role.is_none() && !any_mapping_flag && file.is_none() {
        bail!(
            "nothing to set: give --authenticated-role, --unauthenticated-role, --token-mapping, --rule \
             or --mappings-json (or --clear to remove every role and mapping)"
        );
    }
    let (mut roles, role_mappings) = match file {
        Some(f) => (f.roles.unwrap_or_default(), f.role_mappings),
        None if any_mapping_flag => {
            // Rules are split by the pool's provider names, so read them.
            let pool = client
                .describe_identity_pool(&identity_pool_id)
                .await
                .map_err(status_err)?;
            let providers = provider_names(&pool);
            (
                BTreeMap::new(),
                mappings_from_flags(&token_mappings, &rules, &ambiguous, &providers)?,
            )
        }
        None => (BTreeMap::new(), BTreeMap::new()),
    };
    if let Some(r) = authenticated_role {
        roles.insert("authenticated".into(), r);
    }
    if let Some(r) = unauthenticated_role {
        roles.insert("unauthenticated".into(), r);
    }
    client
        .identity()
        .set_identity_pool_roles(client.req(SetIdentityPoolRolesRequest {
            identity_pool_id: identity_pool_id.clone(),
            roles,
            role_mappings,
        }))
        .await
        .map_err(status_err)?;
    get_roles(g, client, identity_pool_id).await
}

/// `identity-pool get-roles`.
async fn get_roles(g: &Global, client: &Client, identity_pool_id: String) -> Result<()> {
    let r = client
        .identity()
        .get_identity_pool_roles(client.req(GetIdentityPoolRolesRequest { identity_pool_id }))
        .await
        .map_err(status_err)?
        .into_inner();
    print(g, &r, || show_roles(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers() -> Vec<String> {
        vec![
            "127.0.0.1:7700/eu-west-1_abc".into(),
            "accounts.google.com".into(),
            "login.example.com/realm".into(),
        ]
    }

    #[test]
    fn cognito_provider_forms() {
        let p = parse_cognito_provider("http://127.0.0.1:7700/eu-west-1_abc,client1").unwrap();
        assert_eq!(p.provider_name, "http://127.0.0.1:7700/eu-west-1_abc");
        assert_eq!(p.client_id, "client1");
        assert!(!p.server_side_token_check);
        let p = parse_cognito_provider("h/eu-west-1_abc, c , server-side-check").unwrap();
        assert!(p.server_side_token_check);
        let e = parse_cognito_provider("h/x,c,check").unwrap_err().to_string();
        assert!(e.contains("\"check\" is not server-side-check"), "{e}");
        assert!(parse_cognito_provider("h/x").is_err());
        assert!(parse_cognito_provider("h/x,").is_err());
    }

    #[test]
    fn oidc_provider_forms() {
        let p = parse_oidc_provider(
            "issuer=https://login.example.com/realm,client-id=a,client-id=b,jwks-uri=https://k.example.com/jwks?x=1",
        )
        .unwrap();
        assert_eq!(p.provider_name, "login.example.com/realm");
        assert_eq!(p.issuer, "https://login.example.com/realm");
        assert_eq!(p.client_ids, ["a", "b"]);
        assert_eq!(p.jwks_uri, "https://k.example.com/jwks?x=1");
        assert_eq!(p.discovery_url, "");
        let p = parse_oidc_provider("issuer=accounts.google.com,client-id=a").unwrap();
        assert_eq!(p.issuer, "https://accounts.google.com");
        assert_eq!(p.provider_name, "accounts.google.com");
        for (bad, why) in [
            ("client-id=a", "issuer is required"),
            ("issuer=https://x", "at least one client-id"),
            (
                "issuer=https://x,client-id=a,jwks-uri=https://j,discovery-url=https://d",
                "not both",
            ),
            ("issuer=https://x,issuer=https://y,client-id=a", "issuer given twice"),
            ("issuer=https://x,client-id=a,audience=b", "unknown key \"audience\""),
            ("issuer=https://x,client-id", "is not KEY=VALUE"),
        ] {
            let e = parse_oidc_provider(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pairs_refuse_duplicates_and_missing_equals() {
        let v = vec!["a=1".to_string(), "b=x=y".to_string()];
        let m = parse_pairs("--tag", "KEY=VALUE", &v).unwrap();
        assert_eq!(m.get("b").map(String::as_str), Some("x=y"));
        assert!(parse_pairs("--tag", "KEY=VALUE", &["a=1".into(), "a=2".into()]).is_err());
        assert!(parse_pairs("--tag", "KEY=VALUE", &["a".into()]).is_err());
        assert!(parse_pairs("--tag", "KEY=VALUE", &["=a".into()]).is_err());
    }

    #[test]
    fn rules_split_on_what_each_part_must_be() {
        let ps = providers();
        // A provider with a port, a claim with a colon, a value with a
        // colon, a role ARN.
        let (p, r) = parse_rule(
            "http://127.0.0.1:7700/eu-west-1_abc:custom:dept:Equals:a:b:arn:aws:iam::123456789012:role/Teachers",
            &ps,
        )
        .unwrap();
        assert_eq!(p, "127.0.0.1:7700/eu-west-1_abc");
        assert_eq!(r.claim, "custom:dept");
        assert_eq!(r.match_type, "Equals");
        assert_eq!(r.value, "a:b");
        assert_eq!(r.role_arn, "arn:aws:iam::123456789012:role/Teachers");
        let (p, r) = parse_rule("accounts.google.com:email:StartsWith:ann@:Admins", &ps).unwrap();
        assert_eq!(p, "accounts.google.com");
        assert_eq!((r.claim.as_str(), r.match_type.as_str()), ("email", "StartsWith"));
        assert_eq!((r.value.as_str(), r.role_arn.as_str()), ("ann@", "Admins"));
        for (bad, why) in [
            ("other.example.com:email:Equals:x:R", "does not name a login provider"),
            ("accounts.google.com:email:Is:x:R", "no MATCH_TYPE"),
            ("accounts.google.com::Equals:x:R", "CLAIM is empty"),
            ("accounts.google.com:email:Equals::R", "must not be empty"),
            ("accounts.google.com:email:Equals:x:", "must not be empty"),
        ] {
            let e = parse_rule(bad, &ps).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn mappings_group_rules_per_provider_in_order() {
        let ps = providers();
        let m = mappings_from_flags(
            &["127.0.0.1:7700/eu-west-1_abc:Deny".into()],
            &[
                "accounts.google.com:email:Equals:a@x:A".into(),
                "login.example.com/realm:groups:Contains:staff:S".into(),
                "accounts.google.com:email:Equals:b@x:B".into(),
            ],
            &["accounts.google.com=Deny".into()],
            &ps,
        )
        .unwrap();
        let token = &m["127.0.0.1:7700/eu-west-1_abc"];
        assert_eq!(
            (token.r#type.as_str(), token.ambiguous_role_resolution.as_str()),
            ("Token", "Deny")
        );
        let google = &m["accounts.google.com"];
        assert_eq!(google.ambiguous_role_resolution, "Deny");
        let roles: Vec<&str> = google
            .rules_configuration
            .iter()
            .flat_map(|c| &c.rules)
            .map(|r| r.role_arn.as_str())
            .collect();
        assert_eq!(roles, ["A", "B"]);
        assert_eq!(m["login.example.com/realm"].ambiguous_role_resolution, "");

        let e = mappings_from_flags(&["accounts.google.com:deny".into()], &[], &[], &ps)
            .unwrap_err()
            .to_string();
        assert!(e.contains("write Deny"), "{e}");
        let e = mappings_from_flags(&[], &[], &["accounts.google.com=Deny".into()], &ps)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no --token-mapping or --rule"), "{e}");
        let e = mappings_from_flags(
            &["accounts.google.com".into()],
            &["accounts.google.com:email:Equals:a:A".into()],
            &[],
            &ps,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("by token or by rules"), "{e}");
    }

    #[test]
    fn mappings_json_takes_ours_cognitos_and_a_whole_get_roles_output() {
        let ours = r#"{"accounts.google.com": {"type": "Rules", "ambiguous_role_resolution": "Deny",
            "rules_configuration": {"rules": [{"claim": "email", "match_type": "Equals", "value": "a", "role_arn": "A"}]}}}"#;
        let f = parse_mappings_json(ours).unwrap();
        assert_eq!(f.roles, None);
        let m = &f.role_mappings["accounts.google.com"];
        assert_eq!(m.r#type, "Rules");
        assert_eq!(m.rules_configuration.as_ref().map(|c| c.rules.len()), Some(1));

        let whole = r#"{"identity_pool_id": "local:1", "roles": {"authenticated": "arn:tessera:iam:::role/R"},
            "role_mappings": {"x/eu-west-1_a": {"type": "Token", "ambiguous_role_resolution": "AuthenticatedRole", "rules_configuration": null}}}"#;
        let f = parse_mappings_json(whole).unwrap();
        assert_eq!(f.roles.unwrap()["authenticated"], "arn:tessera:iam:::role/R");
        assert_eq!(f.role_mappings["x/eu-west-1_a"].r#type, "Token");

        let cognito = r#"{"IdentityPoolId": "x", "Roles": {}, "RoleMappings": {"p": {"Type": "Rules",
            "AmbiguousRoleResolution": "Deny", "RulesConfiguration": {"Rules": [{"Claim": "c", "MatchType": "Contains", "Value": "v", "RoleARN": "arn:aws:iam::1:role/R"}]}}}}"#;
        let f = parse_mappings_json(cognito).unwrap();
        let rule = &f.role_mappings["p"].rules_configuration.as_ref().unwrap().rules[0];
        assert_eq!(rule.role_arn, "arn:aws:iam::1:role/R");

        let typo = r#"{"p": {"type": "Token", "ambigous_role_resolution": "Deny"}}"#;
        let e = format!("{:#}", parse_mappings_json(typo).unwrap_err());
        assert!(e.contains("ambigous_role_resolution"), "{e}");
        assert!(parse_mappings_json("[]").is_err());
    }
}
