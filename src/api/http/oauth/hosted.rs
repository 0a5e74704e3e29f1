//! The hosted sign-in page: `GET /{pool_id}/oauth2/authorize` checks the
//! app's request and shows the sign-in form; `POST /{pool_id}/login` and
//! `POST /{pool_id}/challenge` run the sign-in through the same flows as
//! the API (lockout, MFA, triggers, audit), and a signed-in user's browser
//! goes back to the app's redirect URI with a code.
//!
//! The page works without JavaScript and loads nothing else. Every form
//! carries a CSRF token that must equal the page's cookie (double submit;
//! the cookie is `SameSite=Lax`, so a cross-site post never has it). The
//! checked request travels sealed in the form (`service::oauth::sealed`),
//! so the next post may land on any node. Pages forbid framing and
//! caching. Passwords, codes and tokens are never logged.

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

use super::super::html::{escape, peer_ip};
use super::token::{read_form, Form};
use crate::service::flows::signin::AuthAnswer;
use crate::service::flows::AuthService;
use crate::service::oauth::authorize::{AuthorizeError, AuthorizeParams, PendingAuthorization};
use crate::service::oauth::OAuthService;
use crate::service::Origin;

/// The CSRF cookie's name.
const CSRF_COOKIE: &str = "tessera_csrf";
/// The session cookie's name: a signed-in browser is not asked again
/// (single sign-on across the pool's apps) until it expires or signs out.
const SESSION_COOKIE: &str = "tessera_session";

/// The challenges the page answers, and the response field each fills.
const ANSWERS: &[(&str, &str, &str)] = &[
    (
        "SOFTWARE_TOKEN_MFA",
        "SOFTWARE_TOKEN_MFA_CODE",
        "Code from your authenticator app",
    ),
    ("SMS_MFA", "SMS_MFA_CODE", "Code we sent by text message"),
    ("EMAIL_OTP", "EMAIL_OTP_CODE", "Code we sent by email"),
    ("NEW_PASSWORD_REQUIRED", "NEW_PASSWORD", "Choose a new password"),
];

#[derive(Clone)]
struct Hosted {
    oauth: OAuthService,
    auth: AuthService,
}

/// Adds the hosted page's routes to `router`.
pub fn routes(router: Router, oauth: OAuthService, auth: AuthService) -> Router {
    let h = Hosted { oauth, auth };
    let (h2, h3, h4) = (h.clone(), h.clone(), h.clone());
    router
        .route(
            "/{pool_id}/oauth2/authorize",
            get(
                move |Path(pool_id): Path<String>, Query(q): Query<BTreeMap<String, String>>, headers: HeaderMap| {
                    let h = h.clone();
                    async move { h.authorize(&pool_id, &q, &headers).await }
                },
            ),
        )
        .route(
            "/{pool_id}/login",
            post(
                move |Path(pool_id): Path<String>, headers: HeaderMap, ext: axum::http::Extensions, body: Body| {
                    let h = h2.clone();
                    async move { h.posted(&pool_id, &headers, &peer_ip(&ext), body, false).await }
                },
            ),
        )
        .route(
            "/{pool_id}/logout",
            get(
                move |Path(pool_id): Path<String>, Query(q): Query<BTreeMap<String, String>>| {
                    let h = h4.clone();
                    async move { h.logout(&pool_id, &q).await }
                },
            ),
        )
        .route(
            "/{pool_id}/challenge",
            post(
                move |Path(pool_id): Path<String>, headers: HeaderMap, ext: axum::http::Extensions, body: Body| {
                    let h = h3.clone();
                    async move { h.posted(&pool_id, &headers, &peer_ip(&ext), body, true).await }
                },
            ),
        )
}

/// A page with the headers every hosted page carries.
fn page(status: StatusCode, title: &str, body: &str, csrf_cookie: Option<(&str, &str)>) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}}\
         label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
         button{{margin-top:1.2rem;font-size:1.05rem;padding:.6rem 1.4rem}}.error{{color:#b00020}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // No form-action: a form post ends in a redirect to the app, which
    // form-action would block.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    if let Some((pool_id, value)) = csrf_cookie {
        let cookie = format!("{CSRF_COOKIE}={value}; Path=/{pool_id}/; Max-Age=1800; Secure; HttpOnly; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
    }
    r
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Sign-in cannot continue",
        &format!(
            "<p class=\"error\">{}</p><p>Go back to the app and start signing in again.</p>",
            escape(message)
        ),
        None,
    )
}

/// A 303 to `location` (a form post becomes the app's GET).
fn redirect(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// `sub` and `auth_time` of an access token this node just minted.
fn subject_of(access_token: &str) -> Option<(String, i64)> {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((v["sub"].as_str()?.to_string(), v["auth_time"].as_i64()?))
}

impl Hosted {
    /// `GET /{pool_id}/logout?client_id=...&logout_uri=...`: forgets the
    /// page's cookies (the session with them) and sends the browser to `logout_uri`, which must be
    /// one of the client's sign-out URLs exactly (no open redirect).
    async fn logout(&self, pool_id: &str, q: &BTreeMap<String, String>) -> Response {
        let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
        let logout_uri = q.get("logout_uri").map(String::as_str).unwrap_or("");
        let allowed = match self.oauth.oauth_client_settings(pool_id, client_id).await {
            Ok(Some(oauth)) => oauth.logout_urls.contains(logout_uri),
            Ok(None) => false,
            Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        if !allowed {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The logout_uri is not one of the app's registered sign-out URLs.",
            );
        }
        let mut r = redirect(logout_uri);
        for name in [CSRF_COOKIE, SESSION_COOKIE] {
            let cookie = format!("{name}=; Path=/{pool_id}/; Max-Age=0; Secure; HttpOnly; SameSite=Lax");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
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
        match self.oauth.check_authorization(pool_id, &params).await {
            Ok(pending) => {
                // A browser signed in a moment ago goes straight back with
                // a code, unless the app asks for a fresh sign-in.
                let fresh = q.get("prompt").is_some_and(|p| p.split(' ').any(|p| p == "login"));
                let session = cookie(headers, SESSION_COOKIE)
                    .filter(|_| !fresh)
                    .and_then(|c| self.oauth.session_user(pool_id, &c));
                match session {
                    Some((sub, auth_time)) => match self.oauth.issue_code(pool_id, &pending, &sub, auth_time) {
                        Ok(url) => redirect(&url),
                        Err(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                    },
                    None => self.sign_in_form(pool_id, &pending, None),
                }
            }
            Err(AuthorizeError::Page(m)) => error_page(StatusCode::BAD_REQUEST, &m),
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

    /// The sign-in form for `pending`, with a fresh CSRF token.
    fn sign_in_form(&self, pool_id: &str, pending: &PendingAuthorization, error: Option<&str>) -> Response {
        let sealed = match self.oauth.seal_pending(pool_id, pending) {
            Ok(s) => s,
            Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        let csrf = hex::encode(crate::clock::random_bytes::<32>());
        let error = error
            .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
            .unwrap_or_default();
        let body = format!(
            "{error}<form method=\"post\" action=\"/{pool}/login\">\
             <input type=\"hidden\" name=\"request\" value=\"{sealed}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"username\">Username</label>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
            pool = escape(pool_id),
            sealed = escape(&sealed),
        );
        page(StatusCode::OK, "Sign in", &body, Some((pool_id, &csrf)))
    }

    /// The form of challenge `name` of a sign-in in progress.
    #[allow(clippy::too_many_arguments)]
    fn challenge_form(
        &self,
        pool_id: &str,
        pending: &PendingAuthorization,
        name: &str,
        session: &str,
        username: &str,
        error: Option<&str>,
    ) -> Response {
        let Some((_, _, label)) = ANSWERS.iter().find(|(n, _, _)| *n == name) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("This sign-in needs the {name} step, which this page does not offer; sign in from the app."),
            );
        };
        let sealed = match self.oauth.seal_pending(pool_id, pending) {
            Ok(s) => s,
            Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        let csrf = hex::encode(crate::clock::random_bytes::<32>());
        let error = error
            .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
            .unwrap_or_default();
        let kind = if name == "NEW_PASSWORD_REQUIRED" {
            "type=\"password\" autocomplete=\"new-password\""
        } else {
            "inputmode=\"numeric\" autocomplete=\"one-time-code\""
        };
        let body = format!(
            "{error}<form method=\"post\" action=\"/{pool}/challenge\">\
             <input type=\"hidden\" name=\"request\" value=\"{sealed}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"challenge\" value=\"{name}\">\
             <input type=\"hidden\" name=\"session\" value=\"{session}\">\
             <input type=\"hidden\" name=\"username\" value=\"{username}\">\
             <label for=\"answer\">{label}</label>\
             <input id=\"answer\" name=\"answer\" {kind} required>\
             <button type=\"submit\" id=\"continue\">Continue</button></form>",
            pool = escape(pool_id),
            sealed = escape(&sealed),
            name = escape(name),
            session = escape(session),
            username = escape(username),
        );
        page(StatusCode::OK, "One more step", &body, Some((pool_id, &csrf)))
    }

    /// `POST /login` (`challenge` false) or `POST /challenge`.
    async fn posted(&self, pool_id: &str, headers: &HeaderMap, ip: &str, body: Body, challenge: bool) -> Response {
        let form: Form = match read_form(headers, body).await {
            Ok(f) => f,
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
        };
        let presented = form.get("csrf").unwrap_or("");
        let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
        if presented.is_empty() || !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return error_page(
                StatusCode::FORBIDDEN,
                "This form expired or was sent from another site (its security token does not match).",
            );
        }
        let Some(pending) = self.oauth.open_pending(pool_id, form.get("request").unwrap_or("")) else {
            return error_page(StatusCode::BAD_REQUEST, "This sign-in page has expired.");
        };
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let username = form.get("username").unwrap_or("").to_string();
        let answer = if challenge {
            let name = form.get("challenge").unwrap_or("");
            let Some((_, field, _)) = ANSWERS.iter().find(|(n, _, _)| *n == name) else {
                return error_page(StatusCode::BAD_REQUEST, "Unknown sign-in step.");
            };
            let responses = BTreeMap::from([(field.to_string(), form.get("answer").unwrap_or("").to_string())]);
            let session = form.get("session").unwrap_or("");
            match self
                .auth
                .hosted_respond(&pending.client_id, name, session, &username, responses, &origin)
                .await
            {
                Ok(a) => a,
                Err(e) if e.exception == "CodeMismatchException" => {
                    return self.challenge_form(pool_id, &pending, name, session, &username, Some(&e.message))
                }
                Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.message),
            }
        } else {
            let password = form.get("password").unwrap_or("");
            match self
                .auth
                .hosted_password(&pending.client_id, &username, password, &origin)
                .await
            {
                Ok(a) => a,
                Err(e)
                    if matches!(
                        e.kind,
                        crate::service::ErrorKind::Unavailable | crate::service::ErrorKind::Internal
                    ) =>
                {
                    return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message)
                }
                Err(e) => return self.sign_in_form(pool_id, &pending, Some(&e.message)),
            }
        };
        match answer {
            AuthAnswer::Tokens(t) => {
                let Some((sub, auth_time)) = subject_of(&t.access_token) else {
                    return error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "The sign-in produced no usable token.",
                    );
                };
                let issued = self
                    .oauth
                    .issue_code(pool_id, &pending, &sub, auth_time)
                    .and_then(|url| Ok((url, self.oauth.seal_session(pool_id, &sub, auth_time)?)));
                match issued {
                    Ok((url, session)) => {
                        let mut r = redirect(&url);
                        let c = format!(
                            "{SESSION_COOKIE}={session}; Path=/{pool_id}/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"
                        );
                        if let Ok(v) = HeaderValue::from_str(&c) {
                            r.headers_mut().append(header::SET_COOKIE, v);
                        }
                        r
                    }
                    Err(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                }
            }
            AuthAnswer::Challenge { name, session, .. } => {
                self.challenge_form(pool_id, &pending, &name, &session, &username, None)
            }
        }
    }
}
