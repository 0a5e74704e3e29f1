//! What the command tests share: applying a command to a scratch store,
//! and a store with an initialised cluster and one pool.

use super::{Command, CreateUserPool, InitCluster, Outcome};
use crate::model::cluster::ClusterInfo;
use crate::model::pool::UserPool;
use crate::model::pool_settings::SignInAlias;
use crate::model::user::{User, UserStatus};
use crate::store::Store;

/// The pool every [`store_with_pool`] store holds.
pub const POOL: &str = "local_p";

/// Applies `cmd` and commits its batch, as the state machine does.
pub fn run(store: &Store, cmd: impl Into<Command>) -> Outcome {
    let cmd: Command = cmd.into();
    let mut b = store.sm_batch();
    let out = cmd.apply(store, &mut b).expect("apply");
    b.commit().expect("commit");
    out
}

/// A scratch store with the cluster initialised and pool [`POOL`], whose
/// sign-in aliases are `aliases`.
pub fn store_with_pool(aliases: &[SignInAlias]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    run(
        &store,
        InitCluster(ClusterInfo {
            cluster_id: "c".into(),
            public_url: "http://x".into(),
            root_token_sha256: [0; 32],
            created_at: 0,
        }),
    );
    let mut pool = UserPool {
        id: POOL.into(),
        name: "p".into(),
        creation_date: 0,
        last_modified_date: 0,
        deletion_protection: false,
        settings: Default::default(),
    };
    pool.settings.alias_attributes = aliases.to_vec();
    run(&store, CreateUserPool(pool));
    (dir, store)
}

/// A user of [`POOL`] with an email, in `status`; a confirmed one has its
/// email verified.
pub fn user_in(status: UserStatus, sub: &str, name: &str, email: &str) -> User {
    User {
        pool_id: POOL.into(),
        sub: sub.into(),
        username: name.into(),
        attributes: [("email".to_string(), email.to_string())].into(),
        status,
        enabled: true,
        password_phc: Some("phc".into()),
        email_verified: status == UserStatus::Confirmed,
        phone_number_verified: false,
        created_at: 0,
        modified_at: 0,
        tokens_revoked_before_ms: 0,
        temporary_password_expires_at: None,
        refresh_revoked_before_ms: 0,
        pending_attributes: Default::default(),
    }
}

/// Creates an identity pool (guests allowed or not, developer provider
/// `dev.example`) and returns its id.
pub fn identity_pool(store: &Store, guests: bool) -> String {
    use crate::model::identity_pool::{identity_id_from_random, IdentityPool};
    let id = identity_id_from_random(crate::model::identity_pool::IDENTITY_ID_PREFIX, [1; 16]);
    let pool = IdentityPool {
        id: id.clone(),
        name: "app".into(),
        allow_unauthenticated: guests,
        allow_classic_flow: false,
        supported_login_providers: Default::default(),
        developer_provider_name: "dev.example".into(),
        cognito_providers: vec![],
        oidc_providers: vec![],
        tags: Default::default(),
        roles: Default::default(),
        role_mappings: Default::default(),
        creation_date: 1,
        last_modified_date: 1,
    };
    assert!(matches!(
        run(store, super::CreateIdentityPool(pool)),
        Outcome::IdentityPool(_)
    ));
    id
}

/// A [`store_with_pool`] store holding one confirmed user, `ann` (sub
/// `s1`), as the MFA and sign-in code tests start from.
pub fn store_with_ann() -> (tempfile::TempDir, Store) {
    let (d, store) = store_with_pool(&[]);
    let out = run(
        &store,
        super::CreateUser {
            user: user_in(UserStatus::Confirmed, "s1", "ann", "ann@x.io"),
            code: None,
            message: None,
            force_alias_creation: false,
        },
    );
    assert!(matches!(out, Outcome::User(_)), "{out:?}");
    (d, store)
}
