//! Verification of external OpenID Connect id tokens against a real test
//! provider over loopback HTTP: discovery, JWKS, key rotation, outages,
//! the refetch rate limit, one fetch for many concurrent misses, and the
//! attacks a verifier must refuse (alg none, HS256 keyed with the public
//! key, alg/key mismatches, unknown and stolen kids, tampered payloads,
//! keys offered by the token itself).
//!
//! Time is a parameter: every call passes `NOW` (or later), which drives
//! both the claim checks and the key cache's refetch and freshness timing.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::oidc_provider::{tamper, KeyKind, OidcTestProvider, PublicKeyBytes};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use tessera::auth::oidc::{OidcConfig, OidcError, OidcProvider, OidcVerifier, Refetch};

/// The test's clock; the provider never looks at time.
const NOW: i64 = 1_750_000_000;
/// The client id the pool accepts.
const AUD: &str = "app-client-1";

async fn setup() -> Result<(OidcTestProvider, OidcVerifier, OidcProvider)> {
    let idp = OidcTestProvider::start().await?;
    let config = idp.provider(&[AUD]);
    Ok((idp, OidcVerifier::default(), config))
}

/// An RS256 token with standard claims at `NOW`, edited by `edit`.
fn mint_edited(idp: &OidcTestProvider, edit: impl FnOnce(&mut Value)) -> Result<String> {
    let mut claims = idp.claims("u", AUD, NOW);
    edit(&mut claims);
    idp.mint(KeyKind::Rsa, &claims)
}

/// Verifies a good RS256 token so the keys are cached (one discovery and
/// one JWKS fetch).
async fn warm(idp: &OidcTestProvider, v: &OidcVerifier, config: &OidcProvider) -> Result<()> {
    let token = idp.mint(KeyKind::Rsa, &idp.claims("warm", AUD, NOW))?;
    v.verify(config, &token, NOW).await?;
    ensure!(idp.jwks_fetches() == 1, "{} JWKS fetches", idp.jwks_fetches());
    Ok(())
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_tokens() -> Result<()> {
    let (idp, v, config) = setup().await?;
    for (kind, sub) in [(KeyKind::Rsa, "u-rsa"), (KeyKind::Ec, "u-ec"), (KeyKind::Ed, "u-ed")] {
        let token = idp.mint(kind, &idp.claims(sub, AUD, NOW))?;
        let got = v.verify(&config, &token, NOW).await?;
        assert_eq!(got.subject, sub);
        assert_eq!(got.audience, AUD);
        assert_eq!(got.issuer, idp.issuer());
        assert_eq!(got.expires_at, NOW + 3600);
        assert_eq!(got.claims["email"], format!("{sub}@example.com"));
        assert_eq!(got.claims["email_verified"], true);
    }
    // One discovery and one JWKS fetch served all three.
    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(v.prefetch(&config, NOW).await?, 3);
    assert_eq!(idp.jwks_fetches(), 1);

    // An aud array matches when it contains a configured client id; the
    // provider may list several client ids.
    let multi = idp.provider(&["other-app", AUD]);
    let mut claims = idp.claims("u-multi", AUD, NOW);
    claims["aud"] = json!(["someone-else", AUD]);
    let got = v.verify(&multi, &idp.mint(KeyKind::Ec, &claims)?, NOW).await?;
    assert_eq!(got.audience, AUD);
    Ok(())
}

#[tokio::test]
async fn explicit_jwks_uri_and_discovery_url_are_honoured() -> Result<()> {
    let idp = OidcTestProvider::start().await?;
    let v = OidcVerifier::default();
    let token = idp.mint(KeyKind::Ed, &idp.claims("u", AUD, NOW))?;

    let mut direct = idp.provider(&[AUD]);
    direct.jwks_uri = Some(idp.jwks_uri());
    v.verify(&direct, &token, NOW).await?;
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (0, 1));

    let mut discovered = idp.provider(&[AUD]);
    discovered.discovery_url = Some(idp.discovery_url());
    v.verify(&discovered, &token, NOW).await?;
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 2));

    // Both at once is a configuration error, named as such.
    direct.discovery_url = Some(idp.discovery_url());
    let e = v.verify(&direct, &token, NOW).await.unwrap_err();
    assert!(matches!(&e, OidcError::Config(c) if c.field == "jwks_uri"), "{e}");
    assert_eq!(e.cognito_exception(), "InvalidParameterException");
    Ok(())
}

#[tokio::test]
async fn refuses_a_wrong_audience() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["aud"] = json!("another-app"))?, NOW)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "audience another-app is not one of the configured client ids"
    );
    assert_eq!(e.cognito_exception(), "NotAuthorizedException");
    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["aud"] = json!(["x", "y"]))?, NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Audience { .. }), "{e}");
    Ok(())
}

#[tokio::test]
async fn refuses_expired_and_not_yet_valid_tokens() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["exp"] = json!(NOW - 61))?, NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Expired { exp, .. } if exp == NOW - 61), "{e}");
    assert!(
        e.to_string().starts_with("token expired at 2025-06-15T15:05:39Z"),
        "{e}"
    );
    // Within the default 60 s leeway it is still good.
    v.verify(&config, &mint_edited(&idp, |c| c["exp"] = json!(NOW - 59))?, NOW)
        .await?;
    // The same token, checked later, has expired.
    let token = mint_edited(&idp, |_| {})?;
    v.verify(&config, &token, NOW + 3600 + 59).await?;
    let e = v.verify(&config, &token, NOW + 3600 + 60).await.unwrap_err();
    assert!(matches!(e, OidcError::Expired { .. }), "{e}");

    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["nbf"] = json!(NOW + 300))?, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OidcError::NotYetValid { nbf, .. } if nbf == NOW + 300),
        "{e}"
    );
    v.verify(&config, &mint_edited(&idp, |c| c["nbf"] = json!(NOW + 59))?, NOW)
        .await?;

    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["iat"] = json!(NOW + 61))?, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OidcError::IssuedInFuture { iat, .. } if iat == NOW + 61),
        "{e}"
    );
    v.verify(&config, &mint_edited(&idp, |c| c["iat"] = json!(NOW + 59))?, NOW)
        .await?;
    Ok(())
}

#[tokio::test]
async fn refuses_a_wrong_issuer() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let other = OidcTestProvider::start().await?;
    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["iss"] = json!(other.issuer()))?, NOW)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "issuer {} is not the configured issuer {}",
            other.issuer(),
            idp.issuer()
        )
    );
    // A trailing slash is another issuer.
    let e = v
        .verify(
            &config,
            &mint_edited(&idp, |c| c["iss"] = json!(format!("{}/", idp.issuer())))?,
            NOW,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Issuer { .. }), "{e}");

    // A token of another provider, with its own keys, is refused here
    // even though its claims name this issuer and this audience.
    let foreign = other.mint(KeyKind::Ec, &idp.claims("u", AUD, NOW))?;
    let e = v.verify(&config, &foreign, NOW).await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature { .. }), "{e}");
    Ok(())
}

#[tokio::test]
async fn refuses_missing_or_empty_required_claims() -> Result<()> {
    let (idp, v, config) = setup().await?;
    for claim in ["sub", "exp", "iat", "aud", "iss"] {
        let token = mint_edited(&idp, |c| {
            if let Some(o) = c.as_object_mut() {
                o.remove(claim);
            }
        })?;
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert_eq!(e, OidcError::MissingClaim(claim));
    }
    let e = v
        .verify(&config, &mint_edited(&idp, |c| c["sub"] = json!(""))?, NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::InvalidClaim { claim: "sub", .. }), "{e}");
    Ok(())
}

#[tokio::test]
async fn refuses_a_tampered_payload() -> Result<()> {
    let (idp, v, config) = setup().await?;
    for kind in [KeyKind::Rsa, KeyKind::Ec, KeyKind::Ed] {
        let token = idp.mint(kind, &idp.claims("alice", AUD, NOW))?;
        let forged = tamper(&token, |c| c["sub"] = json!("admin"))?;
        let e = v.verify(&config, &forged, NOW).await.unwrap_err();
        let kid = idp.kid(kind)?;
        assert_eq!(
            e.to_string(),
            format!("the signature does not verify with key {kid} of {}", idp.issuer())
        );
        // The untouched token is fine.
        assert_eq!(v.verify(&config, &token, NOW).await?.subject, "alice");
    }
    // A stripped signature is no better.
    let token = idp.mint(KeyKind::Rsa, &idp.claims("alice", AUD, NOW))?;
    let unsigned = format!("{}.", &token[..token.rfind('.').unwrap_or(0)]);
    let e = v.verify(&config, &unsigned, NOW).await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature { .. }), "{e}");
    Ok(())
}

#[tokio::test]
async fn refuses_alg_none() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let claims = idp.claims("mallory", AUD, NOW);
    let e = v.verify(&config, &idp.mint_alg_none(&claims)?, NOW).await.unwrap_err();
    assert_eq!(e, OidcError::AlgNone);
    assert_eq!(
        e.to_string(),
        "alg none is refused: an id token must be signed by its provider"
    );
    for alg in ["None", "NONE", "nOnE"] {
        let token = idp.mint_unsigned(alg, Some("ec-1"), &claims)?;
        assert_eq!(v.verify(&config, &token, NOW).await.unwrap_err(), OidcError::AlgNone);
    }
    // Refused before any key is fetched.
    assert_eq!(idp.jwks_fetches(), 0);
    // Once keys are cached, still refused.
    warm(&idp, &v, &config).await?;
    let e = v.verify(&config, &idp.mint_alg_none(&claims)?, NOW).await.unwrap_err();
    assert_eq!(e, OidcError::AlgNone);
    Ok(())
}

#[tokio::test]
async fn refuses_hs256_keyed_with_the_rsa_public_key() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let claims = idp.claims("mallory", AUD, NOW);
    for which in [PublicKeyBytes::Pem, PublicKeyBytes::Der] {
        let token = idp.mint_hs256_with_public_key(which, &claims)?;
        // Nothing cached: refused without fetching anything.
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert!(
            matches!(&e, OidcError::UnsupportedAlg { alg } if alg == "HS256"),
            "{which:?}: {e}"
        );
        assert_eq!(idp.jwks_fetches(), 0);
    }
    warm(&idp, &v, &config).await?;
    for which in [PublicKeyBytes::Pem, PublicKeyBytes::Der] {
        let token = idp.mint_hs256_with_public_key(which, &claims)?;
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "alg HS256 is not allowed: the key rsa-1 is RS256",
            "{which:?}"
        );
    }
    // HS384/HS512 likewise.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let mut h = Header::new(alg);
        h.kid = Some("rsa-1".into());
        let token = jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(b"public"))?;
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert!(matches!(e, OidcError::AlgMismatch { key_alg: "RS256", .. }), "{e}");
    }
    assert_eq!(idp.jwks_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn refuses_an_alg_that_is_not_the_keys() -> Result<()> {
    let (idp, v, config) = setup().await?;
    warm(&idp, &v, &config).await?;
    let claims = idp.claims("mallory", AUD, NOW);

    // RS256 in the header, naming the EC key, signed with the RSA key.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("ec-1".into());
    let token = idp.mint_with_header("rsa-1", &h, &claims)?;
    let e = v.verify(&config, &token, NOW).await.unwrap_err();
    assert_eq!(e.to_string(), "alg RS256 is not allowed: the key ec-1 is ES256");

    // ES256 naming the RSA key; EdDSA naming the EC key.
    for (alg, signer, claimed, key_alg) in [
        (Algorithm::ES256, "ec-1", "rsa-1", "RS256"),
        (Algorithm::EdDSA, "ed-1", "ec-1", "ES256"),
        (Algorithm::RS256, "rsa-1", "ed-1", "EdDSA"),
    ] {
        let mut h = Header::new(alg);
        h.kid = Some(claimed.into());
        let token = idp.mint_with_header(signer, &h, &claims)?;
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert!(
            matches!(&e, OidcError::AlgMismatch { kid, key_alg: k, .. } if kid == claimed && *k == key_alg),
            "{e}"
        );
    }
    // Algorithms Tessera never accepts from a provider, even with a
    // matching key type.
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        let mut h = Header::new(alg);
        h.kid = Some("rsa-1".into());
        let token = idp.mint_with_header("rsa-1", &h, &claims)?;
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert!(matches!(e, OidcError::AlgMismatch { key_alg: "RS256", .. }), "{e}");
    }
    assert_eq!(idp.jwks_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn refuses_a_token_signed_by_another_key_under_a_published_kid() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let claims = idp.claims("mallory", AUD, NOW);
    for (kind, claimed) in [(KeyKind::Rsa, "rsa-1"), (KeyKind::Ec, "ec-1"), (KeyKind::Ed, "ed-1")] {
        let stolen_kid = idp.foreign_key(kind, &format!("evil-{claimed}"))?;
        let token = idp.mint_claiming_kid(&stolen_kid, claimed, &claims)?;
        let e = v.verify(&config, &token, NOW).await.unwrap_err();
        assert_eq!(
            e,
            OidcError::BadSignature {
                kid: claimed.into(),
                issuer: idp.issuer().into()
            }
        );
    }
    assert_eq!(idp.jwks_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn keys_offered_by_the_token_itself_are_ignored() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let attacker = OidcTestProvider::start().await?;
    let claims = idp.claims("mallory", AUD, NOW);

    // jku: "fetch my keys from here", with a kid the victim also has.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-1".into());
    h.jku = Some(attacker.jwks_uri());
    let token = attacker.mint_with_header("ec-1", &h, &claims)?;
    let e = v.verify(&config, &token, NOW).await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature { .. }), "{e}");

    // jku with a kid only the attacker's JWKS has.
    let attacker_kid = attacker.rotate(KeyKind::Ec)?;
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(attacker_kid.clone());
    h.jku = Some(attacker.jwks_uri());
    let token = attacker.mint_with_header(&attacker_kid, &h, &claims)?;
    let e = v.verify(&config, &token, NOW + 31).await.unwrap_err();
    assert!(matches!(e, OidcError::UnknownKid { .. }), "{e}");

    // jwk: the attacker's public key embedded in the header, under the
    // victim's kid.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-1".into());
    h.jwk = Some(serde_json::from_value(attacker.public_jwk("ec-1")?)?);
    let token = attacker.mint_with_header("ec-1", &h, &claims)?;
    let e = v.verify(&config, &token, NOW + 31).await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature { .. }), "{e}");

    // The attacker's server was never asked for anything.
    assert_eq!(attacker.jwks_fetches() + attacker.discovery_fetches(), 0);
    Ok(())
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_per_interval() -> Result<()> {
    let (idp, v, config) = setup().await?;
    warm(&idp, &v, &config).await?;
    let claims = idp.claims("mallory", AUD, NOW);
    let k1 = idp.foreign_key(KeyKind::Ec, "unknown-1")?;
    let k2 = idp.foreign_key(KeyKind::Rsa, "unknown-2")?;

    // 31 s after the first fetch: refetched once, still unknown.
    let e = v
        .verify(&config, &idp.mint_with_kid(&k1, &claims)?, NOW + 31)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("unknown key id unknown-1 in the JWKS of {} (refetched)", idp.issuer())
    );
    assert_eq!(idp.jwks_fetches(), 2);

    // Another unknown kid 9 s later, within the 30 s window: no fetch.
    let e = v
        .verify(&config, &idp.mint_with_kid(&k2, &claims)?, NOW + 40)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OidcError::UnknownKid { kid, refetch: Refetch::RateLimited { ago: 9 }, .. } if kid == "unknown-2"),
        "{e}"
    );
    assert!(
        e.to_string().ends_with("(not refetched: the JWKS was fetched 9 s ago)"),
        "{e}"
    );
    // Nor for the same one again.
    let e = v
        .verify(&config, &idp.mint_with_kid(&k1, &claims)?, NOW + 45)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OidcError::UnknownKid {
                refetch: Refetch::RateLimited { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(idp.jwks_fetches(), 2);
    // Known keys keep verifying meanwhile, without fetching.
    v.verify(&config, &idp.mint(KeyKind::Ed, &claims)?, NOW + 46).await?;
    assert_eq!(idp.jwks_fetches(), 2);

    // Past the window a new unknown kid is looked for again, once.
    let e = v
        .verify(&config, &idp.mint_with_kid(&k2, &claims)?, NOW + 62)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OidcError::UnknownKid {
                refetch: Refetch::Refetched,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(idp.jwks_fetches(), 3);
    // Discovery was read once; refetches for a kid reuse its jwks_uri.
    assert_eq!(idp.discovery_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refetch() -> Result<()> {
    let (idp, v, config) = setup().await?;
    warm(&idp, &v, &config).await?;
    let new_kid = idp.rotate(KeyKind::Ec)?;
    let token = idp.mint_with_kid(&new_kid, &idp.claims("bob", AUD, NOW))?;
    let got = v.verify(&config, &token, NOW + 31).await?;
    assert_eq!(got.subject, "bob");
    assert_eq!(idp.jwks_fetches(), 2);
    // Then it is cached.
    v.verify(&config, &token, NOW + 32).await?;
    assert_eq!(idp.jwks_fetches(), 2);

    // A rotation followed at once by a token with the new key, within the
    // refetch window: refused until the window has passed, then accepted.
    let newer = idp.rotate(KeyKind::Rsa)?;
    let token = idp.mint_with_kid(&newer, &idp.claims("carol", AUD, NOW))?;
    let e = v.verify(&config, &token, NOW + 40).await.unwrap_err();
    assert!(
        matches!(
            e,
            OidcError::UnknownKid {
                refetch: Refetch::RateLimited { ago: 9 },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(v.verify(&config, &token, NOW + 61).await?.subject, "carol");
    assert_eq!(idp.jwks_fetches(), 3);

    // A key removed from the JWKS stops verifying once the set is
    // refreshed (here after the 1 h max age).
    idp.remove_key("ec-1");
    let token = idp.mint_with_kid("ec-1", &idp.claims("dave", AUD, NOW + 3000))?;
    v.verify(&config, &token, NOW + 3000).await?;
    let e = v.verify(&config, &token, NOW + 3700).await.unwrap_err();
    assert!(
        matches!(
            e,
            OidcError::UnknownKid {
                refetch: Refetch::Refetched,
                ..
            }
        ),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn cached_keys_keep_verifying_while_the_provider_is_down() -> Result<()> {
    let (mut idp, v, config) = setup().await?;
    warm(&idp, &v, &config).await?;
    let mut claims = idp.claims("erin", AUD, NOW);
    claims["exp"] = json!(NOW + 7200);
    let token = idp.mint(KeyKind::Ec, &claims)?;
    idp.stop().await;

    assert_eq!(v.verify(&config, &token, NOW + 10).await?.subject, "erin");
    // Stale after the 1 h max age: the refresh fails, the cached keys stay.
    assert_eq!(v.verify(&config, &token, NOW + 3650).await?.subject, "erin");
    // An unknown kid says why it could not look.
    let stray = idp.foreign_key(KeyKind::Ed, "stray")?;
    let e = v
        .verify(
            &config,
            &idp.mint_with_kid(&stray, &idp.claims("x", AUD, NOW + 3000))?,
            NOW + 3700,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OidcError::UnknownKid {
                refetch: Refetch::Failed(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("refetch failed: GET http://"), "{e}");

    // A node that never had the keys gets a clear error.
    let fresh = OidcVerifier::default();
    let e = fresh.verify(&config, &token, NOW).await.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "could not fetch the JWKS of {}: GET {}",
            idp.issuer(),
            idp.discovery_url()
        )),
        "{e}"
    );
    assert_eq!(e.cognito_exception(), "ExternalServiceException");
    // It does not retry within the interval.
    let e = fresh.verify(&config, &token, NOW + 5).await.unwrap_err();
    assert!(e.to_string().contains("not retried: last attempt 5 s ago"), "{e}");
    Ok(())
}

#[tokio::test]
async fn a_provider_answering_errors_is_reported_and_recovers() -> Result<()> {
    let (idp, v, config) = setup().await?;
    idp.set_available(false);
    let token = idp.mint(KeyKind::Rsa, &idp.claims("fay", AUD, NOW))?;
    let e = v.verify(&config, &token, NOW).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::Jwks { reason, .. } if reason.contains("HTTP 503")),
        "{e}"
    );
    idp.set_available(true);
    // Recovers after the refetch interval.
    assert!(v.verify(&config, &token, NOW + 10).await.is_err());
    assert_eq!(v.verify(&config, &token, NOW + 30).await?.subject, "fay");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_fetch() -> Result<()> {
    let idp = OidcTestProvider::start().await?;
    let config = idp.provider(&[AUD]);
    // No rate limit at all, so only the single-flight keeps this to one
    // fetch per miss.
    let v = OidcVerifier::new(OidcConfig {
        min_refetch_interval: Duration::ZERO,
        ..OidcConfig::default()
    });
    idp.set_jwks_delay(Duration::from_millis(300));

    // Twenty at once on an empty cache: one discovery, one JWKS fetch.
    let token = idp.mint(KeyKind::Ed, &idp.claims("gus", AUD, NOW))?;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, config, token) = (v.clone(), config.clone(), token.clone());
            tokio::spawn(async move { v.verify(&config, &token, NOW).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await??.subject, "gus");
    }
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));

    // Twenty at once with a kid the cache lacks: one refetch.
    let kid = idp.rotate(KeyKind::Ec)?;
    let token = idp.mint_with_kid(&kid, &idp.claims("hal", AUD, NOW))?;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, config, token) = (v.clone(), config.clone(), token.clone());
            tokio::spawn(async move { v.verify(&config, &token, NOW + 1).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await??.subject, "hal");
    }
    assert_eq!(idp.jwks_fetches(), 2);

    // Twenty at once with a kid nobody has: one refetch, twenty refusals.
    let stray = idp.foreign_key(KeyKind::Ec, "stray")?;
    let token = idp.mint_with_kid(&stray, &idp.claims("ivy", AUD, NOW))?;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, config, token) = (v.clone(), config.clone(), token.clone());
            tokio::spawn(async move { v.verify(&config, &token, NOW + 2).await })
        })
        .collect();
    for t in tasks {
        let e = t.await?.unwrap_err();
        assert!(
            matches!(
                e,
                OidcError::UnknownKid {
                    refetch: Refetch::Refetched,
                    ..
                }
            ),
            "{e}"
        );
    }
    assert_eq!(idp.jwks_fetches(), 3);
    Ok(())
}

#[tokio::test]
async fn a_token_without_kid_needs_a_single_key_jwks() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let claims = idp.claims("jo", AUD, NOW);
    let token = idp.mint_without_kid(KeyKind::Ed, &claims)?;
    let e = v.verify(&config, &token, NOW).await.unwrap_err();
    assert_eq!(
        e,
        OidcError::NoKid {
            issuer: idp.issuer().into(),
            keys: 3
        }
    );

    idp.remove_key("rsa-1");
    idp.remove_key("ec-1");
    let single = OidcVerifier::default();
    assert_eq!(single.verify(&config, &token, NOW).await?.subject, "jo");
    // The single key still fixes the algorithm.
    let rsa_signed = idp.mint_with_header("rsa-1", &Header::new(Algorithm::RS256), &claims)?;
    let e = single.verify(&config, &rsa_signed, NOW).await.unwrap_err();
    assert!(matches!(e, OidcError::AlgMismatch { key_alg: "EdDSA", .. }), "{e}");
    Ok(())
}

#[tokio::test]
async fn cache_control_max_age_shortens_the_cache_lifetime() -> Result<()> {
    let (idp, v, config) = setup().await?;
    idp.set_cache_control(Some("public, max-age=120"));
    warm(&idp, &v, &config).await?;
    let token = idp.mint(KeyKind::Rsa, &idp.claims("kim", AUD, NOW))?;
    v.verify(&config, &token, NOW + 119).await?;
    assert_eq!(idp.jwks_fetches(), 1);
    v.verify(&config, &token, NOW + 121).await?;
    assert_eq!(idp.jwks_fetches(), 2);
    // Rediscovered with the refresh.
    assert_eq!(idp.discovery_fetches(), 2);

    // no-store cannot make every call fetch: the refetch interval is the
    // floor.
    idp.set_cache_control(Some("no-store"));
    v.verify(&config, &token, NOW + 250).await?;
    assert_eq!(idp.jwks_fetches(), 3);
    v.verify(&config, &token, NOW + 270).await?;
    assert_eq!(idp.jwks_fetches(), 3);
    v.verify(&config, &token, NOW + 281).await?;
    assert_eq!(idp.jwks_fetches(), 4);
    Ok(())
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() -> Result<()> {
    let (idp, v, config) = setup().await?;
    idp.set_discovery_issuer(Some("https://accounts.google.com"));
    let token = idp.mint(KeyKind::Rsa, &idp.claims("lee", AUD, NOW))?;
    let e = v.verify(&config, &token, NOW).await.unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "names issuer https://accounts.google.com, not {}",
            idp.issuer()
        )),
        "{e}"
    );
    assert_eq!(idp.jwks_fetches(), 0);
    Ok(())
}

#[tokio::test]
async fn oversized_and_malformed_tokens_are_refused_before_any_fetch() -> Result<()> {
    let (idp, v, config) = setup().await?;
    let mut claims = idp.claims("max", AUD, NOW);
    claims["padding"] = json!("x".repeat(20_000));
    let token = idp.mint(KeyKind::Rsa, &claims)?;
    let e = v.verify(&config, &token, NOW).await.unwrap_err();
    assert!(matches!(e, OidcError::TooLarge { max: 16384, .. }), "{e}");
    for junk in ["", "abc", "a.b", "a.b.c", "e30.e30.", "a.b.c.d.e"] {
        let e = v.verify(&config, junk, NOW).await.unwrap_err();
        assert!(matches!(e, OidcError::Malformed(_)), "{junk:?}: {e}");
    }
    assert_eq!(idp.jwks_fetches() + idp.discovery_fetches(), 0);
    Ok(())
}
