//! Apply logic of federation into user pools: identity providers, the
//! external-identity index, and federated sign-ins.
//!
//! The index `ProviderLinks` (provider and subject -> user) is unique and
//! decided here, as usernames are: two nodes racing on the first sign-in
//! of one external identity both propose [`FederatedSignIn`], and the one
//! applied second finds the link and answers with the user the first made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::users::{create, update_attributes, AttributeChange};
use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::identity_provider::{IdentityProvider, ProviderLink, MAX_PROVIDERS_PER_POOL};
use crate::model::user::{User, UserStatus};
use crate::store::identity::{provider_link_key, user_link_key};
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

fn link(batch: &mut SmBatch<'_>, pool_id: &str, sub: &str, l: &ProviderLink) -> Result<(), StoreError> {
    batch.put(
        Table::ProviderLinks,
        &provider_link_key(pool_id, &l.provider_name, &l.subject),
        &codec::encode(sub)?,
    )?;
    batch.put(
        Table::UserProviderLinks,
        &user_link_key(pool_id, sub, &l.provider_name),
        &codec::encode(l)?,
    )
}

/// Creates (`create`) or replaces an identity provider of a user pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutIdentityProvider {
    /// The provider as the proposer validated it.
    pub provider: IdentityProvider,
    /// `CreateIdentityProvider` rather than `UpdateIdentityProvider`.
    pub create: bool,
}

impl Apply for PutIdentityProvider {
    type Output = IdentityProvider;

    fn validate(&self) -> Result<(), Rejection> {
        self.provider.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let p = &self.provider;
        if store.pool(&p.pool_id)?.is_none() {
            return Ok(not_found("user pool", &p.pool_id));
        }
        let mut stored = p.clone();
        match (store.identity_provider(&p.pool_id, &p.provider_name)?, self.create) {
            (Some(_), true) => {
                return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                    kind: "identity provider".into(),
                    id: p.provider_name.clone(),
                }))
            }
            (None, false) => return Ok(not_found("identity provider", &p.provider_name)),
            (Some(old), false) => stored.creation_date = old.creation_date,
            (None, true) => {
                if store
                    .identity_providers_page(&p.pool_id, None, MAX_PROVIDERS_PER_POOL)?
                    .len()
                    >= MAX_PROVIDERS_PER_POOL
                {
                    return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                        "a user pool has at most {MAX_PROVIDERS_PER_POOL} identity providers"
                    ))));
                }
            }
        }
        batch.put(
            Table::IdentityProviders,
            &pool_key(&p.pool_id, p.provider_name.as_bytes()),
            &codec::encode(&stored)?,
        )?;
        Ok(Outcome::IdentityProvider(stored))
    }
}

/// Deletes an identity provider. Its users and links stay (a provider of
/// the same name brings them back), as in Cognito.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteIdentityProvider {
    /// The user pool.
    pub pool_id: String,
    /// The provider.
    pub provider_name: String,
}

impl Apply for DeleteIdentityProvider {
    type Output = IdentityProvider;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(p) = store.identity_provider(&self.pool_id, &self.provider_name)? else {
            return Ok(not_found("identity provider", &self.provider_name));
        };
        batch.delete(
            Table::IdentityProviders,
            &pool_key(&self.pool_id, self.provider_name.as_bytes()),
        )?;
        Ok(Outcome::IdentityProvider(p))
    }
}

/// A sign-in through an external identity provider: the user the
/// identity is linked to, or a new `EXTERNAL_PROVIDER` user (`user`, as
/// the proposer prepared it) linked to it. A federated user's mapped
/// attributes follow the provider's claims at every sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedSignIn {
    /// The user pool.
    pub pool_id: String,
    /// The provider's name in the pool.
    pub provider_name: String,
    /// The provider's `sub`.
    pub subject: String,
    /// The user to create if the identity is new.
    pub user: User,
    /// Mapped attributes, for an existing federated user.
    pub attributes: BTreeMap<String, String>,
    /// The provider's `email_verified`, when mapped.
    pub email_verified: Option<bool>,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for FederatedSignIn {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.identity_provider(&self.pool_id, &self.provider_name)?.is_none() {
            return Ok(not_found("identity provider", &self.provider_name));
        }
        if let Some(sub) = store.provider_link(&self.pool_id, &self.provider_name, &self.subject)? {
            if let Some(user) = store.user(&self.pool_id, &sub)? {
                let stale = self.attributes.iter().any(|(k, v)| user.attributes.get(k) != Some(v))
                    || self.email_verified.is_some_and(|v| v != user.email_verified);
                if user.status != UserStatus::ExternalProvider || !stale {
                    return Ok(Outcome::User(user));
                }
                let none = BTreeMap::new();
                return Ok(update_attributes(
                    store,
                    batch,
                    AttributeChange {
                        pool_id: &self.pool_id,
                        sub: &sub,
                        attributes: &self.attributes,
                        verified: (self.email_verified, None),
                        pending: &none,
                        code: None,
                        message: None,
                        now: self.now,
                    },
                )?);
            }
        }
        let out = create(store, batch, &self.user, None, None, false)?;
        if let Outcome::User(u) = &out {
            link(
                batch,
                &self.pool_id,
                &u.sub,
                &ProviderLink {
                    provider_name: self.provider_name.clone(),
                    subject: self.subject.clone(),
                    linked_at: self.now,
                },
            )?;
        }
        Ok(out)
    }
}

/// `AdminLinkProviderForUser`: an external identity signs in as an
/// existing user. Refused when the identity already signs in as someone
/// (Cognito asks for the federated user to be deleted first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkProviderForUser {
    /// The user pool.
    pub pool_id: String,
    /// The user it will sign in as.
    pub sub: String,
    /// The external identity.
    pub link: ProviderLink,
}

impl Apply for LinkProviderForUser {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(user) = store.user(&self.pool_id, &self.sub)? else {
            return Ok(not_found("user", &self.sub));
        };
        if user.status == UserStatus::ExternalProvider {
            return Ok(Outcome::Rejected(Rejection::Invalid(
                "the destination user must be a user of the pool itself, not a federated user".into(),
            )));
        }
        let l = &self.link;
        match store.provider_link(&self.pool_id, &l.provider_name, &l.subject)? {
            Some(sub) if sub == self.sub => return Ok(Outcome::User(user)),
            Some(_) => {
                return Ok(Outcome::Rejected(Rejection::AliasExists(format!(
                    "{} identity {} (it already signs in as another user; delete that user first)",
                    l.provider_name, l.subject
                ))))
            }
            None => {}
        }
        if store
            .user_links(&self.pool_id, &self.sub)?
            .iter()
            .any(|x| x.provider_name == l.provider_name)
        {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "the user already has a {} identity linked; unlink it first",
                l.provider_name
            ))));
        }
        link(batch, &self.pool_id, &self.sub, l)?;
        Ok(Outcome::User(user))
    }
}

/// `AdminDisableProviderForUser`: the external identity no longer signs
/// in; a federated user it created is disabled, and its tokens stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisableProviderForUser {
    /// The user pool.
    pub pool_id: String,
    /// The provider's name in the pool.
    pub provider_name: String,
    /// The provider's `sub`.
    pub subject: String,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for DisableProviderForUser {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(sub) = store.provider_link(&self.pool_id, &self.provider_name, &self.subject)? else {
            return Ok(not_found(
                "linked identity",
                &format!("{}:{}", self.provider_name, self.subject),
            ));
        };
        batch.delete(
            Table::ProviderLinks,
            &provider_link_key(&self.pool_id, &self.provider_name, &self.subject),
        )?;
        batch.delete(
            Table::UserProviderLinks,
            &user_link_key(&self.pool_id, &sub, &self.provider_name),
        )?;
        if let (Some(pool), Some(mut user)) = (store.pool(&self.pool_id)?, store.user(&self.pool_id, &sub)?) {
            if user.status == UserStatus::ExternalProvider {
                let old = user.clone();
                user.enabled = false;
                user.tokens_revoked_before_ms = self.now;
                user.refresh_revoked_before_ms = self.now;
                user.modified_at = self.now;
                super::users::save(batch, &pool.settings, Some(&old), &user)?;
            }
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_pool, user_in, POOL};
    use crate::model::identity_provider::ProviderType;

    fn provider() -> IdentityProvider {
        IdentityProvider {
            pool_id: POOL.into(),
            provider_name: "Corp".into(),
            provider_type: ProviderType::Oidc,
            details: [
                ("client_id".to_string(), "app".to_string()),
                ("oidc_issuer".to_string(), "https://login.example.com".to_string()),
            ]
            .into(),
            attribute_mapping: [("email".to_string(), "email".to_string())].into(),
            idp_identifiers: vec![],
            creation_date: 1,
            last_modified_date: 1,
        }
    }

    fn federated(sub: &str, subject: &str, email: &str) -> FederatedSignIn {
        let mut u = user_in(UserStatus::ExternalProvider, sub, &format!("Corp_{subject}"), email);
        u.password_phc = None;
        FederatedSignIn {
            pool_id: POOL.into(),
            provider_name: "Corp".into(),
            subject: subject.into(),
            attributes: u.attributes.clone(),
            user: u,
            email_verified: None,
            now: 5,
        }
    }

    fn user(out: Outcome) -> User {
        match out {
            Outcome::User(u) => u,
            other => panic!("expected a user, got {other:?}"),
        }
    }

    #[test]
    fn one_user_per_external_identity_even_when_two_sign_ins_race() {
        let (_dir, store) = store_with_pool(&[]);
        assert!(matches!(
            run(
                &store,
                PutIdentityProvider {
                    provider: provider(),
                    create: true
                }
            ),
            Outcome::IdentityProvider(_)
        ));
        let first = user(run(&store, federated("s1", "ext-1", "a@x.io")));
        let second = user(run(&store, federated("s2", "ext-1", "a@x.io")));
        assert_eq!(first.sub, second.sub);
        assert_eq!(store.user_count(POOL).unwrap(), 1);
        assert_eq!(store.user_links(POOL, "s1").unwrap().len(), 1);
        // A changed claim updates the federated user.
        let changed = user(run(&store, federated("s3", "ext-1", "b@x.io")));
        assert_eq!(changed.attributes["email"], "b@x.io");
        // Unlinking disables the federated user and frees the identity.
        run(
            &store,
            DisableProviderForUser {
                pool_id: POOL.into(),
                provider_name: "Corp".into(),
                subject: "ext-1".into(),
                now: 9,
            },
        );
        assert!(!store.user(POOL, "s1").unwrap().unwrap().enabled);
        assert_eq!(store.provider_link(POOL, "Corp", "ext-1").unwrap(), None);
    }

    #[test]
    fn linking_points_an_identity_at_an_existing_user_once() {
        let (_dir, store) = store_with_pool(&[]);
        run(
            &store,
            PutIdentityProvider {
                provider: provider(),
                create: true,
            },
        );
        let native = user_in(UserStatus::Confirmed, "n1", "ann", "ann@x.io");
        run(
            &store,
            crate::command::CreateUser {
                user: native,
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        let l = ProviderLink {
            provider_name: "Corp".into(),
            subject: "ext-9".into(),
            linked_at: 1,
        };
        let linked = user(run(
            &store,
            LinkProviderForUser {
                pool_id: POOL.into(),
                sub: "n1".into(),
                link: l.clone(),
            },
        ));
        assert_eq!(linked.username, "ann");
        // The identity now signs in as ann, without a new user.
        let signed = user(run(&store, federated("s7", "ext-9", "ann@x.io")));
        assert_eq!(signed.sub, "n1");
        assert_eq!(store.user_count(POOL).unwrap(), 1);
        // A federated user of another identity cannot take it over.
        let other = user(run(&store, federated("s8", "ext-10", "x@x.io")));
        let out = run(
            &store,
            LinkProviderForUser {
                pool_id: POOL.into(),
                sub: other.sub.clone(),
                link: l,
            },
        );
        assert!(matches!(out, Outcome::Rejected(_)), "{out:?}");
        // Deleting ann frees the identity.
        run(
            &store,
            crate::command::DeleteUser {
                pool_id: POOL.into(),
                sub: "n1".into(),
            },
        );
        assert_eq!(store.provider_link(POOL, "Corp", "ext-9").unwrap(), None);
    }
}
