//! Helpers for the user-directory tests in `tests/directory.rs` (issue 5)
//! and `tests/lockout.rs`, built on [`super::auth`]: [`Dir`] is a
//! [`Fixture`] plus the admin user calls, self-service calls, groups,
//! paginated listings (users, groups, audit events) collected page by page
//! with duplicate checks, and the exception and claim checks those tests
//! add.
//!
//! Test files import both layers: `use common::auth::*; use
//! common::directory::*;`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tessera::proto::*;
use tonic::Code;

use super::auth::*;
use crate::common::{http_get, TestCluster};

/// A third one.
pub const THIRD_PASSWORD: &str = "Th1rd-Passw0rd#";
/// A fourth one.
pub const FOURTH_PASSWORD: &str = "F0urth-Secret$";
/// A wrong password that satisfies the policy (so only its value is wrong).
pub const WRONG_PASSWORD: &str = "Wr0ng-Password!";

/// The message of a refused password sign-in (also for unknown users).
pub const INCORRECT: &str = "NotAuthorizedException: Incorrect username or password.";
/// The message of a sign-in refused by the lockout.
pub const LOCKED: &str = "NotAuthorizedException: Password attempts exceeded";
/// The message of a sign-in by a disabled user.
pub const DISABLED: &str = "NotAuthorizedException: User is disabled.";
/// The scope every access token carries.
pub const SIGNIN_SCOPE: &str = "aws.cognito.signin.user.admin";
/// The ListUsers rows-scanned counter on `/metrics`.
pub const ROWS_SCANNED: &str = "tessera_list_users_rows_scanned_total";

/// How long a follower may lag behind an acknowledged write before a test
/// calls it a bug.
pub const REPLICATION: Duration = Duration::from_secs(5);

/// `AttributeValue` list (admin calls) from pairs.
pub fn aattrs(pairs: &[(&str, &str)]) -> Vec<AttributeValue> {
    pairs
        .iter()
        .map(|(n, v)| AttributeValue {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// The value of `name` in an admin attribute list.
pub fn admin_attr<'a>(list: &'a [AttributeValue], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// The value of `name` in a self-service attribute list.
pub fn user_attr<'a>(list: &'a [AttributeType], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// Requires `r` to have failed with exactly the message `message` (which
/// starts with the exception name) and the matching code and metadata.
pub fn expect_message<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    message: &str,
) -> Result<()> {
    let exception = message.split(':').next().unwrap_or_default();
    let s = expect_exception(what, r, code, exception)?;
    ensure!(
        s.message() == message,
        "{what}: expected the message {message:?}, got {:?}",
        s.message()
    );
    Ok(())
}

/// Requires `r` to fail with one of `exceptions` (when the contract leaves
/// the choice open); returns the name it got.
pub fn expect_one_of<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    allowed: &[(Code, &str)],
) -> Result<String> {
    match r {
        Ok(v) => bail!("{what}: expected one of {allowed:?}, got success: {v:?}"),
        Err(s) => {
            for (code, exception) in allowed {
                if check_exception(what, &s, *code, exception).is_ok() {
                    println!("  ok: {what} -> {:?} {}", s.code(), s.message());
                    return Ok(exception.to_string());
                }
            }
            bail!(
                "{what}: expected one of {allowed:?}, got {:?}: {} (header {:?})",
                s.code(),
                s.message(),
                exception_of(&s)
            )
        }
    }
}

/// Polls `f` until it fails with `exception`: for a node that may not have
/// applied an acknowledged write yet. An unexpected error fails at once; a
/// success after [`REPLICATION`] fails.
pub async fn refused_within<T, F, Fut>(what: &str, code: Code, exception: &str, mut f: F) -> Result<tonic::Status>
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = std::time::Instant::now();
    loop {
        match f().await {
            Err(s) => {
                check_exception(what, &s, code, exception)?;
                println!("  ok: {what} -> {} after {:?}", s.message(), start.elapsed());
                return Ok(s);
            }
            Ok(v) => {
                if start.elapsed() > REPLICATION {
                    bail!("{what}: still accepted after {REPLICATION:?}: {v:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `f` until it succeeds, for a node that may lag; fails with the
/// last error after [`REPLICATION`].
pub async fn accepted_within<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = std::time::Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(s) => {
                if start.elapsed() > REPLICATION {
                    bail!(
                        "{what}: still refused after {REPLICATION:?}: {:?}: {}",
                        s.code(),
                        s.message()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Decodes a JWT's payload without verifying it (for messages only).
pub fn peek_claims(token: &str) -> Result<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).ok_or_else(|| anyhow!("not a compact JWS"))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .context("JWT payload is not base64url")?;
    serde_json::from_slice(&raw).context("JWT payload is not JSON")
}

/// The `cognito:groups` claim as a list (absent: empty).
pub fn groups_claim(claims: &Value) -> Result<Vec<String>> {
    match claims.get("cognito:groups") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("cognito:groups holds a non-string: {v}"))
            })
            .collect(),
        Some(other) => bail!("cognito:groups is not an array: {other}"),
    }
}

/// The `scope` claim, split on spaces.
pub fn scope_claim(claims: &Value) -> Result<Vec<String>> {
    let s = claims["scope"]
        .as_str()
        .ok_or_else(|| anyhow!("no string scope claim in {claims}"))?;
    Ok(s.split(' ').map(str::to_string).collect())
}

/// The scope an access token must carry for a user whose groups grant
/// `permissions`: the sign-in scope, then the sorted union.
pub fn expected_scope(permissions: &[&str]) -> String {
    let set: BTreeSet<&str> = permissions.iter().copied().collect();
    let mut out = vec![SIGNIN_SCOPE];
    out.extend(set);
    out.join(" ")
}

/// Offline permission check from verified claims, the way a resource
/// server without Tessera's library would do it: the permission is one of
/// the space-separated `scope` entries.
pub fn scope_grants(claims: &Value, permission: &str) -> bool {
    claims["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|p| p == permission))
}

/// What [`Dir::create`] sets up.
#[derive(Debug, Clone)]
pub struct DirSpec<'a> {
    pub name: &'a str,
    pub alias_attributes: &'a [&'a str],
    pub custom: &'a [CustomAttr<'a>],
    /// Cheap argon2 (else the pool's default cost).
    pub fast: bool,
}

impl Default for DirSpec<'_> {
    fn default() -> Self {
        DirSpec {
            name: "directory-test",
            alias_attributes: &[],
            custom: &[],
            fast: true,
        }
    }
}

/// A [`Fixture`] (pool, app client without a secret, a client per node)
/// with the directory calls on top: users, groups, listings, audit.
///
/// It derefs to its fixture, so `d.pool_id`, `d.sign_in(..)` and the other
/// fixture fields and methods read the same in both kinds of test.
pub struct Dir {
    pub fx: Fixture,
}

impl std::ops::Deref for Dir {
    type Target = Fixture;

    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

impl Dir {
    /// Creates a pool (email required and mutable) through node 1 and an
    /// app client through node 2, connects to every node, and waits until
    /// every node's signing key is published in every node's JWKS.
    pub async fn create(c: &TestCluster, spec: DirSpec<'_>) -> Result<Self> {
        let setup = PoolSetup {
            name: spec.name,
            alias_attributes: spec.alias_attributes,
            custom: spec.custom,
            fast: spec.fast,
            generate_secret: false,
        };
        let fx = Fixture::create_pool(c, setup).await?;
        fx.wait_keys_published().await?;
        Ok(Dir { fx })
    }

    /// A ReadIndex barrier on node `via`: after it, the node has applied
    /// every write acknowledged before the call. (A consistent
    /// `DescribeUserPool`, which the harness already relies on.)
    pub async fn barrier(&self, via: u64) -> Result<()> {
        self.node(via)
            .describe_user_pool(&self.pool_id, true)
            .await
            .map_err(status_err(&format!("consistent DescribeUserPool on node {via}")))?;
        Ok(())
    }

    /// Barriers on every node.
    pub async fn barrier_all(&self) -> Result<()> {
        for id in self.node_ids() {
            self.barrier(id).await?;
        }
        Ok(())
    }

    // ----- users ---------------------------------------------------------

    /// `AdminCreateUser` with a temporary password and no message.
    pub async fn admin_create_user(
        &self,
        via: u64,
        username: &str,
        attributes: &[(&str, &str)],
        temporary: &str,
    ) -> Result<UserType, tonic::Status> {
        let c = self.node(via);
        let r = c
            .admin()
            .admin_create_user(c.req(AdminCreateUserRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                user_attributes: aattrs(attributes),
                temporary_password: temporary.to_string(),
                message_action: "SUPPRESS".into(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        r.user
            .ok_or_else(|| tonic::Status::internal("test harness: AdminCreateUser returned no user"))
    }

    /// `AdminUpdateUserAttributes` through node `via`.
    pub async fn admin_update_attributes(
        &self,
        via: u64,
        username: &str,
        attributes: Vec<AttributeValue>,
    ) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .admin_update_user_attributes(c.req(AdminUpdateUserAttributesRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                user_attributes: attributes,
            }))
            .await?;
        Ok(())
    }

    /// `AdminImportUsers` through node `via`.
    pub async fn import_users(
        &self,
        via: u64,
        users: Vec<ImportUserType>,
        password: &str,
        mark_verified: bool,
    ) -> Result<AdminImportUsersResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .admin_import_users(c.req(AdminImportUsersRequest {
                user_pool_id: self.pool_id.clone(),
                users,
                password: password.to_string(),
                mark_verified,
            }))
            .await?
            .into_inner())
    }

    // ----- sign-in -------------------------------------------------------

    /// `REFRESH_TOKEN_AUTH`, raw.
    ///
    /// Shadows [`Fixture::refresh_raw`]: a `Dir`'s app client has no
    /// secret, so no `USERNAME` goes with the token.
    pub async fn refresh_raw(&self, via: u64, refresh_token: &str) -> Result<InitiateAuthResponse, tonic::Status> {
        self.fx.refresh_raw(via, refresh_token, "").await
    }

    /// A refresh that must yield new tokens.
    pub async fn refresh(&self, via: u64, refresh_token: &str) -> Result<Tokens> {
        let what = format!("REFRESH_TOKEN_AUTH on node {via}");
        let r = self.refresh_raw(via, refresh_token).await.map_err(status_err(&what))?;
        Tokens::from_result(&what, r.authentication_result)
    }

    /// `RespondToAuthChallenge` NEW_PASSWORD_REQUIRED through node `via`.
    pub async fn new_password(
        &self,
        via: u64,
        session: &str,
        username: &str,
        new_password: &str,
    ) -> Result<RespondToAuthChallengeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                client_id: self.client_id.clone(),
                challenge_name: "NEW_PASSWORD_REQUIRED".into(),
                session: session.to_string(),
                challenge_responses: params(&[("USERNAME", username), ("NEW_PASSWORD", new_password)]),
            })
            .await?
            .into_inner())
    }

    // ----- self-service ----------------------------------------------------

    pub async fn forgot_password(&self, via: u64, username: &str) -> Result<ForgotPasswordResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .forgot_password(ForgotPasswordRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn confirm_forgot_password(
        &self,
        via: u64,
        username: &str,
        code: &str,
        password: &str,
    ) -> Result<ConfirmForgotPasswordResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .confirm_forgot_password(ConfirmForgotPasswordRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                confirmation_code: code.to_string(),
                password: password.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn change_password(
        &self,
        via: u64,
        access_token: &str,
        previous: &str,
        proposed: &str,
    ) -> Result<ChangePasswordResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .change_password(ChangePasswordRequest {
                previous_password: previous.to_string(),
                proposed_password: proposed.to_string(),
                access_token: access_token.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn update_user_attributes(
        &self,
        via: u64,
        access_token: &str,
        attributes: &[(&str, &str)],
    ) -> Result<UpdateUserAttributesResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .update_user_attributes(UpdateUserAttributesRequest {
                user_attributes: attrs(attributes),
                access_token: access_token.to_string(),
                client_metadata: Default::default(),
            })
            .await?
            .into_inner())
    }

    pub async fn verify_user_attribute(
        &self,
        via: u64,
        access_token: &str,
        name: &str,
        code: &str,
    ) -> Result<VerifyUserAttributeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .verify_user_attribute(VerifyUserAttributeRequest {
                access_token: access_token.to_string(),
                attribute_name: name.to_string(),
                code: code.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn get_verification_code(
        &self,
        via: u64,
        access_token: &str,
        name: &str,
    ) -> Result<GetUserAttributeVerificationCodeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .get_user_attribute_verification_code(GetUserAttributeVerificationCodeRequest {
                access_token: access_token.to_string(),
                attribute_name: name.to_string(),
                client_metadata: Default::default(),
            })
            .await?
            .into_inner())
    }

    pub async fn resend_confirmation_code(
        &self,
        via: u64,
        username: &str,
    ) -> Result<ResendConfirmationCodeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .resend_confirmation_code(ResendConfirmationCodeRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn check_permission(
        &self,
        via: u64,
        access_token: &str,
        permission: &str,
        consistent_read: bool,
    ) -> Result<CheckPermissionResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .check_permission(CheckPermissionRequest {
                access_token: access_token.to_string(),
                permission: permission.to_string(),
                consistent_read,
            })
            .await?
            .into_inner())
    }

    // ----- outbox ----------------------------------------------------------

    // ----- groups ----------------------------------------------------------

    pub async fn create_group(
        &self,
        via: u64,
        name: &str,
        precedence: Option<i32>,
        permissions: &[&str],
    ) -> Result<GroupType, tonic::Status> {
        let c = self.node(via);
        let r = c
            .admin()
            .create_group(c.req(CreateGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.pool_id.clone(),
                description: format!("the {name} group"),
                role_arn: String::new(),
                precedence,
                permissions: permissions.iter().map(|s| s.to_string()).collect(),
            }))
            .await?
            .into_inner();
        r.group
            .ok_or_else(|| tonic::Status::internal("test harness: CreateGroup returned no group"))
    }

    pub async fn get_group(&self, via: u64, name: &str) -> Result<GroupType, tonic::Status> {
        let c = self.node(via);
        let r = c
            .admin()
            .get_group(c.req(GetGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.pool_id.clone(),
                consistent_read: true,
            }))
            .await?
            .into_inner();
        r.group
            .ok_or_else(|| tonic::Status::internal("test harness: GetGroup returned no group"))
    }

    pub async fn update_group(&self, via: u64, req: UpdateGroupRequest) -> Result<GroupType, tonic::Status> {
        let c = self.node(via);
        let r = c.admin().update_group(c.req(req)).await?.into_inner();
        r.group
            .ok_or_else(|| tonic::Status::internal("test harness: UpdateGroup returned no group"))
    }

    pub async fn delete_group(&self, via: u64, name: &str) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .delete_group(c.req(DeleteGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.pool_id.clone(),
            }))
            .await?;
        Ok(())
    }

    pub async fn add_to_group(&self, via: u64, username: &str, group: &str) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .admin_add_user_to_group(c.req(AdminAddUserToGroupRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                group_name: group.to_string(),
            }))
            .await?;
        Ok(())
    }

    pub async fn remove_from_group(&self, via: u64, username: &str, group: &str) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .admin_remove_user_from_group(c.req(AdminRemoveUserFromGroupRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                group_name: group.to_string(),
            }))
            .await?;
        Ok(())
    }

    /// Every group of the pool, `limit` per page, checking that no group
    /// appears twice; returns the groups in listing order and the number
    /// of pages.
    pub async fn list_groups_all(&self, via: u64, limit: i32) -> Result<(Vec<GroupType>, usize)> {
        let c = self.node(via);
        let mut out = Vec::new();
        let mut next_token = String::new();
        for page_no in 1..=1000 {
            let page = c
                .admin()
                .list_groups(c.req(ListGroupsRequest {
                    user_pool_id: self.pool_id.clone(),
                    limit,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err(&format!("ListGroups page {page_no}")))?
                .into_inner();
            ensure!(
                limit <= 0 || page.groups.len() <= limit as usize,
                "ListGroups page {page_no} has {} groups, more than the limit {limit}",
                page.groups.len()
            );
            out.extend(page.groups);
            if page.next_token.is_empty() {
                check_unique("ListGroups", out.iter().map(|g| g.group_name.clone()))?;
                return Ok((out, page_no));
            }
            next_token = page.next_token;
        }
        bail!("ListGroups did not end after 1000 pages")
    }

    /// Every group of `username`, `limit` per page.
    pub async fn groups_for_user_all(&self, via: u64, username: &str, limit: i32) -> Result<Vec<String>> {
        let c = self.node(via);
        let mut out = Vec::new();
        let mut next_token = String::new();
        for page_no in 1..=1000 {
            let page = c
                .admin()
                .admin_list_groups_for_user(c.req(AdminListGroupsForUserRequest {
                    username: username.to_string(),
                    user_pool_id: self.pool_id.clone(),
                    limit,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err(&format!("AdminListGroupsForUser {username} page {page_no}")))?
                .into_inner();
            ensure!(
                limit <= 0 || page.groups.len() <= limit as usize,
                "AdminListGroupsForUser page {page_no} has {} groups, more than the limit {limit}",
                page.groups.len()
            );
            out.extend(page.groups.into_iter().map(|g| g.group_name));
            if page.next_token.is_empty() {
                check_unique("AdminListGroupsForUser", out.iter().cloned())?;
                return Ok(out);
            }
            next_token = page.next_token;
        }
        bail!("AdminListGroupsForUser did not end after 1000 pages")
    }

    /// Every member of `group` (usernames, sorted), `limit` per page.
    pub async fn users_in_group_all(&self, via: u64, group: &str, limit: i32) -> Result<Vec<String>> {
        let c = self.node(via);
        let mut out = Vec::new();
        let mut next_token = String::new();
        for page_no in 1..=1000 {
            let page = c
                .admin()
                .list_users_in_group(c.req(ListUsersInGroupRequest {
                    user_pool_id: self.pool_id.clone(),
                    group_name: group.to_string(),
                    limit,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err(&format!("ListUsersInGroup {group} page {page_no}")))?
                .into_inner();
            ensure!(
                limit <= 0 || page.users.len() <= limit as usize,
                "ListUsersInGroup page {page_no} has {} users, more than the limit {limit}",
                page.users.len()
            );
            out.extend(page.users.into_iter().map(|u| u.username));
            if page.next_token.is_empty() {
                check_unique("ListUsersInGroup", out.iter().cloned())?;
                out.sort();
                return Ok(out);
            }
            next_token = page.next_token;
        }
        bail!("ListUsersInGroup did not end after 1000 pages")
    }

    // ----- ListUsers ---------------------------------------------------------

    /// One `ListUsers` page, raw.
    pub async fn list_users(
        &self,
        via: u64,
        filter: &str,
        limit: i32,
        pagination_token: &str,
        attributes_to_get: &[&str],
    ) -> Result<ListUsersResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .list_users(c.req(ListUsersRequest {
                user_pool_id: self.pool_id.clone(),
                attributes_to_get: attributes_to_get.iter().map(|s| s.to_string()).collect(),
                limit,
                pagination_token: pagination_token.to_string(),
                filter: filter.to_string(),
                consistent_read: true,
            }))
            .await?
            .into_inner())
    }

    /// Every user matching `filter`, `limit` per page: checks page sizes
    /// (every page but the last is full) and that no user appears twice.
    /// Returns the users in listing order and the number of pages.
    pub async fn list_users_all(
        &self,
        via: u64,
        filter: &str,
        limit: i32,
        attributes_to_get: &[&str],
    ) -> Result<(Vec<UserType>, usize)> {
        let mut out = Vec::new();
        let mut token = String::new();
        let page_size = if limit == 0 { 60 } else { limit as usize };
        for page_no in 1..=100_000 {
            let page = self
                .list_users(via, filter, limit, &token, attributes_to_get)
                .await
                .map_err(status_err(&format!(
                    "ListUsers {filter:?} limit {limit} page {page_no} on node {via}"
                )))?;
            ensure!(
                page.users.len() <= page_size,
                "ListUsers {filter:?}: page {page_no} has {} users, more than the limit {page_size}",
                page.users.len()
            );
            let done = page.pagination_token.is_empty();
            ensure!(
                done || page.users.len() == page_size,
                "ListUsers {filter:?}: page {page_no} has {} users but a pagination token (limit {page_size})",
                page.users.len()
            );
            out.extend(page.users);
            if done {
                check_unique(
                    &format!("ListUsers {filter:?} limit {limit}"),
                    out.iter().map(|u| u.username.clone()),
                )?;
                return Ok((out, page_no));
            }
            token = page.pagination_token;
        }
        bail!("ListUsers {filter:?} did not end after 100000 pages")
    }

    // ----- audit -----------------------------------------------------------

    /// One page of `AdminListUserAuthEvents`, raw.
    pub async fn auth_events_page(
        &self,
        via: u64,
        username: &str,
        max_results: i32,
        next_token: &str,
    ) -> Result<AdminListUserAuthEventsResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .admin_list_user_auth_events(c.req(AdminListUserAuthEventsRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                max_results,
                next_token: next_token.to_string(),
                consistent_read: true,
            }))
            .await?
            .into_inner())
    }

    /// Every audit event (of `username`, or of the pool when empty),
    /// `max_results` per page, in listing order; checks page sizes and
    /// unique event ids (the order is checked by [`newest_first`]). Returns
    /// the events and the number of pages.
    pub async fn auth_events_all(
        &self,
        via: u64,
        username: &str,
        max_results: i32,
    ) -> Result<(Vec<AuthEventType>, usize)> {
        let mut out: Vec<AuthEventType> = Vec::new();
        let mut token = String::new();
        let page_size = if max_results == 0 { 60 } else { max_results as usize };
        for page_no in 1..=10_000 {
            let page = self
                .auth_events_page(via, username, max_results, &token)
                .await
                .map_err(status_err(&format!(
                    "AdminListUserAuthEvents {username:?} page {page_no} on node {via}"
                )))?;
            ensure!(
                page.auth_events.len() <= page_size,
                "AdminListUserAuthEvents: page {page_no} has {} events, more than {page_size}",
                page.auth_events.len()
            );
            out.extend(page.auth_events);
            if page.next_token.is_empty() {
                check_unique(
                    "AdminListUserAuthEvents event ids",
                    out.iter().map(|e| e.event_id.clone()),
                )?;
                return Ok((out, page_no));
            }
            token = page.next_token;
        }
        bail!("AdminListUserAuthEvents did not end after 10000 pages")
    }

    // ----- tokens ----------------------------------------------------------

    /// Verifies `token` with `jsonwebtoken` against node `via`'s JWKS
    /// (EdDSA, `iss`, `exp`) and returns its claims; checks `token_use`.
    pub async fn verified_claims(&self, via: u64, token: &str, token_use: &str) -> Result<Value> {
        let header = jsonwebtoken::decode_header(token).context("decoding the JWT header")?;
        ensure!(header.alg == Algorithm::EdDSA, "alg {:?}, not EdDSA", header.alg);
        let kid = header.kid.ok_or_else(|| anyhow!("the JWT header has no kid"))?;
        let set = self.jwks_with(via, &kid).await?;
        let aud = (token_use == "id").then_some(self.client_id.as_str());
        let claims = verify_with_jwks(token, &set, &self.issuer, aud)?;
        ensure!(
            claims["token_use"] == token_use,
            "token_use is {}, expected {token_use}",
            claims["token_use"]
        );
        Ok(claims)
    }

    /// Tessera's own resource-server verifier for this pool, built from
    /// node `via`'s JWKS (as an API behind Tessera would build it).
    pub async fn library_verifier(&self, via: u64) -> Result<tessera::auth::verifier::TokenVerifier> {
        let addr = &self.api_addrs[(via - 1) as usize];
        let r = http_get(addr, &format!("/{}/.well-known/jwks.json", self.pool_id)).await?;
        ensure!(r.status == 200, "jwks.json on {addr}: {} {}", r.status, r.body);
        let jwks: tessera::auth::jwks::Jwks =
            serde_json::from_str(&r.body).context("tessera cannot parse its own JWKS")?;
        Ok(tessera::auth::verifier::TokenVerifier::new(&self.issuer, &jwks))
    }

    /// Claims of both tokens of a sign-in, verified on node `via`'s JWKS.
    pub async fn claims(&self, via: u64, t: &Tokens) -> Result<(Value, Value)> {
        let id = self.verified_claims(via, &t.id_token, "id").await?;
        let access = self.verified_claims(via, &t.access_token, "access").await?;
        Ok((id, access))
    }
}

/// Fails unless `events` are newest first in commit order (`event_id`
/// descending), and the events committed together with their change (all
/// but successful sign-ins, which a node commits in batches) also descend
/// by `creation_date`.
pub fn newest_first(what: &str, events: &[AuthEventType]) -> Result<()> {
    let ids: Vec<u64> = events
        .iter()
        .map(|e| {
            e.event_id
                .parse::<u64>()
                .map_err(|_| anyhow::anyhow!("{what}: event id {:?}", e.event_id))
        })
        .collect::<Result<_>>()?;
    ensure!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "{what}: event ids are not strictly descending: {ids:?}"
    );
    let synchronous: Vec<&AuthEventType> = events
        .iter()
        .filter(|e| !(e.event_type == "SignIn" && e.event_response == "Pass"))
        .collect();
    for w in synchronous.windows(2) {
        ensure!(
            w[0].creation_date >= w[1].creation_date,
            "{what}: events are not newest first: {} {} ({}, at {}) is listed before {} {} ({}, at {})",
            w[0].event_type,
            w[0].event_response,
            w[0].detail,
            w[0].creation_date,
            w[1].event_type,
            w[1].event_response,
            w[1].detail,
            w[1].creation_date
        );
    }
    Ok(())
}

/// Fails if `items` holds a duplicate.
pub fn check_unique(what: &str, items: impl IntoIterator<Item = String>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for i in items {
        ensure!(seen.insert(i.clone()), "{what}: {i:?} appears twice");
    }
    Ok(())
}

/// A six-digit code that differs from `code`.
pub fn wrong_code(code: &str) -> String {
    if code == "000000" {
        "111111".into()
    } else {
        "000000".into()
    }
}

/// The median of some durations (the upper one for an even count).
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// The `sub` attribute of a listed user.
pub fn sub_of(u: &UserType) -> Result<String> {
    admin_attr(&u.attributes, "sub")
        .map(str::to_string)
        .ok_or_else(|| anyhow!("listed user {} has no sub attribute: {:?}", u.username, u.attributes))
}

/// Attribute map of a listed user.
pub fn attr_map(u: &UserType) -> BTreeMap<String, String> {
    u.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect()
}
