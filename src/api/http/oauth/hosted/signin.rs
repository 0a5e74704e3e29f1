//! Signing in on the hosted page: the username-and-password form, the
//! challenges that may follow it (MFA codes, a new password), and the way
//! back to the app with a code once the flow yields tokens.

use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;

use super::page::{new_csrf, redirect, set_cookie, Look, SESSION_COOKIE};
use super::{Checked, Hosted};
use crate::api::http::html::escape;
use crate::service::flows::mfa::{MFA_SETUP, SELECT_MFA_TYPE};
use crate::service::flows::passwordless::SELECT_CHALLENGE;
use crate::service::flows::signin::AuthAnswer;
use crate::service::oauth::authorize::{PendingAuthorization, SESSION_MS};
use crate::service::{ErrorKind, Origin, ServiceError};

/// The challenges the page answers, and the response field each fills.
pub const ANSWERS: &[(&str, &str)] = &[
    ("SOFTWARE_TOKEN_MFA", "SOFTWARE_TOKEN_MFA_CODE"),
    ("SMS_MFA", "SMS_MFA_CODE"),
    ("EMAIL_OTP", "EMAIL_OTP_CODE"),
    ("SMS_OTP", "SMS_OTP_CODE"),
    ("NEW_PASSWORD_REQUIRED", "NEW_PASSWORD"),
];

/// `sub` and `auth_time` of an access token this node just minted.
fn subject_of(access_token: &str) -> Option<(String, i64)> {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((v["sub"].as_str()?.to_string(), v["auth_time"].as_i64()?))
}

/// Whether an error is the node's (shown as such) rather than the user's
/// (shown on the form again).
pub fn is_node_failure(e: &ServiceError) -> bool {
    matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal)
}

/// The hidden fields every form of a sign-in in progress carries.
pub fn carried_fields(look: &Look, sealed: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{}",
        escape(sealed),
        escape(csrf),
        look.lang_field()
    )
}

impl Hosted {
    /// What every form of a sign-in in progress carries: `pending` sealed
    /// for the next post (on any node) and a fresh CSRF token; `Err` is
    /// the page to answer with when this node cannot seal.
    #[allow(clippy::result_large_err)] // the page goes straight back to the browser
    pub(super) fn form_tokens(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
    ) -> Result<(String, String), Response> {
        let sealed = self
            .oauth
            .seal_pending(&look.pool_id, pending)
            .map_err(|e| look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message))?;
        Ok((sealed, new_csrf()))
    }

    /// The sign-in form for `pending`, with a fresh CSRF token.
    pub(super) fn sign_in_form(&self, look: &Look, pending: &PendingAuthorization, error: Option<&str>) -> Response {
        self.sign_in_page(look, pending, error, None)
    }

    /// The sign-in form with a note above it (a password just reset).
    pub(super) fn sign_in_form_noted(&self, look: &Look, pending: &PendingAuthorization, note: &str) -> Response {
        self.sign_in_page(look, pending, None, Some(note))
    }

    fn sign_in_page(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        error: Option<&str>,
        note: Option<&str>,
    ) -> Response {
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let passkey = self.passkey_sign_in_part(look, pending, &carried_fields(look, &sealed, &csrf));
        let body = format!(
            "{error}{note}<form method=\"post\" action=\"/{pool}/login\">{carried}\
             <label class=\"label-customizable\" for=\"username\">{username}</label>\
             <input class=\"inputField-customizable\" id=\"username\" name=\"username\" autocomplete=\"username\" required>\
             <label class=\"label-customizable\" for=\"password\">{password}</label>\
             <input class=\"inputField-customizable\" id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"sign-in\">{submit}</button>{passwordless}</form>\
             {passkey}<form method=\"post\" action=\"/{pool}/forgot\">{carried}\
             <button class=\"redirect-customizable\" type=\"submit\" id=\"forgot-link\">{forgot}</button></form>\
             <form method=\"post\" action=\"/{pool}/signup\">{carried}\
             <button class=\"redirect-customizable\" type=\"submit\" id=\"signup-link\">{signup}</button></form>{social}",
            error = look.error_paragraph(error),
            passwordless = if self.auth.hosted_offers_user_auth(&pending.client_id) {
                format!(
                    "<button class=\"redirect-customizable\" type=\"submit\" name=\"step\" value=\"passwordless\" \
                     formnovalidate id=\"passwordless\">{}</button>",
                    escape(&look.t("signin.passwordless"))
                )
            } else {
                String::new()
            },
            passkey = passkey,
            note = look.note_paragraph(note),
            forgot = escape(&look.t("signin.forgot_link")),
            signup = escape(&look.t("signin.signup_link")),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            username = escape(&look.t("signin.username")),
            password = escape(&look.t("signin.password")),
            submit = escape(&look.t("signin.submit")),
            social = crate::api::http::oauth::social::buttons(
                look,
                &sealed,
                &self.oauth.social_providers(&look.pool_id, &pending.client_id)
            ),
        );
        if passkey.is_empty() {
            look.page(StatusCode::OK, &look.t("signin.title"), &body, Some(&csrf))
        } else {
            look.page_scripted(StatusCode::OK, &look.t("signin.title"), &body, Some(&csrf))
        }
    }

    /// The form of challenge `name` of a sign-in in progress.
    pub(super) fn challenge_form(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        step: (&str, &str, &str),
        error: Option<&str>,
    ) -> Response {
        let (name, session, username) = step;
        if name == MFA_SETUP {
            return self.mfa_setup_intro(look, pending, (session, username), error);
        }
        if !ANSWERS.iter().any(|(n, _)| *n == name) {
            return look.error_page(
                StatusCode::BAD_REQUEST,
                &look.t_with("error.unsupported_step", &[("step", name)]),
            );
        }
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let kind = if name == "NEW_PASSWORD_REQUIRED" {
            "type=\"password\" autocomplete=\"new-password\""
        } else {
            "inputmode=\"numeric\" autocomplete=\"one-time-code\""
        };
        let body = format!(
            "{error}<form method=\"post\" action=\"/{pool}/challenge\">{carried}\
             <input type=\"hidden\" name=\"challenge\" value=\"{name}\">\
             <input type=\"hidden\" name=\"session\" value=\"{session}\">\
             <input type=\"hidden\" name=\"username\" value=\"{username}\">\
             <label class=\"label-customizable\" for=\"answer\">{label}</label>\
             <input class=\"inputField-customizable\" id=\"answer\" name=\"answer\" {kind} required>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"continue\">{cont}</button></form>",
            error = look.error_paragraph(error),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            name = escape(name),
            session = escape(session),
            username = escape(username),
            label = escape(&look.t(&format!("challenge.{name}"))),
            cont = escape(&look.t("challenge.continue")),
        );
        look.page(StatusCode::OK, &look.t("challenge.title"), &body, Some(&csrf))
    }

    /// `POST /{pool}/login`.
    pub(super) async fn password_posted(&self, c: Checked, ip: &str) -> Response {
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        // The other forms' way back to this one.
        if c.form.get("step") == Some("show") {
            return self.sign_in_form(&c.look, &c.pending, None);
        }
        let username = c.form.get("username").unwrap_or("").to_string();
        if c.form.get("step") == Some("passwordless") {
            if username.trim().is_empty() {
                return self.sign_in_form(&c.look, &c.pending, Some(&c.look.t("signin.username_needed")));
            }
            return match self
                .auth
                .hosted_user_auth(&c.pending.client_id, &username, &origin)
                .await
            {
                Ok(answer) => self.answered(&c.look, &c.pending, &username, answer).await,
                Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                Err(e) => {
                    let text = c.look.error_text(e.exception, &e.message);
                    self.sign_in_form(&c.look, &c.pending, Some(&text))
                }
            };
        }
        let password = c.form.get("password").unwrap_or("");
        match self
            .auth
            .hosted_password(&c.pending.client_id, &username, password, &origin)
            .await
        {
            Ok(answer) => self.answered(&c.look, &c.pending, &username, answer).await,
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            // The password was right (the flow says so only then) but the
            // sign-up was never confirmed: a fresh code, and its form.
            Err(e) if e.exception == "UserNotConfirmedException" => {
                match self.auth.hosted_resend(&c.pending.client_id, &username, &origin).await {
                    Ok(d) => self.to_confirmation(&c.look, &c.pending, &username, password, Some(&d.destination)),
                    Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                    Err(e) => {
                        let text = c.look.error_text(e.exception, &e.message);
                        self.sign_in_form(&c.look, &c.pending, Some(&text))
                    }
                }
            }
            Err(e) => {
                let text = c.look.error_text(e.exception, &e.message);
                self.sign_in_form(&c.look, &c.pending, Some(&text))
            }
        }
    }

    /// `POST /{pool}/challenge`.
    pub(super) async fn challenge_posted(&self, c: Checked, ip: &str) -> Response {
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let username = c.form.get("username").unwrap_or("").to_string();
        let name = c.form.get("challenge").unwrap_or("");
        match name {
            MFA_SETUP => return self.mfa_setup_posted(c, &origin).await,
            SELECT_MFA_TYPE | SELECT_CHALLENGE => return self.select_posted(c, &origin).await,
            _ => {}
        }
        let Some((_, field)) = ANSWERS.iter().find(|(n, _)| *n == name) else {
            return c
                .look
                .error_page(StatusCode::BAD_REQUEST, &c.look.t("error.unknown_step"));
        };
        let responses = BTreeMap::from([(field.to_string(), c.form.get("answer").unwrap_or("").to_string())]);
        let session = c.form.get("session").unwrap_or("");
        match self
            .auth
            .hosted_respond(&c.pending.client_id, name, session, &username, responses, &origin)
            .await
        {
            Ok(answer) => self.answered(&c.look, &c.pending, &username, answer).await,
            Err(e) if e.exception == "CodeMismatchException" => {
                let text = c.look.error_text(e.exception, &e.message);
                self.challenge_form(&c.look, &c.pending, (name, session, &username), Some(&text))
            }
            Err(e) => c
                .look
                .error_page(StatusCode::BAD_REQUEST, &c.look.error_text(e.exception, &e.message)),
        }
    }

    /// What the page does with a flow's answer: the next challenge's
    /// form, or the way back to the app (through the offer to add a
    /// passkey, when the pool allows them and the user has none).
    pub(super) async fn answered(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        username: &str,
        answer: AuthAnswer,
    ) -> Response {
        match answer {
            AuthAnswer::Tokens(t) => match subject_of(&t.access_token) {
                Some((sub, auth_time)) => {
                    if let Some(offer) = self
                        .passkey_offer(look, pending, &t.access_token, (&sub, auth_time))
                        .await
                    {
                        return offer;
                    }
                    self.signed_in(look, pending, &sub, auth_time)
                }
                None => look.error_page(StatusCode::INTERNAL_SERVER_ERROR, &look.t("error.no_token")),
            },
            AuthAnswer::Challenge {
                name,
                session,
                parameters,
                available,
            } => {
                let param = |k: &str| parameters.get(k).map(String::as_str).unwrap_or("");
                if name == SELECT_MFA_TYPE {
                    let choices = super::mfa::choices(param("MFAS_CAN_CHOOSE"));
                    return self.select_form(look, pending, (&name, &session, username), &choices, None);
                }
                if name == SELECT_CHALLENGE {
                    let choices = super::mfa::first_factors(&available);
                    return self.select_form(look, pending, (&name, &session, username), &choices, None);
                }
                if name == MFA_SETUP && !super::mfa::can_set_up(param("MFAS_CAN_SETUP")) {
                    return look.error_page(
                        StatusCode::BAD_REQUEST,
                        &look.t_with("error.unsupported_step", &[("step", &name)]),
                    );
                }
                self.challenge_form(look, pending, (&name, &session, username), None)
            }
        }
    }

    /// `sub` signed in at `auth_time`: back to the app with a code, and the
    /// session cookie that spares the next sign-in.
    pub(super) fn signed_in(&self, look: &Look, pending: &PendingAuthorization, sub: &str, auth_time: i64) -> Response {
        let pool_id = &look.pool_id;
        let issued = self
            .oauth
            .finish(pool_id, pending, sub, auth_time)
            .and_then(|url| Ok((url, self.oauth.seal_session(pool_id, sub, auth_time)?)));
        match issued {
            Ok((url, session)) => {
                let mut r = redirect(&url);
                set_cookie(&mut r, pool_id, SESSION_COOKIE, &session, (SESSION_MS / 1000) as u64);
                r
            }
            Err(e) => look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        }
    }
}
