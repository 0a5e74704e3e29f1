//! The replicated JWKS: every node publishes its own public signing key and
//! every node serves the same key set and discovery document, per pool.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{http_get, poll_until, TestCluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_every_nodes_public_key() -> Result<()> {
    let cluster = TestCluster::start(3).await?;
    let pool = cluster.client(1).await?.create_user_pool("jwks").await?;
    let path = format!("/{}/.well-known/jwks.json", pool.id);

    let mut sets = Vec::new();
    for id in 1..=3u64 {
        let api = cluster.node(id).api_addr.clone();
        let path = path.clone();
        let set: Value = poll_until(
            &format!("three keys in node {id}'s JWKS"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                let api = api.clone();
                let path = path.clone();
                async move {
                    let r = http_get(&api, &path).await?;
                    ensure!(r.status == 200, "status {}: {}", r.status, r.body);
                    let v: Value = serde_json::from_str(&r.body)?;
                    let n = v["keys"].as_array().map(|a| a.len()).unwrap_or(0);
                    Ok((n == 3).then_some(v))
                }
            },
        )
        .await?;
        sets.push(set);
    }
    assert_eq!(sets[0], sets[1], "nodes 1 and 2 serve the same JWKS");
    assert_eq!(sets[1], sets[2], "nodes 2 and 3 serve the same JWKS");
    let keys = sets[0]["keys"].as_array().unwrap();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["x"].as_str().unwrap().len(), 43);
        assert!(key.get("d").is_none(), "a private key must never be published");
        let want_prefix = format!("n{}-", i + 1);
        assert!(
            keys.iter()
                .any(|k| k["kid"].as_str().unwrap().starts_with(&want_prefix)),
            "node {} published its key: {keys:?}",
            i + 1
        );
    }

    // Discovery document: the issuer is {public_url}/{pool_id} on every node.
    let issuer = format!("http://{}/{}", cluster.node(1).api_addr, pool.id);
    for id in 1..=3u64 {
        let r = http_get(
            &cluster.node(id).api_addr,
            &format!("/{}/.well-known/openid-configuration", pool.id),
        )
        .await?;
        assert_eq!(r.status, 200, "{}", r.body);
        let doc: Value = serde_json::from_str(&r.body)?;
        assert_eq!(doc["issuer"], issuer.as_str());
        assert_eq!(doc["jwks_uri"], format!("{issuer}/.well-known/jwks.json").as_str());
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "EdDSA");
    }

    // Unknown and malformed pools.
    let r = http_get(&cluster.node(2).api_addr, "/local_ZZZZZZZZZ/.well-known/jwks.json").await?;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("ResourceNotFoundException"), "{}", r.body);
    let r = http_get(&cluster.node(2).api_addr, "/not-a-pool/.well-known/jwks.json").await?;
    assert_eq!(r.status, 400, "{}", r.body);
    Ok(())
}
