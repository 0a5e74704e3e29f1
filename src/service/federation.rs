//! Federation into user pools, the admin half: a pool's external identity
//! providers (`CreateIdentityProvider` and the rest) and the links of
//! external identities to users (`AdminLinkProviderForUser`,
//! `AdminDisableProviderForUser`). The sign-in half is
//! `flows::federated` (token exchange) and `oauth::social` (redirect).
//!
//! A provider's secrets (`client_secret`, Apple's `private_key`) are
//! sealed here, before the provider is proposed, so no clear secret ever
//! reaches the Raft log, a snapshot or a backup; only the social sign-in
//! opens them, at the token exchange ([`open_secret`]). Describe, List,
//! Create and Update answer without them ([`IdentityProvider::redacted`]);
//! an update whose details leave a secret out keeps the stored one, and an
//! empty value removes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::pools::existing_pool;
use super::{page_limit, submit, ServiceError};
use crate::auth::sealing::{SealingCell, SealingKey};
use crate::command::{DeleteIdentityProvider, DisableProviderForUser, LinkProviderForUser, PutIdentityProvider};
use crate::model::app_client::SealedSecret;
use crate::model::identity_provider::{
    validate_provider_name, IdentityProvider, ProviderLink, ProviderType, SEALED_PREFIX, SECRET_DETAILS,
};
use crate::model::user::validate_username;
use crate::raft::RaftNode;

/// Longest clear `client_secret` accepted.
pub const MAX_CLIENT_SECRET: usize = 1024;
/// Longest clear `private_key` (PEM) accepted.
pub const MAX_PRIVATE_KEY: usize = 2048;

/// The associated data of secret detail `name` of a provider: a sealed
/// secret opens only for the pool, provider and detail it was sealed for.
fn secret_context(pool_id: &str, provider_name: &str, name: &str) -> Vec<u8> {
    let mut c = b"tessera-idp-secret\0".to_vec();
    for part in [pool_id, provider_name, name] {
        c.extend_from_slice(part.as_bytes());
        c.push(0);
    }
    c
}

/// Seals a clear secret as a detail value: `sealed:` and
/// base64url(nonce || ciphertext).
fn seal_secret(key: &SealingKey, pool_id: &str, provider_name: &str, name: &str, plain: &str) -> String {
    use base64::Engine as _;
    let sealed = key.seal_bytes(
        &secret_context(pool_id, provider_name, name),
        plain.as_bytes(),
        crate::clock::random_bytes::<12>(),
    );
    let mut raw = sealed.nonce.to_vec();
    raw.extend_from_slice(&sealed.ciphertext);
    format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// The clear value of secret detail `name` of `provider`, if it has one.
/// An error if it does not open (another cluster's key, or tampering).
pub(crate) fn open_secret(
    key: &SealingKey,
    provider: &IdentityProvider,
    name: &str,
) -> Result<Option<String>, ServiceError> {
    use base64::Engine as _;
    let Some(value) = provider.details.get(name) else {
        return Ok(None);
    };
    let broken = || {
        ServiceError::internal(format!(
            "the sealed {name} of identity provider {} does not open; set it again",
            provider.provider_name
        ))
    };
    let raw = value
        .strip_prefix(SEALED_PREFIX)
        .and_then(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b).ok())
        .filter(|r| r.len() > 12)
        .ok_or_else(broken)?;
    let (nonce, ciphertext) = raw.split_at(12);
    let sealed = SealedSecret {
        nonce: nonce.try_into().map_err(|_| broken())?,
        ciphertext: ciphertext.to_vec(),
    };
    let plain = key
        .open_bytes(
            &secret_context(&provider.pool_id, &provider.provider_name, name),
            &sealed,
        )
        .ok_or_else(broken)?;
    String::from_utf8(plain).map(Some).map_err(|_| broken())
}

/// Checks a clear secret detail before it is sealed: bounded, and for
/// Apple's key, a PKCS#8 P-256 key that signs.
fn check_clear_secret(name: &str, value: &str) -> Result<(), ServiceError> {
    let field = format!("provider_details.{name}");
    if name == "private_key" {
        if value.len() > MAX_PRIVATE_KEY {
            return Err(ServiceError::invalid(format!(
                "{field}: at most {MAX_PRIVATE_KEY} bytes"
            )));
        }
        crate::service::oauth::social::apple_signing_key(value)
            .map_err(|why| ServiceError::invalid(format!("{field}: {why}")))?;
        return Ok(());
    }
    if value.chars().count() > MAX_CLIENT_SECRET || value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{field}: at most {MAX_CLIENT_SECRET} characters, no control characters"
        )));
    }
    Ok(())
}

/// The attribute name that names an external identity by its subject.
pub const SUBJECT_ATTRIBUTE: &str = "Cognito_Subject";

/// What a caller gives for a provider; `None` keeps the stored value on
/// update.
#[derive(Debug, Clone, Default)]
pub struct ProviderInput {
    /// `ProviderDetails`.
    pub details: Option<BTreeMap<String, String>>,
    /// `AttributeMapping`.
    pub attribute_mapping: Option<BTreeMap<String, String>>,
    /// `IdpIdentifiers`.
    pub idp_identifiers: Option<Vec<String>>,
}

/// Identity providers and links of one node.
#[derive(Clone)]
pub struct FederationService {
    node: Arc<RaftNode>,
    cursors: Cursors,
    sealing: Arc<SealingCell>,
}

impl FederationService {
    /// The federation service of `node`; `sealing` seals providers'
    /// secrets.
    pub fn new(node: Arc<RaftNode>, cursors: Cursors, sealing: Arc<SealingCell>) -> Self {
        FederationService { node, cursors, sealing }
    }

    /// Seals the clear secrets in `details` in place. `stored`: the
    /// details before an update, whose sealed secrets are kept when
    /// `details` leaves them out; an empty value removes a secret.
    fn seal_secrets(
        &self,
        pool_id: &str,
        provider_name: &str,
        details: &mut BTreeMap<String, String>,
        stored: Option<&BTreeMap<String, String>>,
    ) -> Result<(), ServiceError> {
        for name in SECRET_DETAILS {
            match details.get(*name).cloned() {
                Some(v) if v.is_empty() => {
                    details.remove(*name);
                }
                Some(v) => {
                    check_clear_secret(name, &v)?;
                    let key = super::sealing_key(&self.sealing)?;
                    details.insert(name.to_string(), seal_secret(&key, pool_id, provider_name, name, &v));
                }
                None => {
                    if let Some(old) = stored.and_then(|s| s.get(*name)) {
                        details.insert(name.to_string(), old.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// `CreateIdentityProvider`.
    pub async fn create(
        &self,
        pool_id: &str,
        provider_name: &str,
        provider_type: &str,
        input: ProviderInput,
    ) -> Result<IdentityProvider, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        validate_provider_name(provider_name)?;
        let now = crate::clock::now_millis();
        let mut details = input.details.unwrap_or_default();
        self.seal_secrets(pool_id, provider_name, &mut details, None)?;
        let provider = IdentityProvider {
            pool_id: pool_id.to_string(),
            provider_name: provider_name.to_string(),
            provider_type: ProviderType::parse(provider_type)?,
            details,
            attribute_mapping: input.attribute_mapping.unwrap_or_default(),
            idp_identifiers: input.idp_identifiers.unwrap_or_default(),
            creation_date: now,
            last_modified_date: now,
        };
        provider.validate()?;
        let p: IdentityProvider = submit(&self.node, PutIdentityProvider { provider, create: true }).await?;
        Ok(p.redacted())
    }

    /// `DescribeIdentityProvider`, without the secrets.
    pub async fn describe(&self, pool_id: &str, provider_name: &str) -> Result<IdentityProvider, ServiceError> {
        Ok(self.stored(pool_id, provider_name).await?.redacted())
    }

    /// The provider as stored, sealed secrets included.
    async fn stored(&self, pool_id: &str, provider_name: &str) -> Result<IdentityProvider, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        validate_provider_name(provider_name)?;
        let find = || self.node.store().identity_provider(pool_id, provider_name);
        if let Some(p) = find()? {
            return Ok(p);
        }
        self.node.read_barrier().await?;
        find()?.ok_or_else(|| ServiceError::not_found(format!("Identity provider {provider_name} does not exist.")))
    }

    /// `UpdateIdentityProvider`: what is given replaces what is stored.
    pub async fn update(
        &self,
        pool_id: &str,
        provider_name: &str,
        input: ProviderInput,
    ) -> Result<IdentityProvider, ServiceError> {
        let mut p = self.stored(pool_id, provider_name).await?;
        if let Some(mut d) = input.details {
            self.seal_secrets(pool_id, provider_name, &mut d, Some(&p.details))?;
            p.details = d;
        }
        if let Some(m) = input.attribute_mapping {
            p.attribute_mapping = m;
        }
        if let Some(i) = input.idp_identifiers {
            p.idp_identifiers = i;
        }
        p.last_modified_date = crate::clock::now_millis();
        p.validate()?;
        let p: IdentityProvider = submit(
            &self.node,
            PutIdentityProvider {
                provider: p,
                create: false,
            },
        )
        .await?;
        Ok(p.redacted())
    }

    /// `DeleteIdentityProvider`.
    pub async fn delete(&self, pool_id: &str, provider_name: &str) -> Result<(), ServiceError> {
        validate_provider_name(provider_name)?;
        submit(
            &self.node,
            DeleteIdentityProvider {
                pool_id: pool_id.to_string(),
                provider_name: provider_name.to_string(),
            },
        )
        .await?;
        Ok(())
    }

    /// `ListIdentityProviders`: a page by name, with a sealed cursor.
    pub async fn list(
        &self,
        pool_id: &str,
        max_results: i32,
        next_token: &str,
    ) -> Result<(Vec<IdentityProvider>, Option<String>), ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let limit = page_limit("max_results", max_results)?;
        let parts = [pool_id];
        let scope = Scope::next_token("ListIdentityProviders", &parts);
        let after = self.cursors.resume_text(&scope, next_token)?;
        self.node.read_barrier().await?;
        let mut page = self
            .node
            .store()
            .identity_providers_page(pool_id, after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|p| self.cursors.issue(&scope, p.provider_name.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page.iter().map(IdentityProvider::redacted).collect(), next))
    }

    /// The `(provider, subject)` a `ProviderUserIdentifierType` names.
    fn external(&self, provider: &str, attribute: &str, value: &str) -> Result<(String, String), ServiceError> {
        validate_provider_name(provider)?;
        if !attribute.is_empty() && attribute != SUBJECT_ATTRIBUTE {
            return Err(ServiceError::invalid(format!(
                "provider_attribute_name: {attribute:?}; external identities are named by {SUBJECT_ATTRIBUTE}"
            )));
        }
        let n = value.chars().count();
        if n == 0 || n > 255 || value.contains('\0') {
            return Err(ServiceError::invalid(
                "provider_attribute_value: the subject, 1 to 255 characters",
            ));
        }
        Ok((provider.to_string(), value.to_string()))
    }

    /// `AdminLinkProviderForUser`: `(provider, attribute, subject)` signs
    /// in as the pool's own user `username` from now on.
    pub async fn link(
        &self,
        pool_id: &str,
        destination_provider: &str,
        username: &str,
        source: (&str, &str, &str),
    ) -> Result<(), ServiceError> {
        if destination_provider != "Cognito" {
            return Err(ServiceError::invalid(
                "destination_user.provider_name: must be \"Cognito\" (a user of the pool itself)",
            ));
        }
        validate_username(username)?;
        let (provider, subject) = self.external(source.0, source.1, source.2)?;
        let pool = existing_pool(&self.node, pool_id).await?;
        self.describe(pool_id, &provider).await?;
        let normalized = pool.settings.normalize_username(username);
        let find = || self.node.store().sub_by_username(pool_id, &normalized);
        let sub = match find()? {
            Some(s) => s,
            None => {
                self.node.read_barrier().await?;
                find()?.ok_or_else(ServiceError::user_not_found)?
            }
        };
        submit(
            &self.node,
            LinkProviderForUser {
                pool_id: pool_id.to_string(),
                sub,
                link: ProviderLink {
                    provider_name: provider,
                    subject,
                    linked_at: crate::clock::now_millis(),
                },
            },
        )
        .await?;
        Ok(())
    }

    /// `AdminDisableProviderForUser`.
    pub async fn disable(&self, pool_id: &str, user: (&str, &str, &str)) -> Result<(), ServiceError> {
        let (provider, subject) = self.external(user.0, user.1, user.2)?;
        existing_pool(&self.node, pool_id).await?;
        submit(
            &self.node,
            DisableProviderForUser {
                pool_id: pool_id.to_string(),
                provider_name: provider,
                subject,
                now: crate::clock::now_millis(),
            },
        )
        .await
    }
}
