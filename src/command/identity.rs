//! Apply logic of identity pools, identities and their logins, roles and
//! per-user roles.
//!
//! The login index (`IdentityLogins`) is unique and decided here, as
//! usernames are: two nodes that race to create the first identity of one
//! login both propose [`ResolveIdentity`], and whichever applies second
//! finds the login taken and answers with the identity the first created.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::identity::{Identity, Login, MAX_LOGINS};
use crate::model::identity_pool::{IdentityPool, PoolRoles, RoleMapping};
use crate::model::role::Role;
use crate::store::identity::{login_key, role_ref_key, user_role_key, REF_GROUP, REF_USER};
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

/// Most identities one `DeleteIdentities` removes (Cognito's bound).
pub const MAX_DELETE_IDENTITIES: usize = 60;
/// Most logins one command links or unlinks.
pub const MAX_LOGINS_PER_COMMAND: usize = MAX_LOGINS;
/// How many `merged_into` hops are followed to a survivor; merges always
/// point at a survivor that is not merged itself, so one hop is the norm.
const MAX_MERGE_HOPS: usize = 8;

fn put_identity(batch: &mut SmBatch<'_>, identity: &Identity) -> Result<(), StoreError> {
    batch.put(Table::Identities, identity.id.as_bytes(), &codec::encode(identity)?)
}

fn put_pool(batch: &mut SmBatch<'_>, pool: &IdentityPool) -> Result<(), StoreError> {
    batch.put(Table::IdentityPools, pool.id.as_bytes(), &codec::encode(pool)?)
}

/// The identity `id` of pool `pool_id`, following merges to the survivor.
fn survivor_of(store: &Store, pool_id: &str, id: &str) -> Result<Option<Identity>, StoreError> {
    let mut current = id.to_string();
    for _ in 0..MAX_MERGE_HOPS {
        match store.identity_by_id(&current)? {
            Some(i) if i.pool_id != pool_id => return Ok(None),
            Some(i) => match &i.merged_into {
                Some(next) => current = next.clone(),
                None => return Ok(Some(i)),
            },
            None => return Ok(None),
        }
    }
    Ok(None)
}

fn invalid_logins(logins: &[Login]) -> Option<Rejection> {
    if logins.len() > MAX_LOGINS_PER_COMMAND {
        return Some(Rejection::Invalid(format!(
            "at most {MAX_LOGINS_PER_COMMAND} logins per call"
        )));
    }
    logins
        .iter()
        .find_map(|l| l.validate().err())
        .map(|e| Rejection::Invalid(e.to_string()))
}

/// Links `logins` (and every login of `others`) to `survivor`, disabling
/// `others` as merged into it. Refused, with nothing written, when the
/// result would hold two subjects of one public provider or too many
/// logins. The pool's `developer_provider` is exempt from the one-login
/// rule: a developer may link several of its user identifiers to one
/// identity, as `MergeDeveloperIdentities` does.
fn merge_into(
    store: &Store,
    batch: &mut SmBatch<'_>,
    mut survivor: Identity,
    others: Vec<Identity>,
    logins: &[Login],
    developer_provider: &str,
    now: i64,
) -> Result<Outcome, ApplyError> {
    let mut all: BTreeSet<Login> = survivor.logins.iter().cloned().collect();
    for o in &others {
        all.extend(o.logins.iter().cloned());
    }
    all.extend(logins.iter().cloned());
    let mut providers = BTreeSet::new();
    for l in all
        .iter()
        .filter(|l| developer_provider.is_empty() || l.provider != developer_provider)
    {
        if !providers.insert(l.provider.as_str()) {
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(format!(
                "the identity would hold two logins of provider {}; an identity links at most one login per provider",
                l.provider
            ))));
        }
    }
    if all.len() > MAX_LOGINS {
        return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
            "an identity links at most {MAX_LOGINS} logins"
        ))));
    }
    let changed = !others.is_empty() || all.len() != survivor.logins.len();
    if !others.is_empty() {
        let merged: Vec<&str> = others.iter().map(|o| o.id.as_str()).collect();
        super::sync::merge_sync_data(store, batch, &survivor.pool_id, &merged, &survivor.id, now)?;
    }
    for mut o in others {
        o.logins.clear();
        o.merged_into = Some(survivor.id.clone());
        o.last_modified_date = now;
        put_identity(batch, &o)?;
    }
    if changed {
        survivor.logins = all.into_iter().collect();
        survivor.last_modified_date = now;
        for l in &survivor.logins {
            batch.put(
                Table::IdentityLogins,
                &login_key(&survivor.pool_id, l),
                &codec::encode(&survivor.id)?,
            )?;
        }
        put_identity(batch, &survivor)?;
    }
    Ok(Outcome::Identity(survivor))
}

/// Creates an identity pool whose id the proposer drew at random.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateIdentityPool(pub IdentityPool);

impl Apply for CreateIdentityPool {
    type Output = IdentityPool;

    fn validate(&self) -> Result<(), Rejection> {
        self.0.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.cluster_info()?.is_none() {
            return Ok(Outcome::Rejected(Rejection::NotInitialized));
        }
        if store.identity_pool(&self.0.id)?.is_some() {
            return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                kind: "identity pool".into(),
                id: self.0.id.clone(),
            }));
        }
        if let Some(r) = missing_role(store, &self.0)? {
            return Ok(r);
        }
        put_pool(batch, &self.0)?;
        Ok(Outcome::IdentityPool(self.0.clone()))
    }
}

fn missing_role(store: &Store, pool: &IdentityPool) -> Result<Option<Outcome>, StoreError> {
    for name in pool.role_names() {
        if store.role(name)?.is_none() {
            return Ok(Some(not_found("role", name)));
        }
    }
    Ok(None)
}

/// Replaces the settings of an identity pool (not its roles, which
/// `SetIdentityPoolRoles` owns); the id and creation date stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateIdentityPool(pub IdentityPool);

impl Apply for UpdateIdentityPool {
    type Output = IdentityPool;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(old) = store.identity_pool(&self.0.id)? else {
            return Ok(not_found("identity pool", &self.0.id));
        };
        if !old.developer_provider_name.is_empty() && old.developer_provider_name != self.0.developer_provider_name {
            return Ok(Outcome::Rejected(Rejection::Invalid(format!(
                "developer_provider_name: it is {:?} and cannot change once set",
                old.developer_provider_name
            ))));
        }
        let mut new = self.0.clone();
        new.creation_date = old.creation_date;
        new.roles = old.roles;
        // A mapping of a provider the pool no longer accepts goes with it.
        new.role_mappings = old
            .role_mappings
            .into_iter()
            .filter(|(p, _)| new.provider(p).is_some())
            .collect();
        if let Err(e) = new.validate() {
            return Ok(Outcome::Rejected(Rejection::Invalid(e.to_string())));
        }
        put_pool(batch, &new)?;
        Ok(Outcome::IdentityPool(new))
    }
}

/// Deletes an identity pool with every identity and login in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteIdentityPool {
    /// The pool to delete.
    pub pool_id: String,
}

impl Apply for DeleteIdentityPool {
    type Output = IdentityPool;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(pool) = store.identity_pool(&self.pool_id)? else {
            return Ok(not_found("identity pool", &self.pool_id));
        };
        for id in store.pool_identity_ids(&self.pool_id, None, usize::MAX)? {
            batch.delete(Table::Identities, id.as_bytes())?;
            batch.emit(crate::model::sync::SyncEvent::IdentityGone {
                identity_id: id,
                merged_into: None,
            });
        }
        let prefix = pool_key(&self.pool_id, &[]);
        for table in [Table::SyncStates, Table::Datasets, Table::Records, Table::SyncLog] {
            batch.delete_prefix(table, &prefix)?;
        }
        batch.delete_prefix(Table::PoolIdentities, &prefix)?;
        batch.delete_prefix(Table::IdentityLogins, &prefix)?;
        batch.delete(Table::IdentityPools, self.pool_id.as_bytes())?;
        Ok(Outcome::IdentityPool(pool))
    }
}

/// `SetIdentityPoolRoles`: the default roles and the role mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetIdentityPoolRoles {
    /// The pool.
    pub pool_id: String,
    /// Authenticated and unauthenticated roles, by name.
    pub roles: PoolRoles,
    /// Provider name -> mapping.
    pub role_mappings: std::collections::BTreeMap<String, RoleMapping>,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for SetIdentityPoolRoles {
    type Output = IdentityPool;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(mut pool) = store.identity_pool(&self.pool_id)? else {
            return Ok(not_found("identity pool", &self.pool_id));
        };
        pool.roles = self.roles.clone();
        pool.role_mappings = self.role_mappings.clone();
        pool.last_modified_date = self.now;
        if let Err(e) = pool.validate() {
            return Ok(Outcome::Rejected(Rejection::Invalid(e.to_string())));
        }
        if let Some(r) = missing_role(store, &pool)? {
            return Ok(r);
        }
        put_pool(batch, &pool)?;
        Ok(Outcome::IdentityPool(pool))
    }
}

/// The identity of `logins` in a pool, created or merged as needed (the
/// write half of `GetId`, `GetOpenIdTokenForDeveloperIdentity` and a
/// guest's upgrade):
///
/// * no identity holds any of the logins, and no `identity_id` is given:
///   a new identity `new_id` with the logins (a guest if there are none,
///   when the pool admits guests);
/// * one identity is found: the other logins are linked to it;
/// * several are found (a guest that signs in as a user who already has an
///   identity, or logins of two identities presented together): they are
///   merged. The survivor is an authenticated identity before a guest, then
///   the oldest; the others are disabled and point at it.
///
/// A result with two subjects of one provider is refused with
/// `ResourceConflict`, and nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveIdentity {
    /// The identity pool.
    pub pool_id: String,
    /// Verified logins (provider and subject), sorted and distinct.
    pub logins: Vec<Login>,
    /// An identity the caller already holds (a guest's), to link or merge.
    pub identity_id: Option<String>,
    /// The id of the identity to create if none is found.
    pub new_id: String,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for ResolveIdentity {
    type Output = Identity;

    fn validate(&self) -> Result<(), Rejection> {
        invalid_logins(&self.logins).map_or(Ok(()), Err)
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(pool) = store.identity_pool(&self.pool_id)? else {
            return Ok(not_found("identity pool", &self.pool_id));
        };
        let mut found: Vec<Identity> = Vec::new();
        let mut seen = BTreeSet::new();
        if let Some(id) = &self.identity_id {
            match survivor_of(store, &self.pool_id, id)? {
                Some(i) => {
                    seen.insert(i.id.clone());
                    found.push(i);
                }
                None => return Ok(not_found("identity", id)),
            }
        }
        // A deliberately broken build for the chaos harness's own tests:
        // with this failpoint on, the login index is ignored, and the
        // one-identity-per-login checker must notice.
        #[cfg(feature = "failpoints")]
        let use_index = fail::eval("apply-skip-login-index", |_| ()).is_none();
        #[cfg(not(feature = "failpoints"))]
        let use_index = true;
        for l in self.logins.iter().filter(|_| use_index) {
            if let Some(id) = store.identity_of_login(&self.pool_id, l)? {
                if let Some(i) = survivor_of(store, &self.pool_id, &id)? {
                    if seen.insert(i.id.clone()) {
                        found.push(i);
                    }
                }
            }
        }
        if found.is_empty() {
            if self.logins.is_empty() && !pool.allow_unauthenticated {
                return Ok(Outcome::Rejected(Rejection::NotAuthorized(
                    "Unauthenticated access is not supported for this identity pool.".into(),
                )));
            }
            if store.identity_by_id(&self.new_id)?.is_some() {
                return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                    kind: "identity".into(),
                    id: self.new_id.clone(),
                }));
            }
            let identity = Identity {
                id: self.new_id.clone(),
                pool_id: self.pool_id.clone(),
                logins: Vec::new(),
                creation_date: self.now,
                last_modified_date: self.now,
                merged_into: None,
            };
            // A new identity is its own survivor: merge_into links the logins.
            let out = merge_into(
                store,
                batch,
                identity.clone(),
                Vec::new(),
                &self.logins,
                &pool.developer_provider_name,
                self.now,
            )?;
            // Indexed only once it exists: a refusal stages nothing.
            if let Outcome::Identity(_) = out {
                batch.put(
                    Table::PoolIdentities,
                    &pool_key(&self.pool_id, self.new_id.as_bytes()),
                    &[],
                )?;
                if self.logins.is_empty() {
                    put_identity(batch, &identity)?;
                }
            }
            return Ok(out);
        }
        // Survivor: authenticated before guest, then oldest, then id.
        found.sort_by(|a, b| (a.is_guest(), a.creation_date, &a.id).cmp(&(b.is_guest(), b.creation_date, &b.id)));
        let survivor = found.remove(0);
        merge_into(
            store,
            batch,
            survivor,
            found,
            &self.logins,
            &pool.developer_provider_name,
            self.now,
        )
    }
}

/// Removes logins from an identity (`UnlinkIdentity`,
/// `UnlinkDeveloperIdentity`). A login the identity does not hold is
/// ignored, so a retry is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlinkLogins {
    /// The identity.
    pub identity_id: String,
    /// The logins to remove.
    pub logins: Vec<Login>,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for UnlinkLogins {
    type Output = Identity;

    fn validate(&self) -> Result<(), Rejection> {
        invalid_logins(&self.logins).map_or(Ok(()), Err)
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(mut identity) = store.identity_by_id(&self.identity_id)? else {
            return Ok(not_found("identity", &self.identity_id));
        };
        let before = identity.logins.len();
        identity.logins.retain(|l| !self.logins.contains(l));
        if identity.logins.len() != before {
            for l in &self.logins {
                if store.identity_of_login(&identity.pool_id, l)?.as_deref() == Some(identity.id.as_str()) {
                    batch.delete(Table::IdentityLogins, &login_key(&identity.pool_id, l))?;
                }
            }
            identity.last_modified_date = self.now;
            put_identity(batch, &identity)?;
        }
        Ok(Outcome::Identity(identity))
    }
}

/// Deletes identities with their logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteIdentities {
    /// The identities; unknown ones are skipped.
    pub identity_ids: Vec<String>,
}

impl Apply for DeleteIdentities {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        if self.identity_ids.len() > MAX_DELETE_IDENTITIES {
            return Err(Rejection::Invalid(format!(
                "at most {MAX_DELETE_IDENTITIES} identities per call"
            )));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let ids: BTreeSet<&String> = self.identity_ids.iter().collect();
        for id in ids {
            let Some(identity) = store.identity_by_id(id)? else {
                continue;
            };
            for l in &identity.logins {
                if store.identity_of_login(&identity.pool_id, l)?.as_deref() == Some(id.as_str()) {
                    batch.delete(Table::IdentityLogins, &login_key(&identity.pool_id, l))?;
                }
            }
            batch.delete(Table::PoolIdentities, &pool_key(&identity.pool_id, id.as_bytes()))?;
            batch.delete(Table::Identities, id.as_bytes())?;
            super::sync::delete_sync_data(batch, &identity.pool_id, id)?;
        }
        Ok(Outcome::Done)
    }
}

/// `MergeDeveloperIdentities`: the identity of the source login is merged
/// into that of the destination login, which survives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeDeveloperIdentities {
    /// The identity pool.
    pub pool_id: String,
    /// The merged-away login (developer provider and user identifier).
    pub source: Login,
    /// The surviving login.
    pub destination: Login,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for MergeDeveloperIdentities {
    type Output = Identity;

    fn validate(&self) -> Result<(), Rejection> {
        invalid_logins(&[self.source.clone(), self.destination.clone()]).map_or(Ok(()), Err)
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let find = |login: &Login| -> Result<Option<Identity>, StoreError> {
            match store.identity_of_login(&self.pool_id, login)? {
                Some(id) => survivor_of(store, &self.pool_id, &id),
                None => Ok(None),
            }
        };
        let Some(destination) = find(&self.destination)? else {
            return Ok(not_found("developer user identifier", &self.destination.subject));
        };
        let Some(source) = find(&self.source)? else {
            return Ok(not_found("developer user identifier", &self.source.subject));
        };
        if source.id == destination.id {
            return Ok(Outcome::Identity(destination));
        }
        // Two developer logins on one identity is what a developer merge
        // asks for; the one-login-per-provider rule is for public providers.
        let mut survivor = destination;
        let mut all: BTreeSet<Login> = survivor.logins.iter().cloned().collect();
        all.extend(source.logins.iter().cloned());
        let public: Vec<&Login> = all.iter().filter(|l| l.provider != self.source.provider).collect();
        let distinct: BTreeSet<&str> = public.iter().map(|l| l.provider.as_str()).collect();
        if distinct.len() != public.len() {
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(
                "both identities hold a login of the same public provider".into(),
            )));
        }
        if all.len() > MAX_LOGINS {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "an identity links at most {MAX_LOGINS} logins"
            ))));
        }
        super::sync::merge_sync_data(
            store,
            batch,
            &self.pool_id,
            &[source.id.as_str()],
            &survivor.id,
            self.now,
        )?;
        let mut merged = source;
        merged.logins.clear();
        merged.merged_into = Some(survivor.id.clone());
        merged.last_modified_date = self.now;
        put_identity(batch, &merged)?;
        survivor.logins = all.into_iter().collect();
        survivor.last_modified_date = self.now;
        for l in &survivor.logins {
            batch.put(
                Table::IdentityLogins,
                &login_key(&self.pool_id, l),
                &codec::encode(&survivor.id)?,
            )?;
        }
        put_identity(batch, &survivor)?;
        Ok(Outcome::Identity(survivor))
    }
}

/// Creates (`create`) or replaces a role; a replacement keeps the
/// creation date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRole {
    /// The role as the proposer validated it.
    pub role: Role,
    /// `CreateRole` (refused if it exists) rather than `UpdateRole`.
    pub create: bool,
}

impl Apply for PutRole {
    type Output = Role;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut role = self.role.clone();
        match (store.role(&role.name)?, self.create) {
            (Some(_), true) => {
                return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                    kind: "role".into(),
                    id: role.name,
                }))
            }
            (None, false) => return Ok(not_found("role", &role.name)),
            (Some(old), false) => role.create_date = old.create_date,
            (None, true) => {}
        }
        batch.put(Table::Roles, role.name.as_bytes(), &codec::encode(&role)?)?;
        Ok(Outcome::Role(role))
    }
}

/// Most identity pools `DeleteRole` looks through for references.
const MAX_POOLS_SCANNED: usize = 100_000;

/// Deletes a role that nothing refers to: no identity pool (default roles
/// and rule mappings), no group's `role_arn`, no user's own role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRole {
    /// The role.
    pub name: String,
}

impl Apply for DeleteRole {
    type Output = Role;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(role) = store.role(&self.name)? else {
            return Ok(not_found("role", &self.name));
        };
        if let Some((pool, kind, name)) = store.role_holder(&self.name)? {
            let holder = match kind {
                REF_GROUP => format!("group {name} of user pool {pool}"),
                REF_USER => format!("user {name} of user pool {pool} (AdminSetUserRole)"),
                _ => format!("{name} of user pool {pool}"),
            };
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(format!(
                "role {} is used by {holder}; change that first",
                self.name
            ))));
        }
        for pool in store.identity_pools_page(None, MAX_POOLS_SCANNED)? {
            if pool.role_names().contains(&self.name.as_str()) {
                return Ok(Outcome::Rejected(Rejection::ResourceConflict(format!(
                    "role {} is used by identity pool {}; change its roles first",
                    self.name, pool.id
                ))));
            }
        }
        batch.delete(Table::Roles, self.name.as_bytes())?;
        Ok(Outcome::Role(role))
    }
}

/// Assigns a role to one user-pool user, or removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUserRole {
    /// The user's pool.
    pub user_pool_id: String,
    /// The user.
    pub sub: String,
    /// The role's name; `None` removes the assignment.
    pub role: Option<String>,
}

impl Apply for SetUserRole {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.user(&self.user_pool_id, &self.sub)?.is_none() {
            return Ok(not_found("user", &self.sub));
        }
        let key = user_role_key(&self.user_pool_id, &self.sub);
        if let Some(name) = &self.role {
            if store.role(name)?.is_none() {
                return Ok(not_found("role", name));
            }
        }
        let refs = |role: &str| role_ref_key(role, &self.user_pool_id, REF_USER, &self.sub);
        if let Some(old) = store.user_role(&self.user_pool_id, &self.sub)? {
            batch.delete(Table::RoleRefs, &refs(&old))?;
        }
        match &self.role {
            Some(name) => {
                batch.put(Table::RoleRefs, &refs(name), &[])?;
                batch.put(Table::UserRoles, &key, &codec::encode(name)?)?;
            }
            None => batch.delete(Table::UserRoles, &key)?,
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_pool};
    use crate::model::identity_pool::identity_id_from_random;

    fn login(provider: &str, subject: &str) -> Login {
        Login {
            provider: provider.into(),
            subject: subject.into(),
        }
    }

    fn ipool(store: &Store, guests: bool) -> String {
        crate::command::testkit::identity_pool(store, guests)
    }

    fn resolve(pool: &str, logins: &[Login], identity_id: Option<&str>, new: u8, now: i64) -> ResolveIdentity {
        ResolveIdentity {
            pool_id: pool.into(),
            logins: logins.to_vec(),
            identity_id: identity_id.map(str::to_string),
            new_id: identity_id_from_random(crate::model::identity_pool::IDENTITY_ID_PREFIX, [new; 16]),
            now,
        }
    }

    fn identity(out: Outcome) -> Identity {
        match out {
            Outcome::Identity(i) => i,
            other => panic!("expected an identity, got {other:?}"),
        }
    }

    #[test]
    fn one_identity_per_login_even_when_two_proposals_race() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let a = login("p.example", "alice");
        // Two nodes prepared a first GetId for the same login, each with
        // its own new id; the second to apply finds the first's identity.
        let first = identity(run(&store, resolve(&pool, std::slice::from_ref(&a), None, 10, 5)));
        let second = identity(run(&store, resolve(&pool, std::slice::from_ref(&a), None, 11, 6)));
        assert_eq!(first.id, second.id);
        assert_eq!(store.identity_of_login(&pool, &a).unwrap(), Some(first.id.clone()));
        assert_eq!(store.pool_identity_ids(&pool, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn guests_upgrade_and_merge_into_the_authenticated_identity() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let guest = identity(run(&store, resolve(&pool, &[], None, 20, 1)));
        assert!(guest.is_guest());
        // The guest signs in: the same identity becomes authenticated.
        let alice = login("p.example", "alice");
        let up = identity(run(
            &store,
            resolve(&pool, std::slice::from_ref(&alice), Some(&guest.id), 21, 2),
        ));
        assert_eq!(up.id, guest.id);
        assert_eq!(up.logins, vec![alice.clone()]);
        // A second guest signs in as the same user: merged into the first.
        let guest2 = identity(run(&store, resolve(&pool, &[], None, 22, 3)));
        let merged = identity(run(
            &store,
            resolve(&pool, std::slice::from_ref(&alice), Some(&guest2.id), 23, 4),
        ));
        assert_eq!(merged.id, guest.id, "the authenticated identity survives");
        let gone = store.identity_by_id(&guest2.id).unwrap().unwrap();
        assert_eq!(gone.merged_into.as_deref(), Some(guest.id.as_str()));
        // Its id now leads to the survivor.
        let again = identity(run(&store, resolve(&pool, &[], Some(&guest2.id), 24, 5)));
        assert_eq!(again.id, guest.id);
    }

    #[test]
    fn one_login_per_provider_and_nothing_written_on_conflict() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let a = identity(run(&store, resolve(&pool, &[login("p.example", "alice")], None, 30, 1)));
        let b = identity(run(&store, resolve(&pool, &[login("p.example", "bob")], None, 31, 2)));
        let out = run(
            &store,
            resolve(
                &pool,
                &[login("p.example", "alice"), login("p.example", "bob")],
                None,
                32,
                3,
            ),
        );
        assert!(
            matches!(out, Outcome::Rejected(Rejection::ResourceConflict(_))),
            "{out:?}"
        );
        assert_eq!(store.identity_by_id(&a.id).unwrap().unwrap(), a);
        assert_eq!(store.identity_by_id(&b.id).unwrap().unwrap(), b);
        // Logins of two providers on two identities merge into the older.
        let c = identity(run(&store, resolve(&pool, &[login("q.example", "carol")], None, 33, 4)));
        let m = identity(run(
            &store,
            resolve(
                &pool,
                &[login("p.example", "alice"), login("q.example", "carol")],
                None,
                34,
                5,
            ),
        ));
        assert_eq!(m.id, a.id);
        assert_eq!(m.logins.len(), 2);
        assert_eq!(
            store.identity_by_id(&c.id).unwrap().unwrap().merged_into.as_deref(),
            Some(a.id.as_str())
        );
    }

    #[test]
    fn a_refused_first_identity_leaves_no_id_in_the_pool_index() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let two = [login("p.example", "alice"), login("p.example", "bob")];
        for n in 0..3 {
            let out = run(&store, resolve(&pool, &two, None, 60 + n, 1));
            assert!(
                matches!(out, Outcome::Rejected(Rejection::ResourceConflict(_))),
                "{out:?}"
            );
        }
        assert!(store.pool_identity_ids(&pool, None, 10).unwrap().is_empty());
    }

    #[test]
    fn developer_user_identifiers_may_share_an_identity() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let i = identity(run(&store, resolve(&pool, &[login("dev.example", "u1")], None, 70, 1)));
        // A second developer login linked by id, as Cognito allows.
        let linked = identity(run(
            &store,
            resolve(&pool, &[login("dev.example", "u2")], Some(&i.id), 71, 2),
        ));
        assert_eq!(linked.id, i.id);
        assert_eq!(
            linked.logins,
            vec![login("dev.example", "u1"), login("dev.example", "u2")]
        );
        // Public logins still link to it afterwards; still one per provider.
        let more = identity(run(
            &store,
            resolve(&pool, &[login("p.example", "a")], Some(&i.id), 72, 3),
        ));
        assert_eq!(more.logins.len(), 3);
        let out = run(&store, resolve(&pool, &[login("p.example", "b")], Some(&i.id), 73, 4));
        assert!(
            matches!(out, Outcome::Rejected(Rejection::ResourceConflict(_))),
            "{out:?}"
        );
    }

    #[test]
    fn guests_need_the_pool_to_allow_them() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, false);
        let out = run(&store, resolve(&pool, &[], None, 40, 1));
        assert!(matches!(out, Outcome::Rejected(Rejection::NotAuthorized(_))), "{out:?}");
        assert!(store.pool_identity_ids(&pool, None, 10).unwrap().is_empty());
    }

    #[test]
    fn developer_merge_unlink_and_delete() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let d1 = login("dev.example", "u1");
        let d2 = login("dev.example", "u2");
        let i1 = identity(run(&store, resolve(&pool, std::slice::from_ref(&d1), None, 50, 1)));
        let i2 = identity(run(&store, resolve(&pool, std::slice::from_ref(&d2), None, 51, 2)));
        let m = identity(run(
            &store,
            MergeDeveloperIdentities {
                pool_id: pool.clone(),
                source: d2.clone(),
                destination: d1.clone(),
                now: 3,
            },
        ));
        assert_eq!(m.id, i1.id);
        assert_eq!(m.logins, vec![d1.clone(), d2.clone()]);
        assert_eq!(store.identity_of_login(&pool, &d2).unwrap(), Some(i1.id.clone()));
        assert_eq!(
            store.identity_by_id(&i2.id).unwrap().unwrap().merged_into,
            Some(i1.id.clone())
        );
        let u = identity(run(
            &store,
            UnlinkLogins {
                identity_id: i1.id.clone(),
                logins: vec![d2.clone()],
                now: 4,
            },
        ));
        assert_eq!(u.logins, vec![d1.clone()]);
        assert_eq!(store.identity_of_login(&pool, &d2).unwrap(), None);
        run(
            &store,
            DeleteIdentities {
                identity_ids: vec![i1.id.clone()],
            },
        );
        assert_eq!(store.identity_by_id(&i1.id).unwrap(), None);
        assert_eq!(store.identity_of_login(&pool, &d1).unwrap(), None);
        // Deleting the pool takes the merged identity with it.
        run(&store, DeleteIdentityPool { pool_id: pool.clone() });
        assert_eq!(store.identity_by_id(&i2.id).unwrap(), None);
        assert!(store.pool_identity_ids(&pool, None, 10).unwrap().is_empty());
    }

    #[test]
    fn roles_in_use_cannot_be_deleted_and_must_exist_to_be_used() {
        let (_dir, store) = store_with_pool(&[]);
        let pool = ipool(&store, true);
        let set = |auth: &str| SetIdentityPoolRoles {
            pool_id: pool.clone(),
            roles: PoolRoles {
                authenticated: Some(auth.into()),
                unauthenticated: None,
            },
            role_mappings: Default::default(),
            now: 2,
        };
        assert!(matches!(
            run(&store, set("Readers")),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        let role = Role {
            name: "Readers".into(),
            description: String::new(),
            policy_document: "{}".into(),
            create_date: 1,
            last_modified_date: 1,
        };
        assert!(matches!(
            run(
                &store,
                PutRole {
                    role: role.clone(),
                    create: true
                }
            ),
            Outcome::Role(_)
        ));
        assert!(matches!(
            run(&store, PutRole { role, create: true }),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        assert!(matches!(run(&store, set("Readers")), Outcome::IdentityPool(_)));
        assert!(matches!(
            run(&store, DeleteRole { name: "Readers".into() }),
            Outcome::Rejected(Rejection::ResourceConflict(_))
        ));
    }
}
