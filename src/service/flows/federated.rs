//! Federated sign-in by token exchange (`InitiateAuth` with
//! `FEDERATED_ID_TOKEN_AUTH`, a Tessera addition): an app that signed the
//! user in with Google's or Apple's SDK, or any OpenID Connect provider,
//! hands the provider's id token to the pool and gets the pool's own
//! tokens back.
//!
//! The token is checked against the pool's identity provider of that name
//! (`auth::oidc`: its keys, issuer, client ids, expiry). The external
//! identity then signs in as the user it is linked to
//! (`AdminLinkProviderForUser`), or as the federated user it created the
//! first time: status `EXTERNAL_PROVIDER`, username `{provider}_{subject}`,
//! attributes mapped from the token's claims by the provider's
//! `attribute_mapping`. The first sign-in is a replicated write that
//! decides the link in `apply`; later ones are local reads, unless mapped
//! claims changed.
//!
//! The half from a verified id token to the user ([`AuthService::federated_user`])
//! is shared with the hosted page's social sign-in by redirect
//! (`service::oauth::social`), which gets its id token from the
//! provider's token endpoint instead of from the app.

use std::collections::BTreeMap;

use serde_json::Value;

use super::hooks::TokenSource;
use super::signin::AuthAnswer;
use super::{AuthService, Caller};
use crate::auth::oidc::{OidcProvider, VerifiedIdToken};
use crate::command::FederatedSignIn;
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::identity_provider::IdentityProvider;
use crate::model::pool::UserPool;
use crate::model::user::{validate_new_attributes, User, UserStatus};
use crate::service::{ErrorKind, Origin, ServiceError};

/// Longest external id token accepted.
pub const MAX_ID_TOKEN: usize = 16 * 1024;

/// A claim as an attribute value: strings as they are, numbers and
/// booleans in their JSON text.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

/// The attributes a provider's mapping takes from verified claims, and the
/// mapped `email_verified` (a boolean or the strings "true"/"false").
fn mapped(
    provider: &IdentityProvider,
    claims: &serde_json::Map<String, Value>,
) -> (BTreeMap<String, String>, Option<bool>) {
    let mut attributes = BTreeMap::new();
    let mut email_verified = None;
    for (attr, claim) in &provider.attribute_mapping {
        let Some(v) = claims.get(claim) else { continue };
        if attr == "email_verified" {
            email_verified = match v {
                Value::Bool(b) => Some(*b),
                Value::String(s) => Some(s == "true"),
                _ => None,
            };
            continue;
        }
        if let Some(text) = claim_text(v) {
            attributes.insert(attr.clone(), text);
        }
    }
    (attributes, email_verified)
}

impl AuthService {
    /// `FEDERATED_ID_TOKEN_AUTH`: `PROVIDER_NAME` and `ID_TOKEN`.
    pub(crate) async fn federated_auth(
        &self,
        caller: Caller,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let get = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
        let provider_name = get("PROVIDER_NAME");
        let token = get("ID_TOKEN");
        if provider_name.is_empty() || token.is_empty() {
            return Err(ServiceError::invalid(
                "auth_parameters: FEDERATED_ID_TOKEN_AUTH needs PROVIDER_NAME and ID_TOKEN",
            ));
        }
        if token.len() > MAX_ID_TOKEN {
            return Err(ServiceError::invalid(format!(
                "auth_parameters.ID_TOKEN: at most {MAX_ID_TOKEN} bytes"
            )));
        }
        let provider = self.identity_provider(&pool.id, provider_name).await?.ok_or_else(|| {
            ServiceError::invalid(format!(
                "auth_parameters.PROVIDER_NAME: the pool has no identity provider {provider_name:?}"
            ))
        })?;
        let now = crate::clock::now_millis();
        let verified = self.verify_external_token(&provider, token, now).await?;
        let user = self.federated_user(&pool, &provider, &verified, now).await?;
        let tokens = self
            .issue_tokens(&pool, &client, &user, now / 1000, TokenSource::Authentication, origin)
            .await?;
        self.audit_federated_sign_in(&pool.id, &user, &client.client_id, origin, provider_name, now);
        Ok(AuthAnswer::Tokens(tokens))
    }

    /// The pool's identity provider `name`, reading through a barrier when
    /// this node does not know it yet (it may have just been created
    /// through another node). `None` if the pool has none of that name.
    pub(crate) async fn identity_provider(
        &self,
        pool_id: &str,
        name: &str,
    ) -> Result<Option<IdentityProvider>, ServiceError> {
        crate::model::identity_provider::validate_provider_name(name)?;
        let store = self.node.store();
        if let Some(p) = store.identity_provider(pool_id, name)? {
            return Ok(Some(p));
        }
        self.node.read_barrier().await?;
        Ok(store.identity_provider(pool_id, name)?)
    }

    /// Verifies `provider`'s id token at `now` (Unix ms) with the node's
    /// verifier (`auth::oidc`: keys, issuer, audiences = the provider's
    /// client ids, expiry). A provider that cannot be reached is
    /// `ExternalServiceException` (unavailable); any other failure is
    /// `NotAuthorizedException`, and never echoes the token.
    pub(crate) async fn verify_external_token(
        &self,
        provider: &IdentityProvider,
        token: &str,
        now: i64,
    ) -> Result<VerifiedIdToken, ServiceError> {
        let provider_name = &provider.provider_name;
        let config = OidcProvider {
            issuer: provider.issuer(),
            audiences: provider.client_ids(),
            jwks_uri: provider.details.get("jwks_uri").cloned(),
            discovery_url: provider.details.get("discovery_url").cloned(),
        };
        self.oidc.verify(&config, token, now / 1000).await.map_err(|e| {
            if e.cognito_exception() == "ExternalServiceException" {
                ServiceError::new(
                    ErrorKind::Unavailable,
                    "ExternalServiceException",
                    format!("{provider_name}: {e}"),
                )
            } else {
                ServiceError::not_authorized(format!("Invalid id token for provider {provider_name}: {e}"))
            }
        })
    }

    /// The user a verified external identity signs in as, shared by the
    /// token exchange and the hosted page's social sign-in: the user it
    /// is linked to, or the federated user `{provider}_{subject}` it
    /// creates the first time (a replicated `FederatedSignIn`, which also
    /// updates a federated user's mapped attributes when they changed).
    /// A disabled user is refused.
    pub(crate) async fn federated_user(
        &self,
        pool: &UserPool,
        provider: &IdentityProvider,
        verified: &VerifiedIdToken,
        now: i64,
    ) -> Result<User, ServiceError> {
        let provider_name = provider.provider_name.as_str();
        let store = self.node.store();
        let (attributes, email_verified) = mapped(provider, &verified.claims);
        let existing = match store.provider_link(&pool.id, provider_name, &verified.subject)? {
            Some(sub) => store.user(&pool.id, &sub)?,
            None => None,
        };
        let current = existing.filter(|u| {
            u.status != UserStatus::ExternalProvider
                || (attributes.iter().all(|(k, v)| u.attributes.get(k) == Some(v))
                    && email_verified.is_none_or(|v| v == u.email_verified))
        });
        let user = match current {
            // Known, and nothing to update: a read, like a password sign-in.
            Some(u) => u,
            None => {
                let username = provider.username_for(&verified.subject);
                if username.chars().count() > 128 {
                    return Err(ServiceError::invalid(format!(
                        "the federated username {provider_name}_<subject> would be longer than 128 characters"
                    )));
                }
                validate_new_attributes(&pool.settings, &attributes).map_err(|e| {
                    ServiceError::invalid(format!(
                        "the attributes mapped from {provider_name}'s token are refused ({e}); fix the attribute mapping"
                    ))
                })?;
                let user = User {
                    pool_id: pool.id.clone(),
                    sub: crate::clock::new_uuid().to_string(),
                    username,
                    attributes: attributes.clone(),
                    status: UserStatus::ExternalProvider,
                    enabled: true,
                    password_phc: None,
                    email_verified: email_verified.unwrap_or(false),
                    phone_number_verified: false,
                    created_at: now,
                    modified_at: now,
                    tokens_revoked_before_ms: 0,
                    temporary_password_expires_at: None,
                    refresh_revoked_before_ms: 0,
                    pending_attributes: BTreeMap::new(),
                };
                let user: User = crate::service::submit(
                    &self.node,
                    FederatedSignIn {
                        pool_id: pool.id.clone(),
                        provider_name: provider_name.to_string(),
                        subject: verified.subject.clone(),
                        user,
                        attributes,
                        email_verified,
                        now,
                    },
                )
                .await?;
                // The leader applied it; this node mints from its own state
                // (the `identities` claim reads the link), so it catches up
                // first. Only a first or changed sign-in pays for this.
                self.node.read_barrier().await?;
                user
            }
        };
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        Ok(user)
    }

    /// Records a successful federated sign-in of `user` through
    /// `provider_name` for `client_id` in the pool's audit log.
    pub(crate) fn audit_federated_sign_in(
        &self,
        pool_id: &str,
        user: &User,
        client_id: &str,
        origin: &Origin,
        provider_name: &str,
        now: i64,
    ) {
        self.audit.record_later(
            AuthEvent::draft(pool_id, AuthEventType::SignIn, now)
                .user(&user.username, &user.sub)
                .origin(client_id, &origin.ip)
                .detail(format!("federated through {provider_name}")),
        );
    }
}
