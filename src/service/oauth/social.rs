//! Social sign-in by redirect: the hosted page's "Sign in with Google"
//! (or Apple, Facebook, any OpenID Connect provider of the pool) runs the
//! authorization code flow against the provider, with state, nonce and
//! PKCE, then finishes our own code flow back to the app exactly as a
//! password sign-in on the page does.
//!
//! * [`OAuthService::start_social`] sends the browser to the provider's
//!   authorization endpoint. Its `state` is sealed (`super::sealed`): the
//!   app's pending authorization, the provider, our nonce, the PKCE
//!   verifier, the exact `redirect_uri`, an expiry (10 minutes) and the
//!   SHA-256 of a random *browser binding* whose clear value goes into a
//!   cookie on the page's path. Nothing is stored, so any node takes the
//!   callback.
//! * [`OAuthService::finish_social`] takes `/{pool_id}/oauth2/idpresponse`:
//!   the state must open for this pool, be unexpired, and its binding hash
//!   must equal the cookie's (so a state carried into another browser, a
//!   login CSRF, is refused). Then it exchanges the code at the provider's
//!   token endpoint (with the verifier and the secret, which it opens only
//!   now), verifies the id token with the node's OpenID verifier
//!   (`auth::oidc`: keys, issuer, audience = the provider's client id,
//!   expiry) and its `nonce` against ours, and signs the user in through
//!   the token exchange's own path (`flows::federated`: create or link the
//!   federated user), audited as it is.
//!
//! Never logged or echoed: the provider's code, its tokens, the secrets,
//! the verifier and the binding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::authorize::PendingAuthorization;
use super::{sealed, OAuthService};
use crate::model::identity_provider::{IdentityProvider, ProviderType};
use crate::model::oauth_client::COGNITO_PROVIDER;
use crate::service::flows::AuthService;
use crate::service::{ErrorKind, Origin, ServiceError};

/// How long the browser may stay at the provider.
pub const STATE_MS: i64 = 10 * 60 * 1000;
/// Largest token-endpoint answer read from a provider.
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Longest provider `code` accepted back.
pub const MAX_PROVIDER_CODE: usize = 4096;
/// Apple's audience for the client-secret JWT.
const APPLE_AUDIENCE: &str = "https://appleid.apple.com";
/// How long Apple's client-secret JWT lives (Apple allows six months;
/// one is made per exchange, so minutes are enough).
const APPLE_SECRET_SECS: i64 = 300;

/// What a sign-in in progress at a provider carries in its `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProviderState {
    pending: PendingAuthorization,
    provider: String,
    nonce: String,
    code_verifier: String,
    redirect_uri: String,
    binding_hash: [u8; 32],
    expires_at: i64,
}

/// Where [`OAuthService::start_social`] sends the browser.
#[derive(Debug, Clone)]
pub struct SocialStart {
    /// The provider's authorization URL with our request.
    pub location: String,
    /// The browser binding: the cookie's value.
    pub binding: String,
    /// Whether the provider posts its answer back cross-site (Apple's
    /// `response_mode=form_post`), so the cookie must be `SameSite=None`
    /// to come back with it.
    pub cross_site_post: bool,
}

/// A finished social sign-in: where the browser goes (the app's redirect
/// URI with our code) and the hosted page's session cookie value.
#[derive(Debug, Clone)]
pub struct SocialSignedIn {
    /// The app's redirect URI with `code` and `state`.
    pub location: String,
    /// The sealed session cookie value (single sign-on).
    pub session: String,
}

/// What the provider sent back to `/oauth2/idpresponse`, and the cookie.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderCallback<'a> {
    /// `state`.
    pub state: &'a str,
    /// `code`.
    pub code: &'a str,
    /// `error`, if the provider refused.
    pub error: &'a str,
    /// The browser-binding cookie, if the browser sent it.
    pub binding: Option<&'a str>,
}

/// Why a social sign-in stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocialError {
    /// Said on our own page; nothing is issued and the browser goes
    /// nowhere (the state could not be trusted, or the provider's answer
    /// was refused).
    Page {
        /// The HTTP status of the page.
        status: u16,
        /// What went wrong, for a person.
        message: String,
    },
    /// Back to the app's (checked) redirect URI with RFC 6749's `error`
    /// and the app's `state`: the provider said no.
    Redirect {
        /// The app's redirect URI.
        redirect_uri: String,
        /// RFC 6749's error code.
        error: &'static str,
        /// What happened.
        description: String,
        /// The app's `state`.
        state: Option<String>,
    },
}

impl SocialError {
    fn page(status: u16, message: impl Into<String>) -> Self {
        SocialError::Page {
            status,
            message: message.into(),
        }
    }
}

impl From<ServiceError> for SocialError {
    fn from(e: ServiceError) -> Self {
        let status = match e.kind {
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown => 503,
            ErrorKind::LimitExceeded => 429,
            ErrorKind::Internal => 500,
            ErrorKind::NotAuthorized => 401,
            _ => 400,
        };
        if status == 500 {
            tracing::warn!(error = %e.message, "social sign-in: internal failure");
            return SocialError::page(500, "The sign-in could not be finished; try again later.");
        }
        SocialError::page(status, e.message)
    }
}

/// 32 random bytes as base64url (43 characters).
fn random_text() -> String {
    URL_SAFE_NO_PAD.encode(crate::clock::random_bytes::<32>())
}

/// An error code a provider sent, kept only if it looks like one
/// (RFC 6749's codes are lowercase letters and `_`), for our messages.
fn error_code(e: &str) -> String {
    if !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        e.to_string()
    } else {
        "an error".to_string()
    }
}

/// Apple's private key (PKCS#8 PEM, P-256) as a signing key; the reason
/// when it is not one. Checked by signing, so a key that parses but cannot
/// sign is refused when it is configured, not at a user's sign-in.
pub(crate) fn apple_signing_key(pem: &str) -> Result<jsonwebtoken::EncodingKey, String> {
    let body: String = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|r| r.strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or("a PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----), as Apple's .p8 file holds it")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not base64")?;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &serde_json::json!({"check": true}),
        &key,
    )
    .map_err(|_| "not an EC P-256 private key that can sign ES256".to_string())?;
    Ok(key)
}

/// Apple's client secret: an ES256 JWT by the team, for the client id,
/// signed with the key Apple issued (`kid` = its key id).
fn apple_client_secret(
    pem: &str,
    team_id: &str,
    key_id: &str,
    client_id: &str,
    now_secs: i64,
) -> Result<String, String> {
    let key = apple_signing_key(pem)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key_id.to_string());
    let claims = serde_json::json!({
        "iss": team_id,
        "iat": now_secs,
        "exp": now_secs + APPLE_SECRET_SECS,
        "aud": APPLE_AUDIENCE,
        "sub": client_id,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|_| "signing Apple's client secret failed".to_string())
}

/// An endpoint URL from a discovery document, if it is an http(s) URL.
fn endpoint(doc: &serde_json::Value, name: &str) -> Option<String> {
    let v = doc.get(name)?.as_str()?;
    let ok = (v.starts_with("https://") || v.starts_with("http://")) && v.len() <= 2048 && !v.contains('#');
    ok.then(|| v.to_string())
}

impl OAuthService {
    /// The providers whose "Sign in with" buttons the page shows for
    /// `client_id`: those in its `SupportedIdentityProviders` that the
    /// pool has (read locally; a provider not yet replicated here shows
    /// on the next page).
    pub fn social_providers(&self, pool_id: &str, client_id: &str) -> Vec<String> {
        let store = self.node.store();
        let Ok(oauth) = store.client_oauth(client_id) else {
            return Vec::new();
        };
        oauth
            .identity_providers
            .iter()
            .filter(|p| p.as_str() != COGNITO_PROVIDER)
            .filter(|p| matches!(store.identity_provider(pool_id, p), Ok(Some(_))))
            .cloned()
            .collect()
    }

    /// `{public_url}/{pool_id}/oauth2/idpresponse`: the one redirect URI
    /// registered at every provider, the same on every node.
    pub fn idp_response_uri(&self, pool_id: &str) -> Result<String, ServiceError> {
        Ok(format!("{}/oauth2/idpresponse", self.tokens.issuer(pool_id)?))
    }

    /// `provider`'s authorization and token endpoints: from its details or
    /// the fixed providers' defaults, else its discovery document.
    async fn provider_endpoints(&self, provider: &IdentityProvider) -> Result<(String, String), SocialError> {
        if let Some(e) = provider.endpoints() {
            return Ok(e);
        }
        let url = match provider.details.get("discovery_url") {
            Some(u) => u.clone(),
            None => format!(
                "{}{}",
                provider.issuer().trim_end_matches('/'),
                crate::auth::oidc::provider::DISCOVERY_PATH
            ),
        };
        let name = &provider.provider_name;
        let doc = crate::client::http::get_json(&url, "").await.map_err(|e| {
            tracing::info!(provider = %name, error = %e, "social sign-in: discovery failed");
            SocialError::page(
                502,
                format!("{name} cannot be reached right now (its discovery document); try again later."),
            )
        })?;
        let a = provider
            .details
            .get("authorize_url")
            .cloned()
            .or_else(|| endpoint(&doc, "authorization_endpoint"));
        let t = provider
            .details
            .get("token_url")
            .cloned()
            .or_else(|| endpoint(&doc, "token_endpoint"));
        match (a, t) {
            (Some(a), Some(t)) => Ok((a, t)),
            _ => Err(SocialError::page(
                502,
                format!("{name}'s discovery document names no authorization_endpoint and token_endpoint; set authorize_url and token_url"),
            )),
        }
    }

    /// The provider `name` for a sign-in of `pending`'s client: it must be
    /// in the client's `SupportedIdentityProviders` and in the pool.
    async fn social_provider(
        &self,
        auth: &AuthService,
        pool_id: &str,
        pending: &PendingAuthorization,
        name: &str,
    ) -> Result<IdentityProvider, SocialError> {
        let shown: String = name.chars().take(32).collect();
        let offered = self
            .oauth_client(pool_id, &pending.client_id)
            .await?
            .is_some_and(|(_, o)| o.identity_providers.contains(name));
        if !offered || name == COGNITO_PROVIDER {
            return Err(SocialError::page(
                400,
                format!("This app does not offer sign-in with {shown:?}."),
            ));
        }
        auth.identity_provider(pool_id, name)
            .await?
            .ok_or_else(|| SocialError::page(400, format!("This user pool has no identity provider {shown:?}.")))
    }

    /// Starts a sign-in of `pending` with provider `name`: the provider's
    /// authorization URL to send the browser to, and the browser binding
    /// to set as its cookie.
    pub async fn start_social(
        &self,
        auth: &AuthService,
        pool_id: &str,
        pending: &PendingAuthorization,
        name: &str,
    ) -> Result<SocialStart, SocialError> {
        self.require_fresh()
            .await
            .map_err(|e| SocialError::page(503, e.description))?;
        let provider = self.social_provider(auth, pool_id, pending, name).await?;
        let client_id = provider
            .web_client_id()
            .ok_or_else(|| SocialError::page(400, format!("{name} has no client_id")))?;
        let (authorize_url, _) = self.provider_endpoints(&provider).await?;
        let redirect_uri = self.idp_response_uri(pool_id)?;
        let nonce = random_text();
        let code_verifier = random_text();
        let binding = random_text();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let state = ProviderState {
            pending: pending.clone(),
            provider: provider.provider_name.clone(),
            nonce: nonce.clone(),
            code_verifier,
            redirect_uri: redirect_uri.clone(),
            binding_hash: Sha256::digest(binding.as_bytes()).into(),
            expires_at: crate::clock::now_millis() + STATE_MS,
        };
        let key = crate::service::sealing_key(&self.sealing)?;
        let state = sealed::seal(&key, &sealed::context("idp-state", pool_id), &state)?;
        let scopes = provider.authorize_scopes();
        // Apple posts its answer when names or emails are asked for.
        let form_post = provider.provider_type == ProviderType::SignInWithApple
            && scopes.split(' ').any(|s| s == "name" || s == "email");
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if form_post {
            q.append_pair("response_mode", "form_post");
        }
        let sep = if authorize_url.contains('?') { '&' } else { '?' };
        Ok(SocialStart {
            location: format!("{authorize_url}{sep}{}", q.finish()),
            binding,
            cross_site_post: form_post,
        })
    }

    /// Finishes a social sign-in at `/oauth2/idpresponse` (see the module
    /// docs for each check), from `origin`.
    pub async fn finish_social(
        &self,
        auth: &AuthService,
        pool_id: &str,
        cb: ProviderCallback<'_>,
        origin: &Origin,
    ) -> Result<SocialSignedIn, SocialError> {
        self.require_fresh()
            .await
            .map_err(|e| SocialError::page(503, e.description))?;
        let key = crate::service::sealing_key(&self.sealing)?;
        let st: ProviderState = sealed::open(&key, &sealed::context("idp-state", pool_id), cb.state)
            .ok_or_else(|| SocialError::page(400, "This sign-in's state is not one this user pool issued."))?;
        let now = crate::clock::now_millis();
        if st.expires_at <= now || st.pending.expires_at <= now {
            return Err(SocialError::page(400, "This sign-in took too long and has expired."));
        }
        let presented: [u8; 32] = Sha256::digest(cb.binding.unwrap_or("").as_bytes()).into();
        if cb.binding.is_none_or(str::is_empty) || !bool::from(presented.as_slice().ct_eq(st.binding_hash.as_slice())) {
            return Err(SocialError::page(
                403,
                "This sign-in was started in another browser (or its cookie is gone); start again from the app.",
            ));
        }
        let name = st.provider.as_str();
        if !cb.error.is_empty() {
            let error = match cb.error {
                "access_denied" => "access_denied",
                "temporarily_unavailable" => "temporarily_unavailable",
                _ => "server_error",
            };
            return Err(SocialError::Redirect {
                redirect_uri: st.pending.redirect_uri.clone(),
                error,
                description: format!("{name} answered {}", error_code(cb.error)),
                state: st.pending.state.clone(),
            });
        }
        if cb.code.is_empty() || cb.code.len() > MAX_PROVIDER_CODE {
            return Err(SocialError::page(400, format!("{name} sent no usable code.")));
        }
        let provider = self.social_provider(auth, pool_id, &st.pending, name).await?;
        let id_token = self.provider_id_token(&provider, &st, cb.code, now).await?;
        let verified = auth.verify_external_token(&provider, &id_token, now).await?;
        let nonce = verified.claims.get("nonce").and_then(|n| n.as_str()).unwrap_or("");
        if !bool::from(nonce.as_bytes().ct_eq(st.nonce.as_bytes())) {
            return Err(SocialError::page(
                401,
                format!("The id token from {name} is not the answer to this sign-in (its nonce differs)."),
            ));
        }
        let caller = auth.caller(&st.pending.client_id).await?;
        if caller.pool.id != pool_id {
            return Err(SocialError::page(400, "This app is not known to this user pool."));
        }
        let user = auth.federated_user(&caller.pool, &provider, &verified, now).await?;
        let auth_time = now / 1000;
        let location = self.finish(pool_id, &st.pending, &user.sub, auth_time)?;
        let session = self.seal_session(pool_id, &user.sub, auth_time)?;
        auth.audit_federated_sign_in(pool_id, &user, &st.pending.client_id, origin, name, now);
        Ok(SocialSignedIn { location, session })
    }

    /// Exchanges the provider's `code` at its token endpoint (the exact
    /// redirect URI, the PKCE verifier, the client's secret) and returns
    /// the id token it answers with.
    async fn provider_id_token(
        &self,
        provider: &IdentityProvider,
        st: &ProviderState,
        code: &str,
        now: i64,
    ) -> Result<String, SocialError> {
        let name = &provider.provider_name;
        let (_, token_url) = self.provider_endpoints(provider).await?;
        let client_id = provider
            .web_client_id()
            .ok_or_else(|| SocialError::page(400, format!("{name} has no client_id")))?;
        let key = crate::service::sealing_key(&self.sealing)?;
        let secret = match provider.provider_type {
            ProviderType::SignInWithApple => {
                match crate::service::federation::open_secret(&key, provider, "private_key")? {
                    Some(pem) => {
                        let detail = |k: &str| provider.details.get(k).map(String::as_str).unwrap_or("");
                        Some(
                            apple_client_secret(&pem, detail("team_id"), detail("key_id"), &client_id, now / 1000)
                                .map_err(|why| SocialError::page(500, format!("{name}: {why}")))?,
                        )
                    }
                    None => None,
                }
            }
            _ => crate::service::federation::open_secret(&key, provider, "client_secret")?,
        };
        // client_secret_basic for a generic OpenID provider (the OpenID
        // Connect default); Google, Apple and Facebook take the form.
        let basic = provider.provider_type == ProviderType::Oidc && secret.is_some();
        // Built in a block: the serializer is not Send, and must not live
        // across the await below.
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &st.redirect_uri)
                .append_pair("code_verifier", &st.code_verifier);
            if !basic {
                form.append_pair("client_id", &client_id);
                if let Some(s) = &secret {
                    form.append_pair("client_secret", s);
                }
            }
            form.finish()
        };
        let credentials = match (&secret, basic) {
            (Some(s), true) => Some((client_id.as_str(), s.as_str())),
            _ => None,
        };
        let answer = crate::client::http::post_form(&token_url, credentials, form, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| {
                tracing::info!(provider = %name, error = %e, "social sign-in: token endpoint failed");
                SocialError::page(502, format!("{name} cannot be reached right now; try again later."))
            })?;
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        if answer.status != 200 {
            let error = error_code(body.get("error").and_then(|e| e.as_str()).unwrap_or(""));
            tracing::info!(provider = %name, status = answer.status, error = %error, "social sign-in: code refused");
            return Err(SocialError::page(
                502,
                format!("{name} did not accept the sign-in ({error}); start again from the app."),
            ));
        }
        body.get("id_token")
            .and_then(|t| t.as_str())
            .filter(|t| t.len() <= crate::service::flows::federated::MAX_ID_TOKEN)
            .map(str::to_string)
            .ok_or_else(|| {
                SocialError::page(
                    502,
                    format!("{name} answered without an id token (is openid among authorize_scopes?)."),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_keys_are_checked_and_sign() {
        assert!(apple_signing_key("not a key").is_err());
        assert!(apple_signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        let jwt = apple_client_secret(&pem, "TEAM1", "KEY1", "com.example.web", 1_000).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("KEY1"));
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["iss"], "TEAM1");
        assert_eq!(claims["sub"], "com.example.web");
        assert_eq!(claims["aud"], APPLE_AUDIENCE);
        assert_eq!(claims["exp"], 1_000 + APPLE_SECRET_SECS);
    }

    #[test]
    fn provider_error_codes_are_kept_only_when_they_look_like_codes() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>"), "an error");
        assert_eq!(error_code(""), "an error");
    }
}
