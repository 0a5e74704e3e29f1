//! The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636):
//! checking an authorization request, the code handed back to the app
//! after the hosted page signed the user in, and its exchange for tokens.
//!
//! Nothing of a pending authorization is stored: the checked request
//! travels sealed in the hosted page's form, and the code is sealed too
//! (who, for which client, redirect URI, scopes, nonce and PKCE
//! challenge), so an authorization started on one node completes on any
//! other. Only the exchange writes: it spends the code's id through Raft,
//! which makes a code single-use cluster-wide, and a replay revokes the
//! token family the first exchange started.

use serde::{Deserialize, Serialize};

use super::client_credentials::ClientCredentials;
use super::sealed;
use super::{OAuthError, OAuthService};
use crate::command::{Outcome, Rejection, SpendAuthorizationCode};
use crate::model::app_client::{validate_client_id, AppClient};
use crate::model::oauth_client::{ClientOAuth, OAuthFlow, STANDARD_SCOPES};
use crate::service::tokens::{IssuedTokens, Lineage, OAuthGrant};
use crate::service::ServiceError;

/// How long a code may wait for its exchange (Cognito: 5 minutes).
pub const CODE_MS: i64 = 5 * 60 * 1000;
/// How long the hosted page's form stays good.
pub const REQUEST_MS: i64 = 30 * 60 * 1000;
/// Longest `state` and `nonce` kept.
pub const MAX_STATE: usize = 2048;
/// How long the hosted page remembers a signed-in browser (Cognito's
/// hosted UI: one hour).
pub const SESSION_MS: i64 = 60 * 60 * 1000;

/// The hosted page's memory of a signed-in browser: who, since when.
/// Sealed into its cookie, so any node behind a load balancer reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PageSession {
    sub: String,
    auth_time: i64,
    expires_at: i64,
}

/// An authorization request as `/oauth2/authorize` receives it.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams {
    /// `response_type`: `code`.
    pub response_type: String,
    /// `client_id`.
    pub client_id: String,
    /// `redirect_uri`, matched exactly against the callback URLs.
    pub redirect_uri: String,
    /// `scope`, space-separated; empty for every scope the client has.
    pub scope: String,
    /// `state`, handed back untouched.
    pub state: String,
    /// `nonce`, put in the id token.
    pub nonce: String,
    /// `code_challenge` (PKCE).
    pub code_challenge: String,
    /// `code_challenge_method`: `S256`.
    pub code_challenge_method: String,
}

/// A checked authorization request, waiting for the user to sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The client.
    pub client_id: String,
    /// Where the code goes.
    pub redirect_uri: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The app's `state`.
    pub state: Option<String>,
    /// The app's `nonce`.
    pub nonce: Option<String>,
    /// The PKCE challenge, if any.
    pub code_challenge: Option<String>,
    /// When the form stops being good (Unix ms).
    pub expires_at: i64,
    /// `response_type=token` (the implicit grant): tokens go back in the
    /// redirect's fragment instead of a code.
    pub implicit: bool,
}

/// What a code stands for, sealed into the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CodeGrant {
    code_id: String,
    client_id: String,
    sub: String,
    redirect_uri: String,
    scopes: Vec<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    auth_time: i64,
    expires_at: i64,
}

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or the redirect URI cannot be trusted: say so on our own
    /// page and never redirect (RFC 6749 §4.1.2.1, no open redirector).
    Page(String),
    /// The rest goes back to the app's redirect URI as `error=`.
    Redirect {
        /// The checked redirect URI.
        redirect_uri: String,
        /// RFC 6749's error code.
        error: &'static str,
        /// What was wrong.
        description: String,
        /// The app's `state`.
        state: Option<String>,
    },
}

impl From<ServiceError> for AuthorizeError {
    fn from(e: ServiceError) -> Self {
        AuthorizeError::Page(e.message)
    }
}

/// Tokens of an exchanged code.
#[derive(Debug, Clone)]
pub struct CodeTokens {
    /// The tokens; `id_token` is empty without the `openid` scope.
    pub tokens: IssuedTokens,
    /// The scopes granted, space-separated.
    pub scope: String,
}

fn bounded(v: &str, what: &str) -> Result<Option<String>, String> {
    if v.len() > MAX_STATE {
        return Err(format!("{what} is longer than {MAX_STATE} bytes"));
    }
    Ok(Some(v.to_string()).filter(|s| !s.is_empty()))
}

impl OAuthService {
    fn sealing_key(&self) -> Result<std::sync::Arc<crate::auth::sealing::SealingKey>, ServiceError> {
        self.sealing.get().ok_or_else(|| {
            ServiceError::new(
                crate::service::ErrorKind::Unavailable,
                "ServiceUnavailableException",
                "this node has no cluster sealing key yet",
            )
        })
    }

    /// The client `client_id` of `pool_id` with its OAuth settings, reading
    /// through a barrier when this node does not know it yet.
    pub(super) async fn oauth_client(
        &self,
        pool_id: &str,
        client_id: &str,
    ) -> Result<Option<(AppClient, ClientOAuth)>, ServiceError> {
        if validate_client_id(client_id).is_err() {
            return Ok(None);
        }
        let store = self.node.store();
        let client = match store.app_client(client_id)? {
            Some(c) => c,
            None => {
                self.node.read_barrier().await?;
                match store.app_client(client_id)? {
                    Some(c) => c,
                    None => return Ok(None),
                }
            }
        };
        if client.pool_id != pool_id {
            return Ok(None);
        }
        let oauth = store.client_oauth(client_id)?;
        Ok(Some((client, oauth)))
    }

    /// Checks `/oauth2/authorize`'s parameters.
    pub async fn check_authorization(
        &self,
        pool_id: &str,
        p: &AuthorizeParams,
    ) -> Result<PendingAuthorization, AuthorizeError> {
        self.require_fresh()
            .await
            .map_err(|e| AuthorizeError::Page(e.description))?;
        let Some((client, oauth)) = self.oauth_client(pool_id, &p.client_id).await? else {
            return Err(AuthorizeError::Page(
                "This app is not known to this user pool (client_id).".into(),
            ));
        };
        if p.redirect_uri.is_empty() || !oauth.callback_urls.contains(&p.redirect_uri) {
            return Err(AuthorizeError::Page(
                "The redirect_uri is not one of the app's registered callback URLs.".into(),
            ));
        }
        let state = bounded(&p.state, "state").map_err(AuthorizeError::Page)?;
        let redirect = |error: &'static str, description: String| AuthorizeError::Redirect {
            redirect_uri: p.redirect_uri.clone(),
            error,
            description,
            state: state.clone(),
        };
        let (flow, implicit) = match p.response_type.as_str() {
            "code" => (OAuthFlow::Code, false),
            "token" => (OAuthFlow::Implicit, true),
            _ => {
                return Err(redirect(
                    "unsupported_response_type",
                    "response_type must be code (or token, for a client allowed the implicit grant)".into(),
                ))
            }
        };
        if !oauth.allows(flow) {
            return Err(redirect(
                "unauthorized_client",
                format!("this client is not allowed the {} grant", flow.as_cognito()),
            ));
        }
        let nonce = bounded(&p.nonce, "nonce").map_err(|d| redirect("invalid_request", d))?;
        let store = self.node.store();
        let mut scopes: Vec<String> = Vec::new();
        let requested: Vec<&str> = if p.scope.trim().is_empty() {
            oauth.scopes.iter().map(String::as_str).collect()
        } else {
            p.scope.split(' ').filter(|s| !s.is_empty()).collect()
        };
        for s in requested {
            if !oauth.scopes.contains(s) {
                return Err(redirect(
                    "invalid_scope",
                    format!(
                        "the client is not allowed the scope {:?}",
                        s.chars().take(128).collect::<String>()
                    ),
                ));
            }
            let exists = STANDARD_SCOPES.contains(&s) || store.scope_exists(pool_id, s).map_err(ServiceError::from)?;
            if exists && !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        if scopes.is_empty() {
            return Err(redirect("invalid_scope", "no scope left to grant".into()));
        }
        let code_challenge = match p.code_challenge.as_str() {
            // PKCE protects a code; the implicit grant has none.
            _ if implicit => None,
            "" if client.secret.is_none() => {
                return Err(redirect(
                    "invalid_request",
                    "code_challenge (PKCE, S256) is required for a client without a secret".into(),
                ))
            }
            "" => None,
            c => {
                crate::auth::pkce::check_challenge(c, &p.code_challenge_method)
                    .map_err(|e| redirect("invalid_request", e.to_string()))?;
                Some(c.to_string())
            }
        };
        Ok(PendingAuthorization {
            client_id: client.client_id,
            redirect_uri: p.redirect_uri.clone(),
            scopes,
            state,
            nonce,
            code_challenge,
            expires_at: crate::clock::now_millis() + REQUEST_MS,
            implicit,
        })
    }

    /// The pending authorization sealed for the hosted page's form.
    pub fn seal_pending(&self, pool_id: &str, p: &PendingAuthorization) -> Result<String, ServiceError> {
        sealed::seal(&*self.sealing_key()?, &sealed::context("request", pool_id), p)
    }

    /// Opens a form's pending authorization; `None` if it was not sealed
    /// for this pool or has expired.
    pub fn open_pending(&self, pool_id: &str, text: &str) -> Option<PendingAuthorization> {
        let key = self.sealing.get()?;
        let p: PendingAuthorization = sealed::open(&key, &sealed::context("request", pool_id), text)?;
        (p.expires_at > crate::clock::now_millis()).then_some(p)
    }

    /// Where the browser goes once `sub` signed in at `auth_time`
    /// (seconds): the app's redirect URI with a code, or, for the implicit
    /// grant, with the tokens in its fragment.
    pub fn finish(
        &self,
        pool_id: &str,
        p: &PendingAuthorization,
        sub: &str,
        auth_time: i64,
    ) -> Result<String, ServiceError> {
        if p.implicit {
            self.issue_implicit(pool_id, p, sub, auth_time)
        } else {
            self.issue_code(pool_id, p, sub, auth_time)
        }
    }

    /// The implicit grant's answer: an access token (and an id token with
    /// the nonce when `openid` was granted), never a refresh token, in the
    /// fragment, which browsers do not send to servers. Minted here, with
    /// no Raft write, from this node's replica, as a refresh is.
    fn issue_implicit(
        &self,
        pool_id: &str,
        p: &PendingAuthorization,
        sub: &str,
        auth_time: i64,
    ) -> Result<String, ServiceError> {
        let store = self.node.store();
        let gone = || ServiceError::not_authorized("the app, its pool or the user no longer exists");
        let pool = store.pool(pool_id)?.ok_or_else(gone)?;
        let client = store.app_client(&p.client_id)?.ok_or_else(gone)?;
        if !store.client_oauth(&p.client_id)?.allows(OAuthFlow::Implicit) {
            return Err(ServiceError::not_authorized(
                "this client is no longer allowed the implicit grant",
            ));
        }
        let user = store.user(pool_id, sub)?.filter(|u| u.enabled).ok_or_else(gone)?;
        let lineage = Lineage {
            oauth: Some(OAuthGrant {
                scopes: &p.scopes,
                nonce: p.nonce.as_deref(),
            }),
            ..Lineage::default()
        };
        let tokens = self.tokens.mint(&pool, &client, &user, auth_time, lineage)?;
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("access_token", &tokens.access_token);
        if p.scopes.iter().any(|s| s == "openid") {
            f.append_pair("id_token", &tokens.id_token);
        }
        f.append_pair("token_type", "Bearer");
        f.append_pair("expires_in", &tokens.expires_in.to_string());
        f.append_pair("scope", &p.scopes.join(" "));
        if let Some(s) = &p.state {
            f.append_pair("state", s);
        }
        Ok(format!("{}#{}", p.redirect_uri, f.finish()))
    }

    /// The code for `sub`, who authenticated at `auth_time` (seconds),
    /// and the URL the browser goes to with it.
    pub fn issue_code(
        &self,
        pool_id: &str,
        p: &PendingAuthorization,
        sub: &str,
        auth_time: i64,
    ) -> Result<String, ServiceError> {
        let grant = CodeGrant {
            code_id: hex::encode(crate::clock::random_bytes::<16>()),
            client_id: p.client_id.clone(),
            sub: sub.to_string(),
            redirect_uri: p.redirect_uri.clone(),
            scopes: p.scopes.clone(),
            nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone(),
            auth_time,
            expires_at: crate::clock::now_millis() + CODE_MS,
        };
        let code = sealed::seal(&*self.sealing_key()?, &sealed::context("code", pool_id), &grant)?;
        let mut url = p.redirect_uri.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("code", &code);
        if let Some(s) = &p.state {
            q.append_pair("state", s);
        }
        url.push_str(&q.finish());
        Ok(url)
    }

    /// `grant_type=authorization_code`: the client (authenticated when it
    /// has a secret, else named by `client_id`), the code, the same
    /// `redirect_uri`, and the PKCE verifier when the request had a
    /// challenge.
    pub async fn exchange_code(
        &self,
        pool_id: &str,
        creds: Option<ClientCredentials<'_>>,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<CodeTokens, OAuthError> {
        self.require_fresh().await?;
        let client = self.identify_client(pool_id, creds, client_id).await?;
        let invalid_grant = |why: &str| OAuthError::bad("invalid_grant", why.to_string());
        let key = self.sealing_key()?;
        let grant: CodeGrant = sealed::open(&key, &sealed::context("code", pool_id), code)
            .ok_or_else(|| invalid_grant("the code is not one this pool issued"))?;
        let now = crate::clock::now_millis();
        if grant.client_id != client.client_id {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if grant.redirect_uri != redirect_uri {
            return Err(invalid_grant("redirect_uri differs from the authorization request's"));
        }
        match (&grant.code_challenge, code_verifier) {
            (Some(c), Some(v)) => {
                crate::auth::pkce::verify(c, v).map_err(|e| invalid_grant(&e.to_string()))?;
            }
            (Some(_), None) => return Err(invalid_grant("code_verifier is required (PKCE)")),
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "code_verifier given, but the authorization request had no code_challenge",
                ))
            }
            (None, None) => {}
        }
        if grant.expires_at <= now {
            return Err(invalid_grant("the code has expired"));
        }
        let oauth = self
            .node
            .store()
            .client_oauth(&client.client_id)
            .map_err(ServiceError::from)?;
        if !oauth.allows(OAuthFlow::Code) {
            return Err(OAuthError::bad(
                "unauthorized_client",
                "this client is no longer allowed the authorization code grant",
            ));
        }
        let pool = self
            .node
            .store()
            .pool(pool_id)
            .map_err(ServiceError::from)?
            .ok_or_else(|| invalid_grant("the user pool no longer exists"))?;
        let user = self
            .node
            .store()
            .user(pool_id, &grant.sub)
            .map_err(ServiceError::from)?
            .filter(|u| u.enabled)
            .ok_or_else(|| invalid_grant("the user no longer exists or is disabled"))?;
        if user.tokens_revoked_before_ms >= grant.auth_time * 1000 {
            return Err(invalid_grant(
                "the user signed out everywhere after this code was issued",
            ));
        }
        let family = crate::clock::new_uuid().to_string();
        let spend = SpendAuthorizationCode {
            pool_id: pool_id.to_string(),
            code_id: grant.code_id.clone(),
            expires_at: grant.expires_at,
            origin_jti: family.clone(),
            family_expires_at: now + i64::from(client.token_validity.refresh_token_secs) * 1000,
            now,
        };
        match self.node.propose(spend).await.map_err(ServiceError::from)? {
            Outcome::Rejected(Rejection::ResourceConflict(why)) => return Err(invalid_grant(&why)),
            Outcome::Rejected(r) => return Err(invalid_grant(&r.to_string())),
            _ => {}
        }
        let lineage = Lineage {
            family: Some(&family),
            oauth: Some(OAuthGrant {
                scopes: &grant.scopes,
                nonce: grant.nonce.as_deref(),
            }),
            ..Lineage::default()
        };
        let tokens = self.tokens.mint(&pool, &client, &user, grant.auth_time, lineage)?;
        Ok(CodeTokens {
            tokens,
            scope: grant.scopes.join(" "),
        })
    }

    /// The client a token-endpoint request is from: authenticated when it
    /// presents a secret, else named by `client_id`, which only a client
    /// without a secret may do.
    pub async fn identify_client(
        &self,
        pool_id: &str,
        creds: Option<ClientCredentials<'_>>,
        client_id: &str,
    ) -> Result<AppClient, OAuthError> {
        match creds {
            Some(c) => self.authenticate_client(pool_id, c).await,
            None => {
                let (client, _) = self
                    .oauth_client(pool_id, client_id)
                    .await?
                    .ok_or_else(OAuthError::invalid_client)?;
                if client.secret.is_some() {
                    // A confidential client must prove itself.
                    return Err(OAuthError::invalid_client());
                }
                Ok(client)
            }
        }
    }

    /// The OAuth settings of client `client_id` of `pool_id`, if it exists.
    pub async fn oauth_client_settings(
        &self,
        pool_id: &str,
        client_id: &str,
    ) -> Result<Option<ClientOAuth>, ServiceError> {
        Ok(self.oauth_client(pool_id, client_id).await?.map(|(_, o)| o))
    }

    /// The sealed value of the hosted page's session cookie for `sub`.
    pub fn seal_session(&self, pool_id: &str, sub: &str, auth_time: i64) -> Result<String, ServiceError> {
        let s = PageSession {
            sub: sub.to_string(),
            auth_time,
            expires_at: crate::clock::now_millis() + SESSION_MS,
        };
        sealed::seal(&*self.sealing_key()?, &sealed::context("session", pool_id), &s)
    }

    /// The user a session cookie still signs in: `(sub, auth_time)` if it
    /// was sealed for this pool, has not expired, and its user still
    /// exists, is enabled and confirmed, and has not signed out everywhere
    /// since.
    pub fn session_user(&self, pool_id: &str, cookie: &str) -> Option<(String, i64)> {
        let key = self.sealing.get()?;
        let s: PageSession = sealed::open(&key, &sealed::context("session", pool_id), cookie)?;
        if s.expires_at <= crate::clock::now_millis() {
            return None;
        }
        let user = self.node.store().user(pool_id, &s.sub).ok()??;
        let live = user.enabled
            && user.status == crate::model::user::UserStatus::Confirmed
            && user.tokens_revoked_before_ms < s.auth_time * 1000;
        live.then_some((s.sub, s.auth_time))
    }
}
