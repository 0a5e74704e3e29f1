//! Signing up on the hosted page: the sign-up form (username, password and
//! the attributes the pool asks for), then the confirmation form for the
//! code the courier sent, which signs the new user in and sends the
//! browser back to the app with a code, as Cognito's hosted UI does.
//!
//! The flows decide everything (`service::flows::hosted`); the page only
//! shows their answers. Between the two forms the password travels only
//! sealed (`PendingSignUp`), never in the clear, and a form shown again
//! after an error keeps what was typed except the password.

use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;

use super::page::Look;
use super::signin::{carried_fields, is_node_failure};
use super::{Checked, Hosted};
use crate::api::http::html::escape;
use crate::service::flows::hosted::{FormAttribute, PendingSignUp};
use crate::service::oauth::authorize::PendingAuthorization;
use crate::service::Origin;

/// The prefix of an attribute's field in the sign-up form (`attr.email`).
const ATTR: &str = "attr.";

/// Longest value the page accepts for one attribute (the pool's schema
/// may bound it further; the flow checks that).
const MAX_ATTRIBUTE_CHARS: usize = 2048;

/// The input type and autocomplete hint of a standard attribute.
fn input_kind(name: &str) -> &'static str {
    match name {
        "email" => "type=\"email\" autocomplete=\"email\"",
        "phone_number" => "type=\"tel\" autocomplete=\"tel\"",
        "name" => "autocomplete=\"name\"",
        "given_name" => "autocomplete=\"given-name\"",
        "family_name" => "autocomplete=\"family-name\"",
        "birthdate" => "autocomplete=\"bday\"",
        _ => "",
    }
}

/// What a sign-up form shows again: the values typed, and the error.
#[derive(Default)]
pub struct Typed<'a> {
    /// The username typed.
    pub username: &'a str,
    /// Attribute values typed, by name.
    pub attributes: BTreeMap<String, String>,
    /// The error to show above the form.
    pub error: Option<&'a str>,
}

impl Hosted {
    /// The sign-up form of `pending`'s app.
    pub(super) async fn sign_up_form(&self, look: &Look, pending: &PendingAuthorization, typed: Typed<'_>) -> Response {
        let fields = match self.auth.hosted_sign_up_fields(&pending.client_id).await {
            Ok(f) => f,
            Err(e) => return look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let mut inputs = String::new();
        for FormAttribute { name, required } in &fields {
            let id = format!("{ATTR}{name}");
            let label = match crate::model::page_strings::english(&format!("attribute.{name}")) {
                Some(_) => look.t(&format!("attribute.{name}")),
                None => name.clone(),
            };
            inputs.push_str(&format!(
                "<label class=\"label-customizable\" for=\"{id}\">{label}</label>\
                 <input class=\"inputField-customizable\" id=\"{id}\" name=\"{id}\" value=\"{value}\" \
                 maxlength=\"{MAX_ATTRIBUTE_CHARS}\" {kind}{req}>",
                id = escape(&id),
                label = escape(&label),
                value = escape(typed.attributes.get(name).map(String::as_str).unwrap_or("")),
                kind = input_kind(name),
                req = if *required { " required" } else { "" },
            ));
        }
        let body = format!(
            "{error}<form method=\"post\" action=\"/{pool}/signup\">{carried}\
             <input type=\"hidden\" name=\"step\" value=\"submit\">\
             <label class=\"label-customizable\" for=\"username\">{username_label}</label>\
             <input class=\"inputField-customizable\" id=\"username\" name=\"username\" value=\"{username}\" \
             autocomplete=\"username\" maxlength=\"128\" required>\
             <label class=\"label-customizable\" for=\"password\">{password_label}</label>\
             <input class=\"inputField-customizable\" id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"new-password\" maxlength=\"256\" required>{inputs}\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"sign-up\">{submit}</button></form>\
             {back}",
            error = look.error_paragraph(typed.error),
            pool = escape(&look.pool_id),
            carried = carried_fields(look, &sealed, &csrf),
            username_label = escape(&look.t("signup.username")),
            username = escape(typed.username),
            password_label = escape(&look.t("signup.password")),
            submit = escape(&look.t("signup.submit")),
            back = back_to_sign_in(look, &sealed, &csrf),
        );
        look.page(StatusCode::OK, &look.t("signup.title"), &body, Some(&csrf))
    }

    /// The confirmation form of a sealed sign-up (`signup`), saying where
    /// the code went (`note`) or what went wrong (`error`).
    pub(super) fn confirm_form(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        signup: &str,
        note: Option<&str>,
        error: Option<&str>,
    ) -> Response {
        let (sealed, csrf) = match self.form_tokens(look, pending) {
            Ok(t) => t,
            Err(page) => return page,
        };
        let note = look.note_paragraph(note);
        let carried = carried_fields(look, &sealed, &csrf);
        let signup_field = format!("<input type=\"hidden\" name=\"signup\" value=\"{}\">", escape(signup));
        let body = format!(
            "{error}{note}<form method=\"post\" action=\"/{pool}/confirm\">{carried}{signup_field}\
             <label class=\"label-customizable\" for=\"code\">{code_label}</label>\
             <input class=\"inputField-customizable\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" maxlength=\"64\" required>\
             <button class=\"submitButton-customizable\" type=\"submit\" id=\"confirm\">{submit}</button></form>\
             <form method=\"post\" action=\"/{pool}/confirm\">{carried}{signup_field}\
             <input type=\"hidden\" name=\"resend\" value=\"1\">\
             <button class=\"redirect-customizable\" type=\"submit\" id=\"resend\">{resend}</button></form>",
            error = look.error_paragraph(error),
            pool = escape(&look.pool_id),
            code_label = escape(&look.t("confirm.code")),
            submit = escape(&look.t("confirm.submit")),
            resend = escape(&look.t("confirm.resend")),
        );
        look.page(StatusCode::OK, &look.t("confirm.title"), &body, Some(&csrf))
    }

    /// The confirmation step for `username`, who typed `password` (on the
    /// sign-up form, or on the sign-in form while still unconfirmed).
    pub(super) fn to_confirmation(
        &self,
        look: &Look,
        pending: &PendingAuthorization,
        username: &str,
        password: &str,
        destination: Option<&str>,
    ) -> Response {
        let signup = match self.auth.seal_pending_sign_up(&look.pool_id, username, password) {
            Ok(s) => s,
            Err(e) => return look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        let note = match destination {
            Some(d) => look.t_with("confirm.sent", &[("destination", d)]),
            None => look.t("confirm.sent_nowhere"),
        };
        self.confirm_form(look, pending, &signup, Some(&note), None)
    }

    /// `POST /{pool}/signup`: without `step=submit` (the sign-in form's
    /// link), the empty form; with it, the sign-up.
    pub(super) async fn sign_up_posted(&self, c: Checked, ip: &str) -> Response {
        if c.form.get("step") != Some("submit") {
            return self.sign_up_form(&c.look, &c.pending, Typed::default()).await;
        }
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let fields = match self.auth.hosted_sign_up_fields(&c.pending.client_id).await {
            Ok(f) => f,
            Err(e) => return c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
        };
        let username = c.form.get("username").unwrap_or("").trim();
        let password = c.form.get("password").unwrap_or("");
        // Only the attributes the form asks for, and only those filled in:
        // an optional field left blank is no attribute at all.
        let attributes: BTreeMap<String, String> = fields
            .iter()
            .filter_map(|f| {
                let v = c.form.get(&format!("{ATTR}{}", f.name))?.trim();
                (!v.is_empty()).then(|| (f.name.clone(), v.chars().take(MAX_ATTRIBUTE_CHARS).collect()))
            })
            .collect();
        fn again<'a>(username: &'a str, attributes: &BTreeMap<String, String>, error: &'a str) -> Typed<'a> {
            Typed {
                username,
                attributes: attributes.clone(),
                error: Some(error),
            }
        }
        if let Some(missing) = fields.iter().find(|f| f.required && !attributes.contains_key(&f.name)) {
            let text = c.look.t_with("signup.missing", &[("attribute", &missing.name)]);
            return self
                .sign_up_form(&c.look, &c.pending, again(username, &attributes, &text))
                .await;
        }
        match self
            .auth
            .hosted_sign_up(&c.pending.client_id, username, password, attributes.clone(), &origin)
            .await
        {
            Ok(done) if done.user_confirmed => {
                match self
                    .auth
                    .hosted_password(&c.pending.client_id, username, password, &origin)
                    .await
                {
                    Ok(answer) => self.answered(&c.look, &c.pending, username, answer).await,
                    Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                    Err(e) => {
                        let text = c.look.error_text(e.exception, &e.message);
                        self.sign_in_form(&c.look, &c.pending, Some(&text))
                    }
                }
            }
            Ok(done) => {
                let destination = done.delivery.as_ref().map(|d| d.destination.as_str());
                self.to_confirmation(&c.look, &c.pending, username, password, destination)
            }
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            Err(e) => {
                let text = c.look.error_text(e.exception, &e.message);
                self.sign_up_form(&c.look, &c.pending, again(username, &attributes, &text))
                    .await
            }
        }
    }

    /// `POST /{pool}/confirm`: the code (then the sign-in), or with
    /// `resend`, a new code.
    pub(super) async fn confirm_posted(&self, c: Checked, ip: &str) -> Response {
        let origin = Origin {
            ip: ip.to_string(),
            ..Origin::default()
        };
        let signup = c.form.get("signup").unwrap_or("");
        let Some(PendingSignUp { username, password, .. }) = self.auth.open_pending_sign_up(&c.look.pool_id, signup)
        else {
            return c.look.error_page(StatusCode::BAD_REQUEST, &c.look.t("error.expired"));
        };
        let client_id = &c.pending.client_id;
        if c.form.get("resend").is_some() {
            return match self.auth.hosted_resend(client_id, &username, &origin).await {
                Ok(d) => {
                    let note = c.look.t_with("confirm.sent", &[("destination", &d.destination)]);
                    self.confirm_form(&c.look, &c.pending, signup, Some(&note), None)
                }
                Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
                Err(e) => {
                    let text = c.look.error_text(e.exception, &e.message);
                    self.confirm_form(&c.look, &c.pending, signup, None, Some(&text))
                }
            };
        }
        let code = c.form.get("code").unwrap_or("").trim();
        if let Err(e) = self.auth.hosted_confirm(client_id, &username, code, &origin).await {
            if is_node_failure(&e) {
                return c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message);
            }
            let text = c.look.error_text(e.exception, &e.message);
            return self.confirm_form(&c.look, &c.pending, signup, None, Some(&text));
        }
        match self
            .auth
            .hosted_password(client_id, &username, &password, &origin)
            .await
        {
            Ok(answer) => self.answered(&c.look, &c.pending, &username, answer).await,
            Err(e) if is_node_failure(&e) => c.look.error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            // Confirmed, but the sign-in did not go through (a password
            // changed meanwhile, a trigger refused it): sign in again.
            Err(e) => {
                let text = c.look.error_text(e.exception, &e.message);
                self.sign_in_form(&c.look, &c.pending, Some(&text))
            }
        }
    }
}

/// A button back to the sign-in form, keeping the sign-in in progress.
pub fn back_to_sign_in(look: &Look, sealed: &str, csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/{pool}/login\">{carried}\
         <input type=\"hidden\" name=\"step\" value=\"show\">\
         <button class=\"redirect-customizable\" type=\"submit\" id=\"back\">{text}</button></form>",
        pool = escape(&look.pool_id),
        carried = carried_fields(look, sealed, csrf),
        text = escape(&look.t("signup.back")),
    )
}
