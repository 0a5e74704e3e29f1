//! The MFA steps of the hosted page that need more than one answer field.
//!
//! - `MFA_SETUP` (the pool requires MFA and the user has no factor yet):
//!   a button that creates the authenticator secret
//!   (`AssociateSoftwareToken` with the challenge's session; an explicit
//!   post, since it writes), then the secret and its `otpauth://` URI shown
//!   as text (no script, no QR service sees the secret) with a field for
//!   the first code (`VerifySoftwareToken`), then the challenge's answer,
//!   which signs in.
//! - `SELECT_MFA_TYPE`: one radio button per factor the flow offers; the
//!   chosen factor's challenge follows.
//! - `SELECT_CHALLENGE` (sign-in without a password, `USER_AUTH`, offered
//!   only to a client that allows it): the same choice among the
//!   code-by-email and code-by-text first factors the pool allows.
//!
//! The secret is shown once and carried back only so the form can be shown
//! again after a mistyped code; the flow checks codes against the stored
//! secret, never against what the form says.

use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;

use super::page::Look;
use super::signin::{carried_fields, is_node_failure};
use super::{Checked, Hosted};
use crate::api::http::html::escape;
use crate::service::flows::mfa::{MFA_SETUP, SELECT_MFA_TYPE, SOFTWARE_TOKEN_MFA};
use crate::service::flows::passwordless::SELECT_CHALLENGE;
use crate::service::oauth::authorize::PendingAuthorization;
use crate::service::Origin;

/// The factors the page can offer on `SELECT_MFA_TYPE`.
const FACTORS: &[&str] = &["SOFTWARE_TOKEN_MFA", "SMS_MFA", "EMAIL_OTP"];

/// The first factors the page can offer on `SELECT_CHALLENGE` (a password
/// is the sign-in form itself; a magic link is not offered here).
const FIRST_FACTORS: &[&str] = &["EMAIL_OTP", "SMS_OTP"];

/// The first factors of a `SELECT_CHALLENGE`'s `AvailableChallenges` that
/// the page offers, in a fixed order.
pub fn first_factors(available: &[String]) -> Vec<&'static str> {
    FIRST_FACTORS
        .iter()
        .copied()
        .filter(|f| available.iter().any(|a| a == f))
        .collect()
}

/// Longest secret or URI the form carries back for a second try.
const MAX_SECRET_CHARS: usize = 1024;

/// The factors of `MFAS_CAN_CHOOSE` (a JSON array) the page knows, in a
/// fixed order.
pub fn choices(json: &str) -> Vec<&'static str> {
    let offered: Vec<String> = serde_json::from_str(json).unwrap_or_default();
    FACTORS
        .iter()
        .copied()
        .filter(|f| offered.iter().any(|o| o == f))
        .collect()
}

/// The hidden fields of a challenge form: which, its session, the user.
fn step_fields(name: &str, session: &str, username: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"challenge\" value=\"{}\">\
         <input type=\"hidden\" name=\"session\" value=\"{}\">\
         <input type=\"hidden\" name=\"username\" value=\"{}\">",
        escape(name),
        escape(session),
        escape(username)
    )
}

impl Hosted {
    /// `MFA_SETUP`, first form: why, and the button that creates the
    /// secret.
    pub(super) fn mfa_setup_intro(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        step: (&str, &str),
        error: Option<&str>,
    ) -> Response {
        let (session, username) = step;
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let body = format!(
            "{error}<p class=\"textDescription-customizable\">{intro}</p>\
             <form method=\"post\" action=\"/{pool}/challenge\">{carried}{step}\
             <input type=\"hidden\" name=\"step\" value=\"associate\">\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"setup\">{submit}</button></form>",
            error = look.error_paragraph(error),
            intro = escape(&look.t("mfa_setup.intro")),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            step = step_fields(MFA_SETUP, session, username),
            submit = escape(&look.t("mfa_setup.start")),
        );
        look.page(StatusCode::OK, &look.t("mfa_setup.title"), &body, Some(&csrf))
    }

    /// `MFA_SETUP`, second form: the secret as text and the first code.
    fn mfa_setup_secret(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        step: (&str, &str),
        secret: (&str, &str),
        error: Option<&str>,
    ) -> Response {
        let (session, username) = step;
        let (code, uri) = secret;
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let body = format!(
            "{error}<p class=\"textDescription-customizable\">{intro}</p>\
             <p class=\"label-customizable\">{secret_label}</p><p><code id=\"secret\">{code}</code></p>\
             <p class=\"label-customizable\">{uri_label}</p><p style=\"word-break:break-all\"><code id=\"uri\">{uri}</code></p>\
             <form method=\"post\" action=\"/{pool}/challenge\">{carried}{step}\
             <input type=\"hidden\" name=\"step\" value=\"verify\">\
             <input type=\"hidden\" name=\"secret\" value=\"{code}\">\
             <input type=\"hidden\" name=\"uri\" value=\"{uri}\">\
             <label class=\"label-customizable\" for=\"answer\">{code_label}</label>\
             <input class=\"inputField-customizable\" id=\"answer\" name=\"answer\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" maxlength=\"16\" required>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"continue\">{submit}</button></form>",
            error = look.error_paragraph(error),
            intro = escape(&look.t("mfa_setup.scan")),
            secret_label = escape(&look.t("mfa_setup.secret")),
            code = escape(code),
            uri_label = escape(&look.t("mfa_setup.uri")),
            uri = escape(uri),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            step = step_fields(MFA_SETUP, session, username),
            code_label = escape(&look.t("mfa_setup.code")),
            submit = escape(&look.t("challenge.continue")),
        );
        look.page(StatusCode::OK, &look.t("mfa_setup.title"), &body, Some(&csrf))
    }

    /// `SELECT_MFA_TYPE` or `SELECT_CHALLENGE` (`step`: which, the
    /// session, the user): a radio button per choice.
    pub(super) fn select_form(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        step: (&str, &str, &str),
        choices: &[&str],
        error: Option<&str>,
    ) -> Response {
        let (name, session, username) = step;
        if choices.is_empty() {
            return look.error_page(
                StatusCode::BAD_REQUEST,
                &look.t_with("error.unsupported_step", &[("step", name)]),
            );
        }
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let radios: String = choices
            .iter()
            .enumerate()
            .map(|(i, f)| {
                format!(
                    "<label class=\"label-customizable\"><input type=\"radio\" name=\"answer\" value=\"{f}\" \
                     id=\"factor-{f}\" style=\"width:auto\"{checked}> {text}</label>",
                    f = escape(f),
                    checked = if i == 0 { " checked" } else { "" },
                    text = escape(&look.t(&format!("select_mfa.{f}"))),
                )
            })
            .collect();
        let body = format!(
            "{error}<form method=\"post\" action=\"/{pool}/challenge\">{carried}{step}\
             <input type=\"hidden\" name=\"choices\" value=\"{choices}\">\
             <fieldset><legend class=\"label-customizable\">{legend}</legend>{radios}</fieldset>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"continue\">{submit}</button></form>",
            error = look.error_paragraph(error),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            step = step_fields(name, session, username),
            choices = escape(&choices.join(",")),
            legend = escape(&look.t("select_mfa.legend")),
            submit = escape(&look.t("challenge.continue")),
        );
        look.page(StatusCode::OK, &look.t("challenge.title"), &body, Some(&csrf))
    }

    /// `POST /{pool}/challenge` for `MFA_SETUP`: `step=associate` creates
    /// the secret, `step=verify` checks the first code and signs in.
    pub(super) async fn mfa_setup_posted(&self, c: Checked, origin: &Origin) -> Response {
        let username = c.form.get("username").unwrap_or("");
        let session = c.form.get("session").unwrap_or("");
        let step = (session, username);
        if c.form.get("step") != Some("verify") {
            return match self.auth.associate_software_token("", session, origin).await {
                Ok(a) => {
                    let next = a.session.unwrap_or_default();
                    self.mfa_setup_secret(
                        &c.look,
                        &c.pending,
                        (&next, username),
                        (&a.secret_code, &a.secret_uri),
                        None,
                    )
                }
                Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                Err(e) => c
                    .look
                    .error_page(StatusCode::BAD_REQUEST, &c.look.error_text(e.exception, &e.message)),
            };
        }
        let bounded = |k: &str| -> String { c.form.get(k).unwrap_or("").chars().take(MAX_SECRET_CHARS).collect() };
        let (secret, uri) = (bounded("secret"), bounded("uri"));
        let code = c.form.get("answer").unwrap_or("").trim();
        let verified = match self.auth.verify_software_token("", session, code, "", origin).await {
            Ok((_, Some(next))) => next,
            Ok((_, None)) => {
                return c
                    .look
                    .error_page(StatusCode::BAD_REQUEST, &c.look.t("error.unknown_step"))
            }
            Err(e) if is_node_failure(&e) => return c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            // A mistyped code: the same secret, another try.
            Err(e) if e.kind == crate::service::ErrorKind::InvalidParameter => {
                let text = c.look.error_text(e.exception, &e.message);
                return self.mfa_setup_secret(&c.look, &c.pending, step, (&secret, &uri), Some(&text));
            }
            Err(e) => {
                return c
                    .look
                    .error_page(StatusCode::BAD_REQUEST, &c.look.error_text(e.exception, &e.message))
            }
        };
        match self
            .auth
            .hosted_respond(
                &c.pending.client_id,
                MFA_SETUP,
                &verified,
                username,
                BTreeMap::new(),
                origin,
            )
            .await
        {
            Ok(answer) => self.answered(&c.look, &c.pending, username, answer).await,
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            Err(e) => c
                .look
                .error_page(StatusCode::BAD_REQUEST, &c.look.error_text(e.exception, &e.message)),
        }
    }

    /// `POST /{pool}/challenge` for `SELECT_MFA_TYPE` or
    /// `SELECT_CHALLENGE`: the chosen factor's challenge follows.
    pub(super) async fn select_posted(&self, c: Checked, origin: &Origin) -> Response {
        let username = c.form.get("username").unwrap_or("");
        let session = c.form.get("session").unwrap_or("");
        let name = if c.form.get("challenge") == Some(SELECT_CHALLENGE) {
            SELECT_CHALLENGE
        } else {
            SELECT_MFA_TYPE
        };
        let known = if name == SELECT_CHALLENGE {
            FIRST_FACTORS
        } else {
            FACTORS
        };
        let choices: Vec<&str> = known
            .iter()
            .copied()
            .filter(|f| c.form.get("choices").unwrap_or("").split(',').any(|x| x == *f))
            .collect();
        let Some(answer) = c.form.get("answer").filter(|a| choices.contains(a)) else {
            let text = c.look.t("select_mfa.none");
            return self.select_form(&c.look, &c.pending, (name, session, username), &choices, Some(&text));
        };
        let responses = BTreeMap::from([("ANSWER".to_string(), answer.to_string())]);
        match self
            .auth
            .hosted_respond(&c.pending.client_id, name, session, username, responses, origin)
            .await
        {
            Ok(answer) => self.answered(&c.look, &c.pending, username, answer).await,
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            Err(e) => c
                .look
                .error_page(StatusCode::BAD_REQUEST, &c.look.error_text(e.exception, &e.message)),
        }
    }
}

/// Whether the page can run `MFA_SETUP` for a challenge offering
/// `MFAS_CAN_SETUP` (a JSON array): only an authenticator app is enrolled
/// here.
pub fn can_set_up(json: &str) -> bool {
    let offered: Vec<String> = serde_json::from_str(json).unwrap_or_default();
    offered.iter().any(|o| o == SOFTWARE_TOKEN_MFA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_keep_known_factors_in_order() {
        assert_eq!(
            choices(r#"["EMAIL_OTP","<b>","SOFTWARE_TOKEN_MFA"]"#),
            vec!["SOFTWARE_TOKEN_MFA", "EMAIL_OTP"]
        );
        assert!(choices("not json").is_empty());
        assert!(can_set_up(r#"["SMS_MFA","SOFTWARE_TOKEN_MFA"]"#));
        assert!(!can_set_up(r#"["SMS_MFA"]"#));
        let available = ["MAGIC_LINK", "SMS_OTP", "PASSWORD", "EMAIL_OTP"].map(String::from);
        assert_eq!(first_factors(&available), vec!["EMAIL_OTP", "SMS_OTP"]);
    }
}
