//! Federation into user pools on a real three-node cluster, with a real
//! OpenID provider on loopback playing Google: the token exchange
//! (`FEDERATED_ID_TOKEN_AUTH`) creates one `EXTERNAL_PROVIDER` user per
//! external identity, whichever node takes the first sign-in, maps claims
//! onto attributes, and puts Cognito's `identities` claim in our id token;
//! `AdminLinkProviderForUser` makes an external identity sign in as an
//! existing user; `AdminDisableProviderForUser` unlinks it; bad tokens are
//! refused with the reason.
//!
//! Run with: `cargo test --test federation -- --test-threads=1`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;

use anyhow::{anyhow, ensure, Context, Result};
use base64::Engine as _;
use common::auth::*;
use common::oidc_provider::{KeyKind, OidcTestProvider};
use common::TestCluster;
use serde_json::{json, Value};
use tessera::proto::*;
use tonic::Code;

const AUD: &str = "mobile-app";

fn claims_of(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

async fn exchange(
    fx: &Fixture,
    via: u64,
    client_id: &str,
    provider: &str,
    token: &str,
) -> Result<Tokens, tonic::Status> {
    let params: BTreeMap<String, String> = [
        ("PROVIDER_NAME".to_string(), provider.to_string()),
        ("ID_TOKEN".to_string(), token.to_string()),
    ]
    .into();
    let r = fx
        .node(via)
        .auth()
        .initiate_auth(InitiateAuthRequest {
            auth_flow: "FEDERATED_ID_TOKEN_AUTH".into(),
            auth_parameters: params,
            client_id: client_id.to_string(),
            client_metadata: Default::default(),
        })
        .await?
        .into_inner();
    Tokens::from_result("federated sign-in", r.authentication_result)
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

async fn admin_user(fx: &Fixture, via: u64, username: &str) -> Result<AdminGetUserResponse> {
    let c = fx.node(via);
    Ok(c.admin()
        .admin_get_user(c.req(AdminGetUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: username.to_string(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err("AdminGetUser"))?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_identities_sign_in_as_one_user_each() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let idp = OidcTestProvider::start().await?;
    let fx = Fixture::create(c, PoolSpec::default()).await?;
    // Every node signs tokens in this test: each must have published its key.
    fx.wait_keys_published().await?;
    let client_id = fx
        .create_app_client(
            1,
            "mobile",
            &["ALLOW_FEDERATED_ID_TOKEN_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )
        .await?;
    let admin = fx.node(1);
    admin
        .admin()
        .create_identity_provider(
            admin.req(CreateIdentityProviderRequest {
                user_pool_id: fx.pool_id.clone(),
                provider_name: "Corp".into(),
                provider_type: "OIDC".into(),
                provider_details: [
                    ("client_id".to_string(), AUD.to_string()),
                    ("oidc_issuer".to_string(), idp.issuer().to_string()),
                ]
                .into(),
                attribute_mapping: [
                    ("email".to_string(), "email".to_string()),
                    ("email_verified".to_string(), "email_verified".to_string()),
                ]
                .into(),
                idp_identifiers: vec![],
            }),
        )
        .await
        .map_err(status_err("CreateIdentityProvider"))?;
    // A provider secret (for sign-in by redirect) is accepted, sealed, and
    // never answered back; a key that is not one is refused.
    let secret = admin
        .admin()
        .create_identity_provider(
            admin.req(CreateIdentityProviderRequest {
                user_pool_id: fx.pool_id.clone(),
                provider_name: "Other".into(),
                provider_type: "Google".into(),
                provider_details: [
                    ("client_id".to_string(), "x".to_string()),
                    ("client_secret".to_string(), "s3cret".to_string()),
                ]
                .into(),
                ..Default::default()
            }),
        )
        .await
        .map_err(status_err("CreateIdentityProvider with a client_secret"))?
        .into_inner();
    ensure!(
        !format!("{secret:?}").contains("s3cret") && !format!("{secret:?}").contains("client_secret"),
        "the secret is not answered: {secret:?}"
    );
    let bad_key = admin
        .admin()
        .create_identity_provider(
            admin.req(CreateIdentityProviderRequest {
                user_pool_id: fx.pool_id.clone(),
                provider_name: "Apple".into(),
                provider_type: "SignInWithApple".into(),
                provider_details: [
                    ("client_id".to_string(), "com.example.web".to_string()),
                    ("private_key".to_string(), "not a key".to_string()),
                    ("team_id".to_string(), "TEAM123".to_string()),
                    ("key_id".to_string(), "KEY123".to_string()),
                ]
                .into(),
                ..Default::default()
            }),
        )
        .await;
    expect_exception(
        "an Apple private_key that is not a PKCS#8 key",
        bad_key,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let now = now_secs();

    // First sign-in on node 2 creates the federated user, named as Cognito
    // names them, with the mapped attributes and the identities claim.
    let token = idp.mint(KeyKind::Rsa, &idp.claims("ext-42", AUD, now))?;
    let t = exchange(&fx, 2, &client_id, "Corp", &token)
        .await
        .map_err(status_err("exchange"))?;
    let id = claims_of(&t.id_token)?;
    ensure!(
        id["cognito:username"] == "Corp_ext-42",
        "username claim: {}",
        id["cognito:username"]
    );
    ensure!(id["email"] == "ext-42@example.com", "mapped email: {}", id["email"]);
    ensure!(
        id["email_verified"] == true,
        "mapped email_verified: {}",
        id["email_verified"]
    );
    let identities = id["identities"]
        .as_array()
        .ok_or_else(|| anyhow!("no identities claim: {id}"))?;
    ensure!(
        identities.len() == 1 && identities[0]["userId"] == "ext-42" && identities[0]["providerName"] == "Corp",
        "identities claim: {identities:?}"
    );
    let sub = id["sub"].as_str().unwrap_or_default().to_string();
    let u = admin_user(&fx, 3, "Corp_ext-42").await?;
    ensure!(u.user_status == "EXTERNAL_PROVIDER", "status {}", u.user_status);

    // The same identity through the other nodes: the same user.
    for via in [1, 3] {
        let token = idp.mint(KeyKind::Ec, &idp.claims("ext-42", AUD, now))?;
        let t = exchange(&fx, via, &client_id, "Corp", &token)
            .await
            .map_err(status_err("again"))?;
        ensure!(
            claims_of(&t.id_token)?["sub"] == json!(sub),
            "node {via} signed in another user"
        );
    }
    // A first sign-in racing on two nodes makes one user.
    for round in 0..4 {
        let subject = format!("race-{round}");
        let t1 = idp.mint(KeyKind::Rsa, &idp.claims(&subject, AUD, now))?;
        let t2 = idp.mint(KeyKind::Ed, &idp.claims(&subject, AUD, now))?;
        let (a, b) = tokio::join!(
            exchange(&fx, 1, &client_id, "Corp", &t1),
            exchange(&fx, 2, &client_id, "Corp", &t2)
        );
        let a = claims_of(&a.map_err(status_err("race a"))?.id_token)?;
        let b = claims_of(&b.map_err(status_err("race b"))?.id_token)?;
        ensure!(
            a["sub"] == b["sub"],
            "round {round}: two users for one identity: {} and {}",
            a["sub"],
            b["sub"]
        );
    }

    // Attacks and mistakes, each refused with its reason.
    let wrong_aud = idp.mint(KeyKind::Rsa, &idp.claims("ext-1", "another-app", now))?;
    let e = exchange(&fx, 1, &client_id, "Corp", &wrong_aud).await.map(|_| ());
    expect_exception(
        "a token for another app",
        e.clone(),
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    ensure!(format!("{e:?}").contains("audience"), "the message says why: {e:?}");
    let expired = idp.mint(KeyKind::Rsa, &idp.claims("ext-1", AUD, now - 7200))?;
    let e = exchange(&fx, 1, &client_id, "Corp", &expired).await.map(|_| ());
    expect_exception("an expired token", e, Code::Unauthenticated, "NotAuthorizedException")?;
    let none = idp.mint_alg_none(&idp.claims("ext-1", AUD, now))?;
    let e = exchange(&fx, 1, &client_id, "Corp", &none).await.map(|_| ());
    expect_exception("alg none", e, Code::Unauthenticated, "NotAuthorizedException")?;
    let e = exchange(&fx, 1, &client_id, "Nobody", &token).await.map(|_| ());
    expect_exception(
        "an unknown provider",
        e,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    // A client that does not allow the flow.
    let e = exchange(&fx, 1, &fx.client_id, "Corp", &token).await.map(|_| ());
    expect_exception(
        "a client without the flow",
        e,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    // Link an external identity to an existing user: it signs in as her.
    let ann = fx.confirmed_user(1, "ann", GOOD_PASSWORD, "ann@example.com").await?;
    admin
        .admin()
        .admin_link_provider_for_user(admin.req(AdminLinkProviderForUserRequest {
            user_pool_id: fx.pool_id.clone(),
            destination_user: Some(ProviderUserIdentifierType {
                provider_name: "Cognito".into(),
                provider_attribute_name: String::new(),
                provider_attribute_value: "ann".into(),
            }),
            source_user: Some(ProviderUserIdentifierType {
                provider_name: "Corp".into(),
                provider_attribute_name: "Cognito_Subject".into(),
                provider_attribute_value: "ann-at-corp".into(),
            }),
        }))
        .await
        .map_err(status_err("AdminLinkProviderForUser"))?;
    let token = idp.mint(KeyKind::Rsa, &idp.claims("ann-at-corp", AUD, now))?;
    let t = exchange(&fx, 3, &client_id, "Corp", &token)
        .await
        .map_err(status_err("linked sign-in"))?;
    let claims = claims_of(&t.id_token)?;
    ensure!(
        claims["sub"] == json!(ann),
        "the linked identity signed in as {}",
        claims["cognito:username"]
    );
    ensure!(
        claims["identities"][0]["userId"] == "ann-at-corp",
        "identities: {}",
        claims["identities"]
    );
    // An identity that already signs in as a federated user cannot be
    // linked to another user.
    let taken = admin
        .admin()
        .admin_link_provider_for_user(admin.req(AdminLinkProviderForUserRequest {
            user_pool_id: fx.pool_id.clone(),
            destination_user: Some(ProviderUserIdentifierType {
                provider_name: "Cognito".into(),
                provider_attribute_name: String::new(),
                provider_attribute_value: "ann".into(),
            }),
            source_user: Some(ProviderUserIdentifierType {
                provider_name: "Corp".into(),
                provider_attribute_name: "Cognito_Subject".into(),
                provider_attribute_value: "ext-42".into(),
            }),
        }))
        .await
        .map(|_| ());
    ensure!(taken.is_err(), "an identity of a federated user was linked to ann");

    // Unlink the federated user's identity: the user is disabled, and its
    // refresh token stops.
    admin
        .admin()
        .admin_disable_provider_for_user(admin.req(AdminDisableProviderForUserRequest {
            user_pool_id: fx.pool_id.clone(),
            user: Some(ProviderUserIdentifierType {
                provider_name: "Corp".into(),
                provider_attribute_name: "Cognito_Subject".into(),
                provider_attribute_value: "ext-42".into(),
            }),
        }))
        .await
        .map_err(status_err("AdminDisableProviderForUser"))?;
    let u = admin_user(&fx, 2, "Corp_ext-42").await?;
    ensure!(!u.enabled, "the federated user is still enabled");
    // Described and listed.
    let list = admin
        .admin()
        .list_identity_providers(admin.req(ListIdentityProvidersRequest {
            user_pool_id: fx.pool_id.clone(),
            max_results: 0,
            next_token: String::new(),
        }))
        .await
        .map_err(status_err("ListIdentityProviders"))?
        .into_inner();
    // Corp, and Other (created with a secret above).
    let listed: Vec<(&str, &str)> = list
        .providers
        .iter()
        .map(|p| (p.provider_name.as_str(), p.provider_type.as_str()))
        .collect();
    ensure!(
        listed == [("Corp", "OIDC"), ("Other", "Google")],
        "{:?}",
        list.providers
    );
    Ok(())
}
