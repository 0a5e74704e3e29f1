//! What a `bench sync` run stands on, made and removed through the admin
//! API: a role for guests, an identity pool that lets guests in with it,
//! one guest identity per group of devices with its credentials, and
//! where each node's sync listener is (`/sync-info`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};
use tonic::Code;

use crate::bench::driver::status_error;
use crate::bench::group_thousands;
use crate::client::Client;
use crate::proto::{
    CreateIdentityPoolRequest, CreateRoleRequest, DeleteIdentityPoolRequest, DeleteRoleRequest,
    GetCredentialsForIdentityRequest, GetIdRequest, SetIdentityPoolRolesRequest,
};

/// Guest calls in flight during setup (GetId, then credentials).
const SETUP_CONCURRENCY: usize = 32;
/// How long the guests' credentials last: the longest the server issues
/// (12 h), so that no run, however long, sees a session expire.
const CREDENTIAL_SECS: i32 = 43_200;
/// How long setup keeps retrying a guest call that the node's per-address
/// guest limit refused, before it gives up.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(600);

/// The guests' role policy: nothing the bench uses, but a role must have
/// one.
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Sync","Effect":"Allow","Action":["cognito-sync:*"],"Resource":["*"]}]}"#;

/// What the bench created, recorded as soon as each thing exists, so that
/// it is deleted even when a later step fails.
#[derive(Debug, Default)]
pub(super) struct Created {
    pub role_name: Option<String>,
    pub identity_pool_id: Option<String>,
}

impl Created {
    /// Deletes the identity pool (with its identities and their data)
    /// first, since a role an identity pool refers to cannot be deleted;
    /// then the role. Whether everything went; a failure is reported on
    /// stderr and does not fail the run, whose numbers stand.
    pub async fn delete(&self, admin: &Client) -> bool {
        let mut ok = true;
        if let Some(id) = &self.identity_pool_id {
            tracing::info!(identity_pool_id = %id, "deleting the bench identity pool");
            let body = DeleteIdentityPoolRequest {
                identity_pool_id: id.clone(),
            };
            if let Err(s) = admin.identity().delete_identity_pool(admin.req(body)).await {
                eprintln!(
                    "could not delete the bench identity pool {id}: {:?}: {}",
                    s.code(),
                    s.message()
                );
                ok = false;
            }
        }
        if let Some(name) = &self.role_name {
            let body = DeleteRoleRequest {
                role_name: name.clone(),
            };
            if let Err(s) = admin.identity().delete_role(admin.req(body)).await {
                eprintln!(
                    "could not delete the bench role {name}: {:?}: {}",
                    s.code(),
                    s.message()
                );
                ok = false;
            }
        }
        ok
    }
}

/// One guest identity and the token its devices present.
#[derive(Clone)]
pub struct Guest {
    /// Its identity id.
    pub identity_id: String,
    /// `GetCredentialsForIdentity`'s `session_token`.
    pub token: String,
}

/// One node's sync listener, as its `/sync-info` describes it.
#[derive(Debug, Clone)]
pub struct SyncNode {
    /// The api endpoint it was asked through.
    pub api: String,
    /// Its node id.
    pub node_id: u64,
    /// The UDP address devices connect to.
    pub sync_addr: SocketAddr,
    /// Lowercase hex SHA-256 of its certificate's DER bytes.
    pub fingerprint_sha256: String,
    /// The largest frame either side may send.
    pub max_frame_bytes: u32,
}

/// Reads every endpoint's `/sync-info`.
pub async fn discover(endpoints: &[String]) -> anyhow::Result<Vec<SyncNode>> {
    let mut nodes = Vec::with_capacity(endpoints.len());
    for api in endpoints {
        let info = crate::client::http::get_json(api, "/sync-info")
            .await
            .with_context(|| format!("{api}: GET /sync-info (is this build's sync listener running?)"))?;
        nodes.push(parse_sync_info(api, &info)?);
    }
    let mut ids: Vec<u64> = nodes.iter().map(|n| n.node_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != nodes.len() {
        bail!(
            "--endpoint names the same node twice (node ids {:?})",
            nodes.iter().map(|n| n.node_id).collect::<Vec<_>>()
        );
    }
    Ok(nodes)
}

/// A node's `/sync-info` answer. An unspecified sync address (`0.0.0.0`,
/// `::`: a listener bound to every interface with nothing advertised) is
/// reached at the api endpoint's host.
pub fn parse_sync_info(api: &str, info: &serde_json::Value) -> anyhow::Result<SyncNode> {
    let field = |name: &str| info.get(name).ok_or_else(|| anyhow!("{api}: /sync-info has no {name}"));
    let node_id = field("node_id")?
        .as_u64()
        .ok_or_else(|| anyhow!("{api}: /sync-info node_id is not a number"))?;
    let addr = field("sync_addr")?
        .as_str()
        .ok_or_else(|| anyhow!("{api}: /sync-info sync_addr is not a string"))?;
    let fingerprint = field("fingerprint_sha256")?
        .as_str()
        .ok_or_else(|| anyhow!("{api}: /sync-info fingerprint_sha256 is not a string"))?
        .to_ascii_lowercase();
    if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{api}: /sync-info fingerprint_sha256 {fingerprint:?} is not 64 hex digits");
    }
    if let Some(alpn) = info.get("alpn").and_then(|a| a.as_str()) {
        if alpn.as_bytes() != crate::sync::frame::ALPN {
            bail!(
                "{api}: the node speaks {alpn}, this bench {}",
                String::from_utf8_lossy(crate::sync::frame::ALPN)
            );
        }
    }
    let max_frame_bytes = info
        .get("max_frame_bytes")
        .and_then(|m| m.as_u64())
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(crate::sync::frame::DEFAULT_MAX_FRAME_BYTES);
    let mut sync_addr = addr
        .to_socket_addrs()
        .with_context(|| format!("{api}: /sync-info sync_addr {addr:?}"))?
        .next()
        .ok_or_else(|| anyhow!("{api}: /sync-info sync_addr {addr:?} resolves to nothing"))?;
    if sync_addr.ip().is_unspecified() {
        let host = api_host(api);
        let resolved = (host.as_str(), sync_addr.port())
            .to_socket_addrs()
            .with_context(|| format!("{api}: resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{api}: {host} resolves to nothing"))?;
        sync_addr = resolved;
    }
    Ok(SyncNode {
        api: api.to_string(),
        node_id,
        sync_addr,
        fingerprint_sha256: fingerprint,
        max_frame_bytes,
    })
}

/// The host of an api endpoint (`http://host:port`, `host:port`).
fn api_host(api: &str) -> String {
    let rest = api.split_once("://").map_or(api, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => authority.to_string(),
    }
}

/// The identity pool and role, made with `admin`.
pub(super) struct Pool {
    pub identity_pool_id: String,
    pub role_arn: String,
}

/// Creates the guests' role and an identity pool that lets guests in
/// with it, recording both in `created`.
pub(super) async fn create_pool(admin: &Client, run_id: &str, created: &mut Created) -> anyhow::Result<Pool> {
    let role_name = format!("bench-{run_id}-sync-guests");
    let role = admin
        .identity()
        .create_role(admin.req(CreateRoleRequest {
            role_name: role_name.clone(),
            description: "tessera bench sync: the guests whose devices sync".into(),
            policy_document: POLICY.into(),
        }))
        .await
        .map_err(|s| status_error("CreateRole", s))?
        .into_inner()
        .role
        .ok_or_else(|| anyhow!("CreateRole returned no role"))?;
    created.role_name = Some(role_name);
    let pool = admin
        .identity()
        .create_identity_pool(admin.req(CreateIdentityPoolRequest {
            identity_pool_name: format!("bench_sync_{run_id}"),
            allow_unauthenticated_identities: true,
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("CreateIdentityPool", s))?
        .into_inner();
    created.identity_pool_id = Some(pool.identity_pool_id.clone());
    admin
        .identity()
        .set_identity_pool_roles(admin.req(SetIdentityPoolRolesRequest {
            identity_pool_id: pool.identity_pool_id.clone(),
            roles: BTreeMap::from([("unauthenticated".to_string(), role.role_arn.clone())]),
            role_mappings: BTreeMap::new(),
        }))
        .await
        .map_err(|s| status_error("SetIdentityPoolRoles", s))?;
    Ok(Pool {
        identity_pool_id: pool.identity_pool_id,
        role_arn: role.role_arn,
    })
}

/// `n` guest identities of `identity_pool_id` and their credentials, in
/// order, through `client` (the first node: it signs the credentials, and
/// its key is the first every node knows).
pub(super) async fn guests(client: &Client, identity_pool_id: &str, n: usize) -> anyhow::Result<Vec<Guest>> {
    eprintln!(
        "setup: {} guest identities and their credentials",
        group_thousands(n as u64)
    );
    futures::stream::iter(0..n)
        .map(|_| async move {
            let identity_id = patiently("GetId", || async {
                client
                    .identity()
                    .get_id(GetIdRequest {
                        identity_pool_id: identity_pool_id.to_string(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().identity_id)
            })
            .await?;
            let creds = patiently("GetCredentialsForIdentity", || async {
                client
                    .identity()
                    .get_credentials_for_identity(GetCredentialsForIdentityRequest {
                        identity_id: identity_id.clone(),
                        duration_seconds: CREDENTIAL_SECS,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
            let token = creds
                .credentials
                .map(|c| c.session_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| anyhow!("GetCredentialsForIdentity {identity_id}: no session token"))?;
            Ok::<_, anyhow::Error>(Guest { identity_id, token })
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// Calls `call` until it is neither refused by the node's guest limit
/// (`ResourceExhausted`) nor told to retry shortly (`Unavailable`: a
/// fresh node still publishing its signing key), backing off, for at most
/// [`RATE_LIMIT_PATIENCE`]. Guests are limited per address (`[limits]
/// guests_burst`, `guests_per_minute`), and a bench makes thousands from
/// one: the cluster should raise or turn off those limits, and the first
/// refusal says so.
async fn patiently<T, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    static HINTED: std::sync::Once = std::sync::Once::new();
    let give_up = crate::clock::instant() + RATE_LIMIT_PATIENCE;
    let mut pause = Duration::from_millis(50);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            // A fresh node is still publishing its signing key, or has no
            // leader yet: it says to retry shortly.
            Err(s) if s.code() == Code::Unavailable && crate::clock::instant() < give_up => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(s) if s.code() == Code::ResourceExhausted && crate::clock::instant() < give_up => {
                HINTED.call_once(|| {
                    eprintln!(
                        "setup: the node limits guests per address ({}); retrying slowly. \
                         Set [limits] guests_burst = 0 in the nodes' config for a fast setup.",
                        s.message()
                    )
                });
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(status_error(what, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(addr: &str) -> serde_json::Value {
        serde_json::json!({
            "node_id": 2,
            "sync_addr": addr,
            "alpn": "tessera-sync/1",
            "fingerprint_sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
            "max_frame_bytes": 65536,
            "nodes": [{"node_id": 2, "api_addr": "127.0.0.1:7720"}],
        })
    }

    #[test]
    fn sync_info_is_read_and_checked() {
        let n = parse_sync_info("http://127.0.0.1:7720", &info("127.0.0.1:7722")).unwrap();
        assert_eq!(n.node_id, 2);
        assert_eq!(n.sync_addr, "127.0.0.1:7722".parse().unwrap());
        assert_eq!(
            n.fingerprint_sha256,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(n.max_frame_bytes, 65_536);
        // Bound to every interface: reached at the api host.
        let n = parse_sync_info("http://127.0.0.1:7720", &info("0.0.0.0:7722")).unwrap();
        assert_eq!(n.sync_addr, "127.0.0.1:7722".parse().unwrap());

        let mut bad = info("127.0.0.1:7722");
        bad["fingerprint_sha256"] = "abc".into();
        assert!(parse_sync_info("a:1", &bad).is_err());
        let mut bad = info("127.0.0.1:7722");
        bad["alpn"] = "tessera-sync/9".into();
        assert!(parse_sync_info("a:1", &bad).is_err());
        let mut bad = info("127.0.0.1:7722");
        bad.as_object_mut().unwrap().remove("node_id");
        assert!(parse_sync_info("a:1", &bad).is_err());
    }

    #[test]
    fn api_hosts_are_found() {
        assert_eq!(api_host("http://127.0.0.1:7700"), "127.0.0.1");
        assert_eq!(api_host("localhost:7700"), "localhost");
        assert_eq!(api_host("https://[::1]:7700/x"), "::1");
        assert_eq!(api_host("node1"), "node1");
    }

    #[test]
    fn the_role_policy_is_a_valid_document() {
        assert!(crate::model::policy::PolicyDocument::from_json(POLICY).is_ok());
    }
}
