//! Identities: `GetId`, guests and their upgrade, merges, listing,
//! deletion, unlinking, and developer-authenticated identities.

use std::collections::BTreeMap;

use super::logins::VerifiedLogins;
use super::IdentityService;
use crate::command::{
    DeleteIdentities, MergeDeveloperIdentities, ResolveIdentity, UnlinkLogins, MAX_DELETE_IDENTITIES,
};
use crate::model::identity::{Identity, Login, MAX_SUBJECT_CHARS};
use crate::model::identity_pool::{identity_id_from_random, validate_identity_id, IdentityPool};
use crate::service::cursor::Scope;
use crate::service::{page_limit, submit, Origin, ServiceError};

/// How many `merged_into` hops lead to a survivor at most (as in `apply`).
const MAX_MERGE_HOPS: usize = 8;

/// An identity that was merged away, named with its survivor.
fn merged_error(identity: &Identity) -> ServiceError {
    ServiceError::not_authorized(format!(
        "Identity '{}' was merged into '{}'; use that identity id.",
        identity.id,
        identity.merged_into.as_deref().unwrap_or("")
    ))
}

/// Cognito's answer when an authenticated identity is used without one of
/// its logins.
pub(crate) fn logins_dont_match() -> ServiceError {
    ServiceError::not_authorized(
        "Logins don't match. Please include at least one valid login for this identity or identity pool.",
    )
}

impl IdentityService {
    /// `GetId`: the identity of `logins` (created on first use), or a new
    /// guest identity when there are none and the pool admits guests.
    pub async fn get_id(
        &self,
        pool_id: &str,
        logins: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<String, ServiceError> {
        let pool = self.existing_pool(pool_id).await?;
        let verified = self.verify_logins(&pool, logins).await?;
        if let Some(id) = &verified.identity_id {
            // Our own OpenID token: it names the identity; any other logins
            // are linked to it.
            return Ok(self.resolve(&pool, &verified, Some(id)).await?.id);
        }
        if verified.logins.is_empty() {
            if !pool.allow_unauthenticated {
                return Err(ServiceError::not_authorized(
                    "Unauthenticated access is not supported for this identity pool.",
                ));
            }
            self.guest_allowed(origin)?;
        }
        Ok(self.resolve(&pool, &verified, None).await?.id)
    }

    /// The identity of verified logins (and of `identity_id`, when the
    /// caller holds one): a local read when one identity already holds
    /// every login, else a `ResolveIdentity` write that creates, links or
    /// merges in `apply`.
    pub(crate) async fn resolve(
        &self,
        pool: &IdentityPool,
        verified: &VerifiedLogins,
        identity_id: Option<&str>,
    ) -> Result<Identity, ServiceError> {
        let keys = verified.keys();
        if let Some(known) = self.known_identity(pool, &keys, identity_id)? {
            return Ok(known);
        }
        if identity_id.is_none() && !keys.is_empty() {
            // Another node may have created it a moment ago: a barrier is
            // cheaper than a write that merely finds it.
            self.node.read_barrier().await?;
            if let Some(known) = self.known_identity(pool, &keys, None)? {
                return Ok(known);
            }
        }
        let cmd = ResolveIdentity {
            pool_id: pool.id.clone(),
            logins: keys,
            identity_id: identity_id.map(str::to_string),
            new_id: identity_id_from_random(
                pool.id
                    .split(':')
                    .next()
                    .unwrap_or(crate::model::identity_pool::IDENTITY_ID_PREFIX),
                crate::clock::random_bytes::<16>(),
            ),
            now: crate::clock::now_millis(),
        };
        submit(&self.node, cmd).await
    }

    /// The identity that already holds every login in `keys` (and is
    /// `identity_id`, if given), without writing anything.
    fn known_identity(
        &self,
        pool: &IdentityPool,
        keys: &[Login],
        identity_id: Option<&str>,
    ) -> Result<Option<Identity>, ServiceError> {
        let store = self.node.store();
        let target = match (identity_id, keys.first()) {
            (Some(id), _) => id.to_string(),
            (None, Some(first)) => match store.identity_of_login(&pool.id, first)? {
                Some(id) => id,
                None => return Ok(None),
            },
            (None, None) => return Ok(None),
        };
        let Some(identity) = store.identity_by_id(&target)? else {
            return Ok(None);
        };
        if identity.pool_id != pool.id || identity.merged_into.is_some() {
            return Ok(None);
        }
        Ok(keys.iter().all(|k| identity.logins.contains(k)).then_some(identity))
    }

    /// The identity that `identity` was merged into (itself if it was not),
    /// following `merged_into` as `apply` does.
    async fn survivor(&self, mut identity: Identity) -> Result<Identity, ServiceError> {
        for _ in 0..MAX_MERGE_HOPS {
            match identity.merged_into.clone() {
                None => return Ok(identity),
                Some(next) => identity = self.existing_identity(&next).await?,
            }
        }
        Err(ServiceError::internal(format!(
            "identity {} is more than {MAX_MERGE_HOPS} merges away from its survivor",
            identity.id
        )))
    }

    /// The identity a call names, checked against the logins it presents:
    /// a guest needs none (and a pool that admits guests); an
    /// authenticated identity needs at least one of its own. Logins it
    /// does not hold yet are linked (a guest's upgrade), or merge their
    /// identity with it, as in Cognito. Returns the pool, the identity
    /// (the survivor of a merge) and the verified logins.
    pub(crate) async fn authenticate_identity(
        &self,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<(IdentityPool, Identity, VerifiedLogins), ServiceError> {
        let named = self.existing_identity(identity_id).await?;
        if named.merged_into.is_some() && logins.is_empty() {
            return Err(merged_error(&named));
        }
        // A merged identity's logins moved to its survivor, so it has none
        // of its own and must not pass for a guest (whoever names it would
        // link their login to the survivor): every check is the survivor's.
        let identity = self.survivor(named.clone()).await?;
        let pool = self.existing_pool(&identity.pool_id).await?;
        let verified = self.verify_logins(&pool, logins).await?;
        if let Some(vouched) = &verified.identity_id {
            if *vouched != identity.id && *vouched != named.id {
                return Err(logins_dont_match());
            }
        }
        if verified.logins.is_empty() {
            if !identity.is_guest() && verified.identity_id.is_none() {
                return Err(logins_dont_match());
            }
            if identity.is_guest() {
                if !pool.allow_unauthenticated {
                    return Err(ServiceError::not_authorized(
                        "Unauthenticated access is not supported for this identity pool.",
                    ));
                }
                self.guest_allowed(origin)?;
            }
            return Ok((pool, identity, verified));
        }
        // An authenticated identity must be proven by one of its own
        // logins; new logins may then be linked. A guest may link any.
        if !identity.is_guest()
            && verified.identity_id.is_none()
            && !verified.logins.iter().any(|l| identity.logins.contains(&l.login))
        {
            // A login of another identity, presented with this id: the two
            // are merged only if the caller proves this one as well.
            return Err(logins_dont_match());
        }
        let survivor = self.resolve(&pool, &verified, Some(&identity.id)).await?;
        Ok((pool, survivor, verified))
    }

    /// `DescribeIdentity`: an admin read, so after a barrier (a link or a
    /// merge just made through this node must show).
    pub async fn describe_identity(&self, identity_id: &str) -> Result<Identity, ServiceError> {
        validate_identity_id("identity_id", identity_id)?;
        self.node.read_barrier().await?;
        self.existing_identity(identity_id).await
    }

    /// `ListIdentities`: a page in id order, with a sealed cursor.
    pub async fn list_identities(
        &self,
        pool_id: &str,
        max_results: i32,
        next_token: &str,
        hide_disabled: bool,
    ) -> Result<(Vec<Identity>, Option<String>), ServiceError> {
        validate_identity_id("identity_pool_id", pool_id)?;
        let limit = page_limit("max_results", max_results)?;
        let parts = [pool_id];
        let scope = Scope::next_token("ListIdentities", &parts);
        let mut after = self.cursors.resume_text(&scope, next_token)?;
        self.node.read_barrier().await?;
        self.existing_pool(pool_id).await?;
        let store = self.node.store();
        let mut page = Vec::new();
        // Hidden (merged) identities are skipped; keep reading until the
        // page is full or the pool is exhausted.
        loop {
            let ids = store.pool_identity_ids(pool_id, after.as_deref(), limit + 1)?;
            let exhausted = ids.len() <= limit;
            for i in store.identities_by_id(&ids)? {
                after = Some(i.id.clone());
                if hide_disabled && i.merged_into.is_some() {
                    continue;
                }
                page.push(i);
                if page.len() > limit {
                    break;
                }
            }
            if page.len() > limit || exhausted {
                break;
            }
            // Every id of this window was read: go on after the last, even
            // if no identity was found for it.
            after = ids.last().cloned().or(after);
        }
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|i| self.cursors.issue(&scope, i.id.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }

    /// `DeleteIdentities`: at most 60; unknown ids are skipped.
    pub async fn delete_identities(&self, ids: &[String]) -> Result<(), ServiceError> {
        if ids.is_empty() || ids.len() > MAX_DELETE_IDENTITIES {
            return Err(ServiceError::invalid(format!(
                "identity_ids_to_delete: 1 to {MAX_DELETE_IDENTITIES} ids"
            )));
        }
        for id in ids {
            validate_identity_id("identity_ids_to_delete", id)?;
        }
        submit(
            &self.node,
            DeleteIdentities {
                identity_ids: ids.to_vec(),
            },
        )
        .await
    }

    /// `UnlinkIdentity`: the caller proves the identity with `logins`, and
    /// the logins of the providers in `logins_to_remove` are unlinked.
    pub async fn unlink_identity(
        &self,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
        logins_to_remove: &[String],
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        if logins.is_empty() {
            return Err(logins_dont_match());
        }
        let (pool, identity, _) = self.authenticate_identity(identity_id, logins, origin).await?;
        let mut remove = Vec::new();
        for provider in logins_to_remove {
            let name = crate::model::identity_pool::strip_scheme(provider);
            if pool.provider(name).is_none() {
                return Err(ServiceError::invalid(format!(
                    "logins_to_remove: {provider:?} is not a provider of this identity pool"
                )));
            }
            remove.extend(identity.logins.iter().filter(|l| l.provider == name).cloned());
        }
        submit(
            &self.node,
            UnlinkLogins {
                identity_id: identity.id,
                logins: remove,
                now: crate::clock::now_millis(),
            },
        )
        .await?;
        Ok(())
    }

    /// The developer login `(developer_provider_name, user_identifier)` of
    /// a pool, after checking the name and the identifier's bounds.
    fn developer_login(pool: &IdentityPool, provider: &str, user_identifier: &str) -> Result<Login, ServiceError> {
        if pool.developer_provider_name.is_empty() {
            return Err(ServiceError::invalid(format!(
                "identity pool {} has no developer_provider_name; set one with UpdateIdentityPool",
                pool.id
            )));
        }
        if provider != pool.developer_provider_name {
            return Err(ServiceError::not_authorized(format!(
                "developer provider {provider:?} is not this identity pool's ({:?})",
                pool.developer_provider_name
            )));
        }
        let n = user_identifier.chars().count();
        if n == 0 || n > MAX_SUBJECT_CHARS || user_identifier.contains('\0') {
            return Err(ServiceError::invalid(format!(
                "developer user identifier: 1 to {MAX_SUBJECT_CHARS} characters"
            )));
        }
        Ok(Login {
            provider: provider.to_string(),
            subject: user_identifier.to_string(),
        })
    }

    /// The identity of a developer login (and of the other logins given,
    /// which are verified and linked), created on first use; for
    /// `GetOpenIdTokenForDeveloperIdentity`. With `identity_id`, the login
    /// is linked to (or merged with) that identity.
    pub(crate) async fn developer_identity(
        &self,
        pool_id: &str,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
    ) -> Result<(IdentityPool, Identity), ServiceError> {
        let pool = self.existing_pool(pool_id).await?;
        let developer = logins
            .get(&pool.developer_provider_name)
            .filter(|_| !pool.developer_provider_name.is_empty());
        let Some(user_identifier) = developer else {
            return Err(ServiceError::invalid(format!(
                "logins: include the developer provider {:?} with the user's identifier",
                pool.developer_provider_name
            )));
        };
        let login = Self::developer_login(&pool, &pool.developer_provider_name, user_identifier)?;
        let others: BTreeMap<String, String> = logins
            .iter()
            .filter(|(k, _)| **k != pool.developer_provider_name)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut verified = self.verify_logins(&pool, &others).await?;
        verified.logins.push(super::logins::VerifiedLogin {
            login,
            claims: Default::default(),
            user: None,
        });
        verified.logins.sort_by(|a, b| a.login.cmp(&b.login));
        let given = match identity_id {
            "" => None,
            id => {
                validate_identity_id("identity_id", id)?;
                Some(id)
            }
        };
        let identity = self.resolve(&pool, &verified, given).await?;
        Ok((pool, identity))
    }

    /// `LookupDeveloperIdentity`: the identity of a developer user
    /// identifier, or the developer user identifiers of an identity.
    pub async fn lookup_developer_identity(
        &self,
        pool_id: &str,
        identity_id: &str,
        developer_user_identifier: &str,
        max_results: i32,
        next_token: &str,
    ) -> Result<(String, Vec<String>, Option<String>), ServiceError> {
        let pool = self.existing_pool(pool_id).await?;
        let limit = page_limit("max_results", max_results)?;
        let identity = match (identity_id, developer_user_identifier) {
            ("", "") => {
                return Err(ServiceError::invalid(
                    "give identity_id or developer_user_identifier (or both)",
                ))
            }
            (_, dev) if !dev.is_empty() => {
                let login = Self::developer_login(&pool, &pool.developer_provider_name, dev)?;
                self.node.read_barrier().await?;
                let id = self.node.store().identity_of_login(&pool.id, &login)?.ok_or_else(|| {
                    ServiceError::not_found(format!("No identity found for developer user identifier {dev:?}."))
                })?;
                let identity = self.existing_identity(&id).await?;
                if !identity_id.is_empty() && identity.id != identity_id {
                    return Err(ServiceError::new(
                        crate::service::ErrorKind::FailedPrecondition,
                        "ResourceConflictException",
                        "the developer user identifier belongs to another identity",
                    ));
                }
                identity
            }
            (id, _) => {
                self.node.read_barrier().await?;
                self.existing_identity(id).await?
            }
        };
        if identity.pool_id != pool.id {
            return Err(ServiceError::not_found(format!(
                "Identity '{}' not found.",
                identity.id
            )));
        }
        let parts = [identity.id.as_str()];
        let scope = Scope::next_token("LookupDeveloperIdentity", &parts);
        let after = self.cursors.resume_text(&scope, next_token)?;
        let mut ids: Vec<String> = identity
            .logins
            .iter()
            .filter(|l| l.provider == pool.developer_provider_name)
            .map(|l| l.subject.clone())
            .filter(|s| after.as_ref().is_none_or(|a| s > a))
            .collect();
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last()
                .map(|s| self.cursors.issue(&scope, s.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((identity.id, ids, next))
    }

    /// `MergeDeveloperIdentities`: the source user's identity is merged
    /// into the destination user's, which survives.
    pub async fn merge_developer_identities(
        &self,
        pool_id: &str,
        developer_provider_name: &str,
        source: &str,
        destination: &str,
    ) -> Result<String, ServiceError> {
        let pool = self.existing_pool(pool_id).await?;
        let source = Self::developer_login(&pool, developer_provider_name, source)?;
        let destination = Self::developer_login(&pool, developer_provider_name, destination)?;
        let survivor: Identity = submit(
            &self.node,
            MergeDeveloperIdentities {
                pool_id: pool.id.clone(),
                source,
                destination,
                now: crate::clock::now_millis(),
            },
        )
        .await?;
        Ok(survivor.id)
    }

    /// `UnlinkDeveloperIdentity`.
    pub async fn unlink_developer_identity(
        &self,
        identity_id: &str,
        pool_id: &str,
        developer_provider_name: &str,
        developer_user_identifier: &str,
    ) -> Result<(), ServiceError> {
        let pool = self.existing_pool(pool_id).await?;
        let login = Self::developer_login(&pool, developer_provider_name, developer_user_identifier)?;
        let identity = self.existing_identity(identity_id).await?;
        if identity.pool_id != pool.id || !identity.logins.contains(&login) {
            return Err(ServiceError::not_found(format!(
                "developer user identifier {developer_user_identifier:?} is not linked to identity {identity_id}"
            )));
        }
        submit(
            &self.node,
            UnlinkLogins {
                identity_id: identity.id,
                logins: vec![login],
                now: crate::clock::now_millis(),
            },
        )
        .await?;
        Ok(())
    }
}
