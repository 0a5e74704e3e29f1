//! OAuth 2.0 / OpenID Connect endpoints of each user pool, under
//! `{public_url}/{pool_id}/` on the api port of every node, as the pool's
//! discovery document (`/.well-known/openid-configuration`) lists them.
//!
//! `POST /{pool_id}/oauth2/token` with the client-credentials and
//! authorization-code grants ([`token`]), the hosted sign-in page behind
//! `GET /{pool_id}/oauth2/authorize` ([`hosted`]), social sign-in by
//! redirect through the pool's identity providers ([`social`]), and
//! `GET /{pool_id}/oauth2/userInfo` ([`userinfo`]). The business rules live in `service::oauth`; this
//! module only speaks HTTP: form parsing, client authentication headers,
//! and RFC 6749's JSON error shape.

pub mod hosted;
pub mod social;
pub mod token;
pub mod userinfo;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::service::oauth::{OAuthError, OAuthService};

/// Adds the OAuth routes to `router`: the token endpoint, the hosted
/// sign-in page and `userInfo`.
pub fn routes(router: Router, oauth: OAuthService, auth: crate::service::flows::AuthService) -> Router {
    let router = token::routes(router, oauth.clone(), auth.clone());
    let router = hosted::routes(router, oauth.clone(), auth.clone());
    let router = social::routes(router, oauth, auth.clone());
    userinfo::routes(router, auth)
}

/// A JSON body with the headers every token-endpoint answer carries:
/// tokens must not be cached by anything between (RFC 6749 §5.1).
fn no_store_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// RFC 6749 §5.2's error answer. `basic`: the client tried HTTP Basic, so
/// a 401 names the scheme it must use (`WWW-Authenticate`).
fn error_response(e: OAuthError, basic: bool) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = no_store_json(
        status,
        serde_json::json!({"error": e.error, "error_description": e.description}),
    );
    if status == StatusCode::UNAUTHORIZED {
        let scheme = if basic {
            "Basic realm=\"tessera\", error=\"invalid_client\""
        } else {
            "Basic realm=\"tessera\""
        };
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
    }
    r
}
