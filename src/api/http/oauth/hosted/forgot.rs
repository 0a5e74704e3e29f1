//! A forgotten password on the hosted page: the username form, then the
//! form for the code the courier sent and a new password, then the
//! sign-in form again with a note that the password changed.
//!
//! The page reveals whether a user exists exactly as far as the flows do:
//! with the client's `PreventUserExistenceErrors`, an unknown username gets
//! the same "code sent" answer as a known one (the flow answers with a
//! decoy destination), and a wrong code the same mismatch.

use axum::http::StatusCode;
use axum::response::Response;

use super::page::Look;
use super::signin::{carried_fields, is_node_failure};
use super::signup::back_to_sign_in;
use super::{Checked, Hosted};
use crate::api::http::html::escape;
use crate::service::oauth::authorize::PendingAuthorization;
use crate::service::Origin;

impl Hosted {
    /// The form asking for the username whose password was forgotten.
    fn forgot_form(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        username: &str,
        error: Option<&str>,
    ) -> Response {
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let body = format!(
            "{error}<p class=\"textDescription-customizable\">{intro}</p>\
             <form method=\"post\" action=\"/{pool}/forgot\">{carried}\
             <input type=\"hidden\" name=\"step\" value=\"submit\">\
             <label class=\"label-customizable\" for=\"username\">{username_label}</label>\
             <input class=\"inputField-customizable\" id=\"username\" name=\"username\" value=\"{username}\" \
             autocomplete=\"username\" maxlength=\"128\" required>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"send-code\">{submit}</button></form>{back}",
            error = look.error_paragraph(error),
            intro = escape(&look.t("forgot.intro")),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            username_label = escape(&look.t("forgot.username")),
            username = escape(username),
            submit = escape(&look.t("forgot.submit")),
            back = back_to_sign_in(look, &sealed, &csrf),
        );
        look.page(StatusCode::OK, &look.t("forgot.title"), &body, Some(&csrf))
    }

    /// The form for the reset code and the new password of `username`.
    fn reset_form(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        username: &str,
        note: Option<&str>,
        error: Option<&str>,
    ) -> Response {
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let note = look.note_paragraph(note);
        let body = format!(
            "{error}{note}<form method=\"post\" action=\"/{pool}/reset\">{carried}\
             <input type=\"hidden\" name=\"username\" value=\"{username}\">\
             <label class=\"label-customizable\" for=\"code\">{code_label}</label>\
             <input class=\"inputField-customizable\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" maxlength=\"64\" required>\
             <label class=\"label-customizable\" for=\"password\">{password_label}</label>\
             <input class=\"inputField-customizable\" id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"new-password\" maxlength=\"256\" required>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"reset\">{submit}</button></form>{back}",
            error = look.error_paragraph(error),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            username = escape(username),
            code_label = escape(&look.t("reset.code")),
            password_label = escape(&look.t("reset.password")),
            submit = escape(&look.t("reset.submit")),
            back = back_to_sign_in(look, &sealed, &csrf),
        );
        look.page(StatusCode::OK, &look.t("reset.title"), &body, Some(&csrf))
    }

    /// `POST /{pool}/forgot`: without `step=submit` (the sign-in form's
    /// link), the empty form; with it, a code sent.
    pub(super) async fn forgot_posted(&self, c: Checked, ip: &str) -> Response {
        if c.form.get("step") != Some("submit") {
            return self.forgot_form(&c.look, &c.pending, "", None);
        }
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let username = c.form.get("username").unwrap_or("").trim();
        match self.auth.hosted_forgot(&c.pending.client_id, username, &origin).await {
            Ok(d) => {
                let note = c.look.t_with("reset.sent", &[("destination", &d.destination)]);
                self.reset_form(&c.look, &c.pending, username, Some(&note), None)
            }
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            Err(e) => {
                let text = c.look.error_text(e.exception, &e.message);
                self.forgot_form(&c.look, &c.pending, username, Some(&text))
            }
        }
    }

    /// `POST /{pool}/reset`: the code and the new password; on success the
    /// sign-in form, saying so.
    pub(super) async fn reset_posted(&self, c: Checked, ip: &str) -> Response {
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let username = c.form.get("username").unwrap_or("").trim();
        let code = c.form.get("code").unwrap_or("").trim();
        let password = c.form.get("password").unwrap_or("");
        match self
            .auth
            .hosted_reset(&c.pending.client_id, username, code, password, &origin)
            .await
        {
            Ok(()) => self.sign_in_form_noted(&c.look, &c.pending, &c.look.t("reset.done")),
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            Err(e) => {
                let text = c.look.error_text(e.exception, &e.message);
                self.reset_form(&c.look, &c.pending, username, None, Some(&text))
            }
        }
    }
}
