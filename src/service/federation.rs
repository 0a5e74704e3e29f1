//! Federation into user pools, the admin half: a pool's external identity
//! providers (`CreateIdentityProvider` and the rest) and the links of
//! external identities to users (`AdminLinkProviderForUser`,
//! `AdminDisableProviderForUser`). The sign-in half is
//! `flows::federated`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::pools::existing_pool;
use super::{page_limit, submit, ServiceError};
use crate::command::{DeleteIdentityProvider, DisableProviderForUser, LinkProviderForUser, PutIdentityProvider};
use crate::model::identity_provider::{validate_provider_name, IdentityProvider, ProviderLink, ProviderType};
use crate::model::user::validate_username;
use crate::raft::RaftNode;

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
}

impl FederationService {
    /// The federation service of `node`.
    pub fn new(node: Arc<RaftNode>, cursors: Cursors) -> Self {
        FederationService { node, cursors }
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
        let provider = IdentityProvider {
            pool_id: pool_id.to_string(),
            provider_name: provider_name.to_string(),
            provider_type: ProviderType::parse(provider_type)?,
            details: input.details.unwrap_or_default(),
            attribute_mapping: input.attribute_mapping.unwrap_or_default(),
            idp_identifiers: input.idp_identifiers.unwrap_or_default(),
            creation_date: now,
            last_modified_date: now,
        };
        provider.validate()?;
        submit(&self.node, PutIdentityProvider { provider, create: true }).await
    }

    /// `DescribeIdentityProvider`.
    pub async fn describe(&self, pool_id: &str, provider_name: &str) -> Result<IdentityProvider, ServiceError> {
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
        let mut p = self.describe(pool_id, provider_name).await?;
        if let Some(d) = input.details {
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
        submit(
            &self.node,
            PutIdentityProvider {
                provider: p,
                create: false,
            },
        )
        .await
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
        Ok((page, next))
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
