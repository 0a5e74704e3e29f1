//! Fixtures for the sync tests: an identity pool that lets guests in, its
//! guests and their credentials (the `session_token` a device presents),
//! `/sync-info`, and hand-made credential tokens (forged, or signed with a
//! node's own key from its data dir, to make one that expires on cue).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, ensure, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tessera::auth::signing_key::NodeSigningKey;
use tessera::client::Client;
use tessera::proto::*;

use super::{http_get, TestCluster, TestNode};

/// An identity pool that allows unauthenticated identities (guests),
/// with a role for them, known to every node.
pub struct SyncWorld {
    pub pool_id: String,
}

/// A guest identity and its credentials.
#[derive(Debug, Clone)]
pub struct Guest {
    pub identity_id: String,
    /// `GetCredentialsForIdentity`'s `session_token`: what a device sends.
    pub token: String,
    /// Unix seconds.
    pub expiration: i64,
}

impl SyncWorld {
    /// Creates the pool `name` and its guest role through node 1, and waits
    /// until every node has it.
    pub async fn create(c: &TestCluster, name: &str) -> Result<Self> {
        let admin = c.client(1).await?;
        let role = format!("{name}-guests");
        admin
            .identity()
            .create_role(admin.req(CreateRoleRequest {
                role_name: role.clone(),
                description: "sync test guests".into(),
                policy_document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["public/*"]}]}"#.into(),
            }))
            .await
            .context("CreateRole")?;
        let pool = admin
            .identity()
            .create_identity_pool(admin.req(CreateIdentityPoolRequest {
                identity_pool_name: name.replace('-', "_"),
                allow_unauthenticated_identities: true,
                ..Default::default()
            }))
            .await
            .context("CreateIdentityPool")?
            .into_inner();
        let pool_id = pool.identity_pool_id;
        admin
            .identity()
            .set_identity_pool_roles(admin.req(SetIdentityPoolRolesRequest {
                identity_pool_id: pool_id.clone(),
                roles: BTreeMap::from([("unauthenticated".to_string(), format!("arn:tessera:iam:::role/{role}"))]),
                role_mappings: BTreeMap::new(),
            }))
            .await
            .context("SetIdentityPoolRoles")?;
        for via in c.live_ids() {
            let a = c.client(via).await?;
            a.identity()
                .describe_identity_pool(a.req(DescribeIdentityPoolRequest {
                    identity_pool_id: pool_id.clone(),
                }))
                .await
                .with_context(|| format!("DescribeIdentityPool (a barrier) on node {via}"))?;
        }
        let w = SyncWorld { pool_id };
        // Every node can issue credentials (its signing key is published),
        // so every node's key is in the key set the others verify with.
        for via in c.live_ids() {
            w.guest(c, via)
                .await
                .with_context(|| format!("a probe guest on node {via}"))?;
        }
        Ok(w)
    }

    /// A new guest identity (`GetId` with no login) and its credentials,
    /// both through node `via`.
    pub async fn guest(&self, c: &TestCluster, via: u64) -> Result<Guest> {
        let public = Client::connect(&c.node(via).url(), None).await?;
        let identity_id = public
            .identity()
            .get_id(GetIdRequest {
                account_id: String::new(),
                identity_pool_id: self.pool_id.clone(),
                logins: BTreeMap::new(),
            })
            .await
            .context("GetId for a guest")?
            .into_inner()
            .identity_id;
        self.credentials(c, via, &identity_id).await
    }

    /// Fresh credentials of `identity_id` through node `via` (waiting,
    /// on a node that just started, until its signing key is published).
    pub async fn credentials(&self, c: &TestCluster, via: u64, identity_id: &str) -> Result<Guest> {
        let public = Client::connect(&c.node(via).url(), None).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let r = loop {
            let r = public
                .identity()
                .get_credentials_for_identity(GetCredentialsForIdentityRequest {
                    identity_id: identity_id.into(),
                    logins: BTreeMap::new(),
                    custom_role_arn: String::new(),
                    duration_seconds: 0,
                })
                .await;
            match r {
                Err(s) if s.code() == tonic::Code::Unavailable && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                r => break r.context("GetCredentialsForIdentity")?.into_inner(),
            }
        };
        let creds = r.credentials.ok_or_else(|| anyhow!("no credentials"))?;
        ensure!(
            r.identity_id == identity_id,
            "credentials for {} instead",
            r.identity_id
        );
        Ok(Guest {
            identity_id: r.identity_id,
            token: creds.session_token,
            expiration: creds.expiration,
        })
    }
}

/// `GET /sync-info` of `node`, as JSON.
pub async fn sync_info(node: &TestNode) -> Result<Value> {
    let r = http_get(&node.api_addr, "/sync-info").await?;
    ensure!(r.status == 200, "/sync-info answered {}: {}", r.status, r.body);
    Ok(serde_json::from_str(&r.body)?)
}

/// The header and claims of a JWT, decoded.
pub fn decode_jwt(token: &str) -> Result<(Value, serde_json::Map<String, Value>)> {
    let mut parts = token.split('.');
    let mut part = || -> Result<Value> {
        let p = parts.next().ok_or_else(|| anyhow!("not a JWT"))?;
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p)?)?)
    };
    let header = part()?;
    let claims = match part()? {
        Value::Object(m) => m,
        other => anyhow::bail!("JWT claims are not an object: {other}"),
    };
    Ok((header, claims))
}

/// `token` with its claims replaced and its signature kept: what an
/// attacker who edits a payload sends.
pub fn with_edited_claims(token: &str, claims: &serde_json::Map<String, Value>) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()),
        parts.get(2).copied().unwrap_or_default()
    )
}

/// The token-signing key a node signs with now (the newest in its
/// `data_dir/keys`), read without touching the directory. For tests that
/// need credentials the cluster would accept with an expiry of their
/// choosing.
pub fn node_signing_key(node: &TestNode) -> Result<NodeSigningKey> {
    let dir = node.data_dir.join("keys");
    let newest = newest_key_file(&dir)?;
    let text = std::fs::read_to_string(&newest)?;
    let seed: [u8; 32] = hex::decode(text.trim())?
        .try_into()
        .map_err(|_| anyhow!("{} is not a 32-byte seed", newest.display()))?;
    Ok(NodeSigningKey::from_seed(node.id, seed))
}

fn newest_key_file(dir: &Path) -> Result<std::path::PathBuf> {
    let mut keys: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ed25519-") && n.ends_with(".key"))
        })
        .collect();
    keys.sort();
    keys.pop().ok_or_else(|| anyhow!("no signing key in {}", dir.display()))
}

/// A copy of the credentials `token` issued at `iat` and expiring at
/// `exp`, signed with `key`.
pub fn resign_credentials(token: &str, key: &NodeSigningKey, iat: i64, exp: i64) -> Result<String> {
    let (_, mut claims) = decode_jwt(token)?;
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), exp.into());
    Ok(tessera::auth::jwt::mint(&claims, key))
}

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
