//! The client side of a chaos run: many concurrent logical clients, spread
//! over every node, doing sign-ups (some deliberately contended), register
//! writes and linearizable reads on a few users' attributes, sign-ins and
//! refreshes. Every operation is recorded as an `invoke` and then an `ok`,
//! `fail` or `info` event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tonic::{Code, Status};

use super::history::{Event, EventType};
use crate::client::Client;
use crate::proto::*;

/// Password of every user the workload creates.
pub const PASSWORD: &str = "Chaos-Passw0rd!";
/// The register attribute.
pub const REGISTER_ATTRIBUTE: &str = "name";
/// The registers' value before any write.
pub const INITIAL_VALUE: &str = "init";
/// How long one operation may take before its outcome counts as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where events go: an in-memory log (the writer drains it to disk).
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// A recorder whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Recorder {
            start,
            events: Arc::default(),
        }
    }

    /// Nanoseconds since the start of the run.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        process: u64,
        kind: EventType,
        f: &str,
        key: &str,
        value: Value,
        node: u64,
        error: Option<String>,
    ) {
        let e = Event {
            process,
            kind,
            f: f.into(),
            key: key.into(),
            value,
            time: self.now(),
            node,
            error,
        };
        if let Ok(mut v) = self.events.lock() {
            v.push(e);
        }
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// What the workload operates on, set up before it starts.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The pool the workload runs in.
    pub pool_id: String,
    /// The app client its calls use.
    pub client_id: String,
    /// Users whose `name` attribute serves as a register.
    pub registers: Vec<String>,
    /// Confirmed users for sign-ins.
    pub sign_in_users: Vec<String>,
    /// The identity pool of the `get_id` operations.
    pub identity_pool_id: String,
    /// The user pool's provider name in that identity pool.
    pub identity_provider: String,
    /// `(username, id token)` of users whose first `GetId` the workload
    /// races on two nodes: the logins of the identity checks.
    pub identity_logins: Vec<(String, String)>,
}

/// Clients for every node, updated when membership changes.
#[derive(Clone, Default)]
pub struct Nodes {
    inner: Arc<RwLock<BTreeMap<u64, Client>>>,
}

impl Nodes {
    /// Sets (or replaces) the client for node `id`.
    pub fn set(&self, id: u64, c: Client) {
        if let Ok(mut m) = self.inner.write() {
            m.insert(id, c);
        }
    }

    /// Forgets node `id` (removed from the membership).
    pub fn remove(&self, id: u64) {
        if let Ok(mut m) = self.inner.write() {
            m.remove(&id);
        }
    }

    /// Every node's client, by id.
    pub fn all(&self) -> Vec<(u64, Client)> {
        self.inner
            .read()
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }
}

/// Tokens minted during the run, for the token-validity check.
#[derive(Clone, Default)]
pub struct Minted {
    /// `(node, access token)` of every successful sign-in or refresh, by the node that minted it.
    pub access_tokens: Arc<Mutex<Vec<(u64, String)>>>,
}

/// Sign-up names: every other contended name is taken by the next
/// contended pick, so each contended username is tried twice.
#[derive(Default)]
pub struct Names {
    fresh: AtomicU64,
    contended: AtomicU64,
    /// `GetId` picks: each login is picked twice in a row (by different
    /// workers, most likely on different nodes) for its first `GetId`.
    identities: AtomicU64,
}

/// Whether the call never reached a node (connection refused): then it
/// certainly had no effect.
fn not_sent(s: &Status) -> bool {
    s.code() == Code::Unavailable && s.message().contains("connect error")
}

/// Whether a failed call certainly had no effect. Anything else (time-outs,
/// lost connections, a leader change mid-call) is an unknown outcome,
/// recorded as `info` for reads too: a history never says `fail` unless it
/// knows.
fn definite_failure(s: &Status) -> bool {
    not_sent(s)
        || matches!(
            s.code(),
            Code::InvalidArgument
                | Code::AlreadyExists
                | Code::NotFound
                | Code::Unauthenticated
                | Code::FailedPrecondition
                | Code::PermissionDenied
                | Code::OutOfRange
                | Code::ResourceExhausted
        )
}

/// Runs one logical client until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn client_loop(
    worker: u64,
    workers: u64,
    seed: u64,
    nodes: Nodes,
    fx: Arc<Fixture>,
    rec: Recorder,
    names: Arc<Names>,
    minted: Minted,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ worker.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut process = worker;
    let mut writes = 0u64;
    let mut refresh_token: Option<String> = None;
    while !*stop.borrow() {
        let all = nodes.all();
        if all.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let (node, client) = all[rng.random_range(0..all.len())].clone();
        let roll = rng.random_range(0..100);
        let (f, key, input): (&str, String, Value) = if roll < 30 {
            let name = if rng.random_range(0..100) < 30 {
                format!("c-{}", names.contended.fetch_add(1, Ordering::Relaxed) / 2)
            } else {
                format!("u-{}", names.fresh.fetch_add(1, Ordering::Relaxed))
            };
            ("sign_up", name, Value::Null)
        } else if roll < 50 {
            writes += 1;
            let key = fx.registers[rng.random_range(0..fx.registers.len())].clone();
            ("write", key, json!(format!("w{worker}-{writes}")))
        } else if roll < 75 {
            let key = fx.registers[rng.random_range(0..fx.registers.len())].clone();
            ("read", key, Value::Null)
        } else if roll >= 92 && !fx.identity_logins.is_empty() {
            // Each login's first GetId races on two workers; once every
            // login was raced, repeats (reads) of random ones.
            let n = names.identities.fetch_add(1, Ordering::Relaxed) / 2;
            let i = match usize::try_from(n) {
                Ok(i) if i < fx.identity_logins.len() => i,
                _ => rng.random_range(0..fx.identity_logins.len()),
            };
            ("get_id", fx.identity_logins[i].0.clone(), Value::Null)
        } else if roll < 85 || refresh_token.is_none() {
            let key = fx.sign_in_users[rng.random_range(0..fx.sign_in_users.len())].clone();
            ("sign_in", key, Value::Null)
        } else {
            ("refresh", String::new(), Value::Null)
        };
        rec.record(process, EventType::Invoke, f, &key, input.clone(), node, None);
        let call = perform(&client, &fx, f, &key, &input, refresh_token.as_deref());
        let result = match tokio::time::timeout(OP_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded("the operation timed out")),
        };
        match result {
            Ok(out) => {
                if let Some(t) = &out.access_token {
                    if let Ok(mut m) = minted.access_tokens.lock() {
                        m.push((node, t.clone()));
                    }
                }
                if out.refresh_token.is_some() {
                    refresh_token = out.refresh_token.clone();
                }
                rec.record(process, EventType::Ok, f, &key, out.value, node, None);
            }
            Err(s) if definite_failure(&s) => {
                rec.record(
                    process,
                    EventType::Fail,
                    f,
                    &key,
                    input,
                    node,
                    Some(s.message().to_string()),
                );
                if not_sent(&s) {
                    // The node is down: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(s) => {
                rec.record(
                    process,
                    EventType::Info,
                    f,
                    &key,
                    input,
                    node,
                    Some(s.message().to_string()),
                );
                // The operation may still be in flight: continue as a new
                // process, as Jepsen does.
                process += workers;
            }
        }
    }
}

struct Output {
    value: Value,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

fn plain(value: Value) -> Output {
    Output {
        value,
        access_token: None,
        refresh_token: None,
    }
}

async fn perform(
    client: &Client,
    fx: &Fixture,
    f: &str,
    key: &str,
    input: &Value,
    refresh: Option<&str>,
) -> Result<Output, Status> {
    match f {
        "sign_up" => {
            let r = client
                .auth()
                .sign_up(SignUpRequest {
                    client_id: fx.client_id.clone(),
                    username: key.to_string(),
                    password: PASSWORD.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(plain(json!(r.user_sub)))
        }
        "write" => {
            client
                .admin()
                .admin_update_user_attributes(client.req(AdminUpdateUserAttributesRequest {
                    user_pool_id: fx.pool_id.clone(),
                    username: key.to_string(),
                    user_attributes: vec![AttributeValue {
                        name: REGISTER_ATTRIBUTE.into(),
                        value: input.as_str().unwrap_or_default().to_string(),
                    }],
                }))
                .await?;
            Ok(plain(input.clone()))
        }
        "read" => {
            let r = client
                .admin()
                .admin_get_user(client.req(AdminGetUserRequest {
                    user_pool_id: fx.pool_id.clone(),
                    username: key.to_string(),
                    consistent_read: true,
                }))
                .await?
                .into_inner();
            let v = r
                .user_attributes
                .iter()
                .find(|a| a.name == REGISTER_ATTRIBUTE)
                .map(|a| json!(a.value))
                .unwrap_or(Value::Null);
            Ok(plain(v))
        }
        "get_id" => {
            let id = get_id(client, fx, key).await?;
            Ok(plain(json!(id)))
        }
        "sign_in" => {
            let mut params = BTreeMap::new();
            params.insert("USERNAME".to_string(), key.to_string());
            params.insert("PASSWORD".to_string(), PASSWORD.to_string());
            let r = client
                .auth()
                .initiate_auth(InitiateAuthRequest {
                    auth_flow: "USER_PASSWORD_AUTH".into(),
                    auth_parameters: params,
                    client_id: fx.client_id.clone(),
                    client_metadata: Default::default(),
                })
                .await?
                .into_inner();
            let t = r
                .authentication_result
                .ok_or_else(|| Status::internal("sign-in returned no tokens"))?;
            Ok(Output {
                value: Value::Null,
                access_token: Some(t.access_token),
                refresh_token: Some(t.refresh_token),
            })
        }
        _ => {
            let mut params = BTreeMap::new();
            params.insert("REFRESH_TOKEN".to_string(), refresh.unwrap_or_default().to_string());
            let r = client
                .auth()
                .initiate_auth(InitiateAuthRequest {
                    auth_flow: "REFRESH_TOKEN_AUTH".into(),
                    auth_parameters: params,
                    client_id: fx.client_id.clone(),
                    client_metadata: Default::default(),
                })
                .await?
                .into_inner();
            let t = r
                .authentication_result
                .ok_or_else(|| Status::internal("refresh returned no tokens"))?;
            Ok(Output {
                value: Value::Null,
                access_token: Some(t.access_token),
                refresh_token: None,
            })
        }
    }
}

/// `GetId` for the login of workload user `username` (its id token under
/// the user pool's provider name): the identity id.
pub async fn get_id(client: &Client, fx: &Fixture, username: &str) -> Result<String, Status> {
    let token = fx
        .identity_logins
        .iter()
        .find(|(u, _)| u == username)
        .map(|(_, t)| t.clone())
        .ok_or_else(|| Status::invalid_argument("not a workload identity user"))?;
    let r = client
        .identity()
        .get_id(GetIdRequest {
            account_id: String::new(),
            identity_pool_id: fx.identity_pool_id.clone(),
            logins: [(fx.identity_provider.clone(), token)].into_iter().collect(),
        })
        .await?
        .into_inner();
    Ok(r.identity_id)
}
