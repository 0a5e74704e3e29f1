//! `POST /{pool_id}/oauth2/token` (RFC 6749 §3.2): a form in, a JSON token
//! or a JSON error out.
//!
//! The client authenticates with HTTP Basic (`client_secret_basic`) or with
//! `client_id` and `client_secret` in the form (`client_secret_post`), not
//! both (§2.3). Every parameter may appear once (§3.2). The body is bounded
//! before it is parsed; credentials never reach a log.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;

use super::{error_response, no_store_json};
use crate::service::flows::AuthService;
use crate::service::oauth::client_credentials::ClientCredentials;
use crate::service::oauth::{OAuthError, OAuthService};

/// Largest form accepted: a token request is a few hundred bytes; scopes
/// bound the rest.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Most parameters in one form.
const MAX_PARAMS: usize = 32;

/// Adds the token and revocation endpoints to `router`.
pub fn routes(router: Router, oauth: OAuthService, auth: AuthService) -> Router {
    let (oauth2, auth2) = (oauth.clone(), auth.clone());
    router
        .route(
            "/{pool_id}/oauth2/token",
            post(move |Path(pool_id): Path<String>, headers: HeaderMap, body: Body| {
                let (oauth, auth) = (oauth.clone(), auth.clone());
                async move { token(&oauth, &auth, &pool_id, &headers, body).await }
            }),
        )
        .route(
            "/{pool_id}/oauth2/revoke",
            post(move |Path(pool_id): Path<String>, headers: HeaderMap, body: Body| {
                let (oauth, auth) = (oauth2.clone(), auth2.clone());
                async move {
                    let basic = headers.contains_key(header::AUTHORIZATION);
                    match revoke(&oauth, &auth, &pool_id, &headers, body).await {
                        Ok(r) => r,
                        Err(e) => error_response(e, basic),
                    }
                }
            }),
        )
}

/// The parsed form: each parameter once.
#[derive(Debug, Default)]
pub(super) struct Form {
    params: Vec<(String, String)>,
}

impl Form {
    /// The parameter `name`, if given.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads and parses the form, refusing what RFC 6749 forbids.
pub(super) async fn read_form(headers: &HeaderMap, body: Body) -> Result<Form, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::invalid_request(
            "the request body must be a form: Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| OAuthError::invalid_request(format!("the form is larger than {MAX_FORM_BYTES} bytes")))?;
    let mut form = Form::default();
    for (k, v) in form_urlencoded::parse(&bytes) {
        if form.params.len() >= MAX_PARAMS {
            return Err(OAuthError::invalid_request(format!(
                "more than {MAX_PARAMS} parameters"
            )));
        }
        if form.params.iter().any(|(seen, _)| *seen == k) {
            return Err(OAuthError::invalid_request(format!(
                "the parameter {:?} appears more than once",
                k.chars().take(64).collect::<String>()
            )));
        }
        form.params.push((k.into_owned(), v.into_owned()));
    }
    Ok(form)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space), as
/// RFC 6749 §2.3.1 encodes the id and secret inside HTTP Basic.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client's id and secret from an `Authorization: Basic` header:
/// `None` without one, an error for a malformed one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::invalid_client();
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_request(
            "the token endpoint takes HTTP Basic client authentication, or client_id and client_secret in the form",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some((
        form_decode(id).ok_or_else(malformed)?,
        form_decode(secret).ok_or_else(malformed)?,
    )))
}

async fn token(oauth: &OAuthService, auth: &AuthService, pool_id: &str, headers: &HeaderMap, body: Body) -> Response {
    let basic = headers.contains_key(header::AUTHORIZATION);
    match grant(oauth, auth, pool_id, headers, body).await {
        Ok(r) => r,
        Err(e) => error_response(e, basic),
    }
}

/// The client's id and secret as the request gives them: HTTP Basic, or
/// the form's `client_id` and `client_secret`, or a bare `client_id` (a
/// public client).
fn client_of(form: &Form, headers: &HeaderMap) -> Result<(String, Option<String>), OAuthError> {
    let basic = basic_credentials(headers)?;
    // The client's authentication: HTTP Basic, or the form's secret, or
    // none (a public client, named by client_id; only the code grant).
    let (client_id, client_secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "the client authenticated twice: use HTTP Basic or client_secret in the form, not both",
            ))
        }
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the form differs from the one in the Authorization header",
                ));
            }
            (id, Some(secret))
        }
        (None, Some(secret)) => (
            form.get("client_id").unwrap_or("").to_string(),
            Some(secret.to_string()),
        ),
        (None, None) => (form.get("client_id").unwrap_or("").to_string(), None),
    };
    Ok((client_id, client_secret))
}

async fn grant(
    oauth: &OAuthService,
    auth: &AuthService,
    pool_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let form = read_form(headers, body).await?;
    let (client_id, client_secret) = client_of(&form, headers)?;
    let creds = client_secret.as_deref().map(|secret| ClientCredentials {
        client_id: &client_id,
        client_secret: secret,
    });
    match form.get("grant_type") {
        Some("client_credentials") => {
            let Some(creds) = creds else {
                return Err(OAuthError {
                    status: 401,
                    error: "invalid_client",
                    description:
                        "client authentication is required: HTTP Basic, or client_id and client_secret in the form"
                            .into(),
                });
            };
            let t = oauth.client_credentials(pool_id, creds, form.get("scope")).await?;
            Ok(no_store_json(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": t.access_token,
                    "expires_in": t.expires_in,
                    "token_type": "Bearer",
                    "scope": t.scope,
                }),
            ))
        }
        Some("authorization_code") => {
            let code = form
                .get("code")
                .filter(|c| !c.is_empty())
                .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
            let redirect_uri = form
                .get("redirect_uri")
                .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
            let t = oauth
                .exchange_code(
                    pool_id,
                    creds,
                    &client_id,
                    code,
                    redirect_uri,
                    form.get("code_verifier"),
                )
                .await?;
            let mut body = serde_json::json!({
                "access_token": t.tokens.access_token,
                "refresh_token": t.tokens.refresh_token,
                "expires_in": t.tokens.expires_in,
                "token_type": "Bearer",
                "scope": t.scope,
            });
            if !t.tokens.id_token.is_empty() {
                body["id_token"] = serde_json::Value::String(t.tokens.id_token);
            }
            Ok(no_store_json(StatusCode::OK, body))
        }
        Some("refresh_token") => {
            let refresh = form
                .get("refresh_token")
                .filter(|t| !t.is_empty())
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            let client = oauth.identify_client(pool_id, creds, &client_id).await?;
            let t = auth
                .oauth_refresh(&client.client_id, refresh, &crate::service::Origin::default())
                .await
                .map_err(|e| match e.kind {
                    crate::service::ErrorKind::NotAuthorized | crate::service::ErrorKind::InvalidParameter => {
                        OAuthError::bad("invalid_grant", e.message)
                    }
                    _ => OAuthError::from(e),
                })?;
            let mut body = serde_json::json!({
                "access_token": t.access_token,
                "expires_in": t.expires_in,
                "token_type": "Bearer",
            });
            if !t.id_token.is_empty() {
                body["id_token"] = serde_json::Value::String(t.id_token);
            }
            Ok(no_store_json(StatusCode::OK, body))
        }
        None | Some("") => Err(OAuthError::invalid_request("grant_type is required")),
        Some(other) => Err(OAuthError::bad(
            "unsupported_grant_type",
            format!(
                "grant_type {:?} is not supported here; use authorization_code, refresh_token or client_credentials",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// `POST /{pool_id}/oauth2/revoke` (RFC 7009): revokes a refresh token's
/// family. An unknown or already invalid token is answered 200, as §2.2
/// says, so that the endpoint tells nothing about tokens.
async fn revoke(
    oauth: &OAuthService,
    auth: &AuthService,
    pool_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let form = read_form(headers, body).await?;
    let (client_id, client_secret) = client_of(&form, headers)?;
    let creds = client_secret.as_deref().map(|secret| ClientCredentials {
        client_id: &client_id,
        client_secret: secret,
    });
    let client = oauth.identify_client(pool_id, creds, &client_id).await?;
    let token = form
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    match auth
        .revoke_token(token, &client.client_id, client_secret.as_deref().unwrap_or(""))
        .await
    {
        Ok(()) => Ok(no_store_json(StatusCode::OK, serde_json::json!({}))),
        Err(e) if e.exception == "UnsupportedOperationException" => Err(OAuthError::bad(
            "unsupported_token_type",
            "token revocation is not enabled for this app client",
        )),
        Err(e)
            if matches!(
                e.kind,
                crate::service::ErrorKind::NotAuthorized | crate::service::ErrorKind::InvalidParameter
            ) =>
        {
            Ok(no_store_json(StatusCode::OK, serde_json::json!({})))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_form_decoding() {
        assert_eq!(form_decode("a+b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("id1:se%3Acret");
        h.insert(header::AUTHORIZATION, format!("Basic {enc}").parse().unwrap());
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("id1".to_string(), "se:cret".to_string()))
        );
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&h).unwrap_err().error, "invalid_client");
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h).unwrap_err().error, "invalid_request");
    }
}
