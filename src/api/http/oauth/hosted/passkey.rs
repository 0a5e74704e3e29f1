//! Passkeys on the hosted page: "Sign in with a passkey" on the sign-in
//! form, and the offer to add one after a sign-in.
//!
//! - Sign-in: the button posts the page's form with `step=options`
//!   (`POST /{pool}/passkey`, CSRF-checked like every form) and gets the
//!   options of a username-less `WEB_AUTHN` challenge as JSON, with the
//!   flow's signed session. The browser's assertion comes back in the same
//!   form; the flow checks it (`RespondToAuthChallenge` with `CREDENTIAL`)
//!   and the page goes on as after a password.
//! - Adding: after a sign-in that yields tokens, a user of a pool that
//!   allows passkeys and who has none yet sees "Add a passkey" or "Not
//!   now". The access token and where the browser goes next travel as a
//!   sealed [`PasskeyOffer`] (cluster key, bound to the pool, short-lived),
//!   never readable or changeable by the browser; both buttons end at the
//!   app as the sign-in would have.
//!
//! The ceremonies need script: one static file, [`SCRIPT`], served from
//! the page's origin, and only the pages that show a passkey button allow
//! it (`Look::page_scripted`). Without script the buttons stay hidden and
//! the page works as before. Nothing here verifies WebAuthn itself: the
//! flows do, with the pool's relying party.
//!
//! [`PasskeyOffer`]: crate::service::flows::hosted::PasskeyOffer

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use super::page::Look;
use super::signin::{carried_fields, is_node_failure};
use super::{Checked, Hosted};
use crate::api::http::html::escape;
use crate::service::flows::signin::AuthAnswer;
use crate::service::oauth::authorize::PendingAuthorization;
use crate::service::{Origin, ServiceError};

/// The page's script: runs the WebAuthn ceremonies of the passkey buttons.
pub const SCRIPT: &str = include_str!("passkey.js");

/// The challenge a passkey answers.
pub const WEB_AUTHN: &str = "WEB_AUTHN";

/// Longest credential JSON the page passes on (an attestation with a
/// certificate chain fits; the form's own limit is the outer bound).
const MAX_CREDENTIAL_CHARS: usize = 32 * 1024;

/// `GET /{pool}/passkey.js`.
pub fn script() -> Response {
    let mut r = (StatusCode::OK, SCRIPT).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// A JSON answer to the script, never cached.
fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// The script's error answer: `text` is shown on the page as is.
fn json_error(status: StatusCode, text: &str) -> Response {
    json(status, serde_json::json!({ "error": text }))
}

/// The options a flow returned, as JSON for the script.
fn options_json(options: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(options)
        .ok()
        .filter(serde_json::Value::is_object)
}

/// The page's error paragraph for the script's messages, hidden until used.
const ERROR_SLOT: &str = "<p class=\"error errorMessage-customizable\" role=\"alert\" id=\"passkey-error\" hidden></p>";

/// The script tag of a page with passkey buttons.
fn script_tag(look: &Look) -> String {
    format!("<script src=\"/{}/passkey.js\" defer></script>", escape(&look.pool_id))
}

impl Hosted {
    /// The "Sign in with a passkey" part of the sign-in form, or nothing
    /// when the client or the pool does not offer passkeys. `carried`: the
    /// form's sealed request and CSRF token.
    pub(super) fn passkey_sign_in_part(&self, look: &Look, pending: &PendingAuthorization, carried: &str) -> String {
        if !self.auth.hosted_offers_passkeys(&pending.client_id) {
            return String::new();
        }
        format!(
            "<form method=\"post\" action=\"/{pool}/passkey\" id=\"passkey-form\" hidden>{carried}\
             <input type=\"hidden\" name=\"step\" value=\"verify\">\
             <input type=\"hidden\" name=\"session\" value=\"\">\
             <input type=\"hidden\" name=\"credential\" value=\"\">\
             <button class=\"submitButton-customizable\" type=\"button\" id=\"passkey-sign-in\" \
             data-ceremony=\"get\" data-error=\"{error}\">{label}</button></form>{slot}{script}",
            pool = escape(&look.pool_id),
            error = escape(&look.t("passkey.cancelled")),
            label = escape(&look.t("signin.passkey")),
            slot = ERROR_SLOT,
            script = script_tag(look),
        )
    }

    /// `POST /{pool}/passkey`: `step=options` starts a username-less
    /// `WEB_AUTHN` sign-in (JSON for the script); else the assertion in
    /// `credential` answers it.
    pub(super) async fn passkey_posted(&self, c: Checked, ip: &str) -> Response {
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        if !self.auth.hosted_offers_passkeys(&c.pending.client_id) {
            return c
                .look
                .error_page(StatusCode::BAD_REQUEST, &c.look.t("error.unknown_step"));
        }
        if c.form.get("step") == Some("options") {
            return self.passkey_options(&c, &origin).await;
        }
        let session = c.form.get("session").unwrap_or("");
        let credential = c.form.get("credential").unwrap_or("");
        if session.is_empty() || credential.is_empty() || credential.len() > MAX_CREDENTIAL_CHARS {
            return self.sign_in_form(&c.look, &c.pending, Some(&c.look.t("passkey.refused")));
        }
        let responses = BTreeMap::from([("CREDENTIAL".to_string(), credential.to_string())]);
        match self
            .auth
            .hosted_respond(&c.pending.client_id, WEB_AUTHN, session, "", responses, &origin)
            .await
        {
            Ok(answer) => self.answered(&c.look, &c.pending, "", answer).await,
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            Err(e) => {
                tracing::info!(exception = e.exception, "hosted page: passkey sign-in refused");
                self.sign_in_form(&c.look, &c.pending, Some(&c.look.t("passkey.refused")))
            }
        }
    }

    /// The options of a fresh username-less `WEB_AUTHN` challenge, and its
    /// session, for the script.
    async fn passkey_options(&self, c: &Checked, origin: &Origin) -> Response {
        let failed = |e: &ServiceError| {
            let status = if is_node_failure(e) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            json_error(status, &c.look.t("passkey.unavailable"))
        };
        match self.auth.hosted_passkey_start(&c.pending.client_id, origin).await {
            Ok(AuthAnswer::Challenge {
                name,
                session,
                parameters,
                ..
            }) if name == WEB_AUTHN => {
                let options = parameters
                    .get("CREDENTIAL_REQUEST_OPTIONS")
                    .and_then(|o| options_json(o));
                match options {
                    Some(options) => json(
                        StatusCode::OK,
                        serde_json::json!({ "options": options, "session": session }),
                    ),
                    None => json_error(StatusCode::BAD_GATEWAY, &c.look.t("passkey.unavailable")),
                }
            }
            Ok(_) => json_error(StatusCode::BAD_REQUEST, &c.look.t("passkey.unavailable")),
            Err(e) => {
                tracing::info!(exception = e.exception, "hosted page: passkey sign-in not started");
                failed(&e)
            }
        }
    }

    /// After a sign-in that yielded `access_token` for `sub`: the offer to
    /// add a passkey, if the pool allows passkeys and the user has none;
    /// `None` to go on to the app at once.
    pub(super) async fn passkey_offer(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        access_token: &str,
        signed_in: (&str, i64),
    ) -> Option<Response> {
        if !self.auth.hosted_wants_passkey(&pending.client_id, access_token).await {
            return None;
        }
        match self
            .auth
            .seal_passkey_offer(&look.pool_id, access_token, signed_in, pending)
        {
            Ok(offer) => Some(self.passkey_offer_page(look, pending, &offer, None)),
            // The offer is a nicety: a node that cannot seal goes on.
            Err(_) => None,
        }
    }

    /// The "Add a passkey" page for a sealed `offer`.
    fn passkey_offer_page(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        offer: &str,
        error: Option<&str>,
    ) -> Response {
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let carried = format!(
            "{}<input type=\"hidden\" name=\"offer\" value=\"{}\">",
            carried_fields(look, &sealed, &csrf),
            escape(offer)
        );
        let body = format!(
            "{error}<p class=\"textDescription-customizable\" id=\"passkey-intro\">{intro}</p>\
             <form method=\"post\" action=\"/{pool}/passkey/add\" id=\"passkey-form\" hidden>{carried}\
             <input type=\"hidden\" name=\"step\" value=\"add\">\
             <input type=\"hidden\" name=\"credential\" value=\"\">\
             <button class=\"submitButton-customizable\" type=\"button\" id=\"passkey-add\" \
             data-ceremony=\"create\" data-error=\"{cancelled}\">{add}</button></form>{slot}\
             <form method=\"post\" action=\"/{pool}/passkey/add\">{carried}\
             <button class=\"redirect-customizable\" type=\"submit\" name=\"step\" value=\"skip\" \
             id=\"passkey-skip\">{skip}</button></form>{script}",
            error = look.error_paragraph(error),
            intro = escape(&look.t("passkey.intro")),
            pool = escape(&look.pool_id),
            cancelled = escape(&look.t("passkey.add_cancelled")),
            add = escape(&look.t("passkey.add")),
            skip = escape(&look.t("passkey.skip")),
            slot = ERROR_SLOT,
            script = script_tag(look),
        );
        look.page_scripted(StatusCode::OK, &look.t("passkey.title"), &body, Some(&csrf))
    }

    /// `POST /{pool}/passkey/add`: `step=options` starts the registration
    /// (JSON for the script), `add` completes it with `credential`, `skip`
    /// declines; the last two go on to the app.
    pub(super) async fn passkey_add_posted(&self, c: Checked, ip: &str) -> Response {
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let offer_text = c.form.get("offer").unwrap_or("");
        // The offer must continue this very form's authorization: neither
        // half can be swapped for another sign-in's.
        let Some(offer) = self
            .auth
            .open_passkey_offer(&c.look.pool_id, offer_text)
            .filter(|o| o.pending == c.pending)
        else {
            return c.look.error_page(StatusCode::BAD_REQUEST, &c.look.t("error.expired"));
        };
        let go_on = |look: &Look| self.signed_in(look, &offer.pending, &offer.sub, offer.auth_time);
        match c.form.get("step").unwrap_or("") {
            "options" => match self
                .auth
                .start_web_authn_registration(&offer.access_token, &origin)
                .await
            {
                Ok(options) => match options_json(&options) {
                    Some(options) => json(StatusCode::OK, serde_json::json!({ "options": options })),
                    None => json_error(StatusCode::BAD_GATEWAY, &c.look.t("passkey.add_failed")),
                },
                Err(e) => {
                    tracing::info!(exception = e.exception, "hosted page: passkey registration not started");
                    json_error(StatusCode::BAD_REQUEST, &c.look.t("passkey.add_failed"))
                }
            },
            "add" => {
                let credential = c.form.get("credential").unwrap_or("");
                if credential.is_empty() || credential.len() > MAX_CREDENTIAL_CHARS {
                    let text = c.look.t("passkey.add_failed");
                    return self.passkey_offer_page(&c.look, &c.pending, offer_text, Some(&text));
                }
                let name = c.look.t("passkey.default_name");
                match self
                    .auth
                    .complete_web_authn_registration(&offer.access_token, credential, &name, &origin)
                    .await
                {
                    Ok(()) => go_on(&c.look),
                    Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                    Err(e) => {
                        tracing::info!(exception = e.exception, "hosted page: passkey registration refused");
                        let text = c.look.t("passkey.add_failed");
                        self.passkey_offer_page(&c.look, &c.pending, offer_text, Some(&text))
                    }
                }
            }
            _ => go_on(&c.look),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_must_be_a_json_object() {
        assert!(options_json(r#"{"challenge":"abc"}"#).is_some());
        assert!(options_json("[1]").is_none());
        assert!(options_json("not json").is_none());
    }

    #[test]
    fn the_script_has_no_other_host_and_no_eval() {
        for banned in ["http://", "https://", "eval(", "innerHTML", "document.write"] {
            assert!(!SCRIPT.contains(banned), "passkey.js contains {banned}");
        }
    }
}
