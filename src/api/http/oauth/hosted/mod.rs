//! The hosted sign-in page: `GET /{pool_id}/oauth2/authorize` checks the
//! app's request and shows the sign-in form; the page's posts run the
//! sign-in through the same flows as the API (lockout, MFA, triggers,
//! audit), and a signed-in user's browser goes back to the app's redirect
//! URI with a code.
//!
//! The page works without JavaScript and loads nothing else; only the
//! passkey buttons need script, one static file of this origin
//! ([`passkey`]), and hide themselves without it. Every form
//! carries a CSRF token that must equal the page's cookie (double submit;
//! the cookie is `SameSite=Lax`, so a cross-site post never has it). The
//! checked request travels sealed in the form (`service::oauth::sealed`),
//! so the next post may land on any node. Pages forbid framing and
//! caching, and wear the pool's branding in the browser's language
//! ([`page::Look`], [`strings`]). Passwords, codes and tokens are never
//! logged.
//!
//! - [`page`]: the shell, the look, cookies and redirects.
//! - [`signin`]: sign-in with a password and the challenges after it.
//! - [`signup`]: sign-up, and its confirmation by code (which signs in).
//! - [`forgot`]: a forgotten password reset by code.
//! - [`mfa`]: the MFA steps with more than one answer field: enrolling
//!   an authenticator (`MFA_SETUP`) and choosing a factor
//!   (`SELECT_MFA_TYPE`).
//! - [`passkey`]: signing in with a passkey, and the offer to add one
//!   after a sign-in.

pub mod forgot;
pub mod mfa;
pub mod page;
pub mod passkey;
pub mod signin;
pub mod signup;
pub mod strings;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;

use super::super::html::peer_ip;
use super::token::{read_form, Form};
use crate::service::flows::AuthService;
use crate::service::oauth::authorize::{AuthorizeError, AuthorizeParams, PendingAuthorization};
use crate::service::oauth::OAuthService;
use page::{cookie, csrf_ok, redirect, set_cookie, Look, CSRF_COOKIE, SESSION_COOKIE};

#[derive(Clone)]
struct Hosted {
    oauth: OAuthService,
    auth: AuthService,
}

/// Which form a post comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Posted {
    /// `POST /{pool}/login`: username and password.
    Login,
    /// `POST /{pool}/challenge`: an answer to a challenge.
    Challenge,
    /// `POST /{pool}/signup`: the sign-up form (shown, or posted).
    SignUp,
    /// `POST /{pool}/confirm`: the confirmation code of a sign-up, or a
    /// request for a new one.
    Confirm,
    /// `POST /{pool}/forgot`: the forgotten-password form (shown, or posted).
    Forgot,
    /// `POST /{pool}/reset`: the reset code and the new password.
    Reset,
    /// `POST /{pool}/passkey`: a passkey sign-in (its options, or the
    /// assertion).
    Passkey,
    /// `POST /{pool}/passkey/add`: the offer to add a passkey after a
    /// sign-in (its options, the new credential, or "not now").
    PasskeyAdd,
}

/// The page's form posts and where each goes.
const POSTS: &[(&str, Posted)] = &[
    ("/{pool_id}/login", Posted::Login),
    ("/{pool_id}/challenge", Posted::Challenge),
    ("/{pool_id}/signup", Posted::SignUp),
    ("/{pool_id}/confirm", Posted::Confirm),
    ("/{pool_id}/forgot", Posted::Forgot),
    ("/{pool_id}/reset", Posted::Reset),
    ("/{pool_id}/passkey", Posted::Passkey),
    ("/{pool_id}/passkey/add", Posted::PasskeyAdd),
];

/// Adds the hosted page's routes to `router`.
pub fn routes(router: Router, oauth: OAuthService, auth: AuthService) -> Router {
    let h = Hosted { oauth, auth };
    let (h1, h4) = (h.clone(), h.clone());
    let mut router = router
        .route(
            "/{pool_id}/oauth2/authorize",
            get(
                move |Path(pool_id): Path<String>, Query(q): Query<BTreeMap<String, String>>, headers: HeaderMap| {
                    let h = h1.clone();
                    async move { h.authorize(&pool_id, &q, &headers).await }
                },
            ),
        )
        .route(
            "/{pool_id}/logout",
            get(
                move |Path(pool_id): Path<String>, Query(q): Query<BTreeMap<String, String>>, headers: HeaderMap| {
                    let h = h4.clone();
                    async move { h.logout(&pool_id, &q, &headers).await }
                },
            ),
        )
        .route("/{pool_id}/passkey.js", get(|| async { passkey::script() }));
    for (path, which) in POSTS {
        let (h, which) = (h.clone(), *which);
        router = router.route(
            path,
            post(
                move |Path(pool_id): Path<String>, headers: HeaderMap, ext: axum::http::Extensions, body: Body| {
                    let h = h.clone();
                    async move { h.posted(&pool_id, &headers, &peer_ip(&ext), body, which).await }
                },
            ),
        );
    }
    router
}

/// What a checked form post carries: its fields, the pending
/// authorization it continues, and the look to answer in.
struct Checked {
    form: Form,
    pending: PendingAuthorization,
    look: Look,
}

impl Hosted {
    /// The look of `client_id`'s page (its branding, else the pool's) in
    /// the language asked for.
    fn look(&self, pool_id: &str, client_id: &str, lang: Option<&str>, headers: &HeaderMap) -> Look {
        let branding = self.oauth.branding(pool_id, client_id);
        Look::new(pool_id, branding.as_ref(), lang, headers)
    }

    /// `GET /{pool_id}/logout?client_id=...&logout_uri=...`: forgets the
    /// page's cookies (the session with them) and sends the browser to
    /// `logout_uri`, which must be one of the client's sign-out URLs
    /// exactly (no open redirect).
    async fn logout(&self, pool_id: &str, q: &BTreeMap<String, String>, headers: &HeaderMap) -> Response {
        let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
        let logout_uri = q.get("logout_uri").map(String::as_str).unwrap_or("");
        let look = self.look(pool_id, client_id, q.get("lang").map(String::as_str), headers);
        let allowed = match self.oauth.oauth_client_settings(pool_id, client_id).await {
            Ok(Some(oauth)) => oauth.logout_urls.contains(logout_uri),
            Ok(None) => false,
            Err(e) => return look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        if !allowed {
            return look.error_page(StatusCode::BAD_REQUEST, &look.t("error.logout_uri"));
        }
        let mut r = redirect(logout_uri);
        for name in [CSRF_COOKIE, SESSION_COOKIE] {
            set_cookie(&mut r, pool_id, name, "", 0);
        }
        r
    }

    async fn authorize(&self, pool_id: &str, q: &BTreeMap<String, String>, headers: &HeaderMap) -> Response {
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        let params = AuthorizeParams {
            response_type: get("response_type"),
            client_id: get("client_id"),
            redirect_uri: get("redirect_uri"),
            scope: get("scope"),
            state: get("state"),
            nonce: get("nonce"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
        };
        let look = self.look(pool_id, &params.client_id, q.get("lang").map(String::as_str), headers);
        match self.oauth.check_authorization(pool_id, &params).await {
            Ok(pending) => {
                // `identity_provider=` skips the page (Cognito's behaviour).
                if let Some(idp) = q.get("identity_provider").filter(|p| p.as_str() != "COGNITO") {
                    return super::social::start(&self.oauth, &self.auth, &look, &pending, idp).await;
                }
                // A browser signed in a moment ago goes straight back with
                // a code, unless the app asks for a fresh sign-in.
                let fresh = q.get("prompt").is_some_and(|p| p.split(' ').any(|p| p == "login"));
                let session = cookie(headers, SESSION_COOKIE)
                    .filter(|_| !fresh)
                    .and_then(|c| self.oauth.session_user(pool_id, &c));
                match session {
                    Some((sub, auth_time)) => match self.oauth.finish(pool_id, &pending, &sub, auth_time) {
                        Ok(url) => redirect(&url),
                        Err(e) => look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                    },
                    None => self.sign_in_form(&look, &pending, None),
                }
            }
            Err(AuthorizeError::Page(m)) => look.error_page(StatusCode::BAD_REQUEST, &m),
            Err(AuthorizeError::Redirect {
                redirect_uri,
                error,
                description,
                state,
            }) => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("error", error);
                q.append_pair("error_description", &description);
                if let Some(s) = &state {
                    q.append_pair("state", s);
                }
                let sep = if redirect_uri.contains('?') { '&' } else { '?' };
                redirect(&format!("{redirect_uri}{sep}{}", q.finish()))
            }
        }
    }

    /// Reads a form post, checks its CSRF token and opens the pending
    /// authorization it carries; `Err` is the page to answer with.
    async fn check_post(&self, pool_id: &str, headers: &HeaderMap, body: Body) -> Result<Checked, Response> {
        let plain = Look::new(pool_id, None, None, headers);
        let form: Form = read_form(headers, body)
            .await
            .map_err(|e| plain.error_page(StatusCode::BAD_REQUEST, &e.description))?;
        if !csrf_ok(headers, form.get("csrf").unwrap_or("")) {
            return Err(plain.error_page(StatusCode::FORBIDDEN, &plain.t("error.csrf")));
        }
        let Some(pending) = self.oauth.open_pending(pool_id, form.get("request").unwrap_or("")) else {
            return Err(plain.error_page(StatusCode::BAD_REQUEST, &plain.t("error.expired")));
        };
        let look = self.look(pool_id, &pending.client_id, form.get("lang"), headers);
        Ok(Checked { form, pending, look })
    }

    /// A form post of the page.
    async fn posted(&self, pool_id: &str, headers: &HeaderMap, ip: &str, body: Body, which: Posted) -> Response {
        let checked = match self.check_post(pool_id, headers, body).await {
            Ok(c) => c,
            Err(page) => return page,
        };
        match which {
            Posted::Login => self.password_posted(checked, ip).await,
            Posted::Challenge => self.challenge_posted(checked, ip).await,
            Posted::SignUp => self.sign_up_posted(checked, ip).await,
            Posted::Confirm => self.confirm_posted(checked, ip).await,
            Posted::Forgot => self.forgot_posted(checked, ip).await,
            Posted::Reset => self.reset_posted(checked, ip).await,
            Posted::Passkey => self.passkey_posted(checked, ip).await,
            Posted::PasskeyAdd => self.passkey_add_posted(checked, ip).await,
        }
    }
}
