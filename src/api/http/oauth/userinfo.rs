//! `GET /{pool_id}/oauth2/userInfo` (OpenID Connect Core §5.3): the
//! signed-in user's claims for a bearer access token, as `GetUser` sees
//! them (the same checks: signature, revocation, a disabled or deleted
//! user, the attributes the app client may read).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::service::flows::AuthService;

/// Adds `userInfo` to `router`.
pub fn routes(router: Router, auth: AuthService) -> Router {
    router.route(
        "/{pool_id}/oauth2/userInfo",
        get(move |Path(pool_id): Path<String>, headers: HeaderMap| {
            let auth = auth.clone();
            async move { user_info(&auth, &pool_id, &headers).await }
        }),
    )
}

/// RFC 6750 §3's answer to a missing or bad bearer token.
fn invalid_token(description: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"error": "invalid_token", "error_description": description})),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}

async fn user_info(auth: &AuthService, pool_id: &str, headers: &HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        return invalid_token("an access token is required: Authorization: Bearer <token>");
    };
    let (v, user, client) = match auth.authenticate_client(&token).await {
        Ok(x) => x,
        Err(e) if e.kind == crate::service::ErrorKind::Unavailable => {
            return (StatusCode::SERVICE_UNAVAILABLE, e.message).into_response()
        }
        Err(e) => return invalid_token(&e.message),
    };
    if v.pool_id != pool_id {
        return invalid_token("the token belongs to another user pool");
    }
    let may_read = |name: &str| client.read_attributes.as_ref().is_none_or(|r| r.contains(name));
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), user.sub.clone().into());
    claims.insert("username".into(), user.username.clone().into());
    for (k, val) in &user.attributes {
        if may_read(k) {
            claims.insert(k.clone(), val.clone().into());
        }
    }
    if user.attributes.contains_key("email") && may_read("email_verified") {
        claims.insert("email_verified".into(), user.email_verified.into());
    }
    if user.attributes.contains_key("phone_number") && may_read("phone_number_verified") {
        claims.insert("phone_number_verified".into(), user.phone_number_verified.into());
    }
    let mut r = (StatusCode::OK, axum::Json(serde_json::Value::Object(claims))).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
