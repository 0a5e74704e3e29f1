//! Social sign-in by redirect, the HTTP side (the rules are
//! `service::oauth::social`):
//!
//! * [`buttons`]: the hosted sign-in form's "Sign in with <provider>"
//!   links, plain links carrying the sealed pending authorization (no
//!   JavaScript).
//! * `GET /{pool_id}/oauth2/federate?request=...&identity_provider=...`
//!   (a button) and `/oauth2/authorize?...&identity_provider=...`
//!   ([`start`], Cognito's way of skipping the page) send the browser to
//!   the provider and set the browser-binding cookie.
//! * `GET` or `POST /{pool_id}/oauth2/idpresponse` (Cognito's path; the
//!   URL to register at the provider) finishes: a 303 to the app with our
//!   code and the session cookie, or our own error page, or the app's
//!   redirect URI with `error=` when the provider said no.
//!
//! Starting is a GET with no effect but a cookie, so it needs no CSRF
//! token: forcing a browser to start a sign-in gains nothing, and the
//! callback only finishes in the browser that holds the binding cookie.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::super::html::{escape, peer_ip};
use super::hosted::page::{cookie, redirect, set_cookie, Look, SESSION_COOKIE};
use super::token::read_form;
use crate::service::flows::AuthService;
use crate::service::oauth::authorize::PendingAuthorization;
use crate::service::oauth::social::{ProviderCallback, SocialError};
use crate::service::oauth::OAuthService;
use crate::service::Origin;

/// The browser-binding cookie of a sign-in at a provider.
pub const BINDING_COOKIE: &str = "tessera_idp";

#[derive(Clone)]
struct Social {
    oauth: OAuthService,
    auth: AuthService,
}

/// Adds the social sign-in routes to `router`.
pub fn routes(router: Router, oauth: OAuthService, auth: AuthService) -> Router {
    let s = Social { oauth, auth };
    let (s2, s3) = (s.clone(), s.clone());
    router
        .route(
            "/{pool_id}/oauth2/federate",
            get(
                move |Path(pool_id): Path<String>, Query(q): Query<BTreeMap<String, String>>, headers: HeaderMap| {
                    let s = s.clone();
                    async move { s.federate(&pool_id, &q, &headers).await }
                },
            ),
        )
        .route(
            "/{pool_id}/oauth2/idpresponse",
            get(
                move |Path(pool_id): Path<String>,
                      Query(q): Query<BTreeMap<String, String>>,
                      headers: HeaderMap,
                      ext: axum::http::Extensions| {
                    let s = s2.clone();
                    async move { s.callback(&pool_id, &q, &headers, &peer_ip(&ext)).await }
                },
            )
            .post(
                // Apple's `response_mode=form_post`.
                move |Path(pool_id): Path<String>, headers: HeaderMap, ext: axum::http::Extensions, body: Body| {
                    let s = s3.clone();
                    async move {
                        let form = match read_form(&headers, body).await {
                            Ok(f) => f,
                            Err(e) => {
                                return Look::new(&pool_id, None, None, &headers)
                                    .error_page(StatusCode::BAD_REQUEST, &e.description)
                            }
                        };
                        let q: BTreeMap<String, String> = ["state", "code", "error"]
                            .iter()
                            .filter_map(|k| form.get(k).map(|v| (k.to_string(), v.to_string())))
                            .collect();
                        s.callback(&pool_id, &q, &headers, &peer_ip(&ext)).await
                    }
                },
            ),
        )
}

/// The "Sign in with <provider>" links of the sign-in form for the
/// pending authorization sealed as `sealed_request`, in `look`'s
/// language; empty without `providers`.
pub fn buttons(look: &Look, sealed_request: &str, providers: &[String]) -> String {
    if providers.is_empty() {
        return String::new();
    }
    let mut html = format!("<div class=\"idps\"><p>{}</p>", escape(&look.t("signin.or")));
    for p in providers {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("request", sealed_request)
            .append_pair("identity_provider", p)
            .append_pair("lang", &look.lang);
        html.push_str(&format!(
            "<p><a class=\"idp idpButton-customizable\" data-provider=\"{name}\" href=\"/{pool}/oauth2/federate?{q}\">{label}</a></p>",
            name = escape(p),
            pool = escape(&look.pool_id),
            q = escape(&q.finish()),
            label = escape(&look.t_with("signin.with", &[("provider", p)])),
        ));
    }
    html.push_str("</div>");
    html
}

/// Sends the browser to provider `name` for `pending` (for `authorize`'s
/// `identity_provider=`): a 303 with the binding cookie, or an error page.
pub async fn start(
    oauth: &OAuthService,
    auth: &AuthService,
    look: &Look,
    pending: &PendingAuthorization,
    name: &str,
) -> Response {
    let pool_id = look.pool_id.as_str();
    match oauth.start_social(auth, pool_id, pending, name).await {
        Ok(s) => {
            let mut r = redirect(&s.location);
            // SameSite=Lax comes back on the provider's top-level GET
            // redirect; Apple's cross-site form post needs None.
            let same_site = if s.cross_site_post { "None" } else { "Lax" };
            let c = format!(
                "{BINDING_COOKIE}={}; Path=/{pool_id}/; Max-Age=600; Secure; HttpOnly; SameSite={same_site}",
                s.binding
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&c) {
                r.headers_mut().append(axum::http::header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => social_error(look, e),
    }
}

impl Social {
    /// `GET /{pool_id}/oauth2/federate`: a button of the sign-in form.
    async fn federate(&self, pool_id: &str, q: &BTreeMap<String, String>, headers: &HeaderMap) -> Response {
        let lang = q.get("lang").map(String::as_str);
        let Some(pending) = self
            .oauth
            .open_pending(pool_id, q.get("request").map(String::as_str).unwrap_or(""))
        else {
            let look = Look::new(pool_id, None, lang, headers);
            return look.error_page(StatusCode::BAD_REQUEST, &look.t("error.expired"));
        };
        let branding = self.oauth.branding(pool_id, &pending.client_id);
        let look = Look::new(pool_id, branding.as_ref(), lang, headers);
        let name = q.get("identity_provider").map(String::as_str).unwrap_or("");
        start(&self.oauth, &self.auth, &look, &pending, name).await
    }

    /// `/{pool_id}/oauth2/idpresponse`.
    async fn callback(&self, pool_id: &str, q: &BTreeMap<String, String>, headers: &HeaderMap, ip: &str) -> Response {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        let binding = cookie(headers, BINDING_COOKIE);
        let cb = ProviderCallback {
            state: get("state"),
            code: get("code"),
            error: get("error"),
            binding: binding.as_deref(),
        };
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let look = Look::new(pool_id, None, None, headers);
        let mut r = match self.oauth.finish_social(&self.auth, pool_id, cb, &origin).await {
            Ok(done) => {
                let mut r = redirect(&done.location);
                let max_age = (crate::service::oauth::authorize::SESSION_MS / 1000) as u64;
                set_cookie(&mut r, pool_id, SESSION_COOKIE, &done.session, max_age);
                r
            }
            Err(e) => social_error(&look, e),
        };
        // The binding served its one sign-in, whatever the outcome.
        if binding.is_some() {
            set_cookie(&mut r, pool_id, BINDING_COOKIE, "", 0);
        }
        r
    }
}

/// The answer to a [`SocialError`]: our page, or the app's redirect URI.
fn social_error(look: &Look, e: SocialError) -> Response {
    match e {
        SocialError::Page { status, message } => look.error_page(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &message,
        ),
        SocialError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_escape_names_and_carry_the_request() {
        let look = Look::plain("local_x");
        assert_eq!(buttons(&look, "r", &[]), "");
        let html = buttons(&look, "abc-_", &["Corp<1>".into(), "Google".into()]);
        assert!(html.contains("Sign in with Corp&lt;1&gt;"), "{html}");
        assert!(
            html.contains("href=\"/local_x/oauth2/federate?request=abc-_&amp;identity_provider=Google&amp;lang=en\""),
            "{html}"
        );
        assert!(!html.contains("<1>"), "{html}");
    }
}
