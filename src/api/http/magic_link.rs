//! `GET` and `POST /{pool_id}/magic-link?token=...`: the browser side of a
//! magic link (`service::flows::passwordless`).
//!
//! The GET only checks the token and shows a confirmation page with a
//! form: mail scanners and link previews fetch every link in a message,
//! and must not approve a sign-in by doing so. The form's POST approves
//! the link (a replicated, single-use step); the device that asked then
//! collects its tokens. The pages need no JavaScript, load nothing else,
//! and forbid framing (no clickjacking of the button). Tokens are never
//! logged.

use axum::extract::{Path, Query};
use axum::http::Extensions;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::html::{escape, peer_ip};
use crate::service::flows::AuthService;
use crate::service::{ErrorKind, Origin};

/// Longest token accepted (a link token is well under 2 KiB).
const MAX_TOKEN_BYTES: usize = 4096;

/// The `token` of the link (query) or of the form (body).
#[derive(Debug, Deserialize)]
struct TokenParam {
    #[serde(default)]
    token: String,
}

/// A small self-contained page.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}\
         button{{font-size:1.1rem;padding:.6rem 1.4rem}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

fn error_page(e: &crate::service::ServiceError) -> Response {
    let status = match e.kind {
        ErrorKind::NotAuthorized | ErrorKind::InvalidParameter | ErrorKind::NotFound => StatusCode::BAD_REQUEST,
        ErrorKind::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    page(
        status,
        "This link cannot be used",
        &format!(
            "<p>{}</p><p>Go back to the app or site where you asked to sign in, and ask for a new link.</p>",
            escape(&e.message)
        ),
    )
}

fn bad_token() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This link cannot be used",
        "<p>The link is incomplete. Open it exactly as it came in the message.</p>",
    )
}

/// Adds the magic-link routes to `router`.
pub fn with_magic_link(router: Router, auth: AuthService) -> Router {
    let post_auth = auth.clone();
    router.route(
        "/{pool_id}/magic-link",
        get(move |Path(pool_id): Path<String>, Query(q): Query<TokenParam>| {
            let auth = auth.clone();
            async move {
                if q.token.is_empty() || q.token.len() > MAX_TOKEN_BYTES {
                    return bad_token();
                }
                match auth.preview_magic_link(&pool_id, &q.token).await {
                    Ok((pool_name, username)) => page(
                        StatusCode::OK,
                        &format!("Sign in to {pool_name}"),
                        &format!(
                            "<p>Sign in as <strong>{}</strong> on the device where you asked for this link?</p>\
                                 <form method=\"post\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
                                 <button type=\"submit\">Yes, sign me in</button></form>\
                                 <p>If you did not ask to sign in, close this page: nothing happens.</p>",
                            escape(&username),
                            escape(&q.token)
                        ),
                    ),
                    Err(e) => error_page(&e),
                }
            }
        })
        .post(
            move |Path(pool_id): Path<String>, ext: Extensions, Form(f): Form<TokenParam>| {
                let auth = post_auth.clone();
                async move {
                    if f.token.is_empty() || f.token.len() > MAX_TOKEN_BYTES {
                        return bad_token();
                    }
                    let origin = Origin {
                        ip: peer_ip(&ext),
                        ..Origin::default()
                    };
                    match auth.approve_magic_link(&pool_id, &f.token, &origin).await {
                        Ok(()) => page(
                            StatusCode::OK,
                            "You are signed in",
                            "<p>Go back to the app or site where you asked to sign in: it continues there.</p>",
                        ),
                        Err(e) => error_page(&e),
                    }
                }
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
