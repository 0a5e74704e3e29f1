//! Apply logic of pool and app-client commands.

use super::{not_found, Outcome, Rejection};
use super::{Apply, ApplyError};
use crate::model::app_client::AppClient;
use crate::model::pool::UserPool;
use crate::model::pool_settings::{Argon2Params, PasswordPolicy, SignInAlias, TokenValidity};
use crate::store::keys::{pool_key, Table, TableScope};
use crate::store::{codec, SmBatch, Store, StoreError};
use serde::{Deserialize, Serialize};

pub(super) fn create(store: &Store, batch: &mut SmBatch<'_>, pool: &UserPool) -> Result<Outcome, StoreError> {
    if store.cluster_info()?.is_none() {
        return Ok(Outcome::Rejected(Rejection::NotInitialized));
    }
    if store.pool(&pool.id)?.is_some() {
        return Ok(Outcome::Rejected(Rejection::AlreadyExists {
            kind: "user pool".into(),
            id: pool.id.clone(),
        }));
    }
    batch.put(Table::Pools, pool.id.as_bytes(), &codec::encode(pool)?)?;
    Ok(Outcome::PoolCreated(pool.clone()))
}

pub(super) fn delete(store: &Store, batch: &mut SmBatch<'_>, pool_id: &str) -> Result<Outcome, StoreError> {
    match store.pool(pool_id)? {
        None => Ok(not_found("user pool", pool_id)),
        Some(p) if p.deletion_protection => Ok(Outcome::Rejected(Rejection::DeletionProtected(pool_id.into()))),
        Some(_) => {
            batch.delete(Table::Pools, pool_id.as_bytes())?;
            let prefix = pool_key(pool_id, &[]);
            for (k, _) in store.sm_scan_prefix(Table::PoolClients, &prefix, None, usize::MAX)? {
                batch.delete(Table::AppClients, &k[prefix.len()..])?;
                batch.delete(Table::AppClientOAuth, &k[prefix.len()..])?;
            }
            // Role references of the pool's groups and users (keyed by
            // role), found through the pool's own tables.
            for g in store.groups_page(pool_id, None, usize::MAX)? {
                super::groups::set_role_ref(batch, pool_id, &g.name, Some(&g), None)?;
            }
            for (k, v) in store.sm_scan_prefix(Table::UserRoles, &prefix, None, usize::MAX)? {
                let role: String = crate::store::codec::decode(&v)?;
                let sub = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                batch.delete(
                    Table::RoleRefs,
                    &crate::store::identity::role_ref_key(&role, pool_id, crate::store::identity::REF_USER, &sub),
                )?;
            }
            // Every pool-prefixed table but the outbox's own index, which
            // `delete_pool_messages` walks to find the messages first.
            for table in Table::of_scope(TableScope::PoolPrefixed).filter(|t| *t != Table::OutboxOpen) {
                batch.delete_prefix(table, &prefix)?;
            }
            for table in Table::of_scope(TableScope::PoolKeyed).filter(|t| *t != Table::OutboxCounts) {
                batch.delete(table, pool_id.as_bytes())?;
            }
            // Messages of the pool carry codes; they go with it.
            super::outbox::delete_pool_messages(store, batch, pool_id)?;
            Ok(Outcome::Done)
        }
    }
}

pub(super) fn update(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    u: &PoolUpdate,
) -> Result<Outcome, StoreError> {
    let Some(mut pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    if let Some(p) = &u.password_policy {
        pool.settings.password_policy = p.clone();
    }
    if let Some(a) = &u.auto_verified_attributes {
        pool.settings.auto_verified_attributes = a.clone();
    }
    if let Some(t) = u.token_validity {
        pool.settings.token_validity = t;
    }
    if let Some(a) = u.argon2 {
        pool.settings.argon2 = a;
    }
    if let Some(d) = u.deletion_protection {
        pool.deletion_protection = d;
    }
    if let Some(a) = &u.attributes_require_verification_before_update {
        pool.settings.attributes_require_verification_before_update = a.clone();
    }
    pool.last_modified_date = u.modified_at;
    batch.put(Table::Pools, pool_id.as_bytes(), &codec::encode(&pool)?)?;
    Ok(Outcome::Pool(pool))
}

pub(super) fn put_client(
    store: &Store,
    batch: &mut SmBatch<'_>,
    client: &AppClient,
    create: bool,
) -> Result<Outcome, StoreError> {
    if store.pool(&client.pool_id)?.is_none() {
        return Ok(not_found("user pool", &client.pool_id));
    }
    let existing = store
        .app_client(&client.client_id)?
        .filter(|c| c.pool_id == client.pool_id || create);
    let stored = match (existing, create) {
        (Some(_), true) => {
            return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                kind: "app client".into(),
                id: client.client_id.clone(),
            }))
        }
        (None, false) => return Ok(not_found("app client", &client.client_id)),
        (None, true) => client.clone(),
        (Some(old), false) => AppClient {
            secret: old.secret,
            creation_date: old.creation_date,
            ..client.clone()
        },
    };
    batch.put(Table::AppClients, client.client_id.as_bytes(), &codec::encode(&stored)?)?;
    batch.put(
        Table::PoolClients,
        &pool_key(&client.pool_id, client.client_id.as_bytes()),
        &[],
    )?;
    Ok(Outcome::AppClient(stored))
}

pub(super) fn delete_client(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    client_id: &str,
) -> Result<Outcome, StoreError> {
    if store.app_client(client_id)?.is_none_or(|c| c.pool_id != pool_id) {
        return Ok(not_found("app client", client_id));
    }
    batch.delete(Table::AppClients, client_id.as_bytes())?;
    batch.delete(Table::AppClientOAuth, client_id.as_bytes())?;
    batch.delete(Table::Brandings, &pool_key(pool_id, client_id.as_bytes()))?;
    batch.delete(Table::PoolClients, &pool_key(pool_id, client_id.as_bytes()))?;
    Ok(Outcome::Done)
}

/// Creates a pool whose id the proposer drew at random.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUserPool(pub UserPool);

impl Apply for CreateUserPool {
    type Output = UserPool;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(create(store, batch, &self.0)?)
    }
}
/// Deletes a pool (and everything in it) unless deletion protection is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUserPool {
    /// The pool to delete.
    pub pool_id: String,
}

impl Apply for DeleteUserPool {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(delete(store, batch, &self.pool_id)?)
    }
}
/// Changes the mutable settings of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateUserPool {
    /// The pool to change.
    pub pool_id: String,
    /// The settings to change.
    pub update: PoolUpdate,
}

impl Apply for UpdateUserPool {
    type Output = UserPool;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(update(store, batch, &self.pool_id, &self.update)?)
    }
}
/// Creates (`create`) or replaces an app client, as releases before the
/// OAuth settings wrote it (kept so their log entries still decode; its
/// OAuth settings stay as they are). A replacement keeps the stored
/// secret and creation date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutAppClientV1 {
    /// The client as the proposer wants it stored (a new one carries its sealed secret).
    pub client: AppClient,
    /// `CreateUserPoolClient` (refused if it exists) rather than an update (refused if it does not).
    pub create: bool,
}

impl Apply for PutAppClientV1 {
    type Output = AppClient;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(put_client(store, batch, &self.client, self.create)?)
    }
}
/// Deletes an app client; its tokens are refused from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAppClient {
    /// The pool of the client.
    pub pool_id: String,
    /// The client to delete.
    pub client_id: String,
}

impl Apply for DeleteAppClient {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(delete_client(store, batch, &self.pool_id, &self.client_id)?)
    }
}
/// The mutable settings of a pool; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUpdate {
    /// New password rules.
    pub password_policy: Option<PasswordPolicy>,
    /// New set of attributes verified at sign-up.
    pub auto_verified_attributes: Option<Vec<SignInAlias>>,
    /// New default token lifetimes.
    pub token_validity: Option<TokenValidity>,
    /// New argon2id cost; applies to passwords hashed from then on.
    pub argon2: Option<Argon2Params>,
    /// Turns deletion protection on or off.
    pub deletion_protection: Option<bool>,
    /// `UserAttributeUpdateSettings.AttributesRequireVerificationBeforeUpdate`.
    pub attributes_require_verification_before_update: Option<Vec<SignInAlias>>,
    /// Proposer's clock (Unix ms), stored as the pool's `last_modified_date`.
    pub modified_at: i64,
}

#[cfg(test)]
mod tests {
    use super::super::{Command, Outcome, PoolUpdate, Rejection};
    use crate::command::*;
    use crate::model::app_client::{AppClient, AuthFlow, SealedSecret, ValidityUnits};
    use crate::model::cluster::ClusterInfo;
    use crate::model::pool::UserPool;
    use crate::store::Store;

    fn run(store: &Store, cmd: impl Into<Command>) -> Outcome {
        let cmd: Command = cmd.into();
        let mut b = store.sm_batch();
        let out = cmd.apply(store, &mut b).unwrap();
        b.commit().unwrap();
        out
    }

    fn client(id: &str, name: &str, secret: bool) -> AppClient {
        AppClient {
            pool_id: "local_p".into(),
            client_id: id.into(),
            client_name: name.into(),
            secret: secret.then(|| SealedSecret {
                nonce: [1; 12],
                ciphertext: vec![9; 40],
            }),
            auth_flows: [AuthFlow::UserPassword].into(),
            token_validity: Default::default(),
            validity_units: ValidityUnits::default(),
            read_attributes: None,
            write_attributes: None,
            prevent_user_existence_errors: true,
            enable_token_revocation: true,
            creation_date: 1,
            last_modified_date: 1,
        }
    }

    #[test]
    fn clients_are_unique_keep_their_secret_and_go_with_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(
            &store,
            InitCluster(ClusterInfo {
                cluster_id: "c".into(),
                public_url: "http://x".into(),
                root_token_sha256: [0; 32],
                created_at: 0,
            }),
        );
        run(
            &store,
            CreateUserPool(UserPool {
                id: "local_p".into(),
                name: "p".into(),
                creation_date: 0,
                last_modified_date: 0,
                deletion_protection: false,
                settings: Default::default(),
            }),
        );
        let put = |c: AppClient, create| PutAppClientV1 { client: c, create };
        assert!(matches!(
            run(&store, put(client("c1", "web", true), true)),
            Outcome::AppClient(_)
        ));
        assert!(matches!(
            run(&store, put(client("c1", "dup", false), true)),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        let mut renamed = client("c1", "web2", false);
        renamed.creation_date = 99;
        let Outcome::AppClient(c) = run(&store, put(renamed, false)) else {
            panic!("update failed")
        };
        assert_eq!(c.client_name, "web2");
        assert!(c.secret.is_some(), "an update keeps the secret");
        assert_eq!(c.creation_date, 1);
        assert!(matches!(
            run(&store, put(client("nope", "x", false), false)),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        run(&store, put(client("c2", "ios", false), true));
        let ids: Vec<String> = store
            .app_clients_page("local_p", None, 10)
            .unwrap()
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(ids, ["c1", "c2"]);
        let Outcome::Pool(p) = run(
            &store,
            &UpdateUserPool {
                pool_id: "local_p".into(),
                update: PoolUpdate {
                    deletion_protection: Some(true),
                    modified_at: 7,
                    ..Default::default()
                },
            },
        ) else {
            panic!("update pool failed")
        };
        assert!(p.deletion_protection && p.last_modified_date == 7);
        run(
            &store,
            &UpdateUserPool {
                pool_id: "local_p".into(),
                update: PoolUpdate {
                    deletion_protection: Some(false),
                    ..Default::default()
                },
            },
        );
        run(
            &store,
            &DeleteUserPool {
                pool_id: "local_p".into(),
            },
        );
        assert!(store.app_client("c1").unwrap().is_none());
        assert!(store.app_clients_page("local_p", None, 10).unwrap().is_empty());
    }

    /// Deleting a pool leaves no row of it in any pool-scoped table, by
    /// the classification in `Table::scope`: a table added there as
    /// pool-prefixed or pool-keyed is cleared without touching this code.
    #[test]
    fn a_deleted_pool_leaves_no_row_in_any_pool_scoped_table() {
        use crate::command::testkit::{store_with_pool, user_in, POOL};
        use crate::model::group::Group;
        use crate::model::user::UserStatus;
        use crate::store::keys::{pool_key, Table, TableScope};
        let (_dir, store) = store_with_pool(&[]);
        let user = user_in(UserStatus::Confirmed, "s1", "ann", "ann@x.io");
        run(
            &store,
            CreateUser {
                user,
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        let group = Group {
            pool_id: POOL.into(),
            name: "g".into(),
            description: String::new(),
            role_arn: String::new(),
            precedence: None,
            permissions: vec![],
            created_at: 0,
            modified_at: 0,
        };
        run(&store, PutGroup { group, create: true });
        run(
            &store,
            AddUserToGroup {
                pool_id: POOL.into(),
                group: "g".into(),
                sub: "s1".into(),
            },
        );
        let prefix = pool_key(POOL, &[]);
        let rows = |t: Table| store.sm_scan_prefix(t, &prefix, None, 10).unwrap().len();
        let before: usize = Table::of_scope(TableScope::PoolPrefixed).map(rows).sum();
        assert!(before >= 5, "the pool should have rows in several tables, has {before}");
        assert!(matches!(
            run(&store, DeleteUserPool { pool_id: POOL.into() }),
            Outcome::Done
        ));
        for t in Table::of_scope(TableScope::PoolPrefixed) {
            assert_eq!(rows(t), 0, "{t:?} keeps rows of the deleted pool");
        }
        for t in Table::of_scope(TableScope::PoolKeyed) {
            assert!(
                store.sm_get(t, POOL.as_bytes()).unwrap().is_none(),
                "{t:?} keeps the deleted pool"
            );
        }
    }
}
