//! The calls of the timed load, and the checks on their answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::transport::Channel;

use super::setup::{BenchUser, Fixture, DEVELOPER_PROVIDER};
use super::{IdentityScenario, NewIdentity};
use crate::bench::auth::pick;
use crate::bench::driver::{Caller, Failure};
use crate::client::Client;
use crate::proto::identity_client::IdentityClient;
use crate::proto::{
    AuthorizeRequest, GetCredentialsForIdentityRequest, GetIdRequest, GetOpenIdTokenForDeveloperIdentityRequest,
};

/// `authorize`: every this many calls, one asks for what the policy's
/// explicit Deny forbids; the others for the identity's own data.
pub const DENY_EVERY: u64 = 4;
/// The action every `authorize` call asks about.
pub const AUTHORIZE_ACTION: &str = "s3:GetObject";
/// The resource the policy's `NoAdmin` statement denies.
pub const DENIED_RESOURCE: &str = "arn:aws:s3:::bench-data/admin/settings.json";

/// The resource of the `seq`-th allowed `authorize` call of an identity:
/// an object under its own prefix.
pub fn allowed_resource(identity_id: &str, seq: u64) -> String {
    format!("arn:aws:s3:::bench-data/{identity_id}/photos/{seq}.jpg")
}

/// Whether the `seq`-th `authorize` call of a caller expects a deny.
pub fn expects_deny(seq: u64) -> bool {
    seq % DENY_EVERY == DENY_EVERY - 1
}

/// What the load tasks call, and with what.
pub(super) enum Workload {
    /// `GetId` with a user's login; the answer must be its identity.
    GetId {
        pool_id: String,
        provider: String,
        users: Vec<BenchUser>,
    },
    /// `GetOpenIdTokenForDeveloperIdentity` for a new identifier.
    NewDeveloper { pool_id: String, prefix: String },
    /// `GetId` with no logins: a new guest.
    NewGuest { pool_id: String },
    /// `GetCredentialsForIdentity` with the identity's login.
    Credentials { provider: String, users: Vec<BenchUser> },
    /// `Authorize` with an identity's credentials.
    Authorize { users: Vec<BenchUser> },
}

impl Workload {
    /// The workload of `scenario` over what setup made.
    pub fn new(scenario: IdentityScenario, new_identity: NewIdentity, fixture: &Fixture, run_id: &str) -> Workload {
        match (scenario, new_identity) {
            (IdentityScenario::Getid, _) => Workload::GetId {
                pool_id: fixture.identity_pool_id.clone(),
                provider: fixture.provider_name.clone(),
                users: fixture.users.clone(),
            },
            (IdentityScenario::GetidNew, NewIdentity::Developer) => Workload::NewDeveloper {
                pool_id: fixture.identity_pool_id.clone(),
                prefix: format!("bench-{run_id}-"),
            },
            (IdentityScenario::GetidNew, NewIdentity::Guest) => Workload::NewGuest {
                pool_id: fixture.identity_pool_id.clone(),
            },
            (IdentityScenario::Credentials, _) => Workload::Credentials {
                provider: fixture.provider_name.clone(),
                users: fixture.users.clone(),
            },
            (IdentityScenario::Authorize, _) => Workload::Authorize {
                users: fixture.users.clone(),
            },
        }
    }

    /// Whether the calls are admin calls, which carry the admin token.
    pub fn needs_admin_token(&self) -> bool {
        matches!(self, Workload::NewDeveloper { .. })
    }
}

/// A failed check on an answer that came back OK.
fn wrong(code: &str, message: String) -> Failure {
    Failure::new(code, message)
}

/// One load task: its connection, its place among the tasks (for
/// [`pick`]), and the last identity it created (`getid-new`: a new one must
/// differ).
pub(super) struct IdentityCaller {
    client: Client,
    identity: IdentityClient<Channel>,
    workload: Arc<Workload>,
    task: usize,
    tasks: usize,
    last_new: String,
}

impl IdentityCaller {
    pub fn new(client: &Client, workload: Arc<Workload>, task: usize, tasks: usize) -> IdentityCaller {
        IdentityCaller {
            identity: client.identity(),
            client: client.clone(),
            workload,
            task,
            tasks,
            last_new: String::new(),
        }
    }

    fn user<'a>(&self, users: &'a [BenchUser], seq: u64) -> Option<&'a BenchUser> {
        users.get(pick(self.task, self.tasks, seq, users.len()))
    }

    /// A newly created identity: non-empty, and not the one this caller
    /// was given last time.
    fn check_new(&mut self, identity_id: String) -> Result<(), Failure> {
        if identity_id.is_empty() {
            return Err(wrong("NoIdentity", "answered without an identity id".into()));
        }
        if identity_id == self.last_new {
            return Err(wrong(
                "WrongIdentity",
                format!("a new login got the previous call's identity {identity_id}"),
            ));
        }
        self.last_new = identity_id;
        Ok(())
    }

    async fn call_workload(&mut self, seq: u64) -> (&'static str, Result<(), Failure>) {
        let workload = self.workload.clone();
        match &*workload {
            Workload::GetId {
                pool_id,
                provider,
                users,
            } => ("getid", self.get_id(pool_id, provider, users, seq).await),
            Workload::NewDeveloper { pool_id, prefix } => ("getid-new", self.new_developer(pool_id, prefix, seq).await),
            Workload::NewGuest { pool_id } => ("getid-new", self.new_guest(pool_id).await),
            Workload::Credentials { provider, users } => ("credentials", self.credentials(provider, users, seq).await),
            Workload::Authorize { users } => {
                let deny = expects_deny(seq);
                let kind = if deny { "authorize-deny" } else { "authorize-allow" };
                (kind, self.authorize(users, seq, deny).await)
            }
        }
    }

    async fn get_id(&mut self, pool_id: &str, provider: &str, users: &[BenchUser], seq: u64) -> Result<(), Failure> {
        let Some(u) = self.user(users, seq) else {
            return Err(wrong("NoUsers", "no bench users".into()));
        };
        let body = GetIdRequest {
            identity_pool_id: pool_id.to_string(),
            logins: BTreeMap::from([(provider.to_string(), u.id_token.clone())]),
            ..Default::default()
        };
        let got = self.identity.get_id(body).await?.into_inner().identity_id;
        if got != u.identity_id {
            return Err(wrong(
                "WrongIdentity",
                format!(
                    "GetId answered {got:?}, setup got {:?} for the same login",
                    u.identity_id
                ),
            ));
        }
        Ok(())
    }

    async fn new_developer(&mut self, pool_id: &str, prefix: &str, seq: u64) -> Result<(), Failure> {
        let body = GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: pool_id.to_string(),
            logins: BTreeMap::from([(DEVELOPER_PROVIDER.to_string(), format!("{prefix}{}-{seq}", self.task))]),
            ..Default::default()
        };
        let r = self
            .identity
            .get_open_id_token_for_developer_identity(self.client.req(body))
            .await?
            .into_inner();
        if r.token.is_empty() {
            return Err(wrong("NoToken", "answered without an OpenID token".into()));
        }
        self.check_new(r.identity_id)
    }

    async fn new_guest(&mut self, pool_id: &str) -> Result<(), Failure> {
        let body = GetIdRequest {
            identity_pool_id: pool_id.to_string(),
            ..Default::default()
        };
        let id = self.identity.get_id(body).await?.into_inner().identity_id;
        self.check_new(id)
    }

    async fn credentials(&mut self, provider: &str, users: &[BenchUser], seq: u64) -> Result<(), Failure> {
        let Some(u) = self.user(users, seq) else {
            return Err(wrong("NoUsers", "no bench users".into()));
        };
        let body = GetCredentialsForIdentityRequest {
            identity_id: u.identity_id.clone(),
            logins: BTreeMap::from([(provider.to_string(), u.id_token.clone())]),
            ..Default::default()
        };
        let r = self.identity.get_credentials_for_identity(body).await?.into_inner();
        if r.identity_id != u.identity_id {
            return Err(wrong(
                "WrongIdentity",
                format!("credentials for {:?}, asked for {:?}", r.identity_id, u.identity_id),
            ));
        }
        match r.credentials {
            Some(c) if !c.session_token.is_empty() && !c.secret_key.is_empty() && !c.access_key_id.is_empty() => Ok(()),
            _ => Err(wrong(
                "NoCredentials",
                "answered without a session token, secret key or access key id".into(),
            )),
        }
    }

    async fn authorize(&mut self, users: &[BenchUser], seq: u64, deny: bool) -> Result<(), Failure> {
        let Some(u) = self.user(users, seq) else {
            return Err(wrong("NoUsers", "no bench users".into()));
        };
        let Some(credentials) = &u.session_token else {
            return Err(wrong("NoCredentials", "setup left a user without credentials".into()));
        };
        let resource = if deny {
            DENIED_RESOURCE.to_string()
        } else {
            allowed_resource(&u.identity_id, seq)
        };
        let body = AuthorizeRequest {
            credentials: credentials.clone(),
            action: AUTHORIZE_ACTION.to_string(),
            resource,
        };
        let r = self.identity.authorize(body).await?.into_inner();
        let expected = if deny { "ExplicitDeny" } else { "Allow" };
        if r.allowed == deny || r.decision != expected || r.identity_id != u.identity_id {
            return Err(wrong(
                "WrongDecision",
                format!(
                    "expected {expected} for {}, got allowed={} decision={:?} identity {:?}",
                    u.identity_id, r.allowed, r.decision, r.identity_id
                ),
            ));
        }
        Ok(())
    }
}

impl Caller for IdentityCaller {
    async fn call(&mut self, seq: u64) -> (&'static str, Result<(), Failure>) {
        self.call_workload(seq).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::setup::policy_document;
    use super::*;
    use crate::model::policy::{PolicyContext, PolicyDocument};

    /// The decisions the load expects are the ones the policy engine makes
    /// (the same code `Authorize` runs).
    #[test]
    fn expected_decisions_match_the_policy() {
        let policy = PolicyDocument::from_json(&policy_document()).unwrap().compile();
        let id = "local:0b7c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d";
        let ctx = PolicyContext {
            identity_id: id,
            user_sub: Some("8f0c6f7e-0000-4000-8000-000000000001"),
            username: Some("bench-1234abcd-u0"),
        };
        let allow = policy.evaluate(AUTHORIZE_ACTION, &allowed_resource(id, 7), &ctx);
        assert!(allow.allowed);
        assert_eq!(allow.statement.map(|s| s.sid), Some(Some("OwnData")));
        let deny = policy.evaluate(AUTHORIZE_ACTION, DENIED_RESOURCE, &ctx);
        assert!(!deny.allowed);
        assert_eq!(deny.statement.map(|s| s.sid), Some(Some("NoAdmin")));
        // Another identity's data is denied implicitly.
        let other = policy.evaluate(AUTHORIZE_ACTION, &allowed_resource("local:other", 7), &ctx);
        assert!(!other.allowed && other.statement.is_none());
    }

    #[test]
    fn one_call_in_four_expects_a_deny() {
        let denies = (0..400).filter(|&s| expects_deny(s)).count();
        assert_eq!(denies, 100);
        assert!(!expects_deny(0) && expects_deny(3));
    }
}
